package encoders

import (
	"context"
	"os"
	"testing"
)

// TestFullModel loads the full-size random-weight ViT-B/32 export (built by
// `tools/build_parity_model.py --full`, transformers.js layout, no
// model.json) the way a user's real CLIP export is loaded, and checks it
// against its PyTorch goldens. Skipped when the export is absent.
func TestFullModel(t *testing.T) {
	if _, err := os.Stat(fullModelDir); err != nil {
		t.Skipf("full-size model not built (%v): run .cache/venv/bin/python tools/build_parity_model.py --full", err)
	}
	g := loadGoldens(t, fullModelDir)
	m := loadModel(t, fullModelDir, Options{})
	man := m.Manifest()
	if !man.Inferred || m.Dim() != 512 || man.Text.AttentionMask == "" || man.Image.CropSize() != 224 {
		t.Fatalf("inferred manifest: %+v", man)
	}
	ctx := context.Background()
	img, err := m.EmbedPixels(ctx, g.Pixels, len(g.Images))
	if err != nil {
		t.Fatal(err)
	}
	txt, err := m.EmbedTokens(ctx, flatten(g.InputIDs), flatten(g.AttentionMask), len(g.Texts))
	if err != nil {
		t.Fatal(err)
	}
	for i := range img {
		if c := Cosine(img[i], g.ImageEmbeds[i]); c < tensorParityMin {
			t.Errorf("image %s: cosine %.7f", g.Images[i], c)
		}
	}
	for i := range txt {
		if c := Cosine(txt[i], g.TextEmbeds[i]); c < tensorParityMin {
			t.Errorf("text %q: cosine %.7f", g.Texts[i], c)
		}
	}
	t.Logf("full model: %s dim %d; image control %.4f, text control %.4f", m.Version(), m.Dim(),
		meanOffDiagonal(img, g.ImageEmbeds), meanOffDiagonal(txt, g.TextEmbeds))
}
