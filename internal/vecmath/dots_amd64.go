//go:build !purego

package vecmath

import "golang.org/x/sys/cpu"

// hasAVX512FMA selects the AVX-512 dot product kernel (dots_amd64.s).
var hasAVX512FMA = cpu.X86.HasAVX512F

// hasAVX2FMA selects the AVX2 kernel of DotsColumns64.
var hasAVX2FMA = cpu.X86.HasAVX2 && cpu.X86.HasFMA

//go:noescape
func dotsAVX512(q []float32, base []float32, pos []int32, out []float32)

//go:noescape
func dotsColumns64AVX2(q []float32, cols []float32, out *[64]float32)
