package eval

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Directions.
const (
	TqI = "TqI" // text query, image gallery
	IqT = "IqT" // image query, text gallery
)

// Options configure Evaluate.
type Options struct {
	// Plan names the ranking plan (PlanByName); "" is exact.
	Plan string
	// Ks are the recall cut-offs; nil means 1, 5, 10.
	Ks []int
	// MAPKs are the MAP cut-offs besides ALL; nil means 100.
	MAPKs []int
	// Seed drives the random-ranking baseline.
	Seed uint64
	// Workers bounds parallelism; 0 means GOMAXPROCS.
	Workers int
	// Hash configures the hash and hybrid plans.
	Hash HashOptions
	// Progress, when set, receives the MAP phase's progress (it ranks every
	// query against the whole gallery, the long part of a run) and warnings.
	Progress io.Writer
}

// WithDefaults returns o with the zero fields set to their defaults.
func (o Options) WithDefaults() Options {
	if o.Plan == "" {
		o.Plan = "exact"
	}
	if o.Ks == nil {
		o.Ks = []int{1, 5, 10}
	}
	if o.MAPKs == nil {
		o.MAPKs = []int{100}
	}
	if o.Workers <= 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	return o
}

// validate checks options WithDefaults returned (the plan: CheckPlan).
func (o Options) validate() error {
	for _, k := range append(slices.Clone(o.Ks), o.MAPKs...) {
		if k <= 0 {
			return fmt.Errorf("cut-off K must be positive, got %d", k)
		}
	}
	return nil
}

// Report is the outcome of Evaluate.
type Report struct {
	Model    string      `json:"model,omitempty"`
	Plan     string      `json:"plan"`
	Dim      int         `json:"dim"`
	Queries  SetSummary  `json:"queries"`
	Database *SetSummary `json:"database,omitempty"`
	Ks       []int       `json:"ks"`
	Recall   []RecallRow `json:"recall"`
	MAP      []MAPRow    `json:"map"`
	// Hash is the hash or hybrid plan's section (nil for exact). With those
	// plans Recall and MAP are the exact plan's, the reference.
	Hash   *HashReport `json:"hash,omitempty"`
	Notes  []string    `json:"notes,omitempty"`
	Timing Timing      `json:"timing"`
}

// SetSummary describes one side of the evaluation.
type SetSummary struct {
	Name   string `json:"name"`
	Images int    `json:"images"`
	Texts  int    `json:"texts"`
}

// RecallRow is R@K for one direction, match rule and scene size.
type RecallRow struct {
	Direction string `json:"direction"` // TqI or IqT
	// Match is "strict" (the paired item), "ceiling" (the best expected
	// strict score given identically described twins) or "semantic" (any
	// item with the query's scene description).
	Match string `json:"match"`
	// Objects restricts the queries to scenes with this many objects; 0 is all.
	Objects int       `json:"objects"`
	Queries int       `json:"queries"`
	R       []float64 `json:"r"` // one per Report.Ks
}

// MAPRow is MAP@K (K = 0: ALL) for one direction, with the random-ranking score.
type MAPRow struct {
	Direction string  `json:"direction"`
	K         int     `json:"k"` // 0 = ALL
	MAP       float64 `json:"map"`
	Random    float64 `json:"random"`
	Queries   int     `json:"queries"`
	Gallery   int     `json:"gallery"`
	// NoRelevant counts queries with no relevant gallery item (AP 0).
	NoRelevant int `json:"no_relevant"`
}

// Timing reports where the time went.
type Timing struct {
	EncodeSeconds float64 `json:"encode_seconds,omitempty"`
	RecallSeconds float64 `json:"recall_seconds"`
	MAPSeconds    float64 `json:"map_seconds,omitempty"`
	// TqIQueriesPerSecond: caption queries ranked against the query images
	// (top max(Ks)) per second, over all workers.
	TqIQueriesPerSecond float64 `json:"tqi_queries_per_second"`
	// HashSeconds: the hash or hybrid plan's section (coder fits included).
	HashSeconds float64 `json:"hash_seconds,omitempty"`
	Workers     int     `json:"workers"`
}

