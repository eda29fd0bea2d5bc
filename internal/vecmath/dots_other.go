//go:build !amd64 || purego

package vecmath

// Without the amd64 kernel the pure Go one runs.
var hasAVX512FMA = false

func dotsAVX512(q []float32, base []float32, pos []int32, out []float32) { panic("no AVX-512 kernels") }
