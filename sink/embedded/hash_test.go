package embedded

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/internal/vecmath"
)

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func hamming(a, b []byte) int {
	d := 0
	for i := range a {
		d += bits.OnesCount8(a[i] ^ b[i])
	}
	return d
}

// codedRecords makes n posts with records of every modality, random codes
// of nbytes (drawn from a few prototypes, so that distances tie often) and
// PDQ hashes on image records.
func codedRecords(n, nbytes int, seed uint64) ([]domain.Change, []domain.Record) {
	r := rand.New(rand.NewPCG(seed, 1))
	protos := make([][]byte, 8)
	for i := range protos {
		protos[i] = randBytes(r, nbytes)
	}
	var chs []domain.Change
	var all []domain.Record
	for i := range n {
		id := fmt.Sprintf("p%04d", (i*7919)%10000)
		var recs []domain.Record
		for mi, m := range domain.Modalities {
			if (i+mi)%5 == 0 {
				continue
			}
			rc := rec(id, m, uint64(i*3+mi))
			rc.Labels = []string{fmt.Sprintf("l%d", i%4)}
			rc.CreatedAt = time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC)
			code := slices.Clone(protos[r.IntN(len(protos))])
			for range r.IntN(4) {
				k := r.IntN(nbytes * 8)
				code[k/8] ^= 0x80 >> (k % 8)
			}
			rc.Code = code
			if m == domain.ModalityImage {
				rc.PDQ = randBytes(r, 32)
				rc.PDQQuality = r.IntN(101)
			}
			recs = append(recs, rc)
			all = append(all, rc)
		}
		chs = append(chs, domain.Change{PostID: id, Records: recs})
	}
	return chs, all
}

type want struct {
	pk string
	d  int
	s  float32
}

func sortHam(ws []want) {
	slices.SortFunc(ws, func(a, b want) int {
		if a.d != b.d {
			return a.d - b.d
		}
		return strings.Compare(a.pk, b.pk)
	})
}

func eligible(all []domain.Record, m domain.Modality, f domain.Filter) []domain.Record {
	var out []domain.Record
	for _, r := range all {
		if (m == "" || r.Modality == m) && f.Match(&r) {
			out = append(out, r)
		}
	}
	return out
}

var filters = []domain.Filter{
	{},
	{Labels: []string{"l1", "l2"}},
	{Authors: []string{"a-p0000", "a-p7919", "a-p5838", "a-p3757"}},
	{Since: time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC), Until: time.Date(2026, 1, 1, 0, 3, 0, 0, time.UTC)},
}

func TestHashPlanMatchesBruteForce(t *testing.T) {
	for _, nbytes := range []int{2, 4, 8, 12, 16, 24, 32} {
		t.Run(fmt.Sprintf("bits=%d", nbytes*8), func(t *testing.T) {
			ix := openTest(t, filepath.Join(t.TempDir(), "ix.db"))
			chs, all := codedRecords(400, nbytes, uint64(nbytes))
			mustApply(t, ix, chs...)
			if ix.CodeBits() != nbytes*8 {
				t.Fatalf("index adopted %d-bit codes, want %d", ix.CodeBits(), nbytes*8)
			}
			r := rand.New(rand.NewPCG(5, 5))
			for trial := range 24 {
				q := all[r.IntN(len(all))].Code
				if trial%3 == 0 {
					q = randBytes(r, nbytes)
				}
				m := []domain.Modality{"", domain.ModalityImage, domain.ModalityText, domain.ModalityFused}[trial%4]
				f := filters[(trial/4)%len(filters)]
				k := []int{1, 7, 50, 2000}[trial%4]
				got, err := ix.Search(context.Background(), domain.VectorQuery{Vector: unit(1), Code: q, Modality: m, K: k, Filter: f, Plan: domain.PlanHash})
				if err != nil {
					t.Fatal(err)
				}
				var ws []want
				for _, rc := range eligible(all, m, f) {
					ws = append(ws, want{pk: rc.PK, d: hamming(q, rc.Code)})
				}
				sortHam(ws)
				ws = ws[:min(k, len(ws))]
				if len(got) != len(ws) {
					t.Fatalf("trial %d: %d hits, want %d", trial, len(got), len(ws))
				}
				for i := range ws {
					if got[i].PK != ws[i].pk || *got[i].Distance != ws[i].d {
						t.Fatalf("trial %d rank %d: %s at %d, want %s at %d", trial, i, got[i].PK, *got[i].Distance, ws[i].pk, ws[i].d)
					}
					if s := 1 - 2*float32(ws[i].d)/float32(nbytes*8); got[i].Score != s {
						t.Fatalf("score %v, want %v", got[i].Score, s)
					}
				}
			}
		})
	}
}

