//go:build cgo && amd64

package neardup

// #cgo CFLAGS: -O3
// #cgo LDFLAGS: -lm
// #include "fast.h"
import "C"

import (
	"image"
	"unsafe"

	"golang.org/x/sys/cpu"

	"github.com/xmodal/xmodal/encoders/pdq"
)

// haveFast says the C kernels of fast.c are built in (cgo on amd64, where
// Go never fuses multiply-adds either, so both compute the same bits).
const haveFast = true

// cpuAVX2 says the C kernels may use their AVX2 builds.
var cpuAVX2 = cpu.X86.HasAVX2

func cint(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

func fptr(s []float32) *C.float { return (*C.float)(unsafe.Pointer(unsafe.SliceData(s))) }

func iptr(s []int32) *C.int { return (*C.int)(unsafe.Pointer(unsafe.SliceData(s))) }

// maxBlurRad is the largest kernel radius blurC takes.
const maxBlurRad = C.ND_MAX_RAD

// blurC is gaussBlurBuf's passes over src (w x h) with the normalised
// kernel k (2*rad+1 taps, rad <= maxBlurRad) into dst; tmp holds w*h
// floats, pad w+2*rad. avx2: use the AVX2 build (where cpuAVX2).
func blurC(avx2 bool, src []float32, w, h int, k []float32, rad int, tmp, pad, dst []float32) {
	_, _, _, _, _ = src[w*h-1], tmp[w*h-1], pad[w+2*rad-1], dst[w*h-1], k[2*rad]
	if rad > maxBlurRad {
		panic("neardup: blur radius too large for the C kernel")
	}
	C.nd_blur(cint(avx2), fptr(src), C.int(w), C.int(h), fptr(k), C.int(rad), fptr(tmp), fptr(pad), fptr(dst))
}

// scanC computes the DoG planes of an octave's six contiguous levels into
// dogs (5*w*h) and writes detect's candidates to out (3*w*h), returning
// their number.
func scanC(avx2 bool, levels []float32, w, h, bd int, thr float32, dogs []float32, out []int32) int {
	n := w * h
	_, _, _ = levels[6*n-1], dogs[5*n-1], out[3*n-1]
	return int(C.nd_scan(cint(avx2), fptr(levels), C.int(w), C.int(h), C.int(bd), C.float(thr), fptr(dogs), iptr(out)))
}

// windowC is sampleWindow's sampling loop followed by normQuality; when
// the quality is minq or more it also computes the DCT coefficients
// (winCoeffs) and canonical's sums (canonSums).
func windowC(avx2 bool, src *plane, cx, cy, half, step, ux, uy, vx, vy, sc float64, buf []float32, minq int,
	coeffs *[hashFreqs][hashFreqs]float32, canon *[3]float64) (int, bool) {
	_, _ = buf[winSize*winSize-1], src.p[src.w*src.h-1]
	q := C.nd_window(cint(avx2), fptr(src.p), C.int(src.w), C.int(src.h), C.double(cx), C.double(cy), C.double(half), C.double(step),
		C.double(ux), C.double(uy), C.double(vx), C.double(vy), C.double(sc), fptr(buf), C.int(minq),
		(*C.float)(unsafe.Pointer(&winDCT[0][0])), (*C.float)(unsafe.Pointer(&winDCTT[0][0])),
		(*C.float)(unsafe.Pointer(&coeffs[0][0])), (*C.double)(unsafe.Pointer(&canon[0])))
	return int(q), q >= 0
}

// coeffsC is winCoeffs (windowC computes the same; the tests call this
// one on its own).
func coeffsC(avx2 bool, g []float32, out *[hashFreqs][hashFreqs]float32) {
	_ = g[winSize*winSize-1]
	C.nd_coeffs(cint(avx2), fptr(g), (*C.float)(unsafe.Pointer(&winDCT[0][0])), (*C.float)(unsafe.Pointer(&winDCTT[0][0])), (*C.float)(unsafe.Pointer(&out[0][0])))
}

// winDCTT is winDCT transposed.
var winDCTT = func() (m [winSize][hashFreqs]float32) {
	for i := range hashFreqs {
		for k := range winSize {
			m[k][i] = winDCT[i][k]
		}
	}
	return m
}()

// resampleC is resampleArea's two passes with flattened weights; tmp
// holds w*dh floats.
func resampleC(avx2 bool, src []float32, w, h, dw, dh int, yw, xw flatWeights, tmp, dst []float32) {
	_, _, _ = src[w*h-1], tmp[w*dh-1], dst[dw*dh-1]
	_, _, _ = yw.off[dh], xw.off[dw], xw.start[dw-1]
	maxn := 0
	for i := range dw {
		maxn = max(maxn, int(xw.off[i+1]-xw.off[i]))
	}
	wv := make([]float32, dw*maxn+1)
	iv := make([]int32, dw*maxn+1)
	C.nd_resample(cint(avx2), fptr(src), C.int(w), C.int(h), C.int(dw), C.int(dh),
		iptr(yw.start), iptr(yw.off), fptr(yw.w), iptr(xw.start), iptr(xw.off), fptr(xw.w),
		C.int(maxn), fptr(wv), iptr(iv), fptr(tmp), fptr(dst))
}

// cleanC is cleanPlane's opening and replacement in place on p.p (the
// square's side k odd).
func cleanC(avx2 bool, p *plane, k int, lift float32) {
	w, h, r := p.w, p.h, k/2
	_ = p.p[w*h-1]
	a, b := make([]float32, w*h), make([]float32, w*h)
	n := max((h+2*r)*w, (w+2*r)*h)
	fwd, bwd := make([]float32, n), make([]float32, n)
	C.nd_clean(cint(avx2), fptr(p.p), C.int(w), C.int(h), C.int(r), C.float(lift), fptr(a), fptr(b), fptr(fwd), fptr(bwd))
}

// canonSumsC is canonSums (windowC computes the same; the tests call this
// one on its own).
func canonSumsC(buf []float32) (sx, sy, dev float64) {
	_ = buf[winSize*winSize-1]
	var out [3]float64
	C.nd_canon(fptr(buf), (*C.double)(unsafe.Pointer(&out[0])))
	return out[0], out[1], out[2]
}

// coeffHashC is coeffHash.
func coeffHashC(avx2 bool, c *[hashFreqs][hashFreqs]float32, d pdq.Dihedral) pdq.Hash {
	op := variantOps[d]
	var h pdq.Hash
	C.nd_hash(cint(avx2), (*C.float)(unsafe.Pointer(&c[0][0])), cint(op.transpose), cint(op.negRows), cint(op.negCols), (*C.uchar)(unsafe.Pointer(&h[0])))
	return h
}

// flatLinesC is splitFlat's flatness test (isFlat) of every row (horiz)
// or column of r in a plane, into flat (one per line; hist is scratch).
func flatLinesC(p *plane, r image.Rectangle, horiz bool, hist []int32, flat []bool) {
	n := r.Dy()
	if !horiz {
		n = r.Dx()
	}
	out := make([]byte, n)
	C.nd_flat_lines(fptr(p.p), C.int(p.w), C.int(r.Min.X), C.int(r.Min.Y), C.int(r.Max.X), C.int(r.Max.Y), cint(horiz),
		iptr(hist), (*C.uchar)(unsafe.Pointer(&out[0])))
	for i, b := range out {
		flat[i] = b != 0
	}
}

// lumaC is pdq.Luma in C for the images the media pipeline and the Go
// JPEG decoder give (rows of packed RGB, Y'CbCr 4:4:4, 4:2:2 and 4:2:0);
// false for others (then pdq.Luma runs).
func lumaC(avx2 bool, img image.Image, dst []float32) ([]float32, bool) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= 0 || h <= 0 {
		return dst, false
	}
	switch m := img.(type) {
	case pdq.RGBRower:
		dst = growFloats(dst, w*h)
		for y := range h {
			row := m.RowRGB(y)
			if len(row) < 3*w {
				return dst, false
			}
			C.nd_luma_rgb(cint(avx2), (*C.uchar)(unsafe.Pointer(&row[0])), C.int(w), fptr(dst[y*w:]))
		}
		return dst, true
	case *image.YCbCr:
		paired := 0
		switch m.SubsampleRatio {
		case image.YCbCrSubsampleRatio444:
		case image.YCbCrSubsampleRatio422, image.YCbCrSubsampleRatio420:
			paired = 1
		default:
			return dst, false
		}
		if b.Min.X < 0 || !b.In(m.Rect) {
			return dst, false
		}
		odd := b.Min.X & paired
		need := w
		if paired == 1 {
			need = (w + odd + 1) / 2
		}
		dst = growFloats(dst, w*h)
		for y := range h {
			yy := b.Min.Y + y
			yi, ci := m.YOffset(b.Min.X, yy), m.COffset(b.Min.X, yy)
			if yi < 0 || ci < 0 || yi+w > len(m.Y) || ci+need > len(m.Cb) || ci+need > len(m.Cr) {
				return dst, false
			}
			C.nd_luma_ycbcr(cint(avx2), (*C.uchar)(unsafe.Pointer(&m.Y[yi])), (*C.uchar)(unsafe.Pointer(&m.Cb[ci])), (*C.uchar)(unsafe.Pointer(&m.Cr[ci])),
				C.int(w), C.int(paired), C.int(odd), fptr(dst[y*w:]))
		}
		return dst, true
	}
	return dst, false
}

func growFloats(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}
