package hamming

import (
	"math"
	"math/bits"
	"slices"
	"sync"
	"unsafe"
)

// Chunk widths: a chunk is at most 32 bits (its value is a uint32) and at
// least 4 (below that a table is a handful of buckets).
const (
	minChunks    = Bits / maxChunkBits // 8
	maxChunks    = Bits / minChunkBits // 64
	maxChunkBits = 32
	minChunkBits = 4
)

// chunk is a run of bits of the code: bits off..off+w-1, bit i being bit
// i%64 of word i/64.
type chunk struct {
	off, w int
}

func (ch chunk) value(c *Code) uint32 {
	wd, sh := ch.off>>6, uint(ch.off&63)
	v := c[wd] >> sh
	if int(sh)+ch.w > 64 {
		v |= c[wd+1] << (64 - sh)
	}
	return uint32(v & (1<<uint(ch.w) - 1))
}

// layout splits the 256 bits into m chunks, the narrower ones first: a
// search gives the first r%m+1 chunks the larger radius, and a narrower
// chunk has fewer values within it.
func layout(m int) []chunk {
	base, wide := Bits/m, Bits%m
	chunks := make([]chunk, m)
	off := 0
	for i := range chunks {
		w := base
		if i >= m-wide {
			w++
		}
		chunks[i] = chunk{off, w}
		off += w
	}
	return chunks
}

// chunksFor is the automatic number of chunks for n entries: chunks of
// about log2(n) bits, so that a chunk value holds about one entry (the
// paper's choice), within the supported widths.
func chunksFor(n int) int {
	w := int(math.Round(math.Log2(float64(max(n, 2)))))
	w = min(max(w, minChunkBits), maxChunkBits)
	m := int(math.Round(float64(Bits) / float64(w)))
	return min(max(m, minChunks), maxChunks)
}

// dirBitsFor is the directory bits wanted for n entries in buckets of
// about load entries (at least 1; a table takes at most its chunk's width).
func dirBitsFor(n int, load float64) uint {
	if x := float64(n) / load; x > 2 {
		return uint(math.Round(math.Log2(x)))
	}
	return 1
}

// chunksForRadius is the number of chunks (minChunks..maxChunks) of least
// modelled cost (indexCost) for a search within r of a segment of n
// entries in buckets of about load entries. At the PDQ threshold 31 it
// takes 11 chunks from about a million entries up, where chunks of log2(n)
// bits (chunksFor) would take 13 at a million: fewer, wider chunks probe
// more buckets but verify far fewer candidates.
func chunksForRadius(n int, load float64, r int) int {
	dirWant := dirBitsFor(n, load)
	best, bestCost := chunksFor(n), math.Inf(1)
	for m := minChunks; m <= maxChunks; m++ {
		s := segment{n: n, chunks: layout(m), tabs: make([]table, m)}
		for i, ch := range s.chunks {
			s.tabs[i].dirBits = min(uint(ch.w), dirWant)
		}
		if c := s.indexCost(1, r); c < bestCost {
			best, bestCost = m, c
		}
	}
	return best
}

// table indexes a segment's entries by one chunk: the directory holds, per
// value of the chunk's high dirBits bits, where its entries start; an entry
// packs the chunk's low sufBits bits (the suffix) above the entry's
// position relative to the segment's first (posBits bits), in 32 bits when
// they fit (e32), else in 64 (e64). One bucket is then two reads: its
// directory offsets and its entries.
type table struct {
	dirBits, sufBits, posBits uint
	dir                       []uint32 // 1<<dirBits + 1 offsets
	e32                       []uint32
	e64                       []uint64
}

func (t *table) bytes() int64 {
	return int64(4*cap(t.dir) + 4*cap(t.e32) + 8*cap(t.e64))
}

// segment is a multi-index over the live entries of the positions lo..hi-1
// at the time it was built.
type segment struct {
	lo, hi uint32
	n      int // entries indexed
	chunks []chunk
	tabs   []table
}

func (s *segment) bytes() int64 {
	var b int64
	for i := range s.tabs {
		b += s.tabs[i].bytes()
	}
	return b
}

