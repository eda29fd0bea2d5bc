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

// RGBRower is an image that can hand out its rows as packed 8-bit RGB
// (3 bytes per pixel, row y counted from the top of its bounds) without
// converting, such as encoders/imageprep's RGBImage. Hashers read such
// images through RowRGB.
type RGBRower interface {
	RowRGB(y int) []byte
}

// rowFiller returns a function that writes the luminance of row y (counted
// from the top of img's bounds) into dst. The reference reads 8-bit RGB,
// ignoring alpha (as PIL's convert("RGB") does), or uses a grey value
// directly. Common image types are read directly; others go through
// color.NRGBAModel.
func rowFiller(img image.Image) func(y int, dst []float32) {
	b := img.Bounds()
	switch m := img.(type) {
	case RGBRower:
		return func(y int, dst []float32) {
			row := m.RowRGB(y)
			for x := range dst {
				px := row[3*x : 3*x+3 : 3*x+3]
				dst[x] = luma8(px[0], px[1], px[2])
			}
		}
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

// ycbcrLuma is the luminance of color.YCbCrToRGB(y, cb, cr) (the
// conversion m.At uses), computed inline: the same JFIF fixed-point
// arithmetic and clamping, with the chroma terms passed in precomputed.
func ycbcrLuma(y uint8, rc, gc, bc int32) float32 {
	yy := int32(y) * 0x10101
	r, g, b := yy+rc, yy+gc, yy+bc
	return luma8(clamp16(r), clamp16(g), clamp16(b))
}

// clamp16 is YCbCrToRGB's clamp of a 16.16 fixed-point value to 0..255.
func clamp16(v int32) uint8 {
	if uint32(v)&0xff000000 == 0 {
		return uint8(v >> 16)
	}
	return uint8(^(v >> 31))
}

// chroma returns YCbCrToRGB's red, green and blue chroma terms.
func chroma(cb, cr uint8) (rc, gc, bc int32) {
	cb1, cr1 := int32(cb)-128, int32(cr)-128
	return 91881 * cr1, -22554*cb1 - 46802*cr1, 116130 * cb1
}

// lumaRowYCbCr converts row y of m to luminance.
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
			rc, gc, bc := chroma(cb[x], cr[x])
			dst[x] = ycbcrLuma(yv, rc, gc, bc)
		}
	case image.YCbCrSubsampleRatio422, image.YCbCrSubsampleRatio420:
		if x0 < 0 {
			// Rare: chroma columns are x/2 - x0/2 with Go's truncating
			// division, which does not pair pixels evenly across zero.
			for x := range dst {
				c := m.YCbCrAt(x0+x, yy)
				r, g, bl := color.YCbCrToRGB(c.Y, c.Cb, c.Cr)
				dst[x] = luma8(r, g, bl)
			}
			return
		}
		// Pixel x0+x reads chroma column (x0+x)/2 - x0/2 relative to ci,
		// so pixels pair up on chroma samples, the first one alone when x0
		// is odd.
		cb, cr := m.Cb[ci:], m.Cr[ci:]
		x, c := 0, 0
		if x0&1 != 0 {
			rc, gc, bc := chroma(cb[0], cr[0])
			dst[0] = ycbcrLuma(ys[0], rc, gc, bc)
			x, c = 1, 1
		}
		for ; x+1 < len(ys); x, c = x+2, c+1 {
			rc, gc, bc := chroma(cb[c], cr[c])
			y0 := int32(ys[x]) * 0x10101
			y1 := int32(ys[x+1]) * 0x10101
			dst[x] = luma8(clamp16(y0+rc), clamp16(y0+gc), clamp16(y0+bc))
			dst[x+1] = luma8(clamp16(y1+rc), clamp16(y1+gc), clamp16(y1+bc))
		}
		if x < len(ys) {
			rc, gc, bc := chroma(cb[c], cr[c])
			dst[x] = ycbcrLuma(ys[x], rc, gc, bc)
		}
	default:
		for x := range dst {
			c := m.YCbCrAt(x0+x, yy)
			r, g, bl := color.YCbCrToRGB(c.Y, c.Cb, c.Cr)
			dst[x] = luma8(r, g, bl)
		}
	}
}
