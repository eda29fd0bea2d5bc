// Package pdq computes PDQ perceptual image hashes (Meta ThreatExchange's
// 256-bit DCT-based hash), their quality score, the eight dihedral variants,
// Hamming distances, and the reference hex encoding.
//
// The algorithm follows the published description and reference
// implementation: RGB to float luminance (0.299, 0.587, 0.114), a two-pass
// Jarosz box (tent) filter with window sizes ceil(dim/128), decimation to
// 64x64 at cell centres, a 2D DCT keeping frequencies 1..16 in each
// direction, and one bit per coefficient set when it exceeds the median of the
// 256 coefficients. Arithmetic is done in float32 in the reference's order, so
// on identical pixels the hashes agree with the reference C++ code bit for bit
// in the usual case.
//
// Size: the reference command-line hashers shrink images larger than 512
// pixels before hashing, and the published test vectors come from the Python
// one (PIL's Image.thumbnail). FromImage does the same by default (PIL's
// geometry and antialiased bicubic filter, applied to the luminance plane).
// A Hasher with a negative MaxSide hashes at full resolution instead, as the
// reference library functions and the pdqhash Python wheel do; its hashes
// are then bit-identical to the wheel's on the same RGB pixels. Hashes of
// one image from the two modes differ by a few bits (up to about 12 on the
// reference photos), well inside PDQ's match threshold of 31.
//
// Decoding is Go's (image/jpeg, image/png, image/gif, x/image/webp): its
// JPEG decoder rounds differently from libjpeg, which can move a few bits
// (up to 8 bits on the reference images of quality 100).
package pdq

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math/bits"
)

// Hash is a 256-bit PDQ hash. Byte 0 holds the most significant bits, so the
// hex encoding of the bytes in order is the reference text form: the
// reference's sixteen 16-bit words printed from word 15 down to word 0.
// Bit k of the reference (k = row*16 + col of the 16x16 DCT coefficient
// block) is bit k%8 of byte 31-k/8.
type Hash [32]byte

// HexLen is the length of a hash's text form.
const HexLen = 64

// String returns the 64-character lower-case hex form used by the reference.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText implements encoding.TextMarshaler (the hex form).
func (h Hash) MarshalText() ([]byte, error) {
	out := make([]byte, HexLen)
	hex.Encode(out, h[:])
	return out, nil
}

// UnmarshalText implements encoding.TextUnmarshaler (the hex form).
func (h *Hash) UnmarshalText(text []byte) error {
	v, err := ParseHex(string(text))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// ErrMalformedHash is wrapped by ParseHex's errors (match it with errors.Is).
var ErrMalformedHash = errors.New("pdq: malformed hash")

// ParseHex parses the 64-character hex form (either case). An input of the
// wrong length or with a non-hex character is an error naming the value that
// wraps ErrMalformedHash.
func ParseHex(s string) (Hash, error) {
	var h Hash
	if len(s) != HexLen {
		return h, fmt.Errorf("%w %s: length %d, want %d hex characters", ErrMalformedHash, quote(s), len(s), HexLen)
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return Hash{}, fmt.Errorf("%w %s: %v", ErrMalformedHash, quote(s), err)
	}
	return h, nil
}

// quote names a value in an error message, keeping huge inputs readable.
func quote(s string) string {
	const max = 160
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}

// Distance returns the Hamming distance between two hashes (0..256).
func Distance(a, b Hash) int {
	n := 0
	for i := 0; i < len(a); i += 8 {
		n += bits.OnesCount64(binary.LittleEndian.Uint64(a[i:]) ^ binary.LittleEndian.Uint64(b[i:]))
	}
	return n
}

// Bit reports reference bit k (0..255): whether DCT coefficient
// (row k/16, column k%16) exceeded the median.
func (h Hash) Bit(k int) bool {
	return h[31-k>>3]>>(k&7)&1 == 1
}

// setBit sets reference bit k.
func (h *Hash) setBit(k int) {
	h[31-k>>3] |= 1 << (k & 7)
}

// OnesCount returns the number of set bits.
func (h Hash) OnesCount() int {
	return Distance(h, Hash{})
}
