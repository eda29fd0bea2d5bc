package eval

import (
	"context"
	"encoding/json"
	"errors"
	"image"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"

	"github.com/xmodal/xmodal/encoders"
	"github.com/xmodal/xmodal/encoders/imageprep"
	"github.com/xmodal/xmodal/eval/synth"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/internal/vecmath"
)

// demoDir is the bundled demo model (tools/train_demo_model.py).
var demoDir = filepath.Join("..", "testdata", "models", "demo")

func loadDemo(t testing.TB) *encoders.Model {
	t.Helper()
	m, err := encoders.Load(demoDir, encoders.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		if errors.Is(err, encoders.ErrORTNotFound) {
			testutil.Unavailable(t, "ONNX Runtime library", "%v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// The committed demo model is what the issue asks for: the two-file CLIP
// layout, dimension >= 256, at most 12 MB.
func TestDemoModelContract(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(demoDir, encoders.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	man, err := encoders.ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	if man.Dim < 256 || man.Image.Input != "pixel_values" || man.Image.Output != "image_embeds" ||
		man.Text.InputIDs != "input_ids" || man.Text.AttentionMask != "attention_mask" || man.Text.Output != "text_embeds" {
		t.Fatalf("manifest %+v", man)
	}
	var total int64
	for _, f := range []string{man.Image.File, man.Text.File} {
		st, err := os.Stat(filepath.Join(demoDir, f))
		if err != nil {
			t.Fatal(err)
		}
		total += st.Size()
	}
	if total > 12<<20 {
		t.Fatalf("model files take %d bytes; the budget is 12 MB", total)
	}
	var log struct {
		Vocabulary int `json:"vocabulary"`
	}
	if b, err := os.ReadFile(filepath.Join(demoDir, "train_log.json")); err != nil || json.Unmarshal(b, &log) != nil || log.Vocabulary == 0 {
		t.Fatalf("train_log.json missing or unreadable: %v", err)
	}
}

// The demo model retrieves on a held-out slice of the generator's test
// split (the model never saw the test seed). The floors sit well below
// the full-split scores in docs/eval.md but far above chance (1/200 for
// R@1); a control with shuffled image vectors must fall below them.
func TestDemoModelRetrievesHeldOutScenes(t *testing.T) {
	m := loadDemo(t)
	ctx := context.Background()
	c, err := SynthCorpus(ctx, synth.Config{Split: synth.SplitTest, N: 200})
	if err != nil {
		t.Fatal(err)
	}
	es, err := EmbedCorpus(ctx, m, c, EmbedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if es.Images.Dim != m.Dim() || es.Images.Dim < 256 {
		t.Fatalf("dimension %d", es.Images.Dim)
	}
	rep, err := Evaluate(ctx, es, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	floors := []struct {
		dir, match string
		k          int
		min        float64
	}{
		{TqI, "semantic", 1, 0.9}, {TqI, "semantic", 10, 0.98}, {IqT, "semantic", 1, 0.9}, {TqI, "strict", 10, 0.95},
	}
	for _, f := range floors {
		row, _ := rep.Find(f.dir, f.match, 0)
		if got := rep.At(row, f.k); !(got >= f.min) {
			t.Errorf("%s %s R@%d = %.3f, floor %.2f", f.dir, f.match, f.k, got, f.min)
		}
	}
	for _, dir := range []string{TqI, IqT} {
		mp, _ := rep.FindMAP(dir, 0)
		if mp.MAP < 0.9 || mp.MAP < mp.Random+0.2 {
			t.Errorf("%s MAP@ALL %.3f (random %.3f)", dir, mp.MAP, mp.Random)
		}
	}
	// Control: the same vectors with the images shuffled score near chance.
	shuf := *es
	shuf.Images = Matrix{Rows: es.Images.Rows, Dim: es.Images.Dim, Data: make([]float32, len(es.Images.Data))}
	perm := rand.New(rand.NewPCG(7, 7)).Perm(es.Images.Rows)
	for i, j := range perm {
		copy(shuf.Images.Row(i), es.Images.Row(j))
	}
	ctl, err := Evaluate(ctx, &shuf, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if row, _ := ctl.Find(TqI, "semantic", 0); ctl.At(row, 1) > 0.2 {
		t.Errorf("control with shuffled images still scores semantic R@1 %.3f", ctl.At(row, 1))
	}
	t.Logf("held-out 200: TqI semantic R@1 %.3f, IqT semantic R@1 %.3f", rep.At(mustRow(rep, TqI), 1), rep.At(mustRow(rep, IqT), 1))
}

func mustRow(r *Report, dir string) RecallRow {
	row, _ := r.Find(dir, "semantic", 0)
	return row
}

// BenchmarkExactRank5000x1000 is the eval throughput the issue asks for:
// 5,000 caption queries ranked (top 10) against 1,000 images, dimension 256.
func BenchmarkExactRank5000x1000(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	randm := func(n int) Matrix {
		rows := make([][]float32, n)
		for i := range rows {
			v := make([]float32, 256)
			for j := range v {
				v[j] = float32(rng.NormFloat64())
			}
			rows[i] = vecmath.Normalized(v)
		}
		m, _ := NewMatrix(rows)
		return m
	}
	imgs, txts := randm(1000), randm(5000)
	for _, workers := range []int{1, 0} {
		name := "workers=1"
		if workers == 0 {
			name = "workers=all"
		}
		b.Run(name, func(b *testing.B) {
			r, _ := NewExact(imgs)
			w := workers
			if w == 0 {
				w = max(1, runtimeProcs())
			}
			for b.Loop() {
				parallel(context.Background(), txts.Rows, w, func(i int, s *Scratch) { r.Rank(txts.Row(i), 10, s) })
			}
			b.ReportMetric(float64(txts.Rows*b.N)/b.Elapsed().Seconds(), "queries/s")
		})
	}
}

// BenchmarkDemoModelEncode measures the demo model's encode throughput at
// batch 1 and 32 (images include imageprep preprocessing of 128x128 JPEG
// decodes; texts include tokenization).
func BenchmarkDemoModelEncode(b *testing.B) {
	m := loadDemo(b)
	ctx := context.Background()
	c, err := SynthCorpus(ctx, synth.Config{Split: synth.SplitTest, N: 32})
	if err != nil {
		b.Fatal(err)
	}
	imgs := make([]image.Image, 32)
	var texts []string
	for i, e := range c.Images {
		if imgs[i], _, err = imageprep.Decode(e.Data, imageprep.DefaultLimits()); err != nil {
			b.Fatal(err)
		}
	}
	for _, t := range c.Texts[:32] {
		texts = append(texts, t.Text)
	}
	for _, bs := range []int{1, 32} {
		b.Run("image/batch="+itoa(bs), func(b *testing.B) {
			for b.Loop() {
				if _, err := m.EmbedImages(ctx, imgs[:bs]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(bs*b.N)/b.Elapsed().Seconds(), "items/s")
		})
		b.Run("text/batch="+itoa(bs), func(b *testing.B) {
			for b.Loop() {
				if _, err := m.EmbedTexts(ctx, texts[:bs]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(bs*b.N)/b.Elapsed().Seconds(), "items/s")
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

// A generated split exported in Karpathy's format scores the same strict
// R@K through LoadKarpathy as through LoadGenDir.
func TestKarpathyMatchesGenerated(t *testing.T) {
	m := loadDemo(t)
	ctx := context.Background()
	dir := genSplit(t, synth.SplitTest, 60, GenOptions{Images: true})
	gen, err := LoadGenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	type sent struct {
		Raw string `json:"raw"`
	}
	type img struct {
		Filepath  string `json:"filepath"`
		Filename  string `json:"filename"`
		Split     string `json:"split"`
		ImgID     int    `json:"imgid"`
		Sentences []sent `json:"sentences"`
	}
	var k struct {
		Dataset string `json:"dataset"`
		Images  []img  `json:"images"`
	}
	k.Dataset = "synth"
	for i, im := range gen.Images {
		e := img{Filepath: ImagesDir, Filename: filepath.Base(im.Path), Split: "test", ImgID: i}
		for _, tx := range gen.Texts {
			if tx.Image == i {
				e.Sentences = append(e.Sentences, sent{tx.Text})
			}
		}
		k.Images = append(k.Images, e)
	}
	b, _ := json.Marshal(k)
	kpath := filepath.Join(t.TempDir(), "dataset_synth.json")
	if err := os.WriteFile(kpath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	kc, err := LoadKarpathy(kpath, dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	var reps []*Report
	for _, c := range []*Corpus{gen, kc} {
		es, err := EmbedCorpus(ctx, m, c, EmbedOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rep, err := Evaluate(ctx, es, nil, Options{})
		if err != nil {
			t.Fatal(err)
		}
		reps = append(reps, rep)
	}
	for _, dir := range []string{TqI, IqT} {
		a, _ := reps[0].Find(dir, "strict", 0)
		b, _ := reps[1].Find(dir, "strict", 0)
		if !slices.EqualFunc(a.R, b.R, near) || a.Queries != b.Queries {
			t.Errorf("%s strict: generated %v, Karpathy %v", dir, a.R, b.R)
		}
	}
	if _, ok := reps[1].Find(TqI, "semantic", 0); ok || len(reps[1].MAP) != 0 {
		t.Error("a Karpathy dataset has no scenes or labels; semantic rows and MAP must be absent")
	}
}
