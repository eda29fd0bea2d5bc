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

// Remove drops the hash inserted under ref.
func (s *LinearSearcher) Remove(ref uint32) {
	if i := slices.Index(s.refs, ref); i >= 0 {
		s.words = slices.Delete(s.words, i, i+1)
		s.refs = slices.Delete(s.refs, i, i+1)
	}
}

// Hash returns the hash inserted under ref.
func (s *LinearSearcher) Hash(ref uint32) (pdq.Hash, bool) {
	return hashAt(s.words, s.refs, ref)
}

// hashAt finds ref among refs (at its own position when refs were
// inserted in order, as Index inserts them; else by a scan).
func hashAt(ws [][4]uint64, refs []uint32, ref uint32) (pdq.Hash, bool) {
	p := -1
	if int(ref) < len(refs) && refs[ref] == ref {
		p = int(ref)
	} else {
		p = slices.Index(refs, ref)
	}
	if p < 0 {
		return pdq.Hash{}, false
	}
	var h pdq.Hash
	for i, w := range ws[p] {
		binary.LittleEndian.PutUint64(h[8*i:], w)
	}
	return h, true
}

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
	// winBase is the window ref of wins[0] (an image's refs are
	// consecutive).
	winBase  uint32
	wins     []indexWindow
	patch    []byte // nil: no pixel check (windows stored before patches)
	hasWhole bool
	hasArea  bool // an area hash under ref index|areaRef
	hasClean bool // a cleaned hash under ref index|cleanedRef
	dead     bool // removed: skipped by searches
}

type indexWindow struct {
	cx, cy, side, angle float32 // fractions as in Region
	variant             pdq.Dihedral
}

// Index holds signatures and answers queries. Safe for concurrent use.
type Index struct {
	wmu     sync.Mutex // serialises writers (Add, Remove, Finish, Maintain)
	mu      sync.RWMutex
	whole   RangeSearcher
	windows RangeSearcher
	entries []entry
	// window ref -> (entry, window)
	winRef []uint64
	byID   map[int64]uint32 // id -> live entry
	live   int
	vp     verifyParams
	// low finds windows by the bits of their lowest frequencies
	// (lowseed.go).
	low lowTable
}

// NewIndex returns an empty index over linear scans.
func NewIndex() *Index { return NewIndexWith(&LinearSearcher{}, &LinearSearcher{}) }

// NewIndexWith returns an empty index over the given searchers (one for
// whole-image hashes, one for windows).
func NewIndexWith(whole, windows RangeSearcher) *Index {
	return NewIndexWithOptions(whole, windows, IndexOptions{})
}

// IndexOptions tune an index's searches; the zero value gives the
// defaults.
type IndexOptions struct {
	// SeedWindows bounds the query windows per plane (the best ranked)
	// that seed the window search's first stage (see windowHits); 0 seeds
	// every one. Fewer make lookups in a large index faster and lose the
	// re-posts found only through lower-ranked windows: at a million
	// indexed images, 48 cut the lookup's CPU p99 from 20.6 to 6.8-10.1 ms
	// and its finds from 0.9003 to 0.8946 (bench/results/
	// neardup-lookup-1m-seedwin48.txt against neardup-lookup-1m-pixels.txt);
	// in the eval at 1,000 originals (xmodal eval neardup --seed-windows),
	// recall@1 of two-edit re-posts fell from 0.918 to 0.896 (generated)
	// and 0.783 to 0.768 (real).
	SeedWindows int
	// ExactLookup makes the two approximate multi-index searches of a
	// lookup exact. By default the window search's first stage is
	// approximate (see ProbeSeedDistance: the windows within
	// ProbeSeedDistance that agree with a seeding window exactly on one
	// chunk, about 26 times fewer probes than an exact search within
	// SeedDistance), and so is the pixel-verified whole-image band (see
	// BandProbeBits). The whole-image search within WholeDistance (plain
	// PDQ) is exact either way. Over a searcher that cannot probe
	// (LinearSearcher, ChunkSearcher) the default searches exactly, the
	// first stage within ProbeSeedDistance.
	ExactLookup bool
	// WholeBand is the reach in bits of the pixel-verified whole-image
	// match (see WholeBandDistance): 0 takes WholeBandDistance, a value
	// at most WholeDistance (or negative) turns it off, and so does a
	// whole-image searcher that cannot search that far (ChunkSearcher).
	WholeBand int
}

// NewIndexWithOptions is NewIndexWith with options; a negative
// SeedWindows counts as 0.
func NewIndexWithOptions(whole, windows RangeSearcher, opt IndexOptions) *Index {
	vp := defaultVerify
	vp.seedWindows = max(opt.SeedWindows, 0)
	if opt.ExactLookup {
		vp.probeDistance, vp.bandProbe = 0, -1
	}
	switch {
	case opt.WholeBand == 0:
		vp.wholeBand = WholeBandDistance
	case opt.WholeBand > WholeDistance:
		vp.wholeBand = min(opt.WholeBand, 256)
	default:
		vp.wholeBand = 0
	}
	if lim, ok := whole.(interface{ MaxRadius() int }); ok && lim.MaxRadius() < vp.wholeBand {
		vp.wholeBand = 0
	}
	return &Index{whole: whole, windows: windows, vp: vp}
}

// Len is the number of images held.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.live
}

