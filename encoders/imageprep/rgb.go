package imageprep

import (
	"image"
	"image/color"
)

// rowSource yields an image as rows of packed 8-bit RGB, alpha composited
// over white. Rows are numbered from 0 (relative to Bounds().Min).
type rowSource interface {
	size() (w, h int)
	// row writes 3*w bytes of row y (0 <= y < h) into dst.
	row(y int, dst []byte)
}

// newRowSource picks a fast path for the concrete types the decoders
// return and falls back to image.Image.At for anything else.
func newRowSource(img image.Image) rowSource {
	b := img.Bounds()
	switch m := img.(type) {
	case *RGBImage:
		return rgbSource{m}
	case *image.RGBA:
		return &rgbaSource{m, b}
	case *image.NRGBA:
		return &nrgbaSource{m, b}
	case *image.Gray:
		return &graySource{m, b}
	// The chroma arithmetic below assumes non-negative coordinates (image's
	// own COffset truncates towards zero); decoders never produce others.
	case *image.YCbCr:
		if b.Min.X >= 0 && b.Min.Y >= 0 {
			return newYCbCrSource(m, nil, b)
		}
	case *image.NYCbCrA:
		if b.Min.X >= 0 && b.Min.Y >= 0 {
			return newYCbCrSource(&m.YCbCr, m, b)
		}
	case *image.CMYK:
		return &cmykSource{m, b}
	case *image.Paletted:
		s := &palettedSource{m: m, b: b}
		for i := range s.lut {
			if i < len(m.Palette) && m.Palette[i] != nil {
				s.lut[i] = overWhite(m.Palette[i])
			}
			// Indices past the palette read as opaque black, as in the
			// PNG decoder's own handling of such files.
		}
		return s
	case *image.Gray16:
		return &gray16Source{m, b}
	case *image.NRGBA64:
		return &nrgba64Source{m, b}
	case *image.RGBA64:
		return &rgba64Source{m, b}
	}
	return &genericSource{img, b}
}

func clamp8(v int32) byte {
	if v < 0 {
		return 0
	}
	if v > 255 {
		return 255
	}
	return byte(v)
}

// over16 composites a premultiplied 16-bit channel over white and keeps the
// high byte (Pillow keeps the high byte of 16-bit samples).
func over16(c, a uint32) byte {
	v := c + 0xffff - a
	if v > 0xffff {
		v = 0xffff
	}
	return byte(v >> 8)
}

func overWhite(c color.Color) [3]byte {
	r, g, b, a := c.RGBA()
	return [3]byte{over16(r, a), over16(g, a), over16(b, a)}
}

// over8 composites a non-premultiplied 8-bit channel over white, rounding.
func over8(c, a uint32) byte {
	return byte((c*a + 255*(255-a) + 127) / 255)
}

type rgbaSource struct {
	m *image.RGBA
	b image.Rectangle
}

func (s *rgbaSource) size() (int, int) { return s.b.Dx(), s.b.Dy() }
func (s *rgbaSource) row(y int, dst []byte) {
	o := s.m.PixOffset(s.b.Min.X, s.b.Min.Y+y)
	src := s.m.Pix[o : o+4*s.b.Dx()]
	for i, j := 0, 0; i < len(src); i, j = i+4, j+3 {
		if a := src[i+3]; a == 255 {
			dst[j], dst[j+1], dst[j+2] = src[i], src[i+1], src[i+2]
		} else {
			// premultiplied: c + (1-a)*white
			na := int32(255 - a)
			dst[j] = clamp8(int32(src[i]) + na)
			dst[j+1] = clamp8(int32(src[i+1]) + na)
			dst[j+2] = clamp8(int32(src[i+2]) + na)
		}
	}
}

type nrgbaSource struct {
	m *image.NRGBA
	b image.Rectangle
}

func (s *nrgbaSource) size() (int, int) { return s.b.Dx(), s.b.Dy() }
func (s *nrgbaSource) row(y int, dst []byte) {
	o := s.m.PixOffset(s.b.Min.X, s.b.Min.Y+y)
	src := s.m.Pix[o : o+4*s.b.Dx()]
	for i, j := 0, 0; i < len(src); i, j = i+4, j+3 {
		if a := src[i+3]; a == 255 {
			dst[j], dst[j+1], dst[j+2] = src[i], src[i+1], src[i+2]
		} else {
			a := uint32(a)
			dst[j] = over8(uint32(src[i]), a)
			dst[j+1] = over8(uint32(src[i+1]), a)
			dst[j+2] = over8(uint32(src[i+2]), a)
		}
	}
}

