package vecmath

import (
	"math"
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

// DotsColumns64 is within the rounding bound of the inner products (float64
// reference) with the AVX2 kernel and without, for 0 to 100 components.
func TestDotsColumns64(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	kernels := []bool{false}
	if hasAVX2FMA {
		kernels = append(kernels, true)
	} else {
		t.Log("no AVX2 on this CPU: the pure Go path only")
	}
	defer func(v bool) { hasAVX2FMA = v }(hasAVX2FMA)
	for _, avx := range kernels {
		hasAVX2FMA = avx
		for _, k := range []int{0, 1, 7, 32, 64, 100} {
			q := make([]float32, k)
			for i := range q {
				q[i] = float32(r.NormFloat64())
			}
			cols := make([]float32, 64*k)
			for i := range cols {
				cols[i] = float32(r.NormFloat64())
			}
			var out [64]float32
			for i := range out {
				out[i] = 42 // overwritten
			}
			DotsColumns64(q, cols, &out)
			for row := range 64 {
				var exact, abs float64
				for d := range k {
					p := float64(q[d]) * float64(cols[d*64+row])
					exact += p
					abs += math.Abs(p)
				}
				if err := math.Abs(float64(out[row]) - exact); err > float64(k+1)*0x1p-24*abs || (k == 0 && out[row] != 0) {
					t.Fatalf("avx2 %v, %d components: row %d = %v, exact %v (error %g over the bound)", avx, k, row, out[row], exact, err)
				}
			}
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("DotsColumns64 with short cols did not panic")
		}
	}()
	var out [64]float32
	DotsColumns64(make([]float32, 2), make([]float32, 127), &out)
}
