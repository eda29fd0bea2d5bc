//go:build bench

package matching

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/milvus-io/milvus/client/v2/milvusclient"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/sink/embedded"
	"github.com/xmodal/xmodal/sink/milvus"
)

// TestSweepBench sweeps an embedded index of XMODAL_SWEEPBENCH_N image
// records (random PDQ hashes, seeded; 1000000 for the target) for
// 1,000 new PDQ entries at threshold 31, 100 of them planted 0-31 bits from
// an indexed image, and reports the time and that every planted match was
// found. With XMODAL_SWEEPBENCH_MILVUS=host:port (a server from
// scripts/milvus.sh) it then does the same on Milvus (collections of its own
// base name, dropped at the end), the same records and entries.
//
// With XMODAL_SWEEPBENCH_REGIONS=1 the embedded records carry region hashes
// too (domain.Record.PDQRegions: one content rectangle's hash and a cleaned
// hash, random), half the planted entries lie near a content hash instead
// of the whole-image hash, and the sweep runs twice, interleaved: without
// regions (the search only: the planted whole-image matches) and with them
// (SweeperConfig.Regions: the search, then a scan of every record).
func TestSweepBench(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("XMODAL_SWEEPBENCH_N"))
	if n <= 0 {
		t.Skip("set XMODAL_SWEEPBENCH_N to run the sweep benchmark (docs/moderation.md)")
	}
	ctx := context.Background()
	ix, err := embedded.Open(ctx, embedded.Options{Path: filepath.Join(t.TempDir(), "ix.db"), Dim: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	sweepBench(t, "embedded", ix, n, 0, os.Getenv("XMODAL_SWEEPBENCH_REGIONS") == "1")
	if addr := os.Getenv("XMODAL_SWEEPBENCH_MILVUS"); addr != "" {
		opt := milvus.Options{Address: addr, Collection: fmt.Sprintf("sweepbench_%d", time.Now().Unix()%100000), Dim: 4, ModelVersion: "bench@1",
			Consistency: "Bounded", CodeBits: -1, FloatIndex: milvus.IndexFlat, StartTimeout: time.Minute}
		mx, err := milvus.Open(ctx, opt)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			mx.Close()
			dropBench(t, opt)
		}()
		// Bounded (milvus.consistency's default): a sweep's searches do not
		// wait for a time tick; the records are older than the graceful
		// time (5 s) when the sweep starts.
		sweepBench(t, "milvus "+mx.ServerVersion()+" (Bounded)", mx, n, 6*time.Second, false)
	}
}

// dropBench drops the benchmark's alias and collections (every collection
// under its base name).
func dropBench(t *testing.T, opt milvus.Options) {
	ctx := context.Background()
	c, err := milvusclient.New(ctx, &milvusclient.ClientConfig{Address: opt.Address})
	if err != nil {
		t.Logf("the benchmark's collections stay (%v): drop %s* by hand", err, opt.Collection)
		return
	}
	defer c.Close(ctx)
	_ = c.DropAlias(ctx, milvusclient.NewDropAliasOption(opt.Collection))
	names, err := c.ListCollections(ctx, milvusclient.NewListCollectionOption())
	if err != nil {
		t.Logf("the benchmark's collections stay (%v): drop %s* by hand", err, opt.Collection)
		return
	}
	for _, name := range names {
		if strings.HasPrefix(name, opt.Collection+"_") {
			if err := c.DropCollection(ctx, milvusclient.NewDropCollectionOption(name)); err != nil {
				t.Logf("drop %s: %v", name, err)
			}
		}
	}
}

