//go:build !linux

package hamming

// hugeSlice returns a zeroed slice of n elements (huge pages are requested
// on Linux only).
func hugeSlice[T any](n int) []T { return make([]T, n) }