type graySource struct {
	m *image.Gray
	b image.Rectangle
}

func (s *graySource) size() (int, int) { return s.b.Dx(), s.b.Dy() }
func (s *graySource) row(y int, dst []byte) {
	o := s.m.PixOffset(s.b.Min.X, s.b.Min.Y+y)
	for i, v := range s.m.Pix[o : o+s.b.Dx()] {
		dst[3*i], dst[3*i+1], dst[3*i+2] = v, v, v
	}
}

type gray16Source struct {
	m *image.Gray16
	b image.Rectangle
}

func (s *gray16Source) size() (int, int) { return s.b.Dx(), s.b.Dy() }
func (s *gray16Source) row(y int, dst []byte) {
	o := s.m.PixOffset(s.b.Min.X, s.b.Min.Y+y)
	src := s.m.Pix[o : o+2*s.b.Dx()]
	for i := 0; i < len(src); i += 2 {
		v := src[i] // big-endian: high byte first
		j := 3 * (i / 2)
		dst[j], dst[j+1], dst[j+2] = v, v, v
	}
}

type nrgba64Source struct {
	m *image.NRGBA64
	b image.Rectangle
}

func (s *nrgba64Source) size() (int, int) { return s.b.Dx(), s.b.Dy() }
func (s *nrgba64Source) row(y int, dst []byte) {
	o := s.m.PixOffset(s.b.Min.X, s.b.Min.Y+y)
	src := s.m.Pix[o : o+8*s.b.Dx()]
	for i, j := 0, 0; i < len(src); i, j = i+8, j+3 {
		a := uint32(src[i+6])<<8 | uint32(src[i+7])
		for c := 0; c < 3; c++ {
			v := uint32(src[i+2*c])<<8 | uint32(src[i+2*c+1])
			dst[j+c] = over16(v*a/0xffff, a)
		}
	}
}

type rgba64Source struct {
	m *image.RGBA64
	b image.Rectangle
}

func (s *rgba64Source) size() (int, int) { return s.b.Dx(), s.b.Dy() }
func (s *rgba64Source) row(y int, dst []byte) {
	o := s.m.PixOffset(s.b.Min.X, s.b.Min.Y+y)
	src := s.m.Pix[o : o+8*s.b.Dx()]
	for i, j := 0, 0; i < len(src); i, j = i+8, j+3 {
		a := uint32(src[i+6])<<8 | uint32(src[i+7])
		for c := 0; c < 3; c++ {
			dst[j+c] = over16(uint32(src[i+2*c])<<8|uint32(src[i+2*c+1]), a)
		}
	}
}

type palettedSource struct {
	m   *image.Paletted
	b   image.Rectangle
	lut [256][3]byte
}

func (s *palettedSource) size() (int, int) { return s.b.Dx(), s.b.Dy() }
func (s *palettedSource) row(y int, dst []byte) {
	o := s.m.PixOffset(s.b.Min.X, s.b.Min.Y+y)
	for i, p := range s.m.Pix[o : o+s.b.Dx()] {
		c := &s.lut[p]
		dst[3*i], dst[3*i+1], dst[3*i+2] = c[0], c[1], c[2]
	}
}

// cmykSource converts like Pillow's cmyk2rgb (Convert.c):
// nk = 255-k; out = nk - c*nk/255 with Pillow's rounding division by 255.
type cmykSource struct {
	m *image.CMYK
	b image.Rectangle
}

func (s *cmykSource) size() (int, int) { return s.b.Dx(), s.b.Dy() }
func (s *cmykSource) row(y int, dst []byte) {
	o := s.m.PixOffset(s.b.Min.X, s.b.Min.Y+y)
	src := s.m.Pix[o : o+4*s.b.Dx()]
	for i, j := 0, 0; i < len(src); i, j = i+4, j+3 {
		nk := int32(255) - int32(src[i+3])
		for c := 0; c < 3; c++ {
			t := int32(src[i+c])*nk + 128
			dst[j+c] = clamp8(nk - ((t>>8)+t)>>8)
		}
	}
}

type genericSource struct {
	m image.Image
	b image.Rectangle
}

