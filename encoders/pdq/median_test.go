package pdq

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestKthSmallest: selection gives the value a sort puts at every index,
// for values with many ties (a handful of distinct values, signed zeros)
// and without.
func TestKthSmallest(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 400 {
		n := 1 + rng.IntN(300)
		a := make([]float32, n)
		for i := range a {
			switch trial % 4 {
			case 0:
				a[i] = float32(rng.NormFloat64())
			case 1:
				a[i] = float32(rng.IntN(3)) // few values: ties everywhere
			case 2:
				a[i] = []float32{0, float32(math.Copysign(0, -1)), 1, -1}[rng.IntN(4)]
			default:
				a[i] = float32(n - i) // descending
			}
		}
		sorted := slices.Clone(a)
		slices.Sort(sorted)
		for k := range n {
			w := slices.Clone(a)
			if got := kthSmallest(w, k); got != sorted[k] {
				t.Fatalf("trial %d: %d values, k %d: %v, sort has %v", trial, n, k, got, sorted[k])
			}
		}
	}
}

// sortBits is the variant's hash as the reference computes it: threshold
// at the 128th smallest of the sorted coefficients.
func sortBits(hs *Hasher, d Dihedral) Hash {
	var v [dctSize * dctSize]float32
	hs.variant(d, &v)
	s := v
	slices.Sort(s[:])
	return threshold(&v, s[len(s)/2-1])
}

// TestDihedralBitsMatchSort: the eight hashes from four shared medians
// (found by selection) are those of sorting each variant, on random
// coefficients, coefficients with many ties (some at the median), and
// with a NaN.
func TestDihedralBitsMatchSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 300 {
		var hs Hasher
		for i := range hs.dct {
			for j := range hs.dct[i] {
				switch trial % 3 {
				case 0:
					hs.dct[i][j] = float32(rng.NormFloat64() * 100)
				case 1:
					hs.dct[i][j] = float32(rng.IntN(5) - 2)
				default:
					hs.dct[i][j] = float32(rng.IntN(2))
				}
			}
		}
		if trial%50 == 7 {
			hs.dct[3][5] = float32(math.NaN())
		}
		var got [8]Hash
		hs.dihedralBits(&got)
		for d := range got {
			if want := sortBits(&hs, Dihedral(d)); got[d] != want {
				t.Fatalf("trial %d: %v differs from the sorted median's hash", trial, Dihedral(d))
			}
			if b := hs.bits(Dihedral(d)); b != got[d] {
				t.Fatalf("trial %d: bits(%v) differs from dihedralBits", trial, Dihedral(d))
			}
		}
	}
}

func BenchmarkDihedralBits(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	var hs Hasher
	for i := range hs.dct {
		for j := range hs.dct[i] {
			hs.dct[i][j] = float32(rng.NormFloat64() * 100)
		}
	}
	b.Run("select", func(b *testing.B) {
		var out [8]Hash
		for b.Loop() {
			hs.dihedralBits(&out)
		}
	})
	b.Run("sort", func(b *testing.B) {
		var out [8]Hash
		for b.Loop() {
			for d := range out {
				out[d] = sortBits(&hs, Dihedral(d))
			}
		}
	})
}