func TestHybridPlanMatchesBruteForce(t *testing.T) {
	ix := openTest(t, filepath.Join(t.TempDir(), "ix.db"))
	chs, all := codedRecords(500, 8, 3)
	mustApply(t, ix, chs...)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(9, 9))
	for trial := range 32 {
		qr := all[r.IntN(len(all))]
		m := []domain.Modality{"", domain.ModalityImage, domain.ModalityText, domain.ModalityFused}[trial%4]
		f := filters[(trial/4)%len(filters)]
		k := []int{1, 5, 10, 40}[trial%4]
		c := []int{1, 10, 37, 100, 10000}[trial%5]
		got, err := ix.Search(ctx, domain.VectorQuery{Vector: qr.Vector, Code: qr.Code, Modality: m, K: k, Filter: f,
			Plan: domain.PlanHybrid, Candidates: c})
		if err != nil {
			t.Fatal(err)
		}
		var ws []want
		for _, rc := range eligible(all, m, f) {
			ws = append(ws, want{pk: rc.PK, d: hamming(qr.Code, rc.Code), s: vecmath.Score(qr.Vector, rc.Vector)})
		}
		sortHam(ws)
		ws = ws[:min(max(c, k), len(ws))]
		slices.SortFunc(ws, func(a, b want) int {
			if a.s != b.s {
				if a.s > b.s {
					return -1
				}
				return 1
			}
			return strings.Compare(a.pk, b.pk)
		})
		ws = ws[:min(k, len(ws))]
		if len(got) != len(ws) {
			t.Fatalf("trial %d: %d hits, want %d", trial, len(got), len(ws))
		}
		for i := range ws {
			if got[i].PK != ws[i].pk || got[i].Score != ws[i].s || *got[i].Distance != ws[i].d {
				t.Fatalf("trial %d (C=%d) rank %d: %s %v d=%d, want %s %v d=%d", trial, c, i, got[i].PK, got[i].Score, *got[i].Distance, ws[i].pk, ws[i].s, ws[i].d)
			}
		}
		// With C at least the records searched, hybrid is exact.
		if c == 10000 {
			ex, err := ix.Search(ctx, domain.VectorQuery{Vector: qr.Vector, Modality: m, K: k, Filter: f})
			if err != nil {
				t.Fatal(err)
			}
			for i := range ex {
				if ex[i].PK != got[i].PK {
					t.Fatalf("trial %d: hybrid with C >= N differs from exact at %d", trial, i)
				}
			}
		}
	}
}