// sweepBench indexes n image records (seeded random PDQ hashes) into ix and
// sweeps them for 1,000 PDQ entries, 100 planted near indexed images,
// settle after the last write; with regions, see TestSweepBench.
func sweepBench(t *testing.T, name string, ix interface {
	domain.NearDupSearcher
	Apply(context.Context, []domain.Change) ([]domain.Outcome, error)
}, n int, settle time.Duration, regions bool) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	hashes := make([]pdq.Hash, n)
	var content []pdq.Hash
	if regions {
		content = make([]pdq.Hash, n)
	}
	start := time.Now()
	for from := 0; from < n; from += 10000 {
		var chs []domain.Change
		for i := from; i < min(from+10000, n); i++ {
			for j := range hashes[i] {
				hashes[i][j] = byte(rng.Uint32())
			}
			id := fmt.Sprintf("p%07d", i)
			r := domain.Record{PK: domain.PrimaryKey(id, domain.ModalityImage),
				PostID: id, Modality: domain.ModalityImage, Vector: []float32{1, 0, 0, 0}, PDQ: hashes[i][:], PDQQuality: 90}
			if regions {
				r.PDQRegions = make([]byte, 2*domain.PDQBytes)
				for j := range r.PDQRegions {
					r.PDQRegions[j] = byte(rng.Uint32())
				}
				content[i] = pdq.Hash(r.PDQRegions[:domain.PDQBytes])
			}
			chs = append(chs, domain.Change{PostID: id, Seq: 1, Records: []domain.Record{r}})
		}
		if _, err := ix.Apply(ctx, chs); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%s: indexed %d image records in %.1f s", name, n, time.Since(start).Seconds())
	time.Sleep(settle)
	ns := testutil.StartNATS(t, "")
	_, js := testutil.ConnectJS(t, ns.ClientURL())
	ev, err := OpenEvents(ctx, js, StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var entries []banks.Entry
	planted := map[string]bool{}
	wholePlanted := 0
	for i := range 1000 {
		var h pdq.Hash
		if i < 100 {
			k := rng.IntN(n)
			h = hashes[k]
			if regions && i%2 == 1 {
				h = content[k]
			} else {
				wholePlanted++
			}
			for flips := rng.IntN(32); flips > 0; flips-- {
				b := rng.IntN(256)
				h[b/8] ^= 1 << (b % 8)
			}
			planted[fmt.Sprintf("p%07d", k)] = true
		} else {
			for j := range h {
				h[j] = byte(rng.Uint32())
			}
		}
		entries = append(entries, banks.Entry{ID: banks.EntryID(banks.SignalPDQ, "", h.String()), Type: banks.SignalPDQ, Value: h.String()})
	}
	thr := 31
	runs := []bool{false}
	if regions {
		runs = []bool{false, true, false, true}
	}
	for _, withRegions := range runs {
		cfg := SweeperConfig{Index: ix, Events: ev, Dir: t.TempDir()}
		label := name
		if regions {
			cfg.Records, cfg.Regions = ix.(domain.RecordScanner), withRegions
			label += fmt.Sprintf(", regions %v", withRegions)
		}
		sw, err := NewSweeper(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		// A bank of its own each time: no record carries its matches yet.
		info := banks.BankInfo{Bank: banks.Bank{Name: fmt.Sprintf("bench-%d", time.Now().UnixNano()), Enabled: true, Thresholds: banks.Thresholds{PDQ: &thr}}}
		start = time.Now()
		st := sw.Start(info, entries)
		testutil.CheckFor(t, 30*time.Minute, 50*time.Millisecond, func() error {
			for _, s := range sw.Status() {
				if s.ID == st.ID && (s.State == "done" || s.State == "failed") {
					st = s
					return nil
				}
			}
			return fmt.Errorf("not done")
		})
		took := time.Since(start)
		want := len(planted)
		if regions && !withRegions {
			want = wholePlanted
		}
		if st.State != "done" || st.Matches < want {
			t.Fatalf("sweep %+v: want done with at least the %d planted matches", st, want)
		}
		t.Logf("%s: swept %d indexed images for %d PDQ entries (threshold 31) in %.1f s (%.1f ms per entry); %d matches (%d planted, %d records scanned)",
			label, n, len(entries), took.Seconds(), float64(took.Milliseconds())/float64(len(entries)), st.Matches, want, st.Records)
	}
}
