package embedded

import (
	"context"
	"fmt"
	"math/bits"
	"slices"
	"sync"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/internal/vecmath"
)

// Search answers a vector query with its plan: exact (ann falls back to it
// here), hash or hybrid. Modality "" searches every modality.
//
// hash ranks by the Hamming distance between the query's code and each
// record's, ties by primary key; a hit's Score is 1 - 2d/bits (1 for an
// identical code, -1 for its complement) and its Distance is d.
//
// hybrid takes the C records of smallest Hamming distance (ties by primary
// key), then ranks those by exact cosine; Score is the cosine and Distance
// the Hamming distance. C is q.Candidates, else Options.HybridCandidates,
// else DefaultCandidates of the records searched.
//
// For both, the query's code is q.Code, or, when the index has a coder and
// q.Code is empty, the coder's code of q.Vector taken as a vector of the
// modality searched. Filters apply to every plan.
func (ix *Index) Search(ctx context.Context, q domain.VectorQuery) ([]domain.Hit, error) {
	hits, err := ix.search(ctx, q)
	if err != nil {
		return nil, err
	}
	if err := ix.display(hits, nil); err != nil {
		return nil, err
	}
	return hits, nil
}

func (ix *Index) search(ctx context.Context, q domain.VectorQuery) ([]domain.Hit, error) {
	if len(q.Vector) != ix.dim {
		return nil, fmt.Errorf("%w: query vector has dimension %d, the index holds %d", domain.ErrInvalidQuery, len(q.Vector), ix.dim)
	}
	if q.K <= 0 {
		return nil, fmt.Errorf("%w: k must be positive, got %d", domain.ErrInvalidQuery, q.K)
	}
	if q.Modality != "" && !q.Modality.Valid() {
		return nil, fmt.Errorf("%w: unknown modality %q", domain.ErrInvalidQuery, q.Modality)
	}
	if q.Candidates < 0 {
		return nil, fmt.Errorf("%w: candidates must not be negative, got %d", domain.ErrInvalidQuery, q.Candidates)
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	segs := ix.searched(q.Modality)
	switch q.Plan {
	case "", domain.PlanExact, domain.PlanANN:
		return ix.exact(ctx, &q, segs)
	case domain.PlanHash:
		codes, err := ix.queryCodes(&q, segs)
		if err != nil {
			return nil, err
		}
		sel, err := ix.hamming(ctx, segs, codes, q.K, &q.Filter)
		if err != nil {
			return nil, err
		}
		top := sel.top(ix.order(), true)
		sel.release()
		hits := make([]domain.Hit, len(top))
		dists := make([]int, len(top))
		for i, h := range top {
			hits[i] = ix.hit(h.r, 1-2*float32(h.d)/float32(ix.codeBits))
			dists[i] = h.d
			hits[i].Distance = &dists[i]
		}
		return hits, nil
	case domain.PlanHybrid:
		codes, err := ix.queryCodes(&q, segs)
		if err != nil {
			return nil, err
		}
		c := q.Candidates
		if c == 0 {
			c = ix.candidates
		}
		if c == 0 {
			n := 0
			for _, s := range segs {
				n += s.len()
			}
			c = DefaultCandidates(n)
		}
		return ix.hybrid(ctx, &q, segs, codes, max(c, q.K))
	default:
		return nil, fmt.Errorf("%w: plan %q is not supported by the embedded index (exact, ann, hash, hybrid)", domain.ErrInvalidQuery, q.Plan)
	}
}

// searched returns the segments of modality m ("" for all).
func (ix *Index) searched(m domain.Modality) []*segment {
	if m == "" {
		return ix.segs[:]
	}
	return []*segment{ix.segs[segIndex(m)]}
}

func (ix *Index) hit(r ref, score float32) domain.Hit {
	return domain.HitFromRecord(ix.segs[r.seg()].recs[r.pos()], score)
}

// exact is the brute-force cosine scan (vectors are normalised: a dot),
// scoring exactBlock vectors per vecmath.DotsSeq call.
func (ix *Index) exact(ctx context.Context, q *domain.VectorQuery, segs []*segment) ([]domain.Hit, error) {
	top := &topK{k: q.K}
	filter := !q.Filter.Empty()
	dim := ix.dim
	var scores [exactBlock]float32
	for _, s := range segs {
		si := segIndex(s.mod)
		n := s.len()
		for lo := 0; lo < n; lo += exactBlock {
			if lo%(64*exactBlock) == 0 && ctx.Err() != nil {
				return nil, ctx.Err()
			}
			m := min(exactBlock, n-lo)
			vecmath.DotsSeq(q.Vector, s.vecs[lo*dim:(lo+m)*dim], scores[:m])
			for j, sc := range scores[:m] {
				if top.full() && sc < top.items[0].score {
					continue
				}
				r := s.recs[lo+j]
				if filter && !q.Filter.Match(r) {
					continue
				}
				top.offer(scored{slot: int(mkref(si, lo+j)), score: sc, pk: r.PK})
			}
		}
	}
	res := top.sorted()
	hits := make([]domain.Hit, len(res))
	for i, c := range res {
		hits[i] = ix.hit(ref(c.slot), c.score)
	}
	return hits, nil
}

// hamming runs the Hamming selection of the k nearest codes over segs,
// from a threshold seeded by a sample of the codes (seedThreshold); when the
// scan then keeps fewer than k records the seed was too low, and it runs
// again from the maximum distance. The caller releases the selection.
func (ix *Index) hamming(ctx context.Context, segs []*segment, codes [][]uint64, k int, f *domain.Filter) (*hamSel, error) {
	ok := codeAccept(f)
	seed := seedThreshold(segs, codes, k, ok, ix.codeBits)
	sel := newHamSel(k, ix.codeBits)
	for {
		sel.thr = seed
		for i, s := range segs {
			if err := ctx.Err(); err != nil {
				sel.release()
				return nil, err
			}
			if len(s.codeOK) != s.len() {
				continue // no codes in this segment
			}
			scanCodes(s, segIndex(s.mod), codes[i], sel, ok)
		}
		if sel.n >= k || seed >= ix.codeBits {
			return sel, nil
		}
		seed = ix.codeBits
		sel.reset(k, ix.codeBits)
	}
}

// hybridScratch is the per-query memory of the hybrid plan, pooled: a
// bitset of candidate positions per segment (all zero between uses), and
// the positions and scores of one segment's candidates.
type hybridScratch struct {
	bits   [3][]uint64
	pos    []int32
	scores []float32
}

var hybridPool sync.Pool

// hybrid re-ranks the Hamming top c by exact cosine. The candidates are
// scored segment by segment in position order (a bitset sorts them): their
// vectors are scattered, and reading them in address order is kinder to
// the TLB and the memory than reading them in the order of their distance.
func (ix *Index) hybrid(ctx context.Context, q *domain.VectorQuery, segs []*segment, codes [][]uint64, c int) ([]domain.Hit, error) {
	sel, err := ix.hamming(ctx, segs, codes, c, &q.Filter)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		sel.release()
		return nil, err
	}
	sc, _ := hybridPool.Get().(*hybridScratch)
	if sc == nil {
		sc = &hybridScratch{}
	}
	var qcode [3][]uint64
	for i, s := range segs {
		si := segIndex(s.mod)
		qcode[si] = codes[i]
		if w := (s.len() + 63) / 64; len(sc.bits[si]) < w {
			sc.bits[si] = make([]uint64, w)
		}
	}
	sel.each(ix.order(), false, func(r ref, _ int) {
		p := r.pos()
		sc.bits[r.seg()][p>>6] |= 1 << (p & 63)
	})
	sel.release()
	top := &topK{k: q.K}
	for si, s := range ix.segs {
		if qcode[si] == nil {
			continue
		}
		// Collect the marked positions in order, clearing the bitset.
		bs := sc.bits[si][:(s.len()+63)/64]
		pos := sc.pos[:0]
		for w, word := range bs {
			if word == 0 {
				continue
			}
			bs[w] = 0
			for word != 0 {
				pos = append(pos, int32(w<<6+bits.TrailingZeros64(word)))
				word &= word - 1
			}
		}
		sc.pos = pos
		if len(pos) == 0 {
			continue
		}
		scores := slices.Grow(sc.scores[:0], len(pos))[:len(pos)]
		sc.scores = scores
		vecmath.Dots(q.Vector, s.vecs, pos, scores)
		for j, v := range scores {
			if top.full() && v < top.items[0].score {
				continue
			}
			top.offer(scored{slot: int(mkref(si, int(pos[j]))), score: v, pk: s.recs[pos[j]].PK})
		}
	}
	// Back to the pool only now, its bitsets clear again (a panic on the way
	// leaves it to the garbage collector).
	hybridPool.Put(sc)
	res := top.sorted()
	hits := make([]domain.Hit, len(res))
	dists := make([]int, len(res))
	for i, r := range res {
		rf := ref(r.slot)
		hits[i] = ix.hit(rf, r.score)
		dists[i] = distanceAt(ix.segs[rf.seg()].codes, qcode[rf.seg()], rf.pos())
		hits[i].Distance = &dists[i]
	}
	return hits, nil
}

// exactBlock is how many vectors the exact scan scores per vecmath.DotsSeq
// call.
const exactBlock = 256
