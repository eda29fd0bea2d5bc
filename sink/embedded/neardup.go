package embedded

import (
	"context"
	"math/bits"
	"slices"

	"github.com/xmodal/xmodal/domain"
)

// MaxNearDupHashes bounds the hashes of one near-duplicate query.
const MaxNearDupHashes = domain.MaxNearDupHashes

// NearDup returns the records whose PDQ hash is within q.MaxDistance bits of
// any of q.Hashes (typically the eight dihedral variants of a query image),
// nearest first, ties by primary key; at most q.K (0: all). Each hit's
// Distance is its smallest distance to a query hash, Variant the index of
// that hash, Score 1 - distance/256. Only records with a PDQ hash take
// part (image records); q.MinQuality skips those of lower quality.
func (ix *Index) NearDup(ctx context.Context, q domain.NearDupQuery) ([]domain.NearDupHit, error) {
	hits, err := ix.nearDup(ctx, q)
	if err != nil {
		return nil, err
	}
	if err := ix.display(nil, hits); err != nil {
		return nil, err
	}
	return hits, nil
}

func (ix *Index) nearDup(ctx context.Context, q domain.NearDupQuery) ([]domain.NearDupHit, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	// Distinct variants only (a symmetric image repeats some), in order.
	var vs [][4]uint64
	var vIdx []int
	for i, h := range q.Hashes {
		var w [4]uint64
		packCode(w[:], h, true)
		if !slices.Contains(vs, w) {
			vs = append(vs, w)
			vIdx = append(vIdx, i)
		}
	}
	k := q.K
	if k == 0 {
		k = int(^uint(0) >> 1)
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	sel := newHamSel(k, q.MaxDistance)
	filter := !q.Filter.Empty()
	minQ := int8(max(min(q.MinQuality, 100), 0))
	for si, s := range ix.segs {
		if s.pdq == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h := s.pdq
		for pos, qual := range s.pdqQ {
			if qual < minQ || qual < 0 {
				continue
			}
			h4 := h[4*pos : 4*pos+4 : 4*pos+4]
			d := nearest(h4, vs)
			if d > sel.thr || (filter && !q.Filter.Match(s.recs[pos])) {
				continue
			}
			sel.add(d, mkref(si, pos))
		}
	}
	top := sel.top(ix.order(), true)
	sel.release()
	out := make([]domain.NearDupHit, len(top))
	for i, t := range top {
		s := ix.segs[t.r.seg()]
		pos := t.r.pos()
		h := s.pdq[4*pos : 4*pos+4]
		variant := 0
		for j, v := range vs {
			if distance4(h, &v) == t.d {
				variant = vIdx[j]
				break
			}
		}
		d := t.d
		out[i] = domain.NearDupHit{Hit: domain.HitFromRecord(s.recs[pos], 1-float32(d)/domain.MaxPDQDistance), Variant: variant}
		out[i].Distance = &d
	}
	return out, nil
}

// nearest returns the smallest Hamming distance from h to any of vs.
func nearest(h []uint64, vs [][4]uint64) int {
	h0, h1, h2, h3 := h[0], h[1], h[2], h[3]
	best := 257
	for i := range vs {
		v := &vs[i]
		d := bits.OnesCount64(h0^v[0]) + bits.OnesCount64(h1^v[1]) + bits.OnesCount64(h2^v[2]) + bits.OnesCount64(h3^v[3])
		best = min(best, d)
	}
	return best
}

func distance4(h []uint64, v *[4]uint64) int {
	return bits.OnesCount64(h[0]^v[0]) + bits.OnesCount64(h[1]^v[1]) + bits.OnesCount64(h[2]^v[2]) + bits.OnesCount64(h[3]^v[3])
}

var _ domain.NearDupSearcher = (*Index)(nil)
