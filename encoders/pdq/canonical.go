package pdq

import "image"

// The canonical variant: which of an image's eight dihedral hashes
// represents it whatever its orientation, so that a mirrored or rotated copy
// has the same canonical hash as the original (up to the usual PDQ noise)
// and one exact search finds it, where matching every orientation takes
// eight searches. It is chosen from two features of the DCT coefficients,
// sums of low frequencies that a mirror negates about one axis each and a
// transpose swaps:
//
//	h = the sum of coefficients (u, v) with u in {2, 4} (even vertical
//	    frequency) and v in {1, 3} (odd horizontal frequency): a mirror
//	    about the vertical axis negates it, one about the horizontal axis
//	    does not;
//	v = the same with the axes swapped.
//
// The canonical variant is the one whose h and v are both non-negative and
// whose |h| is at least |v| (the dominant left-right gradient lies along
// the rows): exactly one of the eight when neither feature is zero and
// |h| ≠ |v|. An image whose two features are nearly equal or near zero
// can pick another variant under a small edit; its copies in the same
// orientation still match by the original hash, so the canonical hash only
// adds matches. Measured on the re-post generator's originals
// (bench/results/clusters-quality.txt): mirrored and rotated copies match
// their original's canonical hash within 31 bits 40 of 40 times each.
//
// Frequencies are 1..16 at indices 0..15 (no DC term), so even frequencies
// are odd indices.

// canonicalFeatures returns h and v of the coefficients c (row-major 16x16).
func canonicalFeatures(c *[dctSize * dctSize]float32) (h, v float32) {
	for _, u := range [2]int{1, 3} { // frequencies 2 and 4
		for _, w := range [2]int{0, 2} { // frequencies 1 and 3
			h += c[u*dctSize+w]
			v += c[w*dctSize+u]
		}
	}
	return h, v
}

// canonical returns the canonical variant of hs.dct.
func (hs *Hasher) canonical() Dihedral {
	var c [dctSize * dctSize]float32
	for d := Original; d <= FlipMinus1; d++ {
		hs.variant(d, &c)
		h, v := canonicalFeatures(&c)
		if h >= 0 && v >= 0 && abs(h) >= abs(v) {
			return d
		}
	}
	return Original // only for features that are NaN
}

func abs(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}

// HashCanonical returns img's PDQ hash, its canonical variant's hash (one of
// its eight dihedral hashes, the same for a mirrored or rotated copy up to
// PDQ's usual noise) and its quality. Images with a side under 5 pixels get
// zero hashes and quality 0.
func (hs *Hasher) HashCanonical(img image.Image) (h, canon Hash, quality int) {
	q, ok := hs.coefficientsImage(img)
	if !ok {
		return Hash{}, Hash{}, 0
	}
	d := hs.canonical()
	h = hs.bits(Original)
	if d == Original {
		return h, h, q
	}
	return h, hs.bits(d), q
}

// DihedralCanonical is Dihedral, also saying which variant is canonical.
func (hs *Hasher) DihedralCanonical(img image.Image) ([8]Hash, Dihedral, int) {
	var out [8]Hash
	q, ok := hs.coefficientsImage(img)
	if !ok {
		return out, Original, 0
	}
	hs.dihedralBits(&out)
	return out, hs.canonical(), q
}
