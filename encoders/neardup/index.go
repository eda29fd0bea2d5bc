package neardup

import (
	"encoding/binary"
	"image"
	"math"
	"math/bits"
	"slices"
	"sync"

	"github.com/xmodal/xmodal/encoders/pdq"
)

// RangeSearcher is an exact Hamming range search over 256-bit hashes:
// Range calls fn for every inserted hash within radius bits of q. The
// index keeps whole-image hashes and window hashes in one each.
// LinearSearcher is the reference implementation; a multi-index-hashing
// searcher (internal/hamming) plugs in through NewIndexWith.
type RangeSearcher interface {
	Insert(ref uint32, h pdq.Hash)
	Range(q pdq.Hash, radius int, fn func(ref uint32, dist int))
	Len() int
}

// LinearSearcher scans every hash. Not safe for concurrent Insert.
type LinearSearcher struct {
	words [][4]uint64
	refs  []uint32
}

// Insert adds h under ref.
func (s *LinearSearcher) Insert(ref uint32, h pdq.Hash) {
	s.words = append(s.words, words(h))
	s.refs = append(s.refs, ref)
}

// Len is the number of hashes held.
func (s *LinearSearcher) Len() int { return len(s.refs) }

// Range scans every hash.
func (s *LinearSearcher) Range(q pdq.Hash, radius int, fn func(ref uint32, dist int)) {
	w := words(q)
	for i := range s.words {
		v := &s.words[i]
		d := bits.OnesCount64(v[0]^w[0]) + bits.OnesCount64(v[1]^w[1]) + bits.OnesCount64(v[2]^w[2]) + bits.OnesCount64(v[3]^w[3])
		if d <= radius {
			fn(s.refs[i], d)
		}
	}
}

func words(h pdq.Hash) [4]uint64 {
	return [4]uint64{binary.LittleEndian.Uint64(h[0:]), binary.LittleEndian.Uint64(h[8:]), binary.LittleEndian.Uint64(h[16:]), binary.LittleEndian.Uint64(h[24:])}
}

// entry is one indexed image.
type entry struct {
	id      int64
	w, h    uint16 // size of the image as hashed (capped at 65535)
	quality uint8
	wins    []indexWindow
}

type indexWindow struct {
	cx, cy, side, angle float32 // fractions as in Region
	variant             pdq.Dihedral
}

// Index holds signatures and answers queries. Safe for concurrent use.
type Index struct {
	mu      sync.RWMutex
	whole   RangeSearcher
	windows RangeSearcher
	entries []entry
	// window ref -> (entry, window)
	winRef []uint64
}

// NewIndex returns an empty index over linear scans.
func NewIndex() *Index { return NewIndexWith(&LinearSearcher{}, &LinearSearcher{}) }

// NewIndexWith returns an empty index over the given searchers (one for
// whole-image hashes, one for windows).
func NewIndexWith(whole, windows RangeSearcher) *Index {
	return &Index{whole: whole, windows: windows}
}

// Len is the number of images held.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return len(ix.entries)
}

// Add indexes an image's signature (from Signatures, or a whole-image PDQ
// hash alone from another platform) under id; w and h are the image's size.
func (ix *Index) Add(id int64, w, h int, sig []RegionHash) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	e := entry{id: id, w: uint16(min(w, math.MaxUint16)), h: uint16(min(h, math.MaxUint16))}
	ei := uint32(len(ix.entries))
	for _, r := range sig {
		switch r.Kind {
		case Whole:
			e.quality = uint8(min(max(r.Quality, 0), 100))
			ix.whole.Insert(ei, r.Hash)
		case Window:
			ref := uint32(len(ix.winRef))
			ix.winRef = append(ix.winRef, uint64(ei)<<16|uint64(len(e.wins)))
			e.wins = append(e.wins, indexWindow{cx: r.Region.CX, cy: r.Region.CY, side: r.Region.Side, angle: r.Region.Angle, variant: r.Transform})
			ix.windows.Insert(ref, r.Hash)
		}
	}
	ix.entries = append(ix.entries, e)
}

