package eval

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/xmodal/xmodal/internal/vecmath"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 || math.IsNaN(a) && math.IsNaN(b) }

func TestAveragePrecisionHandComputed(t *testing.T) {
	T, F := true, false
	for _, c := range []struct {
		name string
		rel  []bool
		k    int
		want float64
	}{
		// hits at ranks 1 and 3: (1/1 + 2/3) / 2
		{"all", []bool{T, F, T, F, F}, 0, (1 + 2.0/3) / 2},
		{"top2 counts one relevant", []bool{T, F, T, F, F}, 2, 1},
		{"K beyond the gallery is ALL", []bool{T, F, T, F, F}, 10, (1 + 2.0/3) / 2},
		{"K equal to the gallery", []bool{T, F, T, F, F}, 5, (1 + 2.0/3) / 2},
		{"nothing relevant in the top K", []bool{F, T}, 1, 0},
		{"no relevant item at all", []bool{F, F, F}, 0, 0},
		{"late hits", []bool{F, T, T}, 0, (1.0/2 + 2.0/3) / 2},
		{"empty gallery", nil, 0, 0},
	} {
		if got := AveragePrecision(c.rel, c.k); !near(got, c.want) {
			t.Errorf("%s: AP@%d = %v, want %v", c.name, c.k, got, c.want)
		}
	}
}

func TestRecallAtHandComputed(t *testing.T) {
	got := RecallAt([]int{0, 3, -1, 9, 1}, []int{1, 5, 10})
	if want := []float64{0.2, 0.6, 0.8}; !slices.EqualFunc(got, want, near) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if got := RecallAt(nil, []int{1}); !math.IsNaN(got[0]) {
		t.Fatalf("no queries: %v", got)
	}
}

func TestCeilings(t *testing.T) {
	for _, c := range []struct {
		got, want float64
	}{
		{CeilingTqI(1, 1), 1}, {CeilingTqI(2, 1), 0.5}, {CeilingTqI(3, 2), 2.0 / 3}, {CeilingTqI(3, 10), 1},
		// own 1 of a pool of 3: 1 - C(2,1)/C(3,1) = 1/3; K=2: 1 - C(2,2)/C(3,2) = 2/3
		{CeilingIqT(1, 3, 1), 1.0 / 3}, {CeilingIqT(1, 3, 2), 2.0 / 3}, {CeilingIqT(1, 3, 3), 1},
		// 5 own of 10 (one twin): K=1: 1/2; K=5: 1 - C(5,5)/C(10,5) = 1 - 1/252
		{CeilingIqT(5, 10, 1), 0.5}, {CeilingIqT(5, 10, 5), 1 - 1.0/252}, {CeilingIqT(5, 10, 6), 1},
		{CeilingIqT(5, 5, 1), 1},
	} {
		if !near(c.got, c.want) {
			t.Errorf("got %v, want %v", c.got, c.want)
		}
	}
}

func mat(t *testing.T, rows ...[]float32) Matrix {
	t.Helper()
	m, err := NewMatrix(rows)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestExactRankTiesAndK(t *testing.T) {
	g := mat(t, []float32{1, 0}, []float32{0, 1}, []float32{1, 0}, []float32{-1, 0})
	r, _ := NewExact(g)
	var s Scratch
	q := []float32{1, 0}
	for _, c := range []struct {
		k    int
		want []int32
	}{{1, []int32{0}}, {2, []int32{0, 2}}, {0, []int32{0, 2, 1, 3}}, {4, []int32{0, 2, 1, 3}}, {99, []int32{0, 2, 1, 3}}} {
		if got := r.Rank(q, c.k, &s); !slices.Equal(got, c.want) {
			t.Errorf("k=%d: %v, want %v", c.k, got, c.want)
		}
	}
}

// The heap path and the sort path of topK agree, ties included.
func TestTopKPathsAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	scores := make([]float32, 2000)
	for i := range scores {
		scores[i] = float32(rng.IntN(50)) // many ties
	}
	var s1, s2 Scratch
	full := slices.Clone(topK(scores, 0, &s1))
	for _, k := range []int{1, 5, 10, 100, 250} {
		got := topK(scores, k, &s2)
		if !slices.Equal(got, full[:k]) {
			t.Fatalf("k=%d: heap %v != sort %v", k, got[:min(8, k)], full[:min(8, k)])
		}
	}
}

