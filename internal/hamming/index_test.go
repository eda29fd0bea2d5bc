package hamming

import (
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

func newIndex(t testing.TB, o Options) *Index {
	t.Helper()
	ix, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func mustSearch(t testing.TB, ix *Index, qs []Code, r int, p plan) []Match {
	t.Helper()
	got, err := ix.search(qs, r, -1, nil, p)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func sameMatches(t testing.TB, what string, got, want []Match) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	t.Errorf("%s: got %d matches, want %d", what, len(got), len(want))
	g := map[uint64]Match{}
	for _, m := range got {
		g[m.ID] = m
	}
	shown := 0
	for _, w := range want {
		if m, ok := g[w.ID]; !ok || m != w {
			if shown++; shown <= 5 {
				t.Errorf("  want %+v, got %+v (present %v)", w, m, ok)
			}
		}
		delete(g, w.ID)
	}
	for _, m := range g {
		if shown++; shown <= 10 {
			t.Errorf("  extra %+v", m)
		}
	}
}

// maxIndexRadius is the largest radius the tests force multi-index
// hashing at for m chunks (beyond it the enumeration is too long for a
// test; the automatic plan scans there).
func maxIndexRadius(m int) int {
	for r := 0; r <= 64; r++ {
		for i, ch := range layout(m) {
			if neighbours(ch.w, radius(i, m, r)) > 20000 {
				return r - 1
			}
		}
	}
	return 64
}

// TestSearchMatchesLinear is the exactness property: on random, clustered
// and duplicated codes, for radii 0..64, with one to eight query codes,
// through segments, merges, a tail and removals, Search (automatic plan
// and forced multi-index hashing) returns exactly what a linear scan of
// the live entries returns.
func TestSearchMatchesLinear(t *testing.T) {
	type data struct {
		name  string
		codes func(rng *rand.Rand, n int) []Code
	}
	datas := []data{
		{"uniform", func(rng *rand.Rand, n int) []Code { return clustered(rng, n, 0, 0, 0) }},
		{"clustered", func(rng *rand.Rand, n int) []Code { return clustered(rng, n, 0.7, 50, 40) }},
		{"duplicates", func(rng *rand.Rand, n int) []Code {
			c := clustered(rng, n/4+1, 0.5, 20, 8)
			out := make([]Code, n)
			for i := range out {
				out[i] = c[rng.IntN(len(c))]
			}
			return out
		}},
	}
	for _, d := range datas {
		for _, n := range []int{0, 1, 700, 6000} {
			// m < 0: chunks chosen for the radius -m (Options.Radius).
			for _, m := range []int{0, 8, 11, 16, 32, 64, -31, -10} {
				t.Run(fmt.Sprintf("%s/n=%d/m=%d", d.name, n, m), func(t *testing.T) {
					rng := rand.New(rand.NewPCG(uint64(n), uint64(m)))
					codes := d.codes(rng, n)
					// Directory buckets of 1, 4 and 50 entries: suffixes
					// of 0 to 10 bits compared within a bucket.
					ix := newIndex(t, Options{Chunks: max(m, 0), Radius: max(-m, 0), TailSize: 256, BucketLoad: []float64{4, 1, 50}[((n+m)%3+3)%3]})
					m = max(m, 0)
					ref := model{}
					for i, c := range codes {
						id := uint64(i) * 7919
						ix.Add(id, c)
						ref[id] = c
					}
					// Remove a tenth and replace a tenth (new codes under old ids).
					for i := 0; i < n; i += 10 {
						id := uint64(i) * 7919
						if !ix.Remove(id) {
							t.Fatalf("remove %d: not found", id)
						}
						delete(ref, id)
						if i+5 < n {
							id5 := uint64(i+5) * 7919
							c := flip(rng, codes[i], 3)
							ix.Add(id5, c)
							ref[id5] = c
						}
					}
					if ix.Len() != len(ref) {
						t.Fatalf("Len %d, want %d", ix.Len(), len(ref))
					}
					if n > 1000 && len(ix.Stats().Segments) < 2 {
						t.Fatalf("want several segments, got %+v", ix.Stats())
					}
					checkRadii(t, ix, ref, codes, rng, m)
				})
			}
		}
	}
}

// checkRadii compares Search with the model at every radius 0..64.
func checkRadii(t *testing.T, ix *Index, ref model, codes []Code, rng *rand.Rand, m int) {
	t.Helper()
	maxR := 64
	if testing.Short() {
		maxR = 40
	}
	for r := 0; r <= maxR; r++ {
		for qi, qs := range queriesFor(rng, codes, r, 6) {
			want := ref.search(t, qs, r)
			what := fmt.Sprintf("r=%d query %d (%d codes)", r, qi, len(qs))
			sameMatches(t, what+" auto", mustSearch(t, ix, qs, r, planAuto), want)
			if (m == 0 && r <= 31) || (m != 0 && r <= maxIndexRadius(m)) {
				sameMatches(t, what+" index", mustSearch(t, ix, qs, r, planIndex), want)
			}
			if t.Failed() {
				t.FailNow()
			}
		}
	}
}

// TestChunksForRadius: tuned for a radius, a segment takes the chunking of
// least modelled cost, at the PDQ threshold 11 chunks for a million entries
// or more (chunks of log2(n) bits would take 13 at a million, 30% dearer
// by the model), and searches through it stay exact (TestSearchMatchesLinear).
func TestChunksForRadius(t *testing.T) {
	cost := func(n, m, r int) float64 {
		s := segment{n: n, chunks: layout(m), tabs: make([]table, m)}
		for i, ch := range s.chunks {
			s.tabs[i].dirBits = min(uint(ch.w), dirBitsFor(n, DefaultBucketLoad))
		}
		return s.indexCost(1, r)
	}
	for _, n := range []int{1, 4096, 100_000, 1_000_000, 10_000_000} {
		for _, r := range []int{0, 10, 31, 64} {
			got := chunksForRadius(n, DefaultBucketLoad, r)
			if got < minChunks || got > maxChunks {
				t.Fatalf("n=%d r=%d: %d chunks", n, r, got)
			}
			for m := minChunks; m <= maxChunks; m++ {
				if cost(n, m, r) < cost(n, got, r) {
					t.Errorf("n=%d r=%d: chose %d chunks (cost %.0f), %d cost %.0f", n, r, got, cost(n, got, r), m, cost(n, m, r))
				}
			}
		}
	}
	for _, n := range []int{1_000_000, 10_000_000} {
		if got := chunksForRadius(n, DefaultBucketLoad, 31); got != 11 {
			t.Errorf("n=%d r=31: %d chunks, want 11", n, got)
		}
	}
	o := Options{Radius: 31}.WithDefaults()
	if got := o.chunks(1_000_000); got != 11 {
		t.Errorf("Options{Radius: 31} at 1M entries: %d chunks, want 11", got)
	}
	o = Options{}.WithDefaults()
	if got := o.chunks(1_000_000); got != chunksFor(1_000_000) {
		t.Errorf("Options{} at 1M entries: %d chunks, want %d", got, chunksFor(1_000_000))
	}
	if _, err := New(Options{Radius: 257}); err == nil {
		t.Error("radius 257 accepted")
	}
}

func TestAutoPlanUsesIndexAtPDQThreshold(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ix := newIndex(t, Options{})
	codes := clustered(rng, 200_000, 0.1, 10, 20)
	for i, c := range codes {
		ix.Add(uint64(i), c)
	}
	ix.Build(nil)
	st := ix.Stats()
	if len(st.Segments) != 1 || st.Tail != 0 {
		t.Fatalf("after Build: %+v", st)
	}
	s := ix.segs[0]
	for _, nq := range []int{1, 8} {
		if !planAuto.useIndex(s, nq, 31, -1) {
			t.Errorf("200k entries, %d query codes, r=31: the automatic plan scans (index cost %.0f ns, scan %.0f ns)",
				nq, s.indexCost(nq, 31), scanCost(s.n, nq))
		}
	}
	if planAuto.useIndex(s, 8, 64, -1) {
		t.Errorf("r=64: the automatic plan uses the index (index cost %.0f ns, scan %.0f ns)", s.indexCost(8, 64), scanCost(s.n, 8))
	}
}

func TestEmptyAndErrors(t *testing.T) {
	ix := newIndex(t, Options{})
	got, err := ix.Search([]Code{{1, 2, 3, 4}}, 31, nil)
	if err != nil || len(got) != 0 {
		t.Fatalf("empty index: %v, %v", got, err)
	}
	if got, err := ix.Search(nil, 31, nil); err != nil || len(got) != 0 {
		t.Fatalf("no query codes: %v, %v", got, err)
	}
	for _, r := range []int{-1, 257} {
		_, err := ix.Search([]Code{{}}, r, nil)
		var re ErrRadius
		if !errors.As(err, &re) || re.R != r {
			t.Errorf("radius %d: error %v, want ErrRadius", r, err)
		}
		if _, err := Linear(nil, []Code{{}}, r, nil); !errors.As(err, &re) {
			t.Errorf("Linear radius %d: error %v, want ErrRadius", r, err)
		}
	}
	if ix.Remove(5) {
		t.Error("Remove of a missing id reported true")
	}
	ix.Build(nil) // empty build
	if got, _ := ix.Search([]Code{{}}, 256, nil); len(got) != 0 {
		t.Fatalf("empty after build: %v", got)
	}
	ix.Add(5, Code{})
	ix.Build(nil)
	got, _ = ix.Search([]Code{{1}}, 0, nil)
	if len(got) != 0 {
		t.Fatalf("r=0 at distance 1: %v", got)
	}
	got, _ = ix.Search([]Code{{1}, {}}, 0, nil)
	if len(got) != 1 || got[0] != (Match{ID: 5, Distance: 0, Query: 1}) {
		t.Fatalf("r=0 exact: %v", got)
	}
	for _, o := range []Options{{Chunks: 7}, {Chunks: 65}, {BucketLoad: -1}, {TailSize: -1}, {Workers: -2}} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

func TestQueryIndexAndVariantTies(t *testing.T) {
	ix := newIndex(t, Options{TailSize: 1})
	base := Code{0xff, 0, 0, 0}
	ix.Add(1, base)
	ix.Add(2, flip(rand.New(rand.NewPCG(3, 4)), base, 10))
	q1 := base
	q1[3] ^= 0b111 // 3 bits from entry 1
	q2 := base
	q2[2] ^= 0b11 // 2 bits from entry 1
	q3 := base
	q3[1] ^= 0b11 // also 2 bits: a tie, q2 comes first
	got, _ := ix.Search([]Code{q1, q2, q3, q2}, 5, nil)
	want := []Match{{ID: 1, Distance: 2, Query: 1}}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestDuplicateCodesAndReplace(t *testing.T) {
	ix := newIndex(t, Options{TailSize: 2})
	c := Code{1, 2, 3, 4}
	for id := range uint64(10) {
		ix.Add(id, c)
	}
	got, _ := ix.Search([]Code{c}, 0, nil)
	if len(got) != 10 {
		t.Fatalf("10 ids sharing a code: got %d", len(got))
	}
	ix.Add(3, Code{9, 9, 9, 9}) // replace
	got, _ = ix.Search([]Code{c}, 0, nil)
	if len(got) != 9 || slices.ContainsFunc(got, func(m Match) bool { return m.ID == 3 }) {
		t.Fatalf("after replacing id 3: %v", got)
	}
	if x, ok := ix.Get(3); !ok || x != (Code{9, 9, 9, 9}) {
		t.Fatalf("Get(3) = %v %v", x, ok)
	}
	if ix.Len() != 10 {
		t.Fatalf("Len %d", ix.Len())
	}
}

func TestCompaction(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	ix := newIndex(t, Options{TailSize: 64})
	ref := model{}
	for i := range 5000 {
		c := randomCode(rng)
		ix.Add(uint64(i), c)
		ref[uint64(i)] = c
	}
	for i := range 4000 {
		ix.Remove(uint64(i))
		delete(ref, uint64(i))
	}
	st := ix.Stats()
	if st.Removed > st.Entries/4+64+64 || st.Entries != 1000 {
		t.Fatalf("removals not compacted: %+v", st)
	}
	codes := make([]Code, 0, len(ref))
	for _, c := range ref {
		codes = append(codes, c)
	}
	for _, qs := range queriesFor(rng, codes, 31, 50) {
		sameMatches(t, "after compaction", mustSearch(t, ix, qs, 31, planAuto), ref.search(t, qs, 31))
	}
}

func TestDeferMaintenance(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	ix := newIndex(t, Options{TailSize: 16, DeferMaintenance: true})
	ref := model{}
	for i := range 300 {
		c := randomCode(rng)
		ix.Add(uint64(i), c)
		ref[uint64(i)] = c
	}
	if st := ix.Stats(); st.Tail != 300 || len(st.Segments) != 0 {
		t.Fatalf("deferred: %+v", st)
	}
	codes := make([]Code, 0, len(ref))
	for _, c := range ref {
		codes = append(codes, c)
	}
	qs := queriesFor(rng, codes, 31, 20)
	for _, q := range qs {
		sameMatches(t, "deferred", mustSearch(t, ix, q, 31, planAuto), ref.search(t, q, 31))
	}
	ix.Maintain()
	if st := ix.Stats(); st.Tail != 0 || len(st.Segments) == 0 {
		t.Fatalf("after Maintain: %+v", st)
	}
	for _, q := range qs {
		sameMatches(t, "maintained", mustSearch(t, ix, q, 31, planIndex), ref.search(t, q, 31))
	}
}

// TestConcurrentSearchesWithWriter runs searches while one writer adds,
// replaces and removes (under -race in CI): every match returned is a
// pair (id, code) the writer wrote at some point, at its true distance;
// once the writer stops, the results equal the model's.
func TestConcurrentSearchesWithWriter(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	ix := newIndex(t, Options{TailSize: 128})
	const n = 6000
	codes := clustered(rng, n, 0.5, 20, 30)
	var wrote sync.Map // id -> []Code ever written
	ref := model{}
	add := func(id uint64, c Code) {
		v, _ := wrote.LoadOrStore(id, &sync.Map{})
		v.(*sync.Map).Store(c, true)
		ix.Add(id, c)
		ref[id] = c
	}
	for i := range n / 2 {
		add(uint64(i), codes[i])
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 11))
			for {
				select {
				case <-stop:
					return
				default:
				}
				qs := []Code{flip(rng, codes[rng.IntN(n)], 20), randomCode(rng)}
				got, err := ix.Search(qs, 31, nil)
				if err != nil {
					errs <- err
					return
				}
				for _, m := range got {
					v, ok := wrote.Load(m.ID)
					if !ok {
						errs <- fmt.Errorf("match of id %d never written", m.ID)
						return
					}
					found := false
					v.(*sync.Map).Range(func(k, _ any) bool {
						if Distance(k.(Code), qs[m.Query]) == m.Distance {
							found = true
							return false
						}
						return true
					})
					if !found {
						errs <- fmt.Errorf("match %+v matches no code written for it", m)
						return
					}
				}
			}
		}()
	}
	for i := n / 2; i < n; i++ {
		add(uint64(i), codes[i])
		if i%3 == 0 {
			id := uint64(rng.IntN(i))
			ix.Remove(id)
			delete(ref, id)
		}
		if i%7 == 0 {
			add(uint64(rng.IntN(i)), randomCode(rng))
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, qs := range queriesFor(rng, codes, 31, 100) {
		sameMatches(t, "after the writer", mustSearch(t, ix, qs, 31, planAuto), ref.search(t, qs, 31))
	}
}

func TestLayout(t *testing.T) {
	for m := minChunks; m <= maxChunks; m++ {
		chunks := layout(m)
		off := 0
		for i, ch := range chunks {
			if ch.off != off || ch.w < minChunkBits || ch.w > maxChunkBits {
				t.Fatalf("m=%d chunk %d: %+v", m, i, ch)
			}
			if i > 0 && ch.w < chunks[i-1].w {
				t.Fatalf("m=%d: chunk %d narrower than the one before", m, i)
			}
			off += ch.w
		}
		if off != Bits {
			t.Fatalf("m=%d covers %d bits", m, off)
		}
		// value reads the chunk's bits.
		var c Code
		for b := range Bits {
			c[b>>6] |= uint64(b&1) << (b & 63)
		}
		for _, ch := range chunks {
			v := ch.value(&c)
			for j := range ch.w {
				if int(v>>j&1) != (ch.off+j)&1 {
					t.Fatalf("m=%d chunk %+v: value %b", m, ch, v)
				}
			}
		}
	}
	// The pigeonhole bound: any r, m and chunk distances summing to <= r
	// leave some chunk within its radius.
	rng := rand.New(rand.NewPCG(12, 13))
	for range 100000 {
		m := minChunks + rng.IntN(maxChunks-minChunks+1)
		r := rng.IntN(65)
		left := r
		ok := false
		for i, ch := range layout(m) {
			d := rng.IntN(min(left, ch.w) + 1)
			if i == m-1 {
				d = min(left, ch.w)
			}
			left -= d
			if d <= radius(i, m, r) {
				ok = true
			}
		}
		if !ok {
			t.Fatalf("m=%d r=%d: no chunk within its radius", m, r)
		}
	}
}

func TestMasks(t *testing.T) {
	var mc maskCache
	for _, w := range []int{4, 11, 23, 32} {
		for k := 0; k <= 3; k++ {
			ms := mc.get(w, k).upTo(k)
			if len(ms) != neighbours(w, k) {
				t.Fatalf("w=%d k=%d: %d masks, want %d", w, k, len(ms), neighbours(w, k))
			}
			seen := map[uint32]bool{}
			for _, x := range ms {
				if seen[x] || x>>w != 0 || popcount32(x) > k {
					t.Fatalf("w=%d k=%d: bad mask %b", w, k, x)
				}
				seen[x] = true
			}
		}
	}
}

func popcount32(x uint32) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

func TestCodeBytes(t *testing.T) {
	b := make([]byte, 32)
	for i := range b {
		b[i] = byte(i * 7)
	}
	c, err := FromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Bytes(); !slices.Equal(got[:], b) {
		t.Fatalf("round trip: %x", got)
	}
	if c[0]>>56 != uint64(b[0]) {
		t.Fatalf("word 0 is not big-endian bytes 0..7: %x", c[0])
	}
	if _, err := FromBytes(b[:31]); err == nil {
		t.Fatal("31 bytes accepted")
	}
}

// FuzzIndex drives an index and the model with operations read from the
// input and checks every search against the linear scan.
func FuzzIndex(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 200, 31})
	f.Add([]byte{1, 1, 1, 1, 3, 3, 3, 2, 2, 2, 0, 0, 64})
	f.Fuzz(func(t *testing.T, ops []byte) {
		rng := rand.New(rand.NewPCG(uint64(len(ops)), 1))
		ix := newIndex(t, Options{TailSize: 8, Chunks: []int{0, 8, 16, 64}[len(ops)%4]})
		ref := model{}
		var codes []Code
		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i]%5, ops[i+1]
			id := uint64(arg % 32)
			switch op {
			case 0, 1: // add: random, or near an existing code
				c := randomCode(rng)
				if op == 1 && len(codes) > 0 {
					c = flip(rng, codes[int(arg)%len(codes)], int(arg)%40)
				}
				codes = append(codes, c)
				ix.Add(id, c)
				ref[id] = c
			case 2:
				_, had := ref[id]
				if ix.Remove(id) != had {
					t.Fatalf("Remove(%d) disagrees with the model", id)
				}
				delete(ref, id)
			case 3:
				ix.Build(nil)
			case 4:
				r := int(arg) % 65
				qs := []Code{randomCode(rng)}
				if len(codes) > 0 {
					qs = append(qs, flip(rng, codes[int(arg)%len(codes)], r))
				}
				sameMatches(t, "fuzz auto", mustSearch(t, ix, qs, r, planAuto), ref.search(t, qs, r))
				if r <= 24 {
					sameMatches(t, "fuzz index", mustSearch(t, ix, qs, r, planIndex), ref.search(t, qs, r))
				}
			}
		}
	})
}