// Add indexes an image's signature (from Signatures, or a whole-image PDQ
// hash alone from another platform) under id; w and h are the image's size.
// Adding an id again replaces its signature.
//
// The hashes enter the searchers after the index's own lock is released, so
// searches are not held up by a searcher's table maintenance; a search
// running meanwhile sees the image without some of its hashes, never a
// hash without its image.
func (ix *Index) Add(id int64, w, h int, sig []RegionHash) {
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	ix.remove(id)
	e := entry{id: id, w: uint16(min(w, math.MaxUint16)), h: uint16(min(h, math.MaxUint16))}
	ix.mu.Lock()
	ei := uint32(len(ix.entries))
	e.winBase = uint32(len(ix.winRef))
	var whole []pdq.Hash
	var wins []pdq.Hash
	var area, cleaned *pdq.Hash
	for _, r := range sig {
		switch r.Kind {
		case Whole:
			e.quality = uint8(min(max(r.Quality, 0), 100))
			whole = append(whole, r.Hash)
		case Area:
			if ei < cleanedRef { // (a billion images: refs run out)
				h := areaSpace(r.Hash)
				area = &h
			}
			if len(whole) == 0 { // the PDQ hash's quality, when it has one
				e.quality = uint8(min(max(r.Quality, 0), 100))
			}
		case Cleaned:
			if ei < cleanedRef {
				h := cleanedSpace(r.Hash)
				cleaned = &h
			}
		case Window:
			ix.winRef = append(ix.winRef, uint64(ei)<<16|uint64(len(e.wins)))
			e.wins = append(e.wins, indexWindow{cx: r.Region.CX, cy: r.Region.CY, side: r.Region.Side, angle: r.Region.Angle, variant: r.Transform})
			wins = append(wins, r.Hash)
		case Patch:
			if len(r.Pixels) == patchBytes {
				e.patch = slices.Clone(r.Pixels)
			}
		}
	}
	for k, hh := range wins {
		ix.low.insert(e.winBase+uint32(k), lowKey(words(hh)))
	}
	e.hasWhole = len(whole) > 0
	e.hasArea = area != nil
	e.hasClean = cleaned != nil
	ix.entries = append(ix.entries, e)
	if ix.byID == nil {
		ix.byID = map[int64]uint32{}
	}
	ix.byID[id] = ei
	ix.live++
	conc := ix.concurrent()
	if conc {
		ix.mu.Unlock()
	}
	for _, hh := range whole {
		ix.whole.Insert(ei, hh)
	}
	if area != nil {
		ix.whole.Insert(ei|areaRef, *area)
	}
	if cleaned != nil {
		ix.whole.Insert(ei|cleanedRef, *cleaned)
	}
	for k, hh := range wins {
		ix.windows.Insert(e.winBase+uint32(k), hh)
	}
	if !conc {
		ix.mu.Unlock()
	}
}

// concurrentWriter is a searcher whose inserts and removals may run beside
// its searches (MIHSearcher); others are written under the index's lock.
type concurrentWriter interface{ concurrentWrites() }

func (ix *Index) concurrent() bool {
	_, a := ix.whole.(concurrentWriter)
	_, b := ix.windows.(concurrentWriter)
	return a && b
}

// Remove drops the image added under id; false when there was none. Its
// hashes leave searchers that can remove (every searcher of this package);
// its slot in the index stays until the index is rebuilt (about 40 bytes,
// plus 8 a window).
func (ix *Index) Remove(id int64) bool {
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	return ix.remove(id)
}

// remover is a searcher that can drop a ref.
type remover interface{ Remove(ref uint32) }

// remove is Remove; the caller holds wmu.
func (ix *Index) remove(id int64) bool {
	ix.mu.Lock()
	ei, ok := ix.byID[id]
	if !ok {
		ix.mu.Unlock()
		return false
	}
	delete(ix.byID, id)
	e := &ix.entries[ei]
	e.dead = true
	ix.live--
	base, n, whole, area, cleaned := e.winBase, len(e.wins), e.hasWhole, e.hasArea, e.hasClean
	conc := ix.concurrent()
	if conc {
		ix.mu.Unlock()
	}
	if r, ok := ix.whole.(remover); ok && whole {
		r.Remove(ei)
	}
	if r, ok := ix.whole.(remover); ok && area {
		r.Remove(ei | areaRef)
	}
	if r, ok := ix.whole.(remover); ok && cleaned {
		r.Remove(ei | cleanedRef)
	}
	if r, ok := ix.windows.(remover); ok {
		for k := range n {
			r.Remove(base + uint32(k))
		}
	}
	if !conc {
		ix.mu.Unlock()
	}
	return true
}

// maintainer is a searcher whose inserts and removals leave work to do
// later (MIHSearcher with deferred tables).
type maintainer interface{ Maintain() }

// Maintain does the searchers' pending table work (MIHSearcher built
// deferred: index the hashes added since, merge, compact), outside the
// index's lock, so searches go on meanwhile. Searches are exact either way;
// call it from a background goroutine after writes.
func (ix *Index) Maintain() {
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	for _, s := range []RangeSearcher{ix.whole, ix.windows} {
		if m, ok := s.(maintainer); ok {
			m.Maintain()
		}
	}
}

// finisher is a searcher that wants a call once a bulk load is inserted
// (MIHSearcher's deferred table build).
type finisher interface{ Finish() }

// Finish tells the searchers that a bulk load is complete (MIHSearcher
// built with deferred tables builds them); searches are exact either way.
func (ix *Index) Finish() {
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	for _, s := range []RangeSearcher{ix.whole, ix.windows} {
		if f, ok := s.(finisher); ok {
			f.Finish()
		}
	}
}

// Match is a verified near-duplicate.
type Match struct {
	ID int64
	// Kind is the evidence: Whole (a whole-image or content-rectangle hash
	// within WholeDistance, or within the band beyond it with the pixel
	// check: see WholeBandDistance), Area (the area hash of the query or of
	// a content rectangle within WholeDistance of the image's: a
	// downscaled copy), Cleaned (the cleaned hash of the query or of a
	// content rectangle within WholeDistance of the image's cleaned hash
	// or of its PDQ hash: a watermarked copy) or Window (agreeing
	// windows).
	Kind Kind
	// Distance is the best Hamming distance of the evidence.
	Distance int
	// Windows is the number of query windows that agree on the geometry.
	Windows int
	// Visible, for a window match, is the number of the original's indexed
	// windows whose centre lies inside the part of it the query shows (by
	// the verified map): about the windows a faithful copy would show. Windows out of
	// Visible is how much of that evidence was found.
	Visible int
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
	// Pixels, for a window match, is the pixel check's correlation of the
	// query's pixels with the original's patch over the part it shows
	// (Pearson's r of the cells' values, patch.go); 0 when the original
	// has no patch (windows stored before patches) and for whole matches
	// within WholeDistance (a band match beyond it carries its check).
	Pixels float64
	// PixelDetail is the correlation of the cells' detail (0 where the
	// original has none at that scale, or no patch).
	PixelDetail float64
	// LowFrequency, for a window match, says that the agreeing windows met
	// only on the bits of their lowest frequencies (lowseed.go), each
	// beyond the window radius: a copy re-compressed hard, Distance then
	// over WindowDistance.
	LowFrequency bool
	// Part, for a window match of a search with SearchOptions.Parts, says
	// that the original shows a part of the query (it is a crop of the
	// query's picture), not the query a part of it: QueryRect is then
	// where in the query the original lies, and Shown the whole original.
	Part bool
}