// buildSegment indexes the positions of live (ascending, within lo..hi-1)
// with m chunks (0: chunksFor) and directory buckets of about load entries,
// building the tables on up to workers goroutines; done is called after
// each table.
func buildSegment(st *store, lo, hi uint32, live []uint32, m int, load float64, workers int, done func()) *segment {
	n := len(live)
	if m == 0 {
		m = chunksFor(n)
	}
	s := &segment{lo: lo, hi: hi, n: n, chunks: layout(m), tabs: make([]table, m)}
	dirWant := dirBitsFor(n, load)
	posBits := uint(max(1, bits.Len32(hi-lo-1)))
	work := make(chan int)
	var wg sync.WaitGroup
	for range max(1, min(workers, m)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vals := make([]uint32, n)
			for i := range work {
				ch := s.chunks[i]
				for j, p := range live {
					vals[j] = ch.value(st.code(p))
				}
				s.tabs[i] = buildTable(vals, live, lo, uint(ch.w), min(uint(ch.w), dirWant), posBits)
				if done != nil {
					done()
				}
			}
		}()
	}
	for i := range m {
		work <- i
	}
	close(work)
	wg.Wait()
	return s
}

// buildTable sorts positions (live, relative to lo) by their chunk values
// vals (w bits) into directory buckets of the high dirBits bits (a
// counting sort).
func buildTable(vals, live []uint32, lo uint32, w, dirBits, posBits uint) table {
	t := table{dirBits: dirBits, sufBits: w - dirBits, posBits: posBits}
	t.dir = hugeSlice[uint32](1<<dirBits + 1)
	for _, v := range vals {
		t.dir[v>>t.sufBits+1]++
	}
	for i := 1; i < len(t.dir); i++ {
		t.dir[i] += t.dir[i-1]
	}
	n := len(vals)
	if t.sufBits+posBits <= 32 {
		t.e32 = hugeSlice[uint32](n)
	} else {
		t.e64 = hugeSlice[uint64](n)
	}
	next := make([]uint32, len(t.dir)-1)
	copy(next, t.dir)
	mask := uint32(1)<<t.sufBits - 1
	for j, v := range vals {
		b := v >> t.sufBits
		k := next[b]
		next[b]++
		e := uint64(v&mask)<<posBits | uint64(live[j]-lo)
		if t.e32 != nil {
			t.e32[k] = uint32(e)
		} else {
			t.e64[k] = e
		}
	}
	return t
}

// radii returns the radius of chunk i of m for a search within r: r/m for
// the first r%m+1 chunks, one less for the others (-1: skip the chunk).
func radius(i, m, r int) int {
	q, a := r/m, r%m
	if i <= a {
		return q
	}
	return q - 1
}

// capRadius is chunk radius k stopped at chunkCap (no cap when chunkCap
// is negative): an approximate search probes each chunk only that far.
func capRadius(k, chunkCap int) int {
	if chunkCap >= 0 && k > chunkCap {
		return chunkCap
	}
	return k
}

// Costs of the search plans in nanoseconds, measured on the benchmark
// machine (bench/results/hamming.txt): a probe of a directory bucket, an
// entry of a bucket compared, a candidate checked at its full distance, and a code of a linear scan per
// query code (plus a fixed part per code).
const (
	costProbe     = 12.0
	costEntry     = 1.0
	costCandidate = 8.0
	costScan0     = 0.4
	costScanQuery = 1.1
)

// indexCost estimates the time of a multi-index search of s for nq query
// codes within r; +Inf when the enumeration is unreasonable.
func (s *segment) indexCost(nq, r int) float64 { return s.probeCost(nq, r, -1) }

// probeCost is indexCost for a search whose chunk radii stop at chunkCap
// (-1: no cap; see capRadius).
func (s *segment) probeCost(nq, r, chunkCap int) float64 {
	m := len(s.chunks)
	probes, scanned, cands := 0.0, 0.0, 0.0
	for i, ch := range s.chunks {
		k := capRadius(radius(i, m, r), chunkCap)
		if k < 0 {
			continue
		}
		t := &s.tabs[i]
		p := float64(neighbours(int(t.dirBits), k))
		if p > 1<<22 {
			return math.Inf(1)
		}
		probes += p
		scanned += p * float64(s.n) / float64(uint64(1)<<t.dirBits)
		cands += float64(neighbours(ch.w, k)) * float64(s.n) / float64(uint64(1)<<ch.w)
	}
	return float64(nq) * (probes*costProbe + scanned*costEntry + cands*costCandidate)
}

func scanCost(n, nq int) float64 {
	return float64(n) * (costScan0 + costScanQuery*float64(nq))
}

// scratch is a search's reusable buffers.
type scratch struct {
	probes []probeTable
	lo, hi []uint32 // per probe: the bucket's entries (first its index)
	cand   []uint32 // candidate positions
	qEnd   []int    // per query index: the end of its candidates
	hits   []hit
}

