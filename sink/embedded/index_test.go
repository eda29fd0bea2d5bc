package embedded

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
)

const testDim = 8

func openTest(t *testing.T, path string) *Index {
	t.Helper()
	ix, err := Open(context.Background(), Options{Path: path, Dim: testDim, ModelVersion: "test@1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

func unit(seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	v := make([]float32, testDim)
	var n float64
	for i := range v {
		v[i] = float32(r.NormFloat64())
		n += float64(v[i] * v[i])
	}
	for i := range v {
		v[i] /= float32(math.Sqrt(n))
	}
	return v
}

func rec(post string, m domain.Modality, seed uint64) domain.Record {
	return domain.Record{
		PK: domain.PrimaryKey(post, m), PostID: post, Modality: m, Author: "a-" + post,
		CreatedAt: time.Date(2026, 1, 1, 0, 0, int(seed), 0, time.UTC), ModelVersion: "test@1",
		Labels: []string{"l" + string(rune('0'+seed%3))}, Text: "text of " + post, Vector: unit(seed),
	}
}

func mustApply(t *testing.T, ix *Index, chs ...domain.Change) []domain.Outcome {
	t.Helper()
	out, err := ix.Apply(context.Background(), chs)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestApplyOutcomes(t *testing.T) {
	ix := openTest(t, filepath.Join(t.TempDir(), "ix.db"))
	ctx := context.Background()
	mustApply(t, ix, domain.Change{PostID: "p1", Seq: 5, Records: []domain.Record{rec("p1", domain.ModalityText, 1), rec("p1", domain.ModalityImage, 2)}})

	tests := []struct {
		name   string
		change domain.Change
		want   domain.Outcome
		count  map[domain.Modality]int
	}{
		{"older version is stale", domain.Change{PostID: "p1", Seq: 4, Records: []domain.Record{rec("p1", domain.ModalityText, 3)}},
			domain.Stale, map[domain.Modality]int{domain.ModalityText: 1, domain.ModalityImage: 1}},
		{"newer version replaces and drops the missing modality", domain.Change{PostID: "p1", Seq: 6, Records: []domain.Record{rec("p1", domain.ModalityText, 3)}},
			domain.Applied, map[domain.Modality]int{domain.ModalityText: 1}},
		{"redelivery of the same version applies idempotently", domain.Change{PostID: "p1", Seq: 6, Records: []domain.Record{rec("p1", domain.ModalityText, 3)}},
			domain.Applied, map[domain.Modality]int{domain.ModalityText: 1}},
		{"delete with deny", domain.Change{PostID: "p1", Delete: true, Deny: true},
			domain.Deleted, map[domain.Modality]int{}},
		{"deny-listed post is not re-indexed", domain.Change{PostID: "p1", Seq: 9, Records: []domain.Record{rec("p1", domain.ModalityText, 3)}},
			domain.Denied, map[domain.Modality]int{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := mustApply(t, ix, tc.change)
			if out[0] != tc.want {
				t.Fatalf("outcome %q, want %q", out[0], tc.want)
			}
			got, _ := ix.Count(ctx)
			if len(got) != len(tc.count) {
				t.Fatalf("count %v, want %v", got, tc.count)
			}
			for m, n := range tc.count {
				if got[m] != n {
					t.Fatalf("count %v, want %v", got, tc.count)
				}
			}
		})
	}
	if d, _ := ix.IsDenied(ctx, "p1"); !d {
		t.Error("p1 should be deny-listed")
	}
	for _, tc := range []struct {
		ids  []string
		want bool
	}{{nil, false}, {[]string{"p2", "p3"}, false}, {[]string{"p2", "p1"}, true}, {[]string{"p1"}, true}, {[]string{""}, false}} {
		if d, err := ix.AnyDenied(ctx, tc.ids); err != nil || d != tc.want {
			t.Errorf("AnyDenied(%q) = %v, %v; want %v", tc.ids, d, err, tc.want)
		}
	}
}

func TestPersistsAcrossReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ix.db")
	ctx := context.Background()
	ix, err := Open(ctx, Options{Path: path, Dim: testDim, ModelVersion: "test@1"})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		id := string(rune('a'+i%26)) + string(rune('a'+i/26))
		mustApply(t, ix, domain.Change{PostID: id, Seq: 1, Records: []domain.Record{rec(id, domain.ModalityText, uint64(i))}})
	}
	mustApply(t, ix, domain.Change{PostID: "aa", Delete: true, Deny: true})
	q := domain.VectorQuery{Vector: unit(7), K: 5, Modality: domain.ModalityText}
	before, err := ix.Search(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	ix.Close()

	ix2 := openTest(t, path)
	after, err := ix2.Search(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != 5 || len(after) != 5 {
		t.Fatalf("got %d and %d hits, want 5", len(before), len(after))
	}
	for i := range before {
		if before[i].PK != after[i].PK || before[i].Score != after[i].Score {
			t.Errorf("hit %d: %s/%v before reopen, %s/%v after", i, before[i].PK, before[i].Score, after[i].PK, after[i].Score)
		}
	}
	n, _ := ix2.Count(ctx)
	if n[domain.ModalityText] != 49 {
		t.Errorf("reopened index holds %d text records, want 49", n[domain.ModalityText])
	}
	if d, _ := ix2.IsDenied(ctx, "aa"); !d {
		t.Error("deny-list lost across reopen")
	}
}

func TestRefusesOtherDimensionOrModel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ix.db")
	ix := openTest(t, path)
	ix.Close()
	if _, err := Open(context.Background(), Options{Path: path, Dim: testDim + 1}); err == nil {
		t.Error("opened a store with another dimension")
	}
	if _, err := Open(context.Background(), Options{Path: path, Dim: testDim, ModelVersion: "other@2"}); err == nil {
		t.Error("opened a store written by another model")
	}
}

func TestSearchMatchesBruteForce(t *testing.T) {
	ix := openTest(t, filepath.Join(t.TempDir(), "ix.db"))
	ctx := context.Background()
	var all []domain.Record
	var chs []domain.Change
	for i := range 300 {
		id := "p" + string(rune('A'+i%50)) + string(rune('A'+i/50))
		r := rec(id, domain.ModalityImage, uint64(i))
		all = append(all, r)
		chs = append(chs, domain.Change{PostID: id, Records: []domain.Record{r}})
	}
	// Two records with identical vectors: ties must break by primary key.
	twin := rec("zz-twin", domain.ModalityImage, 11)
	all = append(all, twin)
	chs = append(chs, domain.Change{PostID: "zz-twin", Records: []domain.Record{twin}})
	mustApply(t, ix, chs...)

	tests := []struct {
		name   string
		filter domain.Filter
		k      int
	}{
		{"no filter", domain.Filter{}, 10},
		{"k larger than the index", domain.Filter{}, 1000},
		{"author", domain.Filter{Authors: []string{"a-pAA", "a-pBB", "a-pCC"}}, 10},
		{"label", domain.Filter{Labels: []string{"l1"}}, 20},
		{"time range", domain.Filter{Since: time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC), Until: time.Date(2026, 1, 1, 0, 2, 0, 0, time.UTC)}, 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := unit(11)
			got, err := ix.Search(ctx, domain.VectorQuery{Vector: q, K: tc.k, Modality: domain.ModalityImage, Filter: tc.filter})
			if err != nil {
				t.Fatal(err)
			}
			type ref struct {
				pk string
				s  float64
			}
			var want []ref
			for i := range all {
				if !tc.filter.Match(&all[i]) {
					continue
				}
				var s float64
				for j := range q {
					s += float64(q[j]) * float64(all[i].Vector[j])
				}
				want = append(want, ref{all[i].PK, s})
			}
			sort.Slice(want, func(i, j int) bool {
				if math.Abs(want[i].s-want[j].s) > 1e-6 {
					return want[i].s > want[j].s
				}
				return want[i].pk < want[j].pk
			})
			if len(want) > tc.k {
				want = want[:tc.k]
			}
			if len(got) != len(want) {
				t.Fatalf("got %d hits, want %d", len(got), len(want))
			}
			for i := range want {
				if got[i].PK != want[i].pk {
					t.Fatalf("rank %d: got %s (%.6f), want %s (%.6f)", i, got[i].PK, got[i].Score, want[i].pk, want[i].s)
				}
			}
		})
	}
}

func TestRejectsBadWrites(t *testing.T) {
	ix := openTest(t, filepath.Join(t.TempDir(), "ix.db"))
	bad := rec("p1", domain.ModalityText, 1)
	bad.Vector = bad.Vector[:3]
	if _, err := ix.Apply(context.Background(), []domain.Change{{PostID: "p1", Records: []domain.Record{bad}}}); err == nil {
		t.Error("accepted a record of the wrong dimension")
	}
	other := rec("p2", domain.ModalityText, 1)
	if _, err := ix.Apply(context.Background(), []domain.Change{{PostID: "p1", Records: []domain.Record{other}}}); err == nil {
		t.Error("accepted a record of another post")
	}
	if _, err := ix.Search(context.Background(), domain.VectorQuery{Vector: unit(1), K: 0}); err == nil {
		t.Error("accepted k=0")
	}
}

func TestCodecRoundTrip(t *testing.T) {
	r := rec("p1", domain.ModalityImage, 3)
	r.Code = []byte{1, 2, 3}
	r.PDQ = make([]byte, 32)
	b, err := encodeRecord(&r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.PK != r.PK || len(got.Vector) != testDim || got.Vector[3] != r.Vector[3] || string(got.Code) != string(r.Code) {
		t.Errorf("round trip lost data: %+v", got)
	}
	for _, b := range [][]byte{nil, {9}, {1, 200}, {1, 2, '{', '}', 1}} {
		if _, err := decodeRecord(b); err == nil {
			t.Errorf("decodeRecord(%v) accepted garbage", b)
		}
	}
}

// Records keep their bank matches: a search filtered by matched_banks
// returns only the posts that matched one of them, with their matches (bank,
// entry, distance) on the hit, and Get gives them too; the same after a
// reopen; a new version without matches drops them.
func TestRecordsKeepTheirMatches(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ix.db")
	ctx := context.Background()
	ix, err := Open(ctx, Options{Path: path, Dim: testDim, ModelVersion: "test@1"})
	if err != nil {
		t.Fatal(err)
	}
	four := 4
	ms := []domain.RecordMatch{{Bank: "memes", EntryID: "pdq-1", SignalType: "pdq", Modality: domain.ModalityText, Distance: &four},
		{Bank: "spam", EntryID: "text-2", SignalType: "text", Modality: domain.ModalityText}}
	var chs []domain.Change
	for i := range 20 {
		id := fmt.Sprintf("p%02d", i)
		r := rec(id, domain.ModalityText, uint64(i))
		switch i {
		case 3:
			r.Matches = ms
		case 7:
			r.Matches = ms[1:]
		}
		chs = append(chs, domain.Change{PostID: id, Seq: 1, Records: []domain.Record{r}})
	}
	mustApply(t, ix, chs...)
	check := func(ix *Index, when string) {
		t.Helper()
		for _, c := range []struct {
			banks []string
			want  string
		}{{[]string{"memes"}, "p03"}, {[]string{"spam"}, "p03 p07"}, {[]string{"other", "spam"}, "p03 p07"}, {[]string{"other"}, ""}} {
			hits, err := ix.Search(ctx, domain.VectorQuery{Vector: unit(99), K: 10, Modality: domain.ModalityText, Filter: domain.Filter{MatchedBanks: c.banks}})
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, h := range hits {
				ids = append(ids, h.PostID)
			}
			slices.Sort(ids)
			if strings.Join(ids, " ") != c.want {
				t.Fatalf("%s: matched_banks %v: %v, want %s", when, c.banks, ids, c.want)
			}
			for _, h := range hits {
				if h.PostID == "p03" && (len(h.Matches) != 2 || h.Matches[0].EntryID != "pdq-1" || h.Matches[0].Distance == nil || *h.Matches[0].Distance != 4) {
					t.Fatalf("%s: p03's hit carries matches %+v", when, h.Matches)
				}
			}
		}
		recs, err := ix.Get(ctx, []string{domain.PrimaryKey("p07", domain.ModalityText)})
		if err != nil || len(recs) != 1 || len(recs[0].Matches) != 1 || recs[0].Matches[0].Bank != "spam" {
			t.Fatalf("%s: get p07: %+v %v", when, recs, err)
		}
	}
	check(ix, "written")
	ix.Close()
	ix = openTest(t, path)
	check(ix, "reopened")
	mustApply(t, ix, domain.Change{PostID: "p07", Seq: 2, Records: []domain.Record{rec("p07", domain.ModalityText, 7)}})
	hits, err := ix.Search(ctx, domain.VectorQuery{Vector: unit(99), K: 10, Modality: domain.ModalityText, Filter: domain.Filter{MatchedBanks: []string{"spam"}}})
	if err != nil || len(hits) != 1 || hits[0].PostID != "p03" {
		t.Fatalf("after p07's version without matches: %+v %v", hits, err)
	}
}
