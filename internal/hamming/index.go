package hamming

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
)

// store is the entries by position: codes and ids in arrays of some
// capacity (positions n and beyond are free), and a bit per position set
// once the entry is removed. A writer grows the arrays by copying them
// without holding the searchers' lock (positions below n never change),
// then publishes the copies.
type store struct {
	codes []Code
	ids   []uint64
	dead  []uint64
	n     uint32 // positions used
	nDead int
}

func (st *store) code(p uint32) *Code { return &st.codes[p] }
func (st *store) id(p uint32) uint64  { return st.ids[p] }
func (st *store) isDead(p uint32) bool {
	return st.dead[p>>6]>>(p&63)&1 == 1
}

// Options configure an Index. The zero value is ready to use.
type Options struct {
	// Chunks fixes the number of chunks m (8..64) of every segment; 0
	// chooses per segment: by Radius when it is set, else by the segment's
	// size (chunks of about log2(n) bits).
	Chunks int
	// Radius is the search radius the index is tuned for (0: none): with
	// Chunks 0, each segment takes the number of chunks of least modelled
	// search cost at this radius (see indexCost). Searches at any radius
	// stay exact; only their speed depends on it.
	Radius int
	// BucketLoad is the mean number of entries per directory bucket of a
	// table (default 4): larger buckets mean a smaller directory and more
	// chunk suffixes compared per probe.
	BucketLoad float64
	// TailSize is the number of unindexed entries (searched linearly) at
	// which they become an indexed segment (default 4096).
	TailSize int
	// DeferMaintenance stops Add and Remove from building segments, merging
	// them and compacting: the caller calls Maintain (for example after
	// releasing its own locks). Searches stay exact either way.
	DeferMaintenance bool
	// Workers bounds the goroutines that build a segment's tables (default
	// GOMAXPROCS).
	Workers int
}

// Defaults.
const (
	DefaultBucketLoad = 4.0
	DefaultTailSize   = 4096
)

// WithDefaults returns o with the zero fields set to their defaults.
func (o Options) WithDefaults() Options {
	c := o
	if c.BucketLoad == 0 {
		c.BucketLoad = DefaultBucketLoad
	}
	if c.TailSize == 0 {
		c.TailSize = DefaultTailSize
	}
	if c.Workers == 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	return c
}

// chunks is the number of chunks of a segment of n entries (o has its
// defaults).
func (o *Options) chunks(n int) int {
	switch {
	case o.Chunks != 0:
		return o.Chunks
	case o.Radius > 0:
		return chunksForRadius(n, o.BucketLoad, o.Radius)
	}
	return chunksFor(n)
}

// Validate reports an option out of range.
func (o *Options) Validate() error {
	var errs []error
	if o.Chunks != 0 && (o.Chunks < minChunks || o.Chunks > maxChunks) {
		errs = append(errs, fmt.Errorf("chunks %d is outside %d..%d", o.Chunks, minChunks, maxChunks))
	}
	if o.BucketLoad < 0 || math.IsNaN(o.BucketLoad) || math.IsInf(o.BucketLoad, 0) {
		errs = append(errs, fmt.Errorf("bucket load %v must be positive", o.BucketLoad))
	}
	if o.Radius < 0 || o.Radius > Bits {
		errs = append(errs, fmt.Errorf("radius %d is outside 0..%d", o.Radius, Bits))
	}
	if o.TailSize < 0 {
		errs = append(errs, fmt.Errorf("tail size %d must not be negative", o.TailSize))
	}
	if o.Workers < 0 {
		errs = append(errs, fmt.Errorf("workers %d must not be negative", o.Workers))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("hamming: %w", err)
	}
	return nil
}

