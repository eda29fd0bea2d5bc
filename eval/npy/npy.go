// Package npy reads and writes NumPy .npy files (format versions 1-3,
// C order, little-endian), enough for embedding matrices and the training
// tensors that xmodal gen writes.
package npy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
)

const magic = "\x93NUMPY"

// Header is a parsed .npy header.
type Header struct {
	Descr string // e.g. "<f4", "<f2", "|u1", "<i4"
	Shape []int
}

// Len is the number of elements.
func (h Header) Len() int {
	n := 1
	for _, d := range h.Shape {
		n *= d
	}
	return n
}

var (
	descrRe = regexp.MustCompile(`'descr'\s*:\s*'([^']*)'`)
	orderRe = regexp.MustCompile(`'fortran_order'\s*:\s*(True|False)`)
	shapeRe = regexp.MustCompile(`'shape'\s*:\s*\(([^)]*)\)`)
)

// itemSize of the supported dtypes.
func itemSize(descr string) int {
	switch descr {
	case "<f2", "<i2", "<u2":
		return 2
	case "<f4", "<i4", "<u4":
		return 4
	case "<f8", "<i8", "<u8":
		return 8
	case "|u1", "|i1", "|b1", "<u1", "<i1":
		return 1
	}
	return 0
}

// ReadHeader parses the header and leaves r at the start of the data.
func ReadHeader(r io.Reader) (Header, error) {
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return Header{}, errors.New("not a .npy file (too short)")
	}
	if string(pre[:6]) != magic {
		return Header{}, errors.New("not a .npy file (bad magic)")
	}
	var hlen int
	switch pre[6] {
	case 1:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return Header{}, errors.New("truncated .npy header")
		}
		hlen = int(binary.LittleEndian.Uint16(b[:]))
	case 2, 3:
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return Header{}, errors.New("truncated .npy header")
		}
		hlen = int(binary.LittleEndian.Uint32(b[:]))
	default:
		return Header{}, fmt.Errorf("unsupported .npy format version %d", pre[6])
	}
	if hlen > 1<<20 {
		return Header{}, fmt.Errorf(".npy header of %d bytes is too long", hlen)
	}
	hb := make([]byte, hlen)
	if _, err := io.ReadFull(r, hb); err != nil {
		return Header{}, errors.New("truncated .npy header")
	}
	hs := string(hb)
	var h Header
	m := descrRe.FindStringSubmatch(hs)
	if m == nil {
		return Header{}, fmt.Errorf(".npy header has no descr: %q", strings.TrimSpace(hs))
	}
	h.Descr = m[1]
	if itemSize(h.Descr) == 0 {
		return Header{}, fmt.Errorf("unsupported .npy dtype %q (want little-endian float16/32/64, int8-64 or uint8)", h.Descr)
	}
	if m := orderRe.FindStringSubmatch(hs); m != nil && m[1] == "True" {
		return Header{}, errors.New("fortran-order .npy arrays are not supported; save with np.ascontiguousarray")
	}
	m = shapeRe.FindStringSubmatch(hs)
	if m == nil {
		return Header{}, fmt.Errorf(".npy header has no shape: %q", strings.TrimSpace(hs))
	}
	for _, f := range strings.Split(m[1], ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		d, err := strconv.Atoi(f)
		if err != nil || d < 0 {
			return Header{}, fmt.Errorf(".npy header: bad shape (%s)", m[1])
		}
		h.Shape = append(h.Shape, d)
	}
	if h.Len() > 1<<34 || h.Len() < 0 {
		return Header{}, fmt.Errorf(".npy array of shape %v is too large", h.Shape)
	}
	return h, nil
}

// ReadFloat32 reads a 2-D float (float16, float32 or float64) array as
// float32 rows. Errors name path.
func ReadFloat32(path string) (data []float32, rows, cols int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, 0, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	h, err := ReadHeader(br)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	if len(h.Shape) != 2 {
		return nil, 0, 0, fmt.Errorf("%s: shape %v; want a 2-D [items, dim] array", path, h.Shape)
	}
	if h.Descr != "<f2" && h.Descr != "<f4" && h.Descr != "<f8" {
		return nil, 0, 0, fmt.Errorf("%s: dtype %s; want float16, float32 or float64", path, h.Descr)
	}
	rows, cols = h.Shape[0], h.Shape[1]
	n := h.Len()
	size := itemSize(h.Descr)
	raw := make([]byte, n*size)
	if _, err := io.ReadFull(br, raw); err != nil {
		return nil, 0, 0, fmt.Errorf("%s: data truncated: header says %v (%d bytes of %s)", path, h.Shape, n*size, h.Descr)
	}
	if extra, _ := br.Peek(1); len(extra) > 0 {
		return nil, 0, 0, fmt.Errorf("%s: trailing bytes after the %v array", path, h.Shape)
	}
	data = make([]float32, n)
	for i := range data {
		switch size {
		case 2:
			data[i] = Float16(binary.LittleEndian.Uint16(raw[2*i:]))
		case 4:
			data[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		case 8:
			data[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:])))
		}
	}
	for i, v := range data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, 0, 0, fmt.Errorf("%s: row %d has a non-finite value", path, i/max(cols, 1))
		}
	}
	return data, rows, cols, nil
}

// Float16 converts IEEE half-precision bits to float32.
func Float16(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal
		for mant&0x400 == 0 {
			mant <<= 1
			exp--
		}
		exp++
		mant &= 0x3ff
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	case exp == 0x1f:
		return math.Float32frombits(sign | 0xff<<23 | mant<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
}

// WriteHeader writes a version-1 header (padded to 64 bytes) for a C-order
// array.
func WriteHeader(w io.Writer, descr string, shape []int) error {
	if itemSize(descr) == 0 {
		return fmt.Errorf("npy: unsupported dtype %q", descr)
	}
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = strconv.Itoa(d)
	}
	st := strings.Join(dims, ", ")
	if len(shape) == 1 {
		st += ","
	}
	dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, st)
	total := len(magic) + 2 + 2 + len(dict) + 1
	pad := (64 - total%64) % 64
	hdr := dict + strings.Repeat(" ", pad) + "\n"
	var b []byte
	b = append(b, magic...)
	b = append(b, 1, 0)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(hdr)))
	b = append(b, hdr...)
	_, err := w.Write(b)
	return err
}

// WriteFloat32 writes a 2-D float32 array.
func WriteFloat32(path string, data []float32, rows, cols int) error {
	if rows*cols != len(data) {
		return fmt.Errorf("npy: %d values for shape [%d %d]", len(data), rows, cols)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := WriteHeader(bw, "<f4", []int{rows, cols}); err != nil {
		f.Close()
		return err
	}
	var b [4]byte
	for _, v := range data {
		binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
		bw.Write(b[:])
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
