//go:build bench

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/xmodal/xmodal/internal/testutil"
)

// TestBanksIngestCost is the benchmark of bench/results/banks-ingest.txt
// (#18's target: ingest with banks of 1 million PDQ entries and 10,000
// written concepts at >= 90 % of the same run without banks). Two `xmodal
// run` apps in this process on the demo model, each with its own embedded
// NATS and index: one with no banks, one with a bank of N random PDQ
// hashes and a bank of C random concept vectors of the model (thresholds
// high enough that nothing matches, so both index the same posts); in
// interleaved rounds each ingests the same workload under fresh ids, text
// posts and image posts (distinct pictures made from the demo pictures)
// timed apart, from publish to the stream's consumer having nothing
// pending. Built with -tags bench:
//
//	XMODAL_BANKSINGEST=1          run it
//	XMODAL_BANKSINGEST_PDQ        PDQ entries (default 1,000,000)
//	XMODAL_BANKSINGEST_CONCEPTS   written concepts (default 10,000)
//	XMODAL_BANKSINGEST_ROUNDS     rounds (default 5)
//	XMODAL_BANKSINGEST_TEXTS      text posts a round (default 6,000)
//	XMODAL_BANKSINGEST_IMAGES     image posts a round (default 2,400)
//	XMODAL_BANKSINGEST_REPEAT     1: image posts repeat the 24 demo pictures
//	                              (the index then links every copy into a
//	                              cluster, whose lookups grow round by round
//	                              on both sides); default 0: each image post
//	                              is a distinct picture (distinctPicture)
func TestBanksIngestCost(t *testing.T) {
	if os.Getenv("XMODAL_BANKSINGEST") != "1" {
		t.Skip("set XMODAL_BANKSINGEST=1 to run the banks' ingest-cost benchmark")
	}
	requireORT(t)
	nPDQ, nConcepts := benchEnvInt("XMODAL_BANKSINGEST_PDQ", 1_000_000), benchEnvInt("XMODAL_BANKSINGEST_CONCEPTS", 10_000)
	rounds, nTexts, nImages := benchEnvInt("XMODAL_BANKSINGEST_ROUNDS", 5), benchEnvInt("XMODAL_BANKSINGEST_TEXTS", 6000), benchEnvInt("XMODAL_BANKSINGEST_IMAGES", 2400)
	repeat := benchEnvInt("XMODAL_BANKSINGEST_REPEAT", 0) == 1
	root := testutil.MustRepoRoot(t)
	plain := startBenchApp(t, filepath.Join(t.TempDir(), "plain"))
	withBanks := startBenchApp(t, filepath.Join(t.TempDir(), "banks"))
	apps := []*app{plain, withBanks}

	// The banks: PDQ hashes, and concepts of the model's dimension and version.
	start := time.Now()
	loadBenchBanks(t, withBanks, nPDQ, nConcepts)
	for _, bi := range withBanks.banks.State().Banks() {
		t.Logf("bank %s: %v", bi.Name, bi.Counts)
	}
	t.Logf("banks loaded in %v", time.Since(start).Round(time.Millisecond))

	imgs, err := filepath.Glob(filepath.Join(root, "testdata", "demo", "images", "*.jpg"))
	if err != nil || len(imgs) == 0 {
		t.Fatalf("demo images: %v", err)
	}
	pics := make([][]byte, len(imgs))
	for i, f := range imgs {
		if pics[i], err = os.ReadFile(f); err != nil {
			t.Fatal(err)
		}
	}
	created := time.Now().UTC().Add(-time.Hour).Format(time.RFC3339)
	workload := func(round int, kind string) [][2][]byte {
		var out [][2][]byte
		n := nTexts
		if kind == "image" {
			n = nImages
		}
		for i := range n {
			id := fmt.Sprintf("r%d-%s-%05d", round, kind, i)
			p := map[string]any{"schema": 1, "id": id, "created_at": created}
			if kind == "text" {
				p["text"] = fmt.Sprintf("post %d of round %d about topic %d and the weather", i, round, i%97)
			} else {
				pic := pics[i%len(pics)]
				if !repeat {
					pic = distinctPicture(t, pic, uint64(round)<<32|uint64(i))
				}
				p["image"] = map[string]any{"data": pic, "mime": "image/jpeg"}
			}
			b, _ := json.Marshal(p)
			out = append(out, [2][]byte{[]byte(id), b})
		}
		return out
	}
	ratios := map[string][]float64{}
	for r := range rounds {
		for _, kind := range []string{"text", "image"} {
			msgs := workload(r, kind)
			order := []int{0, 1}
			if r%2 == 1 {
				order = []int{1, 0}
			}
			var took [2]time.Duration
			for _, k := range order {
				took[k] = ingestTime(t, apps[k], msgs, 10*time.Minute)
			}
			per := func(d time.Duration) float64 { return float64(len(msgs)) / d.Seconds() }
			ratio := per(took[1]) / per(took[0])
			ratios[kind] = append(ratios[kind], ratio)
			t.Logf("round %d %s: no banks %.0f posts/s, banks %.0f posts/s, ratio %.3f", r+1, kind, per(took[0]), per(took[1]), ratio)
		}
	}
	for _, kind := range []string{"text", "image"} {
		rs := ratios[kind]
		slices.Sort(rs)
		t.Logf("%s posts: throughput with banks (%d PDQ entries, %d concepts) / without: median %.3f (rounds %.3f..%.3f, n=%d)",
			kind, nPDQ, nConcepts, rs[len(rs)/2], rs[0], rs[len(rs)-1], len(rs))
	}
}

// distinctPicture returns a 160x160 JPEG of the demo picture base blended
// with a smooth random field seeded by seed (testutil.SmoothPictureJPEG):
// each seed gives a picture whose PDQ hash is unrelated to the others', so
// the index does not cluster the workload's images and no bank entry
// matches them.
func distinctPicture(t testing.TB, base []byte, seed uint64) []byte {
	src, err := jpeg.Decode(bytes.NewReader(base))
	if err != nil {
		t.Fatal(err)
	}
	return testutil.SmoothPictureJPEG(t, rand.New(rand.NewPCG(seed, 0x5eed)), 160, src)
}
