package sharedwindows

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
	"github.com/xmodal/xmodal/internal/replstate"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/internal/winindex"
)

// BenchmarkSharedVsLocal measures what sharing the windows costs a Milvus
// deployment against the embedded index's in-memory tables: the same
// write rounds of image posts (generated 640 x 480 pictures with their
// stored windows, rounds of 64) are recorded in the shared windows
// (Record: one JetStream change a round, durable, then applied to the
// local copy's file and tables) and, interleaved round by round, put into
// a window index directly (what the embedded index does in memory, after
// its own store write). It prints the wall time per image of each and
// their ratio, the stream's bytes per image, the local copy's file and a
// snapshot's bytes per image, the heap per image of a serving process's
// copy, and how long a process starting later takes to hold searchable
// tables (restore the snapshot, build) against building the same tables
// from the windows in memory. XMODAL_BENCH_IMAGES sets the images
// (default 2,000).
//
//	go test -run '^$' -bench SharedVsLocal -benchtime 1x ./sink/sharedwindows/
func BenchmarkSharedVsLocal(b *testing.B) {
	n := testutil.EnvInt(b, "XMODAL_BENCH_IMAGES", 2000)
	const round = 64
	h := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	type img struct {
		pk      string
		windows []byte
		hash    pdq.Hash
		quality int
	}
	imgs := make([]img, n)
	windowBytes := 0
	for i := range imgs {
		p := reposts.Photo(i, uint64(i)*7919+1, 640, 480)
		ws, err := h.Windows(p)
		if err != nil {
			b.Fatal(err)
		}
		hash, q := (&pdq.Hasher{MaxSide: -1}).Hash(p)
		imgs[i] = img{pk: fmt.Sprintf("post-%06d", i), windows: neardup.AppendWindows(nil, 640, 480, ws), hash: hash, quality: q}
		windowBytes += len(imgs[i].windows)
	}
	ctx := context.Background()
	for range b.N {
		ns := testutil.StartNATS(b, "")
		_, js := testutil.ConnectJS(b, ns.ClientURL())
		sh, err := Open(ctx, js, Config{Name: "bench", Dir: b.TempDir(), SnapshotEvery: -1})
		if err != nil {
			b.Fatal(err)
		}
		local := winindex.New(neardup.IndexOptions{})
		local.Start(nil)
		var tShared, tLocal time.Duration
		var ratios []float64
		for lo := 0; lo < n; lo += round {
			chunk := imgs[lo:min(lo+round, n)]
			changes := make([]domain.Change, len(chunk))
			outs := make([]domain.Outcome, len(chunk))
			for i, m := range chunk {
				changes[i] = domain.Change{PostID: m.pk, Seq: 1, Records: []domain.Record{{PK: domain.PrimaryKey(m.pk, domain.ModalityImage),
					PostID: m.pk, Modality: domain.ModalityImage, PDQ: m.hash[:], PDQQuality: m.quality, Windows: m.windows}}}
				outs[i] = domain.Applied
			}
			t0 := time.Now()
			if err := sh.Record(ctx, changes, outs); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			for _, m := range chunk {
				if err := local.Put(domain.PrimaryKey(m.pk, domain.ModalityImage), m.windows, m.hash[:], m.quality); err != nil {
					b.Fatal(err)
				}
			}
			local.Poke()
			t2 := time.Now()
			tShared += t1.Sub(t0)
			tLocal += t2.Sub(t1)
			ratios = append(ratios, float64(t1.Sub(t0))/float64(max(t2.Sub(t1), time.Microsecond)))
		}
		for sh.Pending() > 0 || local.Pending() > 0 {
			time.Sleep(10 * time.Millisecond)
		}
		slices.Sort(ratios)
		st, err := js.Stream(ctx, replstate.Stream("bench"))
		if err != nil {
			b.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			b.Fatal(err)
		}
		var fileBytes int64
		if fi, err := os.Stat(sh.st.db.Path()); err == nil {
			fileBytes = fi.Size()
		}
		seq, err := sh.f.SnapshotNow(ctx)
		if err != nil {
			b.Fatal(err)
		}
		obs, err := js.ObjectStore(ctx, "XMODAL_SNAPSHOTS")
		if err != nil {
			b.Fatal(err)
		}
		var snapBytes uint64
		if infos, err := obs.List(ctx); err == nil {
			for _, oi := range infos {
				if oi.Size > snapBytes {
					snapBytes = oi.Size
				}
			}
		}

		// A process that starts later: restore, then build the tables
		// (the writers' copies closed first, for the heap's measure).
		local.Stop()
		sh.Close()
		local = nil
		runtime.GC()
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		t0 := time.Now()
		late, err := Open(ctx, js, Config{Name: "bench", Dir: b.TempDir(), SnapshotEvery: -1})
		if err != nil {
			b.Fatal(err)
		}
		restored := time.Since(t0)
		for !late.Ready() {
			time.Sleep(time.Millisecond)
		}
		lateReady := time.Since(t0)
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m1)
		runtime.KeepAlive(late)
		heap := float64(int64(m1.HeapAlloc)-int64(m0.HeapAlloc)) / float64(n)
		t0 = time.Now()
		direct := winindex.New(neardup.IndexOptions{})
		for _, m := range imgs {
			direct.Put(domain.PrimaryKey(m.pk, domain.ModalityImage), m.windows, m.hash[:], m.quality)
		}
		direct.Start(nil)
		for !direct.Ready() {
			time.Sleep(time.Millisecond)
		}
		directReady := time.Since(t0)
		if late.Len() != n || direct.Len() != n {
			b.Fatalf("the late process holds %d images, the direct build %d; want %d", late.Len(), direct.Len(), n)
		}

		fmt.Printf("%d images in rounds of %d, stored windows %d bytes/image on average\n", n, round, windowBytes/n)
		fmt.Printf("local tables %.1f us/image, shared (JetStream change + copy's file + tables) %.1f us/image; ratio of totals %.2f, median per-round ratio %.2f\n",
			float64(tLocal.Microseconds())/float64(n), float64(tShared.Microseconds())/float64(n), float64(tShared)/float64(tLocal), ratios[len(ratios)/2])
		fmt.Printf("stream %d bytes/image (before the snapshot purges it), local copy's file %d bytes/image, snapshot (seq %d) %d bytes/image\n",
			info.State.Bytes/uint64(n), fileBytes/int64(n), seq, snapBytes/uint64(n))
		fmt.Printf("a late process: snapshot restored and loaded in %v, tables searchable after %v (building from memory directly: %v); its copy's heap %.0f bytes/image\n",
			restored.Round(time.Millisecond), lateReady.Round(time.Millisecond), directReady.Round(time.Millisecond), heap)
		b.ReportMetric(float64(tLocal.Microseconds())/float64(n), "local-us/image")
		b.ReportMetric(float64(tShared.Microseconds())/float64(n), "shared-us/image")
		b.ReportMetric(float64(snapBytes)/float64(n), "snapshot-B/image")
		b.ReportMetric(heap, "heap-B/image")
		late.Close()
		direct.Stop()
	}
}
