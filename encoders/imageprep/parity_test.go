package imageprep

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// Goldens come from tools/gen_preprocess_goldens.py (CLIPImageProcessor of
// transformers 4.57 with Pillow 11); see that script for the encoding.
const (
	repoRoot      = "../.."
	preprocessDir = repoRoot + "/testdata/preprocess"
)

type manifest struct {
	Transformers string          `json:"transformers"`
	Pillow       string          `json:"pillow"`
	Entries      []manifestEntry `json:"entries"`
	Scaled       []scaledEntry   `json:"scaled"`
}

// scaledEntry is libjpeg-turbo's output for a JPEG reduced in the IDCT, as
// Pillow's draft produces it.
type scaledEntry struct {
	Name    string `json:"name"`
	Source  string `json:"source"`
	Draft   int    `json:"draft"`
	Scale   int    `json:"scale"`
	Width   int    `json:"width"`
	Height  int    `json:"height"`
	Decoded string `json:"decoded"`
}

type manifestEntry struct {
	Name    string `json:"name"`
	Source  string `json:"source"`
	PILMode string `json:"pil_mode"`
	Width   int    `json:"width"`
	Height  int    `json:"height"`
	Spec    struct {
		Size     int        `json:"size"`
		CropSize int        `json:"crop_size"`
		Resize   string     `json:"resize"`
		Mean     [3]float32 `json:"mean"`
		Std      [3]float32 `json:"std"`
	} `json:"spec"`
	Golden  string `json:"golden"`
	SHA256  string `json:"tensor_sha256"`
	Decoded string `json:"decoded"`
	// Draft, when set, is the size passed to Pillow's Image.draft before
	// preprocessing (fast mode), and Scale the reduction Pillow chose.
	Draft int `json:"draft"`
	Scale int `json:"scale"`
}

// decoder returns the decoder the entry's golden was made for: fast mode
// with the entry's draft size, or exact mode.
func (e manifestEntry) decoder(t testing.TB) *Decoder {
	t.Helper()
	opt := DecoderOptions{Mode: ModeExact}
	if e.Draft > 0 {
		opt = DecoderOptions{Mode: ModeFast, Need: Need{Draft: e.Draft}}
	}
	d, err := NewDecoder(opt)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (e manifestEntry) spec() Spec {
	return Spec{Size: e.Spec.Size, CropSize: e.Spec.CropSize, Resize: e.Spec.Resize, Mean: e.Spec.Mean, Std: e.Spec.Std}
}

func loadManifest(t testing.TB) manifest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(preprocessDir, "manifest.json"))
	if err != nil {
		t.Fatalf("goldens missing (run tools/gen_preprocess_goldens.py): %v", err)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Entries) < 15 {
		t.Fatalf("manifest has %d entries, want at least 15", len(m.Entries))
	}
	return m
}

