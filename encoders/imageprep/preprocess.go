package imageprep

// #include "resample.h"
import "C"

import (
	"errors"
	"fmt"
	"image"
	"unsafe"
)

// Preprocess turns img into a normalised CHW float32 tensor of
// s.TensorLen() = 3*Crop()^2 values, written into dst when it is long
// enough (dst[:TensorLen()] is returned) and freshly allocated otherwise.
//
// Steps, as in CLIPImageProcessor: to 8-bit RGB (alpha composited over
// white; see the package doc), resize with Pillow-exact bicubic to the
// Spec's size, centre crop (zero padding where the crop is larger than the
// resized image, as transformers' center_crop does), rescale by 1/255 and
// normalise with Mean and Std.
//
// An invalid Spec (see Spec.Validate) yields nil. A nil or empty image
// yields the tensor of an all-black image.
func Preprocess(img image.Image, s Spec, dst []float32) []float32 {
	if s.Validate() != nil {
		return nil
	}
	n := s.TensorLen()
	if len(dst) < n {
		dst = make([]float32, n)
	}
	dst = dst[:n]
	rgb := resizeCrop(img, s)
	normalize(rgb, s, dst)
	putPix(rgb)
	return dst
}

// RGB returns img as packed 8-bit RGB (3 bytes per pixel, rows of 3*w
// bytes) with the colour conversions Preprocess uses: alpha composited over
// white, libjpeg-turbo's upsampling and colour tables for JPEG YCbCr,
// Pillow's CMYK formula, the high byte of 16-bit samples. Use it rather than
// image.Image.At where pixels should match what Pillow would decode.
func RGB(img image.Image) (pix []byte, w, h int) {
	if img == nil || img.Bounds().Empty() {
		return nil, 0, 0
	}
	src := newRowSource(img)
	w, h = src.size()
	pix = make([]byte, 3*w*h)
	for y := 0; y < h; y++ {
		src.row(y, pix[3*w*y:3*w*(y+1)])
	}
	return pix, w, h
}

// resizeTarget is transformers' get_resize_output_image_size for
// {"shortest_edge": Size} (long side = int(Size*long/short)), or
// Size x Size for squash.
func resizeTarget(w, h int, s Spec) (int, int) {
	if s.Resize == ResizeSquash {
		return s.Size, s.Size
	}
	if w <= h {
		return s.Size, int(int64(s.Size) * int64(h) / int64(w))
	}
	return int(int64(s.Size) * int64(w) / int64(h)), s.Size
}

// resizeCrop returns the Crop() x Crop() packed RGB window of the resized
// image.
func resizeCrop(img image.Image, s Spec) []byte {
	c := s.Crop()
	if img == nil || img.Bounds().Empty() {
		return make([]byte, c*c*3)
	}
	src := newRowSource(img)
	w, h := src.size()
	rw, rh := resizeTarget(w, h, s)
	// numpy centre crop: top = (rh - c) // 2 (floor), rows outside the
	// resized image are zero padding.
	top, left := floorDiv2(rh-c), floorDiv2(rw-c)
	y0, y1 := max(top, 0), min(top+c, rh)
	x0, x1 := max(left, 0), min(left+c, rw)
	if y1 <= y0 || x1 <= x0 {
		return make([]byte, c*c*3)
	}
	win := resampleWindow(bicubic, src, rw, rh, x0, y0, x1-x0, y1-y0)
	if x0 == left && y0 == top && x1-x0 == c && y1-y0 == c {
		return win
	}
	out := make([]byte, c*c*3) // zero padding around the window
	defer putPix(win)
	ww := (x1 - x0) * 3
	for r := 0; r < y1-y0; r++ {
		o := ((y0-top+r)*c + (x0 - left)) * 3
		copy(out[o:o+ww], win[r*ww:(r+1)*ww])
	}
	return out
}

func floorDiv2(v int) int {
	if v >= 0 {
		return v / 2
	}
	return -((-v + 1) / 2)
}

