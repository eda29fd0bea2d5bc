package neardup

import "math"

// plane is a float32 luminance image.
type plane struct {
	w, h int
	p    []float32
}

// sample reads g at (x, y) (pixel centres at integer+0.5) bilinearly,
// clamping at the borders.
func (g *plane) sample(x, y float64) float32 {
	x -= 0.5
	y -= 0.5
	x0, y0 := math.Floor(x), math.Floor(y)
	fx, fy := float32(x-x0), float32(y-y0)
	ix, iy := int(x0), int(y0)
	ix0, ix1 := clampi(ix, g.w), clampi(ix+1, g.w)
	iy0, iy1 := clampi(iy, g.h), clampi(iy+1, g.h)
	r0, r1 := g.p[iy0*g.w:], g.p[iy1*g.w:]
	a := r0[ix0] + (r0[ix1]-r0[ix0])*fx
	b := r1[ix0] + (r1[ix1]-r1[ix0])*fx
	return a + (b-a)*fy
}

func clampi(i, n int) int {
	if i < 0 {
		return 0
	}
	if i >= n {
		return n - 1
	}
	return i
}

// resampleArea resizes the w x h plane src to dw x dh, each output pixel
// the exact area-weighted mean of the input it covers (when shrinking) or a
// bilinear sample (when growing along that axis).
func resampleArea(src []float32, w, h, dw, dh int) *plane {
	// Vertical pass into tmp (w x dh: whole rows, the cheap direction),
	// then horizontal on the fewer rows.
	tmp := make([]float32, w*dh)
	yw := axisWeights(h, dh)
	for i, k := range yw {
		out := tmp[i*w : (i+1)*w]
		for j, wt := range k.w {
			in := src[(k.start+j)*w : (k.start+j+1)*w]
			for x, v := range in {
				out[x] += wt * v
			}
		}
	}
	dst := &plane{w: dw, h: dh, p: make([]float32, dw*dh)}
	xw := axisWeights(w, dw)
	for y := range dh {
		row := tmp[y*w : (y+1)*w]
		out := dst.p[y*dw : (y+1)*dw]
		for i, k := range xw {
			var s float32
			for j, wt := range k.w {
				s += wt * row[k.start+j]
			}
			out[i] = s
		}
	}
	return dst
}

type axisWeight struct {
	start int
	w     []float32
}

// axisWeights maps n input samples onto m outputs: box (area) weights when
// shrinking, linear interpolation when growing.
func axisWeights(n, m int) []axisWeight {
	out := make([]axisWeight, m)
	scale := float64(n) / float64(m)
	if scale >= 1 {
		for i := range out {
			a, b := float64(i)*scale, float64(i+1)*scale
			s, e := int(a), min(int(math.Ceil(b)), n)
			ws := make([]float32, e-s)
			for j := s; j < e; j++ {
				ws[j-s] = float32((math.Min(b, float64(j+1)) - math.Max(a, float64(j))) / scale)
			}
			out[i] = axisWeight{start: s, w: ws}
		}
		return out
	}
	for i := range out {
		c := (float64(i)+0.5)*scale - 0.5
		c0 := math.Floor(c)
		f := c - c0
		i0, i1 := clampi(int(c0), n), clampi(int(c0)+1, n)
		if i0 == i1 {
			out[i] = axisWeight{start: i0, w: []float32{1}}
		} else {
			out[i] = axisWeight{start: i0, w: []float32{float32(1 - f), float32(f)}}
		}
	}
	return out
}

// crop returns the sub-plane [x0,x1) x [y0,y1) as a new plane.
func (g *plane) crop(x0, y0, x1, y1 int) *plane {
	out := &plane{w: x1 - x0, h: y1 - y0, p: make([]float32, (x1-x0)*(y1-y0))}
	for y := y0; y < y1; y++ {
		copy(out.p[(y-y0)*out.w:(y-y0+1)*out.w], g.p[y*g.w+x0:y*g.w+x1])
	}
	return out
}

