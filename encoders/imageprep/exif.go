package imageprep

import (
	"bytes"
	"encoding/binary"
	"image"
)

// jpegOrientation returns the EXIF orientation (1..8) stored in the first
// APP1 "Exif" segment of a JPEG, or 1 when there is none or it is invalid.
// Like Pillow, only the first Exif segment and IFD0 are consulted.
func jpegOrientation(b []byte) int {
	if len(b) < 4 || b[0] != 0xff || b[1] != 0xd8 {
		return 1
	}
	i := 2
	for i+4 <= len(b) {
		if b[i] != 0xff {
			return 1 // lost sync: give up, the decoder has the final word
		}
		marker := b[i+1]
		switch {
		case marker == 0xff: // fill byte
			i++
			continue
		case marker == 0x01 || (marker >= 0xd0 && marker <= 0xd7): // no length
			i += 2
			continue
		case marker == 0xda || marker == 0xd9: // start of scan, end of image
			return 1
		}
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		if n < 2 || i+2+n > len(b) {
			return 1
		}
		seg := b[i+4 : i+2+n]
		if marker == 0xe1 && len(seg) >= 6 && string(seg[:6]) == "Exif\x00\x00" {
			return tiffOrientation(seg[6:])
		}
		i += 2 + n
	}
	return 1
}

// maxJPEGScans bounds the number of scans (SOS segments) Decode accepts.
// Go's progressive decoder visits every block of the scan's components once
// per scan, and an AC scan that codes nothing but end-of-band runs takes a
// few hundred bytes however large the image: a small file with thousands of
// scans over a 40 Mpixel frame would keep a worker busy for many minutes.
// Real encoders write about 10 scans (libjpeg's default progression), a
// dozen or two at most after optimisers such as jpegrescan or mozjpeg;
// libjpeg-turbo's own scan limit for untrusted input is 500.
const maxJPEGScans = 100

// jpegScans counts the SOS segments of a JPEG by walking its markers and
// skipping entropy-coded data (where 0xFF is always followed by a stuffed
// 0x00 or an RSTn marker). It stops early once limit is exceeded.
func jpegScans(b []byte, limit int) int {
	n := 0
	i := 2
	for i+4 <= len(b) && n <= limit {
		if b[i] != 0xff {
			return n
		}
		marker := b[i+1]
		switch {
		case marker == 0xff:
			i++
			continue
		case marker == 0x01 || (marker >= 0xd0 && marker <= 0xd7):
			i += 2
			continue
		case marker == 0xd9:
			return n
		}
		l := int(binary.BigEndian.Uint16(b[i+2:]))
		i += 2 + l
		if marker != 0xda {
			continue
		}
		n++
		for i+1 < len(b) {
			k := bytes.IndexByte(b[i:], 0xff)
			if k < 0 || i+k+1 >= len(b) {
				return n
			}
			i += k
			switch m := b[i+1]; {
			case m == 0xff: // fill byte before a marker
				i++
				continue
			case m == 0 || (m >= 0xd0 && m <= 0xd7): // stuffed 0xFF, restart marker
				i += 2
				continue
			}
			break
		}
	}
	return n
}

// pngOrientation returns the EXIF orientation of a PNG's eXIf chunk (before
// or after the image data, as Pillow reads it), or 1.
func pngOrientation(b []byte) int {
	const sig = 8
	if len(b) < sig {
		return 1
	}
	for i := sig; i+8 <= len(b); {
		n := int64(binary.BigEndian.Uint32(b[i:]))
		typ := string(b[i+4 : i+8])
		end := int64(i) + 12 + n
		if n > int64(len(b)) || end > int64(len(b)) {
			return 1
		}
		switch typ {
		case "eXIf":
			return tiffOrientation(stripExifHeader(b[i+8 : i+8+int(n)]))
		case "IEND":
			return 1
		}
		i = int(end)
	}
	return 1
}

