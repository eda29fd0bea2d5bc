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
	"strings"
	"sync"
)

// Mode is how a Decoder decodes images for indexing and for queries.
type Mode string

const (
	// ModeFast (the default) decodes a JPEG at the smallest IDCT scale (1/2,
	// 1/4 or 1/8) that still gives every consumer the pixels it needs (see
	// Need), as Pillow's Image.draft does: the model input is then what
	// CLIPImageProcessor makes of Pillow's draft-decoded image at that
	// scale, except when Need.Hash asks for a larger decode of a greyscale,
	// 4:4:4 or 4:2:0 JPEG: the model's image is then that decode reduced by
	// box means, within about half a level of the draft decode (see
	// Decoded.HashImage). A reduced decode says which full image it stands
	// for (RGBImage.PDQGrid), and PDQ hashes it with that image's geometry.
	// Other formats decode at full size.
	ModeFast Mode = "fast"
	// ModeExact decodes every image at full size: the model input is
	// identical to CLIPImageProcessor's on Pillow's full decode.
	ModeExact Mode = "exact"
)

// ParseMode accepts "fast" or "exact" ("" means fast).
func ParseMode(s string) (Mode, error) {
	switch Mode(strings.ToLower(strings.TrimSpace(s))) {
	case "", ModeFast:
		return ModeFast, nil
	case ModeExact:
		return ModeExact, nil
	}
	return "", fmt.Errorf("imageprep: unknown decode mode %q (want %q or %q)", s, ModeFast, ModeExact)
}

// Need is what the consumers of a decoded image need from it. In ModeFast a
// JPEG is reduced by the largest of 8, 4 and 2 that keeps Draft, LongSide
// and ShortSide; the perceptual hash's input keeps Hash.
type Need struct {
	// Draft is the model's resize size: the reduction is at most the one
	// Pillow's Image.draft("RGB", (Draft, Draft)) picks (both sides keep at
	// least Draft pixels).
	Draft int
	// LongSide: the longer side keeps at least this many pixels (thumbnails).
	LongSide int
	// ShortSide: the shorter side keeps at least this many pixels.
	ShortSide int
	// Hash: the perceptual hash's input keeps at least this many pixels on
	// its shorter side (or is the full-size image). When the decoded image
	// is smaller, Decoded.HashImage holds a second decode at the scale that
	// keeps it. 0: the hash reads Image. See DefaultHashSide.
	Hash int
}

// HashScale is the IDCT reduction (1, 2, 4 or 8) of the hash's input for a
// w x h JPEG: the largest that keeps Hash pixels on the shorter side.
func (n Need) HashScale(w, h int) int {
	for _, s := range [...]int{8, 4, 2} {
		if sw, sh := scaledSize(w, h, s); min(sw, sh) >= n.Hash {
			return s
		}
	}
	return 1
}

// DefaultHashSide is the Need.Hash that keeps PDQ within 10 bits of the
// reference's full-resolution hash. A reduced decode is hashed as the full
// image it stands for (RGBImage.PDQGrid, pdq.Grid); on the photo sets of
// tools/bench_photos.py (300 photos of 200-500 px, 60 upscaled 3000x2000,
// 144 real high-resolution pictures and their dihedral variants) decodes
// keeping 500 px or more on the shorter side stayed within 10 bits (a
// 3000x2000 photo at 1/4: within 4), while 375 px (1/8 of a 3000x3000
// picture) strayed up to 22 bits on fine wood-grain textures
// (bench/results/pdq-fast.txt, docs/hashing.md).
const DefaultHashSide = 500

// Scale is the IDCT reduction (1, 2, 4 or 8) for a w x h JPEG.
func (n Need) Scale(w, h int) int {
	for _, s := range [...]int{8, 4, 2} {
		if n.Draft > 0 && min(w/n.Draft, h/n.Draft) < s {
			continue
		}
		sw, sh := scaledSize(w, h, s)
		if max(sw, sh) < n.LongSide || min(sw, sh) < n.ShortSide {
			continue
		}
		return s
	}
	return 1
}

