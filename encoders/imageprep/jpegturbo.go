package imageprep

// #cgo LDFLAGS: -ljpeg
// #include <stdlib.h>
// #include "jpegturbo.h"
// #include "resample.h"
// #include <jerror.h>
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unsafe"
)

// JPEG decoding goes through libjpeg-turbo's libjpeg API (Debian's
// libjpeg62-turbo), the library Pillow bundles: the same integer IDCT
// (JDCT_ISLOW), the same "fancy" chroma upsampling and colour tables, and
// its scaled IDCT (1/2, 1/4, 1/8), which is what Pillow's Image.draft asks
// for. Decoded pixels are therefore those Pillow gives for the same file
// and scale.

// jpegInfo is what the decoder learns from a JPEG's markers.
type jpegInfo struct {
	w, h        int
	components  int
	cmyk        bool // CMYK or YCCK: decoded as CMYK, converted as Pillow does
	progressive bool
	multiscan   bool
	blocks      int64 // DCT blocks of every component (the coefficient buffer of a multi-scan file holds 128 bytes each)
	// boxable: greyscale, or three components sampled 4:4:4 or 4:2:0. At a
	// reduced scale libjpeg-turbo then decodes every component with a
	// scaled IDCT and no upsampling (jdmaster.c picks a 2x2 chroma IDCT for
	// 4:2:0 at 1/8), so its pixels are close to the box mean of a larger
	// decode. Other layouts upsample the chroma with a triangle filter
	// across blocks after a reduced IDCT, which box means do not reproduce.
	boxable bool
}

// jpegDecoder is one decode in progress: header read, then start, then rows.
type jpegDecoder struct {
	x      *C.xj_dec
	pin    runtime.Pinner
	hdr    jpegInfo
	cancel func() bool
	mu     sync.Mutex // guards done against the context's AfterFunc
	done   bool
}

// jpegDecodeError is a failure inside libjpeg: its message code and text.
type jpegDecodeError struct {
	code int
	msg  string
}

func (e *jpegDecodeError) Error() string { return e.msg }

func (e *jpegDecodeError) unsupported() bool {
	switch e.code {
	case C.JERR_NOT_COMPILED, C.JERR_ARITH_NOTIMPL, C.JERR_BAD_PRECISION, C.JERR_SOF_UNSUPPORTED,
		C.JERR_NOTIMPL, C.JERR_CCIR601_NOTIMPL, C.JERR_CONVERSION_NOTIMPL, C.JERR_BAD_J_COLORSPACE:
		return true
	}
	return false
}

func (e *jpegDecodeError) outOfMemory() bool {
	return e.code == C.JERR_OUT_OF_MEMORY || e.code == C.JERR_NO_BACKING_STORE || e.code == C.JERR_TFILE_CREATE
}

func (e *jpegDecodeError) cancelled() bool { return e.code == C.XJ_CANCELLED }

func (e *jpegDecodeError) tooManyScans() bool { return e.code == C.XJ_TOO_MANY_SCANS }

// openJPEG reads the header of data. maxScans bounds the scans it will
// decode. ctx cancels the decode between rows and scans. data must not
// change until close.
func openJPEG(ctx context.Context, data []byte, maxScans int) (*jpegDecoder, error) {
	if len(data) == 0 {
		return nil, &jpegDecodeError{code: -1, msg: "empty input"}
	}
	x := C.xj_new()
	if x == nil {
		return nil, &jpegDecodeError{code: C.JERR_OUT_OF_MEMORY, msg: "out of memory"}
	}
	d := &jpegDecoder{x: x}
	d.pin.Pin(&data[0]) // libjpeg reads it across calls
	flag := (*int32)(unsafe.Pointer(C.xj_cancel_flag(x)))
	d.cancel = context.AfterFunc(ctx, func() {
		d.mu.Lock()
		if !d.done {
			atomic.StoreInt32(flag, 1)
		}
		d.mu.Unlock()
	})
	var info C.xj_info
	rc := C.xj_header(x, (*C.uchar)(unsafe.Pointer(&data[0])), C.ulong(len(data)), C.int(maxScans), &info)
	if rc != 0 {
		err := d.err(rc)
		d.close()
		return nil, err
	}
	d.hdr = jpegInfo{
		w: int(info.width), h: int(info.height), components: int(info.components),
		cmyk:        info.color_space == C.JCS_CMYK || info.color_space == C.JCS_YCCK,
		progressive: info.progressive != 0, multiscan: info.multiscan != 0,
		blocks: int64(info.blocks),
	}
	sh, sv := info.samp_h, info.samp_v
	switch {
	case d.hdr.components == 1:
		d.hdr.boxable = true
	case d.hdr.components == 3 && !d.hdr.cmyk && sh[1] == 1 && sv[1] == 1 && sh[2] == 1 && sv[2] == 1:
		d.hdr.boxable = sh[0] == sv[0] && (sh[0] == 1 || sh[0] == 2)
	}
	return d, nil
}

