package imageprep

// #cgo CFLAGS: -O3
// #include "resample.h"
import "C"

import (
	"math"
	"unsafe"
)

// A re-implementation of Pillow's separable resampler (libImaging/Resample.c,
// Pillow 11) for 8-bit RGB with the BICUBIC filter, so that resizing here is
// bit-identical to PIL.Image.resize(size, Image.BICUBIC) with no box and no
// reducing_gap, which is what transformers' resize calls.
//
// Pillow computes double-precision kernel weights per output pixel (the
// kernel's support widened by the scale when downscaling, normalised to sum
// 1), converts them to 22-bit fixed point, and runs a horizontal pass then a
// vertical pass, each accumulating in int32 from a half-unit bias and
// clipping to uint8. We do exactly that, but only for the output pixels
// inside the crop window: every output pixel depends only on its own
// weights, so the result is the same as resizing fully and cropping after.
// The weights are computed here; the passes run in C (resample.c), integer
// arithmetic only, several times faster than the same loops in Go.

const precisionBits = 32 - 8 - 2

func bicubicFilter(x float64) float64 {
	const a = -0.5
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return ((a+2)*x-(a+3))*x*x + 1
	}
	if x < 2 {
		return (((x-5)*x+8)*x - 4) * a
	}
	return 0
}

const bicubicSupport = 2.0

// filter is a resampling kernel and its support (Pillow's filter structs).
type filter struct {
	fn      func(float64) float64
	support float64
}

var (
	bicubic = filter{bicubicFilter, bicubicSupport}
	// bilinear is Pillow's triangle filter, half the taps of bicubic: the
	// thumbnail's, after its box reduction to within 2x of the target.
	bilinear = filter{bilinearFilter, 1}
)

func bilinearFilter(x float64) float64 {
	if x < 0 {
		x = -x
	}
	if x < 1 {
		return 1 - x
	}
	return 0
}

// kernel holds fixed-point weights for output indices [o0, o0+n).
type kernel struct {
	ksize  int
	first  []int32 // first input index per output
	count  []int32 // number of taps per output
	weight []int32 // n*ksize
}

// newKernel mirrors precompute_coeffs + normalize_coeffs_8bpc for resizing
// inSize samples to outSize with f, restricted to outputs [o0, o1).
func newKernel(f filter, inSize, outSize, o0, o1 int) kernel {
	// box = (0, inSize) as C floats; in1-in0 is exact for any sane size.
	scale := float64(float32(inSize)) / float64(outSize)
	filterscale := scale
	if filterscale < 1 {
		filterscale = 1
	}
	support := f.support * filterscale
	ksize := int(math.Ceil(support))*2 + 1
	n := o1 - o0
	k := kernel{
		ksize:  ksize,
		first:  make([]int32, n),
		count:  make([]int32, n),
		weight: make([]int32, n*ksize),
	}
	w := make([]float64, ksize)
	ss := 1.0 / filterscale
	for i := 0; i < n; i++ {
		xx := o0 + i
		center := (float64(xx) + 0.5) * scale
		xmin := int(center - support + 0.5)
		if xmin < 0 {
			xmin = 0
		}
		xmax := int(center + support + 0.5)
		if xmax > inSize {
			xmax = inSize
		}
		xmax -= xmin
		if xmax > ksize { // cannot happen; guards the slices below
			xmax = ksize
		}
		ww := 0.0
		for x := 0; x < xmax; x++ {
			v := f.fn((float64(x+xmin) - center + 0.5) * ss)
			w[x] = v
			ww += v
		}
		row := k.weight[i*ksize : (i+1)*ksize]
		for x := 0; x < xmax; x++ {
			v := w[x]
			if ww != 0 {
				v /= ww
			}
			if v < 0 {
				row[x] = int32(-0.5 + v*(1<<precisionBits))
			} else {
				row[x] = int32(0.5 + v*(1<<precisionBits))
			}
		}
		k.first[i] = int32(xmin)
		k.count[i] = int32(xmax)
	}
	return k
}

func cInts(s []int32) *C.int { return (*C.int)(unsafe.Pointer(&s[0])) }

func cBytes(s []byte) *C.uchar { return (*C.uchar)(unsafe.Pointer(&s[0])) }

// chunkRows is how many rows of a source that cannot be read in place are
// converted at a time for the horizontal pass.
const chunkRows = 32

// resampleWindow resizes src (w x h) to outW x outH with Pillow's filter f
// (bicubic for the model's input) and returns the packed RGB pixels of the
// output window [x0,x0+cw) x [y0,y0+ch), which must lie inside the output.
// A pass whose output size equals its input size is skipped, as Pillow does.
// The result is the caller's (it may hand it to putPix when done).
func resampleWindow(f filter, src rowSource, outW, outH, x0, y0, cw, ch int) []byte {
	w, h := src.size()
	needH := outW != w
	needV := outH != h

	// Rows of the source needed by the window's output rows.
	var kv kernel
	ry0, ry1 := y0, y0+ch // identity vertical: output row = input row
	if needV {
		kv = newKernel(f, h, outH, y0, y0+ch)
		ry0 = int(kv.first[0])
		ry1 = int(kv.first[ch-1] + kv.count[ch-1])
	}
	nrows := ry1 - ry0

	// Horizontal pass into tmp: nrows x cw, packed RGB. (tmp and dst come
	// from the pixel pool, every byte written: pixpool.go.)
	tmp, _ := getPix(nrows * cw * 3)
	if needH {
		kh := newKernel(f, w, outW, x0, x0+cw)
		if m, ok := src.(rgbSource); ok {
			// In place: the rows are stride bytes apart in m.Pix.
			C.xr_hpass(cBytes(m.m.RowRGB(ry0)), C.long(m.m.Stride), C.int(w), C.int(nrows), cBytes(tmp), C.int(cw),
				cInts(kh.first), cInts(kh.count), cInts(kh.weight), C.int(kh.ksize))
		} else {
			buf := make([]byte, min(chunkRows, nrows)*w*3)
			for r0 := 0; r0 < nrows; r0 += chunkRows {
				n := min(chunkRows, nrows-r0)
				for r := 0; r < n; r++ {
					src.row(ry0+r0+r, buf[r*w*3:(r+1)*w*3])
				}
				C.xr_hpass(cBytes(buf), C.long(w*3), C.int(w), C.int(n), cBytes(tmp[r0*cw*3:]), C.int(cw),
					cInts(kh.first), cInts(kh.count), cInts(kh.weight), C.int(kh.ksize))
			}
		}
	} else {
		ref, inPlace := src.(rowRefer)
		var line []byte
		if !inPlace {
			line = make([]byte, w*3)
		}
		for r := 0; r < nrows; r++ {
			if inPlace {
				line = ref.rowRef(ry0 + r)
			} else {
				src.row(ry0+r, line)
			}
			copy(tmp[r*cw*3:(r+1)*cw*3], line[x0*3:(x0+cw)*3])
		}
	}
	if !needV {
		return tmp
	}

	// Vertical pass, with row indices relative to ry0.
	for j := range kv.first {
		kv.first[j] -= int32(ry0)
	}
	stride := cw * 3
	dst, _ := getPix(ch * stride)
	acc := make([]int32, stride)
	C.xr_vpass(cBytes(tmp), C.int(stride), cBytes(dst), C.int(ch),
		cInts(kv.first), cInts(kv.count), cInts(kv.weight), C.int(kv.ksize), cInts(acc))
	putPix(tmp)
	return dst
}
