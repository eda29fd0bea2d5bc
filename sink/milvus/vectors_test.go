package milvus

// Vector helpers of the benchmarks (sink_bench_test.go and, with -tags bench,
// bench_test.go).

import (
	"math"
	"math/rand/v2"
)

// randVec is a unit vector: random, or near centre (spread 0..1) when given.
func randVec(r *rand.Rand, dim int, centre []float32, spread float64) []float32 {
	v := make([]float32, dim)
	var n float64
	for i := range v {
		x := r.NormFloat64()
		if centre != nil {
			x = float64(centre[i])*math.Sqrt(float64(dim)) + spread*x*3
		}
		v[i] = float32(x)
		n += x * x
	}
	for i := range v {
		v[i] = float32(float64(v[i]) / math.Sqrt(n))
	}
	return v
}

// simhash codes v by the signs of its dot products with planes.
func simhash(v []float32, planes [][]float32) []byte {
	out := make([]byte, len(planes)/8)
	for i, p := range planes {
		var s float32
		for j := range v {
			s += v[j] * p[j]
		}
		if s > 0 {
			out[i/8] |= 0x80 >> (i % 8)
		}
	}
	return out
}