func readPNG(t testing.TB, path string) image.Image {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

// goldenTensor rebuilds CLIPImageProcessor's tensor from the stored levels
// and checks it against the recorded hash of the processor's float32 output.
func goldenTensor(t testing.TB, e manifestEntry) []float32 {
	t.Helper()
	s := e.spec()
	lv := readPNG(t, filepath.Join(preprocessDir, e.Golden))
	c := s.Crop()
	if b := lv.Bounds(); b.Dx() != c || b.Dy() != c {
		t.Fatalf("%s: golden is %v, want %dx%d", e.Name, b, c, c)
	}
	rgb := make([]byte, c*c*3)
	src := newRowSource(lv)
	for y := 0; y < c; y++ {
		src.row(y, rgb[y*c*3:(y+1)*c*3])
	}
	out := make([]float32, s.TensorLen())
	normalize(rgb, s, out)
	buf := make([]byte, 4*len(out))
	for i, v := range out {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
	}
	sum := sha256.Sum256(buf)
	if got := hex.EncodeToString(sum[:]); got != e.SHA256 {
		t.Fatalf("%s: rebuilt golden tensor hash %s, manifest says %s: normalize() no longer matches transformers' arithmetic", e.Name, got, e.SHA256)
	}
	return out
}

type diffStats struct {
	mean, p99, max float64
	n              int
}

func absDiffs(a, b []float32) []float64 {
	d := make([]float64, len(a))
	for i := range a {
		d[i] = math.Abs(float64(a[i]) - float64(b[i]))
	}
	return d
}

func stats(d []float64) diffStats {
	if len(d) == 0 {
		return diffStats{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	var sum float64
	for _, v := range s {
		sum += v
	}
	return diffStats{mean: sum / float64(len(s)), p99: s[int(0.99*float64(len(s)-1))], max: s[len(s)-1], n: len(s)}
}

// TestParityCLIPImageProcessor decodes each golden source with a Decoder
// (exact mode, or fast mode with Pillow's draft size for the fast goldens),
// preprocesses it and requires CLIPImageProcessor's tensor bit for bit: the
// JPEG decoder is libjpeg-turbo, as in Pillow, so nothing differs.
func TestParityCLIPImageProcessor(t *testing.T) {
	m := loadManifest(t)
	t.Logf("goldens: transformers %s, Pillow %s, %d images", m.Transformers, m.Pillow, len(m.Entries))
	fast := 0
	for _, e := range m.Entries {
		want := goldenTensor(t, e)
		data, err := os.ReadFile(filepath.Join(repoRoot, e.Source))
		if err != nil {
			t.Fatal(err)
		}
		dec, err := e.decoder(t).Decode(context.Background(), data)
		if err != nil {
			t.Errorf("%s: Decode: %v", e.Name, err)
			continue
		}
		if e.Draft > 0 {
			fast++
			if dec.Scale != e.Scale {
				t.Errorf("%s: decoded at 1/%d, Pillow's draft(%d) at 1/%d", e.Name, dec.Scale, e.Draft, e.Scale)
			}
		}
		img := dec.Image
		if e.Draft == 0 {
			if b := img.Bounds(); b.Dx() != e.Width || b.Dy() != e.Height {
				t.Errorf("%s: decoded %dx%d, Pillow (after exif_transpose) %dx%d", e.Name, b.Dx(), b.Dy(), e.Width, e.Height)
				continue
			}
		}
		got := Preprocess(img, e.spec(), nil)
		dec.Release()
		st := stats(absDiffs(got, want))
		t.Logf("%-34s %-4s %4dx%-4d 1/%d  mean %.5f  max %.5f", e.Name, dec.Format, e.Width, e.Height, dec.Scale, st.mean, st.max)
		if st.max != 0 {
			t.Errorf("%s: tensor differs from CLIPImageProcessor's: mean abs diff %.5f, max %.5f (want identical)", e.Name, st.mean, st.max)
		}
	}
	if fast < 5 {
		t.Errorf("%d fast-mode goldens, want at least 5", fast)
	}
}

// TestScaledDecodeMatchesLibjpegTurbo: a JPEG decoded at 1/2, 1/4 and 1/8
// has libjpeg-turbo's scaled size and pixels (as Pillow's draft returns
// them), for every chroma subsampling, progressive, restart markers, CMYK,
// greyscale, RGB-coded and EXIF-rotated files.
func TestScaledDecodeMatchesLibjpegTurbo(t *testing.T) {
	m := loadManifest(t)
	scales := map[int]int{}
	for _, e := range m.Scaled {
		t.Run(e.Name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(repoRoot, e.Source))
			if err != nil {
				t.Fatal(err)
			}
			d, err := NewDecoder(DecoderOptions{Need: Need{Draft: e.Draft}})
			if err != nil {
				t.Fatal(err)
			}
			dec, err := d.Decode(context.Background(), data)
			if err != nil {
				t.Fatal(err)
			}
			defer dec.Release()
			if dec.Scale != e.Scale {
				t.Fatalf("scale 1/%d, want 1/%d", dec.Scale, e.Scale)
			}
			scales[e.Scale]++
			want := readPNG(t, filepath.Join(preprocessDir, e.Decoded))
			if b := dec.Image.Bounds(); b.Dx() != e.Width || b.Dy() != e.Height || want.Bounds() != b {
				t.Fatalf("decoded %v, libjpeg-turbo %dx%d (golden %v)", b, e.Width, e.Height, want.Bounds())
			}
			wr := newRowSource(want)
			row := make([]byte, 3*e.Width)
			diff := 0
			for y := 0; y < e.Height; y++ {
				wr.row(y, row)
				for i, v := range dec.Image.RowRGB(y) {
					if v != row[i] {
						diff++
					}
				}
			}
			if diff != 0 {
				t.Errorf("%d of %d samples differ from libjpeg-turbo's", diff, 3*e.Width*e.Height)
			}
		})
	}
	for _, s := range []int{2, 4, 8} {
		if scales[s] < 10 {
			t.Errorf("%d goldens at 1/%d, want at least 10", scales[s], s)
		}
	}
}

// TestParityIdenticalPixels separates the resampler from the decoders: fed
// Pillow's own decoded pixels, Preprocess must reproduce CLIPImageProcessor
// exactly. It also reports how far our decoders are from Pillow's on the
// same files.
func TestParityIdenticalPixels(t *testing.T) {
	m := loadManifest(t)
	n := 0
	for _, e := range m.Entries {
		if e.Decoded == "" {
			continue
		}
		n++
		want := goldenTensor(t, e)
		pil := readPNG(t, filepath.Join(preprocessDir, e.Decoded))
		got := Preprocess(pil, e.spec(), nil)
		if st := stats(absDiffs(got, want)); st.max != 0 {
			t.Errorf("%s: on Pillow's decoded pixels: mean %.6f max %.6f, want bit-identical", e.Name, st.mean, st.max)
		}

		// Decoder difference, in 8-bit levels, before any resizing.
		data, err := os.ReadFile(filepath.Join(repoRoot, e.Source))
		if err != nil {
			t.Fatal(err)
		}
		img, _, err := Decode(data, Limits{})
		if err != nil {
			t.Fatalf("%s: %v", e.Name, err)
		}
		a, b := newRowSource(img), newRowSource(pil)
		w, h := a.size()
		if bw, bh := b.size(); bw != w || bh != h {
			t.Fatalf("%s: decoded %dx%d, Pillow %dx%d", e.Name, w, h, bw, bh)
		}
		ra, rb := make([]byte, 3*w), make([]byte, 3*w)
		var sum, maxd, exact int
		for y := 0; y < h; y++ {
			a.row(y, ra)
			b.row(y, rb)
			for i := range ra {
				d := int(ra[i]) - int(rb[i])
				if d < 0 {
					d = -d
				}
				sum += d
				maxd = max(maxd, d)
				if d == 0 {
					exact++
				}
			}
		}
		t.Logf("decoder vs Pillow %-28s mean %.3f levels, max %3d, identical %.1f%%", e.Name, float64(sum)/float64(3*w*h), maxd, 100*float64(exact)/float64(3*w*h))
		if maxd != 0 {
			t.Errorf("%s: decoded pixels differ from Pillow's (max %d levels)", e.Name, maxd)
		}
	}
	if n < 5 {
		t.Fatalf("only %d entries with decoded pixels", n)
	}
}
