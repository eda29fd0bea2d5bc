package sharedclusters

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/internal/clusters"
	"github.com/xmodal/xmodal/internal/testutil"
)

// BenchmarkSharedVsLocal measures what sharing costs: the same write
// rounds of image posts (groups of copies and singles, rounds of 256) join
// the shared clusters (Record: one JetStream change a round, durable, then
// applied to the local copy) and, interleaved round by round, a local
// clusters.Store in a bbolt file (what the embedded index does in its own
// transaction, without fsync). It prints the wall time per post of
// each, their ratio, the local copy's file bytes per member and a
// snapshot's size. XMODAL_BENCH_POSTS sets the posts (default 100,000).
//
//	go test -run '^$' -bench SharedVsLocal -benchtime 1x ./sink/sharedclusters/
func BenchmarkSharedVsLocal(b *testing.B) {
	n := testutil.EnvInt(b, "XMODAL_BENCH_POSTS", 100000)
	const round = 256
	ps := plantedPosts(9, n/20, 10, n/2)
	ctx := context.Background()
	for range b.N {
		ns := testutil.StartNATS(b, "")
		_, js := testutil.ConnectJS(b, ns.ClientURL())
		dir := b.TempDir()
		sh, err := Open(ctx, js, Config{Name: "bench", Dir: dir, SnapshotEvery: -1})
		if err != nil {
			b.Fatal(err)
		}
		db, err := bolt.Open(filepath.Join(b.TempDir(), "local.db"), 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true})
		if err != nil {
			b.Fatal(err)
		}
		l, _ := clusters.NewPDQLinker(31)
		var local *clusters.Store
		if err := db.Update(clusters.Init); err != nil {
			b.Fatal(err)
		}
		if err := db.View(func(tx *bolt.Tx) error {
			local, err = clusters.Open(tx, clusters.Options{Linker: l})
			return err
		}); err != nil {
			b.Fatal(err)
		}
		signer := clusters.Signer{MinQuality: domain.LowPDQQuality}
		var tShared, tLocal time.Duration
		var ratios []float64
		for lo := 0; lo < len(ps); lo += round {
			chunk := ps[lo:min(lo+round, len(ps))]
			changes := make([]domain.Change, len(chunk))
			for i, p := range chunk {
				changes[i] = imageChange(p)
			}
			outs := applied(len(changes))
			t0 := time.Now()
			err := local.Update(db, func(t *clusters.Txn) error {
				for i := range changes {
					if a, ok := signer.Action(&changes[i], outs[i]); ok {
						if err := t.Do(a); err != nil {
							return err
						}
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			dl := time.Since(t0)
			t0 = time.Now()
			if err := sh.Record(ctx, changes, outs); err != nil {
				b.Fatal(err)
			}
			ds := time.Since(t0)
			tLocal, tShared = tLocal+dl, tShared+ds
			ratios = append(ratios, float64(ds)/float64(dl))
		}
		if err := testutil.SamePartition(sh.Partition(), local.Partition()); err != nil {
			b.Fatalf("the shared and the local clusters differ: %v", err)
		}
		st := sh.Stats()
		sh.st.mu.RLock()
		fi, err := os.Stat(sh.st.db.Path())
		sh.st.mu.RUnlock()
		if err != nil {
			b.Fatal(err)
		}
		write, err := sh.st.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		var cw countWriter
		if err := write(&cw); err != nil {
			b.Fatal(err)
		}
		slices.Sort(ratios)
		fmt.Printf("%d posts in rounds of %d: %d clusters of two or more, the largest of %d\n", len(ps), round, st.Multi, st.Largest)
		fmt.Printf("local store %.1f us/post, shared (JetStream change + apply) %.1f us/post; ratio of totals %.2f, median per-round ratio %.2f\n",
			float64(tLocal.Microseconds())/float64(len(ps)), float64(tShared.Microseconds())/float64(len(ps)),
			float64(tShared)/float64(tLocal), ratios[len(ratios)/2])
		fmt.Printf("local copy's file %.0f bytes/member (%d MB), snapshot %.0f bytes/member\n",
			float64(fi.Size())/float64(st.Members), fi.Size()>>20, float64(cw)/float64(st.Members))
		b.ReportMetric(float64(tShared.Microseconds())/float64(len(ps)), "shared-us/post")
		b.ReportMetric(float64(tLocal.Microseconds())/float64(len(ps)), "local-us/post")
		b.ReportMetric(float64(cw)/float64(st.Members), "snapshot-B/member")
		sh.Close()
		db.Close()
	}
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}