func (d *jpegDecoder) err(rc C.int) error {
	return &jpegDecodeError{code: int(rc), msg: C.GoString(C.xj_message(d.x))}
}

// workMem estimates libjpeg's working memory for an output of ow pixels per
// row: the whole-image coefficient buffer of a multi-scan (progressive) file,
// plus row buffers.
func (h jpegInfo) workMem(ow int) int64 {
	var m int64 = 1 << 20 // tables, Huffman state, small buffers
	if h.multiscan {
		m += h.blocks * 128
	}
	m += int64(ow) * int64(max(h.components, 3)) * 48 // sample rows of an iMCU row, upsampling context
	return m
}

// scaledSize is libjpeg's output size at 1/denom: each side rounded up.
func scaledSize(w, h, denom int) (int, int) {
	return (w + denom - 1) / denom, (h + denom - 1) / denom
}

// decode decodes at 1/denom (1, 2, 4 or 8) into packed RGB, in a buffer
// from the pixel pool when pool is set (pixpool.go; the image's Pix then goes
// back with putPix once it is released). CMYK files are converted as Pillow converts them
// (inverted Adobe CMYK, then cmyk2rgb). maxMem bounds libjpeg's own
// allocations (0: unbounded). ctx is checked between row groups; libjpeg
// also checks it between scans.
func (d *jpegDecoder) decode(ctx context.Context, denom int, maxMem int64, pool bool) (img *RGBImage, err error) {
	img, _, err = d.decodeReduce(ctx, denom, maxMem, pool, 0)
	return img, err
}

// decodeReduce is decode that also returns, when k > 1 (2, 4 or 8), the
// image reduced by k with box means (reduceBox), in a buffer from the pixel
// pool. The reduction runs on each group of rows as libjpeg writes it, while
// the rows are still in cache.
func (d *jpegDecoder) decodeReduce(ctx context.Context, denom int, maxMem int64, pool bool, k int) (img, small *RGBImage, err error) {
	var ow, oh C.int
	space := C.XJ_OUT_RGB
	if d.hdr.cmyk {
		space = C.XJ_OUT_CMYK
	}
	if rc := C.xj_start(d.x, C.int(denom), C.int(space), C.long(maxMem), &ow, &oh); rc != 0 {
		return nil, nil, d.err(rc)
	}
	w, h := int(ow), int(oh)
	var dst []byte
	if pool {
		dst, pool = getPix(3 * w * h)
	}
	out := newRGB(w, h, dst)
	if pool {
		defer func() {
			if err != nil {
				putPix(out.Pix)
			}
		}()
	}
	var acc []uint32
	if k > 1 {
		buf, _ := getPix(3 * ((w + k - 1) / k) * ((h + k - 1) / k))
		small = newRGB((w+k-1)/k, (h+k-1)/k, buf)
		acc = make([]uint32, 3*w)
		defer func() {
			if err != nil {
				putPix(small.Pix)
			}
		}()
	}
	var line []byte
	if d.hdr.cmyk {
		line = make([]byte, 16*4*w)
	}
	const group = 16 // rows per read; a multiple of every k
	for y := 0; y < h; {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		rows := min(group, h-y)
		buf := out.Pix[y*out.Stride:]
		stride := out.Stride
		if line != nil {
			buf, stride = line, 4*w
		}
		var got C.int
		if rc := C.xj_read(d.x, (*C.uchar)(unsafe.Pointer(&buf[0])), C.int(stride), C.int(rows), &got); rc != 0 {
			return nil, nil, d.err(rc)
		}
		if got == 0 {
			return nil, nil, &jpegDecodeError{code: -1, msg: "decoder returned no rows"}
		}
		if line != nil {
			for r := 0; r < int(got); r++ {
				cmykRowToRGB(out.Pix[(y+r)*out.Stride:(y+r)*out.Stride+3*w], line[r*4*w:(r+1)*4*w])
			}
		}
		if small != nil {
			// xj_read fills every row asked for until the image ends, so
			// y stays a multiple of group, and of k: these rows are whole
			// blocks of the reduction but for the image's last.
			if int(got) != rows || y%k != 0 {
				return nil, nil, &jpegDecodeError{code: -1, msg: "decoder returned a partial row group"}
			}
			C.xr_reduce_box((*C.uchar)(unsafe.Pointer(&out.Pix[y*out.Stride])), C.long(out.Stride), C.int(w), C.int(rows), C.int(k),
				(*C.uchar)(unsafe.Pointer(&small.Pix[(y/k)*small.Stride])), (*C.uint)(unsafe.Pointer(&acc[0])))
		}
		y += int(got)
	}
	if C.xj_eof_warning(d.x) != 0 {
		return nil, nil, &jpegDecodeError{code: C.JWRN_JPEG_EOF, msg: "premature end of JPEG data (truncated file)"}
	}
	return out, small, nil
}