// Evaluate scores q (queries: R@K within q, pictures against their
// captions) and, with labels, MAP of q's queries against db (or against q
// itself when db is nil).
//
// Plans hash and hybrid (opt.Hash) keep the exact plan for R@K and MAP, as
// the reference, and add Report.Hash: for hash, MAP@K and MAP@ALL of the
// Hamming ranking per code length (labels needed); for hybrid, recall@K
// of the embedded index's hybrid plan against its exact plan per C, with
// the time per query of both (the exact MAP is then skipped).
func Evaluate(ctx context.Context, q, db *EmbeddedSet, opt Options) (*Report, error) {
	opt = opt.WithDefaults()
	if err := opt.validate(); err != nil {
		return nil, err
	}
	if err := CheckPlan(opt.Plan); err != nil {
		return nil, err
	}
	plan := PlanFunc(NewExact)
	if err := checkDims(q, db); err != nil {
		return nil, err
	}
	rep := &Report{Plan: opt.Plan, Ks: opt.Ks, Dim: max(q.Images.Dim, q.Texts.Dim),
		Queries: SetSummary{q.Name, q.Images.Rows, q.Texts.Rows}, Timing: Timing{Workers: opt.Workers}}
	if db != nil {
		rep.Database = &SetSummary{db.Name, db.Images.Rows, db.Texts.Rows}
	}
	gallery := db
	if gallery == nil {
		gallery = q
	}
	hashed := opt.Plan == "hash" || opt.Plan == "hybrid"
	if hashed {
		if err := opt.Hash.check(opt.Plan, rep.Dim); err != nil {
			return nil, fmt.Errorf("plan %s: %w", opt.Plan, err)
		}
		if opt.Plan == "hash" && (!q.HasLabels || !gallery.HasLabels) {
			return nil, fmt.Errorf("plan hash scores MAP, which needs labelled items, and %s carries no labels (plan hybrid needs none)", map[bool]string{true: q.Name, false: gallery.Name}[!q.HasLabels])
		}
		rep.Hash = &HashReport{}
	}
	for _, n := range cutoffNotes(opt, q, gallery) {
		rep.Notes = append(rep.Notes, n)
		if opt.Progress != nil {
			fmt.Fprintln(opt.Progress, "warning: "+n)
		}
	}
	start := time.Now()
	if err := recallSection(ctx, q, plan, opt, rep); err != nil {
		return nil, err
	}
	rep.Timing.RecallSeconds = time.Since(start).Seconds()
	if db == nil {
		rep.Notes = append(rep.Notes, "no retrieval database: MAP ranks the query split's own items")
	}
	switch {
	case opt.Plan == "hybrid":
		rep.Notes = append(rep.Notes, "plan hybrid: MAP skipped (plan hash reports MAP of Hamming ranking beside exact)")
	case !q.HasLabels || !gallery.HasLabels:
		rep.Notes = append(rep.Notes, "MAP skipped: the items carry no labels")
	default:
		start = time.Now()
		rows, err := mapRows(ctx, q, gallery, func(string) PlanFunc { return plan }, append(slices.Clone(opt.MAPKs), 0), opt, true)
		if err != nil {
			return nil, err
		}
		rep.MAP = rows
		rep.Timing.MAPSeconds = time.Since(start).Seconds()
	}
	if !q.HasScenes {
		rep.Notes = append(rep.Notes, "semantic R@K and the strict ceiling skipped: the items carry no scene descriptions")
	}
	if hashed {
		start = time.Now()
		coders, err := opt.Hash.coders(ctx, rep.Dim, opt.Seed, db, rep)
		if err != nil {
			return nil, fmt.Errorf("plan %s: %w", opt.Plan, err)
		}
		if opt.Plan == "hash" {
			err = hashSection(ctx, q, gallery, coders, opt, rep)
		} else {
			err = hybridSection(ctx, q, gallery, coders, opt, rep)
		}
		if err != nil {
			return nil, err
		}
		rep.Timing.HashSeconds = time.Since(start).Seconds()
	}
	return rep, nil
}

func checkDims(q, db *EmbeddedSet) error {
	d := 0
	var first string
	for _, s := range []*EmbeddedSet{q, db} {
		if s == nil {
			continue
		}
		for _, m := range []struct {
			what string
			m    Matrix
		}{{"image", s.Images}, {"text", s.Texts}} {
			if m.m.Rows == 0 {
				continue
			}
			if d == 0 {
				d, first = m.m.Dim, s.Name+" "+m.what+" embeddings"
			} else if m.m.Dim != d {
				return fmt.Errorf("mismatched embedding dimensions: %s %s embeddings have %d, %s have %d", s.Name, m.what, m.m.Dim, first, d)
			}
		}
		if len(s.ImageMeta) != s.Images.Rows || len(s.TextMeta) != s.Texts.Rows {
			return fmt.Errorf("%s: %d image and %d text metadata rows for %d and %d vectors", s.Name, len(s.ImageMeta), len(s.TextMeta), s.Images.Rows, s.Texts.Rows)
		}
	}
	return nil
}

