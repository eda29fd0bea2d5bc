package pdq

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"io"

	// Formats a post's image may come in.
	_ "image/gif"
	_ "image/jpeg"
	_ "image/png"

	_ "golang.org/x/image/webp"
)

// MaxPixels bounds the size of an image Decode accepts (width times height),
// so that a small file claiming huge dimensions cannot exhaust memory.
const MaxPixels = 50_000_000

// ErrTooLarge is returned (wrapped) by Decode for images over MaxPixels.
var ErrTooLarge = errors.New("pdq: image too large")

// Decode decodes a JPEG, PNG, GIF or WebP image after checking its declared
// size against MaxPixels. It returns the image and its format name.
func Decode(data []byte) (image.Image, string, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, "", fmt.Errorf("pdq: decode: %w", err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, format, fmt.Errorf("pdq: decode: empty %s image %dx%d", format, cfg.Width, cfg.Height)
	}
	if int64(cfg.Width)*int64(cfg.Height) > MaxPixels {
		return nil, format, fmt.Errorf("%w: %s %dx%d (limit %d pixels)", ErrTooLarge, format, cfg.Width, cfg.Height, MaxPixels)
	}
	img, format, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, format, fmt.Errorf("pdq: decode %s: %w", format, err)
	}
	return img, format, nil
}

// FromBytes decodes an encoded image (see Decode) and hashes it.
func FromBytes(data []byte) (Hash, int, error) {
	img, _, err := Decode(data)
	if err != nil {
		return Hash{}, 0, err
	}
	h, q := FromImage(img)
	return h, q, nil
}

// FromReader reads an encoded image to the end and hashes it.
func FromReader(r io.Reader) (Hash, int, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return Hash{}, 0, fmt.Errorf("pdq: read: %w", err)
	}
	return FromBytes(data)
}
