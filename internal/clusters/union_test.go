package clusters

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestUnionLinker: members link when either relation links them (PDQ
// hashes within the threshold, or equal B parts standing in for the
// window relation); Neighbours lists each linked member once, exactly
// those Linked reports; a member without a B part is found through A only;
// Remove drops it from both; bad signatures are refused.
func TestUnionLinker(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	pa, err := NewPDQLinker(testThreshold)
	if err != nil {
		t.Fatal(err)
	}
	u := Union{A: pa, B: NewExactLinker()}
	randHash := func() []byte {
		h := make([]byte, 32)
		for i := range h {
			h[i] = byte(rng.IntN(256))
		}
		return h
	}
	h1, h2, h3 := randHash(), randHash(), randHash()
	sigs := []struct {
		name string
		sig  []byte
	}{
		{"h1", UnionSignature(h1, []byte("crop-group-x"))},
		{"h1 noisy, no B", UnionSignature(noisy(rng, h1), nil)},
		{"h2, B as the first", UnionSignature(h2, []byte("crop-group-x"))}, // a crop of the first
		{"h3", UnionSignature(h3, []byte("crop-group-y"))},
		{"h3 noisy, B as h2's", UnionSignature(noisy(rng, h3), []byte("crop-group-x"))},
	}
	want := [][2]int{{0, 1}, {0, 2}, {0, 4}, {2, 4}, {3, 4}}
	for i, s := range sigs {
		if err := u.Add(uint64(i), s.sig); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	for i, a := range sigs {
		nb, err := u.Neighbours(a.sig, nil)
		if err != nil {
			t.Fatal(err)
		}
		if c := slices.Compact(slices.Clone(nb)); len(c) != len(nb) {
			t.Errorf("%s: neighbours %v repeat a member", a.name, nb)
		}
		for j, b := range sigs {
			ok, err := u.Linked(a.sig, b.sig)
			if err != nil {
				t.Fatal(err)
			}
			exp := i == j || slices.Contains(want, [2]int{min(i, j), max(i, j)})
			if ok != exp {
				t.Errorf("%s ~ %s: %v, want %v", a.name, b.name, ok, exp)
			}
			if slices.Contains(nb, uint64(j)) != ok {
				t.Errorf("%s: neighbours %v disagree with Linked(%s) = %v", a.name, nb, b.name, ok)
			}
		}
	}
	u.Remove(2)
	if nb, _ := u.Neighbours(sigs[0].sig, nil); slices.Contains(nb, 2) {
		t.Errorf("removed member still a neighbour: %v", nb)
	}
	if u.Len() != len(sigs)-1 {
		t.Errorf("Len %d, want %d", u.Len(), len(sigs)-1)
	}
	for name, bad := range map[string][]byte{"plain PDQ": h1, "empty": nil, "tag only": {unionTag}, "overlong A": {unionTag, 40, 1, 2}, "empty A": {unionTag, 0, 1}} {
		if err := u.Add(9, bad); !errors.Is(err, ErrBadSignature) {
			t.Errorf("Add %s: %v, want ErrBadSignature", name, err)
		}
		if _, err := u.Neighbours(bad, nil); !errors.Is(err, ErrBadSignature) {
			t.Errorf("Neighbours %s: %v, want ErrBadSignature", name, err)
		}
	}
}

func FuzzSplitUnion(f *testing.F) {
	f.Add(UnionSignature(make([]byte, 32), []byte("windows")))
	f.Add([]byte{unionTag, 0x80})
	f.Fuzz(func(t *testing.T, sig []byte) {
		a, b, err := SplitUnion(sig)
		if err != nil {
			return
		}
		if again := UnionSignature(a, b); string(again) != string(sig) && len(a) > 0 {
			// A non-minimal uvarint frames the same parts in other bytes.
			if a2, b2, err := SplitUnion(again); err != nil || string(a2) != string(a) || string(b2) != string(b) {
				t.Fatalf("re-framed %x does not split back", again)
			}
		}
	})
}