// parallel runs f(i, scratch) for i in [0, n) on workers goroutines.
func parallel(ctx context.Context, n, workers int, f func(i int, s *Scratch)) error {
	var wg sync.WaitGroup
	var next int64
	var mu sync.Mutex
	take := func() int {
		mu.Lock()
		defer mu.Unlock()
		i := int(next)
		next += 16
		return i
	}
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var s Scratch
			for {
				lo := take()
				if lo >= n || ctx.Err() != nil {
					return
				}
				for i := lo; i < min(lo+16, n); i++ {
					f(i, &s)
				}
			}
		}()
	}
	wg.Wait()
	return ctx.Err()
}

func recallSection(ctx context.Context, q *EmbeddedSet, plan PlanFunc, opt Options, rep *Report) error {
	maxK := slices.Max(opt.Ks)
	// Scene ids and twin groups.
	sceneID := map[string]int{}
	imgScene := make([]int, len(q.ImageMeta))
	groupImages := map[int]int{}
	groupCaps := map[int]int{}
	ownCaps := make([]int, len(q.ImageMeta))
	for _, t := range q.TextMeta {
		if t.Pair >= 0 {
			ownCaps[t.Pair]++
		}
	}
	for i, m := range q.ImageMeta {
		imgScene[i] = -1
		if q.HasScenes && m.Scene != "" {
			id, ok := sceneID[m.Scene]
			if !ok {
				id = len(sceneID)
				sceneID[m.Scene] = id
			}
			imgScene[i] = id
			groupImages[id]++
			groupCaps[id] += ownCaps[i]
		}
	}
	txtScene := make([]int, len(q.TextMeta))
	for i, m := range q.TextMeta {
		txtScene[i] = -1
		if id, ok := sceneID[m.Scene]; ok && q.HasScenes {
			txtScene[i] = id
		}
	}

	// TqI: caption queries with a paired image.
	var tq []int
	for i, m := range q.TextMeta {
		if m.Pair >= 0 {
			tq = append(tq, i)
		}
	}
	if len(tq) > 0 && q.Images.Rows > 0 {
		r, err := plan(q.Images)
		if err != nil {
			return err
		}
		strict, sem := make([]int, len(tq)), make([]int, len(tq))
		t0 := time.Now()
		err = parallel(ctx, len(tq), opt.Workers, func(j int, s *Scratch) {
			qi := tq[j]
			top := r.Rank(q.Texts.Row(qi), maxK, s)
			pair := int32(q.TextMeta[qi].Pair)
			strict[j] = FirstHit(top, func(g int32) bool { return g == pair })
			sem[j] = -1
			if sc := txtScene[qi]; sc >= 0 {
				sem[j] = FirstHit(top, func(g int32) bool { return imgScene[g] == sc })
			}
		})
		if err != nil {
			return err
		}
		rep.Timing.TqIQueriesPerSecond = float64(len(tq)) / time.Since(t0).Seconds()
		objects := func(j int) int { return q.TextMeta[tq[j]].Objects }
		ceil := func(j int, k int) float64 {
			// A caption whose scene no image has is treated as without twins.
			return CeilingTqI(max(1, groupImages[txtScene[tq[j]]]), k)
		}
		addRecallRows(rep, TqI, opt.Ks, strict, sem, objects, q.HasScenes, ceil)
	}
	// IqT: image queries with at least one caption.
	var iq []int
	for i := range q.ImageMeta {
		if ownCaps[i] > 0 {
			iq = append(iq, i)
		}
	}
	if len(iq) > 0 {
		r, err := plan(q.Texts)
		if err != nil {
			return err
		}
		strict, sem := make([]int, len(iq)), make([]int, len(iq))
		err = parallel(ctx, len(iq), opt.Workers, func(j int, s *Scratch) {
			qi := iq[j]
			top := r.Rank(q.Images.Row(qi), maxK, s)
			strict[j] = FirstHit(top, func(g int32) bool { return q.TextMeta[g].Pair == qi })
			sem[j] = -1
			if sc := imgScene[qi]; sc >= 0 {
				sem[j] = FirstHit(top, func(g int32) bool { return txtScene[g] == sc })
			}
		})
		if err != nil {
			return err
		}
		objects := func(j int) int { return q.ImageMeta[iq[j]].Objects }
		ceil := func(j int, k int) float64 {
			qi := iq[j]
			return CeilingIqT(ownCaps[qi], max(ownCaps[qi], groupCaps[imgScene[qi]]), k)
		}
		addRecallRows(rep, IqT, opt.Ks, strict, sem, objects, q.HasScenes, ceil)
	}
	return nil
}