// tinySet is the hand-computed fixture of docs/eval.md's tests: three
// images (two of them identically described twins with identical
// vectors, a tie) and four captions.
func tinySet(t *testing.T) *EmbeddedSet {
	return &EmbeddedSet{
		Name:   "tiny",
		Images: mat(t, []float32{1, 0}, []float32{0, 1}, []float32{1, 0}),
		Texts:  mat(t, []float32{1, 0}, []float32{0.6, 0.8}, []float32{0.8, 0.6}, []float32{0, 1}),
		ImageMeta: []Meta{
			{ID: "I0", Scene: "A", Labels: []string{"red"}, Objects: 1, Pair: -1},
			{ID: "I1", Scene: "B", Labels: []string{"blue"}, Objects: 2, Pair: -1},
			{ID: "I2", Scene: "A", Labels: []string{"red", "star"}, Objects: 1, Pair: -1},
		},
		TextMeta: []Meta{
			{ID: "T0", Scene: "A", Labels: []string{"red"}, Objects: 1, Pair: 0},
			{ID: "T1", Scene: "B", Labels: []string{"blue"}, Objects: 2, Pair: 1},
			{ID: "T2", Scene: "A", Labels: []string{"red", "star"}, Objects: 1, Pair: 2},
			{ID: "T3", Scene: "A", Labels: []string{"red"}, Objects: 1, Pair: 0},
		},
		HasScenes: true, HasLabels: true,
	}
}

func TestEvaluateHandComputed(t *testing.T) {
	rep, err := Evaluate(context.Background(), tinySet(t), nil, Options{Ks: []int{1, 2, 5}, MAPKs: []int{2, 10}})
	if err != nil {
		t.Fatal(err)
	}
	// Rankings (ties by lower index):
	//   TqI  T0: I0 I2 I1   T1: I1 I0 I2   T2: I0 I2 I1   T3: I1 I0 I2
	//   IqT  I0: T0 T2 T1 T3   I1: T3 T1 T2 T0   I2: T0 T2 T1 T3
	want := []struct {
		dir, match string
		objects    int
		r          []float64
	}{
		{TqI, "strict", 0, []float64{2.0 / 4, 1, 1}},
		{TqI, "ceiling", 0, []float64{(0.5 + 1 + 0.5 + 0.5) / 4, 1, 1}},
		{TqI, "semantic", 0, []float64{3.0 / 4, 1, 1}},
		{TqI, "strict", 1, []float64{1.0 / 3, 1, 1}},
		{TqI, "strict", 2, []float64{1, 1, 1}},
		{IqT, "strict", 0, []float64{1.0 / 3, 1, 1}},
		{IqT, "ceiling", 0, []float64{(2.0/3 + 1 + 1.0/3) / 3, (1 + 1 + 2.0/3) / 3, 1}},
		{IqT, "semantic", 0, []float64{2.0 / 3, 1, 1}},
		{IqT, "semantic", 1, []float64{1, 1, 1}},
		{IqT, "semantic", 2, []float64{0, 1, 1}},
	}
	for _, w := range want {
		row, ok := rep.Find(w.dir, w.match, w.objects)
		if !ok {
			t.Errorf("no row %s %s %d", w.dir, w.match, w.objects)
			continue
		}
		if !slices.EqualFunc(row.R, w.r, near) {
			t.Errorf("%s %s objects=%d: R@1,2,5 = %v, want %v", w.dir, w.match, w.objects, row.R, w.r)
		}
	}
	// MAP (gallery = the set itself). IqT: I0 [T T F T] -> 11/12, I1 [F T F F] -> 1/2,
	// I2 [T T F T] -> 11/12. TqI: T0 [T T F] 1, T1 [T F F] 1, T2 [T T F] 1, T3 [F T T] 7/12.
	for _, w := range []struct {
		dir  string
		k    int
		want float64
	}{
		{IqT, 2, (1 + 0.5 + 1) / 3}, {IqT, 0, (11.0/12 + 0.5 + 11.0/12) / 3},
		{TqI, 2, (1 + 1 + 1 + 0.5) / 4}, {TqI, 0, (1 + 1 + 1 + 7.0/12) / 4},
	} {
		m, ok := rep.FindMAP(w.dir, w.k)
		if !ok || !near(m.MAP, w.want) {
			t.Errorf("MAP %s K=%d: %+v, want %v", w.dir, w.k, m, w.want)
		}
	}
	// K=10 exceeds both galleries: reported once, as ALL.
	if len(rep.MAP) != 4 {
		t.Errorf("MAP rows %+v; want K=2 and ALL per direction", rep.MAP)
	}
}

