package milvus

import "testing"

// OpenTestIndex opens an index of dimension dim on fresh collections of the
// test server (dropped after the test), for the external tests of this
// directory (package milvus_test), which may import packages that import
// this one.
func OpenTestIndex(t testing.TB, dim int) *Index { return openTest(t, testOptions(t, dim)) }

// OpenTestIndexWith opens an index as OpenTestIndex, with edit applied to
// its options first; the options returned open more indexes (processes)
// on the same collections.
func OpenTestIndexWith(t testing.TB, dim int, edit func(*Options)) (*Index, Options) {
	opt := testOptions(t, dim)
	edit(&opt)
	return openTest(t, opt), opt
}

// OpenTestIndexOn opens another index on the collections of opt (dropped
// after the test).
func OpenTestIndexOn(t testing.TB, opt Options) *Index { return openTest(t, opt) }
