package banks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/internal/vecmath"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func op(kind OpKind, bank string) Op {
	return Op{Version: OpVersion, Kind: kind, Bank: bank, At: t0, Actor: "alice"}
}

func createOp(name string, mod func(*Bank)) Op {
	o := op(OpCreateBank, name)
	b := Bank{Name: name, Enabled: true, Labels: []string{"test"}}
	if mod != nil {
		mod(&b)
	}
	o.Config = &b
	return o
}

func addOp(bank string, entries ...Entry) Op {
	o := op(OpAddEntries, bank)
	for i := range entries {
		if entries[i].AddedAt.IsZero() {
			entries[i].AddedAt = t0
		}
	}
	o.Entries = entries
	return o
}

func mustApply(t testing.TB, s *State, o Op) Result {
	t.Helper()
	res, err := s.Apply(o)
	if err != nil {
		t.Fatalf("Apply(%s %s): %v", o.Kind, o.Bank, err)
	}
	return res
}

func mustMatch(t testing.TB, s *State, q Query) []Match {
	t.Helper()
	ms, err := s.Match(context.Background(), q)
	if err != nil {
		t.Fatalf("Match: %v", err)
	}
	return ms
}

func hexHash(t testing.TB, h string) pdq.Hash {
	t.Helper()
	x, err := pdq.ParseHex(h)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// flipBits returns h with the first n bits flipped.
func flipBits(h pdq.Hash, n int) pdq.Hash {
	for i := range n {
		h[i/8] ^= 1 << (i % 8)
	}
	return h
}

func TestApplyBankLifecycle(t *testing.T) {
	s := NewState()
	mustApply(t, s, createOp("hashes", nil))
	if _, err := s.Apply(createOp("hashes", nil)); !errors.Is(err, ErrBankExists) {
		t.Fatalf("name collision: %v", err)
	}
	bi, err := s.Bank("hashes")
	if err != nil || bi.Action != ActionReview || bi.Thresholds.PDQThreshold() != 31 || bi.CreatedBy != "alice" || !bi.CreatedAt.Equal(t0) {
		t.Fatalf("created bank: %+v, %v", bi, err)
	}
	up := op(OpUpdateBank, "hashes")
	up.At, up.Actor = t0.Add(time.Hour), "bob"
	up.Config = &Bank{Name: "hashes", Action: ActionBlock, Thresholds: Thresholds{PDQ: intp(20)}}
	mustApply(t, s, up)
	bi, _ = s.Bank("hashes")
	if bi.Action != ActionBlock || bi.Enabled || bi.Thresholds.PDQThreshold() != 20 || bi.CreatedBy != "alice" || bi.UpdatedBy != "bob" {
		t.Fatalf("updated bank: %+v", bi)
	}
	bad := op(OpUpdateBank, "hashes")
	bad.Config = &Bank{Name: "hashes", Thresholds: Thresholds{PDQ: intp(99)}}
	if _, err := s.Apply(bad); !errors.Is(err, ErrInvalidBank) {
		t.Fatalf("threshold out of range: %v", err)
	}
	if bi, _ := s.Bank("hashes"); bi.Thresholds.PDQThreshold() != 20 {
		t.Fatal("a refused update changed the bank")
	}
	mustApply(t, s, op(OpDeleteBank, "hashes"))
	if _, err := s.Bank("hashes"); !errors.Is(err, ErrBankNotFound) {
		t.Fatalf("deleted bank: %v", err)
	}
	for _, o := range []Op{op(OpDeleteBank, "hashes"), addOp("hashes", Entry{Type: SignalPDQ, Value: pdqA}), up} {
		if _, err := s.Apply(o); !errors.Is(err, ErrBankNotFound) {
			t.Errorf("%s on a missing bank: %v", o.Kind, err)
		}
	}
}

func TestApplyEntriesAtomicAndIdempotent(t *testing.T) {
	s := NewState()
	mustApply(t, s, createOp("b", nil))
	res := mustApply(t, s, addOp("b", Entry{Type: SignalPDQ, Value: pdqA, Tags: []string{"z", "a", "z"}}, Entry{Type: SignalMD5, Value: md5A}))
	if res.Added != 2 {
		t.Fatalf("added %+v", res)
	}
	// The same signals again (different case, new note) replace them.
	res = mustApply(t, s, addOp("b", Entry{Type: "pdq", Value: strings.ToUpper(pdqA), Note: "again"}, Entry{Type: "video_md5", Value: md5A}))
	if res.Added != 0 || res.Replaced != 2 {
		t.Fatalf("re-added %+v", res)
	}
	bi, _ := s.Bank("b")
	if bi.Entries != 2 {
		t.Fatalf("entries %d", bi.Entries)
	}
	e, ok, _ := s.Entry("b", EntryID(SignalPDQ, "", pdqA))
	if !ok || e.Note != "again" || e.Value != pdqA || len(e.Tags) != 0 {
		t.Fatalf("replaced entry %+v", e)
	}
	// One bad entry: nothing of the op applies.
	_, err := s.Apply(addOp("b", Entry{Type: SignalText, Value: "new text"}, Entry{Type: SignalPDQ, Value: "abc"}))
	if !errors.Is(err, ErrMalformedSignal) || !strings.Contains(err.Error(), "entry 1") {
		t.Fatalf("bad entry: %v", err)
	}
	if bi, _ := s.Bank("b"); bi.Entries != 2 {
		t.Fatalf("half-applied: %d entries", bi.Entries)
	}
	if _, err := s.Apply(addOp("b", Entry{Type: SignalPDQ, Value: pdqA, ID: "pdq-0000"})); !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("foreign id: %v", err)
	}
	// Remove: present and absent ids.
	rm := op(OpRemoveEntries, "b")
	rm.IDs = []string{EntryID(SignalMD5, "", md5A), "md5-00000000000000000000000000000000", "junk"}
	res = mustApply(t, s, rm)
	if res.Removed != 1 || len(res.Missing) != 2 {
		t.Fatalf("remove %+v", res)
	}
	res = mustApply(t, s, rm) // idempotent
	if res.Removed != 0 {
		t.Fatalf("second remove %+v", res)
	}
	st := op(OpSetEntries, "b")
	st.IDs, st.Stale = []string{EntryID(SignalPDQ, "", pdqA)}, new(bool)
	if _, err := s.Apply(st); !errors.Is(err, ErrInvalidOp) {
		t.Fatalf("stale on a pdq entry: %v", err)
	}
}