func TestMAPQueryWithoutRelevantItems(t *testing.T) {
	s := tinySet(t)
	// A fourth image whose labels match nothing, with no caption.
	s.Images = mat(t, []float32{1, 0}, []float32{0, 1}, []float32{1, 0}, []float32{0.5, 0.5})
	s.ImageMeta = append(s.ImageMeta, Meta{ID: "I3", Scene: "C", Labels: []string{}, Objects: 3, Pair: -1})
	rep, err := Evaluate(context.Background(), s, nil, Options{Ks: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := rep.FindMAP(IqT, 0)
	if want := (11.0/12 + 0.5 + 11.0/12 + 0) / 4; !near(m.MAP, want) || m.NoRelevant != 1 || m.Queries != 4 {
		t.Fatalf("IqT MAP@ALL %+v, want %v with one query without relevant items", m, want)
	}
	// The image without captions is not an IqT recall query.
	if row, _ := rep.Find(IqT, "strict", 0); row.Queries != 3 {
		t.Fatalf("IqT recall queries %d, want 3", row.Queries)
	}
}

// The random baseline is close to the fraction of relevant items for
// MAP@ALL on a large gallery.
func TestRandomBaseline(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	n := 2000
	var img, txt [][]float32
	var im, tm []Meta
	for i := range n {
		v := []float32{float32(rng.NormFloat64()), float32(rng.NormFloat64())}
		img = append(img, vecmath.Normalized(v))
		txt = append(txt, vecmath.Normalized(v))
		l := []string{"a"}
		if i%4 != 0 { // 25% relevant to "a"
			l = []string{"b"}
		}
		im = append(im, Meta{ID: "i", Labels: l, Pair: -1})
		tm = append(tm, Meta{ID: "t", Labels: l, Pair: i})
	}
	s := &EmbeddedSet{Name: "rnd", Images: mat(t, img...), Texts: mat(t, txt...), ImageMeta: im, TextMeta: tm, HasLabels: true}
	rep, err := Evaluate(context.Background(), s, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := rep.FindMAP(TqI, 0)
	// Expected: a quarter of queries see 25% relevant, the rest 75%.
	if want := 0.25*0.25 + 0.75*0.75; math.Abs(m.Random-want) > 0.01 {
		t.Fatalf("random MAP@ALL %.4f, want about %.4f", m.Random, want)
	}
}

func TestPlans(t *testing.T) {
	if _, err := PlanByName("exact"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"hash", "hybrid", "bogus"} {
		if _, err := PlanByName(p); err == nil {
			t.Errorf("plan %s: no error", p)
		}
	}
}

func TestMismatchedDims(t *testing.T) {
	s := tinySet(t)
	s.Texts = mat(t, []float32{1, 0, 0}, []float32{0, 1, 0}, []float32{1, 0, 0}, []float32{1, 0, 0})
	_, err := Evaluate(context.Background(), s, nil, Options{})
	if err == nil || !strings.Contains(err.Error(), "mismatched embedding dimensions") {
		t.Fatalf("err = %v", err)
	}
}

// Items without a scene description (partially annotated embeddings) are
// never semantic hits, and the report stays valid JSON.
func TestUnknownScenes(t *testing.T) {
	s := tinySet(t)
	s.TextMeta[1].Scene = "Z" // a scene no image has
	rep, err := Evaluate(context.Background(), s, nil, Options{Ks: []int{1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	row, _ := rep.Find(TqI, "semantic", 0)
	if want := []float64{2.0 / 4, 3.0 / 4}; !slices.EqualFunc(row.R, want, near) {
		t.Fatalf("semantic %v, want %v", row.R, want)
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Fatal(err)
	}
}
