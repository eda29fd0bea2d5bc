package imageprep

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

func readFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pngChunk(typ string, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.BigEndian, uint32(len(data)))
	b.WriteString(typ)
	b.Write(data)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(append([]byte(typ), data...)))
	return b.Bytes()
}

// pngHeader is a PNG signature and IHDR (8-bit RGB) with no image data.
func pngHeader(w, h uint32) []byte {
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2
	return append([]byte("\x89PNG\r\n\x1a\n"), pngChunk("IHDR", ihdr)...)
}

// jpegHeader is SOI, a baseline SOF0 for a w x h 3-component image, EOI.
func jpegHeader(w, h uint16) []byte {
	b := []byte{0xff, 0xd8, 0xff, 0xc0, 0, 17, 8, byte(h >> 8), byte(h), byte(w >> 8), byte(w), 3}
	for id := byte(1); id <= 3; id++ {
		b = append(b, id, 0x11, 0)
	}
	// Go's DecodeConfig reads on to the start of scan (for Adobe markers).
	b = append(b, 0xff, 0xda, 0, 12, 3, 1, 0, 2, 0x11, 3, 0x11, 0, 63, 0)
	return append(b, 0xff, 0xd9)
}

func gifHeader(w, h uint16) []byte {
	b := []byte("GIF89a")
	b = binary.LittleEndian.AppendUint16(b, w)
	b = binary.LittleEndian.AppendUint16(b, h)
	return append(b, 0, 0, 0, 0x3b)
}

func webpVP8XHeader(w, h uint32) []byte {
	chunk := []byte("VP8X\x0a\x00\x00\x00\x00\x00\x00\x00")
	chunk = append(chunk, byte(w-1), byte((w-1)>>8), byte((w-1)>>16), byte(h-1), byte((h-1)>>8), byte((h-1)>>16))
	b := []byte("RIFF")
	b = binary.LittleEndian.AppendUint32(b, uint32(4+len(chunk)))
	b = append(b, "WEBP"...)
	return append(b, chunk...)
}

func bmpHeader(w, h int32) []byte {
	b := []byte("BM")
	b = binary.LittleEndian.AppendUint32(b, 0) // file size (ignored)
	b = binary.LittleEndian.AppendUint32(b, 0)
	b = binary.LittleEndian.AppendUint32(b, 14+40)
	b = binary.LittleEndian.AppendUint32(b, 40)
	b = binary.LittleEndian.AppendUint32(b, uint32(w))
	b = binary.LittleEndian.AppendUint32(b, uint32(h))
	b = binary.LittleEndian.AppendUint16(b, 1)
	b = binary.LittleEndian.AppendUint16(b, 24)
	return append(b, make([]byte, 24)...)
}