// gaussBlurBuf returns g blurred by a Gaussian of the given sigma (separable,
// kernel radius ceil(2 sigma), borders clamped). Both passes run tap by
// tap over whole rows, so the inner loops are plain slice arithmetic.
//
// scratch, when not nil, is a buffer reused between calls (grown when
// short).
func gaussBlurBuf(g *plane, sigma float64, scratch *[]float32) *plane {
	k, rad := blurKernel(sigma, g.w, g.h)
	if k == nil {
		return &plane{w: g.w, h: g.h, p: append([]float32(nil), g.p...)}
	}
	w, h := g.w, g.h
	// The kernel is symmetric: each pass adds the two inputs at the same
	// distance before multiplying, halving the multiplications.
	// Horizontal pass into tmp: a padded copy of each row (edges
	// repeated), then one multiply-add sweep per pair of taps.
	var tmp []float32
	if scratch != nil && cap(*scratch) >= w*h+w+2*rad {
		tmp = (*scratch)[:w*h]
	} else {
		tmp = make([]float32, w*h+w+2*rad)
		if scratch != nil {
			*scratch = tmp
		}
		tmp = tmp[:w*h]
	}
	pad := tmp[w*h : w*h+w+2*rad]
	kc := k[rad]
	for y := range h {
		row := g.p[y*w : (y+1)*w]
		copy(pad[rad:], row)
		for i := range rad {
			pad[i] = row[0]
			pad[rad+w+i] = row[w-1]
		}
		out := tmp[y*w : (y+1)*w]
		mid := pad[rad : rad+w]
		for x := range out {
			out[x] = kc * mid[x]
		}
		for t := range rad {
			kv := k[t]
			lo, hi := pad[t:t+w], pad[2*rad-t:2*rad-t+w]
			for x := range out {
				out[x] += kv * (lo[x] + hi[x])
			}
		}
	}
	dst := &plane{w: w, h: h, p: make([]float32, w*h)}
	for y := range h {
		out := dst.p[y*w : (y+1)*w]
		mid := tmp[y*w : (y+1)*w]
		for x := range out {
			out[x] = kc * mid[x]
		}
		for t := range rad {
			kv := k[t]
			y0, y1 := clampi(y+t-rad, h), clampi(y+rad-t, h)
			lo, hi := tmp[y0*w:(y0+1)*w], tmp[y1*w:(y1+1)*w]
			for x := range out {
				out[x] += kv * (lo[x] + hi[x])
			}
		}
	}
	return dst
}

// blurKernel is the normalised kernel (2*rad+1 taps) of a Gaussian of the
// given sigma for a w x h plane: radius ceil(2 sigma), shrunk to fit the
// plane; nil when the blur is the identity (radius under 1).
func blurKernel(sigma float64, w, h int) ([]float32, int) {
	rad := int(math.Ceil(2 * sigma))
	if rad < 1 || w <= 2*rad || h <= 2*rad {
		if rad < 1 {
			return nil, 0
		}
		rad = min(rad, (min(w, h)-1)/2)
	}
	k := make([]float32, 2*rad+1)
	var sum float32
	for i := range k {
		d := float64(i - rad)
		k[i] = float32(math.Exp(-d * d / (2 * sigma * sigma)))
		sum += k[i]
	}
	for i := range k {
		k[i] /= sum
	}
	return k, rad
}

// downsample2 halves a plane by 2x2 means (odd edges dropped).
func downsample2(g *plane) *plane {
	w, h := g.w/2, g.h/2
	out := &plane{w: w, h: h, p: make([]float32, w*h)}
	for y := range h {
		r0, r1 := g.p[2*y*g.w:], g.p[(2*y+1)*g.w:]
		o := out.p[y*w:]
		for x := range w {
			o[x] = (r0[2*x] + r0[2*x+1] + r1[2*x] + r1[2*x+1]) * 0.25
		}
	}
	return out
}

// smoothed returns g filtered once by [1 2 1] / 4 across and then down
// (edges repeated): a binomial blur of about half a pixel's spread.
func (g *plane) smoothed() *plane {
	out := &plane{w: g.w, h: g.h, p: make([]float32, len(g.p))}
	tmp := make([]float32, len(g.p))
	for y := range g.h {
		row, t := g.p[y*g.w:(y+1)*g.w], tmp[y*g.w:(y+1)*g.w]
		for x := range g.w {
			t[x] = 0.25*row[max(x-1, 0)] + 0.5*row[x] + 0.25*row[min(x+1, g.w-1)]
		}
	}
	for y := range g.h {
		u, d := tmp[max(y-1, 0)*g.w:], tmp[min(y+1, g.h-1)*g.w:]
		c, o := tmp[y*g.w:], out.p[y*g.w:(y+1)*g.w]
		for x := range o {
			o[x] = 0.25*u[x] + 0.5*c[x] + 0.25*d[x]
		}
	}
	return out
}
