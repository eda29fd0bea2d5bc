package imageprep

import (
	"context"
	"image"
	"image/color"

	"github.com/xmodal/xmodal/encoders/pdq"
)

// RGBImage is an opaque image of packed 8-bit RGB pixels: 3 bytes per pixel,
// rows Stride bytes apart, starting at Rect.Min. It is what the Decoder
// returns: colour converted once (alpha composited over white, JPEG
// YCbCr/CMYK as Pillow converts them, 16-bit samples reduced to their high
// byte), so that the thumbnail, the model input and the PDQ hash all read the
// same pixels without converting again.
type RGBImage struct {
	Pix    []byte
	Stride int
	Rect   image.Rectangle
	// grid, when its Scale is over 1, places the image on the full-size
	// JPEG it is a reduced decode of (PDQGrid).
	grid pdq.Grid
}

// PDQGrid reports, for a JPEG decoded at a reduced scale (fast mode), the
// full-size image its pixels stand for: each is (up to rounding) the mean
// of a Scale x Scale block of it, as libjpeg's reduced IDCT gives them.
// encoders/pdq hashes such an image with the full image's geometry
// (pdq.Grid), so that its hash stays near the full-resolution one.
func (m *RGBImage) PDQGrid() (pdq.Grid, bool) { return m.grid, m.grid.Scale > 1 }

// jpegGrid is the grid of a w x h decode (as stored, before orientation)
// of a fullW x fullH JPEG at 1/scale, after EXIF orientation o: libjpeg's
// partial blocks are at the stored image's right and bottom edges, so an
// upright axis that runs backwards over the stored one starts with them.
func jpegGrid(scale, fullW, fullH, w, h, o int) pdq.Grid {
	if scale < 2 {
		return pdq.Grid{}
	}
	g := pdq.Grid{Scale: scale, FullW: fullW, FullH: fullH}
	revX, revY := false, false // upright axes that run backwards
	switch o {
	case 2:
		revX = true
	case 3, 7:
		revX, revY = true, true
	case 4:
		revY = true
	case 6:
		revX = true
	case 8:
		revY = true
	}
	if o >= 5 && o <= 8 {
		g.FullW, g.FullH = fullH, fullW
		w, h = h, w
	}
	if revX {
		g.OffX = g.FullW - scale*w
	}
	if revY {
		g.OffY = g.FullH - scale*h
	}
	return g
}

// NewRGBImage returns a black w x h image.
func NewRGBImage(w, h int) *RGBImage { return newRGB(w, h, nil) }

// newRGB returns a w x h image over buf when it is large enough.
func newRGB(w, h int, buf []byte) *RGBImage {
	n := 3 * w * h
	if cap(buf) >= n {
		buf = buf[:n]
	} else {
		buf = make([]byte, n)
	}
	return &RGBImage{Pix: buf, Stride: 3 * w, Rect: image.Rect(0, 0, w, h)}
}

// ColorModel implements image.Image.
func (m *RGBImage) ColorModel() color.Model { return color.RGBAModel }

// Bounds implements image.Image.
func (m *RGBImage) Bounds() image.Rectangle { return m.Rect }

// At implements image.Image.
func (m *RGBImage) At(x, y int) color.Color {
	if !(image.Point{x, y}.In(m.Rect)) {
		return color.RGBA{}
	}
	i := m.PixOffset(x, y)
	p := m.Pix[i : i+3 : i+3]
	return color.RGBA{p[0], p[1], p[2], 255}
}

// PixOffset is the index of pixel (x, y)'s first byte in Pix.
func (m *RGBImage) PixOffset(x, y int) int {
	return (y-m.Rect.Min.Y)*m.Stride + (x-m.Rect.Min.X)*3
}

// SubImage returns the part of m inside r, sharing its pixels.
func (m *RGBImage) SubImage(r image.Rectangle) image.Image {
	r = r.Intersect(m.Rect)
	if r.Empty() {
		return &RGBImage{}
	}
	i := m.PixOffset(r.Min.X, r.Min.Y)
	return &RGBImage{Pix: m.Pix[i:], Stride: m.Stride, Rect: r}
}

