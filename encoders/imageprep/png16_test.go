package imageprep

import (
	"bytes"
	"compress/zlib"
	"context"
	"image"
	"image/png"
	"testing"
)

// png16Of encodes a w x h 16-bit PNG of the given colour type (0 gray,
// 4 gray+alpha, 2 RGB, 6 RGBA) with varied samples, so that image/png's
// encoder uses every filter.
func png16Of(t testing.TB, ctype, w, h int) []byte {
	t.Helper()
	var img image.Image
	v := func(x, y, c int) uint16 { return uint16((x*2731 + y*7919 + c*104729) ^ (x * y)) }
	switch ctype {
	case 0:
		m := image.NewGray16(image.Rect(0, 0, w, h))
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				o := m.PixOffset(x, y)
				m.Pix[o], m.Pix[o+1] = byte(v(x, y, 0)>>8), byte(v(x, y, 0))
			}
		}
		img = m
	default:
		m := image.NewNRGBA64(image.Rect(0, 0, w, h))
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				o := m.PixOffset(x, y)
				for c := 0; c < 4; c++ {
					s := v(x, y, c)
					if ctype == 4 && c > 0 && c < 3 {
						s = v(x, y, 0) // grey
					}
					if (ctype == 2) && c == 3 {
						s = 0xffff
					}
					m.Pix[o+2*c], m.Pix[o+2*c+1] = byte(s>>8), byte(s)
				}
			}
		}
		img = m
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The row decoder gives image/png's pixels, converted as the row sources
// convert them, for each 16-bit colour type.
func TestPNG16RowDecoderMatchesImagePNG(t *testing.T) {
	for _, ctype := range []int{0, 2, 4, 6} {
		data := png16Of(t, ctype, 67, 41)
		want, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		hd, ok := png16Streamable(data)
		if !ok {
			t.Fatalf("colour type %d (image/png wrote type %d, depth %d): not streamable", ctype, data[25], data[24])
		}
		got, err := decodePNG16(context.Background(), data, hd)
		if err != nil {
			t.Fatalf("colour type %d: %v", ctype, err)
		}
		if !bytes.Equal(got.Pix, toRGB(want, nil).Pix) {
			t.Errorf("colour type %d (%T): pixels differ from image/png's", ctype, want)
		}
	}
	// Grey with alpha (image/png never writes it): written here, filter None.
	const gw, gh = 13, 7
	var raw bytes.Buffer
	for y := 0; y < gh; y++ {
		raw.WriteByte(0)
		for x := 0; x < gw; x++ {
			raw.Write([]byte{byte(x * 19), byte(y), byte(255 - x*17), byte(x * y)})
		}
	}
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	zw.Write(raw.Bytes())
	zw.Close()
	ihdr := []byte{0, 0, 0, gw, 0, 0, 0, gh, 16, 4, 0, 0, 0}
	ga := append([]byte("\x89PNG\r\n\x1a\n"), pngChunk("IHDR", ihdr)...)
	ga = append(ga, pngChunk("IDAT", z.Bytes())...)
	ga = append(ga, pngChunk("IEND", nil)...)
	want, err := png.Decode(bytes.NewReader(ga))
	if err != nil {
		t.Fatal(err)
	}
	hd, ok := png16Streamable(ga)
	got, err := decodePNG16(context.Background(), ga, hd)
	if !ok || err != nil || !bytes.Equal(got.Pix, toRGB(want, nil).Pix) {
		t.Errorf("grey+alpha 16-bit: streamable %v, err %v, or pixels differ from image/png's", ok, err)
	}

	// A corrupted chunk is an error, not a picture.
	data := png16Of(t, 2, 20, 10)
	bad := bytes.Clone(data)
	bad[len(bad)/2] ^= 0x55
	hd, _ = png16Streamable(bad)
	if _, err := decodePNG16(context.Background(), bad, hd); err == nil {
		t.Error("a corrupted 16-bit PNG decoded")
	}
}

// Through the Decoder, a 16-bit PNG reserves (and so holds) about the RGB
// image, not the 8 bytes a pixel image/png would.
func TestPNG16DecodeMemory(t *testing.T) {
	const w, h = 900, 700
	data := png16Of(t, 6, w, h)
	budget := NewBudget(1 << 30)
	d, _ := NewDecoder(DecoderOptions{Mode: ModeExact, Budget: budget})
	dec, err := d.Decode(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Release()
	if hw := budget.HighWater(); hw > 4*w*h {
		t.Errorf("reserved %d bytes for a %dx%d 16-bit PNG; the RGB image is %d", hw, w, h, 3*w*h)
	}
}

func FuzzPNG16(f *testing.F) {
	for _, ct := range []int{0, 2, 4, 6} {
		f.Add(png16Of(f, ct, 9, 5))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		hd, ok := png16Streamable(data)
		if !ok || int64(hd.w)*int64(hd.h) > 1<<16 {
			return
		}
		got, err := decodePNG16(context.Background(), data, hd)
		want, werr := png.Decode(bytes.NewReader(data))
		if err != nil || werr != nil {
			return // both decoders may refuse; only agreement on pixels is required
		}
		if !bytes.Equal(got.Pix, toRGB(want, nil).Pix) {
			t.Fatalf("pixels differ from image/png's")
		}
	})
}
