package imageprep

import (
	"math/bits"
	"sync"
)

// Decoded JPEG pixels are recycled: a 3000×2000 photo's PDQ input alone is
// 4.5 MB, and a fresh buffer of that size per image cost more than a tenth of
// an ingest's CPU in zeroing and page faults; a 300×250 photo's full-size
// decode (225 kB) is pooled too (its decode about 7% less CPU). Buffers of minPooled to
// maxPooled bytes go back to a pool by power-of-two size class when their
// image is released; libjpeg writes every byte of a buffer it decodes into,
// so a recycled one needs no clearing. Larger ones (a full-size decode of a
// huge photo) are left to the garbage collector, so that an idle pool never
// holds more than a few such buffers per class (sync.Pool drops what two
// collections find unused).

const (
	minPooled = 32 << 10
	maxPooled = 16 << 20
)

var pixPools [25]sync.Pool // by size class: buffers of cap 1<<class, up to maxPooled

// getPix returns a buffer of n bytes (contents undefined) and whether it is
// poolable.
func getPix(n int) ([]byte, bool) {
	if n < minPooled || n > maxPooled {
		return make([]byte, n), false
	}
	class := bits.Len(uint(n - 1)) // 1<<class >= n
	if b, ok := pixPools[class].Get().(*[]byte); ok {
		return (*b)[:n], true
	}
	return make([]byte, n, 1<<class), true
}

// putPix returns a buffer from getPix to its pool.
func putPix(b []byte) {
	c := cap(b)
	if c < minPooled || c > maxPooled || c&(c-1) != 0 {
		return // not one of ours
	}
	b = b[:c]
	pixPools[bits.Len(uint(c))-1].Put(&b)
}
