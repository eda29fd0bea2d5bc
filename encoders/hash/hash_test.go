package hash

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xmodal/xmodal/domain"
)

func normalize(v []float32) []float32 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	inv := float32(1 / math.Sqrt(s))
	for i := range v {
		v[i] *= inv
	}
	return v
}

// pairs makes n image/text pairs around nc cluster centres in dim
// dimensions, with a constant offset per modality (the "modality gap"
// that CLIP-style models show): image_i = norm(c + noise + gapI),
// text_i = norm(c + noise' + gapT). label[i] is the cluster.
func pairs(n, nc, dim int, seed uint64) (imgs, txts [][]float32, label []int) {
	r := rand.New(rand.NewPCG(seed, 99))
	vec := func(scale float64) []float32 {
		v := make([]float32, dim)
		for i := range v {
			v[i] = float32(r.NormFloat64() * scale)
		}
		return v
	}
	centres := make([][]float32, nc)
	for i := range centres {
		centres[i] = normalize(vec(1))
	}
	gapI, gapT := normalize(vec(1)), normalize(vec(1))
	for i := 0; i < n; i++ {
		c := r.IntN(nc)
		mk := func(gap []float32) []float32 {
			v := vec(0.35 / math.Sqrt(float64(dim)))
			for j := range v {
				v[j] += centres[c][j] + 1.5*gap[j]
			}
			return normalize(v)
		}
		imgs = append(imgs, mk(gapI))
		txts = append(txts, mk(gapT))
		label = append(label, c)
	}
	return
}

func fused(imgs, txts [][]float32) [][]float32 {
	out := make([][]float32, len(imgs))
	for i := range imgs {
		v := make([]float32, len(imgs[i]))
		for j := range v {
			v[j] = imgs[i][j] + txts[i][j]
		}
		out[i] = normalize(v)
	}
	return out
}

