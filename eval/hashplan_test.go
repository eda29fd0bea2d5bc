package eval

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/hash"
	"github.com/xmodal/xmodal/internal/vecmath"
)

func TestHammingRankHandComputed(t *testing.T) {
	b := func(xs ...byte) []byte { return xs }
	for _, c := range []struct {
		name    string
		gallery [][]byte
		q       []byte
		k       int
		want    []int32
	}{
		// distances 0, 8, 1, 2, 1: the two at 1 keep index order
		{"8 bits, all", [][]byte{b(0x00), b(0xff), b(0x01), b(0x03), b(0x01)}, b(0x00), 0, []int32{0, 2, 4, 3, 1}},
		{"8 bits, top 2", [][]byte{b(0x00), b(0xff), b(0x01), b(0x03), b(0x01)}, b(0x00), 2, []int32{0, 2}},
		{"8 bits, other query", [][]byte{b(0x00), b(0xff), b(0x01), b(0x03), b(0x01)}, b(0xff), 0, []int32{1, 3, 2, 4, 0}},
		{"k beyond the gallery", [][]byte{b(0x0f), b(0x00)}, b(0x00), 9, []int32{1, 0}},
		// 16 bits: distances 16, 0, 1 (high byte), 1 (low byte)
		{"16 bits", [][]byte{b(0xff, 0xff), b(0, 0), b(0x80, 0), b(0, 0x01)}, b(0, 0), 0, []int32{1, 2, 3, 0}},
		// 128 bits (two words): a difference in the second word counts
		{"128 bits", [][]byte{append(make([]byte, 15), 0x07), make([]byte, 16), append(make([]byte, 8), 0x01, 0, 0, 0, 0, 0, 0, 0)},
			make([]byte, 16), 0, []int32{1, 2, 0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, err := NewHamming(c.gallery)
			if err != nil {
				t.Fatal(err)
			}
			var s Scratch
			if got := h.RankCode(c.q, c.k, &s); !slices.Equal(got, c.want) {
				t.Fatalf("rank %v, want %v (distances %v)", got, c.want, h.Distances(c.q, nil, &s))
			}
		})
	}
	if _, err := NewHamming([][]byte{{1, 2}, {1}}); err == nil || !strings.Contains(err.Error(), "code 1 has 1 bytes") {
		t.Fatalf("codes of two lengths: %v", err)
	}
}

