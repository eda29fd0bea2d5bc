package embedded

import (
	"math/bits"
	"slices"
	"strings"

	"github.com/xmodal/xmodal/domain"
)

// ref names a record during a scan: its segment in the high bits, its
// position in the low 32.
type ref uint64

func mkref(seg, pos int) ref      { return ref(uint64(seg)<<32 | uint64(uint32(pos))) }
func (r ref) seg() int            { return int(r >> 32) }
func (r ref) pos() int            { return int(uint32(r)) }
func (ix *Index) pk(r ref) string { return ix.segs[r.seg()].recs[r.pos()].PK }

// hamSel selects the k records of smallest Hamming distance (ties by primary
// key) while a scan offers them. Distances are small integers, so it keeps
// one bucket per distance up to a threshold thr instead of a heap: a record
// at distance d <= thr is appended to bucket d, and thr falls as soon as the
// buckets below it hold k records. The scan's fast path is then one compare
// per record; only the rare record within thr reaches add.
type hamSel struct {
	k   int
	thr int // a record is kept only at distance <= thr
	n   int // records in buckets 0..thr
	b   [][]ref
}

func newHamSel(k, maxDist int) *hamSel {
	return &hamSel{k: k, thr: maxDist, b: make([][]ref, maxDist+1)}
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

// scored is a selected record with its distance.
type hamHit struct {
	r ref
	d int
}

// top returns the k nearest, by distance then primary key. With ordered
// false the order of the result is unspecified (the set is the same).
func (s *hamSel) top(pk func(ref) string, ordered bool) []hamHit {
	out := make([]hamHit, 0, min(s.k, s.n))
	cmp := func(a, b ref) int { return strings.Compare(pk(a), pk(b)) }
	for d := 0; d <= s.thr && len(out) < s.k; d++ {
		b := s.b[d]
		if len(b) == 0 {
			continue
		}
		need := s.k - len(out)
		if len(b) > need {
			selectSmallest(b, need, cmp)
			b = b[:need]
		}
		if ordered {
			slices.SortFunc(b, cmp)
		}
		for _, r := range b {
			out = append(out, hamHit{r, d})
		}
	}
	return out
}

// selectSmallest moves the n smallest of xs (by cmp, a total order) to its
// front, in no particular order (quickselect, median-of-three pivots).
func selectSmallest(xs []ref, n int, cmp func(a, b ref) int) {
	lo, hi := 0, len(xs)
	for hi-lo > 1 {
		// median of three as pivot, moved to lo
		mid := lo + (hi-lo)/2
		a, b, c := lo, mid, hi-1
		if cmp(xs[a], xs[b]) > 0 {
			a, b = b, a
		}
		if cmp(xs[b], xs[c]) > 0 {
			b = c
			if cmp(xs[a], xs[b]) > 0 {
				b = a
			}
		}
		xs[lo], xs[b] = xs[b], xs[lo]
		p := xs[lo]
		// partition: xs[lo+1:i] < p, xs[i:] >= p
		i := lo + 1
		for j := lo + 1; j < hi; j++ {
			if cmp(xs[j], p) < 0 {
				xs[i], xs[j] = xs[j], xs[i]
				i++
			}
		}
		xs[lo], xs[i-1] = xs[i-1], xs[lo]
		pivot := i - 1 // xs[lo:pivot] < p = xs[pivot] <= xs[pivot+1:]
		switch {
		case pivot == n || pivot+1 == n:
			return
		case pivot > n:
			hi = pivot
		default:
			lo = pivot + 1
		}
	}
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

func scan1(s *segment, si int, q uint64, sel *hamSel, ok acceptFunc) {
	c := s.codes
	n := len(c)
	t1 := sel.thr + 1
	i := 0
	for ; i+4 <= n; i += 4 {
		c4 := c[i : i+4 : i+4]
		d0 := bits.OnesCount64(c4[0] ^ q)
		d1 := bits.OnesCount64(c4[1] ^ q)
		d2 := bits.OnesCount64(c4[2] ^ q)
		d3 := bits.OnesCount64(c4[3] ^ q)
		// Any d < t1 makes d-t1 negative: one branch for four records.
		if (d0-t1)|(d1-t1)|(d2-t1)|(d3-t1) >= 0 {
			continue
		}
		for j, d := range [4]int{d0, d1, d2, d3} {
			if d <= sel.thr && ok(s, i+j) {
				sel.add(d, mkref(si, i+j))
			}
		}
		t1 = sel.thr + 1
	}
	for ; i < n; i++ {
		if d := bits.OnesCount64(c[i] ^ q); d <= sel.thr && ok(s, i) {
			sel.add(d, mkref(si, i))
		}
	}
}

func scan2(s *segment, si int, q0, q1 uint64, sel *hamSel, ok acceptFunc) {
	c := s.codes
	n := len(c) / 2
	t1 := sel.thr + 1
	i := 0
	for ; i+2 <= n; i += 2 {
		c4 := c[2*i : 2*i+4 : 2*i+4]
		d0 := bits.OnesCount64(c4[0]^q0) + bits.OnesCount64(c4[1]^q1)
		d1 := bits.OnesCount64(c4[2]^q0) + bits.OnesCount64(c4[3]^q1)
		if (d0-t1)|(d1-t1) >= 0 {
			continue
		}
		if d0 <= sel.thr && ok(s, i) {
			sel.add(d0, mkref(si, i))
		}
		if d1 <= sel.thr && ok(s, i+1) {
			sel.add(d1, mkref(si, i+1))
		}
		t1 = sel.thr + 1
	}
	for ; i < n; i++ {
		d := bits.OnesCount64(c[2*i]^q0) + bits.OnesCount64(c[2*i+1]^q1)
		if d <= sel.thr && ok(s, i) {
			sel.add(d, mkref(si, i))
		}
	}
}

func scan4(s *segment, si int, q *[4]uint64, sel *hamSel, ok acceptFunc) {
	c := s.codes
	n := len(c) / 4
	q0, q1, q2, q3 := q[0], q[1], q[2], q[3]
	t1 := sel.thr + 1
	i := 0
	for ; i+2 <= n; i += 2 {
		c8 := c[4*i : 4*i+8 : 4*i+8]
		d0 := bits.OnesCount64(c8[0]^q0) + bits.OnesCount64(c8[1]^q1) + bits.OnesCount64(c8[2]^q2) + bits.OnesCount64(c8[3]^q3)
		d1 := bits.OnesCount64(c8[4]^q0) + bits.OnesCount64(c8[5]^q1) + bits.OnesCount64(c8[6]^q2) + bits.OnesCount64(c8[7]^q3)
		if (d0-t1)|(d1-t1) >= 0 {
			continue
		}
		if d0 <= sel.thr && ok(s, i) {
			sel.add(d0, mkref(si, i))
		}
		if d1 <= sel.thr && ok(s, i+1) {
			sel.add(d1, mkref(si, i+1))
		}
		t1 = sel.thr + 1
	}
	for ; i < n; i++ {
		c4 := c[4*i : 4*i+4 : 4*i+4]
		d := bits.OnesCount64(c4[0]^q0) + bits.OnesCount64(c4[1]^q1) + bits.OnesCount64(c4[2]^q2) + bits.OnesCount64(c4[3]^q3)
		if d <= sel.thr && ok(s, i) {
			sel.add(d, mkref(si, i))
		}
	}
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
