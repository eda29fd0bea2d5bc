package hamming

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugeSlice returns a zeroed slice of n elements whose memory, when large,
// the kernel is asked to back with transparent huge pages (madvise
// MADV_HUGEPAGE on its 2 MB-aligned interior, then MADV_COLLAPSE for the
// pages that the runtime already touched as small pages when it zeroed
// reused memory). Lookups read the tables and codes at random places: with
// 4 KB pages nearly every read also misses the TLB, and huge pages make
// them about twice as fast. The advice is best effort (it does nothing with
// THP disabled, and MADV_COLLAPSE needs Linux 6.1).
func hugeSlice[T any](n int) []T {
	s := make([]T, n)
	if n == 0 {
		return s
	}
	size := n * int(unsafe.Sizeof(s[0]))
	const huge = 2 << 20
	if size < 2*huge {
		return s
	}
	p := uintptr(unsafe.Pointer(&s[0]))
	start := (p + huge - 1) &^ (huge - 1)
	end := (p + uintptr(size)) &^ (huge - 1)
	if end > start {
		b := unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), size)
		_ = unix.Madvise(b[start-p:end-p], unix.MADV_HUGEPAGE)
		// The runtime may have zeroed the memory (reused, and so already
		// backed by small pages) before the advice: collapse it into huge
		// pages now (Linux 6.1 and later; best effort too).
		_ = unix.Madvise(b[start-p:end-p], unix.MADV_COLLAPSE)
	}
	return s
}
