package banks

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/xmodal/xmodal/internal/vecmath"
)

// The screened scan (head dot products plus a Cauchy-Schwarz bound of the
// rest, then the dot products of every column) returns exactly the rows,
// and the scores, of a full scan with the float kernel (vecmath.DotsSeq over
// every row): at high thresholds (the heads rule out nearly every row), low
// ones (the query moves to the columns' bound, or without AVX2 to the full
// scan), thresholds set to a row's exact score (the boundary row is kept),
// after rows were replaced and removed (columns and tail norms move with
// their rows), and for a dimension too small to be screened.
func TestScanManyExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	for _, dim := range []int{256, 512, 100} {
		x := newEmbIndex()
		const n = 3000
		vecs := map[uint32][]float32{}
		for i := range n {
			v := unit(rng, dim)
			x.add(uint32(i), v)
			vecs[uint32(i)] = v
		}
		// Replace some rows (a new vector in place), remove others (the
		// last row moves into the hole).
		for i := 0; i < n; i += 7 {
			v := unit(rng, dim)
			x.add(uint32(i), v)
			vecs[uint32(i)] = v
		}
		for i := 3; i < n; i += 11 {
			x.remove(uint32(i))
			delete(vecs, uint32(i))
		}
		// Queries near rows (scores 0.6..0.99), and random ones.
		var qs [][]float32
		for k := range 40 {
			if k%4 == 3 {
				qs = append(qs, unit(rng, dim))
				continue
			}
			src := vecs[uint32(rng.IntN(n/11)*11+1)]
			qs = append(qs, near(rng, src, 0.6+0.39*rng.Float64()))
		}
		// The reference: every row scored by the full kernel.
		g := x.groups[0]
		full := make([][]float32, len(qs))
		for j, q := range qs {
			full[j] = make([]float32, len(g.slots))
			vecmath.DotsSeq(q, g.data, full[j])
		}
		for _, mode := range []string{"high", "low", "boundary"} {
			thrs := make([]float32, len(qs))
			for j := range qs {
				switch mode {
				case "high":
					thrs[j] = 0.5 + 0.45*rng.Float32()
				case "low":
					thrs[j] = 0.02 * rng.Float32()
				case "boundary": // exactly some row's score: that row must come back
					s := slices.Clone(full[j])
					slices.Sort(s)
					thrs[j] = s[len(s)-1-j%3]
				}
			}
			type hit struct {
				j     int
				slot  uint32
				score float32
			}
			var got, want []hit
			x.scanMany(qs, thrs, func(j int, slot uint32, score float32) { got = append(got, hit{j, slot, score}) })
			for j := range qs {
				for i, a := range full[j] {
					if a >= thrs[j] {
						want = append(want, hit{j, g.slots[i], a})
					}
				}
			}
			cmpHit := func(a, b hit) int {
				if a.j != b.j {
					return a.j - b.j
				}
				return int(a.slot) - int(b.slot)
			}
			slices.SortFunc(got, cmpHit)
			slices.SortFunc(want, cmpHit)
			if !slices.Equal(got, want) {
				t.Fatalf("dim %d, %s thresholds: the screened scan returned %d hits, the full scan %d (or other scores)", dim, mode, len(got), len(want))
			}
			if len(want) < len(qs)/2 {
				t.Fatalf("dim %d, %s thresholds: only %d hits, the test shows too little", dim, mode, len(want))
			}
			// scan (one query) agrees with scanMany.
			var one []hit
			x.scan(qs[1], thrs[1], func(slot uint32, score float32) { one = append(one, hit{1, slot, score}) })
			slices.SortFunc(one, cmpHit)
			var want1 []hit
			for _, h := range want {
				if h.j == 1 {
					want1 = append(want1, h)
				}
			}
			if !slices.Equal(one, want1) {
				t.Fatalf("dim %d, %s thresholds: scan of query 1 returned %d hits, want %d", dim, mode, len(one), len(want1))
			}
			t.Logf("dim %d, %s thresholds: %d hits", dim, mode, len(want))
		}
		// The columns and tail norms are those of the rows they sit beside,
		// and the rest of the last block of columns is zero.
		if g.screened() {
			if n := len(g.slots); len(g.cols) != (n+63)/64*64*dim {
				t.Fatalf("dim %d: %d floats of columns for %d rows", dim, len(g.cols), n)
			}
			for i := len(g.slots); i%64 != 0; i++ {
				for d := range dim {
					if g.cols[i/64*64*dim+d*64+i%64] != 0 {
						t.Fatalf("dim %d: the head of row %d past the last is not zero", dim, i)
					}
				}
			}
			for i := range g.slots {
				v := g.data[i*dim : (i+1)*dim]
				for d := range dim {
					if g.cols[i/64*64*dim+d*64+i%64] != v[d] {
						t.Fatalf("dim %d: row %d's columns are not its vector's", dim, i)
					}
				}
				var ts float64
				for _, a := range v[g.hd:] {
					ts += float64(a) * float64(a)
				}
				if tn := float64(g.tail[i]); tn*tn < ts || tn*tn > ts*(1+1e-6) {
					t.Fatalf("dim %d: row %d's tail norm %v, want %v rounded up", dim, i, tn, ts)
				}
			}
		}
	}
}

// BenchmarkScanMany is a write batch's 32 vectors against 10,000 rows of
// 256 dimensions (the demo model's): the screened scan against a full scan
// (every row scored), at a high threshold (the screen rules out nearly
// every row) and a low one (it falls back to the full scan).
func BenchmarkScanMany(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 5))
	const dim, n = 256, 10_000
	x := newEmbIndex()
	for i := range n {
		x.add(uint32(i), unit(rng, dim))
	}
	qs := make([][]float32, 32)
	for i := range qs {
		qs[i] = unit(rng, dim)
	}
	g := x.groups[0]
	for _, thr := range []float32{0.95, 0.25} {
		thrs := slices.Repeat([]float32{thr}, len(qs))
		hits := 0
		b.Run(fmt.Sprintf("thr=%v/screened", thr), func(b *testing.B) {
			for b.Loop() {
				x.scanMany(qs, thrs, func(int, uint32, float32) { hits++ })
			}
		})
		b.Run(fmt.Sprintf("thr=%v/full", thr), func(b *testing.B) {
			scores := make([]float32, n)
			for b.Loop() {
				for j, q := range qs {
					vecmath.DotsSeq(q, g.data, scores)
					for _, a := range scores {
						if a >= thrs[j] {
							hits++
						}
					}
				}
			}
		})
	}
}
