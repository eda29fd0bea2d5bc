package vecmath

import (
	"math/rand/v2"
	"testing"
)

func TestDot2(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	for _, n := range []int{0, 1, 3, 8, 63, 512} {
		v := make([][]float32, 3)
		for i := range v {
			v[i] = make([]float32, n)
			for j := range v[i] {
				v[i][j] = float32(r.NormFloat64())
			}
		}
		a, b := Dot2(v[0], v[1], v[2])
		if a != Dot(v[0], v[1]) || b != Dot(v[0], v[2]) {
			t.Errorf("n=%d: Dot2 = %v, %v; Dot = %v, %v (must agree bit for bit)", n, a, b, Dot(v[0], v[1]), Dot(v[0], v[2]))
		}
	}
}

// TestDotsAgree: Dots, DotsSeq and Score agree bit for bit, and with Dot to
// rounding, for sequential and scattered positions, at dimensions the
// AVX-512 kernel takes (multiples of 64) and others, with the kernel on
// and off; DotsSeq over more vectors than one block.
func TestDotsAgree(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	kernels := []bool{false}
	if hasAVX512FMA {
		kernels = append(kernels, true)
	} else {
		t.Log("no AVX-512 on this CPU: the pure Go path only")
	}
	defer func(v bool) { hasAVX512FMA = v }(hasAVX512FMA)
	for _, avx := range kernels {
		hasAVX512FMA = avx
		for _, dim := range []int{24, 64, 128, 512, 1024} {
			n := 700
			base := make([]float32, n*dim)
			for i := range base {
				base[i] = float32(r.NormFloat64())
			}
			q := base[7*dim : 8*dim]
			var pos []int32
			for range 257 {
				pos = append(pos, int32(r.IntN(n)))
			}
			out := make([]float32, len(pos))
			Dots(q, base, pos, out)
			seqAll := make([]float32, n)
			DotsSeq(q, base, seqAll)
			tol := 1e-4 * float32(dim) / 64
			for j, p := range pos {
				v := base[int(p)*dim : (int(p)+1)*dim]
				if d := out[j] - Dot(q, v); d > tol || d < -tol {
					t.Fatalf("avx %v dim %d: Dots[%d] = %v, Dot = %v", avx, dim, j, out[j], Dot(q, v))
				}
				if s := Score(q, v); s != out[j] {
					t.Fatalf("avx %v dim %d: Score %v differs from Dots %v (must be bit for bit)", avx, dim, s, out[j])
				}
				if seqAll[p] != out[j] {
					t.Fatalf("avx %v dim %d: DotsSeq[%d] %v differs from Dots %v (must be bit for bit)", avx, dim, p, seqAll[p], out[j])
				}
			}
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("Dots with an out-of-range position did not panic")
		}
	}()
	hasAVX512FMA = kernels[len(kernels)-1]
	Dots(make([]float32, 64), make([]float32, 128), []int32{2}, make([]float32, 1))
}
