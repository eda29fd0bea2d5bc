package imageprep

import (
	"math/bits"
	"sync"
)

// Decoded JPEG pixels are recycled: a 3000×2000 photo's PDQ input alone is
// 4.5 MB, and a fresh buffer of that size per image cost more than a tenth of
// an ingest's CPU in zeroing and page faults. Buffers of at least
// minPooled bytes go back to a pool by power-of-two size class when their
// image is released; libjpeg writes every byte of a buffer it decodes into,
// so a recycled one needs no clearing.

const minPooled = 256 << 10

var pixPools [40]sync.Pool // by size class: buffers of cap >= 1<<class

// getPix returns a buffer of n bytes (contents undefined) and whether it is
// poolable.
func getPix(n int) ([]byte, bool) {
	if n < minPooled {
		return make([]byte, n), false
	}
	class := bits.Len(uint(n - 1)) // 1<<class >= n
	if class >= len(pixPools) {
		return make([]byte, n), false
	}
	if b, ok := pixPools[class].Get().(*[]byte); ok {
		return (*b)[:n], true
	}
	return make([]byte, n, 1<<class), true
}

// putPix returns a buffer from getPix to its pool.
func putPix(b []byte) {
	c := cap(b)
	if c < minPooled || c&(c-1) != 0 {
		return // not one of ours
	}
	class := bits.Len(uint(c)) - 1
	if class < len(pixPools) {
		b = b[:c]
		pixPools[class].Put(&b)
	}
}
