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