func TestMatchSignals(t *testing.T) {
	s := NewState()
	mustApply(t, s, createOp("hashes", func(b *Bank) { b.Labels = []string{"spam"}; b.Action = ActionBlock }))
	mustApply(t, s, createOp("other", func(b *Bank) { b.Thresholds.PDQ = intp(10) }))
	h := hexHash(t, pdqA)
	mustApply(t, s, addOp("hashes",
		Entry{Type: SignalPDQ, Value: pdqA, Tags: []string{"t1"}},
		Entry{Type: SignalMD5, Value: md5A},
		Entry{Type: SignalText, Value: "Click HERE to win!!"},
		Entry{Type: SignalURL, Value: "https://www.evil.example/win/"},
	))
	mustApply(t, s, addOp("other", Entry{Type: SignalPDQ, Value: flipBits(h, 20).String()}))

	// A hash 25 bits away: hashes (31) matches, other (10) does not
	// (20+25 bits from its entry... and 5 from it? flipBits shares bits).
	q := flipBits(h, 25)
	ms := mustMatch(t, s, Query{PDQ: []pdq.Hash{q}})
	if len(ms) != 2 || ms[0].Bank != "hashes" || *ms[0].Distance != 25 || ms[0].Action != ActionBlock || !slices.Equal(ms[0].Labels, []string{"spam"}) || !slices.Equal(ms[0].Tags, []string{"t1"}) {
		t.Fatalf("pdq matches %+v", ms)
	}
	if ms[1].Bank != "other" || *ms[1].Distance != 5 || ms[0].Transform != "" {
		t.Fatalf("pdq in other: %+v", ms[1])
	}
	if ms := mustMatch(t, s, Query{PDQ: []pdq.Hash{flipBits(h, 32)}, Banks: []string{"hashes"}}); len(ms) != 0 {
		t.Fatalf("32 bits matched at 31: %+v", ms)
	}
	if ms := mustMatch(t, s, Query{MD5: strings.ToUpper(md5A)}); len(ms) != 1 || ms[0].SignalType != SignalMD5 || ms[0].Signal != md5A {
		t.Fatalf("md5 %+v", ms)
	}
	ms = mustMatch(t, s, Query{Text: "click here, to WIN — see http://evil.example/win?utm_source=x"})
	if len(ms) != 1 || ms[0].SignalType != SignalURL {
		t.Fatalf("url in text %+v", ms)
	}
	ms = mustMatch(t, s, Query{Text: "  click here to win ", URLs: []string{"hxxps://evil[.]example/win"}})
	if len(ms) != 2 || ms[0].SignalType != SignalText || ms[1].SignalType != SignalURL {
		t.Fatalf("text and url %+v", ms)
	}
	// Disabling an entry, then its bank.
	set := op(OpSetEntries, "hashes")
	yes := true
	set.IDs, set.Disabled = []string{EntryID(SignalMD5, "", md5A)}, &yes
	mustApply(t, s, set)
	if ms := mustMatch(t, s, Query{MD5: md5A}); len(ms) != 0 {
		t.Fatalf("disabled entry matched: %+v", ms)
	}
	up := op(OpUpdateBank, "other")
	up.Config = &Bank{Name: "other", Enabled: false}
	mustApply(t, s, up)
	if ms := mustMatch(t, s, Query{PDQ: []pdq.Hash{q}}); len(ms) != 1 || ms[0].Bank != "hashes" {
		t.Fatalf("disabled bank matched: %+v", ms)
	}
	// Errors.
	for _, tc := range []struct {
		q   Query
		err error
	}{
		{Query{}, ErrNoSignal},
		{Query{Text: "   "}, ErrNoSignal},
		{Query{MD5: "xyz"}, ErrInvalidQuery},
		{Query{PDQ: make([]pdq.Hash, 9)}, ErrInvalidQuery},
		{Query{Vector: []float32{1}, Modality: "image"}, ErrInvalidQuery},
		{Query{Vector: []float32{1}, Modality: "audio", ModelVersion: "m"}, ErrInvalidQuery},
		{Query{Vector: []float32{0}, Modality: "image", ModelVersion: "m"}, ErrInvalidQuery},
		{Query{MD5: md5A, Banks: []string{"nope"}}, ErrBankNotFound},
	} {
		if _, err := s.Match(context.Background(), tc.q); !errors.Is(err, tc.err) {
			t.Errorf("Match(%+v): %v, want %v", tc.q, err, tc.err)
		}
	}
}

