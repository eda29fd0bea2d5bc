package imageprep

import "math"

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

// kernel holds fixed-point weights for output indices [o0, o0+n).
type kernel struct {
	ksize  int
	first  []int   // first input index per output
	count  []int   // number of taps per output
	weight []int32 // n*ksize
}

// newKernel mirrors precompute_coeffs + normalize_coeffs_8bpc for resizing
// inSize samples to outSize, restricted to outputs [o0, o1).
func newKernel(inSize, outSize, o0, o1 int) kernel {
	// box = (0, inSize) as C floats; in1-in0 is exact for any sane size.
	scale := float64(float32(inSize)) / float64(outSize)
	filterscale := scale
	if filterscale < 1 {
		filterscale = 1
	}
	support := bicubicSupport * filterscale
	ksize := int(math.Ceil(support))*2 + 1
	n := o1 - o0
	k := kernel{
		ksize:  ksize,
		first:  make([]int, n),
		count:  make([]int, n),
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
			v := bicubicFilter((float64(x+xmin) - center + 0.5) * ss)
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
		k.first[i] = xmin
		k.count[i] = xmax
	}
	return k
}

func clip8(v int32) byte {
	if v >= 1<<precisionBits<<8 {
		return 255
	}
	if v <= 0 {
		return 0
	}
	return byte(v >> precisionBits)
}

// resampleWindow resizes src (w x h) to outW x outH with Pillow's bicubic
// and returns the packed RGB pixels of the output window [x0,x0+cw) x
// [y0,y0+ch), which must lie inside the output. A pass whose output size
// equals its input size is skipped, as Pillow does.
func resampleWindow(src rowSource, outW, outH, x0, y0, cw, ch int) []byte {
	w, h := src.size()
	needH := outW != w
	needV := outH != h

	// Rows of the source needed by the window's output rows.
	var kv kernel
	ry0, ry1 := y0, y0+ch // identity vertical: output row = input row
	if needV {
		kv = newKernel(h, outH, y0, y0+ch)
		ry0 = kv.first[0]
		ry1 = kv.first[ch-1] + kv.count[ch-1]
	}
	nrows := ry1 - ry0

	// Horizontal pass into tmp: nrows x cw, packed RGB.
	tmp := make([]byte, nrows*cw*3)
	ref, inPlace := src.(rowRefer)
	var line []byte
	if !inPlace {
		line = make([]byte, w*3)
	}
	if needH {
		kh := newKernel(w, outW, x0, x0+cw)
		for r := 0; r < nrows; r++ {
			if inPlace {
				line = ref.rowRef(ry0 + r)
			} else {
				src.row(ry0+r, line)
			}
			out := tmp[r*cw*3 : (r+1)*cw*3]
			for i := 0; i < cw; i++ {
				ws := kh.weight[i*kh.ksize : i*kh.ksize+kh.count[i]]
				in := line[kh.first[i]*3 : (kh.first[i]+len(ws))*3]
				s0, s1, s2 := int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1)), int32(1<<(precisionBits-1))
				for _, k := range ws {
					if len(in) < 3 {
						break // cannot happen: in holds 3 bytes per weight
					}
					s0 += int32(in[0]) * k
					s1 += int32(in[1]) * k
					s2 += int32(in[2]) * k
					in = in[3:]
				}
				out[3*i], out[3*i+1], out[3*i+2] = clip8(s0), clip8(s1), clip8(s2)
			}
		}
	} else {
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

	// Vertical pass.
	dst := make([]byte, ch*cw*3)
	stride := cw * 3
	acc := make([]int32, stride)
	for j := 0; j < ch; j++ {
		ws := kv.weight[j*kv.ksize : j*kv.ksize+kv.count[j]]
		base := kv.first[j] - ry0
		for i := range acc {
			acc[i] = 1 << (precisionBits - 1)
		}
		for t, k := range ws {
			in := tmp[(base+t)*stride : (base+t+1)*stride]
			acc := acc[:len(in)]
			for i, v := range in {
				acc[i] += int32(v) * k
			}
		}
		out := dst[j*stride : (j+1)*stride]
		for i, v := range acc {
			out[i] = clip8(v)
		}
	}
	return dst
}
