//go:build linux && bench

package banks

import (
	"context"
	"fmt"
	"image"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/eval/reposts"
)

// TestBankCropsBench is the benchmark of bench/results/banks-crops.txt
// (docs/moderation.md): a bank of generated photo-like pictures added with
// their windows (crops) beside the same PDQ hashes without them (what a
// hash list or an image added without --crops gives), re-posts of some of
// them (crops, crops inside memes and screenshots, mirrored and
// re-compressed crops, watermarked copies) and distractors (other pictures of the same
// families) looked up through State.MatchRegions with the query's windows.
// It reports recall per kind for each bank, false positives (a distractor
// matching anything, a re-post matching another entry), and the CPU time
// of the query's hashes and of the match, one goroutine.
//
//	XMODAL_BANKCROPS_N  pictures banked (default 2,000)
//	XMODAL_BANKCROPS_Q  re-posted pictures (default 200)
//	XMODAL_BANKCROPS_D  distractors (default 1,000)
func TestBankCropsBench(t *testing.T) {
	runtime.LockOSThread() // the thread CPU clock times this goroutine
	defer runtime.UnlockOSThread()
	n := benchEnv("XMODAL_BANKCROPS_N", 2000)
	nq := min(benchEnv("XMODAL_BANKCROPS_Q", 200), n)
	nd := benchEnv("XMODAL_BANKCROPS_D", 1000)
	logf := func(format string, a ...any) {
		fmt.Printf("[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
	}
	picture := func(i int) *image.RGBA {
		return reposts.Photo(i%len(reposts.Families), uint64(i), 640, 480)
	}
	s := NewState()
	mustApply(t, s, createOp("crops", nil))
	mustApply(t, s, createOp("hashes", nil))
	t0 := time.Now()
	nh := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	byValue := map[string]int{}
	var stored int
	for i := range n {
		e := windowsEntry(t, picture(i))
		stored += len(e.Windows)
		byValue[e.Value] = i
		mustApply(t, s, addOp("crops", e))
		mustApply(t, s, addOp("hashes", Entry{Type: SignalPDQ, Value: e.Value}))
	}
	logf("%d pictures banked in %s: windows %.0f bytes an entry", n, time.Since(t0).Round(time.Second), float64(stored)/float64(n))
	kinds := [][]reposts.Kind{
		{reposts.Crop90}, {reposts.Crop75}, {reposts.Crop90, reposts.Caption}, {reposts.Crop90, reposts.Screenshot},
		{reposts.FlipH, reposts.Crop75}, {reposts.Crop75, reposts.JPEG30}, {reposts.Crop90, reposts.Watermark},
		{reposts.Watermark},
	}
	type tally struct{ found, wrong, queries int }
	recall := map[string]*[2]tally{} // kind -> crops bank, hashes bank
	var hashCPU, matchCPU []float64
	var truePixels []float64 // the pixel values of right window matches
	ctx := context.Background()
	lookup := func(img image.Image) ([2][]RegionMatch, error) {
		c0 := threadCPU()
		q, err := nh.Query(img)
		if err != nil {
			return [2][]RegionMatch{}, err
		}
		c1 := threadCPU()
		var out [2][]RegionMatch
		for b, name := range []string{"crops", "hashes"} {
			if out[b], err = s.MatchRegions(ctx, q, []string{name}); err != nil {
				return out, err
			}
			if b == 0 {
				matchCPU = append(matchCPU, float64(threadCPU()-c1)/1e6)
			}
		}
		hashCPU = append(hashCPU, float64(c1-c0)/1e6)
		return out, nil
	}
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range nq {
		orig := rng.IntN(n)
		for _, k := range kinds {
			rp, err := reposts.Apply(picture(orig), k, rand.New(rand.NewPCG(uint64(i), 11)))
			if err != nil {
				t.Fatal(err)
			}
			res, err := lookup(rp.Image)
			if err != nil {
				t.Fatal(err)
			}
			name := reposts.Name(k)
			if recall[name] == nil {
				recall[name] = &[2]tally{}
			}
			for b := range 2 {
				tl := &recall[name][b]
				tl.queries++
				for _, m := range res[b] {
					if byValue[m.Signal] == orig {
						tl.found++
						if m.Region == "window" {
							truePixels = append(truePixels, m.Pixels)
						}
					} else {
						tl.wrong++
						logf("wrong: %s of picture %d (bank %s) matched picture %d: region %s, distance %d, windows %d, pixels %.3f, shown %v",
							name, orig, m.Bank, byValue[m.Signal], m.Region, *m.Distance, m.Windows, m.Pixels, *m.Shown)
					}
				}
			}
		}
	}
	falsePos := [2]int{}
	for i := range nd {
		res, err := lookup(picture(n + 1_000_000 + i))
		if err != nil {
			t.Fatal(err)
		}
		for b := range 2 {
			if len(res[b]) > 0 {
				falsePos[b]++
			}
		}
	}
	fmt.Printf("\nrecall (re-posted pictures found by MatchRegions; wrong: other entries matched)\n")
	fmt.Printf("%-22s %8s %18s %18s\n", "kind", "queries", "with windows", "hashes only")
	names := make([]string, 0, len(recall))
	for k := range recall {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		r := recall[k]
		fmt.Printf("%-22s %8d %9.3f wrong %d %9.3f wrong %d\n", k, r[0].queries,
			float64(r[0].found)/float64(r[0].queries), r[0].wrong, float64(r[1].found)/float64(r[1].queries), r[1].wrong)
	}
	fmt.Printf("\ndistractors matching anything: with windows %d of %d, hashes only %d of %d\n", falsePos[0], nd, falsePos[1], nd)
	slices.Sort(truePixels)
	if k := len(truePixels); k > 0 {
		fmt.Printf("pixel values of the %d right window matches: min %.3f, 1st percentile %.3f, 5th %.3f, median %.3f\n",
			k, truePixels[0], truePixels[k/100], truePixels[k/20], truePixels[k/2])
	}
	h, m := summary(hashCPU), summary(matchCPU)
	fmt.Printf("CPU ms a lookup (one goroutine): query hashes with windows p50 %.2f p99 %.2f; MatchRegions against %d entries with windows p50 %.2f p99 %.2f\n",
		h.p50, h.p99, n, m.p50, m.p99)
}
