package vecmath

import (
	"math"
	"math/rand/v2"
	"testing"
)

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func TestNormalize(t *testing.T) {
	for _, tc := range []struct {
		in   []float32
		ok   bool
		want []float32
	}{
		{[]float32{3, 4}, true, []float32{0.6, 0.8}},
		{[]float32{0, 0}, false, []float32{0, 0}},
		{[]float32{float32(math.Inf(1)), 1}, false, nil},
		{[]float32{float32(math.NaN()), 1}, false, nil},
		{[]float32{1e-30, 0}, true, []float32{1, 0}},
		{[]float32{3e38, 3e38}, true, []float32{0.70710677, 0.70710677}}, // float32 sum of squares would overflow
	} {
		v := append([]float32(nil), tc.in...)
		if ok := Normalize(v); ok != tc.ok {
			t.Errorf("Normalize(%v) ok = %v, want %v", tc.in, ok, tc.ok)
			continue
		}
		for i := range tc.want {
			if math.Abs(float64(v[i]-tc.want[i])) > 1e-6 {
				t.Errorf("Normalize(%v) = %v, want %v", tc.in, v, tc.want)
			}
		}
	}
}

func TestFuseAndCosine(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	a, b := RandomUnit(r, 64), RandomUnit(r, 64)
	if n := norm(a); math.Abs(n-1) > 1e-6 {
		t.Fatalf("RandomUnit norm %v", n)
	}
	f := Fuse(a, b)
	if n := norm(f); math.Abs(n-1) > 1e-6 {
		t.Fatalf("Fuse norm %v", n)
	}
	// The fused vector is equally close to both (they have the same norm).
	if d := Cosine(f, a) - Cosine(f, b); math.Abs(d) > 1e-6 {
		t.Fatalf("fused vector leans to one side by %v", d)
	}
	if c := Cosine(a, a); math.Abs(c-1) > 1e-6 {
		t.Fatalf("Cosine(a, a) = %v", c)
	}
	if c := Cosine(a, make([]float32, 64)); c != 0 {
		t.Fatalf("Cosine with zero = %v", c)
	}
	x := Normalized([]float32{0, 5})
	if x[1] != 1 {
		t.Fatalf("Normalized = %v", x)
	}
}
