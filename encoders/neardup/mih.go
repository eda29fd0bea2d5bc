package neardup

import (
	"sync"

	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/internal/hamming"
)

// MIHSearcher is a RangeSearcher over the project's exact multi-index
// hashing (internal/hamming): sub-linear at millions of hashes, any radius,
// the same answers as LinearSearcher. Safe for concurrent searches with one
// writer.
type MIHSearcher struct {
	ix   *hamming.Index
	bufs sync.Pool // *[]hamming.Match
}

// NewMIHSearcher returns an empty searcher. With deferred, inserts only
// append (searched linearly until then) and Finish builds the tables once:
// the fast way to load many hashes; without it the tables are maintained
// as hashes arrive.
func NewMIHSearcher(deferred bool) *MIHSearcher {
	return newMIHSearcher(hamming.Options{DeferMaintenance: deferred})
}

// NewSmallMIHSearcher is NewMIHSearcher for an index of a few thousand
// images searched by many query hashes at once (a bank's entries with
// windows): its unindexed tail, searched linearly by every query hash,
// holds at most tail hashes (NewMIHSearcher's: 4,096, which 800 query
// windows would scan 3 million times a search).
func NewSmallMIHSearcher(deferred bool, tail int) *MIHSearcher {
	return newMIHSearcher(hamming.Options{DeferMaintenance: deferred, TailSize: tail})
}

func newMIHSearcher(o hamming.Options) *MIHSearcher {
	ix, err := hamming.New(o)
	if err != nil {
		panic(err) // the options are constants
	}
	return &MIHSearcher{ix: ix}
}

// Insert adds h under ref (a ref inserted again replaces its hash).
func (s *MIHSearcher) Insert(ref uint32, h pdq.Hash) {
	c, _ := hamming.FromBytes(h[:])
	s.ix.Add(uint64(ref), c)
}

func (s *MIHSearcher) concurrentWrites() {}

// Remove drops the hash inserted under ref.
func (s *MIHSearcher) Remove(ref uint32) { s.ix.Remove(uint64(ref)) }

// Maintain does the table work that deferred inserts and removals left:
// the hashes added since are indexed, segments merged, removed ones
// compacted away. Searches go on meanwhile.
func (s *MIHSearcher) Maintain() { s.ix.Maintain() }

// Finish builds the tables of every hash inserted so far.
func (s *MIHSearcher) Finish() { s.ix.Build(nil) }

// Len is the number of hashes held.
func (s *MIHSearcher) Len() int { return s.ix.Len() }

// Range calls fn for every hash within radius of q (0..256), once each.
func (s *MIHSearcher) Range(q pdq.Hash, radius int, fn func(ref uint32, dist int)) {
	s.RangeProbe(q, radius, -1, fn)
}

// RangeProbe is Range by an approximate multi-index search
// (hamming.Index.SearchProbe): every hash within radius of q that agrees
// with it within chunkRadius bits on one of the index's chunks, perhaps
// others within radius, never one beyond. A negative chunkRadius is Range.
func (s *MIHSearcher) RangeProbe(q pdq.Hash, radius, chunkRadius int, fn func(ref uint32, dist int)) {
	c, _ := hamming.FromBytes(q[:])
	bp, _ := s.bufs.Get().(*[]hamming.Match)
	if bp == nil {
		bp = new([]hamming.Match)
	}
	ms, err := s.ix.SearchProbe([]hamming.Code{c}, radius, chunkRadius, (*bp)[:0])
	if err != nil {
		panic(err) // only a radius outside 0..256
	}
	for _, m := range ms {
		fn(uint32(m.ID), m.Distance)
	}
	*bp = ms
	s.bufs.Put(bp)
}

// Hash returns the hash inserted under ref.
func (s *MIHSearcher) Hash(ref uint32) (pdq.Hash, bool) {
	c, ok := s.ix.Get(uint64(ref))
	if !ok {
		return pdq.Hash{}, false
	}
	return c.Bytes(), true
}

// RangeAny calls fn once for every hash within radius of at least one of
// qs: one multi-index search for the batch.
func (s *MIHSearcher) RangeAny(qs []pdq.Hash, radius int, fn func(ref uint32)) {
	s.rangeAny(qs, radius, -1, fn)
}

// RangeAnyProbe is RangeAny by an approximate multi-index search
// (hamming.Index.SearchProbe): it calls fn for every hash within radius
// of a query hash that agrees with it within chunkRadius bits on one of
// the index's chunks, and perhaps for other hashes within radius, never
// for one beyond. A negative chunkRadius is RangeAny.
func (s *MIHSearcher) RangeAnyProbe(qs []pdq.Hash, radius, chunkRadius int, fn func(ref uint32)) {
	s.rangeAny(qs, radius, chunkRadius, fn)
}

func (s *MIHSearcher) rangeAny(qs []pdq.Hash, radius, chunkRadius int, fn func(ref uint32)) {
	cs := make([]hamming.Code, len(qs))
	for i, q := range qs {
		cs[i], _ = hamming.FromBytes(q[:])
	}
	bp, _ := s.bufs.Get().(*[]hamming.Match)
	if bp == nil {
		bp = new([]hamming.Match)
	}
	ms, err := s.ix.SearchProbe(cs, radius, chunkRadius, (*bp)[:0])
	if err != nil {
		panic(err) // only a radius outside 0..256
	}
	for _, m := range ms {
		fn(uint32(m.ID))
	}
	*bp = ms
	s.bufs.Put(bp)
}
