//go:build !amd64 || purego

package vecmath

// Without the amd64 kernels the pure Go ones run.
var (
	hasAVX512FMA = false
	hasAVX2FMA   = false
)

func dotsAVX512(q []float32, base []float32, pos []int32, out []float32) { panic("no AVX-512 kernels") }

func dotsColumns64AVX2(q []float32, cols []float32, out *[64]float32) { panic("no AVX2 kernels") }
