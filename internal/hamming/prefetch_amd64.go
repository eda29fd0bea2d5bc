package hamming

import "unsafe"

// prefetchIdx asks the processor to bring into its caches, without waiting
// for them, the bytes at base + idx[i]<<shift for every i (PREFETCHT0; a
// prefetch never faults). Lookups read codes and table buckets at random
// places: issuing a batch of reads ahead lets their misses overlap while
// the loop that uses them runs, where plain loads would hold the
// processor's reorder window until they arrive.
//
//go:noescape
func prefetchIdx(base unsafe.Pointer, shift uint, idx []uint32)
