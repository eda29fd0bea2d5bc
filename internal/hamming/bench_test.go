//go:build unix

package hamming

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
)

// benchIndexes caches the indexes of the benchmarks by (n, chunks).
var benchIndexes sync.Map

type benchSet struct {
	ix      *Index
	codes   []Code
	queries [][]Code
}

func benchIndex(b *testing.B, n, m int) *benchSet {
	key := fmt.Sprint(n, "/", m)
	if v, ok := benchIndexes.Load(key); ok {
		return v.(*benchSet)
	}
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	codes := clustered(rng, n, 0.1, 50, 24)
	ix, err := New(Options{Chunks: m, DeferMaintenance: true})
	if err != nil {
		b.Fatal(err)
	}
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = uint64(i)
	}
	ix.AddBatch(ids, codes)
	ix.Build(nil)
	queries := imageQueries(rng, codes)
	s := &benchSet{ix, codes, queries}
	benchIndexes.Store(key, s)
	return s
}

// BenchmarkSearch is one image lookup (8 variants, r=31); run it with
// -cpu 1. The side-by-side test (sidebyside_test.go) is the full benchmark.
func BenchmarkSearch(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		for _, m := range []int{0, 8, 11, 16} {
			b.Run(fmt.Sprintf("n=%d/m=%d", n, m), func(b *testing.B) {
				s := benchIndex(b, n, m)
				var dst []Match
				b.ResetTimer()
				c0 := cpuTime()
				for i := 0; b.Loop(); i++ {
					dst, _ = s.ix.Search(s.queries[i%len(s.queries)], 31, dst[:0])
				}
				b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(b.N), "cpu-ns/op")
			})
		}
	}
}

func BenchmarkLinear(b *testing.B) {
	s := benchIndex(b, 1_000_000, 0)
	var dst []Match
	for i := 0; b.Loop(); i++ {
		dst, _ = Linear(s.codes, s.queries[i%len(s.queries)], 31, dst[:0])
	}
}

// imageQueries are 512 image lookups (8 approximate dihedral variants each):
// half near an indexed code (29-33 bits away), half random.
func imageQueries(rng *rand.Rand, codes []Code) [][]Code {
	var queries [][]Code
	for i := range 512 {
		var v [8]Code
		if i%2 == 0 {
			v = dihedralApprox(flip(rng, codes[rng.IntN(len(codes))], 29+rng.IntN(5)))
		} else {
			v = dihedralApprox(randomCode(rng))
		}
		queries = append(queries, v[:])
	}
	return queries
}

// BenchmarkDihedralSplit is the cost and recall behind the banks' fast
// dihedral search (banks.DihedralFast), on a million random codes indexed
// as a bank indexes its PDQ entries (Radius 31, buckets of 4): one image
// lookup (8 variants, r=31) searched exactly, against the first variant
// searched exactly and the seven others probed within chunk radius 0 or 1
// (SearchProbe). It prints, per chunk radius, the share of codes found by
// the probe at distances 15..31 from a query (random flips, 2,000 each).
// Run it with -cpu 1.
func BenchmarkDihedralSplit(b *testing.B) {
	const n = 1_000_000
	rng := rand.New(rand.NewPCG(n, 18))
	codes := make([]Code, n)
	ids := make([]uint64, n)
	for i := range codes {
		codes[i], ids[i] = randomCode(rng), uint64(i)
	}
	ix, err := New(Options{DeferMaintenance: true, Radius: 31, BucketLoad: 4})
	if err != nil {
		b.Fatal(err)
	}
	ix.AddBatch(ids, codes)
	ix.Build(nil)
	st := ix.Stats()
	queries := imageQueries(rng, codes)
	b.Run("exact", func(b *testing.B) {
		var dst []Match
		for i := 0; b.Loop(); i++ {
			dst, _ = ix.Search(queries[i%len(queries)], 31, dst[:0])
		}
	})
	for _, cr := range []int{0, 1} {
		b.Run(fmt.Sprintf("split-probe%d", cr), func(b *testing.B) {
			var dst []Match
			for i := 0; b.Loop(); i++ {
				q := queries[i%len(queries)]
				dst, _ = ix.Search(q[:1], 31, dst[:0])
				dst, _ = ix.SearchProbe(q[1:], 31, cr, dst)
			}
		})
	}
	b.StopTimer()
	for _, cr := range []int{0, 1} {
		line := fmt.Sprintf("chunk radius %d (%d chunks):", cr, st.Segments[0].Chunks)
		for _, d := range []int{15, 19, 21, 23, 25, 27, 29, 31} {
			found := 0
			for range 2000 {
				k := rng.IntN(n)
				ms, _ := ix.SearchProbe([]Code{flip(rng, codes[k], d)}, 31, cr, nil)
				for _, m := range ms {
					if m.ID == uint64(k) {
						found++
						break
					}
				}
			}
			line += fmt.Sprintf(" d%d %.3f", d, float64(found)/2000)
		}
		fmt.Println(line)
	}
}