// probeTable is one table's part of a search: its chunk radius k, the
// query's chunk value v, the directory masks, and where its probes lie in
// scratch.lo/hi (off, n), with the total entries of its buckets.
type probeTable struct {
	t       *table
	ms      *maskSet
	k       int
	v       uint32
	q       int // query index
	m0      int // the first of its masks (of ms's)
	off, n  int
	entries uint32
}

// probePiece is the most probes of a table that one pipeline step takes.
// Measured at 10 million entries (TestChunkingAB, an image lookup at
// radius 31, thread CPU): whole tables (232 probes) 1.69 ms, pieces of
// 128 1.70, 64 1.63, 32 1.58, 16 1.38, 8 1.25, 4 1.49; larger leads
// (2 or 4 pieces) were no better.
const probePiece = 8

// leadA and leadB are the pipeline's distances in pieces: from the
// prefetch of a piece's directory cells to their reading, and from that
// (and the prefetch of the buckets' first entries) to the reading of the
// entries.
const leadA, leadB = 1, 1

var scratchPool = sync.Pool{New: func() any { return &scratch{} }}

// search appends a hit for every entry of s within r of any code of qs
// (query index qi for qs[qi]). It may also append removed entries (the
// caller drops them).
//
// Each probe reads a directory bucket and its entries at random places, so
// the search is bound by memory latency, not by arithmetic. It runs as a
// pipeline over pieces of probePiece probes of each (query code, table)
// pair, whose stages' reads do not depend on each other, each stage
// prefetching what the next one reads: while the entries of piece j are
// collected (stage 3), the bucket bounds of piece j+1 are read (stage 2,
// prefetching its buckets' first entries) and the directory cells of piece
// j+2 are prefetched (stage 1), so that misses overlap without a burst of
// prefetches larger than the processor's miss buffers, from one table and
// one query code to the next too. Then the candidates' codes are checked
// (verify, which prefetches them a block ahead).
//
// With chunkCap >= 0 each chunk is probed within at most chunkCap bits
// (capRadius): the hits are then only the entries within r that agree
// with a query code within chunkCap bits on some chunk.
func (s *segment) search(st *store, mc *maskCache, qs []Code, r, chunkCap int, sc *scratch) {
	m := len(s.chunks)
	sc.cand = sc.cand[:0]
	ps := sc.probes[:0]
	total := 0
	for qi := range qs {
		for i, ch := range s.chunks {
			k := capRadius(radius(i, m, r), chunkCap)
			if k < 0 {
				continue
			}
			t := &s.tabs[i]
			if len(t.e32) == 0 && len(t.e64) == 0 {
				continue
			}
			// Bucket-index masks over the directory bits; a bucket reached
			// by flipping j of them admits entries whose suffix is within
			// k-j.
			ms := mc.get(int(t.dirBits), k)
			v := ch.value(&qs[qi])
			// The table's probes go through the pipeline in pieces of
			// up to probePiece, so that each stage's prefetches are
			// interleaved with other work rather than issued in one
			// burst that the processor's miss buffers cannot hold.
			for m0, end := 0, ms.ends[k]; m0 < end; m0 += probePiece {
				n := min(probePiece, end-m0)
				ps = append(ps, probeTable{t: t, ms: ms, k: k, v: v, q: qi, m0: m0, off: total, n: n})
				total += n
			}
		}
	}
	sc.probes = ps
	if cap(sc.lo) < total {
		sc.lo = make([]uint32, total)
		sc.hi = make([]uint32, total)
	}
	if cap(sc.qEnd) < len(qs) {
		sc.qEnd = make([]int, len(qs))
	}
	qEnd := sc.qEnd[:len(qs)]
	clear(qEnd)
	lo, hi := sc.lo[:total], sc.hi[:total]
	for j := 0; j < len(ps)+leadA+leadB; j++ {
		if j < len(ps) {
			p := &ps[j]
			bucketIndexes(p, lo[p.off:p.off+p.n])
		}
		if b := j - leadA; b >= 0 && b < len(ps) {
			p := &ps[b]
			bucketBounds(p, lo[p.off:p.off+p.n], hi[p.off:p.off+p.n])
		}
		if c := j - leadA - leadB; c >= 0 {
			p := &ps[c]
			if p.t.e32 != nil {
				sc.cand = probe(p, p.t.e32, lo[p.off:p.off+p.n], hi[p.off:p.off+p.n], s.lo, sc.cand)
			} else {
				sc.cand = probe(p, p.t.e64, lo[p.off:p.off+p.n], hi[p.off:p.off+p.n], s.lo, sc.cand)
			}
			qEnd[p.q] = len(sc.cand)
		}
	}
	from := 0
	for qi := range qs {
		to := max(qEnd[qi], from)
		sc.hits = verify(st, sc.cand, from, to, &qs[qi], uint16(qi), r, sc.hits)
		from = to
	}
}

