package neardup

import (
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
// So every indexed window is also filed under its 36 lowest bits
// (lowTable), and each seeding query window looks its own up. An image
// that only these seeds find becomes a candidate when lowMinRefs of its
// windows are found, each within lowHitBits of its seed on the 64 lowest
// bits: one shared key is common by chance (about 7 images a query at
// 10,000 indexed, a number that grows with the index), two are rare. In
// the second stage a pair beyond the window radius whose 64 lowest bits
// differ in at most lowHitBits is a low hit. Low hits weigh as far windows
// do, and a match resting on low hits alone needs two agreeing windows
// and the far weak rule's pixel check (verify). The bits are the stored
// hash's own: nothing is hashed or stored anew.

// lowKeySide is the side of the block of lowest frequencies whose bits key
// the table (36 bits); lowHitSide that of the block a low hit is judged on
// (64 bits).
const (
	lowKeySide = 6
	lowHitSide = 8
)

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

var (
	lowKeyMask = lowMask(lowKeySide)
	lowHitMask = lowMask(lowHitSide)
)

// lowKeyBits lists the key's bits, as (word, bit) of words.
var lowKeyBits = func() (out [][2]uint8) {
	for wi, m := range lowKeyMask {
		for x := m; x != 0; x &= x - 1 {
			out = append(out, [2]uint8{uint8(wi), uint8(bits.TrailingZeros64(x))})
		}
	}
	return out
}()

// lowKey packs the bits of w under lowKeyMask into the low bits of a word.
func lowKey(w [4]uint64) uint64 {
	var k uint64
	for i, b := range lowKeyBits {
		k |= (w[b[0]] >> b[1] & 1) << i
	}
	return k
}

// lowDist is the number of bits of the lowest 8 x 8 frequencies in which
// a and b differ.
func lowDist(a, b [4]uint64) int {
	return bits.OnesCount64((a[0]^b[0])&lowHitMask[0]) + bits.OnesCount64((a[1]^b[1])&lowHitMask[1]) +
		bits.OnesCount64((a[2]^b[2])&lowHitMask[2]) + bits.OnesCount64((a[3]^b[3])&lowHitMask[3])
}

// lowTable finds the window refs whose hashes have a given low key: a
// chained hash table over the refs (which an index hands out in order and
// never reuses), 16 bytes per window. Not safe for concurrent use: the
// index writes it under its write lock and reads it under its read lock.
type lowTable struct {
	heads []uint32 // bucket -> 1 + the newest ref in it (0: none)
	next  []uint32 // ref -> 1 + the next older ref in its bucket (0: none)
	keys  []uint64 // ref -> its low key
	mask  uint64   // len(heads)-1
}

// lowBucket spreads a key over the buckets (a 64-bit mix, splitmix64's
// finaliser).
func lowBucket(k, mask uint64) uint64 {
	k ^= k >> 30
	k *= 0xbf58476d1ce4e5b9
	k ^= k >> 27
	k *= 0x94d049bb133111eb
	k ^= k >> 31
	return k & mask
}

// insert adds ref, the next ref (len of the refs so far), with key k.
func (t *lowTable) insert(ref uint32, k uint64) {
	if int(ref) != len(t.keys) {
		panic("neardup: low table refs out of order")
	}
	t.keys = append(t.keys, k)
	t.next = append(t.next, 0)
	if len(t.keys) > len(t.heads) {
		t.grow()
		return
	}
	b := lowBucket(k, t.mask)
	t.next[ref] = t.heads[b]
	t.heads[b] = ref + 1
}

// grow doubles the buckets (at least 1,024) and chains every ref again.
func (t *lowTable) grow() {
	n := max(1024, 2*len(t.heads))
	t.heads = make([]uint32, n)
	t.mask = uint64(n - 1)
	for ref, k := range t.keys {
		b := lowBucket(k, t.mask)
		t.next[ref] = t.heads[b]
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
	n0, walked := len(buf), 0
	for r := t.heads[lowBucket(k, t.mask)]; r != 0; r = t.next[r-1] {
		if walked++; walked > lowMaxWalk {
			return buf[:n0], false
		}
		if t.keys[r-1] != k {
			continue
		}
		if len(buf)-n0 == lowMaxRefs {
			return buf[:n0], false
		}
		buf = append(buf, r-1)
	}
	return buf, true
}