// Index is an exact Hamming range search over 256-bit codes with uint64
// ids (see the package comment for the method and the concurrency model).
// Each id is held once: adding an id again replaces its code. Distinct ids
// may share a code.
type Index struct {
	opt Options

	wmu sync.Mutex // serialises writers

	mu     sync.RWMutex // searchers read, writers publish under it
	st     store
	segs   []*segment // ascending, disjoint position ranges
	tailLo uint32     // positions tailLo..st.n-1 are not indexed
	byID   idTable    // id -> position

	masks maskCache
	sink  atomic.Uint32 // keeps GetBatch's touching reads
}

// New returns an empty index.
func New(opt Options) (*Index, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	return &Index{opt: opt.WithDefaults()}, nil
}

// Len is the number of entries.
func (ix *Index) Len() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.byID.n
}

// Get returns the code of id.
func (ix *Index) Get(id uint64) (Code, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	p, ok := ix.byID.find(ix.st.ids, id)
	if !ok {
		return Code{}, false
	}
	return *ix.st.code(p), true
}

// GetBatch writes the code of ids[i] to dst[i] and reports in found[i]
// whether ids[i] is present (dst[i] is then the zero code), for every i,
// under one read lock: for many ids much faster than Get, as the table's
// reads of one batch overlap. It panics when the slices' lengths differ.
func (ix *Index) GetBatch(ids []uint64, dst []Code, found []bool) {
	if len(dst) != len(ids) || len(found) != len(ids) {
		panic(fmt.Sprintf("hamming: GetBatch with %d ids, %d codes and %d flags", len(ids), len(dst), len(found)))
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	t := &ix.byID
	if len(t.cells) == 0 {
		clear(dst)
		clear(found)
		return
	}
	const batch = 64
	var homes [batch]uint32
	var sink uint32
	for lo := 0; lo < len(ids); lo += batch {
		part := ids[lo:min(lo+batch, len(ids))]
		// Pass 1: every id's home cell, read so that pass 2 finds it in the
		// cache (the reads do not depend on each other and overlap).
		for i, id := range part {
			h := t.home(id)
			homes[i] = h
			sink += t.cells[h]
		}
		for i, id := range part {
			p, ok := t.findFrom(ix.st.ids, id, homes[i])
			found[lo+i] = ok
			if ok {
				dst[lo+i] = *ix.st.code(p)
			} else {
				dst[lo+i] = Code{}
			}
		}
	}
	ix.sink.Add(sink)
}

// Reserve prepares an empty index for n entries: the codes, ids and id
// table are sized once instead of growing (n entries added to an index
// reserved for them, then Build, leave no spare capacity).
func (ix *Index) Reserve(n int) {
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	if ix.st.n != 0 || n <= len(ix.st.codes) {
		return
	}
	st := store{codes: hugeSlice[Code](n), ids: hugeSlice[uint64](n), dead: make([]uint64, (n+63)/64)}
	t := ix.byID.resized(nil, n)
	ix.mu.Lock()
	ix.st, ix.byID = st, t
	ix.mu.Unlock()
}

// Add adds id with code c, replacing the code id had.
func (ix *Index) Add(id uint64, c Code) {
	ix.AddBatch([]uint64{id}, []Code{c})
}

// AddBatch adds ids[i] with codes[i] for every i (later ones replace
// earlier ones of the same id), visible to searches all at once. It panics
// when the slices' lengths differ or the index would exceed 2^32-1 positions.
func (ix *Index) AddBatch(ids []uint64, codes []Code) {
	if len(ids) != len(codes) {
		panic(fmt.Sprintf("hamming: AddBatch with %d ids and %d codes", len(ids), len(codes)))
	}
	if len(ids) == 0 {
		return
	}
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	need := uint64(ix.st.n) + uint64(len(ids))
	if need > math.MaxUint32 {
		panic("hamming: index full (2^32-1 positions); compact it")
	}
	if int(need) > len(ix.st.codes) {
		// Grow (doubling) outside the searchers' lock.
		c := max(int(need), 2*len(ix.st.codes), 1024)
		nc, ni := hugeSlice[Code](c), hugeSlice[uint64](c)
		copy(nc, ix.st.codes[:ix.st.n])
		copy(ni, ix.st.ids[:ix.st.n])
		nd := make([]uint64, (c+63)/64)
		copy(nd, ix.st.dead)
		ix.mu.Lock()
		ix.st.codes, ix.st.ids, ix.st.dead = nc, ni, nd
		ix.mu.Unlock()
	}
	if !ix.byID.fits(ix.byID.n + len(ids)) {
		// Grow (at least doubling: the sizes are powers of two) outside
		// the searchers' lock: the ids of the positions in the table do not
		// change while wmu is held.
		t := ix.byID.resized(ix.st.ids, ix.byID.n+len(ids))
		ix.mu.Lock()
		ix.byID = t
		ix.mu.Unlock()
	}
	ix.mu.Lock()
	for i, id := range ids {
		p := ix.st.n
		ix.st.codes[p] = codes[i]
		ix.st.ids[p] = id
		ix.st.n++
		if old, ok := ix.byID.set(ix.st.ids, id, p); ok {
			ix.kill(old)
		}
	}
	ix.mu.Unlock()
	if !ix.opt.DeferMaintenance {
		ix.maintain()
	}
}

// kill marks position p removed (the caller holds mu).
func (ix *Index) kill(p uint32) {
	ix.st.dead[p>>6] |= 1 << (p & 63)
	ix.st.nDead++
}

// Remove removes id; false when it was not there.
func (ix *Index) Remove(id uint64) bool {
	return ix.RemoveBatch([]uint64{id}) == 1
}

// RemoveBatch removes every id of ids present, at once, and returns how
// many were.
func (ix *Index) RemoveBatch(ids []uint64) int {
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	removed := 0
	ix.mu.Lock()
	for _, id := range ids {
		if p, ok := ix.byID.remove(ix.st.ids, id); ok {
			ix.kill(p)
			removed++
		}
	}
	ix.mu.Unlock()
	if removed > 0 && !ix.opt.DeferMaintenance {
		ix.maintain()
	}
	return removed
}

// Maintain does the pending work of writes: it indexes a full tail, merges
// segments, and compacts when many entries were removed. Searches go on
// meanwhile. Only needed with Options.DeferMaintenance.
func (ix *Index) Maintain() {
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	ix.maintain()
}

// Build indexes every entry in one segment, dropping removed ones, with
// progress(done, total) called as tables are built (nil: none). Use it
// after loading many entries with DeferMaintenance.
func (ix *Index) Build(progress func(done, total int)) {
	ix.wmu.Lock()
	defer ix.wmu.Unlock()
	ix.rebuild(progress)
}

// maintain (the caller holds wmu) keeps the segments in shape: removed
// entries at most a quarter of the positions (beyond one tail's worth),
// the tail under TailSize, each segment at least twice the next one.
func (ix *Index) maintain() {
	n := int(ix.st.n)
	if ix.st.nDead > ix.opt.TailSize && ix.st.nDead > n/4 {
		ix.rebuild(nil)
		return
	}
	if int(ix.st.n-ix.tailLo) < ix.opt.TailSize {
		return
	}
	// The tail becomes a segment, merged with the segments before it while
	// they are not at least twice as large.
	lo, hi := ix.tailLo, ix.st.n
	k := len(ix.segs)
	for k > 0 {
		prev := ix.segs[k-1]
		if int(prev.hi-prev.lo) >= 2*int(hi-lo) {
			break
		}
		lo = prev.lo
		k--
	}
	seg := ix.build(lo, hi, nil)
	segs := append(slices.Clone(ix.segs[:k]), seg)
	ix.mu.Lock()
	ix.segs = segs
	ix.tailLo = hi
	ix.mu.Unlock()
}

// build indexes the live positions lo..hi-1 (the caller holds wmu: the
// positions' entries do not change; removals after the live list is taken
// are filtered by searches).
func (ix *Index) build(lo, hi uint32, progress func(done, total int)) *segment {
	ix.mu.RLock()
	live := make([]uint32, 0, hi-lo)
	for p := lo; p < hi; p++ {
		if !ix.st.isDead(p) {
			live = append(live, p)
		}
	}
	st := ix.st // the pages below hi do not change while wmu is held
	ix.mu.RUnlock()
	m := ix.opt.chunks(len(live))
	var done func()
	if progress != nil {
		var mu sync.Mutex
		k := 0
		done = func() {
			mu.Lock()
			k++
			progress(k, m)
			mu.Unlock()
		}
	}
	return buildSegment(&st, lo, hi, live, m, ix.opt.BucketLoad, ix.opt.Workers, done)
}

// rebuild compacts the store into contiguous memory (dropping removed
// entries) and indexes it in one segment (the caller holds wmu).
func (ix *Index) rebuild(progress func(done, total int)) {
	n := int(ix.st.n) - ix.st.nDead
	var st store
	byID := ix.byID
	switch {
	case ix.st.nDead == 0 && len(ix.st.codes) == n:
		// No removals and no spare capacity (a reserved index, or one
		// just rebuilt): positions do not change, nor does the id table,
		// and the arrays are kept (positions below n never change).
		st = ix.st
	case ix.st.nDead == 0:
		// Positions do not change, nor does the id table: the arrays are
		// copied without their spare capacity.
		st.codes = hugeSlice[Code](n)
		st.ids = hugeSlice[uint64](n)
		copy(st.codes, ix.st.codes[:n])
		copy(st.ids, ix.st.ids[:n])
		st.n = uint32(n)
		st.dead = make([]uint64, (n+63)/64)
	default:
		codes := hugeSlice[Code](n)
		ids := hugeSlice[uint64](n)
		st.codes, st.ids = codes, ids
		byID = idTable{}
		byID = byID.resized(nil, ix.byID.n)
		for p := uint32(0); p < ix.st.n; p++ {
			if ix.st.isDead(p) {
				continue
			}
			q := st.n
			codes[q] = *ix.st.code(p)
			ids[q] = ix.st.id(p)
			byID.set(ids, ids[q], q)
			st.n++
		}
		st.dead = make([]uint64, (n+63)/64)
	}
	live := make([]uint32, st.n)
	for i := range live {
		live[i] = uint32(i)
	}
	var seg *segment
	if st.n > 0 {
		m := ix.opt.chunks(int(st.n))
		var done func()
		if progress != nil {
			var mu sync.Mutex
			k := 0
			done = func() { mu.Lock(); k++; progress(k, m); mu.Unlock() }
		}
		seg = buildSegment(&st, 0, st.n, live, m, ix.opt.BucketLoad, ix.opt.Workers, done)
	}
	ix.mu.Lock()
	ix.st = st
	ix.byID = byID
	ix.segs = nil
	if seg != nil {
		ix.segs = []*segment{seg}
	}
	ix.tailLo = st.n
	ix.mu.Unlock()
}

// Search appends to dst the entries within r bits (0..256) of any code in
// qs: one Match per entry with its smallest distance and the first query
// code at it, sorted by distance then id. It returns exactly the set a
// linear scan returns; each segment is searched by multi-index hashing or
// scanned, whichever its cost model expects to be faster.
func (ix *Index) Search(qs []Code, r int, dst []Match) ([]Match, error) {
	return ix.search(qs, r, -1, dst, planAuto)
}

// SearchProbe is an approximate Search for when a few misses are cheaper
// than exactness: the multi-index search probes each chunk within at most
// chunkRadius bits instead of the radius exactness needs (r/m bits for m
// chunks). It returns every entry within r of a query code that agrees
// with that code within chunkRadius bits on at least one chunk of its
// segment's layout, and may return other entries within r (a segment or
// tail that is scanned returns them all); never an entry beyond r. Its
// matches are a subset of Search's, each at the smallest distance of the
// query codes that reached it (Search's, unless a nearer code missed it).
// chunkRadius 0 probes one bucket a chunk: at a million entries' 25-bit
// chunks and r 19, 26 times fewer probes than Search. A negative
// chunkRadius is Search.
func (ix *Index) SearchProbe(qs []Code, r, chunkRadius int, dst []Match) ([]Match, error) {
	return ix.search(qs, r, chunkRadius, dst, planAuto)
}

// SearchLinear is Search by a linear scan of every entry (the reference).
func (ix *Index) SearchLinear(qs []Code, r int, dst []Match) ([]Match, error) {
	return ix.search(qs, r, -1, dst, planScan)
}

// plan says how search treats segments: by their cost model, all scanned,
// or all searched by multi-index hashing.
type plan int

const (
	planAuto plan = iota
	planScan
	planIndex
)

// useIndex reports whether plan p searches segment s by multi-index
// hashing for nq query codes within r, chunk radii capped at chunkCap.
func (p plan) useIndex(s *segment, nq, r, chunkCap int) bool {
	switch p {
	case planScan:
		return false
	case planIndex:
		return true
	}
	return s.probeCost(nq, r, chunkCap) < scanCost(int(s.hi-s.lo), nq)
}

func (ix *Index) search(qs []Code, r, chunkCap int, dst []Match, p plan) ([]Match, error) {
	if err := checkRadius(r); err != nil {
		return dst, err
	}
	if len(qs) == 0 {
		return dst, nil
	}
	if len(qs) > math.MaxUint16 {
		return dst, fmt.Errorf("hamming: %d query codes, at most %d", len(qs), math.MaxUint16)
	}
	uq, ui := distinct(qs)
	sc := scratchPool.Get().(*scratch)
	hits := sc.hits[:0]
	ix.mu.RLock()
	st := &ix.st
	for _, s := range ix.segs {
		if !p.useIndex(s, len(uq), r, chunkCap) {
			hits = scanPositions(st, s.lo, s.hi, uq, r, hits)
			continue
		}
		sc.hits = hits
		s.search(st, &ix.masks, uq, r, chunkCap, sc)
		hits = sc.hits
	}
	hits = scanPositions(st, ix.tailLo, st.n, uq, r, hits)
	start := len(dst)
	dst = reduce(hits, ui, func(p uint32) (uint64, bool) {
		if st.isDead(p) {
			return 0, false
		}
		return st.id(p), true
	}, dst)
	ix.mu.RUnlock()
	if cap(hits) <= 1<<16 && cap(sc.cand) <= 1<<20 {
		sc.hits = hits[:0]
		scratchPool.Put(sc)
	}
	SortMatches(dst[start:])
	return dst, nil
}

// scanPositions scans positions lo..hi-1 linearly.
func scanPositions(st *store, lo, hi uint32, qs []Code, r int, hits []hit) []hit {
	return scanCodes(st.codes[lo:hi], lo, qs, r, hits)
}

// Stats describe an index's layout and memory.
type Stats struct {
	Entries  int // live entries
	Removed  int // removed entries still holding a position
	Tail     int // positions not yet indexed
	Segments []SegmentStats
	// Bytes is the memory of the codes, ids, removal bits and tables
	// (capacities); MapBytes is that of the table of ids to positions
	// (4 bytes a cell, at most 3/4 used).
	Bytes    int64
	MapBytes int64
}

// SegmentStats describe one segment.
type SegmentStats struct {
	Entries int
	Chunks  int
	Bytes   int64
}

// Stats returns the index's statistics.
func (ix *Index) Stats() Stats {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	s := Stats{Entries: ix.byID.n, Removed: ix.st.nDead, Tail: int(ix.st.n - ix.tailLo)}
	s.Bytes = int64(cap(ix.st.codes))*32 + int64(cap(ix.st.ids))*8 + int64(8*cap(ix.st.dead))
	for _, seg := range ix.segs {
		b := seg.bytes()
		s.Segments = append(s.Segments, SegmentStats{Entries: seg.n, Chunks: len(seg.chunks), Bytes: b})
		s.Bytes += b
	}
	s.MapBytes = ix.byID.bytes()
	return s
}
