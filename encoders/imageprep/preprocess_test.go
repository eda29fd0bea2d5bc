package imageprep

import (
	"bytes"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"math/rand/v2"
	"testing"
)

func TestSpecValidate(t *testing.T) {
	if err := CLIPSpec().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []func(*Spec){
		func(s *Spec) { s.Size = 0 },
		func(s *Spec) { s.Size = 1 << 20 },
		func(s *Spec) { s.CropSize = -1 },
		func(s *Spec) { s.Resize = "bilinear" },
		func(s *Spec) { s.Std[1] = 0 },
	}
	for i, f := range bad {
		s := CLIPSpec()
		f(&s)
		if s.Validate() == nil {
			t.Errorf("case %d: invalid spec %+v accepted", i, s)
		}
		if Preprocess(image.NewGray(image.Rect(0, 0, 4, 4)), s, nil) != nil {
			t.Errorf("case %d: Preprocess with an invalid spec returned a tensor", i)
		}
	}
	s := CLIPSpec()
	s.CropSize = 0
	if s.Crop() != 224 || s.TensorLen() != 3*224*224 {
		t.Errorf("CropSize 0: crop %d len %d", s.Crop(), s.TensorLen())
	}
}

func TestResizeTarget(t *testing.T) {
	clip := CLIPSpec()
	sq := clip
	sq.Resize = ResizeSquash
	for _, tc := range []struct {
		w, h   int
		s      Spec
		rw, rh int
	}{
		{1600, 1004, clip, 356, 224}, // int(224*1600/1004) = int(356.97)
		{1004, 1600, clip, 224, 356},
		{256, 256, clip, 224, 224},
		{34, 42, clip, 224, 276},
		{1, 100000, clip, 224, 22400000},
		{1600, 1004, sq, 224, 224},
	} {
		if rw, rh := resizeTarget(tc.w, tc.h, tc.s); rw != tc.rw || rh != tc.rh {
			t.Errorf("%dx%d %s: %dx%d, want %dx%d", tc.w, tc.h, tc.s.Resize, rw, rh, tc.rw, tc.rh)
		}
	}
}

func TestPreprocessDst(t *testing.T) {
	img := image.NewGray(image.Rect(0, 0, 30, 20))
	s := CLIPSpec()
	dst := make([]float32, s.TensorLen()+10)
	out := Preprocess(img, s, dst)
	if len(out) != s.TensorLen() || &out[0] != &dst[0] {
		t.Errorf("did not write into a long enough dst")
	}
	short := make([]float32, 5)
	if out := Preprocess(img, s, short); len(out) != s.TensorLen() {
		t.Errorf("short dst: len %d", len(out))
	}
}

// A flat image gives a flat tensor whose values are transformers' for that
// colour; nil and empty images give the tensor of black.
func TestPreprocessFlatAndEmpty(t *testing.T) {
	s := CLIPSpec()
	expect := func(rgb [3]byte) []float32 {
		one := []byte{rgb[0], rgb[1], rgb[2]}
		v := make([]float32, 3)
		normalize(one, s, v)
		return v
	}
	check := func(name string, img image.Image, rgb [3]byte) {
		t.Helper()
		want := expect(rgb)
		got := Preprocess(img, s, nil)
		plane := len(got) / 3
		for i, v := range got {
			if v != want[i/plane] {
				t.Fatalf("%s: tensor[%d] = %v, want %v", name, i, v, want[i/plane])
			}
		}
	}
	for _, size := range []image.Rectangle{image.Rect(0, 0, 1, 1), image.Rect(0, 0, 3, 700), image.Rect(5, 7, 400, 9)} {
		img := image.NewNRGBA(size)
		draw.Draw(img, size, image.NewUniform(color.NRGBA{12, 200, 99, 255}), image.Point{}, draw.Src)
		check(size.String(), img, [3]byte{12, 200, 99})
	}
	check("nil", nil, [3]byte{})
	check("empty", image.NewRGBA(image.Rect(3, 3, 3, 9)), [3]byte{})
}

