package encoders

import (
	"context"
	"image"
	"math"
	"os"
	"testing"

	"github.com/xmodal/xmodal/encoders/imageprep"
	"github.com/xmodal/xmodal/internal/vecmath"
)

const e2eParityMin = 0.999 // Go decode/preprocess (or tokenizer) + ORT vs PyTorch

// TestEndToEndImages: Go decoding and preprocessing plus ORT reproduce the
// PyTorch embeddings of the golden photos (PIL + CLIPImageProcessor).
func TestEndToEndImages(t *testing.T) {
	g := loadGoldens(t, parityDir)
	m := loadModel(t, parityDir, Options{})
	spec := m.ImageSpec()
	if spec != imageprep.CLIPSpec() {
		t.Errorf("ImageSpec() = %+v, want CLIPSpec %+v", spec, imageprep.CLIPSpec())
	}
	per := spec.TensorLen()
	imgs := decodeGoldenImages(t, g)
	for i, img := range imgs {
		rel := g.Images[i]
		// Pixel-level diagnostics: how far Go's tensor is from PIL's.
		px := imageprep.Preprocess(img, spec, nil)
		var maxd, sumd float64
		for j, v := range px {
			d := math.Abs(float64(v - g.Pixels[i*per+j]))
			maxd = max(maxd, d)
			sumd += d
		}
		t.Logf("%-48s pixels vs CLIPImageProcessor: mean |d| %.5f, max |d| %.4f (1/255/std ≈ 0.0146)", rel, sumd/float64(per), maxd)
		// The random model barely separates a wrong resampling filter
		// (bilinear for bicubic moves the embedding by < 0.0005), so the
		// tensors themselves must agree to well under one 8-bit level on
		// average.
		if mean := sumd / float64(per); mean > 0.005 {
			t.Errorf("%s: Go pixels differ from CLIPImageProcessor's by %.5f on average (> 0.005)", rel, mean)
		}
	}
	got, err := m.EmbedImages(context.Background(), imgs)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range got {
		c := vecmath.Cosine(e, g.ImageEmbeds[i])
		t.Logf("%-48s cos %.6f", g.Images[i], c)
		if c < e2eParityMin {
			t.Errorf("%s: end-to-end cosine %.6f < %.3f", g.Images[i], c, e2eParityMin)
		}
	}
	if _, err := m.EmbedImages(context.Background(), []image.Image{imgs[0], nil}); err == nil {
		t.Error("nil image accepted")
	}

	// The split path a pipeline uses (PreprocessImage on its own goroutines,
	// then EmbedPixels) gives EmbedImages' vectors exactly.
	if m.ImageTensorLen() != per {
		t.Fatalf("ImageTensorLen %d, want %d", m.ImageTensorLen(), per)
	}
	pixels := make([]float32, len(imgs)*per)
	for i, img := range imgs {
		if err := m.PreprocessImage(img, pixels[i*per:(i+1)*per]); err != nil {
			t.Fatal(err)
		}
	}
	split, err := m.EmbedPixels(context.Background(), pixels, len(imgs))
	if err != nil {
		t.Fatal(err)
	}
	for i := range split {
		for j := range split[i] {
			if split[i][j] != got[i][j] {
				t.Fatalf("image %d: PreprocessImage+EmbedPixels differs from EmbedImages at %d: %v vs %v", i, j, split[i][j], got[i][j])
			}
		}
	}
	if err := m.PreprocessImage(imgs[0], make([]float32, per-1)); err == nil {
		t.Error("PreprocessImage accepted a short destination")
	}
	if err := m.PreprocessImage(nil, make([]float32, per)); err == nil {
		t.Error("PreprocessImage accepted a nil image")
	}
}

func decodeGoldenImages(t testing.TB, g *goldens) []image.Image {
	t.Helper()
	imgs := make([]image.Image, len(g.Images))
	for i, rel := range g.Images {
		data, err := os.ReadFile(goldenImagePath(rel))
		if err != nil {
			t.Fatal(err)
		}
		img, _, err := imageprep.Decode(data, imageprep.DefaultLimits())
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		imgs[i] = img
	}
	return imgs
}