func TestNearDupMatchesBruteForce(t *testing.T) {
	ix := openTest(t, filepath.Join(t.TempDir(), "ix.db"))
	chs, all := codedRecords(600, 8, 4)
	// near copies of one image's PDQ, so that small bounds match something
	base := all[slices.IndexFunc(all, func(r domain.Record) bool { return len(r.PDQ) > 0 })]
	for i := range 20 {
		id := fmt.Sprintf("near%02d", i)
		rc := rec(id, domain.ModalityImage, uint64(1000+i))
		rc.PDQ = slices.Clone(base.PDQ)
		for j := range i {
			rc.PDQ[(j*5)%32] ^= 1 << (j % 8)
		}
		rc.PDQQuality = 50 + i
		rc.Code = randBytes(rand.New(rand.NewPCG(uint64(i), 0)), 8)
		all = append(all, rc)
		chs = append(chs, domain.Change{PostID: id, Records: []domain.Record{rc}})
	}
	mustApply(t, ix, chs...)
	r := rand.New(rand.NewPCG(1, 2))
	for trial := range 40 {
		var hashes [][]byte
		nv := 1 + trial%8
		hashes = append(hashes, slices.Clone(base.PDQ))
		for len(hashes) < nv {
			if r.IntN(2) == 0 {
				hashes = append(hashes, randBytes(r, 32))
			} else {
				hashes = append(hashes, slices.Clone(hashes[r.IntN(len(hashes))])) // duplicates
			}
		}
		r.Shuffle(len(hashes), func(i, j int) { hashes[i], hashes[j] = hashes[j], hashes[i] })
		bound := []int{0, 5, 31, 100, 128, 256}[trial%6]
		k := []int{0, 3, 10}[trial%3]
		minQ := []int{0, 0, 60}[trial%3]
		f := filters[trial%len(filters)]
		got, err := ix.NearDup(context.Background(), domain.NearDupQuery{Hashes: hashes, MaxDistance: bound, K: k, MinQuality: minQ, Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		var ws []want
		variant := map[string]int{}
		for _, rc := range all {
			if len(rc.PDQ) == 0 || rc.PDQQuality < minQ || !f.Match(&rc) {
				continue
			}
			best, bv := 257, -1
			for i, h := range hashes {
				if d := hamming(h, rc.PDQ); d < best {
					best, bv = d, i
				}
			}
			if best <= bound {
				ws = append(ws, want{pk: rc.PK, d: best})
				variant[rc.PK] = bv
			}
		}
		sortHam(ws)
		if k > 0 {
			ws = ws[:min(k, len(ws))]
		}
		if len(got) != len(ws) {
			t.Fatalf("trial %d (bound %d, k %d): %d hits, want %d", trial, bound, k, len(got), len(ws))
		}
		for i := range ws {
			if got[i].PK != ws[i].pk || *got[i].Distance != ws[i].d || got[i].Variant != variant[ws[i].pk] {
				t.Fatalf("trial %d rank %d: %s d=%d v=%d, want %s d=%d v=%d", trial, i, got[i].PK, *got[i].Distance, got[i].Variant, ws[i].pk, ws[i].d, variant[ws[i].pk])
			}
			if got[i].Modality != domain.ModalityImage {
				t.Fatalf("near-duplicate hit of modality %s", got[i].Modality)
			}
		}
	}
}

func TestPlanErrors(t *testing.T) {
	ctx := context.Background()
	ix := openTest(t, filepath.Join(t.TempDir(), "ix.db"))
	plain := rec("p1", domain.ModalityText, 1)
	mustApply(t, ix, domain.Change{PostID: "p1", Records: []domain.Record{plain}})
	q := domain.VectorQuery{Vector: unit(1), K: 3, Plan: domain.PlanHash}
	errs := []struct {
		name string
		err  func() error
		want string
	}{
		{"hash without codes", func() error { _, err := ix.Search(ctx, q); return err }, "index holds none"},
		{"unknown plan", func() error {
			q := q
			q.Plan = "fuzzy"
			_, err := ix.Search(ctx, q)
			return err
		}, `plan "fuzzy" is not supported`},
		{"negative candidates", func() error {
			q := q
			q.Plan, q.Candidates = domain.PlanHybrid, -1
			_, err := ix.Search(ctx, q)
			return err
		}, "candidates must not be negative, got -1"},
		{"bound -1", func() error {
			_, err := ix.NearDup(ctx, domain.NearDupQuery{Hashes: [][]byte{make([]byte, 32)}, MaxDistance: -1})
			return err
		}, "distance bound -1 is outside 0..256"},
		{"bound 257", func() error {
			_, err := ix.NearDup(ctx, domain.NearDupQuery{Hashes: [][]byte{make([]byte, 32)}, MaxDistance: 257})
			return err
		}, "distance bound 257 is outside 0..256"},
		{"short pdq", func() error {
			_, err := ix.NearDup(ctx, domain.NearDupQuery{Hashes: [][]byte{make([]byte, 31)}, MaxDistance: 3})
			return err
		}, "PDQ hash 0 has 31 bytes, want 32"},
		{"no hashes", func() error { _, err := ix.NearDup(ctx, domain.NearDupQuery{MaxDistance: 3}); return err }, "give 1 to 64 PDQ hashes, got 0"},
	}
	for _, tc := range errs {
		err := tc.err()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, domain.ErrInvalidQuery) {
			t.Errorf("%s: %v, want an ErrInvalidQuery with %q", tc.name, err, tc.want)
		}
	}
	// The first code sets the length; another length is refused, naming both.
	c1 := rec("p2", domain.ModalityText, 2)
	c1.Code = make([]byte, 8)
	mustApply(t, ix, domain.Change{PostID: "p2", Records: []domain.Record{c1}})
	c2 := rec("p3", domain.ModalityText, 3)
	c2.Code = make([]byte, 4)
	if _, err := ix.Apply(ctx, []domain.Change{{PostID: "p3", Records: []domain.Record{c2}}}); err == nil || !strings.Contains(err.Error(), "record \"p3#text\" has a 32-bit code, the index holds 64-bit codes") {
		t.Errorf("code of another length: %v", err)
	}
	bad := rec("p4", domain.ModalityImage, 4)
	bad.PDQ = make([]byte, 16)
	if _, err := ix.Apply(ctx, []domain.Change{{PostID: "p4", Records: []domain.Record{bad}}}); err == nil || !strings.Contains(err.Error(), "PDQ hash of 16 bytes, want 32") {
		t.Errorf("short PDQ: %v", err)
	}
	q.Code = make([]byte, 4)
	if _, err := ix.Search(ctx, q); err == nil || !strings.Contains(err.Error(), "query code has 32 bits, the index holds 64-bit codes") {
		t.Errorf("query code of another length: %v", err)
	}
	q.Code = nil
	if _, err := ix.Search(ctx, q); err == nil || !strings.Contains(err.Error(), "needs the query's binary code") {
		t.Errorf("query without a code and no coder: %v", err)
	}
	// A record without a code never matches the hash plans.
	q.Code = make([]byte, 8)
	hits, err := ix.Search(ctx, q)
	if err != nil || len(hits) != 1 || hits[0].PK != "p2#text" {
		t.Errorf("hash plan with an uncoded record: %v %v", hits, err)
	}
}

// testCoder codes a vector by the signs of its first bits coordinates,
// flipped when invert is set (another coder, another ID).
type testCoder struct {
	bits   int
	invert bool
	calls  int
}

func (c *testCoder) Bits() int { return c.bits }
func (c *testCoder) ID() string {
	return fmt.Sprintf("test-%d-%v", c.bits, c.invert)
}
func (c *testCoder) Code(v []float32, m domain.Modality) []byte {
	c.calls++
	out := make([]byte, c.bits/8)
	for j := 0; j < c.bits; j++ {
		if (v[j%len(v)] > 0) != c.invert {
			out[j/8] |= 0x80 >> (j % 8)
		}
	}
	return out
}

func TestCoderCodesAndRecodes(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ix.db")
	c := &testCoder{bits: 16}
	ix, err := Open(ctx, Options{Path: path, Dim: testDim, Coder: c})
	if err != nil {
		t.Fatal(err)
	}
	var chs []domain.Change
	for i := range 30 {
		id := fmt.Sprintf("p%02d", i)
		chs = append(chs, domain.Change{PostID: id, Records: []domain.Record{rec(id, domain.ModalityText, uint64(i))}})
	}
	input := slices.Clone(chs[0].Records)
	mustApply(t, ix, chs...)
	if chs[0].Records[0].Code != nil || input[0].Code != nil {
		t.Error("Apply wrote codes into the caller's records")
	}
	check := func(ix *Index, c *testCoder, withCoder bool) {
		t.Helper()
		recs, _ := ix.Get(ctx, []string{"p03#text", "p17#text"})
		for _, r := range recs {
			if want := c.Code(r.Vector, r.Modality); string(r.Code) != string(want) {
				t.Errorf("%s: code %x, want %x", r.PK, r.Code, want)
			}
		}
		// A query without a code is coded by the index's coder.
		q := domain.VectorQuery{Vector: recs[0].Vector, K: 1, Modality: domain.ModalityText, Plan: domain.PlanHash}
		if !withCoder {
			q.Code = recs[0].Code
		}
		hits, err := ix.Search(ctx, q)
		if err != nil || len(hits) != 1 || *hits[0].Distance != 0 {
			t.Errorf("self query: %v %v", hits, err)
		}
	}
	check(ix, c, true)
	ix.Close()

	// Same coder: nothing recomputed.
	c.calls = 0
	ix, err = Open(ctx, Options{Path: path, Dim: testDim, Coder: c})
	if err != nil {
		t.Fatal(err)
	}
	if c.calls != 0 {
		t.Errorf("reopening with the same coder computed %d codes", c.calls)
	}
	ix.Close()

	// Another coder: every record is re-coded and written back.
	inv := &testCoder{bits: 16, invert: true}
	ix, err = Open(ctx, Options{Path: path, Dim: testDim, Coder: inv})
	if err != nil {
		t.Fatal(err)
	}
	if inv.calls != 30 {
		t.Errorf("re-coding computed %d codes, want 30", inv.calls)
	}
	check(ix, inv, true)
	ix.Close()
	inv.calls = 0
	ix, err = Open(ctx, Options{Path: path, Dim: testDim, Coder: inv})
	if err != nil {
		t.Fatal(err)
	}
	if inv.calls != 0 {
		t.Errorf("re-codes were not persisted: %d computed again", inv.calls)
	}
	check(ix, inv, true)
	ix.Close()

	// Another length: re-coded too; and without a coder the stored codes stay.
	long := &testCoder{bits: 64}
	ix, err = Open(ctx, Options{Path: path, Dim: testDim, Coder: long})
	if err != nil {
		t.Fatal(err)
	}
	check(ix, long, true)
	ix.Close()
	ix = openTest(t, path)
	if ix.CodeBits() != 64 {
		t.Errorf("without a coder the index holds %d-bit codes, want the stored 64", ix.CodeBits())
	}
	check(ix, long, false)
}

// TestChurnKeepsArraysConsistent upserts, moves between modalities and
// deletes at random, and checks every record's vector, code and PDQ against
// a model after each round and after reopening.
func TestChurnKeepsArraysConsistent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ix.db")
	ix := openTest(t, path)
	r := rand.New(rand.NewPCG(3, 3))
	model := map[string]domain.Record{}
	seq := uint64(0)
	verify := func(ix *Index) {
		t.Helper()
		n, _ := ix.Count(ctx)
		total := 0
		for _, c := range n {
			total += c
		}
		if total != len(model) {
			t.Fatalf("index holds %d records, model %d", total, len(model))
		}
		for pk, want := range model {
			got, _ := ix.Get(ctx, []string{pk})
			if len(got) != 1 {
				t.Fatalf("%s missing", pk)
			}
			g := got[0]
			if !slices.Equal(g.Vector, want.Vector) || string(g.Code) != string(want.Code) || string(g.PDQ) != string(want.PDQ) || g.PDQQuality != want.PDQQuality {
				t.Fatalf("%s: got code %x pdq %x/%d, want %x %x/%d", pk, g.Code, g.PDQ, g.PDQQuality, want.Code, want.PDQ, want.PDQQuality)
			}
			// The record is found by its own code and PDQ.
			hits, err := ix.Search(ctx, domain.VectorQuery{Vector: g.Vector, Code: g.Code, Modality: g.Modality, K: 1000, Plan: domain.PlanHash})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(hits, func(h domain.Hit) bool { return h.PK == pk && *h.Distance == 0 }) {
				t.Fatalf("%s not found at distance 0 by its code", pk)
			}
			if len(g.PDQ) > 0 {
				nd, err := ix.NearDup(ctx, domain.NearDupQuery{Hashes: [][]byte{g.PDQ}, MaxDistance: 0})
				if err != nil || !slices.ContainsFunc(nd, func(h domain.NearDupHit) bool { return h.PK == pk }) {
					t.Fatalf("%s not found by its PDQ: %v", pk, err)
				}
			}
		}
	}
	for round := range 6 {
		var chs []domain.Change
		for range 40 {
			id := fmt.Sprintf("p%02d", r.IntN(60))
			seq++
			for _, m := range domain.Modalities {
				delete(model, domain.PrimaryKey(id, m))
			}
			if r.IntN(4) == 0 {
				chs = append(chs, domain.Change{PostID: id, Seq: seq, Delete: true})
				continue
			}
			var recs []domain.Record
			for _, m := range domain.Modalities {
				if r.IntN(2) == 0 {
					continue
				}
				rc := rec(id, m, r.Uint64N(1e6))
				rc.Code = randBytes(r, 8)
				if m == domain.ModalityImage && r.IntN(3) > 0 {
					rc.PDQ, rc.PDQQuality = randBytes(r, 32), r.IntN(101)
				}
				recs = append(recs, rc)
				model[rc.PK] = rc
			}
			chs = append(chs, domain.Change{PostID: id, Seq: seq, Records: recs})
		}
		mustApply(t, ix, chs...)
		verify(ix)
		if round%2 == 1 {
			ix.Close()
			ix = openTest(t, path)
			verify(ix)
		}
	}
}