func (s *genericSource) size() (int, int) { return s.b.Dx(), s.b.Dy() }
func (s *genericSource) row(y int, dst []byte) {
	for x := 0; x < s.b.Dx(); x++ {
		c := s.m.At(s.b.Min.X+x, s.b.Min.Y+y)
		if c == nil {
			dst[3*x], dst[3*x+1], dst[3*x+2] = 0, 0, 0
			continue
		}
		v := overWhite(c)
		dst[3*x], dst[3*x+1], dst[3*x+2] = v[0], v[1], v[2]
	}
}

// ycbcrSource converts YCbCr to RGB the way libjpeg-turbo does when
// Pillow decodes a JPEG: "fancy" triangle-filter chroma upsampling for
// 2x1, 2x2 and 1x2 subsampling (jdsample.c h2v1/h2v2/h1v2_fancy_upsample,
// including their alternating rounding biases and edge replication), plain
// replication for 4x subsampling and for chroma planes at most 2 samples
// wide, and the fixed-point colour tables of jdcolor.c.
type ycbcrSource struct {
	m     *image.YCbCr
	alpha *image.NYCbCrA
	b     image.Rectangle
	hs    int // horizontal chroma factor: 1, 2 or 4
	vs    int // vertical chroma factor: 1 or 2
	// chroma grid extent in absolute chroma coordinates, inclusive
	cx0, cx1, cy0, cy1 int
	fancyH             bool
	fancyV             bool
	cbSum, crSum       []int32 // per chroma column, after the vertical step
	cb, cr             []int32 // per output pixel
	generic            bool    // tests: always take upsampleGeneric
}

func newYCbCrSource(m *image.YCbCr, a *image.NYCbCrA, b image.Rectangle) *ycbcrSource {
	s := &ycbcrSource{m: m, alpha: a, b: b, hs: 1, vs: 1}
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio422:
		s.hs = 2
	case image.YCbCrSubsampleRatio420:
		s.hs, s.vs = 2, 2
	case image.YCbCrSubsampleRatio440:
		s.vs = 2
	case image.YCbCrSubsampleRatio411:
		s.hs = 4
	case image.YCbCrSubsampleRatio410:
		s.hs, s.vs = 4, 2
	}
	s.cx0, s.cx1 = b.Min.X/s.hs, (b.Max.X-1)/s.hs
	s.cy0, s.cy1 = b.Min.Y/s.vs, (b.Max.Y-1)/s.vs
	cw := s.cx1 - s.cx0 + 1
	// libjpeg-turbo: fancy 2h upsampling only when the downsampled width
	// exceeds 2; 1h2v fancy whenever fancy upsampling is on.
	s.fancyH = s.hs == 2 && cw > 2
	s.fancyV = s.vs == 2 && s.hs != 4 && (s.hs == 1 || s.fancyH)
	s.cbSum = make([]int32, cw)
	s.crSum = make([]int32, cw)
	s.cb = make([]int32, b.Dx())
	s.cr = make([]int32, b.Dx())
	return s
}

func (s *ycbcrSource) size() (int, int) { return s.b.Dx(), s.b.Dy() }

// cOff is the offset of absolute chroma sample (cx, cy) in the Cb/Cr planes.
func (s *ycbcrSource) cOff(cx, cy int) int {
	return (cy-s.m.Rect.Min.Y/s.vs)*s.m.CStride + (cx - s.m.Rect.Min.X/s.hs)
}

