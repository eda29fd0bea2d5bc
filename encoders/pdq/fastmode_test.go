package pdq_test

import (
	"bytes"
	"context"
	"image"
	"image/jpeg"
	"os"
	"testing"

	"golang.org/x/image/draw"

	"github.com/xmodal/xmodal/encoders/imageprep"
	"github.com/xmodal/xmodal/encoders/pdq"
)

// fastNeed is what xmodal run asks of the decoder for a 224 px model.
var fastNeed = imageprep.Need{Draft: 224, LongSide: 128, Hash: imageprep.DefaultHashSide}

type decodeInfo struct {
	scale   int
	hashImg bool // a separate hash input was decoded
}

func hashOf(t testing.TB, d *imageprep.Decoder, data []byte) ([8]pdq.Hash, decodeInfo) {
	t.Helper()
	dec, err := d.Decode(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	in := image.Image(dec.Image)
	if dec.HashImage != nil {
		in = dec.HashImage
	}
	hs := pdq.Hasher{MaxSide: -1}
	h, _ := hs.Dihedral(in)
	info := decodeInfo{dec.Scale, dec.HashImage != nil}
	dec.Release()
	return h, info
}

// transform returns img under a dihedral symmetry (as the reference's
// dih/ images are made: a rotation or mirror of the pixels).
func transform(img image.Image, d pdq.Dihedral) *image.RGBA {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	ow, oh := w, h
	if d == pdq.Rotate90 || d == pdq.Rotate270 || d == pdq.FlipPlus1 || d == pdq.FlipMinus1 {
		ow, oh = h, w
	}
	out := image.NewRGBA(image.Rect(0, 0, ow, oh))
	for y := 0; y < oh; y++ {
		for x := 0; x < ow; x++ {
			var sx, sy int
			switch d {
			case pdq.Rotate90: // counter-clockwise
				sx, sy = w-1-y, x
			case pdq.Rotate180:
				sx, sy = w-1-x, h-1-y
			case pdq.Rotate270:
				sx, sy = y, h-1-x
			case pdq.FlipX: // top to bottom
				sx, sy = x, h-1-y
			case pdq.FlipY: // left to right
				sx, sy = w-1-x, y
			case pdq.FlipPlus1: // transpose
				sx, sy = y, x
			case pdq.FlipMinus1:
				sx, sy = w-1-y, h-1-x
			default:
				sx, sy = x, y
			}
			out.Set(x, y, img.At(b.Min.X+sx, b.Min.Y+sy))
		}
	}
	return out
}

// TestFastModePDQWithinTenBits: in fast mode a 3000x2000 JPEG (q90) is
// decoded for the model at 1/8, and its PDQ hash comes from a second decode
// at 1/2 (Need.Hash); that hash, and the dihedral hashes derived from it,
// stay within 10 bits of the reference's full-resolution hash of the photo
// and of its rotated and mirrored copies. The full-resolution reference here
// is exact mode's hash, which is the reference's on Pillow's pixels
// (TestGoldens, TestParityCLIPImageProcessor).
func TestFastModePDQWithinTenBits(t *testing.T) {
	src, err := os.ReadFile("../../testdata/pdq/images/bridge-mods/aaa-orig.jpg")
	if err != nil {
		t.Fatal(err)
	}
	orig, _, err := imageprep.Decode(src, imageprep.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	// Upscale to 3000x2000 (cropping to 3:2, bicubic) and re-encode at q90,
	// as the benchmark's large photos are made. (Hashed at 1/8, this photo's
	// hashes are 12-14 bits from the reference's.)
	ob := orig.Bounds()
	ch := ob.Dx() * 2 / 3
	crop := image.Rect(ob.Min.X, ob.Min.Y+(ob.Dy()-ch)/2, ob.Max.X, ob.Min.Y+(ob.Dy()-ch)/2+ch)
	big := image.NewRGBA(image.Rect(0, 0, 3000, 2000))
	draw.CatmullRom.Scale(big, big.Bounds(), orig, crop, draw.Src, nil)
	fast, _ := imageprep.NewDecoder(imageprep.DecoderOptions{Need: fastNeed})
	exact, _ := imageprep.NewDecoder(imageprep.DecoderOptions{Mode: imageprep.ModeExact})
	variants := []pdq.Dihedral{pdq.Original, pdq.Rotate90, pdq.FlipY}
	if testing.Short() {
		variants = variants[:1]
	}
	var fastOrig [8]pdq.Hash
	for _, v := range variants {
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, transform(big, v), &jpeg.Options{Quality: 90}); err != nil {
			t.Fatal(err)
		}
		fh, dec := hashOf(t, fast, buf.Bytes())
		if dec.scale != 8 || !dec.hashImg {
			t.Fatalf("%v: decoded at 1/%d, hash input %v; want 1/8 and a separate 1/2 hash input", v, dec.scale, dec.hashImg)
		}
		ref, _ := hashOf(t, exact, buf.Bytes())
		if d := pdq.Distance(fh[pdq.Original], ref[pdq.Original]); d > 10 {
			t.Errorf("%v: fast-mode hash %d bits from the full-resolution reference", v, d)
		} else {
			t.Logf("%v: fast-mode hash %d bits from the full-resolution reference", v, d)
		}
		if v == pdq.Original {
			fastOrig = fh
			continue
		}
		// What a neardup query of the original finds the variant with.
		if d := pdq.Distance(fastOrig[v], ref[pdq.Original]); d > 10 {
			t.Errorf("%v: the original's fast-mode %v hash is %d bits from the variant's reference hash", v, v, d)
		}
	}

	// The bridge photo itself (1600x1004) is too small for a reduced hash
	// input: its hash is the full-resolution one, bit for bit.
	fh, dec := hashOf(t, fast, src)
	ref, _ := hashOf(t, exact, src)
	if dec.scale != 4 || fh != ref {
		t.Errorf("bridge: fast decode 1/%d, hashes equal %v; want 1/4 for the model and the full-resolution hash", dec.scale, fh == ref)
	}
}

// TestRGBRowerHashesLikeRGBA: images that hand out packed RGB rows hash as
// the same pixels in an *image.RGBA.
func TestRGBRowerHashesLikeRGBA(t *testing.T) {
	src, err := os.ReadFile("../../testdata/pdq/images/labelme-subset/q0003.jpg")
	if err != nil {
		t.Fatal(err)
	}
	img, _, err := imageprep.Decode(src, imageprep.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := img.(pdq.RGBRower); !ok {
		t.Fatalf("decoded %T does not implement RGBRower", img)
	}
	b := img.Bounds()
	rgba := image.NewRGBA(b)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			rgba.Set(x, y, img.At(x, y))
		}
	}
	h1, q1 := pdq.FromImageDihedral(img)
	h2, q2 := pdq.FromImageDihedral(rgba)
	if h1 != h2 || q1 != q2 {
		t.Errorf("RGBRower and RGBA hashes differ")
	}
}