// pkSegment is a segment holding records of the given primary keys, in order.
func pkSegment(pks []string) *segment {
	s := &segment{mod: domain.ModalityImage}
	for _, pk := range pks {
		pos := s.grow(testDim, 0)
		r := &domain.Record{PK: pk, Modality: domain.ModalityImage, Vector: unit(uint64(pos))}
		s.set(pos, r, &domain.Record{PK: pk, Modality: domain.ModalityImage}, testDim, 0, 0)
	}
	return s
}

func TestSelectSmallest(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	check := func(t *testing.T, name string, o *pkOrder, xs []ref, k int) {
		t.Helper()
		got := o.keyed(nil, xs)
		o.compares = 0
		o.selectSmallest(got, k)
		// Linear on average; the bound is loose, a quadratic case is far over it.
		if limit := 30*len(xs) + 1000; o.compares > limit {
			t.Errorf("%s (n=%d, k=%d): %d comparisons, over %d", name, len(xs), k, o.compares, limit)
		}
		want := slices.Clone(xs)
		slices.SortFunc(want, func(a, b ref) int { return strings.Compare(o.pk(a), o.pk(b)) })
		a := make([]ref, 0, k)
		for _, x := range got[:k] {
			a = append(a, x.r)
		}
		slices.SortFunc(a, func(a, b ref) int { return strings.Compare(o.pk(a), o.pk(b)) })
		if !slices.Equal(a, want[:k]) {
			t.Fatalf("%s (n=%d, k=%d): selected %v, want %v", name, len(xs), k, a, want[:k])
		}
	}
	for trial := range 300 {
		n := 1 + r.IntN(200)
		pks := make([]string, n)
		for i := range pks {
			// Every fourth key shares more than 8 bytes after the common
			// prefix with others: their keys tie and the strings decide.
			if i%4 == 0 {
				pks[i] = fmt.Sprintf("k-long-shared-%05d#image", i)
			} else {
				pks[i] = fmt.Sprintf("k%05d#image", r.IntN(100000)*n+i)
			}
		}
		s := pkSegment(pks)
		xs := make([]ref, n)
		for i := range xs {
			xs[i] = mkref(0, i)
		}
		r.Shuffle(n, func(i, j int) { xs[i], xs[j] = xs[j], xs[i] })
		check(t, fmt.Sprintf("trial %d", trial), newPKOrder([]*segment{s}), xs, r.IntN(n+1))
	}
	// Buckets in scan order with primary keys in decimal order (p0, p1, ...,
	// as xmodal loadgen writes them) made the former median-of-three
	// quickselect quadratic; sorted and reversed runs too.
	n := 200_000
	pks := make([]string, n)
	for i := range pks {
		pks[i] = domain.PrimaryKey("p"+strconv.Itoa(i), domain.ModalityImage)
	}
	o := newPKOrder([]*segment{pkSegment(pks)})
	for _, frac := range []int{2, 6, 30} {
		var bucket []ref
		for i := range n {
			if r.IntN(100) < frac {
				bucket = append(bucket, mkref(0, i))
			}
		}
		check(t, fmt.Sprintf("decimal keys in scan order, %d%%", frac), o, bucket, len(bucket)/2)
		check(t, "a quarter", o, bucket, len(bucket)/4)
		sorted := slices.Clone(bucket)
		slices.SortFunc(sorted, func(a, b ref) int { return strings.Compare(o.pk(a), o.pk(b)) })
		check(t, "sorted", o, sorted, len(sorted)/3)
		slices.Reverse(sorted)
		check(t, "reversed", o, sorted, len(sorted)/3)
	}
}

