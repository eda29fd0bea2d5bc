package neardupeval

import (
	"bytes"
	"context"
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xmodal/xmodal/eval/reposts"
	"github.com/xmodal/xmodal/internal/testutil"
)

// A small run end to end: both methods scored on the same queries, the
// region method finding crops and captions that plain PDQ cannot, no false
// positives, and the report naming every part.
func TestRunSmall(t *testing.T) {
	photos, err := filepath.Glob("../../testdata/neardup/photos/c*.jpg") // camera, chelsea, clock, coffee, coins
	if err != nil || len(photos) < 4 {
		t.Fatalf("committed photos: %v %v", photos, err)
	}
	kinds := [][]reposts.Kind{{reposts.JPEG30}, {reposts.Crop90}, {reposts.Caption}, {reposts.FlipH}}
	rep, err := Run(context.Background(), Options{Photos: photos, Generated: 6, QueryGenerated: 2, Distractors: 8, W: 320, H: 240,
		Kinds: kinds, Seed: 5, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Originals[srcReal] != len(photos) || rep.Originals[srcGen] != 6 {
		t.Errorf("originals %v", rep.Originals)
	}
	if want := (len(photos) + 2) * len(kinds); rep.Queries != want || rep.Distractors != 8 {
		t.Errorf("queries %d (want %d), distractors %d", rep.Queries, want, rep.Distractors)
	}
	nd, pl := rep.Methods[0], rep.Methods[1]
	for _, src := range []string{srcReal, srcGen} {
		for _, k := range []string{"crop90", "caption"} {
			if pl.Recall[src][k].Hits != 0 {
				t.Errorf("plain PDQ found %s %s: %+v", src, k, pl.Recall[src][k])
			}
		}
		if c := nd.Recall[src]["caption"]; c.Rate() < 0.8 {
			t.Errorf("neardup caption recall %s %+v", src, c)
		}
		if c := pl.Recall[src]["jpeg30"]; c.Rate() < 0.8 {
			t.Errorf("plain PDQ jpeg30 recall %s %+v", src, c)
		}
	}
	for _, m := range rep.Methods {
		for src, c := range m.FalsePositives {
			if c.Hits != 0 {
				t.Errorf("%s: %d false positives on %s queries", m.Name, c.Hits, src)
			}
		}
	}
	if nd.BytesPerImage <= pl.BytesPerImage || rep.IndexRatioTotal <= 1 {
		t.Errorf("bytes %v vs %v, index ratio %v", nd.BytesPerImage, pl.BytesPerImage, rep.IndexRatioTotal)
	}
	var buf bytes.Buffer
	rep.WriteText(&buf)
	for _, s := range []string{"recall@1, real originals", "recall@1, generated originals", "crop90", "false positives", "distractor", "bytes per image", "neardup / plain PDQ"} {
		if !strings.Contains(buf.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, buf.String())
		}
	}
}

func TestRunErrors(t *testing.T) {
	if _, err := Run(context.Background(), Options{Photos: []string{"no/such.jpg"}}); err == nil {
		t.Error("missing photo accepted")
	}
	if _, err := Run(context.Background(), Options{Photos: nil, Generated: 1, Extra: map[string][]ExtraQuery{"x": {{Path: "a.jpg", Original: "b.jpg"}}}}); err == nil {
		t.Error("extra query of an unknown original accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Run(ctx, Options{Generated: 3}); err == nil {
		t.Error("cancelled run succeeded")
	}
}

// LogMisses names each re-post query whose original did not come first: an
// all-black original (PDQ quality 0, which no query may match) is missed on
// every edit, a photo's JPEG re-encode is not.
func TestLogMisses(t *testing.T) {
	dir := t.TempDir()
	black := filepath.Join(dir, "black.jpg")
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, image.NewGray(image.Rect(0, 0, 200, 150)), nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(black, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	photo := "../../testdata/neardup/photos/coffee.jpg"
	var progress bytes.Buffer
	saved := t.TempDir()
	rep, err := Run(context.Background(), Options{Photos: []string{black, photo}, Generated: 2, QueryGenerated: 0, Distractors: 1, W: 320, H: 240,
		Kinds: [][]reposts.Kind{{reposts.JPEG30}, {reposts.Grey}}, Seed: 3, LogMisses: true, SaveMisses: saved, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	var misses []string
	for _, l := range strings.Split(progress.String(), "\n") {
		if strings.HasPrefix(l, "miss: ") {
			misses = append(misses, l)
		}
	}
	if len(misses) != 2 {
		t.Fatalf("miss lines %q, want the black original's two queries", misses)
	}
	for _, l := range misses {
		if !strings.Contains(l, "of black.jpg found nothing") {
			t.Errorf("miss line %q, want the black original, found nothing", l)
		}
	}
	// SaveMisses wrote each missed query and its original, which for the
	// black original are both 200 x 150.
	files, _ := filepath.Glob(filepath.Join(saved, "miss-*.png"))
	if len(files) != 4 {
		t.Errorf("saved misses %q, want a query and an original for each of the two misses", files)
	}
	for _, f := range files {
		img := testutil.DecodeImage(t, f)
		if b := img.Bounds(); b.Dx() != 200 || b.Dy() != 150 {
			t.Errorf("%s: %v, want 200 x 150", f, b)
		}
	}
	// The black original is featureless (PDQ quality 0): named, and left
	// out of the second real table, where the photo's re-posts all count.
	if len(rep.Featureless) != 1 || !strings.HasPrefix(rep.Featureless[0], "black.jpg") {
		t.Errorf("featureless originals %q, want black.jpg", rep.Featureless)
	}
	nd := rep.Methods[0]
	for _, k := range []string{"jpeg30", "grey"} {
		if c := nd.Recall[srcRealFeatured][k]; c == nil || c.Total != 1 || c.Hits != 1 {
			t.Errorf("%s over real originals of PDQ quality >= 50: %+v, want the photo's one query, found", k, c)
		}
		if c := nd.Recall[srcReal][k]; c == nil || c.Total != 2 || c.Hits != 1 {
			t.Errorf("%s over all real originals: %+v, want 2 queries, 1 found", k, c)
		}
	}
	var out bytes.Buffer
	rep.WriteText(&out)
	if !strings.Contains(out.String(), "recall@1, real (PDQ quality >= 50) originals") || !strings.Contains(out.String(), "featureless") {
		t.Errorf("the report has no table or note for the featureless originals:\n%s", out.String())
	}
}
