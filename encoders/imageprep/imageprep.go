// Package imageprep decodes untrusted image bytes and turns images into the
// normalised CHW float32 tensors that CLIP-style image towers expect.
//
// Decoding ([Decoder], and [Decode] for a plain full-size decode) checks the
// declared size before any pixel memory is allocated, supports JPEG, PNG,
// GIF (first frame), WebP and BMP with their EXIF orientation, and reports
// failures as one of three typed errors. A Decoder decodes once into packed
// RGB ([RGBImage]) that the thumbnail, the model input and the PDQ hash all
// read; in [ModeFast] it reduces a JPEG in libjpeg-turbo's IDCT (1/2, 1/4,
// 1/8) as far as its consumers allow ([Need]), as Pillow's Image.draft does;
// a shared [Budget] bounds the memory of concurrent decodes, and every decode
// honours its context.
//
// Preprocessing ([Preprocess]) aims at parity with transformers'
// CLIPImageProcessor (transformers 4.57, Pillow 11): the resize is a
// re-implementation of Pillow's separable fixed-point bicubic resampler
// (Resample.c: a=-0.5 kernel widened by the scale when downscaling, 22-bit
// fixed-point coefficients, horizontal pass first, each pass rounded to
// uint8), followed by numpy-style centre crop, rescale by 1/255 in float64
// and normalisation in float32. On identical decoded pixels the output is
// bit-identical to CLIPImageProcessor; see the package tests.
//
// Where we deliberately differ from CLIPImageProcessor:
//
//   - Transparency. CLIPImageProcessor's convert_to_rgb calls Pillow's
//     Image.convert("RGB"), which for RGBA, LA and paletted images with a
//     transparent index simply drops the alpha channel, so whatever colour
//     sits under fully transparent pixels (often black) reaches the model.
//     We composite over white instead, which is what a viewer shows.
//     Opaque images are unaffected.
//   - 16-bit grayscale PNG. Pillow opens it as mode "I;16" and its
//     conversion to RGB clips every value above 255 to white; we keep the
//     high byte (as Pillow itself does for 16-bit RGB/RGBA PNGs).
//   - Orientation. CLIPImageProcessor never looks at EXIF; transformers'
//     load_image applies PIL.ImageOps.exif_transpose. Decoding honours the
//     EXIF orientation of JPEG (APP1), PNG (eXIf) and WebP (EXIF chunk), so
//     parity is with load_image + processor. (Pillow also reads an
//     orientation from XMP or a PNG "Raw profile type exif" text chunk when
//     there is no EXIF one; we do not.)
//
// JPEGs are decoded by libjpeg-turbo (cgo), as Pillow decodes them: the
// pixels, and so the tensors, are identical, at full size and at each draft
// scale (TestParityCLIPImageProcessor, TestScaledDecodeMatchesLibjpegTurbo),
// except for a fast-mode JPEG whose model image is the box reduction of the
// hash's larger decode (Decoded.HashImage).
package imageprep

import (
	"errors"
	"fmt"
)

// Default limits used when a Limits field is zero or negative.
const (
	DefaultMaxPixels = 40_000_000
	DefaultMaxBytes  = 32 << 20
)

// Limits bounds what Decode accepts. Zero or negative fields mean the
// defaults (DefaultMaxPixels, DefaultMaxBytes).
//
// Peak memory while decoding is roughly 4 bytes per pixel for 8-bit images
// (8 for 16-bit PNG) plus, for progressive JPEG, 4 bytes per pixel per
// colour component of coefficient storage: at the default 40 Mpixel cap a
// progressive 4:4:4 JPEG needs about 0.6 GB. Lower MaxPixels, or bound the
// number of concurrent decodes, where that matters.
type Limits struct {
	MaxPixels int64 // width*height declared by the header
	MaxBytes  int64 // length of the encoded input
}