// cmykRowToRGB converts inverted (Adobe) CMYK samples as Pillow does:
// unpack "CMYK;I" (255 - v), then cmyk2rgb (Convert.c).
func cmykRowToRGB(dst, src []byte) {
	for i, j := 0, 0; i+3 < len(src); i, j = i+4, j+3 {
		nk := int32(src[i+3]) // 255 - (255 - k)
		for c := 0; c < 3; c++ {
			t := (255-int32(src[i+c]))*nk + 128
			dst[j+c] = clamp8(nk - ((t>>8)+t)>>8)
		}
	}
}

// close frees the decoder; it is safe to call more than once.
func (d *jpegDecoder) close() {
	if d.x == nil {
		return
	}
	d.cancel()
	d.mu.Lock()
	d.done = true
	d.mu.Unlock()
	C.xj_free(d.x)
	d.x = nil
	d.pin.Unpin()
}

// jpegError maps a libjpeg failure to the package's error kinds.
func jpegError(ctx context.Context, what string, err error) error {
	je, ok := err.(*jpegDecodeError)
	switch {
	case !ok:
		return err // a context error
	case je.cancelled():
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		return fmt.Errorf("%w: jpeg %s: %s", ErrCorrupt, what, je.msg)
	case je.tooManyScans():
		return fmt.Errorf("%w: jpeg %s has more than %d scans", ErrUnsupported, what, maxJPEGScans)
	case je.outOfMemory():
		return fmt.Errorf("%w: jpeg %s: needs more memory than its budget (%s)", ErrTooLarge, what, je.msg)
	case je.unsupported():
		return fmt.Errorf("%w: jpeg %s: %s", ErrUnsupported, what, je.msg)
	}
	return fmt.Errorf("%w: jpeg %s: %s", ErrCorrupt, what, je.msg)
}

// encodeRGBJPEG encodes a w x h packed RGB image (rows stride bytes apart) as
// a baseline JPEG (YCbCr 4:2:0, the standard Huffman tables: fitting them
// to a thumbnail-sized image costs more than the rest of its encoding) at
// quality 1..100, with libjpeg-turbo.
func encodeRGBJPEG(pix []byte, w, h, stride, quality int) ([]byte, error) {
	if w <= 0 || h <= 0 || len(pix) < (h-1)*stride+3*w {
		return nil, fmt.Errorf("imageprep: encode %dx%d from %d bytes", w, h, len(pix))
	}
	var out *C.uchar
	var n C.ulong
	var msg [C.JMSG_LENGTH_MAX]C.char
	if rc := C.xj_encode_rgb((*C.uchar)(unsafe.Pointer(&pix[0])), C.int(w), C.int(h), C.int(stride), C.int(quality),
		&out, &n, &msg[0], C.int(len(msg))); rc != 0 {
		return nil, fmt.Errorf("imageprep: jpeg encode: %s", C.GoString(&msg[0]))
	}
	defer C.xj_free_buf(out)
	return C.GoBytes(unsafe.Pointer(out), C.int(n)), nil
}
