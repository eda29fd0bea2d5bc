// Package conformance is the behaviour every xmodal index backend shares (the
// embedded index, Milvus): one suite, run by each backend's tests with a function
// that opens a fresh, empty index.
//
// What it checks, against a reference computed here from the same data:
//   - the exact plan returns the same top-k ids as brute-force cosine, ties broken
//     by primary key (identical vectors rank by key);
//   - filters (modality, authors, time range, labels) as domain.Filter.Match says;
//   - the hash plan ranks by Hamming distance then primary key, its Score is
//     1 - 2d/bits and its Distance d; the hybrid plan re-ranks the Hamming top C by
//     cosine; both return the reference's ids, and their recall@k against the exact
//     plan is within 0.01 of the reference's;
//   - Apply: versions (a newer Seq replaces every record of the post, an older one
//     is stale, the same one re-applies), deletes, the deny-list, several changes of
//     one post in one call, Count and Get.
package conformance

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/internal/vecmath"
)

// Dim is the dimension the suite opens indexes with; CodeBits the code length its
// records carry (open must accept records with codes of this length).
const (
	Dim      = 16
	CodeBits = 64
)

// Opener opens a fresh, empty index of dimension dim; the backend closes it (and
// removes its data) in t.Cleanup.
type Opener func(t *testing.T, dim int) domain.Index

// Run runs the suite against the backend that open opens.
func Run(t *testing.T, open Opener) {
	t.Run("Dataset", func(t *testing.T) { runDataset(t, open) })
	t.Run("Versions", func(t *testing.T) { runVersions(t, open) })
	t.Run("DeletesAndDenyList", func(t *testing.T) { runDeletes(t, open) })
	t.Run("OneCallManyChanges", func(t *testing.T) { runBatch(t, open) })
}

var authors = []string{"ann", "bob", "cy", "dee"}
var labelSet = []string{"cat", "dog", "news", "sport", "art"}

// base is the first created_at of the data.
var base = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// planes are the hyperplanes of the SimHash codes the suite gives its records.
var planes = func() [][]float32 {
	r := rand.New(rand.NewPCG(99, 1))
	p := make([][]float32, CodeBits)
	for i := range p {
		p[i] = make([]float32, Dim)
		for j := range p[i] {
			p[i][j] = float32(r.NormFloat64())
		}
	}
	return p
}()

// Code is the suite's binary code of a vector (sign of random projections, most
// significant bit first), so that Hamming ranking correlates with cosine.
func Code(v []float32) []byte {
	out := make([]byte, CodeBits/8)
	for i, p := range planes {
		var s float32
		for j := range v {
			s += v[j] * p[j]
		}
		if s > 0 {
			out[i/8] |= 0x80 >> (i % 8)
		}
	}
	return out
}

// Unit returns a deterministic unit vector.
func Unit(r *rand.Rand) []float32 { return vecmath.RandomUnit(r, Dim) }

// Record builds a record of the suite's shape.
func Record(post string, m domain.Modality, vec []float32, author string, at time.Time, labels []string) domain.Record {
	r := domain.Record{
		PK: domain.PrimaryKey(post, m), PostID: post, Modality: m, Author: author, CreatedAt: at,
		ModelVersion: "test@1", Labels: labels, Text: "text of " + post, Vector: vec, Code: Code(vec),
	}
	if m == domain.ModalityImage {
		r.MediaURL = "https://example.test/" + post + ".jpg"
		r.Thumbnail = []byte{0xff, 0xd8, 0xff, byte(len(post))}
		r.PDQ = make([]byte, domain.PDQBytes)
		copy(r.PDQ, r.Code)
		r.PDQQuality = 90
	}
	return r
}