// TestScanKernelsAgree checks the unrolled kernels against the generic one.
func TestScanKernelsAgree(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	for _, words := range []int{1, 2, 4} {
		for _, n := range []int{0, 1, 3, 4, 5, 63, 1001} {
			s := &segment{mod: domain.ModalityText}
			for i := range n {
				s.recs = append(s.recs, &domain.Record{PK: fmt.Sprintf("r%05d", i)})
				s.codeOK = append(s.codeOK, i%17 != 3)
				for range words {
					s.codes = append(s.codes, r.Uint64()&r.Uint64()) // denser near zero: ties
				}
			}
			q := make([]uint64, words)
			pk := newPKOrder([]*segment{nil, s})
			for _, k := range []int{1, 10, 100, 5000} {
				fast, slow := newHamSel(k, 64*words), newHamSel(k, 64*words)
				scanCodes(s, 1, q, fast, codeAccept(&domain.Filter{}))
				scanN(s, 1, q, slow, codeAccept(&domain.Filter{}))
				a, b := fast.top(pk, true), slow.top(pk, true)
				if !slices.Equal(a, b) {
					t.Fatalf("words %d n %d k %d: kernels disagree", words, n, k)
				}
			}
		}
	}
}

// TestKernelContract checks every Hamming kernel, AVX-512 and pure Go: the
// index returned has no record under t1 before it, and a record under t1
// within the kernel's block after it (or is the tail); the AVX-512 kernels'
// masks flag exactly the records of the block under t1.
func TestKernelContract(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	type kernel struct {
		name  string
		words int
		block int
		avx   bool
		next  func(c []uint64, q []uint64, from, t1 int) (int, uint32)
	}
	noMask := func(f func(c, q []uint64, from, t1 int) int) func(c, q []uint64, from, t1 int) (int, uint32) {
		return func(c, q []uint64, from, t1 int) (int, uint32) { return f(c, q, from, t1), 0 }
	}
	ks := []kernel{
		{"next1", 1, 4, false, noMask(func(c, q []uint64, from, t1 int) int { return next1(c, q[0], from, t1) })},
		{"next2", 2, 2, false, noMask(func(c, q []uint64, from, t1 int) int { return next2(c, q[0], q[1], from, t1) })},
		{"next4", 4, 2, false, noMask(func(c, q []uint64, from, t1 int) int { return next4(c, (*[4]uint64)(q), from, t1) })},
		{"next1AVX512", 1, 16, true, func(c, q []uint64, from, t1 int) (int, uint32) { return next1AVX512(c, q[0], from, t1) }},
		{"next2AVX512", 2, 8, true, func(c, q []uint64, from, t1 int) (int, uint32) { return next2AVX512(c, (*[2]uint64)(q), from, t1) }},
		{"next4AVX512", 4, 4, true, func(c, q []uint64, from, t1 int) (int, uint32) { return next4AVX512(c, (*[4]uint64)(q), from, t1) }},
	}
	for _, k := range ks {
		if k.avx && !hasAVX512 {
			t.Logf("%s: no AVX-512 VPOPCNTDQ on this CPU, skipped", k.name)
			continue
		}
		for trial := range 3000 {
			n := r.IntN(70)
			c := make([]uint64, n*k.words)
			for i := range c {
				c[i] = r.Uint64()
				if r.IntN(3) == 0 {
					c[i] &= r.Uint64() & r.Uint64() // near zero: small distances
				}
			}
			q := make([]uint64, k.words)
			if trial%2 == 0 {
				for i := range q {
					q[i] = r.Uint64()
				}
			}
			from := r.IntN(n + 1)
			t1 := 1 + r.IntN(64*k.words/2+2)
			got, mask := k.next(c, q, from, t1)
			under := func(i int) bool { return distanceAt(c, q, i) < t1 }
			if got < from || got > n {
				t.Fatalf("%s trial %d: returned %d outside [%d, %d]", k.name, trial, got, from, n)
			}
			for i := from; i < got; i++ {
				if under(i) {
					t.Fatalf("%s trial %d: record %d under %d skipped (returned %d)", k.name, trial, i, t1, got)
				}
			}
			if k.avx {
				if mask == 0 {
					if got+k.block <= n {
						t.Fatalf("%s trial %d: mask 0 at %d, not the tail of %d", k.name, trial, got, n)
					}
					continue
				}
				for j := 0; j < k.block; j++ {
					flagged := mask>>(j*k.words)&1 == 1
					if flagged != under(got+j) {
						t.Fatalf("%s trial %d: record %d flagged %v, under %d: %v (mask %b)", k.name, trial, got+j, flagged, t1, under(got+j), mask)
					}
				}
				continue
			}
			if got+k.block <= n {
				found := false
				for i := got; i < got+k.block; i++ {
					found = found || under(i)
				}
				if !found {
					t.Fatalf("%s trial %d: block at %d holds no record under %d", k.name, trial, got, t1)
				}
			}
		}
	}
}