func mustFit(t testing.TB, s Samples, opt FitOptions) *Coder {
	t.Helper()
	c, err := Fit(context.Background(), s, opt)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCheckBits(t *testing.T) {
	tests := []struct {
		bits, dim int
		want      string // "" for no error
	}{
		{16, 512, ""}, {32, 512, ""}, {64, 64, ""}, {128, 512, ""}, {256, 256, ""},
		{0, 512, "0 bits is not supported"},
		{8, 512, "8 bits is not supported"},
		{48, 512, "48 bits is not supported (want one of 16, 32, 64, 128, 256)"},
		{512, 512, "512 bits is not supported"},
		{-64, 512, "-64 bits"},
		{128, 64, "128 bits exceed the embedding dimension 64"},
		{256, 100, "256 bits exceed the embedding dimension 100"},
	}
	for _, tc := range tests {
		err := CheckBits(tc.bits, tc.dim)
		if tc.want == "" {
			if err != nil {
				t.Errorf("CheckBits(%d, %d) = %v", tc.bits, tc.dim, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckBits(%d, %d) = %v, want %q", tc.bits, tc.dim, err, tc.want)
		}
	}
}

// identity returns ITQ parameters whose projection is the identity on the
// first bits dimensions and whose means are zero.
func identity(dim, bits int) Params {
	p := Params{Format: Format, Method: MethodITQ, Model: "m@1", Dim: dim, Bits: bits,
		Means: map[string][]float32{"image": make([]float32, dim), "text": make([]float32, dim)}}
	for i := 0; i < dim; i++ {
		row := make([]float32, bits)
		if i < bits {
			row[i] = 1
		}
		p.Projection = append(p.Projection, row)
	}
	return p
}

func TestCodePackingMSBFirst(t *testing.T) {
	c, err := New(identity(32, 16))
	if err != nil {
		t.Fatal(err)
	}
	for bit := 0; bit < 16; bit++ {
		v := make([]float32, 32)
		for i := range v {
			v[i] = -1
		}
		v[bit] = 1
		code := c.Code(v, domain.ModalityImage)
		want := make([]byte, 2)
		want[bit/8] = 0x80 >> (bit % 8)
		if string(code) != string(want) {
			t.Errorf("bit %d: code %08b, want %08b", bit, code, want)
		}
	}
	if got := c.Code(make([]float32, 31), domain.ModalityText); got != nil {
		t.Errorf("code of a vector of the wrong dimension = %v, want nil", got)
	}
	if c.Bytes() != 2 || c.Bits() != 16 || c.Dim() != 32 || c.Method() != MethodITQ || c.Model() != "m@1" {
		t.Errorf("accessors: %d %d %d %s %s", c.Bytes(), c.Bits(), c.Dim(), c.Method(), c.Model())
	}
}

func TestModalityMeans(t *testing.T) {
	p := identity(16, 16)
	p.Means["image"][0] = 0.5
	p.Means["text"][0] = -0.5
	c, err := New(p)
	if err != nil {
		t.Fatal(err)
	}
	v := make([]float32, 16)
	v[0] = 0.2 // above the text mean, below the image mean
	if got := c.Code(v, domain.ModalityText)[0] >> 7; got != 1 {
		t.Errorf("text: bit 0 = %d, want 1", got)
	}
	if got := c.Code(v, domain.ModalityImage)[0] >> 7; got != 0 {
		t.Errorf("image: bit 0 = %d, want 0", got)
	}
	// Fused without its own mean, and "", centre on the average of the two (0).
	for _, m := range []domain.Modality{domain.ModalityFused, ""} {
		if got := c.Code(v, m)[0] >> 7; got != 1 {
			t.Errorf("%q: bit 0 = %d, want 1", m, got)
		}
	}
}

func TestHamming(t *testing.T) {
	a := []byte{0xff, 0, 0x0f, 1, 2, 3, 4, 5, 6, 7, 8}
	b := []byte{0x00, 0, 0x0f, 1, 2, 3, 4, 5, 6, 7, 9}
	if got := Hamming(a, b); got != 9 {
		t.Errorf("Hamming = %d, want 9", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("Hamming of different lengths did not panic")
		}
	}()
	Hamming(a, b[:3])
}

func TestSimHashAngles(t *testing.T) {
	const dim, bits = 256, 256
	c, err := NewSimHash("m@1", dim, bits, 3)
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := NewSimHash("m@1", dim, bits, 3)
	if c.ID() != c2.ID() {
		t.Errorf("same seed, different ids %s %s", c.ID(), c2.ID())
	}
	c3, _ := NewSimHash("m@1", dim, bits, 4)
	if c.ID() == c3.ID() {
		t.Error("another seed gives the same id")
	}
	// The expected Hamming distance of two vectors is bits * angle / pi.
	imgs, _, _ := pairs(400, 50, dim, 1)
	var got, want float64
	for i := 1; i < len(imgs); i++ {
		a, b := imgs[i-1], imgs[i]
		var d float64
		for j := range a {
			d += float64(a[j] * b[j])
		}
		want += bits * math.Acos(math.Max(-1, math.Min(1, d))) / math.Pi
		got += float64(Hamming(c.Code(a, domain.ModalityImage), c.Code(b, domain.ModalityImage)))
	}
	if math.Abs(got-want)/want > 0.05 {
		t.Errorf("mean Hamming %.2f, expected %.2f from the angles", got/399, want/399)
	}
}

func TestFitITQ(t *testing.T) {
	const dim, bits = 64, 32
	imgs, txts, label := pairs(3000, 40, dim, 7)
	s := Samples{Image: imgs[:2000], Text: txts[:2000], Fused: fused(imgs[:2000], txts[:2000])}
	c := mustFit(t, s, FitOptions{Model: "m@1", Bits: bits})
	p := c.Params()
	if p.Samples["image"] != 2000 || p.Samples["text"] != 2000 || p.Samples["fused"] != 2000 || p.Iterations != 50 {
		t.Errorf("fit statistics %+v", p.Samples)
	}
	// W has orthonormal columns (PCA basis times a rotation).
	for a := 0; a < bits; a++ {
		for b := 0; b < bits; b++ {
			var d float64
			for i := 0; i < dim; i++ {
				d += float64(p.Projection[i][a] * p.Projection[i][b])
			}
			want := 0.0
			if a == b {
				want = 1
			}
			if math.Abs(d-want) > 1e-4 {
				t.Fatalf("WᵀW[%d][%d] = %g, want %g", a, b, d, want)
			}
		}
	}
	// The rotation lowers the quantisation loss.
	one := mustFit(t, s, FitOptions{Model: "m@1", Bits: bits, Iterations: 1})
	if !(p.Loss < one.Params().Loss) {
		t.Errorf("loss after 50 iterations %g, after 1 %g", p.Loss, one.Params().Loss)
	}
	// Deterministic.
	if again := mustFit(t, s, FitOptions{Model: "m@1", Bits: bits}); again.ID() != c.ID() {
		t.Errorf("refit gives id %s, first %s", again.ID(), c.ID())
	}

	// Cross-modal retrieval on held-out pairs: the paired text of an image is
	// much nearer than a random text, and per-modality centring matters.
	global := p
	all := mean(append(append([][]float32{}, s.Image...), s.Text...), dim)
	global.Means = map[string][]float32{"image": all, "text": all}
	gc, err := New(global)
	if err != nil {
		t.Fatal(err)
	}
	paired := func(c *Coder) (pairD, randD, prec float64) {
		n := 0
		for i := 2000; i < 3000; i++ {
			ci := c.Code(imgs[i], domain.ModalityImage)
			pairD += float64(Hamming(ci, c.Code(txts[i], domain.ModalityText)))
			j := 2000 + (i*7919)%1000
			randD += float64(Hamming(ci, c.Code(txts[j], domain.ModalityText)))
			// precision of the nearest text among 200 held-out texts
			best, bestD := -1, 1<<30
			for k := 2000; k < 2200; k++ {
				if d := Hamming(ci, c.Code(txts[k], domain.ModalityText)); d < bestD {
					best, bestD = k, d
				}
			}
			if label[best] == label[i] {
				prec++
			}
			n++
		}
		return pairD / float64(n), randD / float64(n), prec / float64(n)
	}
	pd, rd, prec := paired(c)
	gpd, grd, gprec := paired(gc)
	t.Logf("per-modality means: paired %.1f, random %.1f, nearest-text label precision %.3f", pd, rd, prec)
	t.Logf("one global mean:    paired %.1f, random %.1f, nearest-text label precision %.3f", gpd, grd, gprec)
	if !(pd < rd/2) || prec < 0.9 {
		t.Errorf("per-modality ITQ: paired %.1f vs random %.1f, precision %.3f", pd, rd, prec)
	}
	if !(2*pd < gpd) || prec < gprec {
		t.Errorf("per-modality centring (paired %.1f, precision %.3f) is not clearly better than global centring (paired %.1f, precision %.3f)", pd, prec, gpd, gprec)
	}
}

func TestFitErrors(t *testing.T) {
	imgs, txts, _ := pairs(100, 5, 32, 1)
	tests := []struct {
		name string
		s    Samples
		opt  FitOptions
		want string
	}{
		{"no images", Samples{Text: txts}, FitOptions{Bits: 16}, "both modalities (got 0 images, 100 texts)"},
		{"bits unsupported", Samples{Image: imgs, Text: txts}, FitOptions{Bits: 24}, "24 bits is not supported"},
		{"bits above dim", Samples{Image: imgs, Text: txts}, FitOptions{Bits: 64}, "64 bits exceed the embedding dimension 32"},
		{"mixed dims", Samples{Image: imgs, Text: append([][]float32{make([]float32, 7)}, txts...)}, FitOptions{Bits: 16}, "text sample 0 has dimension 7, want 32"},
		{"too few", Samples{Image: imgs[:10], Text: txts[:10]}, FitOptions{Bits: 16}, "20 samples are too few for 16 bits"},
	}
	for _, tc := range tests {
		_, err := Fit(context.Background(), tc.s, tc.opt)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Fit(ctx, Samples{Image: imgs, Text: txts}, FitOptions{Bits: 16}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled fit: %v", err)
	}
}

func TestSaveLoad(t *testing.T) {
	imgs, txts, _ := pairs(500, 10, 64, 3)
	c := mustFit(t, Samples{Image: imgs, Text: txts}, FitOptions{Model: "clip@2", Bits: 64, Data: "test pairs"})
	path := filepath.Join(t.TempDir(), "hash.json")
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path, "clip@2", 64)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID() != c.ID() {
		t.Errorf("loaded id %s, saved %s", got.ID(), c.ID())
	}
	for i := range 50 {
		for _, m := range domain.Modalities {
			if a, b := c.Code(imgs[i], m), got.Code(imgs[i], m); string(a) != string(b) {
				t.Fatalf("code %d %s differs after load", i, m)
			}
		}
	}
	// Another model's file is an error naming both.
	for _, tc := range []struct {
		model string
		dim   int
	}{{"clip@3", 64}, {"clip@2", 512}, {"other@1", 32}} {
		_, err := Load(path, tc.model, tc.dim)
		var me *ModelMismatchError
		if !errors.As(err, &me) {
			t.Fatalf("load for %s/%d: %v, want a ModelMismatchError", tc.model, tc.dim, err)
		}
		for _, s := range []string{path, `"clip@2" (dim 64)`, tc.model, "xmodal hash fit"} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not name %q", err, s)
			}
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "nope.json"), "", 0); err == nil {
		t.Error("loading a missing file succeeded")
	}
}

func TestParseErrors(t *testing.T) {
	ok := identity(16, 16)
	mod := func(f func(p *Params)) string {
		p := ok
		p.Means = map[string][]float32{"image": make([]float32, 16), "text": make([]float32, 16)}
		p.Projection = append([][]float32(nil), ok.Projection...)
		f(&p)
		b, _ := json.Marshal(p)
		return string(b)
	}
	tests := []struct {
		name, data, want string
	}{
		{"not json", "{", "hash: parameters"},
		{"format", mod(func(p *Params) { p.Format = "v9" }), `format "v9"`},
		{"method", mod(func(p *Params) { p.Method = "lsh" }), `method "lsh" is unknown`},
		{"bits", mod(func(p *Params) { p.Bits = 12 }), "12 bits is not supported"},
		{"bits over dim", mod(func(p *Params) { p.Bits = 32 }), "32 bits exceed the embedding dimension 16"},
		{"dim", mod(func(p *Params) { p.Dim = 0 }), "dimension 0 must be between 1 and 65536"},
		{"rows", mod(func(p *Params) { p.Projection = p.Projection[:3] }), "projection has 3 rows, want the dimension 16"},
		{"cols", mod(func(p *Params) { p.Projection[2] = []float32{1} }), "row 2 has 1 columns, want 16 bits"},
		{"no text mean", mod(func(p *Params) { delete(p.Means, "text") }), "lack the text mean"},
		{"bad mean key", mod(func(p *Params) { p.Means["audio"] = make([]float32, 16) }), `unknown modality "audio"`},
		{"short mean", mod(func(p *Params) { p.Means["image"] = []float32{1} }), "image mean has 1 values"},
		{"simhash with projection", mod(func(p *Params) { p.Method = MethodSimHash }), "simhash parameters carry no projection"},
	}
	for _, tc := range tests {
		_, err := Parse([]byte(tc.data), "", 0)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestForModel(t *testing.T) {
	dir := t.TempDir()
	// Fallback: SimHash with 64 bits, or fewer for small dims, none under 16.
	c, src, err := ForModel(dir, nil, "m@1", 512)
	if err != nil || c.Method() != MethodSimHash || c.Bits() != 64 || !strings.Contains(src, "simhash") {
		t.Fatalf("fallback: %v %v %q", c, err, src)
	}
	if c, _, _ := ForModel(dir, nil, "m@1", 40); c.Bits() != 32 {
		t.Errorf("fallback at dim 40: %d bits", c.Bits())
	}
	if c, src, err := ForModel(dir, nil, "m@1", 8); c != nil || err != nil || !strings.Contains(src, "none") {
		t.Errorf("dim 8: %v %q %v", c, src, err)
	}
	// Inline parameters in the manifest.
	c, src, err = ForModel(dir, json.RawMessage(`{"method":"simhash","bits":128,"seed":7}`), "m@1", 512)
	if err != nil || c.Bits() != 128 || c.Params().Seed != 7 || src != "model.json" {
		t.Fatalf("inline: %v %v %q", c, err, src)
	}
	if _, _, err := ForModel(dir, json.RawMessage(`{"method":"simhash","bits":128,"model":"x@1"}`), "m@1", 512); err == nil || !strings.Contains(err.Error(), `"x@1"`) {
		t.Errorf("inline for another model: %v", err)
	}
	if _, _, err := ForModel(dir, json.RawMessage(`{"method":"simhash","bitz":128}`), "m@1", 512); err == nil || !strings.Contains(err.Error(), "bitz") {
		t.Errorf("inline with an unknown key: %v", err)
	}
	if _, _, err := ForModel(dir, json.RawMessage(`{"file":"../x.json"}`), "m@1", 512); err == nil || !strings.Contains(err.Error(), "relative") {
		t.Errorf("file outside the directory: %v", err)
	}
	// hash.json in the directory, and a file named by the manifest.
	imgs, txts, _ := pairs(300, 10, 32, 5)
	fit := mustFit(t, Samples{Image: imgs, Text: txts}, FitOptions{Model: "m@1", Bits: 16})
	if err := fit.Save(filepath.Join(dir, ParamsFile)); err != nil {
		t.Fatal(err)
	}
	c, src, err = ForModel(dir, nil, "m@1", 32)
	if err != nil || c.ID() != fit.ID() || src != filepath.Join(dir, ParamsFile) {
		t.Fatalf("hash.json: %v %v %q", c, err, src)
	}
	if _, _, err := ForModel(dir, nil, "m@2", 32); err == nil || !strings.Contains(err.Error(), `fitted for model "m@1" (dim 32), not for "m@2" (dim 32)`) {
		t.Errorf("hash.json of another model: %v", err)
	}
	if err := os.Rename(filepath.Join(dir, ParamsFile), filepath.Join(dir, "hash-16.json")); err != nil {
		t.Fatal(err)
	}
	c, _, err = ForModel(dir, json.RawMessage(`{"file":"hash-16.json"}`), "m@1", 32)
	if err != nil || c.ID() != fit.ID() {
		t.Fatalf("named file: %v %v", c, err)
	}
}

func FuzzParse(f *testing.F) {
	b, _ := json.Marshal(identity(16, 16))
	f.Add(b)
	f.Add([]byte(`{"method":"simhash","dim":32,"bits":16}`))
	f.Add([]byte(`{"method":"itq","dim":1,"bits":16,"projection":[[1]]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "", 0)
		if err != nil {
			return
		}
		if c.Dim() > 1<<14 {
			return
		}
		v := make([]float32, c.Dim())
		for i := range v {
			v[i] = float32(i%3) - 1
		}
		if code := c.Code(v, domain.ModalityText); len(code) != c.Bytes() {
			t.Fatalf("code of %d bytes, want %d", len(code), c.Bytes())
		}
	})
}
