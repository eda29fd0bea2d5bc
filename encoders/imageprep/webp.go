package imageprep

import "image"

// Lossy WebP (VP8) stores BT.601 limited-range YUV 4:2:0, but
// golang.org/x/image/webp hands it back as an image.YCbCr, whose colour
// model is JFIF full range, so colours come out flat. webpToNRGBA converts
// the planes the way libwebp does when Pillow decodes a WebP: "fancy"
// upsampling (dsp/upsampling.c: 9-3-3-1 weights computed through two
// rounded diagonals) and VP8YUVToR/G/B's 14-bit fixed point (dsp/yuv.h).
// VP8 decoding itself is exact, so the result matches Pillow pixel for
// pixel.
func webpToNRGBA(m *image.YCbCr, a *image.NYCbCrA) *image.NRGBA {
	b := m.Rect
	w, h := b.Dx(), b.Dy()
	out := image.NewNRGBA(image.Rect(0, 0, w, h))
	if m.SubsampleRatio != image.YCbCrSubsampleRatio420 || b.Min != (image.Point{}) {
		// Not what x/image/webp produces; fall back to Go's conversion.
		for y := 0; y < h; y++ {
			for x := 0; x < w; x++ {
				out.Set(x, y, m.At(b.Min.X+x, b.Min.Y+y))
			}
		}
		return out
	}
	cw, ch := (w+1)/2, (h+1)/2
	u := func(cx, cy int) int32 { return int32(m.Cb[cy*m.CStride+cx]) }
	v := func(cx, cy int) int32 { return int32(m.Cr[cy*m.CStride+cx]) }
	for y := 0; y < h; y++ {
		ny := y >> 1
		fy := ny - 1
		if y&1 == 1 {
			fy = ny + 1
		}
		fy = min(max(fy, 0), ch-1)
		row := out.Pix[y*out.Stride : y*out.Stride+4*w]
		for x := 0; x < w; x++ {
			nx := x >> 1
			var U, V int32
			if x == 0 || (x == w-1 && w&1 == 0) {
				// First column, and last column of an even width: vertical only.
				U = (3*u(nx, ny) + u(nx, fy) + 2) >> 2
				V = (3*v(nx, ny) + v(nx, fy) + 2) >> 2
			} else {
				fx := nx - 1
				if x&1 == 1 {
					fx = nx + 1
				}
				fx = min(max(fx, 0), cw-1)
				U = fancy(u(nx, ny), u(fx, ny), u(nx, fy), u(fx, fy))
				V = fancy(v(nx, ny), v(fx, ny), v(nx, fy), v(fx, fy))
			}
			Y := int32(m.Y[y*m.YStride+x])
			p := row[4*x : 4*x+4 : 4*x+4]
			p[0] = vp8Clip8(mulHi(Y, 19077) + mulHi(V, 26149) - 14234)
			p[1] = vp8Clip8(mulHi(Y, 19077) - mulHi(U, 6419) - mulHi(V, 13320) + 8708)
			p[2] = vp8Clip8(mulHi(Y, 19077) + mulHi(U, 33050) - 17685)
			p[3] = 255
			if a != nil {
				p[3] = a.A[y*a.AStride+x]
			}
		}
	}
	return out
}

// fancy is libwebp's UPSAMPLE_FUNC weighting of the nearest chroma sample
// nn, its horizontal (nf) and vertical (fn) neighbours and the diagonal ff.
func fancy(nn, nf, fn, ff int32) int32 {
	d := (nn + 3*nf + 3*fn + ff + 8) >> 3
	return (d + nn) >> 1
}

func mulHi(v, c int32) int32 { return (v * c) >> 8 }

func vp8Clip8(v int32) byte {
	const mask = (256 << 6) - 1
	if v&^mask == 0 {
		return byte(v >> 6)
	}
	if v < 0 {
		return 0
	}
	return 255
}