// DefaultLimits returns the default limits.
func DefaultLimits() Limits {
	return Limits{MaxPixels: DefaultMaxPixels, MaxBytes: DefaultMaxBytes}
}

// WithDefaults returns l with the zero (or negative) limits set to the
// defaults.
func (l Limits) WithDefaults() Limits {
	if l.MaxPixels <= 0 {
		l.MaxPixels = DefaultMaxPixels
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	return l
}

// Errors returned by Decode, always wrapped with details (format and
// declared dimensions where known); test with errors.Is.
var (
	// ErrTooLarge: the input is longer than Limits.MaxBytes or its header
	// declares more than Limits.MaxPixels pixels.
	ErrTooLarge = errors.New("imageprep: image too large")
	// ErrUnsupported: not an image, or a format or variant we do not decode
	// (TIFF, HEIC/AVIF, animated WebP, arithmetic-coded JPEG, ...).
	ErrUnsupported = errors.New("imageprep: unsupported image")
	// ErrCorrupt: a supported format whose data is truncated or invalid.
	ErrCorrupt = errors.New("imageprep: corrupt image")
)

// Resize rules for Spec.Resize.
const (
	// ResizeShortest scales the short side to Spec.Size keeping the aspect
	// ratio (long side = floor(Size*long/short), as transformers does),
	// then centre-crops Spec.CropSize.
	ResizeShortest = "shortest"
	// ResizeSquash scales both sides to Spec.Size, ignoring the aspect
	// ratio, then centre-crops Spec.CropSize.
	ResizeSquash = "squash"
)

// Spec describes how Preprocess turns an image into a tensor.
type Spec struct {
	Size     int        // target of the resize (short side, or both sides)
	Mean     [3]float32 // per-channel mean, on the [0,1] scale
	Std      [3]float32 // per-channel standard deviation
	Resize   string     // ResizeShortest ("" means this) or ResizeSquash
	CropSize int        // side of the centre crop; 0 means Size
}

// CLIPSpec returns OpenAI CLIP's preprocessing (ViT-B/32, ViT-B/16, ViT-L/14
// at 224 px), as in CLIPImageProcessor's defaults.
func CLIPSpec() Spec {
	return Spec{
		Size:     224,
		Mean:     [3]float32{0.48145466, 0.4578275, 0.40821073},
		Std:      [3]float32{0.26862954, 0.26130258, 0.27577711},
		Resize:   ResizeShortest,
		CropSize: 224,
	}
}

// maxSpecSize bounds Spec.Size and CropSize (a 3x8192x8192 float32 tensor
// is already 800 MB).
const maxSpecSize = 8192

// Validate reports whether the spec can be used.
func (s Spec) Validate() error {
	if s.Size <= 0 || s.Size > maxSpecSize {
		return fmt.Errorf("imageprep: spec size %d out of range 1..%d", s.Size, maxSpecSize)
	}
	if s.CropSize < 0 || s.CropSize > maxSpecSize {
		return fmt.Errorf("imageprep: spec crop size %d out of range 0..%d", s.CropSize, maxSpecSize)
	}
	switch s.Resize {
	case "", ResizeShortest, ResizeSquash:
	default:
		return fmt.Errorf("imageprep: unknown resize rule %q (want %q or %q)", s.Resize, ResizeShortest, ResizeSquash)
	}
	for c := 0; c < 3; c++ {
		if !(s.Std[c] > 0) {
			return fmt.Errorf("imageprep: spec std[%d] = %v, must be > 0", c, s.Std[c])
		}
	}
	return nil
}

// Crop returns the side of the output tensor (CropSize, or Size when 0).
func (s Spec) Crop() int {
	if s.CropSize > 0 {
		return s.CropSize
	}
	return s.Size
}

// TensorLen is the number of float32 values Preprocess writes: 3*Crop()^2.
func (s Spec) TensorLen() int {
	c := s.Crop()
	return 3 * c * c
}