// TestMatchImageDihedral: a bank holding the PDQ of a photo matches the
// photo rotated and mirrored, through the query's eight dihedral hashes,
// and names the transform; the rotated photo's hash alone (a hex query)
// does not match.
func TestMatchImageDihedral(t *testing.T) {
	root, err := testutil.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	hashOf := func(name string) ([8]pdq.Hash, int) {
		data, err := os.ReadFile(filepath.Join(root, "testdata/pdq/images/dih", name))
		if err != nil {
			t.Fatal(err)
		}
		img, _, err := pdq.Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		hs := pdq.Hasher{MaxSide: -1}
		return hs.Dihedral(img)
	}
	orig, _ := hashOf("bridge-1-original.jpg")
	s := NewState()
	mustApply(t, s, createOp("photos", nil))
	mustApply(t, s, addOp("photos", Entry{Type: SignalPDQ, Value: orig[0].String()}))
	for _, tc := range []struct{ file, transform string }{
		{"bridge-1-original.jpg", "original"},
		{"bridge-2-rotate-90.jpg", "rotate270"},
		{"bridge-3-rotate-180.jpg", "rotate180"},
		{"bridge-5-flipx.jpg", "flipx"},
		{"bridge-6-flipy.jpg", "flipy"},
	} {
		v, _ := hashOf(tc.file)
		ms := mustMatch(t, s, Query{PDQ: v[:]})
		if len(ms) != 1 || ms[0].Transform != tc.transform || *ms[0].Distance > 31 {
			t.Errorf("%s: %+v, want one match by %s", tc.file, ms, tc.transform)
		}
		if tc.transform != "original" {
			if ms := mustMatch(t, s, Query{PDQ: v[:1]}); len(ms) != 0 {
				t.Errorf("%s: its hash alone matched: %+v", tc.file, ms)
			}
		}
	}
}

