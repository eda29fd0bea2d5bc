// Package vecmath is the one place for the vector rules every stage shares:
// L2 normalisation (accumulated in float64), the fused vector of a post, the
// cosine of two vectors, and random unit vectors for tests and benchmarks.
package vecmath

import (
	"math"
	"math/rand/v2"
)

// Normalize scales v to unit L2 norm in place and reports whether it could: a
// zero vector, or one with a non-finite norm (NaN or Inf components), is left
// as it is and reported false, so that callers can refuse it.
func Normalize(v []float32) bool {
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	if ss == 0 || math.IsInf(ss, 0) || math.IsNaN(ss) {
		return false
	}
	inv := 1 / math.Sqrt(ss)
	for i, x := range v {
		v[i] = float32(float64(x) * inv)
	}
	return true
}

// Normalized returns a unit-length copy of v (see Normalize; the copy of a
// vector that cannot be normalised is returned unchanged).
func Normalized(v []float32) []float32 {
	out := make([]float32, len(v))
	copy(out, v)
	Normalize(out)
	return out
}

// Fuse returns the fused vector of a post that has an image and a text:
// normalise(image + text). It panics if the lengths differ.
func Fuse(image, text []float32) []float32 {
	if len(image) != len(text) {
		panic("vecmath: Fuse of vectors with different lengths")
	}
	out := make([]float32, len(image))
	for i := range out {
		out[i] = image[i] + text[i]
	}
	Normalize(out)
	return out
}

// Cosine is the cosine similarity of a and b (0 when either is zero). It
// panics if the lengths differ.
func Cosine(a, b []float32) float64 {
	if len(a) != len(b) {
		panic("vecmath: Cosine of vectors with different lengths")
	}
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	if na == 0 || nb == 0 {
		return 0
	}
	return dot / math.Sqrt(na*nb)
}

// RandomUnit returns a random unit vector of dim components (Gaussian
// components, normalised: uniform on the sphere).
func RandomUnit(r *rand.Rand, dim int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	Normalize(v)
	return v
}