// TestAVX512AndPureGoAgree runs the hash plan with both kernel sets.
func TestAVX512AndPureGoAgree(t *testing.T) {
	if !hasAVX512 {
		t.Skip("no AVX-512 VPOPCNTDQ on this CPU")
	}
	defer func(v bool) { hasAVX512 = v }(hasAVX512)
	for _, nbytes := range []int{4, 8, 16, 32} {
		ix := openTest(t, filepath.Join(t.TempDir(), "ix.db"))
		chs, all := codedRecords(700, nbytes, uint64(nbytes)+40)
		mustApply(t, ix, chs...)
		r := rand.New(rand.NewPCG(1, uint64(nbytes)))
		for trial := range 30 {
			q := domain.VectorQuery{Vector: unit(1), Code: all[r.IntN(len(all))].Code, K: []int{1, 10, 100, 1000}[trial%4],
				Plan: domain.PlanHash, Filter: filters[trial%len(filters)]}
			hasAVX512 = true
			a, err := ix.Search(context.Background(), q)
			if err != nil {
				t.Fatal(err)
			}
			hasAVX512 = false
			b, err := ix.Search(context.Background(), q)
			if err != nil {
				t.Fatal(err)
			}
			if len(a) != len(b) {
				t.Fatalf("%d bytes trial %d: %d hits with AVX-512, %d without", nbytes, trial, len(a), len(b))
			}
			for i := range a {
				if a[i].PK != b[i].PK || *a[i].Distance != *b[i].Distance {
					t.Fatalf("%d bytes trial %d rank %d: %s/%d with AVX-512, %s/%d without", nbytes, trial, i, a[i].PK, *a[i].Distance, b[i].PK, *b[i].Distance)
				}
			}
		}
	}
}

