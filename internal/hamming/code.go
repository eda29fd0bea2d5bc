// Package hamming is exact Hamming-distance range search over 256-bit codes
// (PDQ hashes): the entries within r bits of any of a few query codes, the
// same set a linear scan returns, in sub-linear time by multi-index hashing
// (Norouzi, Punjani and Fleet, "Fast Exact Search in Hamming Space with
// Multi-Index Hashing", TPAMI 2014).
//
// Multi-index hashing splits the 256 bits into m disjoint chunks. If two
// codes are within r bits, then, writing r = m·q + a (0 <= a < m), at least
// one of the first a+1 chunks differs by at most q bits or at least one of
// the other chunks differs by at most q-1 bits: otherwise the chunks would
// differ by at least (a+1)(q+1) + (m-a-1)q = r+1 bits in total. A search
// therefore enumerates, per chunk, every chunk value within that chunk's
// radius of the query's, looks each up in a table of the entries by their
// value of that chunk, and checks every entry found at its full distance.
// When the enumeration would cost more than reading every code (large r,
// small index) the search scans linearly instead; both give the same set.
//
// The tables are compact sorted arrays (compressed sparse rows), not maps:
// per chunk a directory of bucket offsets over the chunk's high bits, the
// remaining low bits of each entry's chunk value, and its position. New
// entries go to an unindexed tail that searches scan linearly; full tails
// become indexed segments, merged as they grow (sizes at least doubling, so
// there are O(log n) segments and each entry is rebuilt O(log n) times).
// Removed entries are skipped until a compaction rebuilds without them.
//
// Concurrency: any number of Search calls may run concurrently with each
// other and with one writer at a time (Add, AddBatch, Remove, Maintain,
// Build; writers serialise among themselves). A search sees every write
// call entirely or not at all. Rebuilds (segment merges, compaction) are
// computed without holding the searchers' lock; only their publication takes
// it, briefly.
package hamming

import (
	"encoding/binary"
	"fmt"
	"math/bits"
)

// Bits is the length of a code.
const Bits = 256

// Code is a 256-bit code as four 64-bit words. FromBytes reads the 32 bytes
// of a PDQ hash (its hex form's byte order) big-endian into the words; the
// distance does not depend on the word order, only on using one.
type Code [4]uint64

// FromBytes returns the code of 32 bytes.
func FromBytes(b []byte) (Code, error) {
	var c Code
	if len(b) != Bits/8 {
		return c, fmt.Errorf("hamming: a code has %d bytes, got %d", Bits/8, len(b))
	}
	for i := range c {
		c[i] = binary.BigEndian.Uint64(b[8*i:])
	}
	return c, nil
}

// Bytes returns the 32 bytes of c (the inverse of FromBytes).
func (c Code) Bytes() [Bits / 8]byte {
	var b [Bits / 8]byte
	for i, w := range c {
		binary.BigEndian.PutUint64(b[8*i:], w)
	}
	return b
}

// Distance is the Hamming distance between a and b (0..256).
func Distance(a, b Code) int {
	return bits.OnesCount64(a[0]^b[0]) + bits.OnesCount64(a[1]^b[1]) +
		bits.OnesCount64(a[2]^b[2]) + bits.OnesCount64(a[3]^b[3])
}

// Match is an entry within the search radius: its id, its smallest distance
// to the query codes, and the index in the query slice of the first query
// code at that distance.
type Match struct {
	ID       uint64
	Distance int
	Query    int
}