func (s *ycbcrSource) row(yRel int, dst []byte) {
	m := s.m
	y := s.b.Min.Y + yRel
	w := s.b.Dx()
	cy := y / s.vs
	cw := len(s.cbSum)
	// Vertical step: sums scaled by 4 when fancy (3*near + far), else 1.
	n0 := s.cOff(s.cx0, cy)
	if s.fancyV {
		far := cy - 1 // upper output row of the pair looks up
		if y%2 != 0 {
			far = cy + 1
		}
		f0 := s.cOff(s.cx0, min(max(far, s.cy0), s.cy1))
		ncb, fcb := m.Cb[n0:n0+cw], m.Cb[f0:f0+cw]
		ncr, fcr := m.Cr[n0:n0+cw], m.Cr[f0:f0+cw]
		for i := range s.cbSum {
			s.cbSum[i] = 3*int32(ncb[i]) + int32(fcb[i])
			s.crSum[i] = 3*int32(ncr[i]) + int32(fcr[i])
		}
	} else {
		for i, v := range m.Cb[n0 : n0+cw] {
			s.cbSum[i] = int32(v)
		}
		for i, v := range m.Cr[n0 : n0+cw] {
			s.crSum[i] = int32(v)
		}
	}
	switch {
	case s.generic:
		s.upsampleGeneric(y)
	case s.hs == 1 && !s.fancyV: // 4:4:4
		copy(s.cb, s.cbSum)
		copy(s.cr, s.crSum)
	case s.fancyH && s.b.Min.X%2 == 0:
		// h2v1 / h2v2 fancy, output pixels in pairs around chroma sample i:
		// left (3*this + previous + b0) >> sh, right (3*this + next + b1) >> sh.
		sh, b0, b1 := uint(2), int32(1), int32(2)
		if s.fancyV {
			sh, b0, b1 = 4, 8, 7
		}
		fancyPairs(s.cb[:w], s.cbSum, sh, b0, b1)
		fancyPairs(s.cr[:w], s.crSum, sh, b0, b1)
	default:
		s.upsampleGeneric(y)
	}
	yo := m.YOffset(s.b.Min.X, y)
	ys := m.Y[yo : yo+w]
	var as []byte
	if s.alpha != nil {
		ao := s.alpha.AOffset(s.b.Min.X, y)
		as = s.alpha.A[ao : ao+w]
	}
	const (
		half = 1 << 15
		fixR = 91881  // FIX(1.40200)
		fixB = 116130 // FIX(1.77200)
		fixG = 46802  // FIX(0.71414)
		fixU = 22554  // FIX(0.34414)
	)
	for x, yy := range ys {
		Y := int32(yy)
		cb, cr := s.cb[x]-128, s.cr[x]-128
		r := clamp8(Y + (fixR*cr+half)>>16)
		g := clamp8(Y + (-fixU*cb-fixG*cr+half)>>16)
		b := clamp8(Y + (fixB*cb+half)>>16)
		if as != nil && as[x] != 255 {
			a := uint32(as[x])
			r, g, b = over8(uint32(r), a), over8(uint32(g), a), over8(uint32(b), a)
		}
		dst[3*x], dst[3*x+1], dst[3*x+2] = r, g, b
	}
}

// fancyPairs writes the horizontally upsampled values of sums into out
// (len(out) <= 2*len(sums)), replicating the edge samples.
func fancyPairs(out, sums []int32, sh uint, b0, b1 int32) {
	last := len(sums) - 1
	for i, c := range sums {
		c3 := 3 * c
		prev, next := sums[max(i-1, 0)], sums[min(i+1, last)]
		x := 2 * i
		out[x] = (c3 + prev + b0) >> sh
		if x+1 < len(out) {
			out[x+1] = (c3 + next + b1) >> sh
		}
	}
}

// upsampleGeneric is the per-pixel form of every upsampling rule, used for
// the rarer cases (4x subsampling, tiny chroma planes, odd x offsets).
func (s *ycbcrSource) upsampleGeneric(y int) {
	last := len(s.cbSum) - 1
	for x := range s.cb {
		ax := s.b.Min.X + x
		i := ax/s.hs - s.cx0
		switch {
		case s.fancyH && s.fancyV: // h2v2: (3*this + neighbour + 8 or 7) >> 4
			j, bias := i-1, int32(8)
			if ax%2 != 0 {
				j, bias = i+1, 7
			}
			j = min(max(j, 0), last)
			s.cb[x] = (3*s.cbSum[i] + s.cbSum[j] + bias) >> 4
			s.cr[x] = (3*s.crSum[i] + s.crSum[j] + bias) >> 4
		case s.fancyH: // h2v1: (3*this + neighbour + 1 or 2) >> 2
			j, bias := i-1, int32(1)
			if ax%2 != 0 {
				j, bias = i+1, 2
			}
			j = min(max(j, 0), last)
			s.cb[x] = (3*s.cbSum[i] + s.cbSum[j] + bias) >> 2
			s.cr[x] = (3*s.crSum[i] + s.crSum[j] + bias) >> 2
		case s.fancyV: // h1v2: (3*near + far + 1 or 2) >> 2
			bias := int32(1)
			if y%2 != 0 {
				bias = 2
			}
			s.cb[x] = (s.cbSum[i] + bias) >> 2
			s.cr[x] = (s.crSum[i] + bias) >> 2
		default:
			s.cb[x] = s.cbSum[i]
			s.cr[x] = s.crSum[i]
		}
	}
}
