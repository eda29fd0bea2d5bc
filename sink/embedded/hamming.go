package embedded

import (
	"math"
	"math/bits"
	"sync"

	"github.com/xmodal/xmodal/domain"
)

// ref names a record during a scan: its segment in the high bits, its
// position in the low 32.
type ref uint64

func mkref(seg, pos int) ref { return ref(uint64(seg)<<32 | uint64(uint32(pos))) }
func (r ref) seg() int       { return int(r >> 32) }
func (r ref) pos() int       { return int(uint32(r)) }

// hamSel selects the k records of smallest Hamming distance (ties by primary
// key) while a scan offers them. Distances are small integers, so it keeps
// one bucket per distance up to a threshold thr instead of a heap: a record
// at distance d <= thr is appended to bucket d, and thr falls as soon as the
// buckets below it hold k records. The scan's fast path is then one compare
// per record; only the rare record within thr reaches add. Selections are
// pooled (newHamSel, release): their buckets keep their capacity.
type hamSel struct {
	k   int
	thr int // a record is kept only at distance <= thr
	n   int // records in buckets 0..thr
	b   [][]ref
	// keyed is scratch for the tie-break of the threshold bucket.
	keyed []keyedRef
}

var hamSelPool sync.Pool

func newHamSel(k, maxDist int) *hamSel {
	s, _ := hamSelPool.Get().(*hamSel)
	if s == nil {
		s = &hamSel{}
	}
	s.reset(k, maxDist)
	return s
}

// reset empties s for a selection of k within maxDist.
func (s *hamSel) reset(k, maxDist int) {
	s.k, s.thr, s.n = k, maxDist, 0
	if cap(s.b) < maxDist+1 {
		s.b = append(s.b[:cap(s.b)], make([][]ref, maxDist+1-cap(s.b))...)
	}
	s.b = s.b[:maxDist+1]
	for i := range s.b {
		s.b[i] = s.b[i][:0]
	}
}

// release returns s to the pool; the caller must not use it afterwards.
func (s *hamSel) release() {
	if len(s.keyed) > 1<<20 {
		s.keyed = nil
	}
	hamSelPool.Put(s)
}

// add keeps r at distance d (the caller checked d <= s.thr).
func (s *hamSel) add(d int, r ref) {
	s.b[d] = append(s.b[d], r)
	s.n++
	for s.thr > 0 && s.n-len(s.b[s.thr]) >= s.k {
		s.n -= len(s.b[s.thr])
		s.b[s.thr] = s.b[s.thr][:0]
		s.thr--
	}
}

// hamHit is a selected record with its distance.
type hamHit struct {
	r ref
	d int
}

// each calls f for the k nearest, by distance; within one distance the
// order is by primary key (o) when ordered is true, else unspecified (the
// set is the same: the records of the threshold distance that make the
// cut are the smallest by primary key).
func (s *hamSel) each(o *pkOrder, ordered bool, f func(r ref, d int)) {
	left := s.k
	for d := 0; d <= s.thr && left > 0; d++ {
		b := s.b[d]
		if len(b) == 0 {
			continue
		}
		if len(b) <= left && !ordered {
			for _, r := range b {
				f(r, d)
			}
			left -= len(b)
			continue
		}
		kb := o.keyed(s.keyed[:0], b)
		s.keyed = kb
		if len(kb) > left {
			o.selectSmallest(kb, left)
			kb = kb[:left]
		}
		if ordered {
			o.sort(kb)
		}
		for _, x := range kb {
			f(x.r, d)
		}
		left -= len(kb)
	}
}

// top returns the k nearest, by distance then primary key (o). With ordered
// false the order within a distance is unspecified (the set is the same).
func (s *hamSel) top(o *pkOrder, ordered bool) []hamHit {
	out := make([]hamHit, 0, min(s.k, s.n))
	s.each(o, ordered, func(r ref, d int) { out = append(out, hamHit{r, d}) })
	return out
}

// The threshold seed (seedThreshold): a selection of k of n records starts
// at thr = the maximum distance and lowers it as its buckets fill, keeping on
// the way records that a later one pushes out: about k·ln(n/k) of them, most
// of the work of a hybrid scan with a large C. A sample of the codes
// predicts where the k-th distance lies, so the scan can start just above
// it. Seeding applies from seedMinRecords records and when the sample
// expects at least seedMinExpected of its records within the k-th distance.
var (
	seedMinRecords  = 1 << 15
	seedMinExpected = 8.0
	seedChunks      = 64 // runs of consecutive records sampled, spread over the segments
	seedChunkSize   = 64
)

