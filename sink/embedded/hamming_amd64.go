//go:build !purego

package embedded

import "golang.org/x/sys/cpu"

// hasAVX512 selects the AVX-512 Hamming kernels (hamming_amd64.s): they need
// AVX-512 F and VPOPCNTDQ (x/sys/cpu also checks that the OS saves the
// registers). Tests turn it off to compare with the pure Go kernels.
var hasAVX512 = cpu.X86.HasAVX512F && cpu.X86.HasAVX512VPOPCNTDQ

//go:noescape
func next1AVX512(c []uint64, q uint64, from, t1 int) (int, uint32)

//go:noescape
func next2AVX512(c []uint64, q *[2]uint64, from, t1 int) (int, uint32)

//go:noescape
func next4AVX512(c []uint64, q *[4]uint64, from, t1 int) (int, uint32)