// identityCoder is an ITQ coder with W = I: bit j of x of modality m is
// x_j > mean_m[j], so codes can be worked out by hand.
func identityCoder(t testing.TB, dim int, textMean float32) *hash.Coder {
	t.Helper()
	proj := make([][]float32, dim)
	for i := range proj {
		proj[i] = make([]float32, dim)
		proj[i][i] = 1
	}
	tm := make([]float32, dim)
	for i := range tm {
		tm[i] = textMean
	}
	c, err := hash.New(hash.Params{Method: hash.MethodITQ, Model: "hand@1", Dim: dim, Bits: dim,
		Means: map[string][]float32{"image": make([]float32, dim), "text": tm}, Projection: proj})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// handSets is a 16-dimensional query split of one image and its caption
// (the same unit vector u, every component 0.25, label a) and a database
// of four items, images and texts alike:
//
//	g0: 12 × 1, 4 × -0.1            cos 0.836, label a
//	g1: 10, 15 × 0.01               cos 0.254, label b
//	g2: 8 × 1, 8 × -0.01            cos 0.700, label a
//	g3: 10, 11 × 0.01, 4 × -0.01    cos 0.252, label b
//
// Exact ranks g0 g2 g1 g3: MAP 1. By signs (the identity coder with zero
// means), u has 16 ones and g1 16, g0 and g3 12, g2 8: Hamming ranks g1 g0
// g3 g2 (g0 before g3 by index), relevance F T F T, AP (1/2 + 2/4)/2 = 0.5.
func handSets(t testing.TB) (q, db *EmbeddedSet) {
	t.Helper()
	fill := func(parts ...[2]float32) []float32 {
		var v []float32
		for _, p := range parts {
			for range int(p[0]) {
				v = append(v, p[1])
			}
		}
		return vecmath.Normalized(v)
	}
	u := fill([2]float32{16, 0.25})
	g := [][]float32{
		fill([2]float32{12, 1}, [2]float32{4, -0.1}),
		fill([2]float32{1, 10}, [2]float32{15, 0.01}),
		fill([2]float32{8, 1}, [2]float32{8, -0.01}),
		fill([2]float32{1, 10}, [2]float32{11, 0.01}, [2]float32{4, -0.01}),
	}
	labels := []string{"a", "b", "a", "b"}
	mustM := func(rows [][]float32) Matrix {
		m, err := NewMatrix(rows)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	q = &EmbeddedSet{Name: "hand queries", Images: mustM([][]float32{u}), Texts: mustM([][]float32{u}), HasLabels: true,
		ImageMeta: []Meta{{ID: "qi", Labels: []string{"a"}, Pair: -1}}, TextMeta: []Meta{{ID: "qt", Labels: []string{"a"}, Pair: 0}}}
	db = &EmbeddedSet{Name: "hand db", Images: mustM(g), Texts: mustM(g), HasLabels: true}
	for i, l := range labels {
		db.ImageMeta = append(db.ImageMeta, Meta{ID: fmt.Sprint("gi", i), Labels: []string{l}, Pair: -1})
		db.TextMeta = append(db.TextMeta, Meta{ID: fmt.Sprint("gt", i), Labels: []string{l}, Pair: i})
	}
	return q, db
}

func TestHashPlanMAPHandComputed(t *testing.T) {
	for _, c := range []struct {
		name     string
		textMean float32
		// MAP@ALL and MAP@1 of the Hamming ranking, TqI and IqT
		tqi, iqt, tqi1, iqt1 float64
	}{
		{"zero means", 0, 0.5, 0.5, 0, 0},
		// Each modality centred on its own mean. Text query u - 0.5 is all
		// zeros: distances g0 12, g1 16, g2 8, g3 12 rank g2 g0 g3 g1 (AP 1).
		// Image query u is all ones; database texts less 0.5 keep only g1's
		// and g3's first bit: distances 16, 15, 16, 15 rank g1 g3 g0 g2,
		// relevance F F T T: (1/3 + 2/4)/2.
		{"text mean 0.5", 0.5, 1, (1.0/3 + 2.0/4) / 2, 1, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			q, db := handSets(t)
			rep, err := Evaluate(context.Background(), q, db, Options{Plan: "hash", MAPKs: []int{1},
				Hash: HashOptions{Coder: identityCoder(t, 16, c.textMean), CoderSource: "hand"}})
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range []struct {
				dir  string
				k    int
				want float64
			}{{TqI, 0, c.tqi}, {IqT, 0, c.iqt}, {TqI, 1, c.tqi1}, {IqT, 1, c.iqt1}} {
				row, ok := findHashMAP(rep, 16, w.dir, w.k)
				if !ok {
					t.Fatalf("no %s K=%d row in %+v", w.dir, w.k, rep.Hash.MAP)
				}
				if !near(row.MAP, w.want) || !near(row.Exact, 1) || row.Gallery != 4 || row.Queries != 1 {
					t.Errorf("%s MAP@%d: %+v, want hash MAP %v beside exact 1", w.dir, w.k, row, w.want)
				}
			}
			if len(rep.Hash.MAP) != 4 || len(rep.Hash.Coders) != 1 || rep.Hash.Coders[0].Bits != 16 {
				t.Fatalf("rows %+v coders %+v", rep.Hash.MAP, rep.Hash.Coders)
			}
		})
	}
}

func findHashMAP(rep *Report, bits int, dir string, k int) (HashMAPRow, bool) {
	for _, r := range rep.Hash.MAP {
		if r.Bits == bits && r.Direction == dir && r.K == k {
			return r, true
		}
	}
	return HashMAPRow{}, false
}

func TestHashPlansRefuseBadOptions(t *testing.T) {
	q, db := handSets(t)
	unlabelled, _ := handSets(t)
	unlabelled.HasLabels = false
	c16 := identityCoder(t, 16, 0)
	for _, c := range []struct {
		name string
		plan string
		q    *EmbeddedSet
		h    HashOptions
		want string
	}{
		{"bits outside the set", "hash", q, HashOptions{Bits: []int{48}}, "48 bits is not supported (want one of 16, 32, 64, 128, 256)"},
		{"bits 512", "hash", q, HashOptions{Bits: []int{16, 512}}, "512 bits is not supported"},
		{"bits above the dimension", "hash", q, HashOptions{Bits: []int{32}}, "32 bits exceed the embedding dimension 16"},
		{"bits zero", "hybrid", q, HashOptions{Bits: []int{0}}, "0 bits is not supported"},
		{"unknown coder", "hash", q, HashOptions{Method: "lsh"}, `hash coder "lsh" is unknown`},
		{"bits other than the given coder's", "hash", q, HashOptions{Coder: c16, Bits: []int{32}}, "bits 32: the given coder itq-16-"},
		{"percentage over 100", "hybrid", q, HashOptions{Candidates: []Candidates{{Percent: 150}}}, "candidates 150%: a percentage of the gallery must be in (0, 100]"},
		{"count zero", "hybrid", q, HashOptions{Candidates: []Candidates{{Count: 0}}}, "candidates 0: the count must be positive"},
		{"no labels for MAP", "hash", unlabelled, HashOptions{Coder: c16}, "needs labelled items"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Evaluate(context.Background(), c.q, db, Options{Plan: c.plan, Hash: c.h})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v; want one containing %q", err, c.want)
			}
		})
	}
	if _, err := Evaluate(context.Background(), q, nil, Options{Plan: "hash"}); err == nil || !strings.Contains(err.Error(), "ITQ needs a set to fit on") {
		t.Fatalf("ITQ without a train set or database: %v", err)
	}
	if _, err := Evaluate(context.Background(), q, db, Options{Plan: "hashish"}); err == nil || !strings.Contains(err.Error(), `unknown plan "hashish"`) {
		t.Fatalf("unknown plan: %v", err)
	}
}

