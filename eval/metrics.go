package eval

import "math"

// The metric conventions (docs/eval.md, ../shared/DESIGN.md):
//
//   - R@K (Flickr30K / MS-COCO protocol): a caption query is correct when
//     its image is among the top K images; an image query is correct when
//     any of its captions is among the top K captions. Semantic R@K counts
//     a hit when the retrieved item's scene description equals the query's.
//   - AP@K = sum over ranks i <= K of P(i)·rel(i), divided by the number of
//     relevant items within the top K (0 when there is none). MAP@ALL takes
//     K = gallery size. Relevance: the two label sets share a label.
//   - Ties rank the lower gallery index first.

// FirstHit is the 0-based position of the first ranked item for which hit
// is true, or -1 when none is.
func FirstHit(ranked []int32, hit func(int32) bool) int {
	for i, g := range ranked {
		if hit(g) {
			return i
		}
	}
	return -1
}

// RecallAt is, for each K, the fraction of queries whose first hit is at a
// position < K (first = -1: no hit). No queries: NaN.
func RecallAt(first []int, ks []int) []float64 {
	out := make([]float64, len(ks))
	if len(first) == 0 {
		for i := range out {
			out[i] = math.NaN()
		}
		return out
	}
	for j, k := range ks {
		n := 0
		for _, f := range first {
			if f >= 0 && f < k {
				n++
			}
		}
		out[j] = float64(n) / float64(len(first))
	}
	return out
}

// AveragePrecisions computes AP@K for each K in ks (K <= 0 or K beyond the
// list means the whole list, i.e. AP@ALL) from rel, the relevance of the
// ranked gallery, best first.
func AveragePrecisions(rel []bool, ks []int) []float64 {
	out := make([]float64, len(ks))
	cut := make([]int, len(ks))
	for j, k := range ks {
		if k <= 0 || k > len(rel) {
			k = len(rel)
		}
		cut[j] = k
	}
	hits, sum := 0, 0.0
	record := func(pos int) { // pos items seen
		for j, c := range cut {
			if c == pos {
				if hits > 0 {
					out[j] = sum / float64(hits)
				}
			}
		}
	}
	record(0)
	for i, r := range rel {
		if r {
			hits++
			sum += float64(hits) / float64(i+1)
		}
		record(i + 1)
	}
	return out
}

// AveragePrecision is AP@K of one ranked relevance list (K <= 0: ALL).
func AveragePrecision(rel []bool, k int) float64 { return AveragePrecisions(rel, []int{k})[0] }

// CeilingTqI is the best expected strict R@K of a caption query whose image
// has g-1 identically described twins in the gallery: a model that
// recognises every scene perfectly still cannot tell the twins apart, and
// ranks the g candidates in an order unrelated to the caption.
func CeilingTqI(g, k int) float64 {
	if g <= 0 {
		return math.NaN()
	}
	return math.Min(1, float64(k)/float64(g))
}

// CeilingIqT is the best expected strict R@K of an image query whose own
// captions (own of them) are indistinguishable from pool-own captions of
// its twins: the chance that K captions drawn from the pool without
// replacement include at least one of its own, 1 - C(pool-own, K)/C(pool, K).
func CeilingIqT(own, pool, k int) float64 {
	if own <= 0 || pool < own {
		return math.NaN()
	}
	if k >= pool-own+1 {
		return 1
	}
	// C(pool-own, k)/C(pool, k) = prod_{i<k} (pool-own-i)/(pool-i)
	p := 1.0
	for i := 0; i < k; i++ {
		p *= float64(pool-own-i) / float64(pool-i)
	}
	return 1 - p
}
