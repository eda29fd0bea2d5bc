package imageprep

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/png"
	"io"

	"golang.org/x/image/bmp"
	"golang.org/x/image/webp"
)

// codec is one decodable format. We dispatch on magic bytes ourselves
// rather than through image.RegisterFormat, so the set of formats does not
// depend on what other packages happen to import.
type codec struct {
	name   string
	config func(io.Reader) (image.Config, error)
	decode func(io.Reader) (image.Image, error)
}

// sniff names the format from its magic bytes. It returns a codec for the
// formats we decode, or nil and the name of a recognised but unsupported
// format ("" when unrecognised).
func sniff(b []byte) (*codec, string) {
	has := func(off int, magic string) bool {
		return len(b) >= off+len(magic) && string(b[off:off+len(magic)]) == magic
	}
	switch {
	case has(0, "\xff\xd8\xff"):
		return &codec{name: "jpeg"}, "jpeg" // libjpeg-turbo (jpegturbo.go)
	case has(0, "\x89PNG\r\n\x1a\n"):
		return &codec{"png", png.DecodeConfig, png.Decode}, "png"
	case has(0, "GIF87a"), has(0, "GIF89a"):
		return &codec{"gif", gif.DecodeConfig, gif.Decode}, "gif" // gif.Decode: first frame only
	case has(0, "RIFF") && has(8, "WEBP"):
		return &codec{"webp", webp.DecodeConfig, webp.Decode}, "webp"
	case has(0, "BM"):
		return &codec{"bmp", bmp.DecodeConfig, bmp.Decode}, "bmp"
	case has(0, "II*\x00"), has(0, "MM\x00*"):
		return nil, "tiff"
	case has(4, "ftypavif"), has(4, "ftypavis"):
		return nil, "avif"
	case has(4, "ftypheic"), has(4, "ftypheix"), has(4, "ftypmif1"), has(4, "ftypmsf1"), has(4, "ftypheim"), has(4, "ftypheis"), has(4, "ftyphevc"):
		return nil, "heif"
	case has(0, "\xff\x0a"), has(0, "\x00\x00\x00\x0cJXL \r\n\x87\n"):
		return nil, "jxl"
	case has(0, "\x00\x00\x01\x00"):
		return nil, "ico"
	case has(0, "8BPS"):
		return nil, "psd"
	case has(0, "%PDF"):
		return nil, "pdf"
	case has(0, "<svg"), has(0, "<?xml"):
		return nil, "svg/xml"
	}
	return nil, ""
}