// bucketIndexes (stage 1) writes to b the directory index of each probe of
// p and prefetches those directory cells.
func bucketIndexes(p *probeTable, b []uint32) {
	base := p.v >> p.t.sufBits
	for x, mk := range p.ms.masks[p.m0 : p.m0+len(b)] {
		b[x] = base ^ mk
	}
	prefetchIdx(unsafe.Pointer(&p.t.dir[0]), 2, b)
}

// bucketBounds (stage 2) replaces the directory indexes in lo with the
// buckets' first entries, writes their ends to hi, and prefetches each
// bucket's first entry.
func bucketBounds(p *probeTable, lo, hi []uint32) {
	dir := p.t.dir
	total := uint32(0)
	for x, b := range lo {
		l, h := dir[b], dir[b+1]
		lo[x], hi[x] = l, h
		total += h - l
	}
	p.entries = total
	// A prefetch never faults: an empty last bucket's index (one past the
	// entries) is harmless.
	if p.t.e32 != nil {
		prefetchIdx(unsafe.Pointer(&p.t.e32[0]), 2, lo)
	} else {
		prefetchIdx(unsafe.Pointer(&p.t.e64[0]), 3, lo)
	}
}

// probe (stage 3) appends to cand the positions of the entries of p's
// buckets (lo..hi each) whose chunk value is within p.k bits of p.v.
func probe[E uint32 | uint64](p *probeTable, ent []E, lo, hi []uint32, segLo uint32, cand []uint32) []uint32 {
	t, ms, k := p.t, p.ms, p.k
	sh, pb := t.sufBits, t.posBits
	pm := E(1)<<pb - 1
	bs := E(p.v & (1<<sh - 1))
	// The entries whose suffix is within the bucket's allowance, written
	// without a branch (whether an entry qualifies is random).
	n := len(cand)
	cand = slices.Grow(cand, int(p.entries))[:n+int(p.entries)]
	if sh == 0 {
		for x := range lo {
			for _, e := range ent[lo[x]:hi[x]] {
				cand[n] = segLo + uint32(e&pm)
				n++
			}
		}
		return cand[:n]
	}
	// Masks m0.. are probes 0..: the masks of weight j, ms.ends[j-1] to
	// ms.ends[j], admit suffixes within k-j.
	from := 0
	for j := 0; j <= k; j++ {
		to := min(ms.ends[j]-p.m0, len(lo))
		allow := k - j
		for x := from; x < to; x++ {
			for _, e := range ent[lo[x]:hi[x]] {
				cand[n] = segLo + uint32(e&pm)
				// 1 when the suffix distance is <= allow.
				n += int(uint(bits.OnesCount64(uint64(e>>pb^bs))-allow-1) >> 63)
			}
		}
		from = max(from, to)
	}
	return cand[:n]
}

// verifyBlock is the number of candidates whose codes are prefetched
// together, one block ahead of the one being checked.
const verifyBlock = 32

// verify appends a hit for every candidate of cand[from:to] within r of q;
// the candidates after to are prefetched as well when the block ahead
// reaches them (the next query code's).
func verify(st *store, cand []uint32, from, to int, q *Code, qi uint16, r int, hits []hit) []hit {
	codes := st.codes
	if from == to {
		return hits
	}
	base := unsafe.Pointer(&codes[0])
	q0, q1, q2, q3 := q[0], q[1], q[2], q[3]
	if from == 0 {
		prefetchIdx(base, 5, cand[:min(verifyBlock, len(cand))])
	}
	for lo := from; lo < to; lo += verifyBlock {
		hi := min(lo+verifyBlock, to)
		if next := lo + verifyBlock; next < len(cand) {
			prefetchIdx(base, 5, cand[next:min(next+verifyBlock, len(cand))])
		}
		for _, p := range cand[lo:hi] {
			c := &codes[p]
			d := bits.OnesCount64(c[0]^q0) + bits.OnesCount64(c[1]^q1) +
				bits.OnesCount64(c[2]^q2) + bits.OnesCount64(c[3]^q3)
			if d <= r {
				hits = append(hits, hit{pos: p, d: uint16(d), q: qi})
			}
		}
	}
	return hits
}