// seedThreshold returns a distance within which, by a sample of the
// records (accepted by ok) of segs, at least k of the records lie with a
// high probability; maxDist when it cannot tell. The caller checks the
// scan's outcome: fewer than k records kept means the seed was too low.
func seedThreshold(segs []*segment, codes [][]uint64, k int, ok acceptFunc, maxDist int) int {
	n := 0
	for _, s := range segs {
		if len(s.codeOK) == s.len() {
			n += s.len()
		}
	}
	m := seedChunks * seedChunkSize
	if n < seedMinRecords || n < 4*m {
		return maxDist
	}
	if float64(k)*float64(m)/float64(n) < seedMinExpected {
		return maxDist
	}
	var hist [257]int32
	var h []int32
	if maxDist < len(hist) {
		h = hist[:maxDist+1]
	} else {
		h = make([]int32, maxDist+1)
	}
	sampled := 0
	for i, s := range segs {
		sn := s.len()
		if len(s.codeOK) != sn || sn == 0 {
			continue
		}
		q := codes[i]
		chunks := max(1, int(math.Round(float64(seedChunks)*float64(sn)/float64(n))))
		for c := range chunks {
			lo := int(int64(c) * int64(sn) / int64(chunks))
			for pos := lo; pos < min(lo+seedChunkSize, sn); pos++ {
				sampled++
				if ok(s, pos) {
					h[distanceAt(s.codes, q, pos)]++
				}
			}
		}
	}
	// lambda sample records are expected within the k-th distance; the
	// seed is the distance within which the sample holds comfortably more
	// (4 standard deviations of a Poisson count, and 4).
	lambda := float64(k) * float64(sampled) / float64(n)
	target := int(math.Ceil(lambda + 4*math.Sqrt(lambda) + 4))
	cum := 0
	for d, c := range h {
		cum += int(c)
		if cum >= target {
			return d
		}
	}
	return maxDist
}

// accept reports whether the record at pos may be returned: it has a code
// (for code scans) and passes the filter.
type acceptFunc func(s *segment, pos int) bool

func codeAccept(f *domain.Filter) acceptFunc {
	if f.Empty() {
		return func(s *segment, pos int) bool { return s.codeOK[pos] }
	}
	return func(s *segment, pos int) bool { return s.codeOK[pos] && f.Match(s.recs[pos]) }
}

// scanCodes offers every record of s to sel by the Hamming distance of its
// code to q (words uint64s). Kernels unrolled for 1, 2 and 4 words; the
// fast path is one branch per record (or per four records for one word).
func scanCodes(s *segment, si int, q []uint64, sel *hamSel, ok acceptFunc) {
	switch len(q) {
	case 1:
		scan1(s, si, q[0], sel, ok)
	case 2:
		scan2(s, si, q[0], q[1], sel, ok)
	case 4:
		scan4(s, si, (*[4]uint64)(q), sel, ok)
	default:
		scanN(s, si, q, sel, ok)
	}
}

// The kernels below are leaf loops (no calls but the POPCNT fallback), so
// their state stays in registers: each returns the first record at or after
// from that may be within t1-1 bits (for the unrolled ones, the start of the
// block of records holding it), or n. The caller checks those records
// exactly and resumes after them.

func next1(c []uint64, q uint64, from, t1 int) int {
	i := from
	for ; i+4 <= len(c); i += 4 {
		c4 := c[i : i+4 : i+4]
		d0 := bits.OnesCount64(c4[0] ^ q)
		d1 := bits.OnesCount64(c4[1] ^ q)
		d2 := bits.OnesCount64(c4[2] ^ q)
		d3 := bits.OnesCount64(c4[3] ^ q)
		// Any d < t1 makes d-t1 negative: one branch for four records.
		if (d0-t1)|(d1-t1)|(d2-t1)|(d3-t1) < 0 {
			return i
		}
	}
	for ; i < len(c); i++ {
		if bits.OnesCount64(c[i]^q) < t1 {
			return i
		}
	}
	return i
}

func next2(c []uint64, q0, q1 uint64, from, t1 int) int {
	i := 2 * from
	for ; i+4 <= len(c); i += 4 {
		c4 := c[i : i+4 : i+4]
		d0 := bits.OnesCount64(c4[0]^q0) + bits.OnesCount64(c4[1]^q1)
		d1 := bits.OnesCount64(c4[2]^q0) + bits.OnesCount64(c4[3]^q1)
		if (d0-t1)|(d1-t1) < 0 {
			return i / 2
		}
	}
	for ; i+2 <= len(c); i += 2 {
		if bits.OnesCount64(c[i]^q0)+bits.OnesCount64(c[i+1]^q1) < t1 {
			return i / 2
		}
	}
	return i / 2
}

func next4(c []uint64, q *[4]uint64, from, t1 int) int {
	q0, q1, q2, q3 := q[0], q[1], q[2], q[3]
	i := 4 * from
	for ; i+8 <= len(c); i += 8 {
		c8 := c[i : i+8 : i+8]
		d0 := bits.OnesCount64(c8[0]^q0) + bits.OnesCount64(c8[1]^q1) + bits.OnesCount64(c8[2]^q2) + bits.OnesCount64(c8[3]^q3)
		d1 := bits.OnesCount64(c8[4]^q0) + bits.OnesCount64(c8[5]^q1) + bits.OnesCount64(c8[6]^q2) + bits.OnesCount64(c8[7]^q3)
		if (d0-t1)|(d1-t1) < 0 {
			return i / 4
		}
	}
	for ; i+4 <= len(c); i += 4 {
		c4 := c[i : i+4 : i+4]
		if bits.OnesCount64(c4[0]^q0)+bits.OnesCount64(c4[1]^q1)+bits.OnesCount64(c4[2]^q2)+bits.OnesCount64(c4[3]^q3) < t1 {
			return i / 4
		}
	}
	return i / 4
}

