package neardup

import (
	"math"
	"math/bits"

	"github.com/xmodal/xmodal/encoders/pdq"
)

// Low-frequency seeds of the window search.
//
// A window's hash has one bit per DCT coefficient of frequencies 1-16 in
// each direction (pdq: reference bit k is coefficient row k/16, column
// k%16), set when the coefficient exceeds the median of all 256. JPEG at
// quality 30 moves a small window's hash more than the window radius in
// most cases (its 8 x 8 blocks fall at the scale of the hash's higher
// frequencies), but the bits of the lowest frequencies hold: the
// coefficients there are large, far from the median. Measured on the 30
// crop75+jpeg30 re-posts of 200 generated pictures that the window search
// missed (24 had no window of their original within the radius): 24 of
// the 30 shared with their original windows whose 64 bits of the 8 x 8
// lowest frequencies differ in at most 4 (clusters of 2-12 agreeing
// windows for most), and 20 windows whose 36 bits of the 6 x 6 lowest are
// equal, while the other 29 originals shared at most one such window with
// each query, which the pixel check failed (docs/neardup.md).
//
// So every indexed window is also filed under its lowest bits (lowKey:
// 28 of them since 2026-12-05, 36 before; lowTable), and each seeding
// query window looks its own up. An image that only these seeds find
// becomes a candidate when lowMinRefs of its windows are found, each
// within lowHitBits of its seed on the 64 lowest bits: one shared key is
// common by chance (about 7 images a query at 10,000 indexed, a number
// that grows with the index), two are rare. In
// the second stage a pair beyond the window radius whose 64 lowest bits
// differ in at most lowHitBits is a low hit. Low hits weigh as far windows
// do, and a match resting on low hits alone needs two agreeing windows
// and the far weak rule's pixel check (verify). The bits are the stored
// hash's own: nothing is hashed or stored anew.

// lowKeySum bounds the frequencies whose bits key the table: those of
// rows and columns i, j (0-based, frequencies i+1 and j+1) with i + j <=
// lowKeySum, the lowest triangle of 28 bits (lowKeyBits); lowHitSide is
// the side of the block a low hit is judged on (64 bits). The key was the
// 36 bits of the 6 x 6 block until 2026-12-05: the triangle leaves out the
// block's highest frequencies (i + j of 7-10), whose bits flip first, and
// keeps 0.25 keys a window at a million images (64 million windows).
const (
	lowKeySum  = 6
	lowKeyBits = (lowKeySum + 1) * (lowKeySum + 2) / 2
	lowHitSide = 8
)

// The windows of a query's crop plane (the whole image drawn at cropScale
// of the working size, plain and smoothed) also look up their key with
// each of its lowFlips least certain bits flipped (keyFlips: the bits
// whose coefficients lie nearest the hash's median, which noise flips
// first). JPEG at quality 30 over a 75 % crop both moves the plane's
// keypoints, so that the query's windows lie a few per cent off the
// original's frames, and blurs the content: of the windows that still
// correspond to an original's, most differ from it in 2-8 of their 64
// lowest bits, which often includes a key bit. In the eval's real photos
// (ten seeds, PDQ quality >= 50) crop75+jpeg30 found 177 of 200 with the
// 36-bit key, 178 with the 28-bit one, 180 with the 8 least certain bits
// flipped, 181 with all 28 (3.5 times the probes: about 7,000 a query
// instead of 2,000), 179 with 2 or 4; pairs of the 3-6 least certain
// flipped together found none more, nor did flips on the other planes.

// LowHitBits is the most bits in which the 64 bits of the lowest 8 x 8
// frequencies of a query window and an indexed window may differ for a low
// hit.
const LowHitBits = 6

// lowMask returns the bits of a hash (as words) of the lowest side x side
// frequencies.
func lowMask(side int) [4]uint64 {
	var h pdq.Hash
	for i := range side {
		for j := range side {
			k := i*16 + j
			h[31-k>>3] |= 1 << (k & 7)
		}
	}
	return words(h)
}

// lowHitMask has bits in words 2 and 3 only (the reference bits under
// 128 lie in the hash's last 16 bytes): windowHits reads those two.
var lowHitMask = lowMask(lowHitSide)

// lowKey packs the bits of w of the lowest frequencies (lowKeySum) into
// the low 28 bits of a word, row by row. Row i holds the 7-i bits of
// columns 0..6-i: reference bits 16i..16i+6-i, the low bits of the hash's
// byte 31-2i, which lie at bit 56-16i of w[3] for rows 0-3 and at bit
// 56-16(i-4) of w[2] for rows 4-6.
func lowKey(w [4]uint64) uint64 {
	return w[3]>>56&127 | (w[3]>>40&63)<<7 | (w[3]>>24&31)<<13 | (w[3]>>8&15)<<18 |
		(w[2]>>56&7)<<22 | (w[2]>>40&3)<<25 | (w[2]>>24&1)<<27
}

// lowDist is the number of bits of the lowest 8 x 8 frequencies in which
// a and b differ.
func lowDist(a, b [4]uint64) int {
	return bits.OnesCount64((a[0]^b[0])&lowHitMask[0]) + bits.OnesCount64((a[1]^b[1])&lowHitMask[1]) +
		bits.OnesCount64((a[2]^b[2])&lowHitMask[2]) + bits.OnesCount64((a[3]^b[3])&lowHitMask[3])
}

