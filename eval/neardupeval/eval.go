// Package neardupeval scores near-duplicate methods on re-posts: the
// project's region method (encoders/neardup) beside plain PDQ, on real
// photos and generated photo-like ones, with re-posts made by
// eval/reposts. It backs `xmodal eval neardup`.
package neardupeval

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
)

// Options configure a run.
type Options struct {
	// Photos are image files of real originals (all indexed; each one's
	// re-posts are queried).
	Photos []string
	// Extra are real re-posts made elsewhere, each with the photo (a path
	// in Photos) it is a copy of: e.g. ThreatExchange's edits of its
	// bridge photo. Their kind in the report is their key.
	Extra map[string][]ExtraQuery
	// Generated photo-like originals indexed; the first QueryGenerated of
	// them have their re-posts queried.
	Generated, QueryGenerated int
	// Distractors: generated photos of the same families, not indexed,
	// queried after a random edit (or none).
	Distractors int
	// DistractorPhotos are real photos that are not indexed, queried as
	// distractors in the same way.
	DistractorPhotos []string
	// W, H: size of generated photos (default 640x480).
	W, H int
	Seed uint64
	// Workers hash and query in parallel (default 1).
	Workers int
	// LogWindowMatches prints every window match of the region method
	// (whether it was the query's original, agreeing and visible windows,
	// distance) to the progress writer, for tuning the verification.
	LogWindowMatches bool
	// LogMisses prints every re-post query whose best match is not its
	// original (the original's name, and what came first instead), for
	// finding which originals and edits the method loses.
	LogMisses bool
	// SaveMisses, when set, is a directory (created when missing) where each missed re-post query
	// is written as PNG beside its original (miss-<query>-query.png,
	// miss-<query>-original.png), to look at what the method lost.
	SaveMisses string
	// SeedWindows is the region index's neardup.IndexOptions.SeedWindows
	// (0: every query window seeds).
	SeedWindows int
	// ExactLookup is the region index's neardup.IndexOptions.ExactLookup.
	ExactLookup bool
	// WholeBand is the region index's neardup.IndexOptions.WholeBand (0:
	// the default; negative: off).
	WholeBand int
	// Kinds: the edit lists (default: every single edit and every combo).
	Kinds [][]reposts.Kind
	// Searchers builds the index's searchers (default: MIHSearcher over
	// internal/hamming, tables built once the originals are indexed).
	Searchers func() (whole, windows neardup.RangeSearcher)
	Progress  io.Writer
}

// ExtraQuery is a real re-post file and its original.
type ExtraQuery struct{ Path, Original string }

// Report is the result of a run.
type Report struct {
	Originals   map[string]int `json:"originals"`   // source -> indexed images
	Queries     int            `json:"queries"`     // re-post queries (both methods)
	Distractors int            `json:"distractors"` // distractor queries
	Methods     []*Method      `json:"methods"`
	// IndexRatio is neardup's index-time hashing time over plain PDQ's on
	// the same decoded pixels: the ratio of total times and the median of
	// per-image ratios.
	IndexRatioTotal, IndexRatioMedian float64
	Kinds                             []string `json:"kinds"`
	Elapsed                           time.Duration
	// Featureless names the real originals whose PDQ quality is under
	// domain.LowPDQQuality (flat skies, an all-black picture: PDQ's own
	// rule is not to match such hashes); recall is also reported over the
	// other real originals (source srcRealFeatured).
	Featureless []string `json:"featureless"`
}

// Method is one method's scores.
type Method struct {
	Name string `json:"name"`
	// Recall maps source (real, generated, and each Extra key) and edit
	// name to the counts.
	Recall map[string]map[string]*Count `json:"recall"`
	// FalsePositives maps source to the queries that returned a match of
	// another image (re-posts: any match but their original; distractors:
	// any match).
	FalsePositives map[string]*Count `json:"false_positives"`
	// BytesPerImage is the mean signature size.
	BytesPerImage float64 `json:"bytes_per_image"`
	// IndexMS and QueryMS: mean milliseconds per image to hash at index
	// time, and per query to hash and search.
	IndexMS, QueryMS, QueryP99MS, SearchP99MS float64
	indexTimes, queryTimes, searchTimes       []time.Duration
	mu                                        sync.Mutex
}