// distanceAt is the Hamming distance of record i's code (words uint64s) to q.
func distanceAt(c []uint64, q []uint64, i int) int {
	w := len(q)
	d := 0
	for j, x := range c[i*w : (i+1)*w] {
		d += bits.OnesCount64(x ^ q[j])
	}
	return d
}

// scanFast drives a pure Go kernel from record from: next finds
// candidates, the block of up to block records from each is checked exactly
// and offered.
func scanFast(s *segment, si int, q []uint64, sel *hamSel, ok acceptFunc, from, block int, next func(from, t1 int) int) {
	n := s.len()
	for i := from; i < n; {
		i = next(i, sel.thr+1)
		if i >= n {
			return
		}
		end := min(i+block, n)
		for ; i < end; i++ {
			offerAt(s, si, q, sel, ok, i)
		}
	}
}

// scanMasked drives an AVX-512 kernel: only the records its lane masks flag
// are checked exactly; the tail goes to the pure Go kernel tail.
func scanMasked(s *segment, si int, q []uint64, sel *hamSel, ok acceptFunc, block int,
	next func(from, t1 int) (int, uint32), tail func(from, t1 int) int, tailBlock int) {
	w := len(q)
	i := 0
	for {
		j, mask := next(i, sel.thr+1)
		if mask == 0 {
			scanFast(s, si, q, sel, ok, j, tailBlock, tail)
			return
		}
		for mask != 0 {
			r := bits.TrailingZeros32(mask) / w
			mask &^= (1<<w - 1) << (r * w)
			offerAt(s, si, q, sel, ok, j+r)
		}
		i = j + block
	}
}

// offerAt checks record i exactly and offers it.
func offerAt(s *segment, si int, q []uint64, sel *hamSel, ok acceptFunc, i int) {
	c := s.codes
	var d int
	switch len(q) {
	case 1:
		d = bits.OnesCount64(c[i] ^ q[0])
	case 2:
		d = bits.OnesCount64(c[2*i]^q[0]) + bits.OnesCount64(c[2*i+1]^q[1])
	case 4:
		c4 := c[4*i : 4*i+4 : 4*i+4]
		d = bits.OnesCount64(c4[0]^q[0]) + bits.OnesCount64(c4[1]^q[1]) + bits.OnesCount64(c4[2]^q[2]) + bits.OnesCount64(c4[3]^q[3])
	default:
		d = distanceAt(c, q, i)
	}
	if d <= sel.thr && ok(s, i) {
		sel.add(d, mkref(si, i))
	}
}

func scan1(s *segment, si int, q uint64, sel *hamSel, ok acceptFunc) {
	c := s.codes
	tail := func(from, t1 int) int { return next1(c, q, from, t1) }
	if hasAVX512 {
		scanMasked(s, si, []uint64{q}, sel, ok, 16, func(from, t1 int) (int, uint32) { return next1AVX512(c, q, from, t1) }, tail, 4)
		return
	}
	scanFast(s, si, []uint64{q}, sel, ok, 0, 4, tail)
}

func scan2(s *segment, si int, q0, q1 uint64, sel *hamSel, ok acceptFunc) {
	c := s.codes
	q := [2]uint64{q0, q1}
	tail := func(from, t1 int) int { return next2(c, q0, q1, from, t1) }
	if hasAVX512 {
		scanMasked(s, si, q[:], sel, ok, 8, func(from, t1 int) (int, uint32) { return next2AVX512(c, &q, from, t1) }, tail, 2)
		return
	}
	scanFast(s, si, q[:], sel, ok, 0, 2, tail)
}

func scan4(s *segment, si int, q *[4]uint64, sel *hamSel, ok acceptFunc) {
	c := s.codes
	tail := func(from, t1 int) int { return next4(c, q, from, t1) }
	if hasAVX512 {
		scanMasked(s, si, q[:], sel, ok, 4, func(from, t1 int) (int, uint32) { return next4AVX512(c, q, from, t1) }, tail, 2)
		return
	}
	scanFast(s, si, q[:], sel, ok, 0, 2, tail)
}

func scanN(s *segment, si int, q []uint64, sel *hamSel, ok acceptFunc) {
	w := len(q)
	c := s.codes
	n := len(c) / w
	for i := 0; i < n; i++ {
		ci := c[i*w : (i+1)*w]
		d := 0
		for j, x := range ci {
			d += bits.OnesCount64(x ^ q[j])
		}
		if d <= sel.thr && ok(s, i) {
			sel.add(d, mkref(si, i))
		}
	}
}