// TestSearchProbe: through the index, the approximate search returns
// exactly the entries within r that agree with a query code within the
// chunk cap on some chunk, each at its smallest distance over the codes
// that reached it (so a subset of Search's), with automatic chunks and with
// 10 chunks of 25-26 bits as a million entries get. With a cap at or above
// every chunk's radius it is Search; the automatic plan returns a superset
// of that model (a scan is exact) and a subset of Search. It fails if the
// cap is ignored or applied wrongly: with 10 chunks, the capped sets are
// strictly smaller for some queries.
func TestSearchProbe(t *testing.T) {
	for _, chunks := range []int{0, 10} {
		t.Run(fmt.Sprintf("chunks=%d", chunks), func(t *testing.T) { testSearchProbe(t, chunks) })
	}
}

func testSearchProbe(t *testing.T, chunks int) {
	rng := rand.New(rand.NewPCG(21, uint64(chunks)))
	ix := newIndex(t, Options{DeferMaintenance: true, Chunks: chunks})
	codes := clustered(rng, 20_000, 0.5, 8, 24)
	ref := model{}
	for i, c := range codes {
		ix.Add(uint64(i), c)
		ref[uint64(i)] = c
	}
	ix.Build(nil)
	if len(ix.segs) != 1 {
		t.Fatalf("want one segment, got %d", len(ix.segs))
	}
	seg := ix.segs[0]
	m := len(seg.chunks)
	// probeModel: the matches the capped multi-index search must give.
	probeModel := func(qs []Code, r, chunkCap int) []Match {
		var out []Match
		for id, c := range ref {
			best := Match{ID: id, Distance: -1}
			for qi := range qs {
				d := Distance(qs[qi], c)
				if d > r || (best.Distance >= 0 && d >= best.Distance) {
					continue
				}
				for i, ch := range seg.chunks {
					k := capRadius(radius(i, m, r), chunkCap)
					if k >= 0 && bits.OnesCount32(ch.value(&qs[qi])^ch.value(&c)) <= k {
						best.Distance, best.Query = d, qi
						break
					}
				}
			}
			if best.Distance >= 0 {
				out = append(out, best)
			}
		}
		SortMatches(out)
		return out
	}
	smaller := 0
	for _, r := range []int{8, 19, 24, 31} {
		for qi, qs := range queriesFor(rng, codes, r, 12) {
			exact := ref.search(t, qs, r)
			for _, chunkCap := range []int{0, 1, 2} {
				what := fmt.Sprintf("r=%d cap=%d query %d", r, chunkCap, qi)
				want := probeModel(qs, r, chunkCap)
				got, err := ix.search(qs, r, chunkCap, nil, planIndex)
				if err != nil {
					t.Fatal(err)
				}
				sameMatches(t, what+" index", got, want)
				if len(want) < len(exact) {
					smaller++
				}
				auto, err := ix.SearchProbe(qs, r, chunkCap, nil)
				if err != nil {
					t.Fatal(err)
				}
				in := map[uint64]bool{}
				for _, x := range auto {
					in[x.ID] = true
				}
				for _, w := range want {
					if !in[w.ID] {
						t.Errorf("%s auto: missing %+v", what, w)
					}
				}
				ex := map[uint64]int{}
				for _, x := range exact {
					ex[x.ID] = x.Distance
				}
				for _, x := range auto {
					if d, ok := ex[x.ID]; !ok || x.Distance < d {
						t.Errorf("%s auto: %+v is not a Search match (exact distance %d, %v)", what, x, d, ok)
					}
				}
			}
			sameMatches(t, fmt.Sprintf("r=%d uncapped query %d", r, qi), mustSearch(t, ix, qs, r, planIndex), exact)
			got, err := ix.search(qs, r, r, nil, planIndex)
			if err != nil {
				t.Fatal(err)
			}
			sameMatches(t, fmt.Sprintf("r=%d cap=r query %d", r, qi), got, exact)
			if t.Failed() {
				t.FailNow()
			}
		}
	}
	if chunks != 0 && smaller == 0 { // (with 18 narrow chunks it rarely matters)
		t.Fatal("the chunk cap never left out a match: the test data does not exercise it")
	}
}