// Count is n hits out of total.
type Count struct {
	Hits  int `json:"hits"`
	Total int `json:"total"`
}

// Rate is Hits/Total (0 when empty).
func (c *Count) Rate() float64 {
	if c == nil || c.Total == 0 {
		return 0
	}
	return float64(c.Hits) / float64(c.Total)
}

func (m *Method) add(src, kind string, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Recall[src] == nil {
		m.Recall[src] = map[string]*Count{}
	}
	c := m.Recall[src][kind]
	if c == nil {
		c = &Count{}
		m.Recall[src][kind] = c
	}
	c.Total++
	if ok {
		c.Hits++
	}
}

func (m *Method) fp(src string, bad bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.FalsePositives[src]
	if c == nil {
		c = &Count{}
		m.FalsePositives[src] = c
	}
	c.Total++
	if bad {
		c.Hits++
	}
}

// Generated photos' seeds: originals from seed, distractors from another
// stream, so no distractor is an original.
func genSeed(seed uint64, i int, distractor bool) uint64 {
	s := seed*0x9e3779b97f4a7c15 + uint64(i)*2 + 1
	if distractor {
		s ^= 0x5bd1e9955bd1e995
	}
	return s
}

const (
	srcReal = "real"
	srcGen  = "generated"
	srcDist = "distractor"
	// srcRealDist: distractor photos given as files.
	srcRealDist = "real distractor"
	// srcRealFeatured: the real originals whose PDQ quality is at least
	// domain.LowPDQQuality (their re-posts counted a second time).
	srcRealFeatured = "real (PDQ quality >= 50)"
)

type original struct {
	id   int64
	src  string
	path string // real
	gen  int    // generated index
	name string
}

func (o original) image(opt *Options) (image.Image, error) {
	if o.src == srcReal {
		return loadImage(o.path)
	}
	return reposts.Photo(o.gen%len(reposts.Families), genSeed(opt.Seed, o.gen, false), opt.W, opt.H), nil
}

