package banks

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/internal/hamming"
)

// TestPDQValuesHeldByIndex checks that a pdq entry's 32 bytes are held by
// the PDQ index only (not in the value store), and that entries read them
// back from there: the same id twice in one op, replacement, removal and
// slot reuse, disabling, and a snapshot of a state whose slots are out of
// insertion order.
func TestPDQValuesHeldByIndex(t *testing.T) {
	s := NewState()
	mustApply(t, s, createOp("b", nil))
	hb, hc := flipBits(hexHash(t, pdqA), 100), flipBits(hexHash(t, pdqA), 200)
	pdqB, pdqC := hex.EncodeToString(hb[:]), hex.EncodeToString(hc[:])
	res := mustApply(t, s, addOp("b",
		Entry{Type: SignalPDQ, Value: pdqA, Note: "first"},
		Entry{Type: SignalMD5, Value: md5A},
		Entry{Type: SignalPDQ, Value: pdqB},
		Entry{Type: SignalPDQ, Value: pdqA, Note: "second"},
	))
	if res.Added != 3 || res.Replaced != 1 {
		t.Fatalf("add: %+v", res)
	}
	b := s.banks["b"]
	if b.vals.live != 16 || b.pdq.Len() != 2 {
		t.Fatalf("value store %d bytes (want the md5's 16), pdq index %d entries (want 2)", b.vals.live, b.pdq.Len())
	}
	if e, ok, _ := s.Entry("b", EntryID(SignalPDQ, "", pdqA)); !ok || e.Value != pdqA || e.Note != "second" {
		t.Fatalf("entry A: %+v, %v", e, ok)
	}
	// Remove B; C takes its slot.
	rm := op(OpRemoveEntries, "b")
	rm.IDs = []string{EntryID(SignalPDQ, "", pdqB)}
	if res := mustApply(t, s, rm); res.Removed != 1 {
		t.Fatalf("remove: %+v", res)
	}
	mustApply(t, s, addOp("b", Entry{Type: SignalPDQ, Value: pdqC}, Entry{Type: SignalPDQ, Value: pdqB}))
	if _, ok, _ := s.Entry("b", EntryID(SignalPDQ, "", pdqB)); !ok {
		t.Fatal("B re-added is missing")
	}
	if e, ok, _ := s.Entry("b", EntryID(SignalPDQ, "", pdqC)); !ok || e.Value != pdqC {
		t.Fatalf("entry C: %+v, %v", e, ok)
	}
	set := op(OpSetEntries, "b")
	set.IDs, set.Disabled = []string{EntryID(SignalPDQ, "", pdqA)}, new(true)
	mustApply(t, s, set)
	q := Query{PDQ: []pdq.Hash{flipBits(hexHash(t, pdqC), 5)}}
	ms := mustMatch(t, s, q)
	if len(ms) != 1 || ms[0].EntryID != EntryID(SignalPDQ, "", pdqC) || ms[0].Signal != pdqC || *ms[0].Distance != 5 {
		t.Fatalf("match near C: %+v", ms)
	}
	if ms := mustMatch(t, s, Query{PDQ: []pdq.Hash{hexHash(t, pdqA)}}); len(ms) != 0 {
		t.Fatalf("a disabled entry matched: %+v", ms)
	}
	// Snapshot round trip.
	first := snapshotBytes(t, s)
	l, err := ReadSnapshot(bytes.NewReader(first), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if again := snapshotBytes(t, l); !bytes.Equal(first, again) {
		t.Fatal("a snapshot of a loaded snapshot differs")
	}
	a, _, _ := s.Entries("b", 0, 100)
	c, _, _ := l.Entries("b", 0, 100)
	if jsonOf(t, a) != jsonOf(t, c) || len(c) != 4 {
		t.Fatalf("loaded entries differ:\n%s\n%s", jsonOf(t, a), jsonOf(t, c))
	}
	if lb := l.banks["b"]; lb.vals.live != 16 || lb.pdq.Len() != 3 {
		t.Fatalf("loaded: value store %d bytes, pdq index %d entries", lb.vals.live, lb.pdq.Len())
	}
	if got := mustMatch(t, l, q); jsonOf(t, got) != jsonOf(t, ms) {
		t.Fatalf("loaded state matches %+v, want %+v", got, ms)
	}
}

// TestPDQEntriesAgainstModel applies random adds (new and repeated
// values, some within one op), removals and disables of pdq entries, and
// after each op compares every entry and the matches of random queries
// with a model (a map of the live values and a linear scan), in the state
// and in a state loaded from its snapshot.
func TestPDQEntriesAgainstModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	s := NewState()
	mustApply(t, s, createOp("b", nil))
	// Values near a few centres, so that queries match several.
	var pool []pdq.Hash
	for range 8 {
		c := randomPDQ(rng)
		for range 40 {
			pool = append(pool, flipSome(rng, c, rng.IntN(21)))
		}
	}
	live := map[string]bool{} // value -> enabled
	matched := 0
	check := func(s *State, step int) {
		t.Helper()
		for _, h := range pool {
			v := hex.EncodeToString(h[:])
			e, ok, _ := s.Entry("b", EntryID(SignalPDQ, "", v))
			enabled, want := live[v]
			if ok != want || ok && (e.Value != v || e.Disabled == enabled) {
				t.Fatalf("step %d: entry %s: %+v, %v; want present %v, enabled %v", step, v, e, ok, want, enabled)
			}
		}
		for range 5 {
			qh := flipSome(rng, pool[rng.IntN(len(pool))], rng.IntN(30))
			qc, _ := hamming.FromBytes(qh[:])
			var want []string
			for v, enabled := range live {
				raw, _ := hex.DecodeString(v)
				c, _ := hamming.FromBytes(raw)
				if enabled && hamming.Distance(c, qc) <= 31 {
					want = append(want, EntryID(SignalPDQ, "", v))
				}
			}
			var got []string
			for _, m := range mustMatch(t, s, Query{PDQ: []pdq.Hash{qh}}) {
				got = append(got, m.EntryID)
			}
			matched += len(got)
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: matched %v, want %v", step, got, want)
			}
		}
	}
	for step := range 300 {
		switch x := rng.IntN(10); {
		case x < 6:
			var es []Entry
			for range 1 + rng.IntN(6) {
				h := pool[rng.IntN(len(pool))]
				v := hex.EncodeToString(h[:])
				es = append(es, Entry{Type: SignalPDQ, Value: v})
				live[v] = true
			}
			mustApply(t, s, addOp("b", es...))
		case x < 9:
			rm := op(OpRemoveEntries, "b")
			for range 1 + rng.IntN(4) {
				h := pool[rng.IntN(len(pool))]
				v := hex.EncodeToString(h[:])
				rm.IDs = append(rm.IDs, EntryID(SignalPDQ, "", v))
				delete(live, v)
			}
			mustApply(t, s, rm)
		default:
			set := op(OpSetEntries, "b")
			set.Disabled = new(rng.IntN(2) == 0)
			for range 1 + rng.IntN(4) {
				h := pool[rng.IntN(len(pool))]
				v := hex.EncodeToString(h[:])
				set.IDs = append(set.IDs, EntryID(SignalPDQ, "", v))
				if _, ok := live[v]; ok {
					live[v] = !*set.Disabled
				}
			}
			mustApply(t, s, set)
		}
		check(s, step)
		if step%50 == 49 {
			l, err := ReadSnapshot(bytes.NewReader(snapshotBytes(t, s)), ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			check(l, step)
		}
	}
	if matched < 1000 {
		t.Fatalf("%d matches in all: the queries hardly test anything", matched)
	}
}

func randomPDQ(rng *rand.Rand) pdq.Hash {
	var h pdq.Hash
	for i := range h {
		h[i] = byte(rng.Uint32())
	}
	return h
}

// flipSome returns h with n distinct random bits flipped.
func flipSome(rng *rand.Rand, h pdq.Hash, n int) pdq.Hash {
	for _, i := range rng.Perm(256)[:n] {
		h[i/8] ^= 1 << (i % 8)
	}
	return h
}
