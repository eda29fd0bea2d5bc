package pdq

import "math"

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

// resampleCoeffs returns, for each of out outputs, the first input index and
// normalised weights, for inputs spanning [0, extent) of which the first
// size exist (PIL's precompute_coeffs).
func resampleCoeffs(size int, extent float64, out int) (starts []int, weights [][]float32) {
	scale := extent / float64(out)
	fscale := max(scale, 1)
	support := 2 * fscale
	starts = make([]int, out)
	weights = make([][]float32, out)
	ws := make([]float64, 0, int(math.Ceil(support))*2+1)
	for i := range out {
		center := (float64(i) + 0.5) * scale
		lo := max(int(center-support+0.5), 0)
		hi := min(int(center+support+0.5), size)
		ws = ws[:0]
		total := 0.0
		for x := lo; x < hi; x++ {
			w := bicubic((float64(x) - center + 0.5) / fscale)
			ws = append(ws, w)
			total += w
		}
		k := make([]float32, len(ws))
		for j, w := range ws {
			if total != 0 {
				w /= total
			}
			k[j] = float32(w)
		}
		starts[i], weights[i] = lo, k
	}
	return starts, weights
}

// boxReduce averages kx x ky blocks of a w x h plane (partial blocks at the
// right and bottom edges average what they have), as PIL's Image.reduce.
func boxReduce(src []float32, w, h, kx, ky int) ([]float32, int, int) {
	ow, oh := (w+kx-1)/kx, (h+ky-1)/ky
	dst := make([]float32, ow*oh)
	acc := make([]float32, ow)
	cnt := make([]int, ow)
	for oy := range oh {
		clear(acc)
		clear(cnt)
		for y := oy * ky; y < min((oy+1)*ky, h); y++ {
			row := src[y*w : (y+1)*w]
			for x, v := range row {
				acc[x/kx] += v
				cnt[x/kx]++
			}
		}
		d := dst[oy*ow : (oy+1)*ow]
		for x := range d {
			d[x] = acc[x] / float32(cnt[x])
		}
	}
	return dst, ow, oh
}

// thumbnail shrinks a w x h luminance plane to fit in max x max the way
// PIL's Image.thumbnail does, returning the new plane and size.
func thumbnail(src []float32, w, h, maxSide int) ([]float32, int, int) {
	tw, th := thumbSize(w, h, maxSide)
	if tw == w && th == h {
		return src, w, h
	}
	// Reduce by whole factors while keeping at least twice the target.
	extX, extY := float64(w), float64(h)
	kx, ky := max(w/tw/2, 1), max(h/th/2, 1)
	if kx > 1 || ky > 1 {
		src, w, h = boxReduce(src, w, h, kx, ky)
		extX, extY = extX/float64(kx), extY/float64(ky)
	}
	// Horizontal pass into a th-independent w' x h plane, then vertical.
	xs, xw := resampleCoeffs(w, extX, tw)
	mid := make([]float32, tw*h)
	for y := range h {
		row := src[y*w : (y+1)*w]
		out := mid[y*tw : (y+1)*tw]
		for i, k := range xw {
			in := row[xs[i] : xs[i]+len(k)]
			var s float32
			for j, c := range k {
				s += c * in[j]
			}
			out[i] = s
		}
	}
	ys, yw := resampleCoeffs(h, extY, th)
	dst := make([]float32, tw*th)
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
