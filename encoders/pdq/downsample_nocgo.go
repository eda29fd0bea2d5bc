//go:build !cgo

package pdq

// downsampleRGB is the C downsampler's stand-in without cgo: the Go path
// runs.
func (d *downsampler) downsampleRGB(PackedRGB, int, int) bool { return false }

func (s *gridScratch) rowsRGB(PackedRGB, int, int, []float64) bool { return false }

func dct64To16(a *[outDim][outDim]float32, b *[dctSize][dctSize]float32) { dct64To16Go(a, b) }