// Dataset is the suite's data: n posts, most with a text record, some with an image
// and a fused record, and a group of identical vectors to check tie-breaking.
func Dataset(n int, seed uint64) []domain.Change {
	r := rand.New(rand.NewPCG(seed, 3))
	var chs []domain.Change
	for i := range n {
		id := fmt.Sprintf("p%04d", i)
		author := authors[r.IntN(len(authors))]
		at := base.Add(time.Duration(r.IntN(30*24)) * time.Hour)
		var labels []string
		for _, l := range labelSet {
			if r.IntN(3) == 0 {
				labels = append(labels, l)
			}
		}
		ch := domain.Change{PostID: id, Seq: uint64(i + 1)}
		ch.Records = append(ch.Records, Record(id, domain.ModalityText, Unit(r), author, at, labels))
		if i%3 != 0 {
			ch.Records = append(ch.Records, Record(id, domain.ModalityImage, Unit(r), author, at, labels))
			ch.Records = append(ch.Records, Record(id, domain.ModalityFused, Unit(r), author, at, labels))
		}
		chs = append(chs, ch)
	}
	// Identical vectors: ties that only the primary key breaks.
	tie := Unit(rand.New(rand.NewPCG(seed, 77)))
	for i := range 6 {
		id := fmt.Sprintf("tie%d", 5-i) // applied in reverse key order
		chs = append(chs, domain.Change{PostID: id, Seq: 1, Records: []domain.Record{
			Record(id, domain.ModalityText, tie, "tie", base, []string{"tie"})}})
	}
	return chs
}

// TieVector returns the vector the tie group of Dataset(n, seed) shares.
func TieVector(seed uint64) []float32 { return Unit(rand.New(rand.NewPCG(seed, 77))) }

func records(chs []domain.Change) []domain.Record {
	var out []domain.Record
	for _, ch := range chs {
		out = append(out, ch.Records...)
	}
	return out
}

func apply(t *testing.T, ix domain.Index, chs ...domain.Change) []domain.Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := ix.Apply(ctx, chs)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if len(out) != len(chs) {
		t.Fatalf("Apply returned %d outcomes for %d changes", len(out), len(chs))
	}
	return out
}

func search(t *testing.T, ix domain.Index, q domain.VectorQuery) []domain.Hit {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hits, err := ix.Search(ctx, q)
	if err != nil {
		t.Fatalf("Search(plan %q, modality %q, k %d): %v", q.Plan, q.Modality, q.K, err)
	}
	return hits
}

func dot(a, b []float32) float32 {
	var s float32
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func hamming(a, b []byte) int {
	d := 0
	for i := range a {
		d += bits.OnesCount8(a[i] ^ b[i])
	}
	return d
}

// A Ref is one reference hit.
type Ref struct {
	pk    string
	score float32
	dist  int
}

type ref = Ref

// PK returns the hit's primary key.
func (r Ref) PK() string { return r.pk }

func eligible(recs []domain.Record, q domain.VectorQuery) []domain.Record {
	var out []domain.Record
	for i := range recs {
		r := &recs[i]
		if q.Modality != "" && r.Modality != q.Modality {
			continue
		}
		if !q.Filter.Match(r) {
			continue
		}
		out = append(out, *r)
	}
	return out
}

// ExactRef is brute-force cosine, ties by primary key.
func ExactRef(recs []domain.Record, q domain.VectorQuery) []ref {
	var out []ref
	for _, r := range eligible(recs, q) {
		out = append(out, ref{pk: r.PK, score: dot(q.Vector, r.Vector)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].score != out[j].score {
			return out[i].score > out[j].score
		}
		return out[i].pk < out[j].pk
	})
	return out[:min(q.K, len(out))]
}

// HashRef ranks by Hamming distance, ties by primary key, keeping k.
func HashRef(recs []domain.Record, q domain.VectorQuery, k int) []ref {
	var out []ref
	for _, r := range eligible(recs, q) {
		if len(r.Code) == 0 {
			continue
		}
		d := hamming(q.Code, r.Code)
		out = append(out, ref{pk: r.PK, dist: d, score: 1 - 2*float32(d)/float32(8*len(q.Code))})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].dist != out[j].dist {
			return out[i].dist < out[j].dist
		}
		return out[i].pk < out[j].pk
	})
	return out[:min(k, len(out))]
}

// HybridRef re-ranks the Hamming top c by cosine.
func HybridRef(recs []domain.Record, q domain.VectorQuery, c int) []ref {
	byPK := map[string]*domain.Record{}
	for i := range recs {
		byPK[recs[i].PK] = &recs[i]
	}
	cands := HashRef(recs, q, max(c, q.K))
	for i := range cands {
		cands[i].score = dot(q.Vector, byPK[cands[i].pk].Vector)
	}
	sort.Slice(cands, func(i, j int) bool {
		if cands[i].score != cands[j].score {
			return cands[i].score > cands[j].score
		}
		return cands[i].pk < cands[j].pk
	})
	return cands[:min(q.K, len(cands))]
}