// DecoderOptions configure a Decoder.
type DecoderOptions struct {
	Limits Limits
	Mode   Mode // "" means ModeFast
	Need   Need // what the consumers need (ModeFast)
	// Budget bounds the memory of concurrent decodes; nil: unbounded. Share
	// one budget between every decoder of a process.
	Budget *Budget
}

// Decoder decodes untrusted images into packed RGB (*RGBImage), once, at the
// size its consumers need. It is safe for concurrent use.
type Decoder struct {
	opt DecoderOptions
}

// NewDecoder checks the options.
func NewDecoder(opt DecoderOptions) (*Decoder, error) {
	m, err := ParseMode(string(opt.Mode))
	if err != nil {
		return nil, err
	}
	opt.Mode = m
	if opt.Need.Draft < 0 || opt.Need.LongSide < 0 || opt.Need.ShortSide < 0 || opt.Need.Hash < 0 {
		return nil, fmt.Errorf("imageprep: negative decode need %+v", opt.Need)
	}
	opt.Limits = opt.Limits.WithDefaults()
	return &Decoder{opt: opt}, nil
}

// Mode is the decoder's mode.
func (d *Decoder) Mode() Mode { return d.opt.Mode }

// Decoded is an image decoded by a Decoder. Release it when done with the
// pixels: that returns its memory to the decode budget.
type Decoded struct {
	Image *RGBImage // upright (EXIF orientation applied), opaque
	// HashImage, when not nil, is the perceptual hash's input: the JPEG
	// decoded at Need.HashScale, larger than Image's scale, when Image has
	// fewer pixels than Need.Hash asks for. Image is then not decoded
	// separately: it is HashImage (before orientation) reduced by
	// Scale/HashScale with a box filter (each pixel the rounded mean of its
	// block), which is within a few levels of libjpeg's own scaled decode
	// (see TestBoxReducedModelImage). Upright, like Image.
	HashImage *RGBImage
	Format    string // "jpeg", "png", "gif", "webp" or "bmp"
	// Width and Height are the upright size of the encoded image.
	Width, Height int
	// Scale is Image's reduction of the JPEG (1, 2, 4 or 8): the IDCT
	// scale it was decoded at or, with a HashImage, the IDCT scale of the
	// hash input times the box reduction. 1 for every other format.
	Scale int
	// HashScale is HashImage's IDCT reduction (0 without one).
	HashScale int
	Mode      Mode
	res       *reservation
	pooled    [][]byte // pixel buffers to recycle on Release (pixpool.go)
	once      sync.Once
}

// Release returns the image's memory to the decode budget. The image must
// not be used afterwards. It is safe to call more than once.
func (d *Decoded) Release() {
	if d == nil {
		return
	}
	d.once.Do(func() {
		d.res.release()
		d.Image, d.HashImage = nil, nil
		for _, b := range d.pooled {
			putPix(b)
		}
		d.pooled = nil
	})
}

// Decode decodes an untrusted encoded image.
//
// As Decode (the function) it refuses inputs over Limits.MaxBytes and
// headers declaring more than Limits.MaxPixels pixels before allocating
// pixel memory. It then reserves the decode's estimated peak memory from
// the budget (waiting for it, or ErrTooLarge when one image needs more than
// the whole budget), decodes (a JPEG at the mode's scale), applies the EXIF
// orientation (JPEG, PNG eXIf, WebP EXIF) and converts to packed RGB once.
// ctx bounds the wait for the budget and the decoding itself (JPEG decoding
// stops between row groups and scans; other formats are checked between
// steps). Errors wrap ErrTooLarge, ErrUnsupported or ErrCorrupt, or are
// ctx's error.
func (d *Decoder) Decode(ctx context.Context, data []byte) (*Decoded, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	lim := d.opt.Limits
	if int64(len(data)) > lim.MaxBytes {
		return nil, fmt.Errorf("%w: %d bytes exceeds the %d byte limit", ErrTooLarge, len(data), lim.MaxBytes)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty input", ErrUnsupported)
	}
	c, name := sniff(data)
	if c == nil {
		if name == "" {
			return nil, fmt.Errorf("%w: unrecognised data (first bytes %q)", ErrUnsupported, head(data))
		}
		return nil, fmt.Errorf("%w: %s images are not supported", ErrUnsupported, name)
	}
	if c.name == "jpeg" {
		return d.decodeJPEG(ctx, data)
	}
	return d.decodeOther(ctx, c, data)
}