// Match is a verified near-duplicate.
type Match struct {
	ID int64
	// Kind is the evidence: Whole (a whole-image or content-rectangle hash
	// within WholeDistance) or Window (agreeing windows).
	Kind Kind
	// Distance is the best Hamming distance of the evidence.
	Distance int
	// Windows is the number of query windows that agree on the geometry.
	Windows int
	// QueryRect is the part of the query that showed the picture (query
	// pixels): the whole image, or a content rectangle.
	QueryRect [4]int
	// Shown is the part of the original the query shows, in fractions of
	// its width and height (the whole image for a whole match; the
	// estimated crop for a window match).
	Shown Region
	// Transform is the rotation or mirror that turns the original into
	// the query.
	Transform pdq.Dihedral
	// Score orders matches (higher is better): 1 - distance/256, less
	// 0.05 for a window match resting on fewer than two windows.
	Score float64
}

// SearchOptions tune a search; zero values take the defaults.
type SearchOptions struct {
	// MinQuality skips whole-image hashes (query or indexed) of lower PDQ
	// quality; default DefaultMinQuality. Negative: no filter.
	MinQuality int
	// K bounds the matches; 0: all.
	K int
}

type winHit struct {
	q    *QueryHash
	ent  uint32
	win  uint16
	dist int
}

// DefaultMinQuality is the least PDQ quality of a whole-image hash that
// takes part in a search: flat images (plain colours, quality near 0) hash
// to nearly the same bits and would match each other. PDQ's authors call
// quality under 50 untrustworthy; smooth photos (skies, studio shots) score
// 20-50 and still hash reliably, and dark or washed-out photos score 3-10
// (the hash itself does not depend on contrast); plain colours score 0-1.
const DefaultMinQuality = 3

// Search returns the verified matches of q, best first.
func (ix *Index) Search(q *Query, opt SearchOptions) []Match {
	minQ := opt.MinQuality
	if minQ == 0 {
		minQ = DefaultMinQuality
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	best := map[uint32]*Match{}
	consider := func(ei uint32, m Match) {
		if cur, ok := best[ei]; !ok || m.Score > cur.Score {
			m.ID = ix.entries[ei].id
			best[ei] = &m
		}
	}
	var hits []winHit
	for i := range q.Hashes {
		qh := &q.Hashes[i]
		switch qh.Kind {
		case Whole:
			if qh.Quality < minQ {
				continue
			}
			r := q.Rects[qh.Rect]
			ix.whole.Range(qh.Hash, WholeDistance, func(ref uint32, d int) {
				if int(ix.entries[ref].quality) < minQ {
					return
				}
				consider(ref, Match{Kind: Whole, Distance: d, QueryRect: [4]int{r.Min.X, r.Min.Y, r.Max.X, r.Max.Y},
					Shown: Region{X1: 1, Y1: 1}, Transform: inverse(qh.Transform), Score: 1 - float64(d)/256})
			})
		case Window:
			ix.windows.Range(qh.Hash, WindowDistance, func(ref uint32, d int) {
				wr := ix.winRef[ref]
				hits = append(hits, winHit{q: qh, ent: uint32(wr >> 16), win: uint16(wr), dist: d})
			})
		}
	}
	// Windows: group by image, verify geometry.
	slices.SortFunc(hits, func(a, b winHit) int {
		if a.ent != b.ent {
			return int(a.ent) - int(b.ent)
		}
		return a.dist - b.dist
	})
	for i := 0; i < len(hits); {
		j := i
		for j < len(hits) && hits[j].ent == hits[i].ent {
			j++
		}
		if m, ok := ix.verify(q, hits[i:j]); ok {
			consider(hits[i].ent, m)
		}
		i = j
	}
	out := make([]Match, 0, len(best))
	for _, m := range best {
		out = append(out, *m)
	}
	slices.SortFunc(out, func(a, b Match) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return int(a.ID - b.ID)
	})
	if opt.K > 0 && len(out) > opt.K {
		out = out[:opt.K]
	}
	return out
}

// Verification tolerances: two window matches agree when their maps send
// the query rectangle's centre and corners to within agreeTol (fraction of
// the original's longer side) of each other. A lone window match counts
// only at or under loneDistance bits.
const (
	agreeTol     = 0.04
	loneDistance = 8
)

