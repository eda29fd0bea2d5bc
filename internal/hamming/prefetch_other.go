//go:build !amd64

package hamming

import "unsafe"

// prefetchIdx does nothing on this architecture (see prefetch_amd64.go).
func prefetchIdx(base unsafe.Pointer, shift uint, idx []uint32) {}