func (d *Decoder) decodeJPEG(ctx context.Context, data []byte) (*Decoded, error) {
	lim := d.opt.Limits
	if n := jpegScans(data, maxJPEGScans); n > maxJPEGScans {
		return nil, fmt.Errorf("%w: jpeg has more than %d scans", ErrUnsupported, maxJPEGScans)
	}
	jd, err := openJPEG(ctx, data, maxJPEGScans)
	if err != nil {
		return nil, jpegError(ctx, "header", err)
	}
	defer jd.close()
	h := jd.hdr
	what := fmt.Sprintf("%dx%d", h.w, h.h)
	if h.w <= 0 || h.h <= 0 {
		return nil, fmt.Errorf("%w: jpeg %s: empty image", ErrCorrupt, what)
	}
	if tooManyPixels(int64(h.w), int64(h.h), lim.MaxPixels) {
		return nil, fmt.Errorf("%w: jpeg %s exceeds the %d pixel limit", ErrTooLarge, what, lim.MaxPixels)
	}
	// In fast mode Image is decoded at the model's scale; when that leaves
	// the hash fewer pixels than Need.Hash asks for, the JPEG is decoded
	// once, at the hash's (larger) scale, and Image is that decode reduced
	// by box averaging (one entropy decode instead of two).
	scale, decScale := 1, 1
	if d.opt.Mode == ModeFast {
		scale = d.opt.Need.Scale(h.w, h.h)
		decScale = scale
		if d.opt.Need.Hash > 0 && h.boxable {
			decScale = min(scale, d.opt.Need.HashScale(h.w, h.h))
		}
	}
	ow, oh := scaledSize(h.w, h.h, decScale)
	orientation := jpegOrientation(data)
	pix := int64(ow) * int64(oh) * 3
	var mpix int64 // the box-reduced model image, when there is a hash input
	if decScale < scale {
		mw, mh := scaledSize(h.w, h.h, scale)
		mpix = int64(mw) * int64(mh) * 3
	}
	work := h.workMem(ow)
	need := pix + mpix + work
	if mpix > 0 {
		need += int64(ow) * 12 // the reduction's row sums
	}
	if orientation > 1 {
		need += pix + mpix // the upright copies
	}
	res, err := d.opt.Budget.reserve(ctx, need, "jpeg "+what)
	if err != nil {
		return nil, err
	}
	maxMem := int64(0)
	if d.opt.Budget != nil {
		maxMem = work
	}
	// The reduction runs before orienting, so that the partial blocks sit
	// at the right and bottom edges of the stored image, as libjpeg's
	// scaled IDCT's do.
	k := 0
	if mpix > 0 {
		k = scale / decScale
	}
	img, small, err := jd.decodeReduce(ctx, decScale, maxMem, true, k)
	jd.close() // libjpeg's working memory is freed here
	if err != nil {
		res.release()
		return nil, jpegError(ctx, what, err)
	}
	var hashImg *RGBImage
	hashScale := 0
	if small != nil {
		hashScale = decScale
		hashImg, img = img, small
	}
	var pooled [][]byte
	sw := func(s int) int { w, _ := scaledSize(h.w, h.h, s); return w }
	sh := func(s int) int { _, hh := scaledSize(h.w, h.h, s); return hh }
	upright := func(m *RGBImage) *RGBImage {
		if orientation > 1 {
			up := orientRGB(m, orientation)
			putPix(m.Pix)
			return up
		}
		pooled = append(pooled, m.Pix)
		return m
	}
	img = upright(img)
	img.grid = jpegGrid(scale, h.w, h.h, sw(scale), sh(scale), orientation)
	if hashImg != nil {
		hashImg = upright(hashImg)
		hashImg.grid = jpegGrid(decScale, h.w, h.h, sw(decScale), sh(decScale), orientation)
	}
	res.shrink(pix + mpix)
	out := &Decoded{Image: img, HashImage: hashImg, pooled: pooled, Format: "jpeg",
		Width: uprightW(h.w, h.h, orientation), Height: uprightH(h.w, h.h, orientation),
		Scale: scale, HashScale: hashScale, Mode: d.opt.Mode, res: res}
	if d.opt.Mode == ModeFast && d.opt.Need.Hash > 0 && hashImg == nil {
		if hs := d.opt.Need.HashScale(h.w, h.h); hs < scale {
			if out.HashImage, err = d.decodeJPEGHash(ctx, data, h, hs, orientation, out); err != nil {
				out.Release()
				return nil, jpegError(ctx, what, err)
			}
			out.HashScale = hs
		}
	}
	return out, nil
}

