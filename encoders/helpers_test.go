package encoders

import (
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/internal/vecmath"
)

// Paths of the committed test models (tools/build_parity_model.py).
var (
	parityDir   = filepath.Join("..", "testdata", "models", "parity")
	fixturesDir = filepath.Join("..", "testdata", "models", "fixtures")
	repoRoot    = ".."
)

// fullModelDir is the full-size random-weight ViT-B/32 built by
// `tools/build_parity_model.py --full` (not committed).
var fullModelDir = filepath.Join("..", ".cache", "models", "clip-vit-b32-random")

// goldens mirrors goldens.json.
type goldens struct {
	Tokenizer     string      `json:"tokenizer"`
	ContextLength int         `json:"context_length"`
	Dim           int         `json:"dim"`
	Texts         []string    `json:"texts"`
	InputIDs      [][]int64   `json:"input_ids"`
	AttentionMask [][]int64   `json:"attention_mask"`
	TextEmbeds    [][]float32 `json:"text_embeds"`
	Images        []string    `json:"images"`
	PixelsFile    string      `json:"pixels_file"`
	PixelsShape   []int       `json:"pixels_shape"`
	ImageEmbeds   [][]float32 `json:"image_embeds"`

	Pixels []float32 `json:"-"`
}

func loadGoldens(t testing.TB, dir string) *goldens {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "goldens", "goldens.json"))
	if err != nil {
		t.Fatalf("goldens: %v (run tools/build_parity_model.py)", err)
	}
	var g goldens
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatalf("goldens.json: %v", err)
	}
	f, err := os.Open(filepath.Join(dir, "goldens", g.PixelsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	n := 1
	for _, d := range g.PixelsShape {
		n *= d
	}
	if len(raw) != 4*n {
		t.Fatalf("pixels: %d bytes for shape %v", len(raw), g.PixelsShape)
	}
	g.Pixels = make([]float32, n)
	for i := range g.Pixels {
		g.Pixels[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return &g
}

func flatten(rows [][]int64) []int64 {
	var out []int64
	for _, r := range rows {
		out = append(out, r...)
	}
	return out
}

// requireORT ends the test through testutil.Unavailable (a failure under
// CI=true) when no ONNX Runtime library can be found.
func requireORT(t testing.TB) {
	t.Helper()
	if _, err := resolveLibPath(defaultLibSearch("")); err != nil {
		testutil.Unavailable(t, "ONNX Runtime library", "%v", err)
	}
}

// loadModel loads dir for one test and closes it at cleanup. A missing ORT
// library goes through requireORT.
func loadModel(t testing.TB, dir string, opt Options) *Model {
	t.Helper()
	if opt.LibPath == "" {
		requireORT(t)
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := Load(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

// copyDir links the files of src into a new temp dir (symlinks keep the
// 7 MB models from being copied for every case).
func linkFiles(t testing.TB, dst string, files map[string]string) {
	t.Helper()
	for name, src := range files {
		abs, err := filepath.Abs(src)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dst, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(abs, p); err != nil {
			t.Fatal(err)
		}
	}
}

func writeFile(t testing.TB, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// meanOffDiagonal is the mean cosine between different rows of a and b
// (a[i] against b[j], i != j).
func meanOffDiagonal(a, b [][]float32) float64 {
	var sum float64
	var n int
	for i := range a {
		for j := range b {
			if i != j {
				sum += vecmath.Cosine(a[i], b[j])
				n++
			}
		}
	}
	return sum / float64(n)
}