func TestParseCandidates(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Candidates
		err  string
	}{
		{"500", Candidates{Count: 500}, ""},
		{"0.5%", Candidates{Percent: 0.5}, ""},
		{" 1 % ", Candidates{Percent: 1}, ""},
		{"100%", Candidates{Percent: 100}, ""},
		{"0", Candidates{}, `candidates "0": the count must be positive`},
		{"-3", Candidates{}, "must be positive"},
		{"0%", Candidates{}, `candidates "0%": a percentage of the gallery must be a number in (0, 100]`},
		{"101%", Candidates{}, "(0, 100]"},
		{"NaN%", Candidates{}, "(0, 100]"},
		{"1.5", Candidates{}, `candidates "1.5": want a count (500) or a percentage of the gallery (0.5%)`},
		{"lots", Candidates{}, "want a count"},
	} {
		got, err := ParseCandidates(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: err = %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: %+v, %v; want %+v", c.in, got, err, c.want)
		}
		if back, _ := ParseCandidates(got.String()); back != got {
			t.Errorf("%q: String %q does not round-trip", c.in, got.String())
		}
	}
	for _, c := range []struct {
		c       Candidates
		n, want int
	}{
		{Candidates{Percent: 0.1}, 10000, 10}, {Candidates{Percent: 0.5}, 999, 5}, {Candidates{Count: 50}, 20, 20},
		{Candidates{Percent: 0.001}, 100, 1}, {Candidates{Percent: 100}, 7, 7},
	} {
		if got := c.c.Of(c.n); got != c.want {
			t.Errorf("%s of %d = %d, want %d", c.c, c.n, got, c.want)
		}
	}
}

