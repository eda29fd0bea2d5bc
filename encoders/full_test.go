package encoders

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/xmodal/xmodal/internal/vecmath"
)

// EnvTestModel names an extra exported model directory (with goldens from
// tools/build_parity_model.py, e.g. --from-pretrained) for TestExportedModel.
const EnvTestModel = "XMODAL_TEST_MODEL"

// TestExportedModel loads manifest-less exports the way a user's real CLIP
// is loaded (transformers.js layout, defaults inferred) and checks them
// against their PyTorch goldens: the full-size random-weight ViT-B/32 from
// `tools/build_parity_model.py --full` when built, and $XMODAL_TEST_MODEL
// when set.
func TestExportedModel(t *testing.T) {
	dirs := map[string]string{}
	if _, err := os.Stat(fullModelDir); err == nil {
		dirs["full-random"] = fullModelDir
	}
	if d := os.Getenv(EnvTestModel); d != "" {
		dirs["env"] = d // a missing directory fails in Load, as it should
	}
	if len(dirs) == 0 {
		t.Skipf("no exported model: build one with .cache/venv/bin/python tools/build_parity_model.py --full, or set %s", EnvTestModel)
	}
	for name, dir := range dirs {
		t.Run(name, func(t *testing.T) { checkExport(t, dir) })
	}
}

func checkExport(t *testing.T, dir string) {
	g := loadGoldens(t, dir)
	m := loadModel(t, dir, Options{})
	man := m.Manifest()
	if m.Dim() != g.Dim || man.Text.AttentionMask == "" {
		t.Fatalf("inferred manifest: %+v (goldens dim %d)", man, g.Dim)
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
		if c := vecmath.Cosine(img[i], g.ImageEmbeds[i]); c < tensorParityMin {
			t.Errorf("image %s: cosine %.7f", g.Images[i], c)
		}
	}
	for i := range txt {
		if c := vecmath.Cosine(txt[i], g.TextEmbeds[i]); c < tensorParityMin {
			t.Errorf("text %q: cosine %.7f", g.Texts[i], c)
		}
	}
	t.Logf("%s: %s dim %d; control image %.4f, text %.4f", dir, m.Version(), m.Dim(),
		meanOffDiagonal(img, g.ImageEmbeds), meanOffDiagonal(txt, g.TextEmbeds))

	// End to end from a photo file, as xmodal sees it.
	imgs := decodeGoldenImages(t, g)
	e2e, err := m.EmbedImages(ctx, imgs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range e2e {
		if c := vecmath.Cosine(e2e[i], g.ImageEmbeds[i]); c < e2eParityMin {
			t.Errorf("image %s end to end: cosine %.6f", g.Images[i], c)
		}
	}
	checkExportTexts(t, m, g)
}

func goldenImagePath(rel string) string { return filepath.Join(repoRoot, rel) }
