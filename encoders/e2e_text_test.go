package encoders

import (
	"context"
	"slices"
	"testing"

	"github.com/xmodal/xmodal/internal/vecmath"
)

// TestEndToEndTexts: the Go tokenizer plus ORT reproduce the PyTorch
// embeddings of the golden texts (open_clip tokenizer), and the token ids
// match open_clip's exactly.
func TestEndToEndTexts(t *testing.T) {
	g := loadGoldens(t, parityDir)
	m := loadModel(t, parityDir, Options{})
	checkExportTexts(t, m, g)
}

func checkExportTexts(t *testing.T, m *Model, g *goldens) {
	t.Helper()
	ids, _ := m.prep.tok.Batch(g.Texts, g.ContextLength)
	for i, want := range g.InputIDs {
		if got := ids[i*g.ContextLength : (i+1)*g.ContextLength]; !slices.Equal(got, want) {
			t.Errorf("text %q: Go tokenizer ids differ from %s\n got %v\nwant %v", g.Texts[i], g.Tokenizer, trimZeros(got), trimZeros(want))
		}
	}
	got, err := m.EmbedTexts(context.Background(), g.Texts)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range got {
		c := vecmath.Cosine(e, g.TextEmbeds[i])
		t.Logf("text %-40.40q cos %.7f", g.Texts[i], c)
		if c < e2eParityMin {
			t.Errorf("text %q: end-to-end cosine %.6f < %.3f", g.Texts[i], c, e2eParityMin)
		}
	}
	// One text at a time (trimmed to its own length) agrees with the batch.
	for i, text := range g.Texts {
		one, err := m.EmbedTexts(context.Background(), []string{text})
		if err != nil {
			t.Fatal(err)
		}
		if c := vecmath.Cosine(one[0], got[i]); c < 0.99999 {
			t.Errorf("text %q alone vs in batch: cosine %.7f", text, c)
		}
	}
}

func trimZeros(ids []int64) []int64 {
	for len(ids) > 0 && ids[len(ids)-1] == 0 {
		ids = ids[:len(ids)-1]
	}
	return ids
}

func TestTrimPadding(t *testing.T) {
	ids := []int64{1, 2, 3, 0, 0, 1, 2, 0, 0, 0}
	mask := []int64{1, 1, 1, 0, 0, 1, 1, 0, 0, 0}
	ti, tm := trimPadding(ids, mask, 2, 5)
	if !slices.Equal(ti, []int64{1, 2, 3, 1, 2, 0}) || !slices.Equal(tm, []int64{1, 1, 1, 1, 1, 0}) {
		t.Errorf("trimPadding = %v %v", ti, tm)
	}
	full := []int64{1, 1, 1, 1, 1}
	if ti, _ := trimPadding(full, full, 1, 5); len(ti) != 5 {
		t.Errorf("full row trimmed: %v", ti)
	}
}

func benchTexts(b *testing.B, m *Model, texts []string) {
	ctx := context.Background()
	if _, err := m.EmbedTexts(ctx, texts); err != nil { // warm-up
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := m.EmbedTexts(ctx, texts); err != nil {
			b.Fatal(err)
		}
	}
}