// decodeJPEGHash decodes the hash's input, in RGB, at 1/scale: a second
// decode, for the chroma layouts whose Image is not a box reduction of it
// (jpegInfo.boxable). Its memory joins out's reservation. (libjpeg's
// greyscale output, the Y channel alone, would be cheaper, but on flat
// photos its hash strays up to 28 bits from the reference's, which converts
// RGB to luma.)
func (d *Decoder) decodeJPEGHash(ctx context.Context, data []byte, h jpegInfo, scale, orientation int, out *Decoded) (*RGBImage, error) {
	res := out.res
	ow, oh := scaledSize(h.w, h.h, scale)
	pix := int64(ow) * int64(oh) * 3
	work := h.workMem(ow)
	extra := pix + work
	if orientation > 1 {
		extra += pix
	}
	more, err := d.opt.Budget.reserve(ctx, extra, fmt.Sprintf("jpeg %dx%d (hash input)", h.w, h.h))
	if err != nil {
		return nil, err
	}
	jd, err := openJPEG(ctx, data, maxJPEGScans)
	if err != nil {
		more.release()
		return nil, err
	}
	maxMem := int64(0)
	if d.opt.Budget != nil {
		maxMem = work
	}
	img, err := jd.decode(ctx, scale, maxMem, true)
	jd.close()
	if err != nil {
		more.release()
		return nil, err
	}
	if orientation > 1 {
		up := orientRGB(img, orientation)
		putPix(img.Pix)
		img = up
	} else {
		out.pooled = append(out.pooled, img.Pix)
	}
	img.grid = jpegGrid(scale, h.w, h.h, ow, oh, orientation)
	more.shrink(pix)
	res.join(more)
	return img, nil
}

func uprightW(w, h, o int) int {
	if o >= 5 && o <= 8 {
		return h
	}
	return w
}

func uprightH(w, h, o int) int { return uprightW(h, w, o) }

// goImageBytes estimates the bytes of the image a Go codec returns for cfg.
func goImageBytes(format string, data []byte, cfg image.Config) int64 {
	px := int64(cfg.Width) * int64(cfg.Height)
	switch format {
	case "png":
		depth, ctype := byte(8), byte(2)
		if len(data) >= 26 {
			depth, ctype = data[24], data[25]
		}
		bpp := int64(4)
		switch {
		case ctype == 3: // paletted
			bpp = 1
		case ctype == 0 && depth <= 8:
			bpp = 1
		case ctype == 0:
			bpp = 2
		case depth == 16:
			bpp = 8
		}
		return px*bpp + 2*int64(cfg.Width)*8 + (1 << 16)
	case "gif":
		return px + (1 << 16)
	case "webp":
		return px*4 + px*5/2 + (1 << 16) // YCbCr(+alpha) planes and the NRGBA conversion
	default: // bmp
		return px*4 + (1 << 16)
	}
}

