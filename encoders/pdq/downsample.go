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