// verify checks the window hits of one indexed image (nearest first).
func (ix *Index) verify(q *Query, hits []winHit) (Match, bool) {
	e := &ix.entries[hits[0].ent]
	W, H := float64(e.w), float64(e.h)
	long := math.Max(W, H)
	maps := make([]affine, len(hits))
	for k, h := range hits {
		iw := e.wins[h.win]
		maps[k] = windowMap(h.q.side, h.q.angle, h.q.cx, h.q.cy, h.q.Transform,
			float64(iw.side)*long, float64(iw.angle), float64(iw.cx)*W, float64(iw.cy)*H, iw.variant)
	}
	bestK, bestN := 0, 0
	for k := range hits {
		r := q.Rects[hits[k].q.Rect]
		n := 0
		seen := map[uint16]bool{}
		for l := range hits {
			if seen[hits[l].win] || !agree(maps[k], maps[l], r, long) {
				continue
			}
			seen[hits[l].win] = true
			n++
		}
		if n > bestN {
			bestK, bestN = k, n
		}
	}
	h := hits[bestK]
	if bestN < 2 && h.dist > loneDistance {
		return Match{}, false
	}
	r := q.Rects[h.q.Rect]
	m := maps[bestK]
	// The query rectangle's corners in the original, as fractions.
	x0, y0, x1, y1 := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for _, c := range [4][2]float64{{float64(r.Min.X), float64(r.Min.Y)}, {float64(r.Max.X), float64(r.Min.Y)}, {float64(r.Min.X), float64(r.Max.Y)}, {float64(r.Max.X), float64(r.Max.Y)}} {
		x, y := m.apply(c[0], c[1])
		x0, y0, x1, y1 = math.Min(x0, x), math.Min(y0, y), math.Max(x1, x), math.Max(y1, y)
	}
	clamp := func(v, n float64) float32 { return float32(math.Min(math.Max(v/n, 0), 1)) }
	score := 1 - float64(h.dist)/256
	if bestN < 2 {
		score -= 0.05
	}
	return Match{Kind: Window, Distance: h.dist, Windows: bestN, QueryRect: [4]int{r.Min.X, r.Min.Y, r.Max.X, r.Max.Y},
		Shown: Region{X0: clamp(x0, W), Y0: clamp(y0, H), X1: clamp(x1, W), Y1: clamp(y1, H)}, Transform: dihedralOf(m), Score: score}, true
}

// agree reports whether maps a and b send the centre and the corners of
// the query rectangle r to within agreeTol of the original's longer side.
func agree(a, b affine, r image.Rectangle, long float64) bool {
	tol := agreeTol * long
	cx, cy := float64(r.Min.X+r.Max.X)/2, float64(r.Min.Y+r.Max.Y)/2
	for _, c := range [5][2]float64{{cx, cy}, {float64(r.Min.X), float64(r.Min.Y)}, {float64(r.Max.X), float64(r.Min.Y)}, {float64(r.Min.X), float64(r.Max.Y)}, {float64(r.Max.X), float64(r.Max.Y)}} {
		ax, ay := a.apply(c[0], c[1])
		bx, by := b.apply(c[0], c[1])
		if math.Hypot(ax-bx, ay-by) > tol {
			return false
		}
	}
	return true
}

// Stored sizes: a whole-image hash with its quality and the image size;
// a window with its geometry (four 16-bit fixed-point numbers) and
// variant.
const (
	wholeBytes  = 32 + 1 + 4
	windowBytes = 32 + 8 + 1
)

// EncodedSize is the number of bytes a signature takes in the index.
func EncodedSize(sig []RegionHash) int {
	n := 0
	for _, r := range sig {
		if r.Kind == Window {
			n += windowBytes
		} else {
			n += wholeBytes
		}
	}
	return n
}

// inverse returns the dihedral that undoes d: the query's variant d that
// matched the original turns the query into the original, so the original
// becomes the query by its inverse.
func inverse(d pdq.Dihedral) pdq.Dihedral {
	switch d {
	case pdq.Rotate90:
		return pdq.Rotate270
	case pdq.Rotate270:
		return pdq.Rotate90
	}
	return d
}
