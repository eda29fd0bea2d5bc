//go:build bench

package neardup

import (
	"fmt"
	"image"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/xmodal/xmodal/eval/reposts"
)

// TestPartsAtScale measures Parts searches (PartsQuery, SearchOptions.Parts)
// at the size XMODAL_ND_PARTS gives (generated pictures; the committed
// photos too): the crops of every picture are indexed (90 % and 75 %, a
// 75 % crop at JPEG quality 30, a mirrored 75 % crop, a grey 90 % crop),
// each picture is queried for its parts, and as many pictures that were
// never indexed (of the same families) are queried as distractors: any
// match of theirs is a false positive, as is a picture's match of another
// picture's crop. It prints the crops found per kind, the false
// positives and the query's hashing and search times. Run:
// XMODAL_ND_PARTS=2000 go test -tags bench -run TestPartsAtScale -v ./encoders/neardup
func TestPartsAtScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("XMODAL_ND_PARTS"))
	if n <= 0 {
		t.Skip("set XMODAL_ND_PARTS to the number of generated pictures")
	}
	photos := committedPhotos(t)
	real := len(photos)
	// Pictures are drawn when needed: 10,000 of them held would take 12 GB.
	pic := func(i int) image.Image {
		if i < real {
			return photos[i]
		}
		return evalPic(i - real)
	}
	total := real + n
	kinds := [][]reposts.Kind{{reposts.Crop90}, {reposts.Crop75}, {reposts.Crop75, reposts.JPEG30}, {reposts.FlipH, reposts.Crop75}, {reposts.Grey, reposts.Crop90}}
	type rec struct {
		orig, kind int
		sig        []RegionHash
		w, h       int
	}
	recs := make([]rec, total*len(kinds))
	t0 := time.Now()
	parallel(len(recs), func(h *Hasher, i int) {
		oi, ki := i/len(kinds), i%len(kinds)
		rp, err := reposts.Apply(pic(oi), kinds[ki], rand.New(rand.NewPCG(uint64(oi), uint64(ki)+7)))
		if err != nil {
			t.Error(err)
			return
		}
		sig, err := h.Signatures(rp.Image)
		if err != nil {
			return // too flat for a signature: not indexed
		}
		recs[i] = rec{oi, ki, sig, rp.Image.Bounds().Dx(), rp.Image.Bounds().Dy()}
	})
	ix := NewIndexWith(NewMIHSearcher(false), NewMIHSearcher(false))
	for i, r := range recs {
		if r.sig != nil {
			ix.Add(int64(i), r.w, r.h, r.sig)
		}
	}
	ix.Finish()
	t.Logf("indexed %d crops of %d pictures (%d real) in %s", ix.Len(), total, real, time.Since(t0).Round(time.Second))

	type result struct {
		found  []bool // per kind: its own crop found as a part (or a copy)
		true_  []Match
		wrong  []string
		hashMS float64
		findMS float64
	}
	ask := func(h *Hasher, img image.Image, self int) result {
		res := result{found: make([]bool, len(kinds))}
		a := time.Now()
		q, err := h.PartsQuery(img)
		if err != nil {
			return res
		}
		b := time.Now()
		ms := ix.Search(q, SearchOptions{Parts: true})
		res.hashMS, res.findMS = float64(b.Sub(a).Microseconds())/1000, float64(time.Since(b).Microseconds())/1000
		for _, m := range ms {
			r := recs[m.ID]
			if r.orig != self {
				res.wrong = append(res.wrong, fmt.Sprintf("crop %d (%s of picture %d) as %v part=%v at %d bits, %d windows, pixels %.3f/%.3f",
					m.ID, reposts.Name(kinds[r.kind]), r.orig, m.Kind, m.Part, m.Distance, m.Windows, m.Pixels, m.PixelDetail))
				continue
			}
			res.found[r.kind] = true
			res.true_ = append(res.true_, m)
		}
		return res
	}
	results := make([]result, total)
	parallel(total, func(h *Hasher, i int) { results[i] = ask(h, pic(i), i) })
	distractors := make([]result, n)
	parallel(n, func(h *Hasher, i int) { distractors[i] = ask(h, evalPic(1_000_000+i), -1) })

	for _, part := range []struct {
		name   string
		lo, hi int
	}{{"real", 0, real}, {"generated", real, total}} {
		for ki, k := range kinds {
			f := 0
			for _, r := range results[part.lo:part.hi] {
				if r.found[ki] {
					f++
				}
			}
			t.Logf("found %-10s %-14s %5d / %5d  %.3f", part.name, reposts.Name(k), f, part.hi-part.lo, float64(f)/float64(part.hi-part.lo))
		}
	}
	pct := func(v []float64, p float64) float64 {
		s := slices.Clone(v)
		slices.Sort(s)
		return s[min(int(p*float64(len(s))), len(s)-1)]
	}
	wrong, fp := 0, 0
	for i, r := range results {
		for _, w := range r.wrong {
			t.Logf("picture %d matched %s", i, w)
		}
		wrong += len(r.wrong)
	}
	for i, r := range distractors {
		for _, w := range r.wrong {
			t.Logf("distractor %d matched %s", i, w)
		}
		if len(r.wrong) > 0 {
			fp++
		}
	}
	t.Logf("pictures' matches of another picture's crop: %d; distractor queries (of %d) with any match: %d", wrong, n, fp)
	// The true matches' evidence, to set the part rules by.
	var lone, low int
	var px, det []float64
	for _, r := range results {
		for _, m := range r.true_ {
			if m.Kind != Window {
				continue
			}
			if m.Windows < 2 {
				lone++
			}
			if m.LowFrequency {
				low++
			}
			px, det = append(px, m.Pixels), append(det, m.PixelDetail)
		}
	}
	if len(px) > 0 {
		t.Logf("true window matches: %d (%d on one window, %d low-frequency); pixels r 1st/5th/50th percentile %.3f/%.3f/%.3f, detail %.3f/%.3f/%.3f",
			len(px), lone, low, pct(px, 0.01), pct(px, 0.05), pct(px, 0.5), pct(det, 0.01), pct(det, 0.05), pct(det, 0.5))
	}
	var hashes, finds []float64
	for _, r := range append(results, distractors...) {
		hashes, finds = append(hashes, r.hashMS), append(finds, r.findMS)
	}
	t.Logf("PartsQuery hashing ms p50 %.2f p99 %.2f; search ms p50 %.2f p99 %.2f (%d indexed crops, 2 workers)",
		pct(hashes, 0.5), pct(hashes, 0.99), pct(finds, 0.5), pct(finds, 0.99), ix.Len())
}

// parallel runs f(h, 0..n-1) over two goroutines, each with a Hasher of
// its own (a Hasher is not safe for concurrent use).
func parallel(n int, f func(h *Hasher, i int)) {
	var wg sync.WaitGroup
	next := make(chan int)
	for range 2 {
		wg.Go(func() {
			h := NewHasher(Options{PDQMaxSide: -1})
			for i := range next {
				f(h, i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}
