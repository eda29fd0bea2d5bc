package hamming

import (
	"cmp"
	"fmt"
	"math/bits"
	"slices"
)

// Linear is the reference range search: it appends to dst every i with
// Distance(codes[i], q) <= r for some q in qs, as a Match with ID i (its
// position in codes), its smallest distance and the first query code at
// that distance, sorted by distance then ID. Index.Search returns the same
// set for the same codes (with their ids).
func Linear(codes []Code, qs []Code, r int, dst []Match) ([]Match, error) {
	if err := checkRadius(r); err != nil {
		return dst, err
	}
	start := len(dst)
	uq, ui := distinct(qs)
	var hits []hit
	hits = scanCodes(codes, 0, uq, r, hits)
	dst = reduce(hits, ui, func(p uint32) (uint64, bool) { return uint64(p), true }, dst)
	SortMatches(dst[start:])
	return dst, nil
}

// SortMatches orders matches by distance, then id: the order Search and
// Linear return.
func SortMatches(ms []Match) {
	slices.SortFunc(ms, func(a, b Match) int {
		if c := cmp.Compare(a.Distance, b.Distance); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}

// ErrRadius is returned for a radius outside 0..Bits.
type ErrRadius struct{ R int }

func (e ErrRadius) Error() string {
	return fmt.Sprintf("hamming: radius %d is outside 0..%d", e.R, Bits)
}

func checkRadius(r int) error {
	if r < 0 || r > Bits {
		return ErrRadius{r}
	}
	return nil
}

// hit is one (position, query) pair within the radius.
type hit struct {
	pos uint32
	d   uint16
	q   uint16 // index into the distinct queries
}

// distinct returns the distinct codes of qs in order, with the index in qs
// of each (a symmetric image repeats some of its dihedral variants).
func distinct(qs []Code) ([]Code, []int) {
	uq := make([]Code, 0, len(qs))
	ui := make([]int, 0, len(qs))
	for i, q := range qs {
		if !slices.Contains(uq, q) {
			uq = append(uq, q)
			ui = append(ui, i)
		}
	}
	return uq, ui
}

// reduce turns hits into one Match per position (smallest distance, then
// first query), mapping positions to ids with id (false: skip it). It sorts
// hits in place.
func reduce(hits []hit, ui []int, id func(pos uint32) (uint64, bool), dst []Match) []Match {
	sortHits(hits)
	for i := 0; i < len(hits); i++ {
		if i > 0 && hits[i].pos == hits[i-1].pos {
			continue
		}
		h := hits[i]
		if x, ok := id(h.pos); ok {
			dst = append(dst, Match{ID: x, Distance: int(h.d), Query: ui[h.q]})
		}
	}
	return dst
}

// scanCodes appends a hit for every code of codes (positions base+i)
// within r of a query code.
func scanCodes(codes []Code, base uint32, qs []Code, r int, hits []hit) []hit {
	if len(qs) == 1 {
		q := qs[0]
		for i := range codes {
			c := &codes[i]
			d := bits.OnesCount64(c[0]^q[0]) + bits.OnesCount64(c[1]^q[1]) +
				bits.OnesCount64(c[2]^q[2]) + bits.OnesCount64(c[3]^q[3])
			if d <= r {
				hits = append(hits, hit{pos: base + uint32(i), d: uint16(d)})
			}
		}
		return hits
	}
	for i := range codes {
		c := &codes[i]
		c0, c1, c2, c3 := c[0], c[1], c[2], c[3]
		// The common case: no query within r. One branch per code on the
		// smallest distance.
		best := Bits + 1
		for j := range qs {
			q := &qs[j]
			d := bits.OnesCount64(c0^q[0]) + bits.OnesCount64(c1^q[1]) +
				bits.OnesCount64(c2^q[2]) + bits.OnesCount64(c3^q[3])
			best = min(best, d)
		}
		if best > r {
			continue
		}
		for j := range qs {
			if d := Distance(*c, qs[j]); d <= r {
				hits = append(hits, hit{pos: base + uint32(i), d: uint16(d), q: uint16(j)})
			}
		}
	}
	return hits
}

// sortHits orders hits by position, distance, then query. Many hits (an
// entry in a dense cluster is found through most chunks of every member)
// are sorted as packed uint64 keys, several times faster than through a
// comparison function.
func sortHits(hits []hit) {
	if len(hits) < 64 {
		slices.SortFunc(hits, func(a, b hit) int {
			if c := cmp.Compare(a.pos, b.pos); c != 0 {
				return c
			}
			if c := cmp.Compare(a.d, b.d); c != 0 {
				return c
			}
			return cmp.Compare(a.q, b.q)
		})
		return
	}
	keys := make([]uint64, len(hits))
	for i, h := range hits {
		keys[i] = uint64(h.pos)<<32 | uint64(h.d)<<16 | uint64(h.q)
	}
	slices.Sort(keys)
	for i, k := range keys {
		hits[i] = hit{pos: uint32(k >> 32), d: uint16(k >> 16), q: uint16(k)}
	}
}