// SearchOptions tune a search; zero values take the defaults.
type SearchOptions struct {
	// MinQuality skips whole-image hashes (query or indexed) of lower PDQ
	// quality; default DefaultMinQuality. Negative: no filter.
	MinQuality int
	// K bounds the matches; 0: all.
	K int
	// BandOnly leaves out the whole-image matches within WholeDistance
	// (the caller finds those in its own whole-image index): whole-image
	// hashes then find only the pixel-verified band beyond it.
	BandOnly bool
	// Parts also finds, by their windows, the indexed images that show a
	// part of the query's picture (crops of it: the query contains them),
	// as a search for the older crops of a known picture needs. Such a
	// match says Part, rests on two agreeing windows or more and passes a
	// stricter pixel check (partPixelCorr, partPixelDetail). Query the
	// image with Hasher.PartsQuery: its windows drawn larger meet the
	// crops' (TestPartsSearch: 51 of 53 75 % crops found, 32 with Query).
	Parts bool
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
	for i := range q.Hashes {
		qh := &q.Hashes[i]
		if qh.Kind == Area && qh.Quality >= minQ {
			ix.searchMoved(q, qh, Area, minQ, consider)
			continue
		}
		if qh.Cleaned && qh.Quality >= minQ {
			// Against the images' cleaned hashes here, and against their
			// PDQ hashes below, as the plain hashes are.
			ix.searchMoved(q, qh, Cleaned, minQ, consider)
		}
		if qh.Kind != Whole || qh.Quality < minQ {
			continue
		}
		r := q.Rects[qh.Rect]
		// The band beyond WholeDistance is searched for the hashes in
		// their original orientation only (a rotated or mirrored copy
		// is found within WholeDistance or by its windows): eight times
		// fewer searches at the wider, costlier radius.
		reach := WholeDistance
		band := ix.vp.wholeBand > WholeDistance && qh.Transform == pdq.Original && q.pixels != nil && !qh.Cleaned
		if band {
			reach = ix.vp.wholeBand
		} else if opt.BandOnly {
			continue
		}
		rangeFn := ix.whole.Range
		if pr, ok := ix.whole.(wholeProber); ok && band && ix.vp.bandProbe >= 0 {
			rangeFn = func(q pdq.Hash, radius int, fn func(ref uint32, dist int)) {
				pr.RangeProbe(q, radius, ix.vp.bandProbe, fn)
			}
		}
		rangeFn(qh.Hash, reach, func(ref uint32, d int) {
			if ref&(areaRef|cleanedRef) != 0 {
				return // an area or cleaned hash (inSpace: never this near)
			}
			e := &ix.entries[ref]
			if e.dead || int(e.quality) < minQ || (opt.BandOnly && d <= WholeDistance) {
				return
			}
			m := Match{Kind: Whole, Distance: d, QueryRect: [4]int{r.Min.X, r.Min.Y, r.Max.X, r.Max.Y},
				Shown: Region{X1: 1, Y1: 1}, Transform: inverse(qh.Transform), Score: 1 - float64(d)/256}
			if qh.Cleaned {
				// The query's cleaned hash met the image's PDQ hash (a
				// hash list's, or an image stored without a cleaned
				// hash): after the plain hash at the same distance.
				m.Kind, m.Score = Cleaned, m.Score-0.25/256
			}
			if d > WholeDistance {
				var ok bool
				if m.Pixels, m.PixelDetail, ok = ix.wholePixels(q, e, qh); !ok {
					return
				}
			}
			consider(ref, m)
		})
	}
	for ei, hits := range ix.windowHits(q) {
		mode := verifyLookup
		if opt.Parts {
			mode = verifyParts
		}
		if m, ok := ix.verify(q, &ix.entries[ei], hits, mode); ok {
			consider(ei, m)
		}
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

// searchMoved finds the images whose area hash (kind Area) or cleaned hash
// (kind Cleaned) lies within WholeDistance of the query's hash qh of that
// kind (of the whole query or of a content rectangle): the whole-image
// searcher holds them moved into spaces of their own (inSpace) under refs
// marked areaRef or cleanedRef. A whole-image PDQ match of an image
// outranks such a match at the same distance (consider keeps the higher
// score; these score a hair lower).
func (ix *Index) searchMoved(q *Query, qh *QueryHash, kind Kind, minQ int, consider func(uint32, Match)) {
	space, mark := areaSpace, uint32(areaRef)
	if kind == Cleaned {
		space, mark = cleanedSpace, cleanedRef
	}
	r := q.Rects[qh.Rect]
	ix.whole.Range(space(qh.Hash), WholeDistance, func(ref uint32, d int) {
		if ref&(areaRef|cleanedRef) != mark {
			return // a hash of another kind (inSpace: never this near)
		}
		ei := ref &^ mark
		e := &ix.entries[ei]
		if e.dead || int(e.quality) < minQ {
			return
		}
		consider(ei, Match{Kind: kind, Distance: d, QueryRect: [4]int{r.Min.X, r.Min.Y, r.Max.X, r.Max.Y},
			Shown: Region{X1: 1, Y1: 1}, Transform: inverse(qh.Transform), Score: 1 - (float64(d)+0.5)/256})
	})
}

// hashGetter is a searcher that returns the hash it holds under a ref
// (every searcher of this package): the window search then runs in two
// stages.
type hashGetter interface {
	Hash(ref uint32) (pdq.Hash, bool)
}

// probeRanger is a searcher that finds, in one approximate pass over a
// batch of query hashes, the refs within radius of one of them that agree
// with it within chunkRadius bits on a chunk of its multi-index
// (MIHSearcher).
type probeRanger interface {
	RangeAnyProbe(qs []pdq.Hash, radius, chunkRadius int, fn func(ref uint32))
}

// wholeProber is a searcher that finds, approximately, the refs within
// radius of a hash that agree with it within chunkRadius bits on a chunk
// of its multi-index (MIHSearcher).
type wholeProber interface {
	RangeProbe(q pdq.Hash, radius, chunkRadius int, fn func(ref uint32, dist int))
}

// anyRanger is a searcher that finds, in one pass over a batch of query
// hashes, every ref within radius of at least one of them
// (MIHSearcher: one multi-index search for the batch).
type anyRanger interface {
	RangeAny(qs []pdq.Hash, radius int, fn func(ref uint32))
}

// windowHits returns the window candidates of q grouped by indexed image,
// nearest first within each.
//
// With a searcher that returns its hashes (hashGetter) it runs in two
// stages. Seeding: the query's seedWindows best-ranked windows (every
// variant of each) are searched within seedDistance bits, a radius that a
// multi-index search answers with a fraction of the probes that
// windowDistance needs (with chunks of about 25 bits, radius 19 probes
// each chunk's one-bit neighbours, radius 28 its two-bit ones: 10x the
// probes); or, by default, approximately within probeDistance, probing
// only each chunk's own value (see ProbeSeedDistance). Verification:
// every indexed image with a seed hit has all its windows compared with
// all the query's windows within windowDistance,
// (runner-up variants included), which is the hit list a single-stage
// search gives for that image. The two agree on every image that has at
// least one window within seedDistance of a seeding window; a re-post's
// verified match rests on windows within strongDistance (20) of it,
// usually several. On the committed photos' 351 re-posts, one-stage
// radius 28 found 317, seeding at 19 with canonical variants 316 (at 16:
// 314, 12: 306; the 64 best-ranked windows per plane: 314; probed at 24:
// 317 and fewer CPU milliseconds than exact at 19).
func (ix *Index) windowHits(q *Query) map[uint32][]winHit {
	g, ok := ix.windows.(hashGetter)
	radius := ix.vp.seedDistance
	if ix.vp.probeDistance > 0 {
		radius = ix.vp.probeDistance
	}
	if !ok || radius >= ix.vp.windowDistance {
		return ix.windowHitsOneStage(q)
	}
	var qws [][4]uint64
	var qhs []*QueryHash
	var seeds []pdq.Hash
	var flips []*QueryHash // the seed's least certain key bits are flipped too
	for i := range q.Hashes {
		qh := &q.Hashes[i]
		if qh.Kind != Window {
			continue
		}
		qws = append(qws, words(qh.Hash))
		qhs = append(qhs, qh)
		if !qh.alt && (ix.vp.seedWindows <= 0 || qh.rank < ix.vp.seedWindows) {
			seeds = append(seeds, qh.Hash)
			flips = append(flips, qh)
		}
	}
	if len(seeds) == 0 {
		return nil
	}
	cands := map[uint32]struct{}{}
	add := func(ref uint32) { cands[uint32(ix.winRef[ref]>>16)] = struct{}{} }
	pr, probes := ix.windows.(probeRanger)
	ar, batches := ix.windows.(anyRanger)
	switch {
	case ix.vp.probeDistance > 0 && probes:
		pr.RangeAnyProbe(seeds, radius, 0, add)
	case batches:
		ar.RangeAny(seeds, radius, add)
	default:
		for _, s := range seeds {
			ix.windows.Range(s, radius, func(ref uint32, _ int) { add(ref) })
		}
	}
	lowBits := ix.vp.lowHitBits
	if lowBits > 0 {
		// An image that only the low seeds find needs lowMinRefs of its
		// windows among them, each within lowBits of its seed on the 64
		// lowest bits: a single shared key is common by chance (7 such
		// images a query at 10,000 indexed), two rare.
		lowRefs := map[uint32][]uint32{}
		var buf []uint32
		for si, s := range seeds {
			sw := words(s)
			k := lowKey(sw)
			buf, _ = ix.low.lookup(k, buf[:0])
			if fq := flips[si]; fq.hasFlips && ix.vp.lowFlips > 0 {
				for _, b := range fq.flips[:min(ix.vp.lowFlips, lowFlips)] {
					buf, _ = ix.low.lookup(k^1<<b, buf)
				}
			}
			for _, ref := range buf {
				ei := uint32(ix.winRef[ref] >> 16)
				if _, ok := cands[ei]; ok {
					continue
				}
				if h, ok := g.Hash(ref); !ok || lowDist(sw, words(h)) > lowBits {
					continue
				}
				if rs := lowRefs[ei]; !slices.Contains(rs, ref) {
					lowRefs[ei] = append(rs, ref)
				}
			}
		}
		for ei, rs := range lowRefs {
			if len(rs) >= lowMinRefs {
				cands[ei] = struct{}{}
			}
		}
	}
	out := make(map[uint32][]winHit, len(cands))
	var hits []winHit
	for ei := range cands {
		e := &ix.entries[ei]
		if e.dead {
			continue
		}
		hits = hits[:0]
		for k := range e.wins {
			h, ok := g.Hash(e.winBase + uint32(k))
			if !ok {
				continue
			}
			w := words(h)
			for i, qw := range qws {
				x2, x3 := qw[2]^w[2], qw[3]^w[3]
				d := bits.OnesCount64(qw[0]^w[0]) + bits.OnesCount64(qw[1]^w[1]) + bits.OnesCount64(x2) + bits.OnesCount64(x3)
				if d <= ix.vp.windowDistance || (lowBits > 0 && bits.OnesCount64(x2&lowHitMask[2])+bits.OnesCount64(x3&lowHitMask[3]) <= lowBits) {
					hits = append(hits, winHit{q: qhs[i], ent: ei, win: uint16(k), dist: d})
				}
			}
		}
		if len(hits) == 0 {
			continue
		}
		hs := slices.Clone(hits)
		slices.SortStableFunc(hs, func(a, b winHit) int { return a.dist - b.dist })
		out[ei] = hs
	}
	return out
}

// windowHitsOneStage searches every query window within windowDistance.
func (ix *Index) windowHitsOneStage(q *Query) map[uint32][]winHit {
	var hits []winHit
	for i := range q.Hashes {
		qh := &q.Hashes[i]
		if qh.Kind != Window {
			continue
		}
		ix.windows.Range(qh.Hash, ix.vp.windowDistance, func(ref uint32, d int) {
			wr := ix.winRef[ref]
			if ix.entries[wr>>16].dead {
				return
			}
			hits = append(hits, winHit{q: qh, ent: uint32(wr >> 16), win: uint16(wr), dist: d})
		})
	}
	slices.SortFunc(hits, func(a, b winHit) int {
		if a.ent != b.ent {
			return int(a.ent) - int(b.ent)
		}
		return a.dist - b.dist
	})
	out := map[uint32][]winHit{}
	for i := 0; i < len(hits); {
		j := i
		for j < len(hits) && hits[j].ent == hits[i].ent {
			j++
		}
		out[hits[i].ent] = hits[i:j:j]
		i = j
	}
	return out
}

// verifyParams are the thresholds of the window verification.
type verifyParams struct {
	// windowDistance bounds a window candidate's Hamming distance.
	windowDistance int
	// seedDistance is the radius of the first stage of the window search
	// and seedWindows the query windows per plane it searches (best
	// ranked; 0: all); see windowHits. seedDistance >= windowDistance:
	// one stage. probeDistance > 0: the first stage is approximate, at
	// that radius (see ProbeSeedDistance); seedDistance is then the
	// clusters' link relation's alone.
	seedDistance, seedWindows, probeDistance int
	// agreeTol: two window matches agree when their maps send the query
	// rectangle's centre and corners to within agreeTol (a fraction of
	// the original's longer side) of each other.
	agreeTol float64
	// A match needs agreeing windows (windows of the original) of total
	// weight minStrength, a window within strongDistance bits weighing 1
	// and a farther one weakWeight; or one window within loneDistance
	// bits (-1: a single window never suffices by itself: at 3,000
	// originals lone windows within 8 bits matched unrelated pictures;
	// see weakPixelDetail for the pixel-checked exception).
	strongDistance, loneDistance int
	weakWeight, minStrength      float64
	// The query must sit over the original as a re-post does: some query
	// rectangle mapped into the original lies at least minInside inside it
	// (a crop) and covers at least minCovered of it, or the original's
	// frame mapped into the query overlaps a query rectangle (the whole
	// query or a content rectangle) by at least minFrameIoU.
	minInside, minCovered, minFrameIoU float64
	// The pixel check's least correlations (see patch.go): of the cells'
	// values and detail, and of the values where the original has no
	// detail at the scale of a cell.
	minPixelCorr, minPixelDetail, minPixelCorrSmooth float64
	// bandProbe >= 0 makes the band's search approximate, each chunk
	// probed within that many bits (see hamming.Index.SearchProbe); -1:
	// exact.
	bandProbe int
	// wholeBand is the reach of the pixel-verified whole-image match (0:
	// off; see WholeBandDistance).
	wholeBand int
	// Weak evidence (under minStrength: one window, or two far ones) makes
	// a match when its nearest window lies within strongDistance and the
	// pixel check, with detail to judge, finds values r at least
	// weakPixelCorr and detail r at least weakPixelDetail (0: never). At
	// 10,000 originals, lone windows admitted with the ordinary pixel
	// thresholds let distractors through with detail r 0.74-0.82; the
	// true lone-window matches of the 1k eval had 0.94-0.998.
	weakPixelCorr, weakPixelDetail float64
	// A lookup's match on one window alone (weak evidence) needs values r
	// at least lonePixelCorr as well (0: no more than weakPixelCorr). In
	// an index of 50,065 crops of 10,013 pictures (the parts benchmark,
	// bench/results/neardup-parts-10k-rules.txt) whole pictures matched
	// other pictures' crops on one window 13 times, with values r
	// 0.83-0.98 and detail r 0.90-0.97; the lone-window matches of the
	// 10k eval were all true, r 0.995-1.000 (docs/neardup.md). The
	// clusters' link relation keeps weakPixelCorr.
	lonePixelCorr float64
	// Weak evidence whose nearest window lies farther than
	// strongDistance, within farWeakDistance (0: never), makes a match
	// when the pixel check finds values r at least farWeakCorr and detail
	// r at least farWeakDetail. JPEG at quality 30 over a 75 % crop of a
	// smooth picture moves its windows 22-28 bits: in a 200-picture run,
	// 18 of the 42 missed crop75+jpeg30 re-posts had one or two windows
	// there, agreeing on the crop, with values r 0.98-1.00 and detail r
	// 0.90-1.00 (docs/neardup.md).
	farWeakDistance            int
	farWeakCorr, farWeakDetail float64
	// lowHitBits > 0 seeds the window search by the windows' lowest
	// frequencies too and makes a pair beyond windowDistance whose 64
	// lowest bits differ in at most lowHitBits a hit (LowHitBits;
	// lowseed.go); 0: off.
	lowHitBits int
	// lowFlips: the crop plane's seeds look up the keys with each of
	// their lowFlips least certain bits flipped too (lowseed.go); 0: off.
	lowFlips int
}

var defaultVerify = verifyParams{windowDistance: WindowDistance, seedDistance: SeedDistance, seedWindows: 0, probeDistance: ProbeSeedDistance, bandProbe: BandProbeBits, agreeTol: 0.02, strongDistance: 20, weakWeight: 0.5, minStrength: 2, loneDistance: -1,
	minInside: 0.93, minCovered: 0.2, minFrameIoU: 0.8,
	minPixelCorr: MinPixelCorr, minPixelDetail: MinPixelDetail, minPixelCorrSmooth: MinPixelCorrSmooth,
	weakPixelCorr: 0.8, weakPixelDetail: 0.9, lonePixelCorr: 0.99,
	farWeakDistance: WindowDistance, farWeakCorr: 0.95, farWeakDetail: 0.93,
	lowHitBits: LowHitBits, lowFlips: lowFlips}

// The pixel check's thresholds (patch.go), chosen on the window matches of
// the 10k eval (docs/neardup.md): true matches had values of 0.5 or more
// (all but 2 of 1,237) and detail of 0.7 or more (all but 6 of those with
// detail to judge); the five false ones had detail of at most 0.63.
const (
	MinPixelCorr       = 0.5
	MinPixelDetail     = 0.7
	MinPixelCorrSmooth = 0.9
)

// cluster is the largest set of window hits of one image whose maps agree.
type cluster struct {
	best    int   // the hit whose map the others agree with
	members []int // hits (one per indexed window), nearest first
	m       affine
}

// clusterOf finds the largest agreeing set among the hits of one image, e,
// low hits (lowseed.go) counting lowWeight.
func (ix *Index) clusterOf(q *Query, e *entry, hits []winHit) cluster {
	W, H := float64(e.w), float64(e.h)
	long := math.Max(W, H)
	maps := make([]affine, len(hits))
	for k, h := range hits {
		iw := e.wins[h.win]
		maps[k] = windowMap(h.q.side, h.q.angle, h.q.cx, h.q.cy, h.q.Transform,
			float64(iw.side)*long, float64(iw.angle), float64(iw.cx)*W, float64(iw.cy)*H, iw.variant)
	}
	// The query rectangles' centres and corners under each hit's map
	// (agreePoints), computed once per rectangle a hit refers to.
	tol := ix.vp.agreeTol * long
	tol2 := tol * tol
	pts := make([][][5][2]float64, len(q.Rects))
	for k := range hits {
		ri := hits[k].q.Rect
		if pts[ri] != nil {
			continue
		}
		cs := agreePoints(q.Rects[ri])
		pts[ri] = make([][5][2]float64, len(hits))
		for l := range hits {
			for c, pt := range cs {
				pts[ri][l][c][0], pts[ri][l][c][1] = maps[l].apply(pt[0], pt[1])
			}
		}
	}
	var best cluster
	bestW := 0.0
	seen := make([]bool, len(e.wins))
	var members []int
	for k := range hits {
		p := pts[hits[k].q.Rect]
		clear(seen)
		members = members[:0]
		w := 0.0
		for l := range hits {
			if seen[hits[l].win] || !closePoints(&p[k], &p[l], tol2) {
				continue
			}
			seen[hits[l].win] = true
			members = append(members, l)
			if hits[l].dist <= ix.vp.windowDistance {
				w++
			} else {
				w += lowWeight
			}
		}
		if w > bestW {
			best, bestW = cluster{best: k, members: slices.Clone(members), m: maps[k]}, w
		}
	}
	// A low hit's map is the coarser: where the set was found from one
	// and holds a window within the radius, the nearest such window's
	// map places the query (a tiny photo's flipped meme failed the
	// placement under a low overlay window's map at 36 bits, its windows
	// at 12-28 bits agreeing).
	if len(best.members) > 0 && hits[best.best].dist > ix.vp.windowDistance {
		if n := best.members[0]; hits[n].dist <= ix.vp.windowDistance {
			best.best, best.m = n, maps[n]
		}
	}
	return best
}

// lowWeight is a low hit's weight in choosing the largest set (a window
// within the radius weighs 1): a window at 12 bits with one at 28 outweighs
// a pair at 28 and 36 bits, which had failed the far weak rule's pixel
// check where the other passes the weak rule's (a flipped crop).
const lowWeight = 0.25

// placement says how the query sits over the original under a cluster's
// map, for the query rectangle that fits best: inside is the share of the
// mapped rectangle that lies inside the original (1 for a crop), covered
// the share of the original it covers (1 for a copy that shows all of
// it), and frameIoU the overlap of the original's frame, mapped into the
// query, with the query rectangle (1 for a copy whose picture is exactly
// that rectangle: the whole query, or a content rectangle cut from a
// caption band or a frame). within and fills are the converse of inside
// and covered, for the link relation of clusters (link.go): the share of
// the original's frame, mapped into the query, that lies inside the query
// rectangle (1 when the original shows a part of the query: the original
// is the crop), and the share of that rectangle it fills.
type placement struct {
	inside, covered, frameIoU float64
	within, fills             float64
}

func (ix *Index) placement(q *Query, e *entry, m affine) placement {
	W, H := float64(e.w), float64(e.h)
	var best placement
	inv, ok := m.inverse()
	for _, r := range q.Rects {
		x0, y0, x1, y1 := bbox(m, r)
		area := (x1 - x0) * (y1 - y0)
		inter := math.Max(math.Min(x1, W)-math.Max(x0, 0), 0) * math.Max(math.Min(y1, H)-math.Max(y0, 0), 0)
		if area <= 0 {
			continue
		}
		p := placement{inside: inter / area, covered: inter / (W * H)}
		if ok {
			fx0, fy0, fx1, fy1 := bbox(inv, image.Rect(0, 0, int(W), int(H)))
			rx0, ry0, rx1, ry1 := float64(r.Min.X), float64(r.Min.Y), float64(r.Max.X), float64(r.Max.Y)
			i := math.Max(math.Min(fx1, rx1)-math.Max(fx0, rx0), 0) * math.Max(math.Min(fy1, ry1)-math.Max(fy0, ry0), 0)
			u := (fx1-fx0)*(fy1-fy0) + (rx1-rx0)*(ry1-ry0) - i
			if u > 0 {
				p.frameIoU = i / u
			}
			if fa := (fx1 - fx0) * (fy1 - fy0); fa > 0 {
				p.within = i / fa
			}
			if ra := (rx1 - rx0) * (ry1 - ry0); ra > 0 {
				p.fills = i / ra
			}
		}
		if p.within > best.within || (p.within == best.within && p.fills > best.fills) {
			best.within, best.fills = p.within, p.fills
		}
		best.inside = math.Max(best.inside, p.inside)
		best.covered = math.Max(best.covered, p.covered)
		best.frameIoU = math.Max(best.frameIoU, p.frameIoU)
	}
	return best
}

// bbox is the bounding box of rectangle r under m.
func bbox(m affine, r image.Rectangle) (x0, y0, x1, y1 float64) {
	x0, y0, x1, y1 = math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for _, c := range [4][2]float64{{float64(r.Min.X), float64(r.Min.Y)}, {float64(r.Max.X), float64(r.Min.Y)}, {float64(r.Min.X), float64(r.Max.Y)}, {float64(r.Max.X), float64(r.Max.Y)}} {
		x, y := m.apply(c[0], c[1])
		x0, y0, x1, y1 = math.Min(x0, x), math.Min(y0, y), math.Max(x1, x), math.Max(y1, y)
	}
	return
}

// partFills is the most of a query's area that an original inside it
// may fill and still be reported as a part of it (Match.Part): a 90 %
// crop fills 0.81.
const partFills = 0.9

// The pixel check of a part (Match.Part): values r and, where the
// original has detail, detail r at least these. Of the 4,787 true part
// matches among 1,013 pictures' crops, 99 % had r at least 0.988 and
// detail at least 0.930; the other pictures' crops that the lookup's
// thresholds (0.5, 0.7) let through at 10,000 pictures had r 0.52-0.72
// on many windows (bench/results/neardup-parts-10k.txt).
const (
	partPixelCorr   = 0.9
	partPixelDetail = 0.85
)

// verifyMode is what a verification accepts.
type verifyMode uint8

const (
	// verifyLookup: the query shows the original (a lookup).
	verifyLookup verifyMode = iota
	// verifyLink: either way round, the original inside the query too
	// (the original is a crop of the query: the clusters' link relation,
	// link.go).
	verifyLink
	// verifyParts: either way round, a match with the original inside
	// the query being a part (Match.Part), under the stricter rules of
	// parts (SearchOptions.Parts).
	verifyParts
)

// verify checks the window hits of one indexed image, e (nearest first).
func (ix *Index) verify(q *Query, e *entry, hits []winHit, mode verifyMode) (Match, bool) {
	link := mode != verifyLookup
	W, H := float64(e.w), float64(e.h)
	c := ix.clusterOf(q, e, hits)
	h := hits[c.best]
	// near is the distance of the nearest agreeing window (members are
	// nearest first): the weak rules, the score and the match read it.
	// (The best hit, whose map the others agree with, may lie farther: a
	// low hit's, beyond the far weak rule, in a pair with a window at 12
	// bits.)
	near := hits[c.members[0]].dist
	n := len(c.members)
	vp := &ix.vp
	strength := 0.0
	for _, l := range c.members {
		if hits[l].dist <= vp.strongDistance {
			strength++
		} else {
			strength += vp.weakWeight
		}
	}
	// Evidence under minStrength (one window, or two far ones) may still
	// make a match when its nearest window is within strongDistance and
	// the pixel check is far stricter (weakPixelCorr, weakPixelDetail).
	weak := false
	// Low hits alone (every agreeing window beyond windowDistance, met on
	// its lowest frequencies: lowseed.go) need lowMinRefs agreeing
	// windows and pass only the far weak rule's pixel check, never on an
	// overlay window. (One low window and the far weak pixel check matched
	// two distractors of the 10k eval, with values r 0.98-0.99.)
	low := true
	for _, l := range c.members {
		low = low && hits[l].dist > vp.windowDistance
	}
	if low {
		if n < lowMinRefs || h.q.overlay || vp.farWeakDistance <= 0 || e.patch == nil || q.pixels == nil {
			return Match{}, false
		}
		weak = true
	} else if strength < vp.minStrength && !(n == 1 && h.dist <= vp.loneDistance) {
		// Not on a window of an overlay-cleaned plane: opening a query's
		// lettering away leaves flat areas and hard edges (a caption
		// band's), on which one window and the pixel check agreed with an
		// unrelated picture in the 10k eval.
		if near > max(vp.strongDistance, vp.farWeakDistance) || h.q.overlay || vp.weakPixelDetail <= 0 || e.patch == nil || q.pixels == nil {
			return Match{}, false
		}
		weak = true
	}
	pl := ix.placement(q, e, c.m)
	crop := pl.inside >= vp.minInside && pl.covered >= vp.minCovered
	frame := pl.frameIoU >= vp.minFrameIoU
	inner := link && pl.within >= vp.minInside && pl.fills >= vp.minCovered
	if !crop && !frame && !inner {
		return Match{}, false
	}
	// part: the other way round, the original inside the query and
	// filling at most partFills of it (a crop of the query's picture; a
	// 90 % crop's frame also meets the query's by IoU).
	part := mode == verifyParts && inner && !crop && (!frame || pl.fills < partFills)
	// A part rests on two agreeing windows or more and passes a stricter
	// pixel check (below): a query image holds more than its crops show,
	// and at 10,000 pictures the lookup's rules let 14 of 10,000 other
	// pictures through as parts (the same drawn buildings on many
	// windows; one window over a smooth picture).
	if part && n < 2 {
		return Match{}, false
	}
	r := q.Rects[h.q.Rect]
	m := c.m
	pixels, pixelDetail := 0.0, 0.0
	if e.patch != nil && q.pixels != nil {
		inv, ok := m.inverse()
		if !ok {
			return Match{}, false
		}
		// The pixel check reads the query inside one of its rectangles:
		// the best hit's first, then the others. The nearest hit may lie
		// on the whole image while the picture is a content rectangle
		// (a crop under a caption band): the original's cells that the
		// map sends into the band then fail a check that the content
		// rectangle passes.
		passed := false
		for k := -1; k < len(q.Rects) && !passed; k++ {
			rr := r
			if k >= 0 {
				if k == h.q.Rect {
					continue
				}
				rr = q.Rects[k]
			}
			corr, detail, judged, ok := ix.pixelCheck(e, q, inv, rr, weak, near)
			if ok && weak && n == 1 && mode != verifyLink && corr < vp.lonePixelCorr {
				ok = false
			}
			if ok {
				passed, r, pixels = true, rr, corr
				if judged {
					pixelDetail = detail
				}
			}
		}
		if !passed || (part && (pixels < partPixelCorr || (pixelDetail != 0 && pixelDetail < partPixelDetail))) {
			return Match{}, false
		}
	} else if part {
		return Match{}, false // no pixels to check
	}
	// The query rectangle's corners in the original, as fractions.
	x0, y0, x1, y1 := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
	for _, c := range [4][2]float64{{float64(r.Min.X), float64(r.Min.Y)}, {float64(r.Max.X), float64(r.Min.Y)}, {float64(r.Min.X), float64(r.Max.Y)}, {float64(r.Max.X), float64(r.Max.Y)}} {
		x, y := m.apply(c[0], c[1])
		x0, y0, x1, y1 = math.Min(x0, x), math.Min(y0, y), math.Max(x1, x), math.Max(y1, y)
	}
	clamp := func(v, n float64) float32 { return float32(math.Min(math.Max(v/n, 0), 1)) }
	score := 1 - float64(near)/256
	if n < 2 {
		score -= 0.05
	}
	visible := 0
	bx0, by0, bx1, by1 := math.Max(x0, 0), math.Max(y0, 0), math.Min(x1, W), math.Min(y1, H)
	for _, iw := range e.wins {
		if cx, cy := float64(iw.cx)*W, float64(iw.cy)*H; cx >= bx0 && cx <= bx1 && cy >= by0 && cy <= by1 {
			visible++
		}
	}
	qr := [4]int{r.Min.X, r.Min.Y, r.Max.X, r.Max.Y}
	shown := Region{X0: clamp(x0, W), Y0: clamp(y0, H), X1: clamp(x1, W), Y1: clamp(y1, H)}
	if part {
		// The original is shown whole, inside the query: where.
		inv, _ := m.inverse() // not singular: the pixel check inverted it
		fx0, fy0, fx1, fy1 := bbox(inv, image.Rect(0, 0, int(W), int(H)))
		in := func(v float64, n int) int { return min(max(int(math.Round(v)), 0), n) }
		qr = [4]int{in(fx0, q.W), in(fy0, q.H), in(fx1, q.W), in(fy1, q.H)}
		shown, visible = Region{X1: 1, Y1: 1}, len(e.wins)
	}
	return Match{Kind: Window, Distance: near, Windows: n, Visible: visible, QueryRect: qr,
		Shown: shown, Transform: dihedralOf(m), Score: score, Pixels: pixels, PixelDetail: pixelDetail,
		LowFrequency: low, Part: part}, true
}

// pixelCheck runs the pixel check of a window match of e under inv
// (original pixels to query pixels) inside the query rectangle r, on the
// query's pixels and, where those fail, on its overlay-cleaned pixels;
// weak asks for weak evidence's stricter thresholds, dist is the nearest
// hit's distance.
func (ix *Index) pixelCheck(e *entry, q *Query, inv affine, r image.Rectangle, weak bool, dist int) (corr, detail float64, judged, ok bool) {
	corr, detail, judged, ok = ix.pixelCheckOn(q.pixels, e, inv, r, weak, dist)
	if !ok && q.cleanPixels != nil {
		corr, detail, judged, ok = ix.pixelCheckOn(q.cleanPixels, e, inv, r, weak, dist)
	}
	return corr, detail, judged, ok
}

// pixelCheckOn is pixelCheck on the query pixels qp.
func (ix *Index) pixelCheckOn(qp *queryPixels, e *entry, inv affine, r image.Rectangle, weak bool, dist int) (corr, detail float64, judged, ok bool) {
	vp := &ix.vp
	corr, detail, judged, cells := pixelAgreement(e.patch, float64(e.w), float64(e.h), qp, inv, float64(r.Min.X), float64(r.Min.Y), float64(r.Max.X), float64(r.Max.Y))
	switch {
	case cells < minPatchCells:
		return corr, detail, judged, false
	case judged && (corr < vp.minPixelCorr || detail < vp.minPixelDetail):
		return corr, detail, judged, false
	case !judged && corr < vp.minPixelCorrSmooth:
		return corr, detail, judged, false
	case weak && (!judged || corr < vp.weakPixelCorr || detail < vp.weakPixelDetail):
		return corr, detail, judged, false
	case weak && dist > vp.strongDistance && (corr < vp.farWeakCorr || detail < vp.farWeakDetail):
		return corr, detail, judged, false
	}
	return corr, detail, judged, true
}

// agreePoints are the points of a query rectangle r that two window
// maps must send near each other to agree (clusterOf): its centre and
// corners, within agreeTol of the original's longer side.
func agreePoints(r image.Rectangle) [5][2]float64 {
	cx, cy := float64(r.Min.X+r.Max.X)/2, float64(r.Min.Y+r.Max.Y)/2
	return [5][2]float64{{cx, cy}, {float64(r.Min.X), float64(r.Min.Y)}, {float64(r.Max.X), float64(r.Min.Y)}, {float64(r.Min.X), float64(r.Max.Y)}, {float64(r.Max.X), float64(r.Max.Y)}}
}

// closePoints says whether each point of a lies within sqrt(tol2) of b's.
func closePoints(a, b *[5][2]float64, tol2 float64) bool {
	for c := range a {
		dx, dy := a[c][0]-b[c][0], a[c][1]-b[c][1]
		if dx*dx+dy*dy > tol2 {
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
		switch r.Kind {
		case Window:
			n += windowBytes
		case Patch:
			n += patchBytes
		default:
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

// WholeBandDistance is the default reach of the pixel-verified
// whole-image match. A query's whole-image hashes in their original
// orientation (of the whole query and of each content rectangle) also
// match an indexed image whose whole-image hash lies beyond
// WholeDistance but within WholeBandDistance bits when the pixel check
// (patch.go) agrees with the query rectangle laid over the original's
// whole frame, with detail to judge (a smooth original is not matched
// this way). Heavy overlays and re-encodings of small pictures (a
// watermark across the picture, JPEG quality 30 of a 256-pixel photo, a
// brightened dark photo) move the whole-image hash 32-56 bits, where
// unrelated pictures of one kind lie too; the pixel check tells them
// apart. Measured in docs/neardup.md.
const WholeBandDistance = 56

// wholeMap is the map from query pixels to the original's pixels under
// which query rectangle r, hashed in dihedral variant d, is the whole
// original (W x H): the rectangle's centred coordinates, as fractions of
// its sides, go through the variant's action (the original's hash equals
// the query's variant d) onto the original's frame.
func wholeMap(r image.Rectangle, d pdq.Dihedral, W, H float64) affine {
	g := gridMat[d]
	rw, rh := float64(r.Dx()), float64(r.Dy())
	cx, cy := float64(r.Min.X)+rw/2, float64(r.Min.Y)+rh/2
	a, b, c, dd := g[0]*W/rw, g[1]*W/rh, g[2]*H/rw, g[3]*H/rh
	return affine{a, b, c, dd, W/2 - (a*cx + b*cy), H/2 - (c*cx + dd*cy)}
}

// wholePixels is the pixel check of a whole-image match beyond
// WholeDistance: the query rectangle of qh laid over e's whole frame must
// agree with e's patch as a window match's must, and the original must
// have detail to judge (ok false otherwise, and without a patch or the
// query's pixels).
func (ix *Index) wholePixels(q *Query, e *entry, qh *QueryHash) (corr, detail float64, ok bool) {
	if e.patch == nil || q.pixels == nil {
		return 0, 0, false
	}
	W, H := float64(e.w), float64(e.h)
	r := q.Rects[qh.Rect]
	inv, invertible := wholeMap(r, qh.Transform, W, H).inverse()
	if !invertible {
		return 0, 0, false
	}
	corr, detail, judged, cells := pixelAgreement(e.patch, W, H, q.pixels, inv, float64(r.Min.X), float64(r.Min.Y), float64(r.Max.X), float64(r.Max.Y))
	vp := &ix.vp
	ok = judged && cells >= minPatchCells && corr >= vp.minPixelCorr && detail >= vp.minPixelDetail
	return corr, detail, ok
}