// webpOrientation returns the EXIF orientation of a WebP's EXIF chunk, or 1.
func webpOrientation(b []byte) int {
	if len(b) < 12 || string(b[:4]) != "RIFF" || string(b[8:12]) != "WEBP" {
		return 1
	}
	for i := 12; i+8 <= len(b); {
		n := int64(binary.LittleEndian.Uint32(b[i+4:]))
		end := int64(i) + 8 + n + n&1 // chunks are padded to even sizes
		if n > int64(len(b)) || int64(i)+8+n > int64(len(b)) {
			return 1
		}
		if string(b[i:i+4]) == "EXIF" {
			return tiffOrientation(stripExifHeader(b[i+8 : i+8+int(n)]))
		}
		if end > int64(len(b)) {
			return 1
		}
		i = int(end)
	}
	return 1
}

// stripExifHeader drops the "Exif\0\0" prefix some writers put before the
// TIFF header in PNG and WebP (Pillow accepts both forms).
func stripExifHeader(t []byte) []byte {
	if len(t) >= 6 && string(t[:6]) == "Exif\x00\x00" {
		return t[6:]
	}
	return t
}

// tiffOrientation reads tag 0x0112 from IFD0 of a TIFF-structured blob.
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 1
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 1
	}
	if bo.Uint16(t[2:]) != 42 {
		return 1
	}
	off := int64(bo.Uint32(t[4:]))
	if off < 8 || off+2 > int64(len(t)) {
		return 1
	}
	n := int64(bo.Uint16(t[off:]))
	for e := int64(0); e < n; e++ {
		p := off + 2 + 12*e
		if p+12 > int64(len(t)) {
			return 1
		}
		if bo.Uint16(t[p:]) != 0x0112 {
			continue
		}
		var v uint32
		switch typ, count := bo.Uint16(t[p+2:]), bo.Uint32(t[p+4:]); {
		case typ == 3 && count >= 1: // SHORT, stored inline
			v = uint32(bo.Uint16(t[p+8:]))
		case typ == 4 && count >= 1: // LONG, stored inline
			v = bo.Uint32(t[p+8:])
		default:
			return 1
		}
		if v >= 1 && v <= 8 {
			return int(v)
		}
		return 1
	}
	return 1
}

// orient returns img transformed so that an image stored with EXIF
// orientation o (2..8) becomes upright, matching PIL.ImageOps.exif_transpose.
// Gray images stay *image.Gray; everything else becomes *image.RGBA with the
// same colour conversion Preprocess uses (libjpeg-style YCbCr, Pillow CMYK).
func orient(img image.Image, o int) image.Image {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	ow, oh := w, h
	if o >= 5 {
		ow, oh = h, w
	}
	srcOf := func(x, y int) (int, int) { return orientSource(o, w, h, x, y) }
	if g, ok := img.(*image.Gray); ok {
		out := image.NewGray(image.Rect(0, 0, ow, oh))
		for y := 0; y < oh; y++ {
			row := out.Pix[y*out.Stride : y*out.Stride+ow]
			for x := range row {
				sx, sy := srcOf(x, y)
				row[x] = g.Pix[g.PixOffset(b.Min.X+sx, b.Min.Y+sy)]
			}
		}
		return out
	}
	// Convert to packed RGB rows once, then permute.
	src := newRowSource(img)
	rgb := make([]byte, w*h*3)
	for y := 0; y < h; y++ {
		src.row(y, rgb[y*w*3:(y+1)*w*3])
	}
	out := image.NewRGBA(image.Rect(0, 0, ow, oh))
	for y := 0; y < oh; y++ {
		row := out.Pix[y*out.Stride : y*out.Stride+4*ow]
		for x := 0; x < ow; x++ {
			sx, sy := srcOf(x, y)
			p := (sy*w + sx) * 3
			row[4*x], row[4*x+1], row[4*x+2], row[4*x+3] = rgb[p], rgb[p+1], rgb[p+2], 255
		}
	}
	return out
}
