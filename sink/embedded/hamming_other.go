//go:build !amd64 || purego

package embedded

// Without the amd64 kernels the pure Go ones run.
var hasAVX512 = false

func next1AVX512(c []uint64, q uint64, from, t1 int) (int, uint32)     { panic("no AVX-512 kernels") }
func next2AVX512(c []uint64, q *[2]uint64, from, t1 int) (int, uint32) { panic("no AVX-512 kernels") }
func next4AVX512(c []uint64, q *[4]uint64, from, t1 int) (int, uint32) { panic("no AVX-512 kernels") }
