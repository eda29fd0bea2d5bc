package hamming

import "sync/atomic"

// maskSet is every mask of a chunk width w with at most maxWeight bits set,
// in order of weight: the probe offsets of a chunk searched at a radius.
type maskSet struct {
	maxWeight int
	masks     []uint32
	ends      []int // ends[k]: the number of masks of weight <= k
}

// upTo returns the masks of weight <= k (k <= maxWeight).
func (m *maskSet) upTo(k int) []uint32 { return m.masks[:m.ends[k]] }

// maskCache holds the mask sets of each width, grown on demand. Searches
// share it without locks: a set is immutable once stored; two searches that
// both grow one store equal sets.
type maskCache struct {
	byWidth [maxChunkBits + 1]atomic.Pointer[maskSet]
}

// get returns a mask set of width w with every mask of weight <= k.
func (c *maskCache) get(w, k int) *maskSet {
	p := &c.byWidth[w]
	if s := p.Load(); s != nil && s.maxWeight >= k {
		return s
	}
	s := newMaskSet(w, k)
	p.Store(s)
	return s
}

func newMaskSet(w, k int) *maskSet {
	s := &maskSet{maxWeight: k, ends: make([]int, k+1)}
	s.masks = make([]uint32, 0, neighbours(w, k))
	for weight := 0; weight <= k; weight++ {
		if weight == 0 {
			s.masks = append(s.masks, 0)
		} else if weight <= w {
			// Gosper's hack: the w-bit numbers with weight bits set, ascending.
			x := uint64(1)<<weight - 1
			for x < uint64(1)<<w {
				s.masks = append(s.masks, uint32(x))
				c := x & -x
				y := x + c
				x = (((y ^ x) >> 2) / c) | y
			}
		}
		s.ends[weight] = len(s.masks)
	}
	return s
}

// neighbours is the number of w-bit values within k bits of a value:
// sum of C(w, j) for j <= k. It saturates at 1<<62.
func neighbours(w, k int) int {
	total, c := 0, 1 // c = C(w, j)
	for j := 0; j <= k && j <= w; j++ {
		total += c
		if total > 1<<62 {
			return 1 << 62
		}
		c = c * (w - j) / (j + 1)
	}
	return total
}
