package query_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"testing"
)

// Hostile query images shared by the near-dup and bank tests.

func pngOf(t testing.TB, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func plainImage(w, h int, c color.Color) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), &image.Uniform{c}, image.Point{}, draw.Src)
	return img
}

// captionBandImage is all caption band: white with rows of black "letters".
func captionBandImage() *image.RGBA {
	band := plainImage(600, 400, color.White)
	for y := 40; y < 360; y += 60 {
		for x := 30; x < 570; x += 24 {
			draw.Draw(band, image.Rect(x, y, x+14, y+22), &image.Uniform{color.Black}, image.Point{}, draw.Src)
		}
	}
	return band
}

// overPixelCapPNG is a PNG whose header claims 20000 x 20000 pixels.
func overPixelCapPNG(t testing.TB) []byte {
	huge := pngOf(t, plainImage(1, 1, color.White))
	binary.BigEndian.PutUint32(huge[16:], 20000)
	binary.BigEndian.PutUint32(huge[20:], 20000)
	binary.BigEndian.PutUint32(huge[29:], crc32.ChecksumIEEE(huge[12:29])) // the IHDR chunk's CRC
	return huge
}
