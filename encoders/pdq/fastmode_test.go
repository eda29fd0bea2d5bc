package pdq_test

import (
	"bytes"
	"context"
	"encoding/binary"
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
// decoded for the model at 1/8 and for its PDQ hash at 1/4 (Need.Hash),
// once, and that reduced decode is hashed as the full image it stands for
// (pdq.Grid); that hash, and the dihedral hashes derived from it, stay
// within 10 bits of the reference's full-resolution hash of the photo and
// of its rotated and mirrored copies, also when an EXIF orientation turns
// a picture whose partial blocks then come first. The full-resolution
// reference here is exact mode's hash, which is the reference's on
// Pillow's pixels (TestGoldens, TestParityCLIPImageProcessor).
//
// The bound is 10 bits; on these smooth (upscaled) pictures the
// grid hash is within 2, while hashing the same 1/4 decode as an image of
// its own strays 4-8 bits, so the test holds the grid to 2.
func TestFastModePDQWithinTenBits(t *testing.T) {
	const maxBits = 2
	src, err := os.ReadFile("../../testdata/pdq/images/bridge-mods/aaa-orig.jpg")
	if err != nil {
		t.Fatal(err)
	}
	orig, _, err := imageprep.Decode(src, imageprep.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	// Upscale to 3000x2000 (cropping to 3:2, bicubic) and re-encode at q90,
	// as the benchmark's large photos are made. (Hashed at 1/4 as an image
	// of its own, this photo's hash is 12-14 bits from the reference's.)
	upscale := func(w, h int) *image.RGBA {
		ob := orig.Bounds()
		ch := ob.Dx() * 2 / 3
		crop := image.Rect(ob.Min.X, ob.Min.Y+(ob.Dy()-ch)/2, ob.Max.X, ob.Min.Y+(ob.Dy()-ch)/2+ch)
		big := image.NewRGBA(image.Rect(0, 0, w, h))
		draw.CatmullRom.Scale(big, big.Bounds(), orig, crop, draw.Src, nil)
		return big
	}
	big := upscale(3000, 2000)
	fast, _ := imageprep.NewDecoder(imageprep.DecoderOptions{Need: fastNeed})
	exact, _ := imageprep.NewDecoder(imageprep.DecoderOptions{Mode: imageprep.ModeExact})
	encode := func(img image.Image) []byte {
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	variants := []pdq.Dihedral{pdq.Original, pdq.Rotate90, pdq.FlipY}
	if testing.Short() {
		variants = variants[:1]
	}
	var fastOrig [8]pdq.Hash
	for _, v := range variants {
		data := encode(transform(big, v))
		fh, dec := hashOf(t, fast, data)
		if dec.scale != 8 || !dec.hashImg {
			t.Fatalf("%v: decoded at 1/%d, hash input %v; want 1/8 and a separate 1/4 hash input", v, dec.scale, dec.hashImg)
		}
		ref, _ := hashOf(t, exact, data)
		if d := pdq.Distance(fh[pdq.Original], ref[pdq.Original]); d > maxBits {
			t.Errorf("%v: fast-mode hash %d bits from the full-resolution reference", v, d)
		} else {
			t.Logf("%v: fast-mode hash %d bits from the full-resolution reference", v, d)
		}
		if v == pdq.Original {
			fastOrig = fh
			continue
		}
		// What a neardup query of the original finds the variant with.
		if d := pdq.Distance(fastOrig[v], ref[pdq.Original]); d > maxBits {
			t.Errorf("%v: the original's fast-mode %v hash is %d bits from the variant's reference hash", v, v, d)
		}
	}

	// A picture whose sides are not whole blocks, stored turned, with the
	// EXIF orientation that turns it upright: mirrored axes start with the
	// partial blocks.
	odd := upscale(3003, 2001)
	for _, c := range []struct {
		o      uint16
		stored pdq.Dihedral // the stored pixels; orientation o makes them upright
	}{{3, pdq.Rotate180}, {6, pdq.Rotate90}, {2, pdq.FlipY}} {
		data := withOrientation(t, encode(transform(odd, c.stored)), c.o)
		fh, dec := hashOf(t, fast, data)
		ref, _ := hashOf(t, exact, data)
		if !dec.hashImg {
			t.Fatalf("orientation %d: no reduced hash input", c.o)
		}
		if d := pdq.Distance(fh[pdq.Original], ref[pdq.Original]); d > maxBits {
			t.Errorf("orientation %d: fast-mode hash %d bits from the full-resolution reference", c.o, d)
		} else {
			t.Logf("orientation %d: fast-mode hash %d bits from the full-resolution reference", c.o, d)
		}
	}

	// The bridge photo itself (1600x1004): the model's decode at 1/4, the
	// hash's at 1/2 (502 px), within 10 bits.
	fh, dec := hashOf(t, fast, src)
	ref, _ := hashOf(t, exact, src)
	if d := pdq.Distance(fh[pdq.Original], ref[pdq.Original]); dec.scale != 4 || !dec.hashImg || d > 10 {
		t.Errorf("bridge: fast decode 1/%d, hash input %v, %d bits from the reference; want 1/4, a 1/2 hash input, within 10 bits", dec.scale, dec.hashImg, d)
	}
	// A photo too small for a 500 px reduction is hashed at full size, bit
	// for bit.
	small, err := os.ReadFile("../../testdata/pdq/images/labelme-subset/q0003.jpg")
	if err != nil {
		t.Fatal(err)
	}
	fh, _ = hashOf(t, fast, small)
	ref, _ = hashOf(t, exact, small)
	if fh != ref {
		t.Errorf("q0003 (256 px): fast-mode hashes differ from the full-resolution ones")
	}
}

// withOrientation inserts an EXIF APP1 segment with orientation o after
// a JPEG's SOI marker.
func withOrientation(t testing.TB, data []byte, o uint16) []byte {
	t.Helper()
	if len(data) < 2 || data[0] != 0xff || data[1] != 0xd8 {
		t.Fatal("not a JPEG")
	}
	tiff := []byte("II*\x00\x08\x00\x00\x00") // little-endian, IFD at 8
	tiff = binary.LittleEndian.AppendUint16(tiff, 1)
	tiff = binary.LittleEndian.AppendUint16(tiff, 0x0112) // orientation
	tiff = binary.LittleEndian.AppendUint16(tiff, 3)      // SHORT
	tiff = binary.LittleEndian.AppendUint32(tiff, 1)
	tiff = binary.LittleEndian.AppendUint16(tiff, o)
	tiff = append(tiff, 0, 0, 0, 0, 0, 0) // padding, no next IFD
	payload := append([]byte("Exif\x00\x00"), tiff...)
	seg := []byte{0xff, 0xe1, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)}
	out := append([]byte{0xff, 0xd8}, seg...)
	out = append(out, payload...)
	return append(out, data[2:]...)
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