// Decode decodes an untrusted encoded image at full size.
//
// It refuses inputs over lim.MaxBytes, reads the header and refuses images
// declaring more than lim.MaxPixels pixels before any pixel memory is
// allocated, then decodes. EXIF orientation is applied (JPEG APP1, PNG
// eXIf, WebP EXIF), so the result is upright, as transformers' load_image
// (PIL.ImageOps.exif_transpose) makes it. GIF yields its first frame, with
// the frame's own bounds (which may be smaller than the logical screen and
// not start at the origin). JPEGs with more than 100 scans are refused as
// ErrUnsupported (see maxJPEGScans). The returned format is "jpeg", "png",
// "gif", "webp" or "bmp".
//
// JPEGs are decoded by libjpeg-turbo as Pillow decodes them and come back
// as *RGBImage; other formats keep their decoder's type (lossy WebP as
// *image.NRGBA with libwebp's colour conversion), rotated ones as
// *image.RGBA. Preprocess and Thumbnail accept any image. For indexing and
// queries use a Decoder, which also reduces JPEGs while decoding, bounds
// the memory of concurrent decodes and converts to RGB once.
//
// Errors wrap exactly one of ErrTooLarge, ErrUnsupported or ErrCorrupt.
func Decode(data []byte, lim Limits) (img image.Image, format string, err error) {
	lim = lim.WithDefaults()
	if int64(len(data)) > lim.MaxBytes {
		return nil, "", fmt.Errorf("%w: %d bytes exceeds the %d byte limit", ErrTooLarge, len(data), lim.MaxBytes)
	}
	if len(data) == 0 {
		return nil, "", fmt.Errorf("%w: empty input", ErrUnsupported)
	}
	c, name := sniff(data)
	if c == nil {
		if name == "" {
			return nil, "", fmt.Errorf("%w: unrecognised data (first bytes %q)", ErrUnsupported, head(data))
		}
		return nil, name, fmt.Errorf("%w: %s images are not supported", ErrUnsupported, name)
	}
	format = c.name
	if format == "jpeg" {
		d := &Decoder{opt: DecoderOptions{Limits: lim, Mode: ModeExact}}
		dec, err := d.decodeJPEG(context.Background(), data)
		if err != nil {
			return nil, format, err
		}
		return dec.Image, format, nil
	}

	// The codecs are not supposed to panic, but this runs on hostile input
	// inside long-lived workers: turn a panic into ErrCorrupt.
	defer func() {
		if r := recover(); r != nil {
			img = nil
			err = fmt.Errorf("%w: %s: decoder panic: %v", ErrCorrupt, format, r)
		}
	}()

	// image/png reports dimensions whose product overflows int as an
	// unsupported feature; refuse any oversized IHDR ourselves first.
	if format == "png" && len(data) >= 24 && string(data[12:16]) == "IHDR" {
		w, h := int64(binary.BigEndian.Uint32(data[16:])), int64(binary.BigEndian.Uint32(data[20:]))
		if tooManyPixels(w, h, lim.MaxPixels) {
			return nil, format, fmt.Errorf("%w: %s %dx%d exceeds the %d pixel limit", ErrTooLarge, format, w, h, lim.MaxPixels)
		}
	}
	cfg, err := c.config(bytes.NewReader(data))
	if err != nil {
		return nil, format, classify(format, "header", err)
	}
	w, h := int64(cfg.Width), int64(cfg.Height)
	if w <= 0 || h <= 0 {
		return nil, format, fmt.Errorf("%w: %s %dx%d: empty image", ErrCorrupt, format, w, h)
	}
	if tooManyPixels(w, h, lim.MaxPixels) {
		return nil, format, fmt.Errorf("%w: %s %dx%d exceeds the %d pixel limit", ErrTooLarge, format, w, h, lim.MaxPixels)
	}
	img, err = c.decode(bytes.NewReader(data))
	if err != nil {
		return nil, format, classify(format, fmt.Sprintf("%dx%d", w, h), err)
	}
	if b := img.Bounds(); b.Empty() {
		return nil, format, fmt.Errorf("%w: %s %dx%d: decoded an empty image", ErrCorrupt, format, w, h)
	}
	o := 1
	switch format {
	case "png":
		o = pngOrientation(data)
	case "webp":
		img = webpImage(img)
		o = webpOrientation(data)
	}
	if o > 1 {
		img = orient(img, o)
	}
	return img, format, nil
}

// webpImage converts what x/image/webp returns for lossy WebP (YCbCr planes
// with a JFIF colour model) as libwebp does; lossless WebP passes through.
func webpImage(img image.Image) image.Image {
	switch m := img.(type) {
	case *image.YCbCr:
		return webpToNRGBA(m, nil)
	case *image.NYCbCrA:
		return webpToNRGBA(&m.YCbCr, m)
	}
	return img
}

// tooManyPixels reports w*h > limit for positive w, h without overflow.
func tooManyPixels(w, h, limit int64) bool {
	if w <= 0 || h <= 0 {
		return false
	}
	return w > limit/h
}

// classify maps a codec error to ErrUnsupported (the codec says it does not
// implement the variant) or ErrCorrupt (anything else).
func classify(format, what string, err error) error {
	var pu png.UnsupportedError
	kind := ErrCorrupt
	switch {
	case errors.As(err, &pu):
		kind = ErrUnsupported
	case format == "webp" && isWebPUnsupported(err), format == "bmp" && errors.Is(err, bmp.ErrUnsupported):
		kind = ErrUnsupported
	}
	return fmt.Errorf("%w: %s %s: %w", kind, format, what, err)
}

func isWebPUnsupported(err error) bool {
	// x/image/webp has no typed errors; its "unsupported" messages say so.
	return bytes.Contains([]byte(err.Error()), []byte("unsupported"))
}

func head(b []byte) []byte {
	if len(b) > 8 {
		return b[:8]
	}
	return b
}
