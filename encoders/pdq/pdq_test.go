package pdq

import (
	"bytes"
	"encoding/binary"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/draw"
	"image/gif"
	"image/jpeg"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const (
	vectorsDir = "../../testdata/pdq"         // ThreatExchange's test images
	goldensDir = "../../testdata/pdq-goldens" // tools/gen_pdq_goldens.py
)

// fullRes hashes without the 512-pixel shrink, like the pdqhash wheel.
func fullRes() *Hasher { return &Hasher{MaxSide: -1} }

func decodeFile(t testing.TB, path string) image.Image {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, _, err := Decode(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

func mustParse(t testing.TB, s string) Hash {
	t.Helper()
	h, err := ParseHex(s)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestReferenceVectors checks every image of expected.csv (hashes from the
// Python reference, which shrinks to 512 px) decoded by Go's decoders.
func TestReferenceVectors(t *testing.T) {
	f, err := os.Open(filepath.Join(vectorsDir, "expected.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) < 2 || rows[0][0] != "path" {
		t.Fatalf("unexpected expected.csv header %v", rows[0])
	}
	var table strings.Builder
	fmt.Fprintf(&table, "%-40s %7s %4s %5s\n", "image", "quality", "dist", "limit")
	for _, row := range rows[1:] {
		want := mustParse(t, row[1])
		got, q := FromImage(decodeFile(t, filepath.Join(vectorsDir, row[0])))
		limit := 16
		if q >= 80 {
			limit = 10
		}
		d := Distance(got, want)
		fmt.Fprintf(&table, "%-40s %7d %4d %5d\n", row[0], q, d, limit)
		if d > limit {
			t.Errorf("%s: distance %d > %d (quality %d): got %s want %s", row[0], d, limit, q, got, want)
		}
	}
	t.Logf("distances to expected.csv:\n%s", table.String())
}

// golden is one entry of goldens.json.
type golden struct {
	Name     string   `json:"name"`
	Source   string   `json:"source"`
	Width    int      `json:"width"`
	Height   int      `json:"height"`
	Hash     string   `json:"hash"`
	Quality  int      `json:"quality"`
	Dihedral []string `json:"dihedral"`
	// The hash after PIL's thumbnail((512, 512)), for synthetic images
	// over 512 px.
	ThumbHash    string `json:"thumb_hash"`
	ThumbQuality int    `json:"thumb_quality"`
	Synth        *struct {
		Width, Height, Blocks, Seed uint32
	} `json:"synth"`
}

func loadGoldens(t testing.TB) []golden {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(goldensDir, "goldens.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Order  []string `json:"dihedral_order"`
		Images []golden `json:"images"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for d, name := range doc.Order {
		if Dihedral(d).String() != name {
			t.Fatalf("goldens' dihedral %d is %q, package has %q", d, name, Dihedral(d))
		}
	}
	return doc.Images
}

// mix is the lowbias32 integer hash that gen_pdq_goldens.py uses.
func mix(v uint32) uint32 {
	v ^= v >> 16
	v *= 0x7feb352d
	v ^= v >> 15
	v *= 0x846ca68b
	v ^= v >> 16
	return v
}

// synthImage regenerates gen_pdq_goldens.py's synthetic RGB image.
func synthImage(w, h, blocks, seed uint32) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, int(w), int(h)))
	for y := range h {
		for x := range w {
			bx, by := x*blocks/w, y*blocks/h
			var px [3]uint8
			for c := range uint32(3) {
				cs := seed*3 + c
				base := mix(mix(by*blocks+bx)^cs) >> 25
				noise := mix((y*w+x)^mix(cs+7777)) >> 28
				grad := x*64/w + y*32/h
				px[c] = uint8(base + noise + grad)
			}
			img.SetRGBA(int(x), int(y), color.RGBA{px[0], px[1], px[2], 0xff})
		}
	}
	return img
}

func (g golden) image(t testing.TB) image.Image {
	if g.Synth != nil {
		s := g.Synth
		return synthImage(s.Width, s.Height, s.Blocks, s.Seed)
	}
	return decodeFile(t, filepath.Join(goldensDir, g.Name))
}

// TestGoldens compares with the C++ reference (the pdqhash wheel) on
// identical pixels, at full resolution as the wheel hashes.
func TestGoldens(t *testing.T) {
	goldens := loadGoldens(t)
	if len(goldens) < 20 {
		t.Fatalf("only %d goldens", len(goldens))
	}
	var table strings.Builder
	fmt.Fprintf(&table, "%-36s %9s %7s %7s %4s %s\n", "image", "size", "q want", "q got", "dist", "dihedral dists")
	near, exact := 0, 0
	for _, g := range goldens {
		img := g.image(t)
		if b := img.Bounds(); b.Dx() != g.Width || b.Dy() != g.Height {
			t.Fatalf("%s: decoded %v, goldens say %dx%d", g.Name, b, g.Width, g.Height)
		}
		hs, q := fullRes().Dihedral(img)
		d := Distance(hs[Original], mustParse(t, g.Hash))
		var dd []string
		for i, want := range g.Dihedral {
			dv := Distance(hs[i], mustParse(t, want))
			dd = append(dd, fmt.Sprint(dv))
			if dv > 2 && q >= 50 {
				t.Errorf("%s: %v hash %d bits from the reference", g.Name, Dihedral(i), dv)
			}
		}
		fmt.Fprintf(&table, "%-36s %4dx%-4d %7d %7d %4d %s\n", g.Name, g.Width, g.Height, g.Quality, q, d, strings.Join(dd, " "))
		if d <= 2 {
			near++
		}
		if d == 0 {
			exact++
		}
		if abs := max(q-g.Quality, g.Quality-q); abs > 2 {
			t.Errorf("%s: quality %d, reference %d", g.Name, q, g.Quality)
		}
	}
	t.Logf("agreement with the C++ reference on identical pixels:\n%s", table.String())
	t.Logf("%d/%d within 2 bits (%.1f%%), %d identical", near, len(goldens), 100*float64(near)/float64(len(goldens)), exact)
	if 100*near < 95*len(goldens) {
		t.Errorf("only %d of %d hashes within 2 bits of the reference; want >= 95%%", near, len(goldens))
	}
}

// TestThumbnailGoldens: with the default 512-pixel shrink, large images
// hash close to the reference after PIL's thumbnail (which resamples 8-bit
// RGB; the shrink here resamples float luminance, so bits may differ).
func TestThumbnailGoldens(t *testing.T) {
	var table strings.Builder
	n := 0
	for _, g := range loadGoldens(t) {
		if g.ThumbHash == "" {
			continue
		}
		n++
		h, q := FromImage(g.image(t))
		d := Distance(h, mustParse(t, g.ThumbHash))
		limit := 16
		if g.ThumbQuality >= 80 {
			limit = 10
		}
		fmt.Fprintf(&table, "%-28s q %3d/%3d  distance %3d\n", g.Name, q, g.ThumbQuality, d)
		if d > limit || max(q-g.ThumbQuality, g.ThumbQuality-q) > 5 {
			t.Errorf("%s: %d bits (limit %d), quality %d vs %d", g.Name, d, limit, q, g.ThumbQuality)
		}
	}
	if n < 5 {
		t.Fatalf("only %d thumbnail goldens", n)
	}
	t.Logf("default (shrunk) hashes vs the reference after PIL thumbnail:\n%s", table.String())
}

// TestBridgeMods: every edit of the bridge photo stays near the original.
func TestBridgeMods(t *testing.T) {
	dir := filepath.Join(vectorsDir, "images", "bridge-mods")
	orig, _ := FromImage(decodeFile(t, filepath.Join(dir, "aaa-orig.jpg")))
	paths, err := filepath.Glob(filepath.Join(dir, "*.jpg"))
	if err != nil || len(paths) < 12 {
		t.Fatalf("bridge-mods: %d files, %v", len(paths), err)
	}
	var table strings.Builder
	for _, p := range paths {
		h, q := FromImage(decodeFile(t, p))
		d := Distance(h, orig)
		fmt.Fprintf(&table, "%-24s quality %3d  distance %3d\n", filepath.Base(p), q, d)
		if d > 20 {
			t.Errorf("%s: %d bits from the original, want <= 20", filepath.Base(p), d)
		}
	}
	t.Logf("bridge-mods vs aaa-orig.jpg:\n%s", table.String())
}

// TestDihedralFiles: each rotated/flipped copy of the bridge photo is found
// among the original's eight dihedral hashes, under the reference's name.
// Full resolution: the 512-pixel shrink breaks the mirror symmetry of the
// sampling grid (the pdqhash wheel on PIL thumbnails is 16-18 bits off for
// rotate90, rotate180, flipy and flipminus1).
func TestDihedralFiles(t *testing.T) {
	dir := filepath.Join(vectorsDir, "images", "dih")
	hs := fullRes()
	orig, _ := hs.Dihedral(decodeFile(t, filepath.Join(dir, "bridge-1-original.jpg")))
	tests := []struct {
		file string
		want Dihedral
	}{
		{"bridge-1-original.jpg", Original},
		{"bridge-2-rotate-90.jpg", Rotate90},
		{"bridge-3-rotate-180.jpg", Rotate180},
		{"bridge-4-rotate-270.jpg", Rotate270},
		{"bridge-5-flipx.jpg", FlipX},
		{"bridge-6-flipy.jpg", FlipY},
		{"bridge-7-flip-plus-1.jpg", FlipPlus1},
		{"bridge-8-flip-minus-1.jpg", FlipMinus1},
	}
	for _, tt := range tests {
		h, _ := hs.Hash(decodeFile(t, filepath.Join(dir, tt.file)))
		best, bestD := Dihedral(-1), 257
		for d, v := range orig {
			if dist := Distance(h, v); dist < bestD {
				best, bestD = Dihedral(d), dist
			}
		}
		t.Logf("%-28s closest %-10v distance %d", tt.file, best, bestD)
		if bestD > 10 || best != tt.want {
			t.Errorf("%s: closest dihedral hash is %v at %d bits; want %v within 10", tt.file, best, bestD, tt.want)
		}
	}
}

// transform returns img mapped by one of the dihedral symmetries, exactly.
func transform(img *image.RGBA, d Dihedral) *image.RGBA {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	src := func(x, y int) color.RGBA { return img.RGBAAt(b.Min.X+x, b.Min.Y+y) }
	var out *image.RGBA
	switch d {
	case Original, Rotate180, FlipX, FlipY:
		out = image.NewRGBA(image.Rect(0, 0, w, h))
	default:
		out = image.NewRGBA(image.Rect(0, 0, h, w))
	}
	ob := out.Bounds()
	for y := 0; y < ob.Dy(); y++ {
		for x := 0; x < ob.Dx(); x++ {
			var c color.RGBA
			switch d {
			case Original:
				c = src(x, y)
			case Rotate90: // counter-clockwise
				c = src(w-1-y, x)
			case Rotate180:
				c = src(w-1-x, h-1-y)
			case Rotate270:
				c = src(y, h-1-x)
			case FlipX: // top to bottom
				c = src(x, h-1-y)
			case FlipY: // left to right
				c = src(w-1-x, y)
			case FlipPlus1: // transpose
				c = src(y, x)
			case FlipMinus1: // anti-transpose
				c = src(w-1-y, h-1-x)
			}
			out.SetRGBA(x, y, c)
		}
	}
	return out
}

// TestDihedralPixels: hashing exactly transformed pixels gives (nearly) the
// dihedral hash computed from the original's DCT. A side of 64*m pixels
// with m odd has a mirror-symmetric sampling grid and an odd (so centred)
// filter window, so there the match is exact up to float rounding.
func TestDihedralPixels(t *testing.T) {
	tests := []struct {
		name  string
		img   *image.RGBA
		limit int
	}{
		{"832x832", synthImage(832, 832, 12, 99), 2},
		{"576x832", synthImage(576, 832, 9, 98), 2},
		// Even windows and an asymmetric grid: still the right variant.
		{"640x400", synthImage(640, 400, 9, 97), 40},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs := fullRes()
			dih, q := hs.Dihedral(tt.img)
			if q < 80 {
				t.Fatalf("quality %d; test image too flat", q)
			}
			for d := Original; d <= FlipMinus1; d++ {
				h, _ := hs.Hash(transform(tt.img, d))
				if dist := Distance(h, dih[d]); dist > tt.limit {
					t.Errorf("%v: pixel transform hashes %d bits from the DCT-derived hash", d, dist)
				}
				for o := Original; o <= FlipMinus1; o++ {
					if o != d && Distance(h, dih[o]) < 64 {
						t.Errorf("%v: also close to %v (%d bits)", d, o, Distance(h, dih[o]))
					}
				}
			}
		})
	}
}

// TestImageTypes: the fast paths for each image type agree with the generic
// path (color.NRGBAModel per pixel) bit for bit.
func TestImageTypes(t *testing.T) {
	// A colourful 4:2:0 JPEG, so that chroma varies from pixel to pixel.
	var enc bytes.Buffer
	if err := jpeg.Encode(&enc, synthImage(256, 250, 40, 3), &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	jpg, err := jpeg.Decode(&enc)
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := jpg.(*image.YCbCr); !ok || m.SubsampleRatio != image.YCbCrSubsampleRatio420 {
		t.Fatalf("JPEG decodes to %T, want 4:2:0 *image.YCbCr", jpg)
	}
	b := jpg.Bounds()
	rgba := image.NewRGBA(b)
	draw.Draw(rgba, b, jpg, b.Min, draw.Src)
	nrgba := image.NewNRGBA(b)
	draw.Draw(nrgba, b, jpg, b.Min, draw.Src)
	gray := image.NewGray(b)
	draw.Draw(gray, b, jpg, b.Min, draw.Src)
	// A translucent RGBA: premultiplied storage, un-premultiplied colour.
	trans := image.NewNRGBA(b)
	for i := range trans.Pix {
		trans.Pix[i] = nrgba.Pix[i]
		if i%4 == 3 {
			trans.Pix[i] = uint8(64 + i%160)
		}
	}
	transRGBA := image.NewRGBA(b)
	draw.Draw(transRGBA, b, trans, b.Min, draw.Src)
	var ycc444 *image.YCbCr
	{
		m := image.NewYCbCr(b, image.YCbCrSubsampleRatio444)
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				c := jpg.(*image.YCbCr).YCbCrAt(x, y)
				m.Y[m.YOffset(x, y)], m.Cb[m.COffset(x, y)], m.Cr[m.COffset(x, y)] = c.Y, c.Cb, c.Cr
			}
		}
		ycc444 = m
	}
	sub := func(img image.Image) image.Image {
		return img.(interface {
			SubImage(image.Rectangle) image.Image
		}).SubImage(image.Rect(37, 21, 250, 233))
	}
	tests := []struct {
		name string
		img  image.Image
	}{
		{"ycbcr420", jpg},
		{"ycbcr444", ycc444},
		{"rgba", rgba},
		{"nrgba", nrgba},
		{"gray", gray},
		{"rgba-translucent", transRGBA},
		{"sub-ycbcr420", sub(jpg)},
		{"sub-rgba", sub(rgba)},
		{"sub-nrgba", sub(nrgba)},
		{"sub-gray", sub(gray)},
		{"sub-odd-ycbcr420", jpg.(*image.YCbCr).SubImage(image.Rect(1, 1, 200, 201))},
		{"ycbcr420-negative-origin", shifted(jpg.(*image.YCbCr), -37, -11)},
		{"ycbcr422", resample(jpg, image.YCbCrSubsampleRatio422)},
		{"ycbcr440", resample(jpg, image.YCbCrSubsampleRatio440)},
		{"paletted", paletted(jpg)},
		{"gray16", convert(jpg, color.Gray16Model)},
		{"cmyk", convert(jpg, color.CMYKModel)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.img.Bounds()
			fast, generic := rowFiller(tt.img), rowFiller(genericImage{tt.img})
			got, want := make([]float32, b.Dx()), make([]float32, b.Dx())
			for y := range b.Dy() {
				fast(y, got)
				generic(y, want)
				if !slices.Equal(got, want) {
					i := 0
					for got[i] == want[i] {
						i++
					}
					t.Fatalf("row %d, pixel %d: fast path luma %v, generic %v", y, i, got[i], want[i])
				}
			}
			h, q := FromImage(tt.img)
			gh, gq := FromImage(genericImage{tt.img})
			if h != gh || q != gq {
				t.Errorf("fast path %s q%d, generic %s q%d", h, q, gh, gq)
			}
		})
	}
	// And the same pixels in different containers hash alike.
	h1, _ := FromImage(jpg)
	h2, _ := FromImage(rgba)
	if h1 != h2 {
		t.Errorf("YCbCr %s != RGBA %s", h1, h2)
	}
}

// shifted returns a copy of m whose bounds start at (dx, dy).
func shifted(m *image.YCbCr, dx, dy int) *image.YCbCr {
	c := *m
	c.Rect = m.Rect.Add(image.Pt(dx, dy))
	return &c
}

// resample copies img into a YCbCr image of the given subsampling.
func resample(img image.Image, ratio image.YCbCrSubsampleRatio) *image.YCbCr {
	b := img.Bounds()
	m := image.NewYCbCr(b, ratio)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.YCbCrModel.Convert(img.At(x, y)).(color.YCbCr)
			m.Y[m.YOffset(x, y)] = c.Y
			m.Cb[m.COffset(x, y)], m.Cr[m.COffset(x, y)] = c.Cb, c.Cr
		}
	}
	return m
}

func paletted(img image.Image) *image.Paletted {
	b := img.Bounds()
	p := image.NewPaletted(b, palette216())
	draw.FloydSteinberg.Draw(p, b, img, b.Min)
	return p
}

func palette216() color.Palette {
	var p color.Palette
	for r := 0; r < 6; r++ {
		for g := 0; g < 6; g++ {
			for b := 0; b < 6; b++ {
				p = append(p, color.RGBA{uint8(r * 51), uint8(g * 51), uint8(b * 51), 0xff})
			}
		}
	}
	return p
}

// convert copies img into an image of another colour model.
func convert(img image.Image, model color.Model) image.Image {
	b := img.Bounds()
	var dst draw.Image
	switch model {
	case color.Gray16Model:
		dst = image.NewGray16(b)
	case color.CMYKModel:
		dst = image.NewCMYK(b)
	default:
		panic("unsupported model")
	}
	draw.Draw(dst, b, img, b.Min, draw.Src)
	return dst
}

// genericImage hides the concrete type, forcing the generic path.
type genericImage struct{ image.Image }

// naiveFloatHash is a direct, unoptimised transcription of the reference:
// full-size buffers, box filters along rows then columns, twice, then
// decimation, quality and the DCT by its definition.
func naiveFloatHash(luma []float32, w, h int) ([dctSize][dctSize]float32, int) {
	buf1 := slices.Clone(luma)
	buf2 := make([]float32, w*h)
	box := func(in, out []float32, off, n, stride, win int) {
		vin := make([]float32, n)
		for i := range vin {
			vin[i] = in[off+i*stride]
		}
		vout := make([]float32, n)
		boxRowReference(vin, vout, win)
		for i := range vout {
			out[off+i*stride] = vout[i]
		}
	}
	for range 2 {
		for y := range h {
			box(buf1, buf2, y*w, w, 1, windowSize(w))
		}
		for x := range w {
			box(buf2, buf1, x, h, w, windowSize(h))
		}
	}
	var plane [outDim][outDim]float32
	for i := range outDim {
		for j := range outDim {
			plane[i][j] = buf1[int((float64(i)+0.5)*float64(h)/64)*w+int((float64(j)+0.5)*float64(w)/64)]
		}
	}
	var out [dctSize][dctSize]float32
	dct64To16(&plane, &out)
	return out, quality(&plane)
}

// boxRowReference is the 1-D box filter written from its definition: each
// output is the running sum (added and subtracted in the reference's order)
// over the clipped window [i-(win-half), i+half-1], divided by its count.
func boxRowReference(in, out []float32, win int) {
	n := len(in)
	half := (win + 2) / 2
	var sum float32
	next, drop := 0, 0 // next index to add, next to subtract
	for i := range n {
		hi := min(i+half-1, n-1)
		lo := max(i-(win-half), 0)
		for next <= hi {
			sum += in[next]
			next++
			// The reference subtracts right after adding once the window
			// is full.
			if next-drop > win {
				sum -= in[drop]
				drop++
			}
		}
		for drop < lo {
			sum -= in[drop]
			drop++
		}
		out[i] = sum / float32(next-drop)
	}
}

func synthLuma(w, h int, seed uint32) []float32 {
	img := synthImage(uint32(w), uint32(h), 7, seed)
	l := make([]float32, w*h)
	fill := rowFiller(img)
	for y := range h {
		fill(y, l[y*w:(y+1)*w])
	}
	return l
}

// TestStreamingMatchesNaive: the streaming downsampler computes exactly the
// reference's values.
func TestStreamingMatchesNaive(t *testing.T) {
	sizes := [][2]int{{5, 5}, {64, 64}, {129, 7}, {7, 129}, {256, 255}, {300, 520}, {1000, 333}, {1600, 1004}}
	for i, sz := range sizes {
		w, h := sz[0], sz[1]
		t.Run(fmt.Sprintf("%dx%d", w, h), func(t *testing.T) {
			luma := synthLuma(w, h, uint32(i))
			want, wq := naiveFloatHash(luma, w, h)
			var hs Hasher
			if _, ok := hs.coefficientsLuma(luma, w, h); !ok {
				t.Fatal("not hashed")
			}
			if hs.dct != want {
				t.Errorf("DCT coefficients differ from the naive reference")
			}
			if _, q := hs.HashLuma(luma, w, h); q != wq {
				t.Errorf("quality %d, naive %d", q, wq)
			}
		})
	}
}

func TestBoxRow(t *testing.T) {
	in := make([]float32, 16)
	for i := range in {
		in[i] = float32(i)
	}
	tests := []struct {
		win  int
		sums []float32 // the reference's worked examples (window sums)
	}{
		{7, []float32{6, 10, 15, 21, 28, 35, 42, 49, 56, 63, 70, 77, 84, 75, 65, 54}},
		{8, []float32{10, 15, 21, 28, 36, 44, 52, 60, 68, 76, 84, 92, 84, 75, 65, 54}},
		{1, []float32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}},
	}
	for _, tt := range tests {
		out := make([]float32, len(in))
		boxRow(in, out, tt.win)
		ref := make([]float32, len(in))
		boxRowReference(in, ref, tt.win)
		half := (tt.win + 2) / 2
		for i := range in {
			cnt := min(i+half-1, len(in)-1) - max(i-(tt.win-half), 0) + 1
			want := tt.sums[i] / float32(cnt)
			if math.Abs(float64(out[i]-want)) > 1e-5 || out[i] != ref[i] {
				t.Errorf("win %d: out[%d] = %v, want %v (definition %v)", tt.win, i, out[i], want, ref[i])
			}
		}
	}
}

func TestWindowAndThumbSizes(t *testing.T) {
	for _, tt := range []struct{ dim, win int }{{1, 1}, {64, 1}, {128, 1}, {129, 2}, {256, 2}, {257, 3}, {1004, 8}, {1600, 13}} {
		if got := windowSize(tt.dim); got != tt.win {
			t.Errorf("windowSize(%d) = %d, want %d", tt.dim, got, tt.win)
		}
	}
	// PIL's Image.thumbnail((512, 512)) sizes.
	for _, tt := range []struct{ w, h, tw, th int }{
		{1600, 1004, 512, 321}, {1004, 1600, 321, 512}, {1152, 723, 512, 321},
		{512, 512, 512, 512}, {1432, 812, 512, 290}, {600, 100, 512, 85}, {100, 5000, 10, 512},
		{300, 200, 300, 200}, {513, 1, 512, 1},
	} {
		if w, h := thumbSize(tt.w, tt.h, 512); w != tt.tw || h != tt.th {
			t.Errorf("thumbSize(%d, %d) = %dx%d, want %dx%d", tt.w, tt.h, w, h, tt.tw, tt.th)
		}
	}
}

func TestTinyImages(t *testing.T) {
	for _, sz := range [][2]int{{0, 0}, {1, 1}, {4, 100}, {100, 4}, {4, 4}} {
		img := image.NewGray(image.Rect(0, 0, sz[0], sz[1]))
		h, q := FromImage(img)
		d, dq := FromImageDihedral(img)
		if h != (Hash{}) || q != 0 || d != ([8]Hash{}) || dq != 0 {
			t.Errorf("%dx%d: got %s q%d, want zero hash and quality 0", sz[0], sz[1], h, q)
		}
	}
	// 5x5 is hashed.
	if _, q := FromImage(synthImage(5, 5, 2, 1)); q == 0 {
		t.Errorf("5x5: quality 0")
	}
	// A large image that shrinks below 5 pixels on one side.
	if h, q := FromImage(image.NewGray(image.Rect(0, 0, 5000, 20))); h != (Hash{}) || q != 0 {
		t.Errorf("5000x20: got %s q%d", h, q)
	}
}

func TestFlatImage(t *testing.T) {
	img := image.NewGray(image.Rect(0, 0, 300, 200))
	for i := range img.Pix {
		img.Pix[i] = 77
	}
	_, q := FromImage(img)
	if q != 0 {
		t.Errorf("flat image quality %d, want 0", q)
	}
}

func TestFromLumaMatchesImage(t *testing.T) {
	img := synthImage(333, 211, 9, 5)
	l := make([]float32, 333*211)
	fill := rowFiller(img)
	for y := range 211 {
		fill(y, l[y*333:(y+1)*333])
	}
	h1, q1 := FromImage(img)
	h2, q2 := FromLuma(l, 333, 211)
	d1, _ := FromImageDihedral(img)
	d2, _ := FromLumaDihedral(l, 333, 211)
	if h1 != h2 || q1 != q2 || d1 != d2 || d1[Original] != h1 {
		t.Errorf("image %s q%d, luma %s q%d", h1, q1, h2, q2)
	}
	defer func() {
		if recover() == nil {
			t.Errorf("FromLuma with a short plane did not panic")
		}
	}()
	FromLuma(l[:100], 333, 211)
}

func TestHexOrder(t *testing.T) {
	// Reference bit k is word k/16, bit k%16; words print from 15 down.
	tests := []struct {
		bit  int
		want string
	}{
		{0, strings.Repeat("0", 63) + "1"},
		{15, strings.Repeat("0", 60) + "8000"},
		{16, strings.Repeat("0", 59) + "10000"},
		{255, "8" + strings.Repeat("0", 63)},
		{100, strings.Repeat("0", 64-26) + "1" + strings.Repeat("0", 25)},
	}
	for _, tt := range tests {
		var h Hash
		h.setBit(tt.bit)
		if h.String() != tt.want {
			t.Errorf("bit %d: %s, want %s", tt.bit, h, tt.want)
		}
		for k := range 256 {
			if h.Bit(k) != (k == tt.bit) {
				t.Errorf("bit %d set: Bit(%d) = %v", tt.bit, k, h.Bit(k))
			}
		}
	}
}

func TestParseHex(t *testing.T) {
	valid := "d8f8f0cce0f4a84f0e370a22028f67f0b36e2ed596623e1d33e6b39c4e9c9b22"
	tests := []struct {
		name, in string
		ok       bool
		want     string // canonical form when ok
	}{
		{"valid", valid, true, valid},
		{"upper case", strings.ToUpper(valid), true, valid},
		{"zero", strings.Repeat("0", 64), true, strings.Repeat("0", 64)},
		{"empty", "", false, ""},
		{"short", valid[:63], false, ""},
		{"long", valid + "0", false, ""},
		{"128 chars", valid + valid, false, ""},
		{"non-hex", "g" + valid[1:], false, ""},
		{"space", " " + valid[1:], false, ""},
		{"0x prefix", "0x" + valid[2:], false, ""},
		{"trailing newline", valid[:63] + "\n", false, ""},
		{"minus", "-" + valid[1:], false, ""},
		{"unicode", "é" + valid[2:], false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseHex(tt.in)
			if !tt.ok {
				if err == nil {
					t.Fatalf("ParseHex(%q) = %s, want error", tt.in, h)
				}
				if !strings.Contains(err.Error(), fmt.Sprintf("%q", tt.in)) {
					t.Errorf("error %q does not name the value %q", err, tt.in)
				}
				if !errors.Is(err, ErrMalformedHash) {
					t.Errorf("error %q does not wrap ErrMalformedHash", err)
				}
				if h != (Hash{}) {
					t.Errorf("non-zero hash with error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.String() != tt.want {
				t.Errorf("round trip %s, want %s", h, tt.want)
			}
		})
	}
	// A long value is truncated in the message.
	_, err := ParseHex(strings.Repeat("z", 10000))
	if err == nil || len(err.Error()) > 300 {
		t.Errorf("long input: error %v", err)
	}
}

func TestTextAndJSON(t *testing.T) {
	h := mustParse(t, "e64cc9d91e623842f8d1f1d9a398e78c9f199a3bd87924f2b7e11e0bf061b064")
	b, err := json.Marshal(map[string]Hash{"pdq": h})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"pdq":"e64cc9d91e623842f8d1f1d9a398e78c9f199a3bd87924f2b7e11e0bf061b064"}` {
		t.Errorf("JSON %s", b)
	}
	var back map[string]Hash
	if err := json.Unmarshal(b, &back); err != nil || back["pdq"] != h {
		t.Errorf("JSON round trip: %v %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"pdq":"abc"}`), &back); err == nil {
		t.Errorf("short hash accepted")
	}
}

func TestDistance(t *testing.T) {
	a := mustParse(t, "d8f8f0cce0f4a84f0e370a22028f67f0b36e2ed596623e1d33e6b39c4e9c9b22")
	var ones Hash
	for i := range ones {
		ones[i] = 0xff
	}
	var inv Hash
	for i := range a {
		inv[i] = ^a[i]
	}
	tests := []struct {
		name string
		x, y Hash
		want int
	}{
		{"same", a, a, 0},
		{"zero-ones", Hash{}, ones, 256},
		{"complement", a, inv, 256},
		{"one bit", Hash{}, Hash{31: 1}, 1},
		{"first and last", Hash{0: 0x80}, Hash{31: 1}, 2},
		{"reference pair", a, mustParse(t, "d8f80f31e0f417b00e37f5dd028f980fb36ed12a9662c1e233e64c634e9c64dd"), 126},
	}
	for _, tt := range tests {
		if got := Distance(tt.x, tt.y); got != tt.want {
			t.Errorf("%s: Distance = %d, want %d", tt.name, got, tt.want)
		}
		if Distance(tt.x, tt.y) != Distance(tt.y, tt.x) {
			t.Errorf("%s: not symmetric", tt.name)
		}
	}
	if a.OnesCount() != Distance(a, Hash{}) {
		t.Errorf("OnesCount")
	}
}

func TestDihedralString(t *testing.T) {
	if FlipMinus1.String() != "flipminus1" || Dihedral(9).String() != "Dihedral(9)" {
		t.Errorf("names: %v %v", FlipMinus1, Dihedral(9))
	}
}

func TestDecode(t *testing.T) {
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 10, 10))); err != nil {
		t.Fatal(err)
	}
	if _, _, err := FromBytes(buf.Bytes()); err != nil {
		t.Errorf("png: %v", err)
	}
	if _, _, err := FromReader(bytes.NewReader(buf.Bytes())); err != nil {
		t.Errorf("reader: %v", err)
	}
	// A header claiming a huge image is refused before decoding.
	huge := slices.Clone(buf.Bytes())
	copy(huge[16:24], []byte{0, 1, 0, 0, 0, 1, 0, 0}) // IHDR 65536 x 65536
	binary.BigEndian.PutUint32(huge[29:33], crc32.ChecksumIEEE(huge[12:29]))
	if _, _, err := FromBytes(huge); err == nil || !strings.Contains(err.Error(), "too large") {
		t.Errorf("huge png: %v", err)
	}
	if _, _, err := FromBytes([]byte("not an image")); err == nil {
		t.Errorf("garbage decoded")
	}
}

// seedImages returns small encoded images for the fuzz corpus.
func seedImages(t testing.TB) [][]byte {
	var seeds [][]byte
	for _, p := range []string{"images/misc/wee.jpg", "images/misc/small.jpg", "images/labelme-subset/q0003.jpg"} {
		data, err := os.ReadFile(filepath.Join(vectorsDir, p))
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, data)
	}
	img := synthImage(40, 30, 3, 1)
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	seeds = append(seeds, slices.Clone(b.Bytes()))
	b.Reset()
	if err := gif.Encode(&b, img, nil); err != nil {
		t.Fatal(err)
	}
	seeds = append(seeds, slices.Clone(b.Bytes()))
	b.Reset()
	if err := jpeg.Encode(&b, image.NewGray(image.Rect(0, 0, 16, 9)), nil); err != nil {
		t.Fatal(err)
	}
	seeds = append(seeds, slices.Clone(b.Bytes()))
	return seeds
}

func FuzzParseHex(f *testing.F) {
	for _, s := range []string{"", "00", strings.Repeat("a", 64), strings.Repeat("G", 64),
		"d8f8f0cce0f4a84f0e370a22028f67f0b36e2ed596623e1d33e6b39c4e9c9b22"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHex(s)
		if err != nil {
			if h != (Hash{}) {
				t.Errorf("error with non-zero hash")
			}
			return
		}
		if h.String() != strings.ToLower(s) {
			t.Errorf("ParseHex(%q).String() = %s", s, h)
		}
	})
}

func FuzzFromBytes(f *testing.F) {
	for _, s := range seedImages(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Keep each run cheap; the size limit itself is tested in TestDecode.
		if cfg, _, err := image.DecodeConfig(bytes.NewReader(data)); err == nil && cfg.Width*cfg.Height > 4<<20 {
			return
		}
		img, _, err := Decode(data)
		if err != nil {
			return
		}
		h, q := FromImage(img)
		dih, dq := FromImageDihedral(img)
		if q < 0 || q > 100 || dq != q || dih[Original] != h {
			t.Errorf("quality %d/%d, hash %s vs dihedral %s", q, dq, h, dih[Original])
		}
	})
}

// packedRGB is a packed RGB image for the C downsampler, with a row stride
// wider than its rows.
type packedRGB struct {
	pix    []byte
	stride int
	w, h   int
}

func (m *packedRGB) ColorModel() color.Model  { return color.RGBAModel }
func (m *packedRGB) Bounds() image.Rectangle  { return image.Rect(0, 0, m.w, m.h) }
func (m *packedRGB) RowRGB(y int) []byte      { return m.pix[y*m.stride : y*m.stride+3*m.w] }
func (m *packedRGB) PackedRGB() ([]byte, int) { return m.pix, m.stride }
func (m *packedRGB) At(x, y int) color.Color {
	p := m.pix[y*m.stride+3*x:]
	return color.RGBA{p[0], p[1], p[2], 255}
}

// TestDownsampleRGBMatchesGo: the C downsampler for packed RGB gives the Go
// one's 64x64 plane bit for bit (and so the same DCT, hashes and quality),
// at sizes that exercise every phase of the box filters.
func TestDownsampleRGBMatchesGo(t *testing.T) {
	sizes := [][2]int{{5, 5}, {64, 64}, {129, 7}, {7, 129}, {256, 255}, {300, 520}, {1000, 333}, {1600, 1004}, {1500, 1000}}
	for i, sz := range sizes {
		w, h := sz[0], sz[1]
		t.Run(fmt.Sprintf("%dx%d", w, h), func(t *testing.T) {
			src := synthImage(uint32(w), uint32(h), 7, uint32(i))
			m := &packedRGB{stride: 3*w + 5, w: w, h: h}
			m.pix = make([]byte, m.stride*h)
			for y := range h {
				for x := range w {
					c := color.NRGBAModel.Convert(src.At(x, y)).(color.NRGBA)
					copy(m.pix[y*m.stride+3*x:], []byte{c.R, c.G, c.B})
				}
			}
			var goDS, cDS downsampler
			goDS.run(w, h, rowFiller(m))
			if !cDS.downsampleRGB(m, w, h) {
				t.Fatal("the C downsampler refused the image")
			}
			if goDS.plane != cDS.plane {
				t.Fatal("the C downsampler's plane differs from the Go one's")
			}
			hs := Hasher{MaxSide: -1}
			got, q := hs.Dihedral(m)
			want, wq := (&Hasher{MaxSide: -1}).Dihedral(struct{ image.Image }{m})
			if got != want || q != wq {
				t.Errorf("hashes through the C downsampler differ from the Go path's")
			}
		})
	}
}

// FuzzDownsampleRGB: for any size and pixels, the C downsampler's plane is
// the Go one's.
func FuzzDownsampleRGB(f *testing.F) {
	f.Add(uint16(5), uint16(5), uint8(0), []byte{1, 2, 3})
	f.Add(uint16(300), uint16(7), uint8(3), []byte{0, 255, 128, 7, 9})
	f.Add(uint16(129), uint16(257), uint8(1), []byte{200})
	f.Fuzz(func(t *testing.T, w16, h16 uint16, pad uint8, seed []byte) {
		w, h := int(w16%400), int(h16%400)
		if w < minDim || h < minDim || len(seed) == 0 {
			return
		}
		m := &packedRGB{stride: 3*w + int(pad%8), w: w, h: h}
		m.pix = make([]byte, m.stride*h)
		for i := range m.pix {
			m.pix[i] = seed[i%len(seed)] ^ byte(i*131>>3)
		}
		var goDS, cDS downsampler
		goDS.run(w, h, rowFiller(m))
		if cDS.downsampleRGB(m, w, h) && goDS.plane != cDS.plane {
			t.Fatalf("%dx%d: the C downsampler's plane differs from the Go one's", w, h)
		}
	})
}

// TestDCTMatchesGo: dct64To16 (in C with cgo) gives dct64To16Go's
// coefficients bit for bit, on planes of random floats of every magnitude.
func TestDCTMatchesGo(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := range 20 {
		var a [outDim][outDim]float32
		for i := range a {
			for j := range a[i] {
				a[i][j] = float32(rng.NormFloat64() * math.Pow(10, float64(n%7-2)))
			}
		}
		var got, want [dctSize][dctSize]float32
		dct64To16(&a, &got)
		dct64To16Go(&a, &want)
		if got != want {
			t.Fatalf("plane %d: the DCT differs from the Go one's", n)
		}
	}
}
