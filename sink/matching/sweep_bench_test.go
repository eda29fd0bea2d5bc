//go:build bench

package matching

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/sink/embedded"
)

// TestSweepBench sweeps an embedded index of XMODAL_SWEEPBENCH_N image
// records (random PDQ hashes, seeded; 1000000 for the target) for
// 1,000 new PDQ entries at threshold 31, 100 of them planted 0-31 bits from
// an indexed image, and reports the time and that every planted match was
// found.
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
	rng := rand.New(rand.NewPCG(1, 2))
	hashes := make([]pdq.Hash, n)
	start := time.Now()
	for from := 0; from < n; from += 10000 {
		var chs []domain.Change
		for i := from; i < min(from+10000, n); i++ {
			for j := range hashes[i] {
				hashes[i][j] = byte(rng.Uint32())
			}
			id := fmt.Sprintf("p%07d", i)
			chs = append(chs, domain.Change{PostID: id, Seq: 1, Records: []domain.Record{{PK: domain.PrimaryKey(id, domain.ModalityImage),
				PostID: id, Modality: domain.ModalityImage, Vector: []float32{1, 0, 0, 0}, PDQ: hashes[i][:], PDQQuality: 90}}})
		}
		if _, err := ix.Apply(ctx, chs); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("indexed %d image records in %.1f s", n, time.Since(start).Seconds())
	ns := testutil.StartNATS(t, "")
	_, js := testutil.ConnectJS(t, ns.ClientURL())
	ev, err := OpenEvents(ctx, js, StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	sw, err := NewSweeper(ctx, SweeperConfig{Index: ix, Events: ev, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var entries []banks.Entry
	planted := map[string]bool{}
	for i := range 1000 {
		var h pdq.Hash
		if i < 100 {
			k := rng.IntN(n)
			h = hashes[k]
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
		entries = append(entries, banks.Entry{ID: fmt.Sprint(i), Type: banks.SignalPDQ, Value: h.String()})
	}
	thr := 31
	info := banks.BankInfo{Bank: banks.Bank{Name: "bench", Enabled: true, Thresholds: banks.Thresholds{PDQ: &thr}}}
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
	if st.State != "done" || st.Matches < len(planted) {
		t.Fatalf("sweep %+v: want done with at least the %d planted matches", st, len(planted))
	}
	t.Logf("swept %d indexed images for %d PDQ entries (threshold 31) in %.1f s (%.1f ms per entry); %d matches (%d planted)",
		n, len(entries), took.Seconds(), float64(took.Milliseconds())/float64(len(entries)), st.Matches, len(planted))
}