// TestMatchDihedralModes: in a bank of 100,000 PDQ entries in one segment (searched by
// multi-index hashing) at threshold 40, an image query's own hash is
// searched exactly within the threshold in every mode; its seven rotated
// and mirrored hashes exactly in exact mode, not at all in off mode, and
// in fast mode within one bit a chunk: an entry 15 bits from a variant is
// found, one with two flips in every chunk of the index (2m bits, within
// the threshold) is not, and exact finds it.
func TestMatchDihedralModes(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 18))
	randHash := func() pdq.Hash { return testutil.RandomPDQ(rng) }
	// flip flips bits of the hash's code (hamming.Code's bit order: bit
	// i is bit i%64 of the big-endian word i/64).
	flip := func(h pdq.Hash, bits []int) pdq.Hash {
		for _, i := range bits {
			w, j := i/64, i%64
			h[8*w+7-j/8] ^= 1 << (j % 8)
		}
		return h
	}
	const threshold = 40
	var q [8]pdq.Hash
	for i := range q {
		q[i] = randHash()
	}
	entries := make([]Entry, 0, 100_000)
	for range 100_000 - 3 { // an op holds at most 100,000 entries
		entries = append(entries, Entry{Type: SignalPDQ, Value: randHash().String()})
	}
	newBank := func(mode DihedralMode, es []Entry) (*State, int) {
		s := NewState()
		mustApply(t, s, createOp("b", func(b *Bank) {
			b.PDQDihedral = mode
			b.Thresholds.PDQ = new(threshold)
		}))
		mustApply(t, s, addOp("b", es...))
		st := s.banks["b"].pdq.Stats()
		if len(st.Segments) != 1 || st.Tail != 0 || 2*st.Segments[0].Chunks > threshold {
			t.Fatalf("%q: index %+v: the test needs one segment of at most %d chunks", mode, st, threshold/2)
		}
		return s, st.Segments[0].Chunks
	}
	// Two flips at the start of every chunk (internal/hamming's layout:
	// the narrower chunks first).
	_, m := newBank(DihedralExact, entries)
	var twoEach []int
	for i, off := 0, 0; i < m; i++ {
		twoEach = append(twoEach, off, off+1)
		off += 256 / m
		if i >= m-256%m {
			off++
		}
	}
	planted := map[string]pdq.Hash{
		"own":          flip(q[0], twoEach),
		"rotate180-2m": flip(q[2], twoEach),
		"flipx-15":     flip(q[4], rng.Perm(256)[:15]),
	}
	name := map[string]string{}
	for n, h := range planted {
		entries = append(entries, Entry{Type: SignalPDQ, Value: h.String()})
		name[h.String()] = n
	}
	for _, tc := range []struct {
		mode DihedralMode
		want []string
	}{
		{"", []string{"flipx-15", "own"}}, // fast, the default
		{DihedralFast, []string{"flipx-15", "own"}},
		{DihedralExact, []string{"flipx-15", "own", "rotate180-2m"}},
		{DihedralOff, []string{"own"}},
	} {
		s, _ := newBank(tc.mode, entries)
		var got []string
		for _, m := range mustMatch(t, s, Query{PDQ: q[:]}) {
			n := name[m.Signal]
			got = append(got, n)
			want := map[string]string{"own": "original", "rotate180-2m": "rotate180", "flipx-15": "flipx"}[n]
			if m.Transform != want {
				t.Errorf("%q: %s matched by %s, want %s", tc.mode, n, m.Transform, want)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("mode %q: matched %v, want %v", tc.mode, got, tc.want)
		}
	}
}