// clustered makes n image/caption pairs around centres shared by every
// set (seeded by 1), label = the centre; each modality has its own offset
// (a "modality gap"), noise from seed.
func clustered(t testing.TB, name string, n, dim, centres int, noise float64, seed uint64) *EmbeddedSet {
	t.Helper()
	cr := rand.New(rand.NewPCG(1, 1))
	vec := func(r *rand.Rand, scale float64) []float64 {
		v := make([]float64, dim)
		for i := range v {
			v[i] = r.NormFloat64() * scale
		}
		return v
	}
	cs := make([][]float64, centres)
	for i := range cs {
		cs[i] = vec(cr, 1)
	}
	gapI, gapT := vec(cr, 0.7), vec(cr, 0.7)
	r := rand.New(rand.NewPCG(seed, 2))
	var imgs, txts [][]float32
	es := &EmbeddedSet{Name: name, HasLabels: true}
	for i := 0; i < n; i++ {
		k := r.IntN(centres)
		a, b := vec(r, noise), vec(r, noise)
		ia, tb := make([]float32, dim), make([]float32, dim)
		for j := range a {
			ia[j] = float32(a[j] + cs[k][j] + gapI[j])
			tb[j] = float32(b[j] + cs[k][j] + gapT[j])
		}
		imgs, txts = append(imgs, vecmath.Normalized(ia)), append(txts, vecmath.Normalized(tb))
		l := []string{fmt.Sprint("c", k)}
		es.ImageMeta = append(es.ImageMeta, Meta{ID: fmt.Sprintf("%s-i%d", name, i), Labels: l, Pair: -1})
		es.TextMeta = append(es.TextMeta, Meta{ID: fmt.Sprintf("%s-t%d", name, i), Labels: l, Pair: i})
	}
	var err error
	if es.Images, err = NewMatrix(imgs); err != nil {
		t.Fatal(err)
	}
	if es.Texts, err = NewMatrix(txts); err != nil {
		t.Fatal(err)
	}
	return es
}