// TestPKKeysOrder: the per-record keys order records as their primary keys
// do, through prefix changes, moves and deletes.
func TestPKKeysOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	pks := []string{"post-0001#image", "post-0010#image", "post-0001x#image", "post-#image", "post-00011#image",
		"p#image", "post-0001#imag", "zz#image", "post-0001\x00#image", "post-000#image", "Post-1#image"}
	for i := range 300 {
		pks = append(pks, fmt.Sprintf("post-%d#image", r.IntN(100000)), fmt.Sprintf("post-train-%06d#image", i))
	}
	s := &segment{mod: domain.ModalityImage}
	check := func() {
		t.Helper()
		for i := range s.recs {
			for j := range s.recs {
				if got, want := s.comparePK(i, j), strings.Compare(s.recs[i].PK, s.recs[j].PK); got != want {
					t.Fatalf("comparePK(%q, %q) = %d, want %d (shared prefix %d)", s.recs[i].PK, s.recs[j].PK, got, want, s.cp)
				}
			}
		}
	}
	seen := map[string]bool{}
	for i, pk := range pks {
		if seen[pk] {
			continue
		}
		seen[pk] = true
		pos := s.grow(testDim, 0)
		s.set(pos, &domain.Record{PK: pk, Modality: domain.ModalityImage, Vector: unit(uint64(i))},
			&domain.Record{PK: pk, Modality: domain.ModalityImage}, testDim, 0, 0)
		if i%40 == 0 {
			check()
		}
		if r.IntN(5) == 0 && s.len() > 1 {
			s.remove(r.IntN(s.len()), testDim, 0)
		}
	}
	check()
}