func addRecallRows(rep *Report, dir string, ks []int, strict, sem []int, objects func(int) int, scenes bool, ceil func(int, int) float64) {
	subsets := []int{0}
	seen := map[int]bool{}
	for j := range strict {
		if o := objects(j); o > 0 && !seen[o] {
			seen[o] = true
			subsets = append(subsets, o)
		}
	}
	sort.Ints(subsets[1:])
	for _, sub := range subsets {
		var sel []int
		for j := range strict {
			if sub == 0 || objects(j) == sub {
				sel = append(sel, j)
			}
		}
		pick := func(xs []int) []int {
			out := make([]int, len(sel))
			for i, j := range sel {
				out[i] = xs[j]
			}
			return out
		}
		rep.Recall = append(rep.Recall, RecallRow{Direction: dir, Match: "strict", Objects: sub, Queries: len(sel), R: RecallAt(pick(strict), ks)})
		if scenes {
			c := make([]float64, len(ks))
			for i, k := range ks {
				var s float64
				for _, j := range sel {
					s += ceil(j, k)
				}
				c[i] = s / float64(len(sel))
			}
			rep.Recall = append(rep.Recall, RecallRow{Direction: dir, Match: "ceiling", Objects: sub, Queries: len(sel), R: c})
			rep.Recall = append(rep.Recall, RecallRow{Direction: dir, Match: "semantic", Objects: sub, Queries: len(sel), R: RecallAt(pick(sem), ks)})
		}
	}
}

// labelBits turns label sets into bitsets over a shared vocabulary.
type labelBits struct {
	words int
	index map[string]int
}

func newLabelBits(sets ...[]Meta) labelBits {
	lb := labelBits{index: map[string]int{}}
	var names []string
	for _, s := range sets {
		for _, m := range s {
			for _, l := range m.Labels {
				if _, ok := lb.index[l]; !ok {
					lb.index[l] = -1
					names = append(names, l)
				}
			}
		}
	}
	sort.Strings(names)
	for i, n := range names {
		lb.index[n] = i
	}
	lb.words = max(1, (len(names)+63)/64)
	return lb
}

func (lb labelBits) of(ms []Meta) []uint64 {
	out := make([]uint64, len(ms)*lb.words)
	for i, m := range ms {
		for _, l := range m.Labels {
			b := lb.index[l]
			out[i*lb.words+b/64] |= 1 << (b % 64)
		}
	}
	return out
}

func shares(a, b []uint64) bool {
	for i := range a {
		if a[i]&b[i] != 0 {
			return true
		}
	}
	return false
}

// cutoffNotes warns of cut-offs at or beyond a gallery's size: R@K is then 1
// whatever the ranking, and MAP@K is MAP@ALL (reported once, as ALL).
func cutoffNotes(opt Options, q, gallery *EmbeddedSet) []string {
	var out []string
	small := min(q.Images.Rows, q.Texts.Rows)
	for _, k := range opt.Ks {
		if small > 0 && k >= small {
			out = append(out, fmt.Sprintf("R@%d: K is at least the gallery size (%d images, %d texts in %s): every query's match is within K, so R@%d is 1 whatever the model",
				k, q.Images.Rows, q.Texts.Rows, q.Name, k))
		}
	}
	gsmall := min(gallery.Images.Rows, gallery.Texts.Rows)
	for _, k := range opt.MAPKs {
		if gsmall > 0 && k >= gsmall {
			out = append(out, fmt.Sprintf("MAP@%d: K is at least the gallery size (%d images, %d texts in %s): MAP@%d is MAP@ALL, reported once as ALL",
				k, gallery.Images.Rows, gallery.Texts.Rows, gallery.Name, k))
		}
	}
	return out
}

// mapProgress prints how far the MAP phase got, every interval.
type mapProgress struct {
	w     io.Writer
	label string
	n     int
	done  atomic.Int64
	t0    time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
}

