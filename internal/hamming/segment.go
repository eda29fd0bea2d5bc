package hamming

import (
	"math"
	"math/bits"
	"sync"
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

// table indexes a segment's entries by one chunk: the directory holds, per
// value of the chunk's high dirBits bits, where its entries start in pos
// (and in the suffix array, which holds the chunk's low sufBits bits of
// each entry: one of suf8, suf16, suf32, or none when sufBits is 0).
type table struct {
	dirBits, sufBits uint
	dir              []uint32 // 1<<dirBits + 1 offsets
	pos              []uint32 // global positions, grouped by directory bucket
	suf8             []uint8
	suf16            []uint16
	suf32            []uint32
}

func (t *table) bytes() int64 {
	return int64(4*cap(t.dir) + 4*cap(t.pos) + cap(t.suf8) + 2*cap(t.suf16) + 4*cap(t.suf32))
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
	dirWant := uint(0)
	if x := float64(n) / load; x > 1 {
		dirWant = uint(math.Round(math.Log2(x)))
	}
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
				s.tabs[i] = buildTable(vals, live, uint(ch.w), min(uint(ch.w), max(dirWant, 1)))
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

// buildTable sorts positions by their chunk values vals (w bits) into
// directory buckets of the high dirBits bits (a counting sort).
func buildTable(vals, live []uint32, w, dirBits uint) table {
	t := table{dirBits: dirBits, sufBits: w - dirBits}
	t.dir = make([]uint32, 1<<dirBits+1)
	for _, v := range vals {
		t.dir[v>>t.sufBits+1]++
	}
	for i := 1; i < len(t.dir); i++ {
		t.dir[i] += t.dir[i-1]
	}
	n := len(vals)
	t.pos = make([]uint32, n)
	switch {
	case t.sufBits == 0:
	case t.sufBits <= 8:
		t.suf8 = make([]uint8, n)
	case t.sufBits <= 16:
		t.suf16 = make([]uint16, n)
	default:
		t.suf32 = make([]uint32, n)
	}
	next := make([]uint32, len(t.dir)-1)
	copy(next, t.dir)
	mask := uint32(1)<<t.sufBits - 1
	for j, v := range vals {
		b := v >> t.sufBits
		k := next[b]
		next[b]++
		t.pos[k] = live[j]
		switch {
		case t.suf8 != nil:
			t.suf8[k] = uint8(v & mask)
		case t.suf16 != nil:
			t.suf16[k] = uint16(v & mask)
		case t.suf32 != nil:
			t.suf32[k] = v & mask
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

// Costs of the search plans in nanoseconds, measured on the benchmark
// machine (bench/results/hamming.txt): a probe of a directory bucket, a
// candidate checked at its full distance, and a code of a linear scan per
// query code (plus a fixed part per code).
const (
	costProbe     = 12.0
	costCandidate = 8.0
	costScan0     = 0.4
	costScanQuery = 1.1
)

// indexCost estimates the time of a multi-index search of s for nq query
// codes within r; +Inf when the enumeration is unreasonable.
func (s *segment) indexCost(nq, r int) float64 {
	m := len(s.chunks)
	probes, cands := 0.0, 0.0
	for i, ch := range s.chunks {
		k := radius(i, m, r)
		if k < 0 {
			continue
		}
		p := float64(neighbours(ch.w, k))
		if p > 1<<22 {
			return math.Inf(1)
		}
		probes += p
		cands += p * float64(s.n) / float64(uint64(1)<<ch.w)
	}
	return float64(nq) * (probes*costProbe + cands*costCandidate)
}

func scanCost(n, nq int) float64 {
	return float64(n) * (costScan0 + costScanQuery*float64(nq))
}

// search appends a hit for every entry of s within r of q (query index qi).
// It may also append removed entries (the caller drops them).
func (s *segment) search(st *store, mc *maskCache, q *Code, qi uint16, r int, hits []hit) []hit {
	m := len(s.chunks)
	for i, ch := range s.chunks {
		k := radius(i, m, r)
		if k < 0 {
			continue
		}
		masks := mc.get(ch.w, k)
		base := ch.value(q)
		t := &s.tabs[i]
		switch {
		case t.suf8 != nil:
			hits = probe(t, t.suf8, base, masks, st, q, qi, r, hits)
		case t.suf16 != nil:
			hits = probe(t, t.suf16, base, masks, st, q, qi, r, hits)
		case t.suf32 != nil:
			hits = probe(t, t.suf32, base, masks, st, q, qi, r, hits)
		default:
			hits = probeDir(t, base, masks, st, q, qi, r, hits)
		}
	}
	return hits
}

// probe looks up base^mask for every mask in a table with suffixes.
func probe[S uint8 | uint16 | uint32](t *table, suf []S, base uint32, masks []uint32, st *store, q *Code, qi uint16, r int, hits []hit) []hit {
	sh := t.sufBits
	sm := uint32(1)<<sh - 1
	dir, pos := t.dir, t.pos
	q0, q1, q2, q3 := q[0], q[1], q[2], q[3]
	for _, mk := range masks {
		key := base ^ mk
		b := key >> sh
		lo, hi := dir[b], dir[b+1]
		sk := S(key & sm)
		for j := lo; j < hi; j++ {
			if suf[j] != sk {
				continue
			}
			p := pos[j]
			c := st.code(p)
			d := bits.OnesCount64(c[0]^q0) + bits.OnesCount64(c[1]^q1) +
				bits.OnesCount64(c[2]^q2) + bits.OnesCount64(c[3]^q3)
			if d <= r {
				hits = append(hits, hit{pos: p, d: uint16(d), q: qi})
			}
		}
	}
	return hits
}

// probeDir is probe for a table whose directory holds the whole chunk.
func probeDir(t *table, base uint32, masks []uint32, st *store, q *Code, qi uint16, r int, hits []hit) []hit {
	dir, pos := t.dir, t.pos
	q0, q1, q2, q3 := q[0], q[1], q[2], q[3]
	for _, mk := range masks {
		key := base ^ mk
		lo, hi := dir[key], dir[key+1]
		for j := lo; j < hi; j++ {
			p := pos[j]
			c := st.code(p)
			d := bits.OnesCount64(c[0]^q0) + bits.OnesCount64(c[1]^q1) +
				bits.OnesCount64(c[2]^q2) + bits.OnesCount64(c[3]^q3)
			if d <= r {
				hits = append(hits, hit{pos: p, d: uint16(d), q: qi})
			}
		}
	}
	return hits
}