// TestPlansAtDim64 runs exact and hybrid on 64-dimensional vectors (the
// AVX-512 kernel's case) against a float64 brute force.
func TestPlansAtDim64(t *testing.T) {
	const dim = 64
	ix, err := Open(context.Background(), Options{Path: filepath.Join(t.TempDir(), "ix.db"), Dim: dim})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	r := rand.New(rand.NewPCG(6, 6))
	var all []domain.Record
	var chs []domain.Change
	for i := range 700 {
		id := fmt.Sprintf("p%04d", i)
		v := make([]float32, dim)
		var n float64
		for j := range v {
			v[j] = float32(r.NormFloat64())
			n += float64(v[j]) * float64(v[j])
		}
		for j := range v {
			v[j] /= float32(math.Sqrt(n))
		}
		rc := domain.Record{PK: domain.PrimaryKey(id, domain.ModalityImage), PostID: id, Modality: domain.ModalityImage, Vector: v, Code: randBytes(r, 8)}
		all = append(all, rc)
		chs = append(chs, domain.Change{PostID: id, Records: []domain.Record{rc}})
	}
	mustApply(t, ix, chs...)
	for trial := range 20 {
		q := all[r.IntN(len(all))]
		exact, err := ix.Search(context.Background(), domain.VectorQuery{Vector: q.Vector, K: 20})
		if err != nil {
			t.Fatal(err)
		}
		type ws struct {
			pk string
			s  float64
		}
		var want []ws
		for _, rc := range all {
			var s float64
			for j := range rc.Vector {
				s += float64(q.Vector[j]) * float64(rc.Vector[j])
			}
			want = append(want, ws{rc.PK, s})
		}
		slices.SortFunc(want, func(a, b ws) int {
			if a.s != b.s {
				if a.s > b.s {
					return -1
				}
				return 1
			}
			return strings.Compare(a.pk, b.pk)
		})
		for i := range exact {
			if math.Abs(float64(exact[i].Score)-want[i].s) > 1e-5 || (exact[i].PK != want[i].pk && math.Abs(want[i].s-want[min(i+1, len(want)-1)].s) > 1e-5 && math.Abs(want[i].s-want[max(i-1, 0)].s) > 1e-5) {
				t.Fatalf("trial %d rank %d: %s %v, want %s %v", trial, i, exact[i].PK, exact[i].Score, want[i].pk, want[i].s)
			}
		}
		hy, err := ix.Search(context.Background(), domain.VectorQuery{Vector: q.Vector, Code: q.Code, K: 20, Plan: domain.PlanHybrid, Candidates: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for i := range exact {
			if hy[i].PK != exact[i].PK || hy[i].Score != exact[i].Score {
				t.Fatalf("trial %d rank %d: hybrid %s %v, exact %s %v", trial, i, hy[i].PK, hy[i].Score, exact[i].PK, exact[i].Score)
			}
		}
	}
}

// forceSeeding makes every Hamming selection seed its threshold from a
// sample (of 8 runs of 8 records), however small the index.
func forceSeeding(t *testing.T) {
	t.Helper()
	a, b, c, d := seedMinRecords, seedMinExpected, seedChunks, seedChunkSize
	t.Cleanup(func() { seedMinRecords, seedMinExpected, seedChunks, seedChunkSize = a, b, c, d })
	seedMinRecords, seedMinExpected, seedChunks, seedChunkSize = 0, 1, 8, 8
}

// TestSeededSelection runs the brute-force checks of the hash and hybrid
// plans with the threshold seed on, and checks the rescan when a sample
// puts the seed too low.
func TestSeededSelection(t *testing.T) {
	forceSeeding(t)
	t.Run("hash", TestHashPlanMatchesBruteForce)
	t.Run("hybrid", TestHybridPlanMatchesBruteForce)

	// The sampled runs (8 records from each eighth) hold codes equal to the
	// query's, every other record is far: the sample predicts a threshold
	// of 0 that only 64 records meet.
	ix := openTest(t, filepath.Join(t.TempDir(), "ix.db"))
	const n = 800
	q := []byte{0, 0, 0, 0, 0, 0, 0, 0}
	r := rand.New(rand.NewPCG(3, 3))
	var chs []domain.Change
	var all []domain.Record
	for i := range n {
		id := fmt.Sprintf("p%04d", i)
		rc := rec(id, domain.ModalityImage, uint64(i))
		rc.Code = []byte{0xff, 0xff, 0xff, byte(r.Uint32()), 0, 0, 0, 0}
		if i%(n/8) < 8 {
			rc.Code = slices.Clone(q)
		}
		chs = append(chs, domain.Change{PostID: id, Records: []domain.Record{rc}})
		all = append(all, rc)
	}
	mustApply(t, ix, chs...)
	s := ix.segs[segIndex(domain.ModalityImage)]
	qw := []uint64{0}
	k := 100
	if seed := seedThreshold([]*segment{s}, [][]uint64{qw}, k, codeAccept(&domain.Filter{}), 64); seed != 0 {
		t.Fatalf("seed %d, want 0 (the test's sample should mislead it)", seed)
	}
	got, err := ix.Search(context.Background(), domain.VectorQuery{Vector: unit(1), Code: q, Modality: domain.ModalityImage, K: k, Plan: domain.PlanHash})
	if err != nil {
		t.Fatal(err)
	}
	var ws []want
	for _, rc := range all {
		ws = append(ws, want{pk: rc.PK, d: hamming(q, rc.Code)})
	}
	sortHam(ws)
	if len(got) != k {
		t.Fatalf("%d hits, want %d", len(got), k)
	}
	for i := range k {
		if got[i].PK != ws[i].pk || *got[i].Distance != ws[i].d {
			t.Fatalf("rank %d: %s at %d, want %s at %d", i, got[i].PK, *got[i].Distance, ws[i].pk, ws[i].d)
		}
	}
}

// TestConcurrentHybridAndHash: searches running at once (sharing the
// pooled selections and scratch) answer as they do one at a time.
func TestConcurrentHybridAndHash(t *testing.T) {
	forceSeeding(t)
	ix := openTest(t, filepath.Join(t.TempDir(), "ix.db"))
	chs, all := codedRecords(500, 8, 11)
	mustApply(t, ix, chs...)
	ctx := context.Background()
	var qs []domain.VectorQuery
	for i := range 24 {
		qr := all[(i*37)%len(all)]
		plan := []domain.Plan{domain.PlanHybrid, domain.PlanHash}[i%2]
		qs = append(qs, domain.VectorQuery{Vector: qr.Vector, Code: qr.Code, K: 1 + i%12, Plan: plan, Candidates: 20 + 9*i,
			Modality: []domain.Modality{"", domain.ModalityImage, domain.ModalityText}[i%3], Filter: filters[i%len(filters)]})
	}
	want := make([][]domain.Hit, len(qs))
	for i, q := range qs {
		var err error
		if want[i], err = ix.Search(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	errs := make(chan error, 8)
	for w := range 8 {
		go func() {
			for round := range 20 {
				i := (w*7 + round) % len(qs)
				got, err := ix.Search(ctx, qs[i])
				if err == nil && len(got) != len(want[i]) {
					err = fmt.Errorf("query %d: %d hits, want %d", i, len(got), len(want[i]))
				}
				for j := 0; err == nil && j < len(got); j++ {
					if got[j].PK != want[i][j].PK || got[j].Score != want[i][j].Score || *got[j].Distance != *want[i][j].Distance {
						err = fmt.Errorf("query %d rank %d: %s, want %s", i, j, got[j].PK, want[i][j].PK)
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
