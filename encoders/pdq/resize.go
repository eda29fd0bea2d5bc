package pdq

import (
	"math"
	"slices"
)

// The reference command-line hashers shrink images larger than 512 pixels
// before hashing (the Python one with PIL's Image.thumbnail, the C++ one
// with CImg). The published test vectors come from the Python one, so this
// file reproduces PIL's thumbnail geometry and filter on the luminance
// plane: an integer box reduction while the image is still more than twice
// the target, then a separable antialiased bicubic (a = -0.5) resample.

// DefaultMaxSide is the largest side hashed without shrinking first, as in
// the reference tools.
const DefaultMaxSide = 512

// thumbSize is the size PIL's Image.thumbnail((max, max)) picks for a w x h
// image: the aspect ratio kept, each side rounded to whichever neighbouring
// integer keeps the aspect ratio closest.
func thumbSize(w, h, max int) (int, int) {
	if w <= max && h <= max {
		return w, h
	}
	aspect := float64(w) / float64(h)
	x, y := max, max
	if float64(x)/float64(y) >= aspect {
		// Height-limited.
		x = roundAspect(float64(y)*aspect, func(n float64) float64 { return math.Abs(aspect - n/float64(y)) })
	} else {
		y = roundAspect(float64(x)/aspect, func(n float64) float64 {
			if n == 0 {
				return 0
			}
			return math.Abs(aspect - float64(x)/n)
		})
	}
	return x, y
}

func roundAspect(v float64, key func(float64) float64) int {
	lo, hi := math.Floor(v), math.Ceil(v)
	n := lo
	if key(hi) < key(lo) {
		n = hi
	}
	return max(int(n), 1)
}

// bicubic is PIL's cubic kernel with a = -0.5, support 2.
func bicubic(x float64) float64 {
	const a = -0.5
	x = math.Abs(x)
	switch {
	case x < 1:
		return ((a+2)*x-(a+3))*x*x + 1
	case x < 2:
		return (((x-5)*x+8)*x - 4) * a
	}
	return 0
}

// coeffs are the resampling weights of one axis: output i reads inputs
// start[i] .. start[i]+len(w[i])-1 with weights w[i].
type coeffs struct {
	start []int
	w     [][]float32
	flat  []float32
}

// compute fills c for out outputs from inputs spanning [0, extent) of which
// the first size exist (PIL's precompute_coeffs), reusing c's memory.
func (c *coeffs) compute(size int, extent float64, out int) {
	scale := extent / float64(out)
	fscale := max(scale, 1)
	support := 2 * fscale
	c.start = slices.Grow(c.start[:0], out)[:out]
	c.w = slices.Grow(c.w[:0], out)[:out]
	c.flat = c.flat[:0]
	for i := range out {
		center := (float64(i) + 0.5) * scale
		lo := max(int(center-support+0.5), 0)
		hi := min(int(center+support+0.5), size)
		total := 0.0
		for x := lo; x < hi; x++ {
			total += bicubic((float64(x) - center + 0.5) / fscale)
		}
		first := len(c.flat)
		for x := lo; x < hi; x++ {
			w := bicubic((float64(x) - center + 0.5) / fscale)
			if total != 0 {
				w /= total
			}
			c.flat = append(c.flat, float32(w))
		}
		c.start[i] = lo
		c.w[i] = c.flat[first:len(c.flat):len(c.flat)]
	}
	// c.flat may have moved while growing; re-slice every row onto it.
	off := 0
	for i, k := range c.w {
		c.w[i] = c.flat[off : off+len(k) : off+len(k)]
		off += len(k)
	}
}

// thumbScratch holds thumbnail's buffers between calls.
type thumbScratch struct {
	row, reduced, mid, dst []float32
	xc, yc                 coeffs
}

// thumbnail shrinks a w x h image, whose luminance rows fill writes, to fit
// in maxSide x maxSide the way PIL's Image.thumbnail does, returning the new
// plane (in sc) and its size. It streams: only the horizontally resampled
// rows are kept.
func thumbnail(w, h, maxSide int, fill func(y int, dst []float32), sc *thumbScratch) ([]float32, int, int) {
	tw, th := thumbSize(w, h, maxSide)
	// Reduce by whole factors (block means, partial blocks at the right and
	// bottom edges averaging what they have, as PIL's Image.reduce) while
	// keeping at least twice the target.
	kx, ky := max(w/tw/2, 1), max(h/th/2, 1)
	rw, rh := (w+kx-1)/kx, (h+ky-1)/ky
	extX, extY := float64(w)/float64(kx), float64(h)/float64(ky)

	sc.xc.compute(rw, extX, tw)
	xs, xw := sc.xc.start, sc.xc.w
	sc.row = grow(sc.row, w)
	sc.reduced = grow(sc.reduced, rw)
	sc.mid = grow(sc.mid, tw*rh)
	row, reduced, mid := sc.row, sc.reduced, sc.mid
	for ry := range rh {
		src := row
		if kx == 1 && ky == 1 {
			fill(ry, row)
		} else {
			clear(reduced)
			y0, y1 := ry*ky, min((ry+1)*ky, h)
			for y := y0; y < y1; y++ {
				fill(y, row)
				for x, v := range row {
					reduced[x/kx] += v
				}
			}
			for x := range reduced {
				n := (min((x+1)*kx, w) - x*kx) * (y1 - y0)
				reduced[x] /= float32(n)
			}
			src = reduced
		}
		out := mid[ry*tw : (ry+1)*tw]
		for i, k := range xw {
			in := src[xs[i] : xs[i]+len(k)]
			// Four partial sums, so the additions do not form one serial
			// chain.
			var s0, s1, s2, s3 float32
			j := 0
			for ; j+4 <= len(k); j += 4 {
				s0 += k[j] * in[j]
				s1 += k[j+1] * in[j+1]
				s2 += k[j+2] * in[j+2]
				s3 += k[j+3] * in[j+3]
			}
			for ; j < len(k); j++ {
				s0 += k[j] * in[j]
			}
			out[i] = (s0 + s1) + (s2 + s3)
		}
	}
	sc.yc.compute(rh, extY, th)
	ys, yw := sc.yc.start, sc.yc.w
	sc.dst = grow(sc.dst, tw*th)
	dst := sc.dst
	clear(dst)
	for i, k := range yw {
		out := dst[i*tw : (i+1)*tw]
		for j, c := range k {
			in := mid[(ys[i]+j)*tw : (ys[i]+j+1)*tw]
			for x, v := range in {
				out[x] += c * v
			}
		}
	}
	return dst, tw, th
}
