//go:build !cgo

package pdq

// downsampleRGB is the C downsampler's stand-in without cgo: the Go path
// runs.
func (d *downsampler) downsampleRGB(PackedRGB, int, int) bool { return false }
