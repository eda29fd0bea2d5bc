package milvus

import "testing"

// OpenTestIndex opens an index of dimension dim on fresh collections of the
// test server (dropped after the test), for the external tests of this
// directory (package milvus_test), which may import packages that import
// this one.
func OpenTestIndex(t testing.TB, dim int) *Index { return openTest(t, testOptions(t, dim)) }
