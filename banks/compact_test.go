package banks

import (
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/internal/hamming"
	"github.com/xmodal/xmodal/internal/testutil"
)

// A PDQ index loaded by many ops (segments of several sizes) is rebuilt
// in one segment once the ops pause, and answers the same matches before,
// during and after.
func TestPDQCompaction(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 17))
	s := NewState()
	mustApply(t, s, createOp("h", nil))
	var hashes []pdq.Hash
	for range 13 {
		var es []Entry
		for range 3000 {
			h := randomHash(rng)
			hashes = append(hashes, h)
			es = append(es, Entry{Type: SignalPDQ, Value: h.String()})
		}
		mustApply(t, s, addOp("h", es...))
	}
	var qs []Query
	for i := range 40 {
		q := Query{PDQ: []pdq.Hash{randomHash(rng), flipRandom(rng, hashes[rng.IntN(len(hashes))], rng.IntN(40))}}
		if i%2 == 0 {
			q.PDQ[0], q.PDQ[1] = q.PDQ[1], q.PDQ[0]
		}
		qs = append(qs, q)
	}
	match := func() [][]Match {
		var out [][]Match
		for _, q := range qs {
			ms, err := s.Match(context.Background(), q)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, ms)
		}
		return out
	}
	ix := s.banks["h"].pdq
	if st := ix.Stats(); !fragmented(st) {
		t.Fatalf("39,000 entries in 13 ops: segments %+v, tail %d; the test needs a fragmented index", st.Segments, st.Tail)
	}
	before := match()
	matched := 0
	for _, ms := range before {
		if len(ms) > 0 {
			matched++
		}
	}
	if matched < 10 {
		t.Fatalf("%d of %d queries matched: the test shows too little", matched, len(qs))
	}
	testutil.CheckFor(t, 30*time.Second, 20*time.Millisecond, func() error {
		if st := ix.Stats(); len(st.Segments) != 1 || st.Tail != 0 || st.Segments[0].Entries != len(hashes) {
			return errors.New("not compacted yet")
		}
		return nil
	})
	if after := match(); !reflect.DeepEqual(after, before) {
		t.Fatal("the compacted index answers differently")
	}
}

func TestFragmented(t *testing.T) {
	seg := func(n ...int) hamming.Stats {
		var st hamming.Stats
		for _, x := range n {
			st.Segments = append(st.Segments, hamming.SegmentStats{Entries: x})
		}
		return st
	}
	for _, tc := range []struct {
		st   hamming.Stats
		want bool
	}{
		{seg(1_000_000), false},
		{seg(640_000, 320_000, 40_000), true},
		{seg(1_000_000, 60_000), false},    // under a sixteenth outside the largest
		{seg(1_000_000, 70_000), true},     // over
		{seg(40_000, 4_000), false},        // under a tail's worth outside
		{hamming.Stats{Tail: 4000}, false}, // under a tail's worth, all in the tail
		{hamming.Stats{Tail: 4096, Segments: seg(8000).Segments}, true},
	} {
		if got := fragmented(tc.st); got != tc.want {
			t.Errorf("fragmented(%+v) = %v, want %v", tc.st, got, tc.want)
		}
	}
}

func randomHash(rng *rand.Rand) pdq.Hash {
	var h pdq.Hash
	for i := 0; i < len(h); i += 8 {
		x := rng.Uint64()
		for j := range 8 {
			h[i+j] = byte(x >> (8 * j))
		}
	}
	return h
}

// flipRandom flips d distinct random bits of h.
func flipRandom(rng *rand.Rand, h pdq.Hash, d int) pdq.Hash {
	for _, b := range rng.Perm(256)[:d] {
		h[b/8] ^= 1 << (b % 8)
	}
	return h
}