// lowTable finds the window refs whose hashes have a given low key: a
// chained hash table over the refs (which an index hands out in order and
// never reuses), 12 bytes a window. A key is held as a 32-bit tag (its
// mix), whose low bits pick its bucket: a lookup may return a ref of
// another key whose tag is the same (with 2^26 buckets, one ref in 64 of
// the other keys in a bucket; windowHits checks each ref's own hash). A
// lookup reads one word a ref in the bucket. Not safe for concurrent use: the index
// writes it under its write lock and reads it under its read lock.
type lowTable struct {
	heads []uint32 // bucket -> 1 + the newest ref in it (0: none)
	links []uint64 // ref -> its tag << 32 | 1 + the next older ref in its bucket
	mask  uint32   // len(heads)-1
}

// lowTag mixes a key into its tag (splitmix64's finaliser, high half).
func lowTag(k uint64) uint32 {
	k ^= k >> 30
	k *= 0xbf58476d1ce4e5b9
	k ^= k >> 27
	k *= 0x94d049bb133111eb
	k ^= k >> 31
	return uint32(k >> 32)
}

// insert adds ref, the next ref (len of the refs so far), with key k.
func (t *lowTable) insert(ref uint32, k uint64) {
	if int(ref) != len(t.links) {
		panic("neardup: low table refs out of order")
	}
	tag := lowTag(k)
	t.links = append(t.links, uint64(tag)<<32)
	if len(t.links) > len(t.heads) {
		t.grow()
		return
	}
	b := tag & t.mask
	t.links[ref] |= uint64(t.heads[b])
	t.heads[b] = ref + 1
}

// grow doubles the buckets (at least 1,024) and chains every ref again.
func (t *lowTable) grow() {
	n := max(1024, 2*len(t.heads))
	t.heads = make([]uint32, n)
	t.mask = uint32(n - 1)
	for ref, l := range t.links {
		tag := uint32(l >> 32)
		b := tag & t.mask
		t.links[ref] = uint64(tag)<<32 | uint64(t.heads[b])
		t.heads[b] = uint32(ref) + 1
	}
}

// lowMaxRefs bounds the windows one key seeds: a key more windows share
// (a low-frequency pattern common to many pictures, such as a plain
// gradient) seeds nothing, as its images would each cost the second
// stage's comparisons for little evidence. lowMaxWalk bounds a lookup's
// walk along its bucket's chain (a bucket that a common key made long
// seeds nothing either): with at least as many buckets as refs, chains
// are a ref or two long.
const (
	lowMaxRefs = 64
	lowMaxWalk = 4 * lowMaxRefs
)

// lowMinRefs is the least windows of an image that the low seeds must
// find for them alone to make it a candidate, and the least agreeing
// windows of a match on low hits alone.
const lowMinRefs = 2

// lookup appends to buf the refs with key k, newest first, and reports
// whether it found them all within the bounds (if not, buf is returned as
// it came).
func (t *lowTable) lookup(k uint64, buf []uint32) ([]uint32, bool) {
	if len(t.heads) == 0 {
		return buf, true
	}
	tag := lowTag(k)
	n0, walked := len(buf), 0
	for r := t.heads[tag&t.mask]; r != 0; {
		if walked++; walked > lowMaxWalk {
			return buf[:n0], false
		}
		l := t.links[r-1]
		if uint32(l>>32) == tag {
			if len(buf)-n0 == lowMaxRefs {
				return buf[:n0], false
			}
			buf = append(buf, r-1)
		}
		r = uint32(l)
	}
	return buf, true
}

// lowFlips is the number of a crop-plane window's key bits, least certain
// first, that the low seeds flip one at a time.
const lowFlips = 8

// keyFlips returns the low key's bits (their places in lowKey's word) in
// the order of how near the median variant d's coefficients lie, the
// nearest lowFlips; h is coeffHash(c, d). The median is the variant's
// largest coefficient whose bit is clear (coeffHash sets the bits of
// those above it), found from h without a selection.
func keyFlips(c *[hashFreqs][hashFreqs]float32, d pdq.Dihedral, h pdq.Hash) [lowFlips]uint8 {
	sg := &variantSigns[d]
	tr := variantOps[d].transpose
	med := float32(math.Inf(-1))
	for i := range hashFreqs {
		for j := range hashFreqs {
			k := i*hashFreqs + j // the variant's place of source (i, j)
			if tr {
				k = j*hashFreqs + i
			}
			if h[31-k>>3]>>(k&7)&1 == 0 {
				med = max(med, sg[i][j]*c[i][j])
			}
		}
	}
	// The lowFlips nearest, kept in order by insertion.
	var out [lowFlips]uint8
	var dist [lowFlips]float32
	n := 0
	for i := 0; i <= lowKeySum; i++ {
		for j := 0; i+j <= lowKeySum; j++ {
			// Key place (i, j) of the variant holds source coefficient
			// (i, j), or (j, i) when the variant transposes.
			si, sj := i, j
			if tr {
				si, sj = j, i
			}
			x := abs32(sg[si][sj]*c[si][sj] - med)
			k := min(n, lowFlips)
			for k > 0 && dist[k-1] > x {
				if k < lowFlips {
					dist[k], out[k] = dist[k-1], out[k-1]
				}
				k--
			}
			if k < lowFlips {
				dist[k], out[k] = x, uint8(n)
			}
			n++
		}
	}
	return out
}

// variantSigns are the signs that variant d gives source coefficient
// (i, j) (coeffHash).
var variantSigns = func() (s [8][hashFreqs][hashFreqs]float32) {
	for d, op := range variantOps {
		for i := range hashFreqs {
			for j := range hashFreqs {
				s[d][i][j] = 1
				if (op.negRows && i&1 == 0) != (op.negCols && j&1 == 0) {
					s[d][i][j] = -1
				}
			}
		}
	}
	return s
}()

func abs32(x float32) float32 {
	if x < 0 {
		return -x
	}
	return x
}