// ITQ fitted on a train set (and SimHash) through Evaluate: MAP of the
// Hamming ranking well above chance and not above exact by more than noise;
// ITQ, which corrects the modality gap, beats SimHash at 32 bits.
func TestHashPlanFitsAndScores(t *testing.T) {
	ctx := context.Background()
	const dim = 32
	train := clustered(t, "train", 600, dim, 12, 0.6, 7)
	q := clustered(t, "q", 60, dim, 12, 0.6, 8)
	db := clustered(t, "db", 400, dim, 12, 0.6, 9)
	itq, err := Evaluate(ctx, q, db, Options{Plan: "hash", Hash: HashOptions{Train: train}})
	if err != nil {
		t.Fatal(err)
	}
	sim, err := Evaluate(ctx, q, db, Options{Plan: "hash", Hash: HashOptions{Method: CoderSimHash, Bits: []int{32}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(itq.Hash.Coders); got != 2 || itq.Hash.Coders[0].Bits != 16 || itq.Hash.Coders[1].Bits != 32 {
		t.Fatalf("coders %+v; want 16 and 32 bits (every supported length up to dim %d)", itq.Hash.Coders, dim)
	}
	if c := itq.Hash.Coders[1]; c.Method != hash.MethodITQ || c.Samples["image"] != 600 || c.Samples["text"] != 600 || !strings.Contains(itq.Hash.FitSet, "train") {
		t.Fatalf("coder %+v fitted on %q", c, itq.Hash.FitSet)
	}
	for _, dir := range []string{TqI, IqT} {
		ex, _ := itq.FindMAP(dir, 0)
		for _, bits := range []int{16, 32} {
			row, ok := findHashMAP(itq, bits, dir, 0)
			if !ok || row.MAP < ex.Random+0.3 || row.MAP > row.Exact+0.02 || row.Exact != ex.MAP {
				t.Errorf("%s %d bits: %+v (exact %.3f, random %.3f)", dir, bits, row, ex.MAP, ex.Random)
			}
		}
		s, _ := findHashMAP(sim, 32, dir, 0)
		i, _ := findHashMAP(itq, 32, dir, 0)
		if s.MAP >= i.MAP {
			t.Errorf("%s: SimHash MAP %.3f, ITQ %.3f; ITQ should win on data with a modality gap", dir, s.MAP, i.MAP)
		}
		t.Logf("%s MAP@ALL exact %.3f random %.3f; ITQ 16 %.3f, 32 %.3f; SimHash 32 %.3f", dir, ex.MAP, ex.Random,
			must(findHashMAP(itq, 16, dir, 0)).MAP, i.MAP, s.MAP)
	}
	if !strings.Contains(sim.Hash.FitSet, "random hyperplanes") || sim.Hash.Coders[0].Method != hash.MethodSimHash {
		t.Fatalf("simhash report %+v", sim.Hash)
	}
	// Without a train set ITQ falls back to the database, and says so.
	fb, err := Evaluate(ctx, q, db, Options{Plan: "hash", Hash: HashOptions{Bits: []int{16}}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(fb.Notes, func(n string) bool { return strings.Contains(n, "fitted on the retrieval database") }) {
		t.Fatalf("notes %q", fb.Notes)
	}
}

func must[T any](v T, ok bool) T {
	if !ok {
		panic("missing")
	}
	return v
}

// The hybrid plan through the embedded index: recall@10 against exact is
// exactly 1 when C is the whole gallery, never falls as C grows (the
// candidate sets are nested), and is below 1 for C = K on clustered data.
func TestHybridRecallAgainstExact(t *testing.T) {
	ctx := context.Background()
	const dim = 32
	train := clustered(t, "train", 400, dim, 8, 0.8, 7)
	q := clustered(t, "q", 30, dim, 8, 0.8, 8)
	db := clustered(t, "db", 300, dim, 8, 0.8, 9)
	cands := []Candidates{{Count: 10}, {Percent: 5}, {Percent: 25}, {Count: 100}, {Percent: 100}}
	rep, err := Evaluate(ctx, q, db, Options{Plan: "hybrid", Hash: HashOptions{Train: train, Bits: []int{16}, Candidates: cands, TempDir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Hash.Hybrid) != 2*len(cands) || rep.Hash.K != 10 || len(rep.MAP) != 0 {
		t.Fatalf("rows %+v, K %d, MAP %+v", rep.Hash.Hybrid, rep.Hash.K, rep.MAP)
	}
	wantC := []int{10, 15, 75, 100, 300}
	for _, dir := range []string{TqI, IqT} {
		var rows []HybridRow
		for _, r := range rep.Hash.Hybrid {
			if r.Direction == dir {
				rows = append(rows, r)
			}
		}
		for i, r := range rows {
			if r.C != wantC[i] || r.Candidates != cands[i].String() || r.Gallery != 300 || r.Queries != 30 || r.Bits != 16 {
				t.Errorf("%s row %d: %+v, want C %d", dir, i, r, wantC[i])
			}
			if r.HybridMicros <= 0 || r.ExactMicros <= 0 || !near(r.WallSpeedup, r.ExactMicros/r.HybridMicros) ||
				r.ExactCPUMicros < 0 || (r.ExactCPUMicros > 0 && !near(r.Speedup, r.ExactCPUMicros/r.HybridCPUMicros)) {
				t.Errorf("%s C=%d: timing %+v", dir, r.C, r)
			}
			if i > 0 && r.Recall < rows[i-1].Recall {
				t.Errorf("%s: recall fell from %.3f (C=%d) to %.3f (C=%d)", dir, rows[i-1].Recall, rows[i-1].C, r.Recall, r.C)
			}
		}
		if last := rows[len(rows)-1]; last.Recall != 1 {
			t.Errorf("%s: recall %.4f with C = N; want exactly 1", dir, last.Recall)
		}
		if rows[0].Recall >= 1 {
			t.Errorf("%s: recall %.4f with C = K: the Hamming top 10 should miss some of the exact top 10", dir, rows[0].Recall)
		}
		t.Logf("%s recall@10 by C: %v", dir, func() (s []string) {
			for _, r := range rows {
				s = append(s, fmt.Sprintf("%d:%.3f", r.C, r.Recall))
			}
			return
		}())
	}
}

// Hamming ranks as the embedded index's hash plan does (distance, then
// primary key, and galleryPostID keys sort as indices), ties included:
// 16-bit codes of clustered vectors tie a lot.
func TestHammingMatchesEmbeddedHashPlan(t *testing.T) {
	ctx := context.Background()
	train := clustered(t, "train", 300, 32, 6, 0.5, 3)
	g := clustered(t, "g", 250, 32, 6, 0.5, 4)
	c, err := hash.Fit(ctx, hash.Samples{Image: rowsOf(train.Images), Text: rowsOf(train.Texts)}, hash.FitOptions{Model: "t@1", Bits: 16})
	if err != nil {
		t.Fatal(err)
	}
	ix, err := loadGallery(ctx, t.TempDir(), g, c)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	r, err := HammingPlan(c, domain.ModalityText, domain.ModalityImage)(g.Images)
	if err != nil {
		t.Fatal(err)
	}
	var s Scratch
	ties := 0
	for qi := range 20 {
		v := g.Texts.Row(qi)
		hits, err := ix.Search(ctx, domain.VectorQuery{Vector: v, Code: c.Code(v, domain.ModalityText), Modality: domain.ModalityImage,
			K: g.Images.Rows, Plan: domain.PlanHash})
		if err != nil {
			t.Fatal(err)
		}
		ours := r.Rank(v, 0, &s)
		if len(hits) != len(ours) {
			t.Fatalf("query %d: %d hits, %d ranked", qi, len(hits), len(ours))
		}
		for p, h := range hits {
			if want := domain.PrimaryKey(galleryPostID(domain.ModalityImage, int(ours[p])), domain.ModalityImage); h.PK != want {
				t.Fatalf("query %d position %d: index %s, Hamming %s", qi, p, h.PK, want)
			}
			if p > 0 && *h.Distance == *hits[p-1].Distance {
				ties++
			}
		}
	}
	if ties < 1000 {
		t.Fatalf("only %d ties: the test would not exercise the tie rule", ties)
	}
}

func TestHashReportTableAndJSON(t *testing.T) {
	ctx := context.Background()
	q, db := handSets(t)
	for _, plan := range []string{"hash", "hybrid"} {
		rep, err := Evaluate(ctx, q, db, Options{Plan: plan, Hash: HashOptions{Coder: identityCoder(t, 16, 0), CoderSource: "hand-made",
			Candidates: []Candidates{{Count: 2}, {Percent: 100}}, TempDir: t.TempDir()}})
		if err != nil {
			t.Fatal(err)
		}
		var tb bytes.Buffer
		if err := rep.WriteTable(&tb); err != nil {
			t.Fatal(err)
		}
		js, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		var back Report
		if err := json.Unmarshal(js, &back); err != nil || back.Hash == nil || back.Hash.FitSet != "hand-made" {
			t.Fatalf("%s: JSON round trip: %v %+v", plan, err, back.Hash)
		}
		want := map[string][]string{
			"hash":   {"Hash MAP (Hamming ranking)", "exact MAP", "binary codes: hand-made", "itq-16-", "0.500"},
			"hybrid": {"Hybrid vs exact (embedded index)", "recall@10", "speedup", "100%"},
		}[plan]
		for _, w := range want {
			if !strings.Contains(tb.String(), w) {
				t.Errorf("%s table lacks %q:\n%s", plan, w, tb.String())
			}
		}
		if plan == "hash" && (len(back.Hash.MAP) != 2 || back.Hash.MAP[0].Exact != 1) {
			t.Errorf("hash JSON rows %+v", back.Hash.MAP)
		}
		if plan == "hybrid" && (len(back.Hash.Hybrid) != 4 || back.Hash.Hybrid[1].Recall != 1) {
			t.Errorf("hybrid JSON rows %+v", back.Hash.Hybrid)
		}
	}
}

func TestEmbeddingsTrainSetRoundTrip(t *testing.T) {
	dir := t.TempDir()
	q := clustered(t, "q", 5, 16, 2, 0.3, 1)
	train := clustered(t, "train", 7, 16, 2, 0.3, 2)
	if err := WriteEmbeddingSets(dir, q, nil, train); err != nil {
		t.Fatal(err)
	}
	q2, db2, tr2, err := LoadEmbeddingSets(dir)
	if err != nil {
		t.Fatal(err)
	}
	if db2 != nil || tr2 == nil || tr2.Images.Rows != 7 || tr2.Texts.Rows != 7 || q2.Images.Rows != 5 || tr2.TextMeta[3].Pair != 3 {
		t.Fatalf("q %v db %v train %+v", q2 != nil, db2 != nil, tr2)
	}
	for i := range 7 {
		for j, x := range tr2.Images.Row(i) {
			if math.Abs(float64(x-train.Images.Row(i)[j])) > 1e-6 {
				t.Fatalf("train image %d differs", i)
			}
		}
	}
	// LoadEmbeddings still returns query and db only.
	if q3, db3, err := LoadEmbeddings(dir); err != nil || q3.Images.Rows != 5 || db3 != nil {
		t.Fatalf("LoadEmbeddings: %v", err)
	}
}
