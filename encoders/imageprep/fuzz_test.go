package imageprep

import (
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
	f.Add(pngHeader(50000, 50000))
	f.Add(jpegHeader(3, 5))
	f.Add(gifHeader(2, 2))
	f.Add(webpVP8XHeader(4, 4))
	f.Add(bmpHeader(3, 3))
	f.Add([]byte{})

	spec := CLIPSpec()
	small := Spec{Size: 16, CropSize: 12, Mean: spec.Mean, Std: spec.Std, Resize: ResizeSquash}
	// A small pixel cap keeps each iteration cheap.
	lim := Limits{MaxPixels: 1 << 20, MaxBytes: 1 << 20}
	f.Fuzz(func(t *testing.T, data []byte) {
		img, _, err := Decode(data, lim)
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
