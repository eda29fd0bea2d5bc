package hamming

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestIDTableAgainstMap drives the id table with random sets, replacements
// and removals (ids dense and small, as slots are, or spread, as hashes
// are) over a store of positions, checking every id against a map after
// each step, with collisions forced by a table kept small (resized only
// when needed).
func TestIDTableAgainstMap(t *testing.T) {
	for _, spread := range []bool{false, true} {
		rng := rand.New(rand.NewPCG(7, 9))
		idOf := func(k int) uint64 {
			if spread {
				return uint64(k) * 0x2545f4914f6cdd1d
			}
			return uint64(k)
		}
		var tab idTable
		var ids []uint64 // the store: id by position
		ref := map[uint64]uint32{}
		for step := range 20000 {
			id := idOf(rng.IntN(300))
			if rng.IntN(3) == 0 {
				p, ok := tab.remove(ids, id)
				q, had := ref[id]
				if ok != had || ok && p != q {
					t.Fatalf("step %d: remove(%d) = %d, %v; want %d, %v", step, id, p, ok, q, had)
				}
				delete(ref, id)
			} else {
				if !tab.fits(tab.n + 1) {
					tab = tab.resized(ids, tab.n+1)
				}
				p := uint32(len(ids))
				ids = append(ids, id)
				old, ok := tab.set(ids, id, p)
				q, had := ref[id]
				if ok != had || ok && old != q {
					t.Fatalf("step %d: set(%d) replaced %d, %v; want %d, %v", step, id, old, ok, q, had)
				}
				ref[id] = p
			}
			if tab.n != len(ref) {
				t.Fatalf("step %d: %d ids, want %d", step, tab.n, len(ref))
			}
			if step%97 == 0 || step > 19900 {
				for k := range 300 {
					id := idOf(k)
					p, ok := tab.find(ids, id)
					q, had := ref[id]
					if ok != had || ok && p != q {
						t.Fatalf("step %d: find(%d) = %d, %v; want %d, %v", step, id, p, ok, q, had)
					}
				}
			}
		}
		if used := tab.n; used*4 > len(tab.cells)*3 {
			t.Fatalf("%d ids in %d cells: over 3/4 full", used, len(tab.cells))
		}
	}
}

// TestIndexIDs checks Get, GetBatch and Len against a map through adds, replacements,
// removals, Reserve, maintenance and rebuilds with and without removals,
// and searches against the linear scan along the way.
func TestIndexIDs(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	ix := newIndex(t, Options{TailSize: 16, DeferMaintenance: true})
	dst, found := []Code{{1}}, []bool{true}
	if ix.GetBatch([]uint64{7}, dst, found); found[0] || dst[0] != (Code{}) {
		t.Fatalf("GetBatch on an empty index: %v, %v", dst[0], found[0])
	}
	ix.Reserve(500)
	if st := ix.Stats(); st.MapBytes != 4*1024 {
		t.Fatalf("id table of %d bytes after Reserve(500), want %d", st.MapBytes, 4*1024)
	}
	ref := model{}
	check := func(step int) {
		t.Helper()
		if ix.Len() != len(ref) {
			t.Fatalf("step %d: Len %d, want %d", step, ix.Len(), len(ref))
		}
		ids := make([]uint64, 1000)
		for id := range ids {
			ids[id] = uint64(id)
		}
		rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		dst, found := make([]Code, len(ids)), make([]bool, len(ids))
		for i := range dst {
			dst[i] = randomCode(rng) // overwritten, zero for missing ids
		}
		ix.GetBatch(ids, dst, found)
		for i, id := range ids {
			c, ok := ix.Get(id)
			want, had := ref[id]
			if ok != had || c != want {
				t.Fatalf("step %d: Get(%d) = %v, %v; want %v, %v", step, id, c, ok, want, had)
			}
			if found[i] != had || dst[i] != want {
				t.Fatalf("step %d: GetBatch's %d = %v, %v; want %v, %v", step, id, dst[i], found[i], want, had)
			}
		}
		qs := []Code{randomCode(rng)}
		for _, c := range ref {
			qs = append(qs, flip(rng, c, rng.IntN(20)))
			break
		}
		sameMatches(t, "ids", mustSearch(t, ix, qs, 20, planAuto), ref.search(t, qs, 20))
	}
	for step := range 3000 {
		switch x := rng.IntN(100); {
		case x < 60:
			n := 1 + rng.IntN(8)
			ids, codes := make([]uint64, n), make([]Code, n)
			for i := range ids {
				ids[i], codes[i] = uint64(rng.IntN(1000)), randomCode(rng)
				ref[ids[i]] = codes[i]
			}
			ix.AddBatch(ids, codes)
		case x < 90:
			ids := make([]uint64, 1+rng.IntN(4))
			want := 0
			for i := range ids {
				ids[i] = uint64(rng.IntN(1000))
				if _, ok := ref[ids[i]]; ok {
					want++
					delete(ref, ids[i])
				}
			}
			// A repeated id counts once.
			if got := ix.RemoveBatch(ids); got != want {
				t.Fatalf("step %d: RemoveBatch(%v) = %d, want %d", step, ids, got, want)
			}
		case x < 97:
			ix.Maintain()
		default:
			ix.Build(nil)
		}
		if step%50 == 0 {
			check(step)
		}
	}
	check(-1)
	ix.Build(nil)
	check(-2)
	// A rebuild without removals or spare capacity keeps the arrays.
	before := ix.Stats()
	ix.Build(nil)
	if after := ix.Stats(); after.Bytes != before.Bytes || after.Removed != 0 || after.Entries != len(ref) {
		t.Fatalf("second Build: %+v, then %+v", before, after)
	}
	check(-3)
}

// BenchmarkGet compares Get, one id at a time, with GetBatch over the ids of
// an index of 4 million entries, in their order (as a snapshot reads a
// loaded bank) and shuffled.
func BenchmarkGet(b *testing.B) {
	const n = 4 << 20
	rng := rand.New(rand.NewPCG(1, 2))
	ix, _ := New(Options{DeferMaintenance: true})
	ids := make([]uint64, n)
	codes := make([]Code, n)
	for i := range ids {
		ids[i], codes[i] = uint64(i), randomCode(rng)
	}
	ix.Reserve(n)
	ix.AddBatch(ids, codes)
	ix.Build(nil)
	shuffled := slices.Clone(ids)
	rng.Shuffle(n, func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	for _, order := range []struct {
		name string
		ids  []uint64
	}{{"ordered", ids}, {"shuffled", shuffled}} {
		b.Run("Get/"+order.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				if _, ok := ix.Get(order.ids[i%n]); !ok {
					b.Fatal("missing")
				}
				i++
			}
		})
		b.Run("GetBatch/"+order.name, func(b *testing.B) {
			const batch = 4096
			dst, found := make([]Code, batch), make([]bool, batch)
			i := 0
			for b.Loop() {
				ix.GetBatch(order.ids[i:i+batch], dst, found)
				i = (i + batch) % n
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/id")
		})
	}
}
