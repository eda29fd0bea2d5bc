package pdq

import (
	"image"
	"image/color"
)

// lumaTable holds the reference's luminance weights times each 8-bit value,
// in float64. The luminance of (r, g, b) is float32(R[r] + G[g] + B[b]):
// exactly what the pdqhash wheel computes (numpy float64, then float32), and
// within one float32 rounding of the C++ reference's float32 sum. Built
// once; never written afterwards.
var lumaTable = func() (t [3][256]float64) {
	for v := range 256 {
		t[0][v] = 0.299 * float64(v)
		t[1][v] = 0.587 * float64(v)
		t[2][v] = 0.114 * float64(v)
	}
	return t
}()

func luma8(r, g, b uint8) float32 {
	return float32(lumaTable[0][r] + lumaTable[1][g] + lumaTable[2][b])
}

// rowFiller returns a function that writes the luminance of row y (counted
// from the top of img's bounds) into dst. The reference reads 8-bit RGB,
// ignoring alpha (as PIL's convert("RGB") does), or uses a grey value
// directly. Common image types are read directly; others go through
// color.NRGBAModel.
func rowFiller(img image.Image) func(y int, dst []float32) {
	b := img.Bounds()
	switch m := img.(type) {
	case *image.YCbCr:
		return func(y int, dst []float32) { lumaRowYCbCr(m, b, y, dst) }
	case *image.RGBA:
		return func(y int, dst []float32) { lumaRowRGBA(m, b, y, dst) }
	case *image.NRGBA:
		return func(y int, dst []float32) {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			for x := range dst {
				px := row[4*x : 4*x+3 : 4*x+3]
				dst[x] = luma8(px[0], px[1], px[2])
			}
		}
	case *image.Gray:
		return func(y int, dst []float32) {
			row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
			row = row[:len(dst)]
			for x, v := range row {
				dst[x] = float32(v)
			}
		}
	default:
		return func(y int, dst []float32) {
			yy := b.Min.Y + y
			for x := range dst {
				c := color.NRGBAModel.Convert(img.At(b.Min.X+x, yy)).(color.NRGBA)
				dst[x] = luma8(c.R, c.G, c.B)
			}
		}
	}
}

func lumaRowRGBA(m *image.RGBA, b image.Rectangle, y int, dst []float32) {
	row := m.Pix[m.PixOffset(b.Min.X, b.Min.Y+y):]
	for x := range dst {
		px := row[4*x : 4*x+4 : 4*x+4]
		if px[3] == 0xff {
			dst[x] = luma8(px[0], px[1], px[2])
			continue
		}
		// Translucent: undo the premultiplication, as NRGBA would hold it.
		c := color.NRGBAModel.Convert(color.RGBA{px[0], px[1], px[2], px[3]}).(color.NRGBA)
		dst[x] = luma8(c.R, c.G, c.B)
	}
}

// lumaRowYCbCr converts with color.YCbCrToRGB, the conversion m.At uses.
func lumaRowYCbCr(m *image.YCbCr, b image.Rectangle, y int, dst []float32) {
	yy := b.Min.Y + y
	yi := m.YOffset(b.Min.X, yy)
	ci := m.COffset(b.Min.X, yy)
	ys := m.Y[yi : yi+len(dst)]
	x0 := b.Min.X
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio444:
		cb := m.Cb[ci : ci+len(dst)]
		cr := m.Cr[ci : ci+len(dst)]
		for x, yv := range ys {
			r, g, bl := color.YCbCrToRGB(yv, cb[x], cr[x])
			dst[x] = luma8(r, g, bl)
		}
	case image.YCbCrSubsampleRatio422, image.YCbCrSubsampleRatio420:
		// Chroma column of x is x/2 - x0/2 relative to ci.
		cb, cr := m.Cb[ci:], m.Cr[ci:]
		base := x0 / 2
		for x, yv := range ys {
			c := (x0+x)/2 - base
			r, g, bl := color.YCbCrToRGB(yv, cb[c], cr[c])
			dst[x] = luma8(r, g, bl)
		}
	default:
		for x := range dst {
			c := m.YCbCrAt(x0+x, yy)
			r, g, bl := color.YCbCrToRGB(c.Y, c.Cb, c.Cr)
			dst[x] = luma8(r, g, bl)
		}
	}
}
