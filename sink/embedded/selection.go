package embedded

import (
	"math/bits"
	"slices"
	"strings"
)

// keyedRef is a record with its primary-key order key (pkOrder).
type keyedRef struct {
	key uint64
	r   ref
}

// pkOrder orders records of the segments searched by primary key: by an
// 8-byte key (the bytes of the primary key after a prefix every key compared
// shares, big-endian), and for equal keys only by the primary keys
// themselves. A segment whose own shared prefix is that one already holds
// the keys (segment.pkKey); for the others the key is computed once per
// record sorted.
type pkOrder struct {
	segs   []*segment // by segment index (ref.seg)
	cp     int        // length of the prefix every key shares
	native [3]bool    // segment's pkKey is the key (its prefix is cp long)
	// compares counts comparisons (the tests bound them).
	compares int
}

// order returns the primary-key order of the index's segments.
func (ix *Index) order() *pkOrder { return newPKOrder(ix.segs[:]) }

func newPKOrder(segs []*segment) *pkOrder {
	o := &pkOrder{segs: segs, cp: -1}
	ref := ""
	for _, s := range segs {
		if s == nil || s.len() == 0 {
			continue
		}
		if o.cp < 0 {
			o.cp, ref = s.cp, s.pkRef
			continue
		}
		o.cp = min(o.cp, s.cp, commonPrefix(ref[:o.cp], s.pkRef))
	}
	for i, s := range segs {
		if i < len(o.native) && s != nil && s.len() > 0 {
			o.native[i] = s.cp == o.cp && len(s.pkKey) == s.len()
		}
	}
	return o
}

func (o *pkOrder) pk(r ref) string { return o.segs[r.seg()].recs[r.pos()].PK }

// keyed appends the records of rs with their keys to dst.
func (o *pkOrder) keyed(dst []keyedRef, rs []ref) []keyedRef {
	for _, r := range rs {
		s := o.segs[r.seg()]
		var k uint64
		if si := r.seg(); si < len(o.native) && o.native[si] {
			k = s.pkKey[r.pos()]
		} else {
			k = keyAfter(s.recs[r.pos()].PK, o.cp)
		}
		dst = append(dst, keyedRef{k, r})
	}
	return dst
}

func (o *pkOrder) less(a, b *keyedRef) bool {
	o.compares++
	if a.key != b.key {
		return a.key < b.key
	}
	return strings.Compare(o.pk(a.r), o.pk(b.r)) < 0
}

func (o *pkOrder) cmp(a, b keyedRef) int {
	o.compares++
	if a.key != b.key {
		if a.key < b.key {
			return -1
		}
		return 1
	}
	return strings.Compare(o.pk(a.r), o.pk(b.r))
}

// sort sorts xs by primary key.
func (o *pkOrder) sort(xs []keyedRef) { slices.SortFunc(xs, o.cmp) }

// selectSmallest moves the n smallest of xs (by primary key) to its front,
// in no particular order: quickselect with pivots the median of three
// pseudo-random elements, and a sort of what is left when the partitions
// shrink too slowly, so no order of the input (a bucket is in scan order,
// and primary keys are often in order, or in decimal order, along it) makes
// it quadratic. Records are distinct, so the order is strict and the set
// selected does not depend on the pivots.
func (o *pkOrder) selectSmallest(xs []keyedRef, n int) {
	if n <= 0 || n >= len(xs) {
		return
	}
	lo, hi := 0, len(xs)
	budget := 2 * bits.Len(uint(len(xs)))
	rng := uint64(len(xs))*0x9E3779B97F4A7C15 | 1
	for hi-lo > 16 {
		if budget == 0 {
			o.sort(xs[lo:hi])
			return
		}
		budget--
		rng ^= rng << 13
		rng ^= rng >> 7
		rng ^= rng << 17
		m := uint64(hi - lo)
		a, b, c := lo+int(rng%m), lo+int((rng>>21)%m), lo+int((rng>>42)%m)
		if o.less(&xs[b], &xs[a]) {
			a, b = b, a
		}
		if o.less(&xs[c], &xs[b]) {
			b = c
			if o.less(&xs[b], &xs[a]) {
				b = a
			}
		}
		xs[lo], xs[b] = xs[b], xs[lo]
		p := xs[lo]
		// partition: xs[lo+1:i] < p, xs[i:j] > p
		i := lo + 1
		for j := lo + 1; j < hi; j++ {
			if o.less(&xs[j], &p) {
				xs[i], xs[j] = xs[j], xs[i]
				i++
			}
		}
		xs[lo], xs[i-1] = xs[i-1], xs[lo]
		pivot := i - 1 // xs[lo:pivot] < p = xs[pivot] < xs[pivot+1:hi]
		switch {
		case pivot == n || pivot+1 == n:
			return
		case pivot > n:
			hi = pivot
		default:
			lo = pivot + 1
		}
	}
	// What is left is short: sorting it puts the n smallest in front.
	o.sort(xs[lo:hi])
}