// sameRanking checks that got has want's ids in want's order, allowing two ids to
// swap only when their reference scores are within eps (float sums in another
// order); scores must agree within eps too.
func sameRanking(t *testing.T, what string, got []domain.Hit, want []ref, all map[string]float32, eps float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d hits, want %d (got %v, want %v)", what, len(got), len(want), pks(got), refPKs(want))
		return
	}
	for i := range want {
		g := got[i]
		if g.PK == want[i].pk {
			if d := g.Score - want[i].score; d > eps || d < -eps {
				t.Errorf("%s: hit %d %s score %v, want %v", what, i, g.PK, g.Score, want[i].score)
			}
			continue
		}
		s, ok := all[g.PK]
		if !ok || math.Abs(float64(s-want[i].score)) > float64(eps) {
			t.Errorf("%s: hit %d is %s, want %s (got %v, want %v)", what, i, g.PK, want[i].pk, pks(got), refPKs(want))
			return
		}
	}
}

func pks(h []domain.Hit) []string {
	out := make([]string, len(h))
	for i := range h {
		out[i] = h[i].PK
	}
	return out
}

func refPKs(r []ref) []string {
	out := make([]string, len(r))
	for i := range r {
		out[i] = r[i].pk
	}
	return out
}

func allScores(recs []domain.Record, v []float32) map[string]float32 {
	m := map[string]float32{}
	for i := range recs {
		m[recs[i].PK] = dot(v, recs[i].Vector)
	}
	return m
}

// recall is |got ∩ truth| / |truth|.
func recall(got []string, truth []ref) float64 {
	if len(truth) == 0 {
		return 1
	}
	in := map[string]bool{}
	for _, r := range truth {
		in[r.pk] = true
	}
	n := 0
	for _, pk := range got {
		if in[pk] {
			n++
		}
	}
	return float64(n) / float64(len(truth))
}