func encodePNG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pngWithExif is a 5x3 PNG whose eXIf chunk (before IDAT) gives the
// orientation, with or without the "Exif\0\0" prefix some writers add.
func pngWithExif(t testing.TB, orientation uint16, prefix bool) []byte {
	t.Helper()
	img := image.NewNRGBA(image.Rect(0, 0, 5, 3))
	img.Set(0, 0, color.NRGBA{255, 0, 0, 255}) // top left red
	b := encodePNG(t, img)
	// Little-endian TIFF, IFD0 with one SHORT entry 0x0112.
	tiff := []byte{'I', 'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, byte(orientation), byte(orientation >> 8), 0, 0, 0, 0, 0, 0}
	if prefix {
		tiff = append([]byte("Exif\x00\x00"), tiff...)
	}
	const ihdrEnd = 8 + 25
	out := append([]byte{}, b[:ihdrEnd]...)
	out = append(out, pngChunk("eXIf", tiff)...)
	return append(out, b[ihdrEnd:]...)
}

func TestPNGAndWebPOrientation(t *testing.T) {
	for _, prefix := range []bool{false, true} {
		data := pngWithExif(t, 6, prefix)
		if o := pngOrientation(data); o != 6 {
			t.Errorf("prefix %v: orientation %d, want 6", prefix, o)
		}
		img, _, err := Decode(data, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		// Rotated 90 degrees clockwise: 3x5, the red pixel now top right.
		if b := img.Bounds(); b.Dx() != 3 || b.Dy() != 5 {
			t.Fatalf("prefix %v: %v, want 3x5", prefix, b)
		}
		if p := pixel(img, 2, 0); p != [3]byte{255, 0, 0} {
			t.Errorf("prefix %v: top right %v, want red", prefix, p)
		}
		d, _ := NewDecoder(DecoderOptions{})
		dec, err := d.Decode(context.Background(), data)
		if err != nil {
			t.Fatal(err)
		}
		if b := dec.Image.Bounds(); b.Dx() != 3 || b.Dy() != 5 || dec.Width != 3 || dec.Height != 5 {
			t.Errorf("Decoder: %v (%dx%d), want 3x5", b, dec.Width, dec.Height)
		}
		dec.Release()
	}
	if o := pngOrientation(pngWithExif(t, 9, false)); o != 1 {
		t.Errorf("orientation 9 read as %d, want 1 (invalid)", o)
	}
	for _, o := range []int{3, 6, 8} {
		if got := webpOrientation(readFile(t, fmt.Sprintf("testdata/images/generated/orient-%d.webp", o))); got != o {
			t.Errorf("orient-%d.webp: %d", o, got)
		}
		if got := pngOrientation(readFile(t, fmt.Sprintf("testdata/images/generated/orient-%d.png", o))); got != o {
			t.Errorf("orient-%d.png: %d", o, got)
		}
	}
	if o := webpOrientation(readFile(t, "testdata/images/go/video-001.lossy.webp")); o != 1 {
		t.Errorf("webp without EXIF: %d", o)
	}
}

func encodeJPEG(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 95}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// pixel returns the RGB (over white) of img at (x, y) relative to its bounds.
func pixel(img image.Image, x, y int) [3]byte {
	s := newRowSource(img)
	w, _ := s.size()
	row := make([]byte, 3*w)
	s.row(y, row)
	return [3]byte{row[3*x], row[3*x+1], row[3*x+2]}
}

func TestDecodeInputs(t *testing.T) {
	onePx := image.NewNRGBA(image.Rect(0, 0, 1, 1))
	onePx.Set(0, 0, color.NRGBA{10, 120, 240, 255})
	bridge := readFile(t, "testdata/pdq/images/bridge-mods/aaa-orig.jpg")

	type check func(t *testing.T, img image.Image)
	hasSize := func(w, h int) check {
		return func(t *testing.T, img image.Image) {
			if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
				t.Errorf("size %dx%d, want %dx%d", b.Dx(), b.Dy(), w, h)
			}
		}
	}
	hasPixel := func(x, y int, want [3]byte, tol int) check {
		return func(t *testing.T, img image.Image) {
			got := pixel(img, x, y)
			for c := range got {
				if d := int(got[c]) - int(want[c]); d > tol || d < -tol {
					t.Errorf("pixel (%d,%d) = %v, want %v ± %d", x, y, got, want, tol)
					return
				}
			}
		}
	}
	isType := func(want image.Image) check {
		return func(t *testing.T, img image.Image) {
			if g, w := typeName(img), typeName(want); g != w {
				t.Errorf("decoded %s, want %s", g, w)
			}
		}
	}

	tests := []struct {
		name    string
		data    []byte
		lim     Limits
		wantErr error  // nil: must decode
		format  string // expected format when it decodes
		checks  []check
	}{
		{name: "empty", data: nil, wantErr: ErrUnsupported},
		{name: "not an image", data: []byte("hello, this is plainly text and not an image"), wantErr: ErrUnsupported},
		{name: "html", data: []byte("<!doctype html><html></html>"), wantErr: ErrUnsupported},
		{name: "tiff", data: []byte("II*\x00\x08\x00\x00\x00garbage"), wantErr: ErrUnsupported},
		{name: "heic", data: []byte("\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"), wantErr: ErrUnsupported},
		{name: "jpeg magic then junk", data: append([]byte{0xff, 0xd8, 0xff, 0xe0}, bytes.Repeat([]byte{0x55}, 200)...), wantErr: ErrCorrupt},
		{name: "truncated jpeg", data: bridge[:len(bridge)/2], wantErr: ErrCorrupt},
		{name: "jpeg header only", data: bridge[:300], wantErr: ErrCorrupt},
		{name: "truncated png", data: readFile(t, "testdata/pdq/images/misc/c.png")[:4000], wantErr: ErrCorrupt},
		{name: "png header without data", data: pngHeader(10, 10), wantErr: ErrCorrupt},
		{name: "png 0x0", data: pngHeader(0, 0), wantErr: ErrCorrupt},
		{name: "png 50000x50000", data: pngHeader(50000, 50000), wantErr: ErrTooLarge},
		{name: "png 2^31-1 square", data: pngHeader(math.MaxInt32, math.MaxInt32), wantErr: ErrTooLarge},
		{name: "png 2^32-1 square", data: pngHeader(math.MaxUint32, math.MaxUint32), wantErr: ErrTooLarge},
		{name: "jpeg 60000x60000", data: jpegHeader(60000, 60000), wantErr: ErrTooLarge},
		{name: "gif 65535x65535", data: gifHeader(65535, 65535), wantErr: ErrTooLarge},
		{name: "webp 16384x16384", data: webpVP8XHeader(16384, 16384), wantErr: ErrTooLarge},
		{name: "bmp 50000x50000", data: bmpHeader(50000, 50000), wantErr: ErrTooLarge},
		{name: "over custom pixel cap", data: bridge, lim: Limits{MaxPixels: 1000 * 1000}, wantErr: ErrTooLarge},
		{name: "over byte cap", data: bridge, lim: Limits{MaxBytes: 1000}, wantErr: ErrTooLarge},
		{
			name: "1x1 png", data: encodePNG(t, onePx), format: "png",
			checks: []check{hasSize(1, 1), hasPixel(0, 0, [3]byte{10, 120, 240}, 0)},
		},
		{
			name: "1x1 jpeg", data: encodeJPEG(t, onePx), format: "jpeg",
			checks: []check{hasSize(1, 1), hasPixel(0, 0, [3]byte{10, 120, 240}, 4)},
		},
		{
			// High byte of each 16-bit sample (the low bytes are noise).
			name: "16-bit rgb png", data: readFile(t, "testdata/images/generated/rgb16.png"), format: "png",
			checks: []check{hasSize(96, 96), isType(&image.RGBA64{})},
		},
		{
			// Documented: we keep the high byte; Pillow's I;16 -> RGB clips to 255.
			name: "16-bit gray png", data: readFile(t, "testdata/images/generated/gray16.png"), format: "png",
			checks: []check{hasSize(64, 48), isType(&image.Gray16{}),
				hasPixel(0, 0, [3]byte{0, 0, 0}, 0), hasPixel(63, 0, [3]byte{255, 255, 255}, 0), hasPixel(32, 5, [3]byte{130, 130, 130}, 0)},
		},
		{
			name: "cmyk jpeg", data: readFile(t, "testdata/images/generated/cmyk.jpg"), format: "jpeg",
			checks: []check{hasSize(256, 256), isType(&RGBImage{})}, // pixels: TestParityCLIPImageProcessor (decoded goldens)
		},
		{
			name: "go cmyk jpeg", data: readFile(t, "testdata/images/go/video-001.cmyk.jpeg"), format: "jpeg",
			checks: []check{hasSize(150, 103), isType(&RGBImage{})},
		},
		{
			// First frame only: a photo; frames 2 and 3 are flat red and blue.
			name: "animated gif", data: readFile(t, "testdata/images/generated/anim.gif"), format: "gif",
			checks: []check{hasSize(96, 96), isType(&image.Paletted{}), func(t *testing.T, img image.Image) {
				if p := pixel(img, 48, 48); p == [3]byte{255, 0, 0} || p == [3]byte{0, 0, 255} {
					t.Errorf("centre pixel %v is from a later frame", p)
				}
			}},
		},
		{
			name: "grayscale jpeg", data: readFile(t, "testdata/images/go/video-005.gray.jpeg"), format: "jpeg",
			checks: []check{hasSize(150, 103), isType(&RGBImage{}), func(t *testing.T, img image.Image) {
				for _, xy := range [][2]int{{0, 0}, {75, 50}, {149, 102}} {
					if p := pixel(img, xy[0], xy[1]); p[0] != p[1] || p[1] != p[2] {
						t.Errorf("grey pixel %v at %v has colour", p, xy)
					}
				}
			}},
		},
		{
			name: "grayscale png", data: readFile(t, "testdata/images/go/video-005.gray.png"), format: "png",
			checks: []check{hasSize(150, 103), isType(&image.Gray{})},
		},
		{
			// Documented: transparent pixels composite to white (Pillow's
			// convert("RGB") would show palette entry 0, black).
			name: "paletted png with transparency", data: readFile(t, "testdata/images/generated/palette-trns.png"), format: "png",
			checks: []check{hasSize(32, 16), isType(&image.Paletted{}),
				hasPixel(0, 0, [3]byte{255, 255, 255}, 0), hasPixel(31, 15, [3]byte{200, 30, 30}, 0)},
		},
		{
			// Documented: alpha over white. Red 40 at alpha 0 -> white, alpha 255 -> (40,0,0),
			// alpha 131 (x=16) -> (40*131 + 255*124)/255 = 145, 255*124/255 = 124.
			name: "rgba with partial alpha", data: readFile(t, "testdata/images/generated/rgba-alpha.png"), format: "png",
			checks: []check{hasSize(32, 16), hasPixel(0, 0, [3]byte{255, 255, 255}, 0), hasPixel(31, 0, [3]byte{40, 0, 0}, 0),
				hasPixel(16, 0, [3]byte{145, 124, 124}, 0)},
		},
		{name: "lossy webp", data: readFile(t, "testdata/images/go/yellow_rose.lossy.webp"), format: "webp", checks: []check{hasSize(400, 301)}},
		{name: "bmp", data: readFile(t, "testdata/images/go/video-001.bmp"), format: "bmp", checks: []check{hasSize(150, 103)}},
		{
			name: "exif orientation 6", data: readFile(t, "testdata/images/generated/orient-6.jpg"), format: "jpeg",
			checks: []check{hasSize(224, 399)}, // stored 399x224, rotated upright
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img, format, err := Decode(tc.data, tc.lim)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				for _, other := range []error{ErrTooLarge, ErrUnsupported, ErrCorrupt} {
					if other != tc.wantErr && errors.Is(err, other) {
						t.Errorf("err %v also matches %v", err, other)
					}
				}
				if img != nil {
					t.Errorf("image returned with error")
				}
				t.Logf("%v", err)
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if format != tc.format {
				t.Errorf("format %q, want %q", format, tc.format)
			}
			for _, c := range tc.checks {
				c(t, img)
			}
			// Every decodable input must preprocess to finite values.
			for i, v := range Preprocess(img, CLIPSpec(), nil) {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					t.Fatalf("tensor[%d] = %v", i, v)
				}
			}
		})
	}
}

