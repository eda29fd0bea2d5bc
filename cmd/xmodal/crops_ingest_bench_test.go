//go:build bench

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/jpeg"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
	"github.com/xmodal/xmodal/sink/matching"
)

// TestCropsIngestCost is the benchmark of bench/results/banks-crops-ingest.txt:
// what matching crops at ingest costs (banks.match_regions with a bank of
// entries added with their windows) and what it finds. Two `xmodal run`
// apps in this process on the demo model, both with banks.match_regions,
// each with a review bank of the same N generated pictures
// (reposts.Photo, 640 x 480): in one as plain PDQ entries, in the other
// with their windows (`bank add --crops`), so only the second computes each
// image post's near-duplicate query and searches its windows. In
// interleaved rounds each ingests the same image posts under fresh ids
// (640 x 480 JPEGs of quality 85: distinct generated pictures, and one in
// ten a 75 % crop of a banked picture), timed from publish to the stream's
// consumer having nothing pending. It reports the throughput ratio and the
// crops each app's events found. Built with -tags bench:
//
//	XMODAL_CROPSINGEST=1          run it
//	XMODAL_CROPSINGEST_ENTRIES    banked pictures (default 1,000)
//	XMODAL_CROPSINGEST_ROUNDS     rounds (default 5)
//	XMODAL_CROPSINGEST_IMAGES     image posts a round (default 500)
func TestCropsIngestCost(t *testing.T) {
	if benchEnvInt("XMODAL_CROPSINGEST", 0) != 1 {
		t.Skip("set XMODAL_CROPSINGEST=1 to run the crops' ingest-cost benchmark")
	}
	requireORT(t)
	nEntries, rounds, nImages := benchEnvInt("XMODAL_CROPSINGEST_ENTRIES", 1000), benchEnvInt("XMODAL_CROPSINGEST_ROUNDS", 5), benchEnvInt("XMODAL_CROPSINGEST_IMAGES", 500)
	ctx := context.Background()
	matchRegions := func(c *Config) { c.Banks.MatchRegions = true }
	plain, crops := startBenchApp(t, filepath.Join(t.TempDir(), "plain"), matchRegions), startBenchApp(t, filepath.Join(t.TempDir(), "crops"), matchRegions)
	apps := []*app{plain, crops}

	// The banked pictures, with their windows (as `bank add --crops`).
	t0 := time.Now()
	type banked struct {
		img     image.Image
		h       pdq.Hash
		windows []byte
	}
	pics := make([]banked, nEntries)
	nh := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	for i := range pics {
		img := reposts.Photo(i%len(reposts.Families), uint64(7_000_000+i), 640, 480)
		sig, err := nh.Signatures(img)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := pdq.FromImage(img)
		pics[i] = banked{img, h, neardup.AppendWindows(nil, 640, 480, sig)}
	}
	for k, a := range apps {
		at := time.Now().UTC()
		if _, err := a.banks.Do(ctx, banks.Op{Version: banks.OpVersion, Kind: banks.OpCreateBank, Bank: "pictures", At: at, Actor: "bench",
			Config: &banks.Bank{Name: "pictures", Enabled: true, Action: banks.ActionReview}}); err != nil {
			t.Fatal(err)
		}
		b := &banks.OpBatcher{Bank: "pictures", Actor: "bench", At: at}
		for i, p := range pics {
			e := banks.Entry{Type: banks.SignalPDQ, Value: p.h.String(), AddedAt: at, Note: fmt.Sprint(i)}
			if k == 1 {
				e.Windows = p.windows
			}
			op, err := b.Add(e)
			if err != nil {
				t.Fatal(err)
			}
			if op != nil {
				if _, err := a.banks.Do(ctx, *op); err != nil {
					t.Fatal(err)
				}
			}
		}
		if op := b.Flush(); op != nil {
			if _, err := a.banks.Do(ctx, *op); err != nil {
				t.Fatal(err)
			}
		}
	}
	if plain.banks.State().HasWindows() || !crops.banks.State().HasWindows() {
		t.Fatal("the plain app's bank has windows, or the crops app's has none")
	}
	t.Logf("%d pictures banked in %v", nEntries, time.Since(t0).Round(time.Millisecond))

	encode := func(img image.Image) []byte {
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85}); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	created := time.Now().UTC().Add(-time.Hour).Format(time.RFC3339)
	// workload: the round's posts, and the ids of the crops among them.
	workload := func(round int) ([][2][]byte, map[string]bool) {
		rng := rand.New(rand.NewPCG(uint64(round), 0xc70b5))
		var out [][2][]byte
		cropIDs := map[string]bool{}
		for i := range nImages {
			id := fmt.Sprintf("r%d-image-%05d", round, i)
			var img image.Image
			if i%10 == 9 {
				rp, err := reposts.Apply(pics[rng.IntN(len(pics))].img, []reposts.Kind{reposts.Crop75}, rng)
				if err != nil {
					t.Fatal(err)
				}
				img, cropIDs[id] = rp.Image, true
			} else {
				img = reposts.Photo(rng.IntN(len(reposts.Families)), uint64(9_000_000+round*nImages+i), 640, 480)
			}
			b, _ := json.Marshal(map[string]any{"schema": 1, "id": id, "created_at": created,
				"image": map[string]any{"data": encode(img), "mime": "image/jpeg"}})
			out = append(out, [2][]byte{[]byte(id), b})
		}
		return out, cropIDs
	}
	// found reads a's events: the posts matched, by region.
	found := func(a *app) map[string]string {
		js, err := jetstream.New(a.nc)
		if err != nil {
			t.Fatal(err)
		}
		s, err := js.Stream(ctx, matching.Stream)
		if err != nil {
			return nil
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if err != nil {
				continue
			}
			var e matching.Event
			if err := json.Unmarshal(m.Data, &e); err != nil {
				t.Fatal(err)
			}
			out[e.PostID] = e.Region
		}
		return out
	}
	var ratios []float64
	allCrops := map[string]bool{}
	for r := range rounds {
		msgs, cropIDs := workload(r)
		for id := range cropIDs {
			allCrops[id] = true
		}
		order := []int{0, 1}
		if r%2 == 1 {
			order = []int{1, 0}
		}
		var took [2]time.Duration
		for _, k := range order {
			took[k] = ingestTime(t, apps[k], msgs, 20*time.Minute)
		}
		per := func(d time.Duration) float64 { return float64(len(msgs)) / d.Seconds() }
		ratios = append(ratios, per(took[1])/per(took[0]))
		t.Logf("round %d: hashes only %.1f images/s, with windows %.1f images/s, ratio %.3f", r+1, per(took[0]), per(took[1]), ratios[r])
	}
	slices.Sort(ratios)
	t.Logf("image posts: throughput with windows / hashes only (%d banked pictures, banks.match_regions on both): median %.3f (rounds %.3f..%.3f, n=%d)",
		nEntries, ratios[len(ratios)/2], ratios[0], ratios[len(ratios)-1], len(ratios))
	for k, name := range []string{"hashes only", "with windows"} {
		ev := found(apps[k])
		hit, wrong := 0, 0
		regions := map[string]int{}
		for id, region := range ev {
			if allCrops[id] {
				hit++
				regions[region]++
			} else {
				wrong++
			}
		}
		t.Logf("%s: crops of banked pictures with an event %d of %d (by region %v); other posts with an event %d of %d",
			name, hit, len(allCrops), regions, wrong, rounds*nImages-len(allCrops))
	}
}