// RowRGB returns row y (counted from Rect.Min.Y) as packed RGB, without
// copying. encoders/pdq reads images through this method when they have it.
func (m *RGBImage) RowRGB(y int) []byte {
	o := y * m.Stride
	return m.Pix[o : o+3*m.Rect.Dx() : o+3*m.Rect.Dx()]
}

// PackedRGB returns the pixel buffer from the first row on and the row
// stride: encoders/pdq hashes such images in C (pdq.PackedRGB).
func (m *RGBImage) PackedRGB() ([]byte, int) { return m.Pix, m.Stride }

// Opaque implements the optional interface of image/draw and image/png.
func (m *RGBImage) Opaque() bool { return true }

// toRGB converts any image to packed RGB with the conversions of newRowSource.
func toRGB(img image.Image, buf []byte) *RGBImage {
	if m, ok := img.(*RGBImage); ok {
		return m
	}
	src := newRowSource(img)
	w, h := src.size()
	out := newRGB(w, h, buf)
	for y := 0; y < h; y++ {
		src.row(y, out.Pix[y*out.Stride:(y+1)*out.Stride])
	}
	return out
}

// toRGBContext is toRGB checking ctx every 256 rows.
func toRGBContext(ctx context.Context, img image.Image) (*RGBImage, error) {
	if m, ok := img.(*RGBImage); ok {
		return m, nil
	}
	src := newRowSource(img)
	w, h := src.size()
	out := newRGB(w, h, nil)
	for y := 0; y < h; y++ {
		if y%256 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		src.row(y, out.Pix[y*out.Stride:(y+1)*out.Stride])
	}
	return out, nil
}

// rgbSource reads an *RGBImage without converting.
type rgbSource struct{ m *RGBImage }

func (s rgbSource) size() (int, int)      { return s.m.Rect.Dx(), s.m.Rect.Dy() }
func (s rgbSource) row(y int, dst []byte) { copy(dst, s.m.RowRGB(y)) }
func (s rgbSource) rowRef(y int) []byte   { return s.m.RowRGB(y) }

// rowRefer is a rowSource whose rows can be read in place.
type rowRefer interface {
	rowRef(y int) []byte
}

// orientRGB returns m transformed so that an image stored with EXIF
// orientation o (2..8) becomes upright, as PIL.ImageOps.exif_transpose does.
func orientRGB(m *RGBImage, o int) *RGBImage {
	if o < 2 || o > 8 {
		return m
	}
	w, h := m.Rect.Dx(), m.Rect.Dy()
	ow, oh := w, h
	if o >= 5 {
		ow, oh = h, w
	}
	out := newRGB(ow, oh, nil)
	for y := 0; y < oh; y++ {
		row := out.Pix[y*out.Stride : y*out.Stride+3*ow]
		for x := 0; x < ow; x++ {
			sx, sy := orientSource(o, w, h, x, y)
			p := m.Pix[sy*m.Stride+3*sx : sy*m.Stride+3*sx+3 : sy*m.Stride+3*sx+3]
			row[3*x], row[3*x+1], row[3*x+2] = p[0], p[1], p[2]
		}
	}
	return out
}

// orientSource maps pixel (x, y) of the upright image to its pixel in the
// stored w x h image of EXIF orientation o.
func orientSource(o, w, h, x, y int) (int, int) {
	switch o {
	case 2: // mirror horizontal
		return w - 1 - x, y
	case 3: // rotate 180
		return w - 1 - x, h - 1 - y
	case 4: // mirror vertical
		return x, h - 1 - y
	case 5: // transpose
		return y, x
	case 6: // rotate 90 clockwise
		return y, h - 1 - x
	case 7: // transverse
		return w - 1 - y, h - 1 - x
	case 8: // rotate 90 counter-clockwise
		return w - 1 - y, x
	}
	return x, y
}