func typeName(img image.Image) string {
	switch img.(type) {
	case *image.RGBA:
		return "RGBA"
	case *image.RGBA64:
		return "RGBA64"
	case *image.NRGBA:
		return "NRGBA"
	case *image.NRGBA64:
		return "NRGBA64"
	case *image.Gray:
		return "Gray"
	case *image.Gray16:
		return "Gray16"
	case *image.CMYK:
		return "CMYK"
	case *image.Paletted:
		return "Paletted"
	case *image.YCbCr:
		return "YCbCr"
	case *RGBImage:
		return "RGBImage"
	}
	return "other"
}

// A header declaring 50000x50000 must be refused from the header alone:
// quickly and without allocating anything like the image.
func TestDecodeRefusesHugeHeaderCheaply(t *testing.T) {
	for name, data := range map[string][]byte{
		"png":  pngHeader(50000, 50000),
		"jpeg": jpegHeader(60000, 60000),
		"gif":  gifHeader(65535, 65535),
		"webp": webpVP8XHeader(16384, 16384),
	} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := time.Now()
		_, _, err := Decode(data, Limits{})
		el := time.Since(start)
		runtime.ReadMemStats(&after)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%s: err = %v", name, err)
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
			t.Errorf("%s: refusing allocated %d bytes", name, alloc)
		}
		if el > 2*time.Second { // decoding would take minutes; the bound only catches that
			t.Errorf("%s: refusing took %v", name, el)
		}
	}
}

