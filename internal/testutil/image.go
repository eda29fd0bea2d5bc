package testutil

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/xmodal/xmodal/encoders/pdq"
)

// DecodeImage reads and decodes an image file as the PDQ and near-duplicate
// hashers read one (pdq.Decode), failing the test on any error.
func DecodeImage(t testing.TB, path string) image.Image {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, _, err := pdq.Decode(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}

// SmoothPictureJPEG returns a side x side JPEG (quality 85) of a smooth
// random field of colour (a 5x5 grid of random colours from rng,
// interpolated), blended half and half with base (sampled to the same
// size) when base is not nil. Each call gives a picture unrelated to the
// others (its PDQ hash too): benchmarks use it for streams of distinct
// images, which the index does not cluster together.
func SmoothPictureJPEG(t testing.TB, rng *rand.Rand, side int, base image.Image) []byte {
	t.Helper()
	var grid [5][5][3]float64
	for y := range grid {
		for x := range grid[y] {
			for c := range 3 {
				grid[y][x][c] = rng.Float64() * 255
			}
		}
	}
	img := image.NewRGBA(image.Rect(0, 0, side, side))
	for y := range side {
		gy := float64(y) / float64(side) * 4
		y0 := int(gy)
		fy := gy - float64(y0)
		for x := range side {
			gx := float64(x) / float64(side) * 4
			x0 := int(gx)
			fx := gx - float64(x0)
			var px [3]float64
			for c := range 3 {
				px[c] = (grid[y0][x0][c]*(1-fx)+grid[y0][x0+1][c]*fx)*(1-fy) + (grid[y0+1][x0][c]*(1-fx)+grid[y0+1][x0+1][c]*fx)*fy
			}
			if base != nil {
				b := base.Bounds()
				r, g, bl, _ := base.At(b.Min.X+x*b.Dx()/side, b.Min.Y+y*b.Dy()/side).RGBA()
				px = [3]float64{(px[0] + float64(r>>8)) / 2, (px[1] + float64(g>>8)) / 2, (px[2] + float64(bl>>8)) / 2}
			}
			img.SetRGBA(x, y, color.RGBA{uint8(px[0]), uint8(px[1]), uint8(px[2]), 255})
		}
	}
	var out bytes.Buffer
	if err := jpeg.Encode(&out, img, &jpeg.Options{Quality: 85}); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// RandomPDQ returns a PDQ hash of 256 random bits from rng.
func RandomPDQ(rng *rand.Rand) pdq.Hash {
	var h pdq.Hash
	for i := range h {
		h[i] = byte(rng.Uint32())
	}
	return h
}
