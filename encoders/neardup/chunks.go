package neardup

import (
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/xmodal/xmodal/encoders/pdq"
)

// ChunkSearcher is an exact Hamming range search for radii up to 31: the
// 256 bits are cut into sixteen 16-bit chunks, each with a table from
// chunk value to the hashes holding it. Two hashes within 31 bits differ
// in at most one bit on at least one chunk (pigeonhole), so probing each
// chunk's value and its sixteen one-bit neighbours finds every candidate;
// each is then checked on the full distance (once, by marking). It is a
// stand-in for the project's multi-index-hashing package
// (internal/hamming), which chooses chunk widths for the index size; swap
// it in through NewIndexWith. Not safe for concurrent Insert.
type ChunkSearcher struct {
	words  [][4]uint64
	refs   []uint32
	tables [16]map[uint16][]uint32 // chunk value -> positions
}

// NewChunkSearcher returns an empty searcher.
func NewChunkSearcher() *ChunkSearcher {
	s := &ChunkSearcher{}
	for i := range s.tables {
		s.tables[i] = map[uint16][]uint32{}
	}
	return s
}

// MaxChunkRadius is the largest radius ChunkSearcher answers exactly.
const MaxChunkRadius = 31

// Insert adds h under ref.
func (s *ChunkSearcher) Insert(ref uint32, h pdq.Hash) {
	pos := uint32(len(s.refs))
	s.words = append(s.words, words(h))
	s.refs = append(s.refs, ref)
	for c := range 16 {
		v := binary.LittleEndian.Uint16(h[2*c:])
		s.tables[c][v] = append(s.tables[c][v], pos)
	}
}

// Len is the number of hashes held.
func (s *ChunkSearcher) Len() int { return len(s.refs) }

// Range calls fn for every hash within radius of q, once each. It panics
// for a radius over MaxChunkRadius. Safe for concurrent use with itself.
func (s *ChunkSearcher) Range(q pdq.Hash, radius int, fn func(ref uint32, dist int)) {
	if radius > MaxChunkRadius {
		panic(fmt.Sprintf("neardup: ChunkSearcher radius %d over %d", radius, MaxChunkRadius))
	}
	seen := map[uint32]struct{}{}
	w := words(q)
	flips := 1
	if radius < 16 {
		flips = 0 // some chunk then matches exactly
	}
	for c := range 16 {
		v := binary.LittleEndian.Uint16(q[2*c:])
		for b := -1; b < 16*flips; b++ {
			pv := v
			if b >= 0 {
				pv ^= 1 << b
			}
			for _, pos := range s.tables[c][pv] {
				if _, ok := seen[pos]; ok {
					continue
				}
				seen[pos] = struct{}{}
				x := &s.words[pos]
				d := bits.OnesCount64(x[0]^w[0]) + bits.OnesCount64(x[1]^w[1]) + bits.OnesCount64(x[2]^w[2]) + bits.OnesCount64(x[3]^w[3])
				if d <= radius {
					fn(s.refs[pos], d)
				}
			}
		}
	}
}
