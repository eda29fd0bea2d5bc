package encoders

import "math"

// Normalize scales v to unit L2 norm in place. A zero vector stays zero, and
// so does a vector with a non-finite norm (NaN or Inf components are left
// alone so that callers can detect them).
func Normalize(v []float32) {
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	if ss == 0 || math.IsInf(ss, 0) || math.IsNaN(ss) {
		return
	}
	inv := 1 / math.Sqrt(ss)
	for i, x := range v {
		v[i] = float32(float64(x) * inv)
	}
}

// Cosine is the cosine similarity of a and b (0 when either is zero). It
// panics if the lengths differ.
func Cosine(a, b []float32) float64 {
	if len(a) != len(b) {
		panic("encoders: Cosine of vectors with different lengths")
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
