//go:build cgo

package pdq

// #cgo CFLAGS: -O3
// #include "downsample.h"
import "C"

import "unsafe"

// downsampleRGB fills d.plane from a w x h packed RGB image; false when the
// buffer does not hold the image (then the Go path runs).
func (d *downsampler) downsampleRGB(m PackedRGB, w, h int) bool {
	pix, stride := m.PackedRGB()
	if w < minDim || h < minDim || stride < 3*w || len(pix) < (h-1)*stride+3*w {
		return false
	}
	rc := C.xp_downsample_rgb((*C.uchar)(unsafe.Pointer(&pix[0])), C.long(stride), C.int(w), C.int(h),
		(*C.double)(unsafe.Pointer(&lumaTable[0][0])), (*C.float)(unsafe.Pointer(&d.plane[0][0])))
	return rc == 0
}

// dctMatrixT is dctMatrix transposed, for the C DCT's second product.
var dctMatrixT = func() (m [outDim][dctSize]float32) {
	for i := range dctSize {
		for k := range outDim {
			m[k][i] = dctMatrix[i][k]
		}
	}
	return m
}()

// dct64To16 is dct64To16Go in C (the same sums in the same order, bit for
// bit; TestDCTMatchesGo).
func dct64To16(a *[outDim][outDim]float32, b *[dctSize][dctSize]float32) {
	C.xp_dct64to16((*C.float)(unsafe.Pointer(&a[0][0])), (*C.float)(unsafe.Pointer(&dctMatrix[0][0])),
		(*C.float)(unsafe.Pointer(&dctMatrixT[0][0])), (*C.float)(unsafe.Pointer(&b[0][0])))
}

// rowsRGB is gridPlane's vertical pass in C for a w x h packed RGB image;
// false when the buffer does not hold the image (then the Go pass runs).
func (s *gridScratch) rowsRGB(m PackedRGB, w, h int, acc []float64) bool {
	pix, stride := m.PackedRGB()
	if w < 1 || h < 1 || stride < 3*w || len(pix) < (h-1)*stride+3*w || len(acc) < outDim*w || len(s.row) < w {
		return false
	}
	C.xp_grid_rows((*C.uchar)(unsafe.Pointer(&pix[0])), C.long(stride), C.int(w), C.int(h),
		(*C.double)(unsafe.Pointer(&lumaTable[0][0])), (*C.int)(unsafe.Pointer(&s.y.first32[0])),
		(*C.int)(unsafe.Pointer(&s.y.off32[0])), (*C.double)(unsafe.Pointer(&s.y.flat[0])),
		(*C.float)(unsafe.Pointer(&s.row[0])), (*C.double)(unsafe.Pointer(&acc[0])))
	return true
}
