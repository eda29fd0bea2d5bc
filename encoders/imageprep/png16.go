package imageprep

import (
	"compress/zlib"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// 16-bit PNGs decode to 8 bytes a pixel in image/png: a 6300x6300 one under
// the pixel cap takes 317 MB before its 119 MB RGB conversion. For
// non-interlaced 16-bit PNGs the Decoder instead inflates and unfilters one
// row at a time and converts each row to 8-bit RGB as it goes (the
// conversions of the 16-bit row sources in rgb.go: the high byte, alpha
// composited over white), so the peak is the RGB image plus two rows.
// Everything else (8-bit and paletted PNGs, 1-4 bytes a pixel in image/png;
// interlaced files; a tRNS colour key) goes through image/png.

// png16Header is what the row decoder needs from IHDR.
type png16Header struct {
	w, h     int
	channels int // 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
}

// png16Streamable reports whether data is a PNG the row decoder handles:
// bit depth 16, no interlacing, no tRNS chunk before the image data.
func png16Streamable(data []byte) (png16Header, bool) {
	if len(data) < 33 || string(data[12:16]) != "IHDR" {
		return png16Header{}, false
	}
	w, h := binary.BigEndian.Uint32(data[16:]), binary.BigEndian.Uint32(data[20:])
	depth, ctype, interlace := data[24], data[25], data[28]
	if depth != 16 || interlace != 0 || w == 0 || h == 0 || w > 1<<24 || h > 1<<24 {
		return png16Header{}, false
	}
	ch := map[byte]int{0: 1, 4: 2, 2: 3, 6: 4}[ctype]
	if ch == 0 {
		return png16Header{}, false
	}
	// A tRNS chunk (a transparent colour key) before IDAT: leave it to image/png.
	for i := 8; i+8 <= len(data); {
		n := int64(binary.BigEndian.Uint32(data[i:]))
		typ := string(data[i+4 : i+8])
		if typ == "tRNS" {
			return png16Header{}, false
		}
		if typ == "IDAT" || n > int64(len(data)) {
			break
		}
		i += 12 + int(n)
	}
	return png16Header{w: int(w), h: int(h), channels: ch}, true
}

// idatReader yields the concatenated payload of a PNG's IDAT chunks,
// checking each chunk's CRC, and then checks that IEND follows.
type idatReader struct {
	data []byte
	off  int    // next chunk
	cur  []byte // rest of the current IDAT payload
	seen bool   // an IDAT was found
	done bool
}

var errPNGChunk = errors.New("png: bad chunk")

func (r *idatReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.done {
			return 0, io.EOF
		}
		if err := r.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// next moves to the next IDAT chunk (or ends at the first chunk after the
// image data).
func (r *idatReader) next() error {
	for {
		if r.off+12 > len(r.data) {
			return io.ErrUnexpectedEOF
		}
		n := int(binary.BigEndian.Uint32(r.data[r.off:]))
		if n < 0 || n > len(r.data)-r.off-12 {
			return io.ErrUnexpectedEOF
		}
		typ := r.data[r.off+4 : r.off+8]
		body := r.data[r.off+8 : r.off+8+n]
		if crc32.ChecksumIEEE(r.data[r.off+4:r.off+8+n]) != binary.BigEndian.Uint32(r.data[r.off+8+n:]) {
			return fmt.Errorf("%w: %s checksum mismatch", errPNGChunk, typ)
		}
		r.off += 12 + n
		if string(typ) == "IDAT" {
			r.seen = true
			r.cur = body
			return nil
		}
		if r.seen {
			r.done = true // the image data ended
			return io.EOF
		}
	}
}

// decodePNG16 decodes a streamable 16-bit PNG (png16Streamable) row by row
// into packed RGB, checking ctx every 64 rows.
func decodePNG16(ctx context.Context, data []byte, hd png16Header) (*RGBImage, error) {
	r := &idatReader{data: data, off: 8}
	zr, err := zlib.NewReader(r)
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	bpp := 2 * hd.channels
	stride := bpp * hd.w
	cur, prev := make([]byte, stride+1), make([]byte, stride+1)
	out := newRGB(hd.w, hd.h, nil)
	for y := 0; y < hd.h; y++ {
		if y%64 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		if _, err := io.ReadFull(zr, cur); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if err := unfilter(cur[0], cur[1:], prev[1:], bpp); err != nil {
			return nil, err
		}
		rgb16Row(out.Pix[y*out.Stride:(y+1)*out.Stride], cur[1:], hd.channels)
		cur, prev = prev, cur
	}
	// The rest of the stream must be empty and the file must end with IEND,
	// every chunk intact, as image/png requires.
	var extra [1]byte
	if n, err := zr.Read(extra[:]); n > 0 {
		return nil, errors.New("png: too much pixel data")
	} else if err != nil && err != io.EOF {
		return nil, err
	}
	if err := pngEnds(data); err != nil {
		return nil, err
	}
	return out, nil
}

// pngEnds checks every chunk's CRC up to IEND, which must be there.
func pngEnds(data []byte) error {
	for i := 8; ; {
		if i+12 > len(data) {
			return io.ErrUnexpectedEOF
		}
		n := int(binary.BigEndian.Uint32(data[i:]))
		if n < 0 || n > len(data)-i-12 {
			return io.ErrUnexpectedEOF
		}
		if crc32.ChecksumIEEE(data[i+4:i+8+n]) != binary.BigEndian.Uint32(data[i+8+n:]) {
			return fmt.Errorf("%w: %s checksum mismatch", errPNGChunk, data[i+4:i+8])
		}
		if string(data[i+4:i+8]) == "IEND" {
			return nil
		}
		i += 12 + n
	}
}

// unfilter reverses PNG filter ft on row cur given the previous row.
func unfilter(ft byte, cur, prev []byte, bpp int) error {
	switch ft {
	case 0:
	case 1: // Sub
		for i := bpp; i < len(cur); i++ {
			cur[i] += cur[i-bpp]
		}
	case 2: // Up
		for i, p := range prev[:len(cur)] {
			cur[i] += p
		}
	case 3: // Average
		for i := 0; i < bpp; i++ {
			cur[i] += prev[i] / 2
		}
		for i := bpp; i < len(cur); i++ {
			cur[i] += byte((int(cur[i-bpp]) + int(prev[i])) / 2)
		}
	case 4: // Paeth
		for i := 0; i < len(cur); i++ {
			var a, c int
			if i >= bpp {
				a, c = int(cur[i-bpp]), int(prev[i-bpp])
			}
			b := int(prev[i])
			p := a + b - c
			pa, pb, pc := abs(p-a), abs(p-b), abs(p-c)
			switch {
			case pa <= pb && pa <= pc:
				cur[i] += byte(a)
			case pb <= pc:
				cur[i] += byte(b)
			default:
				cur[i] += byte(c)
			}
		}
	default:
		return fmt.Errorf("png: bad filter type %d", ft)
	}
	return nil
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// rgb16Row converts one row of big-endian 16-bit samples to packed RGB, as
// the row sources of image/png's types do (gray16Source, rgba64Source,
// nrgba64Source): the high byte of opaque samples; alpha composited over
// white.
func rgb16Row(dst, src []byte, channels int) {
	w := len(dst) / 3
	for x := 0; x < w; x++ {
		s := src[x*2*channels:]
		var r, g, b, a uint32
		switch channels {
		case 1:
			r = uint32(s[0])<<8 | uint32(s[1])
			g, b, a = r, r, 0xffff
		case 2:
			r = uint32(s[0])<<8 | uint32(s[1])
			g, b = r, r
			a = uint32(s[2])<<8 | uint32(s[3])
		case 3:
			r, g, b = uint32(s[0])<<8|uint32(s[1]), uint32(s[2])<<8|uint32(s[3]), uint32(s[4])<<8|uint32(s[5])
			a = 0xffff
		default:
			r, g, b = uint32(s[0])<<8|uint32(s[1]), uint32(s[2])<<8|uint32(s[3]), uint32(s[4])<<8|uint32(s[5])
			a = uint32(s[6])<<8 | uint32(s[7])
		}
		d := dst[3*x : 3*x+3 : 3*x+3]
		if a == 0xffff {
			d[0], d[1], d[2] = byte(r>>8), byte(g>>8), byte(b>>8)
			continue
		}
		d[0], d[1], d[2] = over16(r*a/0xffff, a), over16(g*a/0xffff, a), over16(b*a/0xffff, a)
	}
}
