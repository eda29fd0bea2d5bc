//go:build !linux

package embedded

// releaseMapped is a no-op where madvise is not used.
func (ix *Index) releaseMapped() {}