func (d *Decoder) decodeOther(ctx context.Context, c *codec, data []byte) (dec *Decoded, err error) {
	lim := d.opt.Limits
	format := c.name
	var res *reservation
	defer func() {
		// The codecs are not supposed to panic, but this runs on hostile
		// input inside long-lived workers: turn a panic into ErrCorrupt.
		if r := recover(); r != nil {
			dec, err = nil, fmt.Errorf("%w: %s: decoder panic: %v", ErrCorrupt, format, r)
		}
		if err != nil {
			res.release()
		}
	}()
	if format == "png" && len(data) >= 24 && string(data[12:16]) == "IHDR" {
		w, h := int64(binary.BigEndian.Uint32(data[16:])), int64(binary.BigEndian.Uint32(data[20:]))
		if tooManyPixels(w, h, lim.MaxPixels) {
			return nil, fmt.Errorf("%w: %s %dx%d exceeds the %d pixel limit", ErrTooLarge, format, w, h, lim.MaxPixels)
		}
	}
	cfg, err := c.config(bytes.NewReader(data))
	if err != nil {
		return nil, classify(format, "header", err)
	}
	w, h := int64(cfg.Width), int64(cfg.Height)
	what := fmt.Sprintf("%s %dx%d", format, w, h)
	if w <= 0 || h <= 0 {
		return nil, fmt.Errorf("%w: %s: empty image", ErrCorrupt, what)
	}
	if tooManyPixels(w, h, lim.MaxPixels) {
		return nil, fmt.Errorf("%w: %s exceeds the %d pixel limit", ErrTooLarge, what, lim.MaxPixels)
	}
	pix := w * h * 3
	orientation := 1
	switch format {
	case "png":
		orientation = pngOrientation(data)
	case "webp":
		orientation = webpOrientation(data)
	}
	hd16, stream16 := png16Header{}, false
	if format == "png" {
		hd16, stream16 = png16Streamable(data)
	}
	need := pix + goImageBytes(format, data, cfg)
	if stream16 {
		need = pix + int64(4*hd16.channels*hd16.w) + (1 << 16) // the RGB image and two rows
	}
	if orientation > 1 {
		need += pix
	}
	res, err = d.opt.Budget.reserve(ctx, need, what)
	if err != nil {
		return nil, err
	}
	// Go's codecs take no context: decode on another goroutine and stop
	// waiting when ctx ends. An abandoned decode keeps its reservation until
	// it finishes, so the budget still bounds the memory it uses.
	type result struct {
		img image.Image
		err error
	}
	if stream16 {
		rgb, err := decodePNG16(ctx, data, hd16)
		if err != nil {
			if cerr := ctx.Err(); cerr != nil && errors.Is(err, cerr) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, what, err)
		}
		if orientation > 1 {
			rgb = orientRGB(rgb, orientation)
		}
		res.shrink(int64(len(rgb.Pix)))
		b := rgb.Rect
		return &Decoded{Image: rgb, Format: format, Width: b.Dx(), Height: b.Dy(), Scale: 1, Mode: d.opt.Mode, res: res}, nil
	}
	done := make(chan result, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- result{nil, fmt.Errorf("%w: %s: decoder panic: %v", ErrCorrupt, format, r)}
			}
		}()
		var r result
		switch format {
		case "gif":
			r.img, r.err = gif.Decode(bytes.NewReader(data)) // first frame
		case "png":
			r.img, r.err = png.Decode(bytes.NewReader(data))
		default:
			r.img, r.err = c.decode(bytes.NewReader(data))
		}
		done <- r
	}()
	var img image.Image
	select {
	case r := <-done:
		img, err = r.img, r.err
	case <-ctx.Done():
		abandoned := res
		res = nil // released by the decode's goroutine, not by the deferred release
		go func() {
			<-done
			abandoned.release()
		}()
		return nil, ctx.Err()
	}
	if err != nil {
		if errors.Is(err, ErrCorrupt) {
			return nil, err
		}
		return nil, classify(format, fmt.Sprintf("%dx%d", w, h), err)
	}
	if img.Bounds().Empty() {
		return nil, fmt.Errorf("%w: %s: decoded an empty image", ErrCorrupt, what)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if format == "webp" {
		img = webpImage(img)
	}
	rgb, err := toRGBContext(ctx, img)
	img = nil
	if err != nil {
		return nil, err
	}
	if orientation > 1 {
		rgb = orientRGB(rgb, orientation)
	}
	res.shrink(int64(len(rgb.Pix)))
	b := rgb.Rect
	return &Decoded{Image: rgb, Format: format, Width: b.Dx(), Height: b.Dy(), Scale: 1, Mode: d.opt.Mode, res: res}, nil
}
