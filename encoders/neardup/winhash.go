package neardup

import (
	"math"

	"github.com/xmodal/xmodal/encoders/pdq"
)

// Window hashes are PDQ's construction on a smaller grid: the window is
// sampled on winSize x winSize points, transformed by a 2-D DCT-II keeping
// frequencies 1..16 along each axis (the same relative frequencies PDQ
// keeps of its 64x64 plane), and each of the 256 coefficients becomes a
// bit set when it exceeds their median. Dihedral variants come from the
// coefficients as in PDQ (a mirror negates the odd frequencies along its
// axis, a transpose transposes). The bit order is PDQ's.

const hashFreqs = 16

// winDCT is the hashFreqs x winSize DCT-II basis (frequencies 1..16).
var winDCT = func() (m [hashFreqs][winSize]float32) {
	s := math.Sqrt(2.0 / winSize)
	for i := range m {
		for j := range m[i] {
			m[i][j] = float32(s * math.Cos(math.Pi/2/winSize*float64(i+1)*float64(2*j+1)))
		}
	}
	return m
}()

// winCoeffs computes the 16x16 DCT coefficients of a winSize x winSize
// grid.
func winCoeffs(g []float32, out *[hashFreqs][hashFreqs]float32) {
	var t [hashFreqs][winSize]float32 // D * G
	for i := range hashFreqs {
		ti := &t[i]
		for k := range winSize {
			d := winDCT[i][k]
			row := g[k*winSize : (k+1)*winSize]
			for j, v := range row {
				ti[j] += d * v
			}
		}
	}
	for i := range hashFreqs {
		ti := &t[i]
		for j := range hashFreqs {
			dj := &winDCT[j]
			var s float32
			for k := range winSize {
				s += ti[k] * dj[k]
			}
			out[i][j] = s
		}
	}
}

// variantOps is how each dihedral variant reads the coefficients (as in
// encoders/pdq: negate even indices, i.e. odd frequencies, along mirrored
// axes; transpose for the transposing variants).
var variantOps = [8]struct{ transpose, negRows, negCols bool }{
	pdq.Original:   {false, false, false},
	pdq.Rotate90:   {true, false, true},
	pdq.Rotate180:  {false, true, true},
	pdq.Rotate270:  {true, true, false},
	pdq.FlipX:      {false, true, false},
	pdq.FlipY:      {false, false, true},
	pdq.FlipPlus1:  {true, false, false},
	pdq.FlipMinus1: {true, true, true},
}

// variantCoeffs lays variant d of the coefficients out in v in the hash's
// bit order (reference bit k is v[k]).
func variantCoeffs(c *[hashFreqs][hashFreqs]float32, d pdq.Dihedral, v *[hashFreqs * hashFreqs]float32) {
	op := variantOps[d]
	for i := range hashFreqs {
		for j := range hashFreqs {
			x := c[i][j]
			if (op.negRows && i&1 == 0) != (op.negCols && j&1 == 0) {
				x = -x
			}
			if op.transpose {
				v[j*hashFreqs+i] = x
			} else {
				v[i*hashFreqs+j] = x
			}
		}
	}
}

// coeffHash thresholds variant d of the coefficients at their median.
func coeffHash(c *[hashFreqs][hashFreqs]float32, d pdq.Dihedral) pdq.Hash {
	var v [hashFreqs * hashFreqs]float32
	variantCoeffs(c, d, &v)
	s := v
	med := kth(s[:], len(s)/2-1)
	var h pdq.Hash
	for k, x := range v {
		if x > med {
			h[31-k>>3] |= 1 << (k & 7)
		}
	}
	return h
}

// kth returns the k-th smallest value of s (0-based), reordering s: the
// value slices.Sort(s) would put at k, found by quickselect.
func kth(s []float32, k int) float32 {
	lo, hi := 0, len(s)-1
	for lo < hi {
		// Median of three as the pivot.
		mid := lo + (hi-lo)/2
		a, b, c := s[lo], s[mid], s[hi]
		p := max(min(a, b), min(max(a, b), c))
		i, j := lo, hi
		for i <= j {
			for s[i] < p {
				i++
			}
			for s[j] > p {
				j--
			}
			if i <= j {
				s[i], s[j] = s[j], s[i]
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return s[k]
		}
	}
	return s[k]
}

// gridQuality is PDQ's quality heuristic scaled to the window grid: the
// mean absolute difference of neighbours (grey levels), times 100/255,
// summed and scaled so that a grid of PDQ quality 100 scores about 100.
func gridQuality(g []float32) int {
	sum := 0
	for y := range winSize {
		for x := range winSize {
			v := g[y*winSize+x]
			if x+1 < winSize {
				sum += absInt(int((v - g[y*winSize+x+1]) * 100 / 255))
			}
			if y+1 < winSize {
				sum += absInt(int((v - g[(y+1)*winSize+x]) * 100 / 255))
			}
		}
	}
	// PDQ divides by 90 on a 64x64 grid (8064 neighbour pairs); a grid of
	// n pairs gets the same per-pair scale, doubled for the doubled step.
	pairs := 2 * winSize * (winSize - 1)
	return min(sum*8064/(pairs*90*2), 100)
}

func absInt(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