// mapProgressEvery is how often the MAP phase reports.
const mapProgressEvery = 5 * time.Second

func startMAPProgress(w io.Writer, label string, n, gallery int) *mapProgress {
	p := &mapProgress{w: w, label: label, n: n, t0: time.Now(), stop: make(chan struct{})}
	if w == nil {
		return p
	}
	fmt.Fprintf(w, "MAP %s: ranking %d queries against a gallery of %d\n", label, n, gallery)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(mapProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				d := p.done.Load()
				el := time.Since(p.t0)
				eta := "?"
				if d > 0 {
					eta = (time.Duration(float64(el) / float64(d) * float64(int64(p.n)-d))).Round(time.Second).String()
				}
				fmt.Fprintf(p.w, "MAP %s: %d/%d queries (%.0f%%), %s, ETA %s\n", p.label, d, p.n, 100*float64(d)/float64(max(p.n, 1)), el.Round(time.Second), eta)
			}
		}
	}()
	return p
}

func (p *mapProgress) finish() {
	close(p.stop)
	p.wg.Wait()
	if p.w != nil {
		fmt.Fprintf(p.w, "MAP %s: %d queries in %s\n", p.label, p.done.Load(), time.Since(p.t0).Round(time.Millisecond))
	}
}

// mapRows computes MAP@K for each K of ks (0: ALL) in both directions,
// ranking with planFor(direction); random adds the random-ranking baseline.
func mapRows(ctx context.Context, q, g *EmbeddedSet, planFor func(dir string) PlanFunc, ks []int, opt Options, random bool) ([]MAPRow, error) {
	lb := newLabelBits(q.ImageMeta, q.TextMeta, g.ImageMeta, g.TextMeta)
	w := lb.words
	var out []MAPRow
	for _, d := range []struct {
		dir       string
		qm        []Meta
		qv        Matrix
		gm        []Meta
		gv        Matrix
		qOffsetID uint64
	}{{IqT, q.ImageMeta, q.Images, g.TextMeta, g.Texts, 1}, {TqI, q.TextMeta, q.Texts, g.ImageMeta, g.Images, 2}} {
		if d.qv.Rows == 0 || d.gv.Rows == 0 {
			continue
		}
		qb, gb := lb.of(d.qm), lb.of(d.gm)
		r, err := planFor(d.dir)(d.gv)
		if err != nil {
			return nil, err
		}
		n := d.qv.Rows
		ap := make([][]float64, n)
		rnd := make([][]float64, n)
		none := make([]bool, n)
		prog := startMAPProgress(opt.Progress, d.dir, n, d.gv.Rows)
		err = parallel(ctx, n, opt.Workers, func(i int, s *Scratch) {
			defer prog.done.Add(1)
			qbits := qb[i*w : (i+1)*w]
			rel := make([]bool, d.gv.Rows)
			any := false
			for j := range rel {
				rel[j] = shares(qbits, gb[j*w:(j+1)*w])
				any = any || rel[j]
			}
			none[i] = !any
			top := r.Rank(d.qv.Row(i), 0, s)
			ranked := make([]bool, len(top))
			for p, gi := range top {
				ranked[p] = rel[gi]
			}
			ap[i] = AveragePrecisions(ranked, ks)
			if !random {
				rnd[i] = make([]float64, len(ks))
				return
			}
			// Random ranking: a seeded shuffle of the gallery.
			rng := rand.New(rand.NewPCG(opt.Seed, d.qOffsetID<<40|uint64(i)))
			rng.Shuffle(len(rel), func(a, b int) { rel[a], rel[b] = rel[b], rel[a] })
			rnd[i] = AveragePrecisions(rel, ks)
		})
		prog.finish()
		if err != nil {
			return nil, err
		}
		noRel := 0
		for _, x := range none {
			if x {
				noRel++
			}
		}
		for j, k := range ks {
			var s, sr float64
			for i := range n {
				s += ap[i][j]
				sr += rnd[i][j]
			}
			if k >= d.gv.Rows {
				k = 0 // K beyond the gallery is ALL
			}
			row := MAPRow{Direction: d.dir, K: k, MAP: s / float64(n), Random: sr / float64(n), Queries: n, Gallery: d.gv.Rows, NoRelevant: noRel}
			if k == 0 && j < len(ks)-1 {
				continue // reported as ALL below
			}
			out = append(out, row)
		}
	}
	return out, nil
}