// normalize writes the CHW tensor of the packed RGB crop into dst, using
// transformers' arithmetic: rescale as float64(v) * (1/255) rounded to
// float32, then (x - mean) / std in float32.
func normalize(rgb []byte, s Spec, dst []float32) {
	var lut [3][256]float32
	for c := 0; c < 3; c++ {
		for v := 0; v < 256; v++ {
			x := float32(float64(v) * (1.0 / 255.0))
			lut[c][v] = (x - s.Mean[c]) / s.Std[c]
		}
	}
	plane := len(rgb) / 3
	r, g, b := dst[:plane], dst[plane:2*plane], dst[2*plane:3*plane]
	lr, lg, lb := &lut[0], &lut[1], &lut[2]
	for i := 0; i < plane; i++ {
		p := rgb[3*i : 3*i+3 : 3*i+3]
		r[i] = lr[p[0]]
		g[i] = lg[p[1]]
		b[i] = lb[p[2]]
	}
}

// reduceBox shrinks src by k in both directions, each output pixel the
// rounded mean of its k x k block (blocks at the right and bottom edges
// average the pixels they have), as PIL's Image.reduce does. Its pixels come
// from the pixel pool: the caller may hand them to putPix when done.
func reduceBox(src rowSource, k int) *RGBImage {
	w, h := src.size()
	ow, oh := (w+k-1)/k, (h+k-1)/k
	pix, _ := getPix(3 * ow * oh) // every byte written below
	out := newRGB(ow, oh, pix)
	acc := make([]uint32, 3*w)
	if m, ok := src.(rgbSource); ok {
		C.xr_reduce_box(cBytes(m.m.RowRGB(0)), C.long(m.m.Stride), C.int(w), C.int(h), C.int(k),
			cBytes(out.Pix), (*C.uint)(unsafe.Pointer(&acc[0])))
		return out
	}
	// Other sources: k rows at a time, converted to packed RGB first.
	buf := make([]byte, k*w*3)
	for oy := 0; oy < oh; oy++ {
		y0, y1 := oy*k, min((oy+1)*k, h)
		for y := y0; y < y1; y++ {
			src.row(y, buf[(y-y0)*w*3:(y-y0+1)*w*3])
		}
		C.xr_reduce_box(cBytes(buf), C.long(w*3), C.int(w), C.int(y1-y0), C.int(k),
			cBytes(out.Pix[oy*out.Stride:]), (*C.uint)(unsafe.Pointer(&acc[0])))
	}
	return out
}

// Thumbnail returns a baseline JPEG of img scaled (never enlarged) so that
// its longer side is at most maxSide, for result pages. Alpha is composited
// over white. quality is the JPEG quality, 1..100; 0 means 80. The JPEG is
// encoded by libjpeg-turbo (4:2:0, standard Huffman tables).
func Thumbnail(img image.Image, maxSide int, quality int) ([]byte, error) {
	if img == nil || img.Bounds().Empty() {
		return nil, errors.New("imageprep: thumbnail of an empty image")
	}
	if maxSide <= 0 {
		return nil, fmt.Errorf("imageprep: thumbnail max side %d must be positive", maxSide)
	}
	switch {
	case quality == 0:
		quality = 80
	case quality < 1 || quality > 100:
		return nil, fmt.Errorf("imageprep: thumbnail quality %d out of range 1..100", quality)
	}
	src := newRowSource(img)
	w, h := src.size()
	tw, th := w, h
	if w > maxSide || h > maxSide {
		if w >= h {
			tw, th = maxSide, max(1, int((int64(h)*int64(maxSide)+int64(w)/2)/int64(w)))
		} else {
			tw, th = max(1, int((int64(w)*int64(maxSide)+int64(h)/2)/int64(h))), maxSide
		}
	}
	// As PIL's Image.thumbnail does with a reducing_gap: first an integer
	// box reduction (here all the way to between 1 and 2 times the target),
	// then an antialiased resample, bilinear: within 2x of the target it
	// looks the same as bicubic at 128 px, with half the taps.
	if k := min(w/tw, h/th); k >= 2 {
		small := reduceBox(src, k)
		defer putPix(small.Pix)
		src = rgbSource{small}
	}
	rgb := resampleWindow(bilinear, src, tw, th, 0, 0, tw, th)
	defer putPix(rgb)
	b, err := encodeRGBJPEG(rgb, tw, th, 3*tw, quality)
	if err != nil {
		return nil, fmt.Errorf("imageprep: thumbnail: %w", err)
	}
	return b, nil
}