func unit(rng *rand.Rand, dim int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	n, _ := normalized(v)
	return n
}

// near returns a unit vector with cosine about c to v.
func near(rng *rand.Rand, v []float32, c float64) []float32 {
	w := unit(rng, len(v))
	out := make([]float32, len(v))
	for i := range v {
		out[i] = float32(c)*v[i] + float32(1-c)*w[i]
	}
	n, _ := normalized(out)
	return n
}

func TestMatchEmbeddings(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const dim = 64
	concept, exemplar := unit(rng, dim), unit(rng, dim)
	s := NewState()
	mustApply(t, s, createOp("concepts", func(b *Bank) {
		b.Thresholds.Embedding = EmbeddingThresholds{TextImage: 0.5, ImageImage: 0.8}
	}))
	mustApply(t, s, addOp("concepts",
		Entry{Type: SignalEmbedding, Modality: "text", Value: "a rifle held up to the camera", Vector: concept, ModelVersion: "m1"},
		Entry{Type: SignalEmbedding, Modality: "image", Value: strings.Repeat("ab", 32), Vector: exemplar, ModelVersion: "m1"},
	))
	img := near(rng, concept, 0.7)
	ms := mustMatch(t, s, Query{Vector: img, Modality: "image", ModelVersion: "m1"})
	if len(ms) != 1 || ms[0].Modality != "text" || *ms[0].Score < 0.5 || ms[0].Signal != "a rifle held up to the camera" {
		t.Fatalf("concept vs image: %+v", ms)
	}
	if ms := mustMatch(t, s, Query{Vector: img, Modality: "text", ModelVersion: "m1"}); len(ms) != 0 {
		t.Fatalf("text_text has no threshold, yet: %+v", ms)
	}
	if ms := mustMatch(t, s, Query{Vector: img, Modality: "image", ModelVersion: "m2"}); len(ms) != 0 {
		t.Fatalf("another model's vector matched: %+v", ms)
	}
	ms = mustMatch(t, s, Query{Vector: near(rng, exemplar, 0.95), Modality: "image", ModelVersion: "m1"})
	if len(ms) != 1 || ms[0].Modality != "image" || *ms[0].Score < 0.8 {
		t.Fatalf("exemplar: %+v", ms)
	}
	if ms := mustMatch(t, s, Query{Vector: near(rng, exemplar, 0.3), Modality: "image", ModelVersion: "m1"}); len(ms) != 0 {
		t.Fatalf("below the threshold: %+v", ms)
	}
	// Model change: both are listed; the exemplar marked stale stops
	// matching.
	stale := s.StaleEmbeddings("m2")["concepts"]
	if len(stale) != 2 {
		t.Fatalf("stale after a model change: %+v", stale)
	}
	set := op(OpSetEntries, "concepts")
	yes := true
	set.IDs, set.Stale = []string{EntryID(SignalEmbedding, "image", strings.Repeat("ab", 32))}, &yes
	mustApply(t, s, set)
	if ms := mustMatch(t, s, Query{Vector: exemplar, Modality: "image", ModelVersion: "m1"}); len(ms) != 0 {
		t.Fatalf("stale exemplar matched: %+v", ms)
	}
	for _, bad := range []Entry{
		{Type: SignalEmbedding, Modality: "text", Value: "x", ModelVersion: "m1"},
		{Type: SignalEmbedding, Modality: "text", Value: "x", Vector: make([]float32, 4), ModelVersion: "m1"},
		{Type: SignalEmbedding, Modality: "text", Value: "x", Vector: concept},
		{Type: SignalEmbedding, Modality: "audio", Value: "x", Vector: concept, ModelVersion: "m1"},
		{Type: SignalEmbedding, Modality: "image", Value: "not-a-sha", Vector: concept, ModelVersion: "m1"},
		{Type: SignalPDQ, Value: pdqA, Vector: concept},
	} {
		if _, err := s.Apply(addOp("concepts", bad)); err == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

// randomOps returns a seeded sequence of ops over a few banks, some of
// them failing (they must fail the same way everywhere).
func randomOps(seed uint64, n int) []Op {
	rng := rand.New(rand.NewPCG(seed, 1))
	banks := []string{"a", "b", "c"}
	var ops []Op
	var ids []string
	at := t0
	for range n {
		at = at.Add(time.Second)
		bank := banks[rng.IntN(len(banks))]
		var o Op
		switch k := rng.IntN(10); {
		case k == 0:
			o = createOp(bank, func(b *Bank) { b.Thresholds.PDQ = intp(rng.IntN(65)) })
		case k == 1 && rng.IntN(4) == 0:
			o = op(OpDeleteBank, bank)
		case k < 7:
			var es []Entry
			for range 1 + rng.IntN(20) {
				var h pdq.Hash
				for i := range h {
					h[i] = byte(rng.Uint32())
				}
				e := Entry{Type: SignalPDQ, Value: h.String(), Tags: []string{fmt.Sprint("t", rng.IntN(3))}, AddedBy: "u" + fmt.Sprint(rng.IntN(2))}
				if rng.IntN(5) == 0 {
					e = Entry{Type: SignalText, Value: fmt.Sprint("text ", rng.IntN(50))}
				}
				es = append(es, e)
				ids = append(ids, EntryID(e.Type, "", strings.ToLower(e.Value)))
			}
			o = addOp(bank, es...)
		case k < 9 && len(ids) > 0:
			o = op(OpRemoveEntries, bank)
			for range 1 + rng.IntN(5) {
				o.IDs = append(o.IDs, ids[rng.IntN(len(ids))])
			}
		default:
			if len(ids) == 0 {
				continue
			}
			o = op(OpSetEntries, bank)
			d := rng.IntN(2) == 0
			o.IDs, o.Disabled = []string{ids[rng.IntN(len(ids))]}, &d
		}
		o.At = at
		ops = append(ops, o)
	}
	return ops
}

// TestApplyDeterministic: two states fed the same log hold the same banks
// (byte-identical snapshots), and a state loaded from a snapshot taken
// midway then fed the rest answers every lookup like them.
func TestApplyDeterministic(t *testing.T) {
	ops := randomOps(7, 400)
	a, b := NewState(), NewState()
	var mid []byte
	for i, o := range ops {
		ra, ea := a.Apply(o)
		rb, eb := b.Apply(o)
		if fmt.Sprint(ra, ea) != fmt.Sprint(rb, eb) {
			t.Fatalf("op %d: %v %v vs %v %v", i, ra, ea, rb, eb)
		}
		if i == len(ops)/2 {
			var buf bytes.Buffer
			if err := a.WriteSnapshot(&buf); err != nil {
				t.Fatal(err)
			}
			mid = buf.Bytes()
		}
	}
	sa, sb := snapshotBytes(t, a), snapshotBytes(t, b)
	if !bytes.Equal(sa, sb) {
		t.Fatal("same ops, different snapshots")
	}
	c, err := ReadSnapshot(bytes.NewReader(mid), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range ops[len(ops)/2+1:] {
		c.Apply(o)
	}
	if ja, jc := jsonOf(t, a.Banks()), jsonOf(t, c.Banks()); ja != jc {
		t.Fatalf("banks differ after snapshot + rest:\n%s\n%s", ja, jc)
	}
	rng := rand.New(rand.NewPCG(8, 8))
	for _, bi := range a.Banks() {
		entries, _, _ := a.Entries(bi.Name, 0, 1000)
		for _, e := range entries {
			q := Query{Text: e.Value}
			if e.Type == SignalPDQ {
				h := hexHash(t, e.Value)
				q = Query{PDQ: []pdq.Hash{flipBits(h, rng.IntN(40))}}
			}
			ma, mc := jsonOf(t, mustMatch(t, a, q)), jsonOf(t, mustMatch(t, c, q))
			if ma != mc {
				t.Fatalf("lookup %+v: %s vs %s", q, ma, mc)
			}
		}
	}
}

func jsonOf(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func snapshotBytes(t testing.TB, s *State) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := s.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestConcurrentMatchAndApply runs lookups while ops apply (run it with
// -race): every lookup succeeds and sees whole ops (an entry and its twin
// added by one op match together or not at all).
func TestConcurrentMatchAndApply(t *testing.T) {
	s := NewState()
	mustApply(t, s, createOp("b", nil))
	rng := rand.New(rand.NewPCG(9, 9))
	var hs []pdq.Hash
	for range 300 {
		var h pdq.Hash
		for i := range h {
			h[i] = byte(rng.Uint32())
		}
		hs = append(hs, h)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errc := make(chan error, 3)
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 2))
			for {
				select {
				case <-stop:
					return
				default:
				}
				i := rng.IntN(len(hs))
				ms, err := s.Match(context.Background(), Query{PDQ: []pdq.Hash{hs[i]}, Text: fmt.Sprint("twin ", i)})
				if err != nil {
					errc <- err
					return
				}
				if len(ms) == 1 {
					errc <- fmt.Errorf("lookup %d saw half of an op: %+v", i, ms)
					return
				}
			}
		}()
	}
	for i, h := range hs {
		mustApply(t, s, addOp("b", Entry{Type: SignalPDQ, Value: h.String()}, Entry{Type: SignalText, Value: fmt.Sprint("twin ", i)}))
		if i%3 == 0 {
			rm := op(OpRemoveEntries, "b")
			rm.IDs = []string{EntryID(SignalPDQ, "", h.String()), EntryID(SignalText, "", fmt.Sprint("twin ", i))}
			mustApply(t, s, rm)
		}
	}
	close(stop)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if bi, _ := s.Bank("b"); bi.Entries != 2*200 {
		t.Fatalf("entries %d, want 400", bi.Entries)
	}
}

func TestEmbIndex(t *testing.T) {
	rng := rand.New(rand.NewPCG(10, 10))
	x := newEmbIndex()
	ref := map[uint32][]float32{}
	for i := range 500 {
		slot := uint32(rng.IntN(100))
		switch rng.IntN(3) {
		case 0, 1:
			v := unit(rng, []int{8, 16}[rng.IntN(2)])
			x.add(slot, v)
			ref[slot] = v
		case 2:
			x.remove(slot)
			delete(ref, slot)
		}
		if x.len() != len(ref) {
			t.Fatalf("step %d: len %d, want %d", i, x.len(), len(ref))
		}
	}
	for slot, v := range ref {
		if !slices.Equal(x.vector(slot), v) {
			t.Fatalf("slot %d: vector %v, want %v", slot, x.vector(slot), v)
		}
	}
	q := unit(rng, 16)
	got := map[uint32]float32{}
	x.scan(q, -2, func(slot uint32, s float32) { got[slot] = s })
	for slot, v := range ref {
		if len(v) != 16 {
			if _, ok := got[slot]; ok {
				t.Fatalf("slot %d of another dimension scanned", slot)
			}
			continue
		}
		if got[slot] != vecmath.Score(q, v) {
			t.Fatalf("slot %d: score %v, want %v (vecmath.Score)", slot, got[slot], vecmath.Score(q, v))
		}
	}
}