// saveMiss writes a missed query and its original as PNG files.
func saveMiss(dir string, i int, query image.Image, o original, opt *Options) error {
	orig, err := o.image(opt)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		img  image.Image
	}{{"query", query}, {"original", orig}} {
		var buf bytes.Buffer
		if err := png.Encode(&buf, f.img); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("miss-%d-%s.png", i, f.name)), buf.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func loadImage(path string) (image.Image, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	img, _, err := pdq.Decode(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return img, nil
}

// Run builds both indexes and scores every query.
func Run(ctx context.Context, opt Options) (*Report, error) {
	start := time.Now()
	if opt.W == 0 {
		opt.W, opt.H = 640, 480
	}
	if opt.Workers < 1 {
		opt.Workers = 1
	}
	if opt.SaveMisses != "" {
		if err := os.MkdirAll(opt.SaveMisses, 0o755); err != nil {
			return nil, fmt.Errorf("neardupeval: save misses: %w", err)
		}
	}
	if opt.Kinds == nil {
		for _, k := range reposts.Singles {
			opt.Kinds = append(opt.Kinds, []reposts.Kind{k})
		}
		opt.Kinds = append(opt.Kinds, reposts.Combos...)
	}
	if opt.Searchers == nil {
		opt.Searchers = func() (neardup.RangeSearcher, neardup.RangeSearcher) {
			return neardup.NewMIHSearcher(true), neardup.NewMIHSearcher(true)
		}
	}
	progress := opt.Progress
	if progress == nil {
		progress = io.Discard
	}
	var origs []original
	byPath := map[string]int64{}
	for _, p := range opt.Photos {
		id := int64(len(origs))
		byPath[p] = id
		origs = append(origs, original{id: id, src: srcReal, path: p, name: filepath.Base(p)})
	}
	for i := range opt.Generated {
		origs = append(origs, original{id: int64(len(origs)), src: srcGen, gen: i, name: fmt.Sprintf("gen-%d", i)})
	}
	rep := &Report{Originals: map[string]int{}}
	for _, k := range opt.Kinds {
		rep.Kinds = append(rep.Kinds, reposts.Name(k))
	}
	nd := &Method{Name: "neardup", Recall: map[string]map[string]*Count{}, FalsePositives: map[string]*Count{}}
	pl := &Method{Name: "pdq", Recall: map[string]map[string]*Count{}, FalsePositives: map[string]*Count{}}
	rep.Methods = []*Method{nd, pl}

	// Index.
	ws, ww := opt.Searchers()
	ndIx := neardup.NewIndexWithOptions(ws, ww, neardup.IndexOptions{SeedWindows: opt.SeedWindows, ExactLookup: opt.ExactLookup, WholeBand: opt.WholeBand})
	pdqIx := neardup.NewIndexWith(opt.Searchers())
	var bytes int64
	var ratios []float64
	var mu sync.Mutex
	quality := make([]int, len(origs)) // by original id (positions in origs)
	err := parallel(ctx, opt.Workers, len(origs), func(w, i int) error {
		o := origs[i]
		img, err := o.image(&opt)
		if err != nil {
			return err
		}
		hs := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
		ph := pdq.Hasher{MaxSide: -1}
		// Interleave the two, alternating which goes first.
		var tN, tP time.Duration
		var sig []neardup.RegionHash
		var ph0 pdq.Hash
		var pq int
		for k := range 2 {
			if (i+k)%2 == 0 {
				t0 := time.Now()
				sig, err = hs.Signatures(img)
				tN = time.Since(t0)
			} else {
				t0 := time.Now()
				ph0, pq = ph.Hash(img)
				tP = time.Since(t0)
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %w", o.name, err)
		}
		b := img.Bounds()
		ndIx.Add(o.id, b.Dx(), b.Dy(), sig)
		pdqIx.Add(o.id, b.Dx(), b.Dy(), []neardup.RegionHash{{Hash: ph0, Kind: neardup.Whole, Quality: pq}})
		mu.Lock()
		quality[o.id] = pq
		if o.src == srcReal && pq < domain.LowPDQQuality {
			rep.Featureless = append(rep.Featureless, fmt.Sprintf("%s (quality %d)", o.name, pq))
		}
		rep.Originals[o.src]++
		bytes += int64(neardup.EncodedSize(sig))
		nd.indexTimes = append(nd.indexTimes, tN)
		pl.indexTimes = append(pl.indexTimes, tP)
		if tP > 0 {
			ratios = append(ratios, float64(tN)/float64(tP))
		}
		mu.Unlock()
		if i%1000 == 999 {
			fmt.Fprintf(progress, "indexed %d/%d\n", i+1, len(origs))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	ndIx.Finish()
	pdqIx.Finish()
	nd.BytesPerImage = float64(bytes) / float64(max(len(origs), 1))
	pl.BytesPerImage = pdq.HexLen/2 + 1
	rep.IndexRatioTotal = float64(sum(nd.indexTimes)) / float64(max(sum(pl.indexTimes), 1))
	rep.IndexRatioMedian = median(ratios)

	// Queries: re-posts of real and the first generated originals, extra
	// real re-posts, distractors.
	type job struct {
		src, kind string
		orig      int64 // -1 for distractors
		make      func() (image.Image, error)
	}
	var jobs []job
	for _, o := range origs {
		if o.src == srcGen && o.gen >= opt.QueryGenerated {
			continue
		}
		for ki, k := range opt.Kinds {
			o, k, ki := o, k, ki
			jobs = append(jobs, job{src: o.src, kind: reposts.Name(k), orig: o.id, make: func() (image.Image, error) {
				img, err := o.image(&opt)
				if err != nil {
					return nil, err
				}
				r := rand.New(rand.NewPCG(opt.Seed^uint64(o.id)*0x100000001b3, uint64(ki)+7))
				rp, err := reposts.Apply(img, k, r)
				if err != nil {
					return nil, err
				}
				return rp.Image, nil
			}})
		}
	}
	keys := make([]string, 0, len(opt.Extra))
	for k := range opt.Extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		for _, e := range opt.Extra[key] {
			id, ok := byPath[e.Original]
			if !ok {
				return nil, fmt.Errorf("extra query %s: original %s is not among the photos", e.Path, e.Original)
			}
			e := e
			jobs = append(jobs, job{src: key, kind: strings.TrimSuffix(filepath.Base(e.Path), filepath.Ext(e.Path)), orig: id,
				make: func() (image.Image, error) { return loadImage(e.Path) }})
		}
	}
	for i := range opt.Distractors + len(opt.DistractorPhotos) {
		i := i
		src := srcDist
		if i >= opt.Distractors {
			src = srcRealDist
		}
		jobs = append(jobs, job{src: src, kind: "distractor", orig: -1, make: func() (image.Image, error) {
			var img image.Image
			if i < opt.Distractors {
				img = reposts.Photo(i%len(reposts.Families), genSeed(opt.Seed, i, true), opt.W, opt.H)
			} else {
				var err error
				if img, err = loadImage(opt.DistractorPhotos[i-opt.Distractors]); err != nil {
					return nil, err
				}
			}
			r := rand.New(rand.NewPCG(opt.Seed, uint64(i)+1<<40))
			// A third unedited, the rest one of the edit lists.
			n := r.IntN(len(opt.Kinds) + len(opt.Kinds)/2)
			if n >= len(opt.Kinds) {
				return img, nil
			}
			rp, err := reposts.Apply(img, opt.Kinds[n], r)
			if err != nil {
				return nil, err
			}
			return rp.Image, nil
		}})
	}
	fmt.Fprintf(progress, "indexed %d images; %d queries\n", len(origs), len(jobs))
	var done int
	err = parallel(ctx, opt.Workers, len(jobs), func(w, i int) error {
		j := jobs[i]
		img, err := j.make()
		if err != nil {
			return err
		}
		hs := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
		ph := pdq.Hasher{MaxSide: -1}
		// neardup.
		t0 := time.Now()
		q, err := hs.Query(img)
		var ms []neardup.Match
		switch {
		case errors.Is(err, neardup.ErrTooSmall):
			// A refused query finds nothing (e.g. a 25 % downscale of a
			// tiny original).
		case err != nil:
			return fmt.Errorf("query %s/%s: %w", j.src, j.kind, err)
		}
		t1 := time.Now()
		if q != nil {
			ms = ndIx.Search(q, neardup.SearchOptions{})
		}
		tN, sN := time.Since(t0), time.Since(t1)
		// plain PDQ: the eight dihedral hashes, the nearest within 31.
		t0 = time.Now()
		vs, qq := ph.Dihedral(img)
		pq := &neardup.Query{W: img.Bounds().Dx(), H: img.Bounds().Dy(), Rects: []image.Rectangle{img.Bounds()}}
		for d, v := range vs {
			pq.Hashes = append(pq.Hashes, neardup.QueryHash{Hash: v, Kind: neardup.Whole, Transform: pdq.Dihedral(d), Quality: qq})
		}
		t1 = time.Now()
		pms := pdqIx.Search(pq, neardup.SearchOptions{MinQuality: -1})
		tP, sP := time.Since(t0), time.Since(t1)
		for _, mm := range []struct {
			m  *Method
			ms []neardup.Match
			t  time.Duration
			s  time.Duration
		}{{nd, ms, tN, sN}, {pl, pms, tP, sP}} {
			if j.orig >= 0 {
				found := len(mm.ms) > 0 && mm.ms[0].ID == j.orig
				mm.m.add(j.src, j.kind, found)
				if j.src == srcReal && quality[j.orig] >= domain.LowPDQQuality {
					mm.m.add(srcRealFeatured, j.kind, found)
				}
				if opt.LogMisses && mm.m == nd && !found {
					first := "nothing"
					if len(mm.ms) > 0 {
						first = fmt.Sprintf("%s (%s, distance %d)", origs[mm.ms[0].ID].name, mm.ms[0].Kind, mm.ms[0].Distance)
					}
					mu.Lock()
					fmt.Fprintf(progress, "miss: query %d (%s/%s) of %s found %s\n", i, j.src, j.kind, origs[j.orig].name, first)
					mu.Unlock()
				}
				if opt.SaveMisses != "" && mm.m == nd && !found {
					if err := saveMiss(opt.SaveMisses, i, img, origs[j.orig], &opt); err != nil {
						return err
					}
				}
			}
			if opt.LogWindowMatches && mm.m == nd {
				for _, x := range mm.ms {
					if x.Kind == neardup.Window {
						mu.Lock()
						fmt.Fprintf(progress, "window match: true=%v query=%s/%s windows=%d visible=%d distance=%d pixels=%.3f detail=%.3f\n", x.ID == j.orig, j.src, j.kind, x.Windows, x.Visible, x.Distance, x.Pixels, x.PixelDetail)
						mu.Unlock()
					}
				}
			}
			bad := false
			for _, x := range mm.ms {
				if x.ID != j.orig {
					bad = true
					if mm.m == nd {
						// Named, so that a false positive can be looked at.
						mu.Lock()
						fmt.Fprintf(progress, "false positive: query %d (%s/%s) matched %s (%s, distance %d, %d of %d visible windows, pixels %.2f/%.2f, query rect %v, shows %.2f,%.2f-%.2f,%.2f, %s)\n",
							i, j.src, j.kind, origs[x.ID].name, x.Kind, x.Distance, x.Windows, x.Visible, x.Pixels, x.PixelDetail, x.QueryRect,
							x.Shown.X0, x.Shown.Y0, x.Shown.X1, x.Shown.Y1, x.Transform)
						mu.Unlock()
					}
				}
			}
			mm.m.fp(j.src, bad)
			mm.m.mu.Lock()
			mm.m.queryTimes = append(mm.m.queryTimes, mm.t)
			mm.m.searchTimes = append(mm.m.searchTimes, mm.s)
			mm.m.mu.Unlock()
		}
		mu.Lock()
		done++
		if done%2000 == 0 {
			fmt.Fprintf(progress, "queried %d/%d\n", done, len(jobs))
		}
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, j := range jobs {
		if j.orig >= 0 {
			rep.Queries++
		} else {
			rep.Distractors++
		}
	}
	for _, m := range rep.Methods {
		m.IndexMS = msMean(m.indexTimes)
		m.QueryMS = msMean(m.queryTimes)
		m.QueryP99MS = msQuantile(m.queryTimes, 0.99)
		m.SearchP99MS = msQuantile(m.searchTimes, 0.99)
	}
	rep.Elapsed = time.Since(start)
	return rep, nil
}

func parallel(ctx context.Context, workers, n int, fn func(w, i int) error) error {
	var (
		wg    sync.WaitGroup
		next  int
		mu    sync.Mutex
		first error
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if first != nil || next >= n || ctx.Err() != nil {
					if first == nil {
						first = ctx.Err()
					}
					mu.Unlock()
					return
				}
				i := next
				next++
				mu.Unlock()
				if err := fn(w, i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

func sum(ds []time.Duration) time.Duration {
	var s time.Duration
	for _, d := range ds {
		s += d
	}
	return s
}

func msMean(ds []time.Duration) float64 {
	if len(ds) == 0 {
		return 0
	}
	return float64(sum(ds)) / float64(len(ds)) / 1e6
}

func msQuantile(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[min(int(q*float64(len(s))), len(s)-1)]) / 1e6
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