func runDataset(t *testing.T, open Opener) {
	const seed = 11
	ix := open(t, Dim)
	chs := Dataset(150, seed)
	out := apply(t, ix, chs...)
	for i, o := range out {
		if o != domain.Applied {
			t.Fatalf("change %d (%s): outcome %q, want applied", i, chs[i].PostID, o)
		}
	}
	recs := records(chs)
	ctx := context.Background()

	t.Run("Count", func(t *testing.T) {
		want := map[domain.Modality]int{}
		for _, r := range recs {
			want[r.Modality]++
		}
		got, err := ix.Count(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("Count = %v, want %v", got, want)
		}
		for m, n := range want {
			if got[m] != n {
				t.Fatalf("Count = %v, want %v", got, want)
			}
		}
	})

	t.Run("Get", func(t *testing.T) {
		want := []domain.Record{recs[4], recs[0], recs[2]} // recs[2] is an image record
		got, err := ix.Get(ctx, []string{want[0].PK, "nope#text", want[1].PK, want[2].PK})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("Get returned %d records, want %d", len(got), len(want))
		}
		for i := range want {
			if err := sameRecord(&got[i], &want[i]); err != nil {
				t.Errorf("Get %s: %v", want[i].PK, err)
			}
		}
	})

	r := rand.New(rand.NewPCG(seed, 9))
	var queries [][]float32
	for range 8 {
		queries = append(queries, Unit(r))
	}

	t.Run("ExactTopK", func(t *testing.T) {
		for qi, v := range queries {
			for _, m := range []domain.Modality{"", domain.ModalityText, domain.ModalityImage, domain.ModalityFused} {
				for _, plan := range []domain.Plan{domain.PlanExact, ""} {
					q := domain.VectorQuery{Vector: v, Modality: m, K: 10, Plan: plan}
					sameRanking(t, fmt.Sprintf("query %d modality %q plan %q", qi, m, plan), search(t, ix, q), ExactRef(recs, q), allScores(recs, v), 1e-4)
				}
			}
		}
	})

	t.Run("TiesByPrimaryKey", func(t *testing.T) {
		v := TieVector(seed)
		for _, k := range []int{1, 3, 6} {
			hits := search(t, ix, domain.VectorQuery{Vector: v, Modality: domain.ModalityText, K: k, Plan: domain.PlanExact})
			want := []string{"tie0#text", "tie1#text", "tie2#text", "tie3#text", "tie4#text", "tie5#text"}[:k]
			if !slices.Equal(pks(hits), want) {
				t.Errorf("k=%d: %v, want %v (identical vectors rank by primary key)", k, pks(hits), want)
			}
		}
		hits := search(t, ix, domain.VectorQuery{Vector: v, Code: Code(v), K: 4, Plan: domain.PlanHash, Filter: domain.Filter{Authors: []string{"tie"}}})
		if got, want := pks(hits), []string{"tie0#text", "tie1#text", "tie2#text", "tie3#text"}; !slices.Equal(got, want) {
			t.Errorf("hash plan: %v, want %v (equal codes rank by primary key)", got, want)
		}
	})

	t.Run("Filters", func(t *testing.T) {
		filters := []domain.Filter{
			{Authors: []string{"ann"}},
			{Authors: []string{"bob", "dee"}},
			{Since: base.Add(10 * 24 * time.Hour)},
			{Until: base.Add(5 * 24 * time.Hour)},
			{Since: base.Add(3 * 24 * time.Hour), Until: base.Add(20 * 24 * time.Hour)},
			{Labels: []string{"cat"}},
			{Labels: []string{"news", "art"}},
			{Authors: []string{"cy"}, Labels: []string{"dog"}, Since: base.Add(2 * 24 * time.Hour)},
			{Labels: []string{"no-such-label"}},
		}
		for fi, f := range filters {
			for _, m := range []domain.Modality{"", domain.ModalityImage} {
				v := queries[fi%len(queries)]
				q := domain.VectorQuery{Vector: v, Modality: m, K: 8, Plan: domain.PlanExact, Filter: f}
				hits := search(t, ix, q)
				sameRanking(t, fmt.Sprintf("filter %d %+v modality %q", fi, f, m), hits, ExactRef(recs, q), allScores(recs, v), 1e-4)
				byPK := map[string]*domain.Record{}
				for i := range recs {
					byPK[recs[i].PK] = &recs[i]
				}
				for _, h := range hits {
					if r := byPK[h.PK]; r == nil || !f.Match(r) {
						t.Errorf("filter %d: hit %s does not pass the filter", fi, h.PK)
					}
				}
			}
		}
	})

	t.Run("HitFields", func(t *testing.T) {
		want := recs[2] // an image record
		if want.Modality != domain.ModalityImage {
			t.Fatalf("dataset: record 2 is %s, want an image", want.PK)
		}
		hits := search(t, ix, domain.VectorQuery{Vector: want.Vector, Modality: want.Modality, K: 1, Plan: domain.PlanExact})
		if len(hits) != 1 || hits[0].PK != want.PK {
			t.Fatalf("searching a record's own vector: %v, want %s", pks(hits), want.PK)
		}
		h := hits[0]
		if h.PostID != want.PostID || h.Modality != want.Modality || h.Author != want.Author || !h.CreatedAt.Equal(want.CreatedAt) ||
			!slices.Equal(h.Labels, want.Labels) || h.Text != want.Text || h.MediaURL != want.MediaURL || string(h.Thumbnail) != string(want.Thumbnail) {
			t.Errorf("hit %+v does not show record %+v", h, want)
		}
		if math.Abs(float64(h.Score)-1) > 1e-4 {
			t.Errorf("score of a record's own vector is %v, want 1", h.Score)
		}
	})

	t.Run("Hash", func(t *testing.T) {
		var got, ref float64
		for qi, v := range queries {
			for _, m := range []domain.Modality{"", domain.ModalityText} {
				q := domain.VectorQuery{Vector: v, Code: Code(v), Modality: m, K: 10, Plan: domain.PlanHash}
				hits := search(t, ix, q)
				want := HashRef(recs, q, q.K)
				if !slices.Equal(pks(hits), refPKs(want)) {
					t.Errorf("query %d modality %q: hash plan %v, want %v (Hamming, ties by primary key)", qi, m, pks(hits), refPKs(want))
				}
				for i := range min(len(hits), len(want)) {
					if hits[i].Distance == nil || *hits[i].Distance != want[i].dist || math.Abs(float64(hits[i].Score-want[i].score)) > 1e-6 {
						t.Errorf("query %d hit %d: score %v distance %v, want %v and %d", qi, i, hits[i].Score, hits[i].Distance, want[i].score, want[i].dist)
						break
					}
				}
				truth := ExactRef(recs, q)
				got += recall(pks(hits), truth)
				ref += recall(refPKs(want), truth)
			}
		}
		n := float64(2 * len(queries))
		t.Logf("hash plan recall@10 %.3f (reference %.3f)", got/n, ref/n)
		if math.Abs(got-ref)/n > 0.01 {
			t.Errorf("hash plan recall@10 %.3f, reference %.3f: more than 0.01 apart", got/n, ref/n)
		}
	})

	t.Run("Hybrid", func(t *testing.T) {
		for _, c := range []int{10, 40, 200} {
			var got, ref float64
			for qi, v := range queries {
				q := domain.VectorQuery{Vector: v, Code: Code(v), K: 10, Plan: domain.PlanHybrid, Candidates: c}
				hits := search(t, ix, q)
				want := HybridRef(recs, q, c)
				sameRanking(t, fmt.Sprintf("C=%d query %d", c, qi), hits, want, allScores(recs, v), 1e-4)
				truth := ExactRef(recs, q)
				got += recall(pks(hits), truth)
				ref += recall(refPKs(want), truth)
			}
			n := float64(len(queries))
			t.Logf("hybrid C=%d recall@10 %.3f (reference %.3f)", c, got/n, ref/n)
			if math.Abs(got-ref)/n > 0.01 {
				t.Errorf("hybrid C=%d recall@10 %.3f, reference %.3f: more than 0.01 apart", c, got/n, ref/n)
			}
		}
	})
}

