//go:build bench

package embedded

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/internal/vecmath"
)

// TestClusterIngestCost is the benchmark of bench/results/clusters-ingest.txt:
// the cost of clustering at ingest, as the write throughput of the embedded
// index with clusters on against the same index with them off, in
// interleaved rounds (ratios are robust to a shared machine). Both indexes
// are first filled with N image posts (planted groups of near-duplicate
// PDQ hashes plus unrelated ones); each round writes B batches of 32 new
// posts (a third near-duplicates of indexed posts) to each, in alternating
// order. The sink is where clustering runs, and the pipeline's throughput is
// bounded by encoding, so the ratio is an upper bound of the cost to the
// whole ingest. A test gated by an environment variable, as
// TestHammingSideBySide: it prepares two indexes once and alternates.
//
//	XMODAL_CLUSTERBENCH=1         run it
//	XMODAL_CLUSTERBENCH_N         posts indexed first (default 50,000)
//	XMODAL_CLUSTERBENCH_DIM       vector dimension (default 512, CLIP ViT-B/32)
//	XMODAL_CLUSTERBENCH_ROUNDS    rounds (default 7)
//	XMODAL_CLUSTERBENCH_BATCHES   batches per index per round (default 40)
func TestClusterIngestCost(t *testing.T) {
	if os.Getenv("XMODAL_CLUSTERBENCH") != "1" {
		t.Skip("set XMODAL_CLUSTERBENCH=1 to run the clustering ingest-cost benchmark (docs/clusters.md)")
	}
	env := func(k string, def int) int {
		if v, err := strconv.Atoi(os.Getenv(k)); err == nil {
			return v
		}
		return def
	}
	n, dim := env("XMODAL_CLUSTERBENCH_N", 50000), env("XMODAL_CLUSTERBENCH_DIM", 512)
	rounds, batches := env("XMODAL_CLUSTERBENCH_ROUNDS", 7), env("XMODAL_CLUSTERBENCH_BATCHES", 40)
	ctx := context.Background()
	dir := t.TempDir()
	open := func(name string, cl *ClusterOptions) *Index {
		ix, err := Open(ctx, Options{Path: filepath.Join(dir, name), Dim: dim, Clusters: cl})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ix.Close() })
		return ix
	}
	off, on := open("off.db", nil), open("on.db", &ClusterOptions{})
	rng := rand.New(rand.NewPCG(42, 1))
	centres := make([][]byte, n/20)
	for i := range centres {
		centres[i] = randHash(rng)
	}
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	seq := 0
	post := func() domain.Change {
		seq++
		id := fmt.Sprintf("p%08d", seq)
		var h []byte
		if rng.IntN(3) == 0 { // a near-duplicate of a planted group
			c := centres[rng.IntN(len(centres))]
			h = flipBits(c, rng.IntN(256), rng.IntN(256), rng.IntN(256), rng.IntN(256), rng.IntN(256), rng.IntN(256))
		} else {
			h = randHash(rng)
		}
		return domain.Change{PostID: id, Records: []domain.Record{{PK: domain.PrimaryKey(id, domain.ModalityImage), PostID: id,
			Modality: domain.ModalityImage, CreatedAt: t0.Add(time.Duration(seq) * time.Second), Vector: vecmath.RandomUnit(rng, dim),
			PDQ: h, PDQQuality: 100, Thumbnail: make([]byte, 3000)}}}
	}
	start := time.Now()
	for done := 0; done < n; {
		m := min(1000, n-done)
		chs := make([]domain.Change, m)
		for i := range chs {
			chs[i] = post()
		}
		for _, ix := range []*Index{off, on} {
			if _, err := ix.Apply(ctx, chs); err != nil {
				t.Fatal(err)
			}
		}
		done += m
	}
	st, _ := on.ClusterStats()
	t.Logf("filled both indexes with %d image posts (dim %d) in %v; clusters: %d (%d of two or more, largest %d)",
		n, dim, time.Since(start).Round(time.Millisecond), st.Clusters, st.Multi, st.Largest)
	var ratios []float64
	for r := range rounds {
		work := make([][]domain.Change, batches)
		for i := range work {
			work[i] = make([]domain.Change, 32)
			for j := range work[i] {
				work[i][j] = post()
			}
		}
		var took [2]time.Duration
		order := []int{0, 1}
		if r%2 == 1 {
			order = []int{1, 0}
		}
		for _, k := range order {
			ix := []*Index{off, on}[k]
			s := time.Now()
			for _, chs := range work {
				if _, err := ix.Apply(ctx, chs); err != nil {
					t.Fatal(err)
				}
			}
			took[k] = time.Since(s)
		}
		ratio := float64(took[1]) / float64(took[0])
		ratios = append(ratios, ratio)
		per := func(d time.Duration) float64 { return float64(batches*32) / d.Seconds() }
		t.Logf("round %d: off %.0f posts/s, on %.0f posts/s; on/off time %.3f", r+1, per(took[0]), per(took[1]), ratio)
	}
	slices.Sort(ratios)
	st, _ = on.ClusterStats()
	t.Logf("clusters on / off write time: median %.3f (rounds %.3f..%.3f, n=%d); cost = median - 1 = %+.1f%%; clusters after: %d, merges %d",
		ratios[len(ratios)/2], ratios[0], ratios[len(ratios)-1], len(ratios), 100*(ratios[len(ratios)/2]-1), st.Clusters, st.Merges)
}
