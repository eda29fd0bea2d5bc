//go:build !purego

package vecmath

import "golang.org/x/sys/cpu"

// hasAVX512FMA selects the AVX-512 dot product kernel (dots_amd64.s).
var hasAVX512FMA = cpu.X86.HasAVX512F

//go:noescape
func dotsAVX512(q []float32, base []float32, pos []int32, out []float32)