func sameRecord(got, want *domain.Record) error {
	switch {
	case got.PK != want.PK || got.PostID != want.PostID || got.Modality != want.Modality:
		return fmt.Errorf("key %s/%s/%s, want %s/%s/%s", got.PK, got.PostID, got.Modality, want.PK, want.PostID, want.Modality)
	case got.Author != want.Author || !got.CreatedAt.Equal(want.CreatedAt) || got.ModelVersion != want.ModelVersion:
		return fmt.Errorf("author/created_at/model %q %v %q, want %q %v %q", got.Author, got.CreatedAt, got.ModelVersion, want.Author, want.CreatedAt, want.ModelVersion)
	case !slices.Equal(got.Labels, want.Labels) || got.Text != want.Text || got.MediaURL != want.MediaURL:
		return fmt.Errorf("labels/text/url %v %q %q, want %v %q %q", got.Labels, got.Text, got.MediaURL, want.Labels, want.Text, want.MediaURL)
	case string(got.Thumbnail) != string(want.Thumbnail):
		return errors.New("thumbnail differs")
	case !slices.Equal(got.Vector, want.Vector):
		return errors.New("vector differs")
	case string(got.Code) != string(want.Code):
		return fmt.Errorf("code %x, want %x", got.Code, want.Code)
	case string(got.PDQ) != string(want.PDQ) || got.PDQQuality != want.PDQQuality:
		return fmt.Errorf("pdq %x/%d, want %x/%d", got.PDQ, got.PDQQuality, want.PDQ, want.PDQQuality)
	}
	return nil
}

func wantCount(t *testing.T, ix domain.Index, want map[domain.Modality]int) {
	t.Helper()
	got, err := ix.Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for m := range got {
		if got[m] != want[m] {
			t.Fatalf("Count = %v, want %v", got, want)
		}
	}
	for m, n := range want {
		if got[m] != n {
			t.Fatalf("Count = %v, want %v", got, want)
		}
	}
}

func wantGet(t *testing.T, ix domain.Index, pk string, want *domain.Record) {
	t.Helper()
	got, err := ix.Get(context.Background(), []string{pk})
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case want == nil && len(got) != 0:
		t.Fatalf("Get(%s) returned a record; want none", pk)
	case want != nil && len(got) != 1:
		t.Fatalf("Get(%s) returned %d records; want 1", pk, len(got))
	case want != nil:
		if err := sameRecord(&got[0], want); err != nil {
			t.Fatalf("Get(%s): %v", pk, err)
		}
	}
}

