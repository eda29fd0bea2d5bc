package neardup

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
	"sync"

	"github.com/xmodal/xmodal/encoders/pdq"
)

// ChunkSearcher is an exact Hamming range search for radii up to 31: the
// 256 bits are cut into sixteen 16-bit chunks, each with a table from
// chunk value to the hashes holding it (compressed rows: offsets by value,
// then positions). Two hashes within 31 bits differ in at most one bit on
// at least one chunk (pigeonhole), so probing each chunk's value and its
// sixteen one-bit neighbours finds every candidate (the value alone below
// radius 16); each candidate is then checked on the full distance, once.
// The tables are rebuilt on the first search after inserts. It is a
// stand-in for the project's multi-index-hashing package
// (internal/hamming), which chooses chunk widths for the index size; swap
// it in through NewIndexWith. Insert is not safe for concurrent use;
// searches are safe with each other.
type ChunkSearcher struct {
	words [][4]uint64
	refs  []uint32

	mu    sync.RWMutex
	built int          // entries the tables cover
	off   [16][]uint32 // per chunk: 65537 offsets into pos
	pos   [16][]uint32 // per chunk: positions, grouped by chunk value
	vals  [][16]uint16 // per position: its chunk values

	stamps sync.Pool // *stamps
}

// NewChunkSearcher returns an empty searcher.
func NewChunkSearcher() *ChunkSearcher { return &ChunkSearcher{} }

// MaxChunkRadius is the largest radius ChunkSearcher answers exactly.
const MaxChunkRadius = 31

// Insert adds h under ref.
func (s *ChunkSearcher) Insert(ref uint32, h pdq.Hash) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.words = append(s.words, words(h))
	s.refs = append(s.refs, ref)
	var v [16]uint16
	for c := range 16 {
		v[c] = binary.LittleEndian.Uint16(h[2*c:])
	}
	s.vals = append(s.vals, v)
}

// Len is the number of hashes held.
func (s *ChunkSearcher) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.refs)
}

// Hash returns the hash inserted under ref.
func (s *ChunkSearcher) Hash(ref uint32) (pdq.Hash, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return hashAt(s.words, s.refs, ref)
}

// build (re)makes the tables; the caller holds the write lock.
func (s *ChunkSearcher) build() {
	n := len(s.refs)
	for c := range 16 {
		off := make([]uint32, 65537)
		for _, v := range s.vals {
			off[int(v[c])+1]++
		}
		for i := 1; i < len(off); i++ {
			off[i] += off[i-1]
		}
		pos := make([]uint32, n)
		next := slices.Clone(off[:65536])
		for p, v := range s.vals {
			pos[next[v[c]]] = uint32(p)
			next[v[c]]++
		}
		s.off[c], s.pos[c] = off, pos
	}
	s.built = n
}

// MaxRadius is the largest radius Range answers (MaxChunkRadius): an
// Index over a ChunkSearcher for whole-image hashes has no band (see
// WholeBandDistance).
func (s *ChunkSearcher) MaxRadius() int { return MaxChunkRadius }

// Range calls fn for every hash within radius of q, once each. It panics
// for a radius over MaxChunkRadius.
func (s *ChunkSearcher) Range(q pdq.Hash, radius int, fn func(ref uint32, dist int)) {
	if radius > MaxChunkRadius {
		panic(fmt.Sprintf("neardup: ChunkSearcher radius %d over %d", radius, MaxChunkRadius))
	}
	s.mu.RLock()
	if s.built != len(s.refs) {
		s.mu.RUnlock()
		s.mu.Lock()
		if s.built != len(s.refs) {
			s.build()
		}
		s.mu.Unlock()
		s.mu.RLock()
	}
	defer s.mu.RUnlock()
	w := words(q)
	flips := 16
	if radius < 16 {
		flips = 0 // some chunk then matches exactly
	}
	// Each candidate is checked once: a stamp per position, from a pool so
	// that concurrent searches do not share one.
	st, _ := s.stamps.Get().(*stamps)
	if st == nil {
		st = new(stamps)
	}
	defer s.stamps.Put(st)
	if len(st.seen) < len(s.refs) {
		st.seen = make([]uint32, len(s.refs))
		st.gen = 0
	}
	st.gen++
	if st.gen == 0 {
		clear(st.seen)
		st.gen = 1
	}
	seen, gen := st.seen, st.gen
	for c := range 16 {
		v := binary.LittleEndian.Uint16(q[2*c:])
		off, pos := s.off[c], s.pos[c]
		for b := -1; b < flips; b++ {
			pv := v
			if b >= 0 {
				pv ^= 1 << b
			}
			for _, p := range pos[off[pv]:off[int(pv)+1]] {
				if seen[p] == gen {
					continue
				}
				seen[p] = gen
				x := &s.words[p]
				d := bits.OnesCount64(x[0]^w[0]) + bits.OnesCount64(x[1]^w[1]) + bits.OnesCount64(x[2]^w[2]) + bits.OnesCount64(x[3]^w[3])
				if d <= radius {
					fn(s.refs[p], d)
				}
			}
		}
	}
}

// stamps marks the positions one search has checked.
type stamps struct {
	seen []uint32
	gen  uint32
}