// Every fast path agrees with the generic At() path, on sub-images whose
// bounds do not start at the origin.
func TestRowSourcesAgree(t *testing.T) {
	full := image.Rect(0, 0, 61, 47)
	photo, _, err := Decode(readFile(t, "testdata/pdq/images/labelme-subset/q0291.jpg"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	nrgba := image.NewNRGBA(full)
	draw.Draw(nrgba, full, photo, photo.Bounds().Min, draw.Src)
	for i := 3; i < len(nrgba.Pix); i += 4 {
		nrgba.Pix[i] = byte(i * 7) // varied alpha
	}
	conv := func(m draw.Image) draw.Image { draw.Draw(m, full, nrgba, image.Point{}, draw.Src); return m }
	pal := image.NewPaletted(full, color.Palette{color.RGBA{0, 0, 0, 255}, color.RGBA{255, 0, 0, 255}, color.NRGBA{0, 0, 255, 100}, color.Transparent})
	draw.Draw(pal, full, nrgba, image.Point{}, draw.Src)
	imgs := map[string]image.Image{
		"NRGBA":    nrgba,
		"RGBA":     conv(image.NewRGBA(full)),
		"Gray":     conv(image.NewGray(full)),
		"Gray16":   conv(image.NewGray16(full)),
		"NRGBA64":  conv(image.NewNRGBA64(full)),
		"RGBA64":   conv(image.NewRGBA64(full)),
		"CMYK":     conv(image.NewCMYK(full)),
		"Paletted": pal,
	}
	sub := image.Rect(5, 3, 50, 40)
	for name, img := range imgs {
		si := img.(interface {
			SubImage(image.Rectangle) image.Image
		}).SubImage(sub)
		fast := newRowSource(si)
		slow := &genericSource{si, si.Bounds()}
		w, h := fast.size()
		a, b := make([]byte, 3*w), make([]byte, 3*w)
		for y := 0; y < h; y++ {
			fast.row(y, a)
			slow.row(y, b)
			for i := range a {
				d := int(a[i]) - int(b[i])
				tol := 0
				if name == "NRGBA" || name == "CMYK" {
					tol = 1 // 8-bit rounding vs the 16-bit At() path; CMYK uses Pillow's formula
				}
				if d > tol || d < -tol {
					t.Fatalf("%s: row %d byte %d: fast %d, generic %d", name, y, i, a[i], b[i])
				}
			}
		}
	}
}

// YCbCr sources with every subsampling ratio and odd sizes and offsets
// must not read out of bounds.
func TestYCbCrSourceShapes(t *testing.T) {
	ratios := []image.YCbCrSubsampleRatio{
		image.YCbCrSubsampleRatio444, image.YCbCrSubsampleRatio422, image.YCbCrSubsampleRatio420,
		image.YCbCrSubsampleRatio440, image.YCbCrSubsampleRatio411, image.YCbCrSubsampleRatio410,
	}
	for _, r := range ratios {
		for _, rect := range []image.Rectangle{image.Rect(0, 0, 1, 1), image.Rect(0, 0, 3, 2), image.Rect(0, 0, 5, 7), image.Rect(1, 1, 6, 8), image.Rect(-3, -5, 8, 2)} {
			m := image.NewYCbCr(rect, r)
			for i := range m.Y {
				m.Y[i] = byte(i)
			}
			for i := range m.Cb {
				m.Cb[i], m.Cr[i] = byte(3*i), byte(255-i)
			}
			Preprocess(m, CLIPSpec(), nil)
			// The fast upsampling paths agree with the per-pixel rules.
			for _, sub := range []image.Image{m, m.SubImage(image.Rect(rect.Min.X+1, rect.Min.Y+1, rect.Max.X, rect.Max.Y))} {
				b := sub.Bounds()
				if b.Empty() || b.Min.X < 0 || b.Min.Y < 0 {
					continue
				}
				fast, slow := newYCbCrSource(sub.(*image.YCbCr), nil, b), newYCbCrSource(sub.(*image.YCbCr), nil, b)
				slow.generic = true
				ra, rb := make([]byte, 3*b.Dx()), make([]byte, 3*b.Dx())
				for y := 0; y < b.Dy(); y++ {
					fast.row(y, ra)
					slow.row(y, rb)
					if !bytes.Equal(ra, rb) {
						t.Fatalf("ratio %v rect %v row %d: fast %v generic %v", r, b, y, ra, rb)
					}
				}
			}
			Preprocess(m.SubImage(image.Rect(rect.Min.X+1, rect.Min.Y, rect.Max.X, rect.Max.Y)), CLIPSpec(), nil)
			a := image.NewNYCbCrA(rect, r)
			copy(a.Y, m.Y)
			copy(a.Cb, m.Cb)
			copy(a.Cr, m.Cr)
			Preprocess(a, CLIPSpec(), nil)
		}
	}
}

// A very elongated image resizes to an enormous virtual size; only the
// crop window may be materialised.
func TestPreprocessExtremeAspect(t *testing.T) {
	for _, r := range []image.Rectangle{image.Rect(0, 0, 1, 200000), image.Rect(0, 0, 200000, 1)} {
		img := image.NewGray(r)
		for i := range img.Pix {
			img.Pix[i] = byte(i)
		}
		out := Preprocess(img, CLIPSpec(), nil)
		if len(out) != CLIPSpec().TensorLen() {
			t.Fatalf("%v: len %d", r, len(out))
		}
	}
}

func TestThumbnail(t *testing.T) {
	img, _, err := Decode(readFile(t, "testdata/pdq/images/bridge-mods/aaa-orig.jpg"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		img    image.Image
		max    int
		w, h   int
		errors bool
	}{
		{img, 256, 256, 161, false}, // 1004*256/1600 = 160.6
		{img.(interface {
			SubImage(image.Rectangle) image.Image
		}).SubImage(image.Rect(0, 0, 300, 900)), 128, 43, 128, false},
		{image.NewGray(image.Rect(0, 0, 40, 30)), 256, 40, 30, false}, // never enlarged
		{image.NewGray(image.Rect(0, 0, 4000, 1)), 100, 100, 1, false},
		{img, 0, 0, 0, true},
		{nil, 100, 0, 0, true},
		{image.NewGray(image.Rect(0, 0, 0, 0)), 100, 0, 0, true},
	} {
		b, err := Thumbnail(tc.img, tc.max, 0)
		if tc.errors {
			if err == nil {
				t.Errorf("max %d: no error", tc.max)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		th, err := jpeg.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if r := th.Bounds(); r.Dx() != tc.w || r.Dy() != tc.h {
			t.Errorf("thumbnail %v, want %dx%d", r, tc.w, tc.h)
		}
	}
	if _, err := Thumbnail(img, 64, 101); err == nil {
		t.Errorf("quality 101 accepted")
	}
	small, _ := Thumbnail(img, 256, 30)
	big, _ := Thumbnail(img, 256, 95)
	if len(small) >= len(big) {
		t.Errorf("quality 30 gives %d bytes, quality 95 %d", len(small), len(big))
	}
}

func TestRGB(t *testing.T) {
	if p, w, h := RGB(nil); p != nil || w != 0 || h != 0 {
		t.Errorf("RGB(nil) = %d bytes, %dx%d", len(p), w, h)
	}
	img, _, err := Decode(readFile(t, "testdata/images/go/video-001.q50.420.jpeg"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	pix, w, h := RGB(img)
	if w != 150 || h != 103 || len(pix) != 3*w*h {
		t.Fatalf("RGB: %d bytes, %dx%d", len(pix), w, h)
	}
	if got := pixel(img, 17, 42); !bytes.Equal(pix[3*(42*w+17):3*(42*w+17)+3], got[:]) {
		t.Errorf("RGB and the row source disagree at (17,42)")
	}
}

// reduceBoxGo is the box reduction written plainly: the reference for the
// C loop behind reduceBox.
func reduceBoxGo(pix []byte, w, h, k int) []byte {
	ow, oh := (w+k-1)/k, (h+k-1)/k
	out := make([]byte, 3*ow*oh)
	for oy := 0; oy < oh; oy++ {
		for ox := 0; ox < ow; ox++ {
			var sum [3]int
			n := 0
			for y := oy * k; y < min((oy+1)*k, h); y++ {
				for x := ox * k; x < min((ox+1)*k, w); x++ {
					for c := range sum {
						sum[c] += int(pix[3*(y*w+x)+c])
					}
					n++
				}
			}
			for c := range sum {
				out[3*(oy*ow+ox)+c] = byte((sum[c] + n/2) / n)
			}
		}
	}
	return out
}

// The C passes read an RGBImage in place and other images converted a few
// rows at a time: both give the plain reduction's pixels, and the same
// resampled pixels, at sizes with partial blocks and more rows than one
// chunk.
func TestResampleSourcesAgree(t *testing.T) {
	for _, sz := range []image.Point{{97, 71}, {300, 41}, {13, 200}, {96, 64}} {
		rgb := NewRGBImage(sz.X, sz.Y)
		nrgba := image.NewNRGBA(image.Rect(0, 0, sz.X, sz.Y))
		for i := 0; i < sz.X*sz.Y; i++ {
			for c := 0; c < 3; c++ {
				v := byte(i*7 + c*50 + i*i%13)
				rgb.Pix[3*i+c] = v
				nrgba.Pix[4*i+c] = v
			}
			nrgba.Pix[4*i+3] = 255
		}
		for _, k := range []int{2, 3, 4, 5, 8} {
			want := reduceBoxGo(rgb.Pix, sz.X, sz.Y, k)
			if got := reduceBox(rgbSource{rgb}, k); !bytes.Equal(got.Pix, want) {
				t.Errorf("%v k=%d: in-place reduction differs from the plain one", sz, k)
			}
			if got := reduceBox(newRowSource(nrgba), k); !bytes.Equal(got.Pix, want) {
				t.Errorf("%v k=%d: converted reduction differs from the plain one", sz, k)
			}
		}
		for _, out := range []image.Point{{31, 17}, {sz.X * 2, sz.Y}, {sz.X, sz.Y / 2}} {
			for _, f := range []filter{bicubic, bilinear} {
				a := resampleWindow(f, rgbSource{rgb}, out.X, out.Y, 0, 0, out.X, out.Y)
				b := resampleWindow(f, newRowSource(nrgba), out.X, out.Y, 0, 0, out.X, out.Y)
				if !bytes.Equal(a, b) {
					t.Errorf("%v -> %v: in-place and converted sources resample differently", sz, out)
				}
			}
		}
	}
}

// The reduction's C code divides whole blocks by multiplying with a
// reciprocal and sums rows in 16 bits up to k = 257: the means are still
// the exact rounded ones, for every k (blocks of up to 4096 pixels, larger
// ones, and k past 16 bits), on random and saturated pixels.
func TestReduceBoxExactMeans(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct{ w, h, k int }{
		{37, 29, 2}, {40, 33, 3}, {61, 45, 4}, {50, 50, 7}, {67, 35, 8}, {100, 70, 16},
		{200, 130, 64}, {140, 131, 65}, {600, 520, 258},
	} {
		img := NewRGBImage(tc.w, tc.h)
		for _, fill := range []string{"random", "255"} {
			for i := range img.Pix {
				if fill == "255" {
					img.Pix[i] = 255
				} else {
					img.Pix[i] = byte(rng.IntN(256))
				}
			}
			want := reduceBoxGo(img.Pix, tc.w, tc.h, tc.k)
			if got := reduceBox(rgbSource{img}, tc.k); !bytes.Equal(got.Pix, want) {
				t.Errorf("%dx%d k=%d %s pixels: reduction differs from the rounded means", tc.w, tc.h, tc.k, fill)
			}
		}
	}
}