func runVersions(t *testing.T, open Opener) {
	ix := open(t, Dim)
	r := rand.New(rand.NewPCG(5, 5))
	v1t, v1i, v2t, v3t := Unit(r), Unit(r), Unit(r), Unit(r)
	rec := func(m domain.Modality, v []float32) domain.Record {
		return Record("p1", m, v, "ann", base, []string{"x"})
	}
	steps := []struct {
		name   string
		change domain.Change
		want   domain.Outcome
		count  map[domain.Modality]int
		text   []float32 // the text record's vector afterwards (nil: none)
	}{
		{"first version", domain.Change{PostID: "p1", Seq: 5, Records: []domain.Record{rec(domain.ModalityText, v1t), rec(domain.ModalityImage, v1i)}},
			domain.Applied, map[domain.Modality]int{domain.ModalityText: 1, domain.ModalityImage: 1}, v1t},
		{"older version is stale", domain.Change{PostID: "p1", Seq: 4, Records: []domain.Record{rec(domain.ModalityText, v3t)}},
			domain.Stale, map[domain.Modality]int{domain.ModalityText: 1, domain.ModalityImage: 1}, v1t},
		{"newer version replaces and drops the missing modality", domain.Change{PostID: "p1", Seq: 6, Records: []domain.Record{rec(domain.ModalityText, v2t)}},
			domain.Applied, map[domain.Modality]int{domain.ModalityText: 1}, v2t},
		{"redelivery of the same version applies", domain.Change{PostID: "p1", Seq: 6, Records: []domain.Record{rec(domain.ModalityText, v2t)}},
			domain.Applied, map[domain.Modality]int{domain.ModalityText: 1}, v2t},
		{"seq 0 always applies", domain.Change{PostID: "p1", Seq: 0, Records: []domain.Record{rec(domain.ModalityText, v3t)}},
			domain.Applied, map[domain.Modality]int{domain.ModalityText: 1}, v3t},
		{"after seq 0 any version applies", domain.Change{PostID: "p1", Seq: 2, Records: []domain.Record{rec(domain.ModalityText, v1t), rec(domain.ModalityFused, v1i)}},
			domain.Applied, map[domain.Modality]int{domain.ModalityText: 1, domain.ModalityFused: 1}, v1t},
		{"delete without deny", domain.Change{PostID: "p1", Delete: true},
			domain.Deleted, map[domain.Modality]int{}, nil},
		{"after a delete an older version applies again", domain.Change{PostID: "p1", Seq: 1, Records: []domain.Record{rec(domain.ModalityText, v2t)}},
			domain.Applied, map[domain.Modality]int{domain.ModalityText: 1}, v2t},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			out := apply(t, ix, s.change)
			if out[0] != s.want {
				t.Fatalf("outcome %q, want %q", out[0], s.want)
			}
			wantCount(t, ix, s.count)
			if s.text == nil {
				wantGet(t, ix, "p1#text", nil)
				return
			}
			want := rec(domain.ModalityText, s.text)
			wantGet(t, ix, "p1#text", &want)
			hits := search(t, ix, domain.VectorQuery{Vector: s.text, Modality: domain.ModalityText, K: 5, Plan: domain.PlanExact})
			if len(hits) != 1 || hits[0].PK != "p1#text" || math.Abs(float64(hits[0].Score)-1) > 1e-4 {
				t.Fatalf("search after the change: %v", hits)
			}
		})
	}
	if d, err := ix.IsDenied(context.Background(), "p1"); err != nil || d {
		t.Errorf("IsDenied(p1) = %v, %v; a delete without deny does not deny", d, err)
	}
}

