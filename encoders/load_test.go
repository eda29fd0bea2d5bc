package encoders

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xmodal/xmodal/internal/vecmath"
)

// parityManifest returns the parity model's model.json with edits applied by
// string replacement (each old string must occur).
func parityManifest(t *testing.T, edits ...string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(parityDir, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for i := 0; i+1 < len(edits); i += 2 {
		if !strings.Contains(s, edits[i]) {
			t.Fatalf("manifest has no %q", edits[i])
		}
		s = strings.Replace(s, edits[i], edits[i+1], 1)
	}
	return s
}

var parityFiles = map[string]string{
	"vision_model.onnx": filepath.Join(parityDir, "vision_model.onnx"),
	"text_model.onnx":   filepath.Join(parityDir, "text_model.onnx"),
}

func TestLoadErrors(t *testing.T) {
	requireORT(t)
	cases := []struct {
		name     string
		manifest string            // "" writes no model.json
		files    map[string]string // links into the dir; nil means parityFiles
		want     []string          // substrings of the error
	}{
		{"missing image file", parityManifest(t), map[string]string{"text_model.onnx": parityFiles["text_model.onnx"]},
			[]string{"image model file", "vision_model.onnx", "not found"}},
		{"missing text file", parityManifest(t), map[string]string{"vision_model.onnx": parityFiles["vision_model.onnx"]},
			[]string{"text model file", "text_model.onnx", "not found"}},
		{"missing vocab file", parityManifest(t, `"kind": "clip-bpe",`, `"kind": "clip-bpe", "vocab": "bpe.txt.gz",`), nil,
			[]string{"tokenizer vocab file", "bpe.txt.gz", "not found"}},
		{"wrong image input name", parityManifest(t, `"input": "pixel_values"`, `"input": "pixels"`), nil,
			[]string{`no input "pixels"`, "[pixel_values]"}},
		{"wrong image output name", parityManifest(t, `"output": "image_embeds"`, `"output": "image_features"`), nil,
			[]string{`no output "image_features"`, "[image_embeds]"}},
		{"wrong text input name", parityManifest(t, `"input_ids": "input_ids"`, `"input_ids": "tokens"`), nil,
			[]string{`no input "tokens"`, "[input_ids, attention_mask]"}},
		{"wrong text output name", parityManifest(t, `"output": "text_embeds"`, `"output": "pooler_output"`), nil,
			[]string{`no output "pooler_output"`, "[text_embeds]"}},
		{"wrong mask name", parityManifest(t, `"attention_mask": "attention_mask"`, `"attention_mask": "mask"`), nil,
			[]string{`no input "mask"`}},
		{"manifest dim disagrees", parityManifest(t, `"dim": 64`, `"dim": 512`), nil,
			[]string{"dim 512", "output 64"}},
		{"towers disagree", parityManifest(t, `"file": "text_model.onnx"`, `"file": "text32.onnx"`),
			map[string]string{"vision_model.onnx": parityFiles["vision_model.onnx"], "text32.onnx": filepath.Join(fixturesDir, "text_dim32.onnx")},
			[]string{"dimension 64", "text embeddings 32"}},
		{"image size mismatch", parityManifest(t, `"size": 224`, `"size": 256`, `"crop": 224`, `"crop": 256`), nil,
			[]string{"[-1 3 224 224]", "crop 256"}},
		{"ids dtype mismatch", parityManifest(t, `"input_ids_dtype": "int64"`, `"input_ids_dtype": "int32"`), nil,
			[]string{`input "input_ids" is int64`, "input_ids_dtype is int32"}},
		{"context length mismatch", parityManifest(t, `"context_length": 77`, `"context_length": 64`),
			map[string]string{"vision_model.onnx": parityFiles["vision_model.onnx"], "text_model.onnx": filepath.Join(fixturesDir, "text_dim32.onnx")},
			[]string{"[-1 77]", "want [batch, 64]"}},
		{"fixed batch", parityManifest(t, `"file": "vision_model.onnx"`, `"file": "v.onnx"`),
			map[string]string{"v.onnx": filepath.Join(fixturesDir, "vision_fixed_batch.onnx"), "text_model.onnx": parityFiles["text_model.onnx"]},
			[]string{"fixed batch size", "[1 3 224 224]"}},
		{"float16 pixels", parityManifest(t, `"file": "vision_model.onnx"`, `"file": "v.onnx"`),
			map[string]string{"v.onnx": filepath.Join(fixturesDir, "vision_fp16.onnx"), "text_model.onnx": parityFiles["text_model.onnx"]},
			[]string{`input "pixel_values" is float16`}},
		{"bad JSON", `{"name": "x",, }`, nil, []string{"model.json", "bad JSON at line 1"}},
		{"empty manifest", ` `, nil, []string{"model.json", "empty file"}},
		{"trailing data", parityManifest(t) + `{}`, nil, []string{"trailing data"}},
		{"wrong type", parityManifest(t, `"dim": 64`, `"dim": "64"`), nil, []string{`key "dim"`, "want a int"}},
		{"unknown key", parityManifest(t, `"dim": 64,`, `"dim": 64, "dimension": 64,`), nil, []string{`unknown key "dimension"`}},
		{"unknown nested key", parityManifest(t, `"resize": "shortest",`, `"resize": "shortest", "interpolation": "bicubic",`), nil,
			[]string{`unknown key "interpolation"`}},
		{"no name", parityManifest(t, `"name": "xmodal-parity",`, ``), nil, []string{`"name" is required`}},
		{"bad resize", parityManifest(t, `"resize": "shortest"`, `"resize": "fit"`), nil, []string{`"image.resize" "fit"`}},
		{"bad tokenizer", parityManifest(t, `"kind": "clip-bpe"`, `"kind": "sentencepiece"`), nil, []string{`"sentencepiece"`, "clip-bpe"}},
		{"absolute path", parityManifest(t, `"file": "vision_model.onnx"`, `"file": "/etc/passwd"`), nil, []string{"must be relative"}},
		{"escaping path", parityManifest(t, `"file": "vision_model.onnx"`, `"file": "../vision_model.onnx"`), nil, []string{"must be relative"}},
		{"not an onnx file", parityManifest(t, `"file": "vision_model.onnx"`, `"file": "model.json"`), nil,
			[]string{"reading ONNX graph", "model.json"}},
		{"no manifest, no layout", "", map[string]string{"vision_model.onnx": parityFiles["vision_model.onnx"]},
			[]string{"no model.json and no two-file ONNX layout", "onnx/vision_model.onnx"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			files := c.files
			if files == nil {
				files = parityFiles
			}
			linkFiles(t, dir, files)
			if c.manifest != "" {
				writeFile(t, filepath.Join(dir, ManifestFile), c.manifest)
			}
			m, err := Load(dir, Options{})
			if err == nil {
				m.Close()
				t.Fatal("Load succeeded, want an error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestLoadMissingDir(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope"), Options{})
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want not-exist", err)
	}
}

// TestInferredLayouts: a directory without model.json in either
// transformers.js layout loads with defaults and reproduces the goldens.
func TestInferredLayouts(t *testing.T) {
	g := loadGoldens(t, parityDir)
	for _, sub := range []string{"", "onnx/"} {
		t.Run("layout "+sub, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "clip-export")
			linkFiles(t, dir, map[string]string{
				sub + "vision_model.onnx": parityFiles["vision_model.onnx"],
				sub + "text_model.onnx":   parityFiles["text_model.onnx"],
			})
			m := loadModel(t, dir, Options{})
			man := m.Manifest()
			if !man.Inferred || man.Dim != 64 || man.Name != "clip-export" || m.Version() != "clip-export@onnx" {
				t.Errorf("manifest = %+v, version %q", man, m.Version())
			}
			if man.Text.AttentionMask != "attention_mask" || man.Text.InputIDsDType != DTypeInt64 || man.Image.CropSize() != 224 {
				t.Errorf("inferred text/image settings: %+v %+v", man.Text, man.Image)
			}
			e, err := m.EmbedPixels(context.Background(), g.Pixels, len(g.Images))
			if err != nil {
				t.Fatal(err)
			}
			if c := vecmath.Cosine(e[0], g.ImageEmbeds[0]); c < tensorParityMin {
				t.Errorf("cosine %.6f", c)
			}
		})
	}
}

func TestInferredPreprocessorConfig(t *testing.T) {
	dir := t.TempDir()
	linkFiles(t, dir, map[string]string{
		"onnx/vision_model.onnx": parityFiles["vision_model.onnx"],
		"onnx/text_model.onnx":   parityFiles["text_model.onnx"],
	})
	writeFile(t, filepath.Join(dir, "preprocessor_config.json"), `{
  "crop_size": {"height": 224, "width": 224}, "do_center_crop": true,
  "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25],
  "size": {"shortest_edge": 240}, "resample": 3}`)
	m := loadModel(t, dir, Options{})
	im := m.Manifest().Image
	if im.Size != 240 || im.CropSize() != 224 || im.Mean != [3]float32{0.5, 0.5, 0.5} || im.Std != [3]float32{0.25, 0.25, 0.25} || im.Resize != ResizeShortest {
		t.Errorf("image manifest from preprocessor_config.json: %+v", im)
	}
}

// TestFixtureModels covers int32 ids, a text model without a mask, and an
// image model whose output dimension is symbolic (probed at load).
func TestFixtureModels(t *testing.T) {
	dir := t.TempDir()
	linkFiles(t, dir, map[string]string{
		"v.onnx": filepath.Join(fixturesDir, "vision_symbolic_dim.onnx"),
		"t.onnx": filepath.Join(fixturesDir, "text_int32_nomask.onnx"),
	})
	writeFile(t, filepath.Join(dir, ManifestFile), `{"name": "fixture", "version": "0",
  "image": {"file": "v.onnx"},
  "text": {"file": "t.onnx", "input_ids_dtype": "int32"}}`)
	m := loadModel(t, dir, Options{})
	if m.Dim() != 64 || m.Manifest().Text.AttentionMask != "" {
		t.Fatalf("Dim %d, mask %q", m.Dim(), m.Manifest().Text.AttentionMask)
	}
	ids := make([]int64, 77)
	for i := range ids {
		ids[i] = int64(i % 7)
	}
	_, err := m.EmbedTokens(context.Background(), ids, []int64{1}, 1)
	if err == nil {
		t.Fatal("mask length mismatch accepted")
	}
	got, err := m.EmbedTokens(context.Background(), ids, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	// The fixture computes ids @ W with W[i][j] = sin(64i+j).
	want := make([]float32, 64)
	for j := range want {
		var s float64
		for i, x := range ids {
			s += float64(x) * float64(float32(math.Sin(float64(64*i+j))))
		}
		want[j] = float32(s)
	}
	vecmath.Normalize(want)
	if c := vecmath.Cosine(got[0], want); c < 0.99999 {
		t.Errorf("int32 fixture: cosine %.7f", c)
	}
}

func TestProviders(t *testing.T) {
	requireORT(t)
	for _, p := range []string{"cuda", "tensorrt"} {
		t.Run(p, func(t *testing.T) {
			m, err := Load(parityDir, Options{Provider: p})
			if err == nil {
				// A GPU build of ORT: the provider exists, nothing to check.
				m.Close()
				t.Skipf("this onnxruntime library has the %s provider", p)
			}
			if !errors.Is(err, ErrProviderUnavailable) || !strings.Contains(err.Error(), "no "+p+" execution provider") || strings.Contains(err.Error(), "\n") {
				t.Errorf("err = %v", err)
			}
			t.Log(err)
		})
	}
	if _, err := Load(parityDir, Options{Provider: "tpu"}); err == nil || !strings.Contains(err.Error(), `unknown execution provider "tpu"`) {
		t.Errorf("unknown provider: err = %v", err)
	}
	m := loadModel(t, parityDir, Options{Provider: "CPU", IntraOpThreads: 1, InterOpThreads: 1, Spin: true})
	if m.Dim() != 64 {
		t.Error(m.Dim())
	}
}

func TestEmbedArgErrors(t *testing.T) {
	m := loadModel(t, parityDir, Options{})
	ctx := context.Background()
	px := make([]float32, 3*224*224)
	if out, err := m.EmbedPixels(ctx, nil, 0); err != nil || len(out) != 0 {
		t.Errorf("n=0: %v %v", out, err)
	}
	if _, err := m.EmbedPixels(ctx, px[:10], 1); err == nil || !strings.Contains(err.Error(), "want n×3×224×224") {
		t.Errorf("short pixels: %v", err)
	}
	if _, err := m.EmbedPixels(ctx, px, -1); err == nil {
		t.Error("negative n accepted")
	}
	if _, err := m.EmbedTokens(ctx, make([]int64, 77*2+1), nil, 2); err == nil || !strings.Contains(err.Error(), "equal sequences") {
		t.Errorf("ragged ids: %v", err)
	}
	if _, err := m.EmbedTokens(ctx, make([]int64, 78), nil, 1); err == nil || !strings.Contains(err.Error(), "exceeds the model's context length 77") {
		t.Errorf("long ids: %v", err)
	}
	// Shorter sequences than the context length are fine (dynamic axis).
	ids := []int64{49406, 320, 2368, 49407}
	short, err := m.EmbedTokens(ctx, ids, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	padded := append(append([]int64{}, ids...), make([]int64, 73)...)
	full, err := m.EmbedTokens(ctx, padded, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	if c := vecmath.Cosine(short[0], full[0]); c < 0.99999 {
		t.Errorf("unpadded vs padded: cosine %.7f", c)
	}
}

func TestContextAndClose(t *testing.T) {
	requireORT(t)
	m, err := Load(parityDir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	px := make([]float32, 3*224*224)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.EmbedPixels(ctx, px, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: %v", err)
	}
	if _, err := m.EmbedTokens(ctx, make([]int64, 77), nil, 1); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: %v", err)
	}
	// A live cancellable context goes through the RunOptions path.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	if _, err := m.EmbedPixels(ctx2, px, 1); err != nil {
		t.Errorf("live ctx: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := m.EmbedPixels(context.Background(), px, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

// TestCancelDuringRun: cancelling while ORT runs a large batch stops it
// early with ctx's error (through RunOptions' terminate flag).
func TestCancelDuringRun(t *testing.T) {
	m := loadModel(t, parityDir, Options{IntraOpThreads: 1})
	const n = 256
	px := make([]float32, n*3*224*224)
	start := time.Now()
	if _, err := m.EmbedPixels(context.Background(), px, n); err != nil {
		t.Fatal(err)
	}
	full := time.Since(start)
	ctx, cancel := context.WithTimeout(context.Background(), full/10)
	defer cancel()
	start = time.Now()
	_, err := m.EmbedPixels(ctx, px, n)
	took := time.Since(start)
	t.Logf("batch of %d: %v uncancelled, %v with a %v deadline (err %v)", n, full, took, full/10, err)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
	// How much earlier the terminated run ends is a timing, reported rather than
	// asserted (a loaded machine stretches both runs unevenly).
	t.Logf("cancelled run took %.0f%% of the uncancelled one", 100*took.Seconds()/full.Seconds())
}

func TestResolveLibPath(t *testing.T) {
	root := t.TempDir()
	mk := func(rel string) string {
		p := filepath.Join(root, rel)
		writeFile(t, p, "not really a library")
		return p
	}
	v124 := mk("repo/.cache/ort/1.24.1/libonnxruntime.so")
	v130 := mk("repo/.cache/ort/1.30.0/libonnxruntime.so")
	mk("repo/.cache/ort/1.9.0/libonnxruntime.so")
	exeLib := mk("bin/libonnxruntime.so")
	explicit := mk("elsewhere/libonnxruntime.so")
	deep := filepath.Join(root, "repo", "a", "b")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	_ = v124
	cases := []struct {
		name    string
		s       libSearch
		want    string
		wantErr string
	}{
		{"explicit wins", libSearch{explicit: explicit, env: v124, dirs: []string{deep}}, explicit, ""},
		{"explicit dir", libSearch{explicit: filepath.Dir(explicit)}, explicit, ""},
		{"env next", libSearch{env: v124, dirs: []string{deep}}, v124, ""},
		{"cache in ancestors, newest version", libSearch{dirs: []string{deep}, exeDir: filepath.Dir(exeLib)}, v130, ""},
		{"next to executable", libSearch{dirs: []string{filepath.Join(root, "bin")}, exeDir: filepath.Dir(exeLib)}, exeLib, ""},
		{"explicit missing", libSearch{explicit: filepath.Join(root, "nope.so"), dirs: []string{deep}}, "", "ort library option=" + filepath.Join(root, "nope.so")},
		{"env missing", libSearch{env: filepath.Join(root, "nope.so"), dirs: []string{deep}}, "", EnvORTLib + "=" + filepath.Join(root, "nope.so")},
		{"nothing", libSearch{dirs: []string{t.TempDir()}}, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := resolveLibPath(c.s)
			if c.want != "" {
				if err != nil || got != c.want {
					t.Errorf("got %q, %v; want %q", got, err, c.want)
				}
				return
			}
			if !errors.Is(err, ErrORTNotFound) {
				t.Fatalf("err = %v, want ErrORTNotFound", err)
			}
			if !strings.HasPrefix(err.Error(), "onnxruntime library not found: run scripts/ort-setup.sh or set XMODAL_ORT_LIB") || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("message %q", err)
			}
		})
	}
}

func TestVersionLess(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{{"1.24.1", "1.30.0", true}, {"1.9.0", "1.24.1", true}, {"1.24.1", "1.24.1", false}, {"1.24", "1.24.1", true}, {"2.0", "1.99", false}} {
		if got := versionLess(c.a, c.b); got != c.want {
			t.Errorf("versionLess(%s, %s) = %v", c.a, c.b, got)
		}
	}
}

func FuzzParseManifest(f *testing.F) {
	data, err := os.ReadFile(filepath.Join(parityDir, ManifestFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte(`{"name":"x","image":{"file":"a"},"text":{"file":"b"},"hash":{"bits":64}}`))
	f.Add([]byte(`{"name":"x","image":{"file":"a","crop":-1},"text":{"file":"b","tokenizer":{"context_length":1}}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") && !strings.Contains(err.Error(), "bad JSON") && !strings.Contains(err.Error(), "unknown key") {
				t.Errorf("multi-line error: %q", err)
			}
			return
		}
		if m.Validate() != nil || m.Image.CropSize() <= 0 || m.Text.Tokenizer.ContextLength < 2 || m.Name == "" {
			t.Errorf("accepted an invalid manifest: %+v", m)
		}
	})
}
