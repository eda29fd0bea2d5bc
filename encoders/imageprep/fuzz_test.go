package imageprep

import (
	"context"
	"errors"
	"image"
	"image/color"
	"math"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to Decode and, when they decode, runs
// Preprocess and Thumbnail. Nothing may panic, errors must be one of the
// three kinds, and tensors must be finite.
func FuzzDecode(f *testing.F) {
	for _, p := range []string{
		"testdata/pdq/images/misc/wee.jpg",
		"testdata/images/go/video-001.q50.420.jpeg",
		"testdata/images/go/video-001.q50.440.jpeg",
		"testdata/images/go/video-001.cmyk.jpeg",
		"testdata/images/go/video-005.gray.jpeg",
		"testdata/images/go/video-001.gif",
		"testdata/images/go/video-001.lossy.webp",
		"testdata/images/go/video-001.bmp",
		"testdata/images/generated/orient-6.jpg",
		"testdata/images/generated/anim.gif",
		"testdata/images/generated/gray16.png",
		"testdata/images/generated/palette-trns.png",
		"testdata/images/generated/rgba-alpha.png",
	} {
		f.Add(readFile(f, p))
	}
	one := image.NewNRGBA(image.Rect(0, 0, 1, 1))
	one.Set(0, 0, color.NRGBA{1, 2, 3, 4})
	f.Add(encodePNG(f, one))
	f.Add(pngWithExif(f, 6, true))
	f.Add(pngHeader(50000, 50000))
	f.Add(jpegHeader(3, 5))
	f.Add(gifHeader(2, 2))
	f.Add(webpVP8XHeader(4, 4))
	f.Add(bmpHeader(3, 3))
	f.Add([]byte{})

	spec := CLIPSpec()
	small := Spec{Size: 16, CropSize: 12, Mean: spec.Mean, Std: spec.Std, Resize: ResizeSquash}
	// A small pixel cap keeps each iteration cheap.
	lim := Limits{MaxPixels: 1 << 18, MaxBytes: 1 << 20}
	budget := NewBudget(64 << 20)
	fast, err := NewDecoder(DecoderOptions{Limits: lim, Mode: ModeFast, Need: Need{Draft: 16, LongSide: 32}, Budget: budget})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The Decoder (fast mode, budgeted) must agree with Decode on
		// whether the input is an image, and return everything it reserved.
		dec, ferr := fast.Decode(context.Background(), data)
		if ferr == nil {
			if b := dec.Image.Bounds(); b.Empty() || dec.Scale < 1 {
				t.Fatalf("fast decode: bounds %v, scale %d", b, dec.Scale)
			}
			dec.Release()
		} else if !isKind(ferr) {
			t.Fatalf("fast decode: error of no known kind: %v", ferr)
		}
		if n := budget.InUse(); n != 0 {
			t.Fatalf("%d bytes of the budget still reserved", n)
		}
		img, _, err := Decode(data, lim)
		if (err == nil) != (ferr == nil) {
			t.Fatalf("Decode error %v, Decoder error %v", err, ferr)
		}
		if err != nil {
			if !isKind(err) {
				t.Fatalf("error of no known kind: %v", err)
			}
			return
		}
		b := img.Bounds()
		if b.Empty() || int64(b.Dx())*int64(b.Dy()) > lim.MaxPixels {
			t.Fatalf("decoded bounds %v", b)
		}
		for _, s := range []Spec{spec, small} {
			for _, v := range Preprocess(img, s, nil) {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("non-finite tensor value %v", v)
				}
			}
		}
		if _, err := Thumbnail(img, 32, 50); err != nil {
			t.Fatalf("Thumbnail: %v", err)
		}
	})
}

func isKind(err error) bool {
	for _, k := range []error{ErrTooLarge, ErrUnsupported, ErrCorrupt} {
		if errors.Is(err, k) {
			return true
		}
	}
	return false
}