func runDeletes(t *testing.T, open Opener) {
	ix := open(t, Dim)
	chs := Dataset(20, 21)
	apply(t, ix, chs...)
	recs := records(chs)
	ctx := context.Background()
	before, err := ix.Count(ctx)
	if err != nil {
		t.Fatal(err)
	}
	victim := chs[1] // text, image and fused
	if len(victim.Records) != 3 {
		t.Fatalf("dataset: post %s has %d records, want 3", victim.PostID, len(victim.Records))
	}
	out := apply(t, ix, domain.Change{PostID: victim.PostID, Delete: true, Deny: true})
	if out[0] != domain.Deleted {
		t.Fatalf("delete: outcome %q", out[0])
	}
	after := map[domain.Modality]int{}
	for m, n := range before {
		after[m] = n - 1
	}
	wantCount(t, ix, after)
	for _, r := range victim.Records {
		wantGet(t, ix, r.PK, nil)
		for _, plan := range []domain.Plan{domain.PlanExact, domain.PlanHash, domain.PlanHybrid} {
			hits := search(t, ix, domain.VectorQuery{Vector: r.Vector, Code: r.Code, K: 50, Plan: plan, Candidates: 50})
			for _, h := range hits {
				if h.PostID == victim.PostID {
					t.Fatalf("plan %s: deleted post %s still found", plan, victim.PostID)
				}
			}
		}
	}
	if d, err := ix.IsDenied(ctx, victim.PostID); err != nil || !d {
		t.Fatalf("IsDenied(%s) = %v, %v; want true", victim.PostID, d, err)
	}
	if d, err := ix.IsDenied(ctx, chs[2].PostID); err != nil || d {
		t.Fatalf("IsDenied(%s) = %v, %v; want false", chs[2].PostID, d, err)
	}
	// Neither a redelivery nor a newer version brings it back.
	redo := victim
	redo.Seq += 100
	out = apply(t, ix, victim, redo)
	if out[0] != domain.Denied || out[1] != domain.Denied {
		t.Fatalf("re-indexing a deny-listed post: %v, want denied twice", out)
	}
	wantCount(t, ix, after)
	// The rest is untouched: exact search over what is left equals the reference.
	var left []domain.Record
	for _, r := range recs {
		if r.PostID != victim.PostID {
			left = append(left, r)
		}
	}
	v := Unit(rand.New(rand.NewPCG(8, 8)))
	q := domain.VectorQuery{Vector: v, K: 10, Plan: domain.PlanExact}
	sameRanking(t, "after the delete", search(t, ix, q), ExactRef(left, q), allScores(left, v), 1e-4)
	// Deleting an unknown post is not an error.
	if out := apply(t, ix, domain.Change{PostID: "never-seen", Delete: true}); out[0] != domain.Deleted {
		t.Fatalf("deleting an unknown post: %q", out[0])
	}
}

func runBatch(t *testing.T, open Opener) {
	ix := open(t, Dim)
	r := rand.New(rand.NewPCG(6, 6))
	a, b, c := Unit(r), Unit(r), Unit(r)
	rec := func(post string, v []float32) domain.Record {
		return Record(post, domain.ModalityText, v, "bob", base, nil)
	}
	out := apply(t, ix,
		domain.Change{PostID: "q1", Seq: 3, Records: []domain.Record{rec("q1", a)}},
		domain.Change{PostID: "q1", Seq: 2, Records: []domain.Record{rec("q1", b)}}, // older than the one before it
		domain.Change{PostID: "q2", Seq: 1, Records: []domain.Record{rec("q2", a)}},
		domain.Change{PostID: "q2", Delete: true, Deny: true},
		domain.Change{PostID: "q2", Seq: 2, Records: []domain.Record{rec("q2", b)}}, // denied by the change before it
		domain.Change{PostID: "q3", Seq: 1, Records: []domain.Record{rec("q3", a)}},
		domain.Change{PostID: "q3", Seq: 4, Records: []domain.Record{rec("q3", c)}},
	)
	want := []domain.Outcome{domain.Applied, domain.Stale, domain.Applied, domain.Deleted, domain.Denied, domain.Applied, domain.Applied}
	if !slices.Equal(out, want) {
		t.Fatalf("outcomes %v, want %v", out, want)
	}
	wantCount(t, ix, map[domain.Modality]int{domain.ModalityText: 2})
	w1, w3 := rec("q1", a), rec("q3", c)
	wantGet(t, ix, "q1#text", &w1)
	wantGet(t, ix, "q2#text", nil)
	wantGet(t, ix, "q3#text", &w3)
	// Empty calls are fine.
	if out, err := ix.Apply(context.Background(), nil); err != nil || len(out) != 0 {
		t.Fatalf("Apply(nil) = %v, %v", out, err)
	}
}