func TestJPEGOrientationParsing(t *testing.T) {
	exif := func(order string, typ uint16, val uint32) []byte {
		var bo binary.AppendByteOrder = binary.LittleEndian
		if order == "MM" {
			bo = binary.BigEndian
		}
		t := []byte(order)
		t = bo.AppendUint16(t, 42)
		t = bo.AppendUint32(t, 8)
		t = bo.AppendUint16(t, 2) // two entries: an unrelated tag, then orientation
		t = bo.AppendUint16(t, 0x010f)
		t = bo.AppendUint16(t, 2)
		t = bo.AppendUint32(t, 4)
		t = append(t, 'A', 'B', 'C', 0)
		t = bo.AppendUint16(t, 0x0112)
		t = bo.AppendUint16(t, typ)
		t = bo.AppendUint32(t, 1)
		if typ == 3 {
			t = bo.AppendUint16(t, uint16(val))
			t = append(t, 0, 0)
		} else {
			t = bo.AppendUint32(t, val)
		}
		return append([]byte("Exif\x00\x00"), t...)
	}
	seg := func(marker byte, payload []byte) []byte {
		return append([]byte{0xff, marker, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)}, payload...)
	}
	soi := []byte{0xff, 0xd8}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	for _, tc := range []struct {
		name string
		data []byte
		want int
	}{
		{"none", cat(soi, seg(0xe0, []byte("JFIF\x00....")), []byte{0xff, 0xda}), 1},
		{"II short 6", cat(soi, seg(0xe1, exif("II", 3, 6))), 6},
		{"MM short 8", cat(soi, seg(0xe0, []byte("JFIF\x00")), seg(0xe1, exif("MM", 3, 8))), 8},
		{"MM long 3", cat(soi, seg(0xe1, exif("MM", 4, 3))), 3},
		{"out of range 9", cat(soi, seg(0xe1, exif("II", 3, 9))), 1},
		{"zero", cat(soi, seg(0xe1, exif("II", 3, 0))), 1},
		{"wrong type", cat(soi, seg(0xe1, exif("II", 2, 6))), 1},
		{"first exif wins", cat(soi, seg(0xe1, exif("II", 3, 5)), seg(0xe1, exif("II", 3, 7))), 5},
		{"after SOS ignored", cat(soi, []byte{0xff, 0xda, 0, 2}, seg(0xe1, exif("II", 3, 6))), 1},
		{"fill bytes", cat(soi, []byte{0xff, 0xff}, seg(0xe1, exif("II", 3, 2))), 2},
		{"truncated segment", cat(soi, seg(0xe1, exif("II", 3, 6))[:20]), 1},
		{"truncated ifd", cat(soi, seg(0xe1, exif("II", 3, 6)[:16])), 1},
		{"xmp app1", cat(soi, seg(0xe1, []byte("http://ns.adobe.com/xap/1.0/\x00<x/>"))), 1},
		{"bad tiff magic", cat(soi, seg(0xe1, append([]byte("Exif\x00\x00II\x2b\x00"), make([]byte, 20)...))), 1},
		{"huge ifd offset", cat(soi, seg(0xe1, append([]byte("Exif\x00\x00II*\x00\xff\xff\xff\x7f"), make([]byte, 20)...))), 1},
		{"not jpeg", []byte("GIF89a"), 1},
	} {
		if got := jpegOrientation(tc.data); got != tc.want {
			t.Errorf("%s: orientation %d, want %d", tc.name, got, tc.want)
		}
	}
}

