package pdq

import "image"

// The canonical variants: which of an image's eight dihedral hashes
// represent it whatever its orientation, so that a mirrored or rotated copy
// has a canonical hash in common with the original (up to the usual PDQ
// noise) and an exact search finds it, where matching every orientation
// takes eight searches. They are chosen from two features of the DCT
// coefficients, sums of low frequencies that a mirror negates about one axis
// each and a transpose swaps:
//
//	h = the sum of coefficients (u, v) with u in {2, 4} (even vertical
//	    frequency) and v in {1, 3} (odd horizontal frequency): a mirror
//	    about the vertical axis negates it, one about the horizontal axis
//	    does not;
//	v = the same with the axes swapped.
//
// The canonical variant is the one whose h and v are both non-negative and
// whose |h| is at least |v|: exactly one of the eight when neither feature
// is zero and |h| ≠ |v|. A feature near zero, or two of nearly equal size,
// make that choice fragile under small edits, so every variant that misses
// those conditions by at most CanonicalMargin of the larger feature is
// canonical too, up to MaxCanonical variants, the closest first. On the 23
// photos of testdata (testdata/neardup/photos and ThreatExchange's images)
// mirrored or rotated and re-encoded, a canonical hash in common finds 46 of
// the 69 copies, where a lookup of all eight variants finds 43 and the strict
// choice alone 40 (TestCanonicalRealPhotos; the misses are photos whose
// DCT-derived variants are themselves far from the copy's hash, at sides
// that are even multiples of 64). Images have 1.4 canonical variants on
// average.
//
// Frequencies are 1..16 at indices 0..15 (no DC term), so even frequencies
// are odd indices.

// CanonicalMargin is how far, relative to the larger of the two features, a
// variant may miss the canonical conditions and still count as canonical.
const CanonicalMargin = 0.25

// MaxCanonical is the most canonical variants an image has.
const MaxCanonical = 2

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

// canonical returns the canonical variants of hs.dct, the closest to the
// conditions first (at least one).
func (hs *Hasher) canonical() []Dihedral {
	var c [dctSize * dctSize]float32
	var ds [8]Dihedral
	var miss [8]float32
	n := 0
	for d := Original; d <= FlipMinus1; d++ {
		hs.variant(d, &c)
		h, v := canonicalFeatures(&c)
		m := max(abs(h), abs(v))
		if !(m > 0) { // zero or NaN features: no orientation to prefer
			return []Dihedral{Original}
		}
		x := max(0, -h, -v, abs(v)-abs(h)) / m
		if x <= CanonicalMargin {
			ds[n], miss[n] = d, x
			n++
		}
	}
	// Order by miss (stable: ties keep the variant order), keep the closest.
	for i := 1; i < n; i++ {
		for j := i; j > 0 && miss[j] < miss[j-1]; j-- {
			ds[j], ds[j-1], miss[j], miss[j-1] = ds[j-1], ds[j], miss[j-1], miss[j]
		}
	}
	return append([]Dihedral(nil), ds[:min(n, MaxCanonical)]...)
}

func abs(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}

// HashCanonical returns img's PDQ hash, the hashes of its canonical
// variants (one or two of its eight dihedral hashes; a mirrored or rotated
// copy shares one up to PDQ's usual noise) and its quality. Images with a
// side under 5 pixels get a zero hash, no canonical hashes and quality 0.
func (hs *Hasher) HashCanonical(img image.Image) (h Hash, canon []Hash, quality int) {
	q, ok := hs.coefficientsImage(img)
	if !ok {
		return Hash{}, nil, 0
	}
	return hs.canonicalHashes(q)
}

// canonicalHashes returns the hash and canonical hashes of the
// coefficients computed last, with their quality q.
func (hs *Hasher) canonicalHashes(q int) (h Hash, canon []Hash, quality int) {
	h = hs.bits(Original)
	for _, d := range hs.canonical() {
		if d == Original {
			canon = append(canon, h)
		} else {
			canon = append(canon, hs.bits(d))
		}
	}
	return h, canon, q
}

// DihedralCanonical is Dihedral, also saying which variants are canonical.
func (hs *Hasher) DihedralCanonical(img image.Image) ([8]Hash, []Dihedral, int) {
	var out [8]Hash
	q, ok := hs.coefficientsImage(img)
	if !ok {
		return out, nil, 0
	}
	hs.dihedralBits(&out)
	return out, hs.canonical(), q
}

// AppendHashes appends the bytes of hs to dst, one hash after another (the
// stored form of an image's canonical hashes, domain.Record.PDQCanonical).
func AppendHashes(dst []byte, hs []Hash) []byte {
	for _, h := range hs {
		dst = append(dst, h[:]...)
	}
	return dst
}