// All eight orientations of the same picture decode to the same upright
// image (up to JPEG re-compression noise).
func TestDecodeOrientationsAgree(t *testing.T) {
	ref, _, err := Decode(readFile(t, "testdata/pdq/images/misc/small.jpg"), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	refT := Preprocess(ref, CLIPSpec(), nil)
	for o := 2; o <= 8; o++ {
		img, _, err := Decode(readFile(t, filepathf("testdata/images/generated/orient-%d.jpg", o)), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		st := stats(absDiffs(Preprocess(img, CLIPSpec(), nil), refT))
		if st.mean > 0.05 {
			t.Errorf("orientation %d: mean diff %.4f from the upright original", o, st.mean)
		}
	}
}

func filepathf(format string, a ...any) string { return fmt.Sprintf(format, a...) }

func TestJPEGScanLimit(t *testing.T) {
	for rel, want := range map[string]int{
		"testdata/images/go/video-001.progressive.jpeg":   10,
		"testdata/pdq/images/dih/bridge-3-rotate-180.jpg": 7,
		"testdata/pdq/images/bridge-mods/aaa-orig.jpg":    1,
		"testdata/images/go/video-001.restart2.jpeg":      1,
		"testdata/images/generated/orient-6.jpg":          1,
	} {
		if got := jpegScans(readFile(t, rel), maxJPEGScans); got != want {
			t.Errorf("%s: %d scans, want %d", rel, got, want)
		}
	}
	// A "scan bomb": the smallest scan (a DC refinement) of a progressive
	// file repeated 150 times. Go's decoder accepts it (each repeat re-walks
	// every block); we refuse.
	d := readFile(t, "testdata/images/go/video-001.progressive.jpeg")
	var starts []int
	for i := 0; ; {
		k := bytes.Index(d[i:], []byte{0xff, 0xda})
		if k < 0 {
			break
		}
		starts = append(starts, i+k)
		i += k + 2
	}
	starts = append(starts, len(d)-2)
	var scan []byte
	for i := 0; i+1 < len(starts); i++ {
		if s := d[starts[i]:starts[i+1]]; scan == nil || len(s) < len(scan) {
			scan = s
		}
	}
	var b bytes.Buffer
	b.Write(d[:len(d)-2])
	for range 150 {
		b.Write(scan)
	}
	b.Write([]byte{0xff, 0xd9})
	if _, err := jpeg.Decode(bytes.NewReader(b.Bytes())); err != nil {
		t.Fatalf("image/jpeg rejects the bomb itself (%v); the test no longer shows anything", err)
	}
	if _, _, err := Decode(b.Bytes(), Limits{}); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("scan bomb: err = %v, want ErrUnsupported", err)
	}
}
