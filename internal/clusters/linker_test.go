package clusters

import (
	"fmt"
	"math/bits"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/xmodal/xmodal/internal/testutil"
)

// anyWithin is the reference link relation of PDQ signatures, written
// apart from the linker: some 32-byte hash of one within testThreshold bits
// of some hash of the other.
func anyWithin(a, b []byte) bool {
	for i := 0; i+32 <= len(a); i += 32 {
		for j := 0; j+32 <= len(b); j += 32 {
			d := 0
			for k := range 32 {
				d += bits.OnesCount8(a[i+k] ^ b[j+k])
			}
			if d <= testThreshold {
				return true
			}
		}
	}
	return false
}

// noisy flips up to 5 random bits of s.
func noisy(rng *rand.Rand, s []byte) []byte {
	bs := make([]int, rng.IntN(6))
	for i := range bs {
		bs[i] = rng.IntN(256)
	}
	return flip(s, bs...)
}

// TestCanonicalSignatures: signatures that carry a canonical dihedral hash
// (64 bytes) link mirrored copies, whose plain hashes are far apart,
// through their canonical hashes; 32-byte signatures (records without one)
// still link by any hash; clusters stay the connected components of that
// relation whatever the order of joins and leaves.
func TestCanonicalSignatures(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(strconv.Itoa(int(seed)), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			sigs := map[string][]byte{}
			for g := range 10 {
				plain, canon := sig(rng), sig(rng)
				for i := range 4 { // copies in the original's orientation
					sigs[fmt.Sprintf("g%d-same%d", g, i)] = PDQSignature(noisy(rng, plain), noisy(rng, canon))
				}
				for i := range 3 { // mirrored or rotated copies: another plain hash
					sigs[fmt.Sprintf("g%d-flip%d", g, i)] = PDQSignature(sig(rng), noisy(rng, canon))
				}
				if g%2 == 0 { // a copy indexed before canonical hashes: plain only
					sigs[fmt.Sprintf("g%d-old", g)] = noisy(rng, plain)
				}
				if g%3 == 0 { // an old record of a mirrored copy: its plain hash is the group's canonical
					sigs[fmt.Sprintf("g%d-oldflip", g)] = noisy(rng, canon)
				}
			}
			for i := range 20 {
				sigs["s"+strconv.Itoa(i)] = PDQSignature(sig(rng), sig(rng))
			}
			order := slices.Sorted(func(yield func(string) bool) {
				for p := range sigs {
					if !yield(p) {
						return
					}
				}
			})
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			db, s := openTest(t, filepath.Join(t.TempDir(), "c.db"))
			joinInBatches(t, db, s, rng, order, sigs, 7)
			want := testutil.Components(sigs, anyWithin)
			if err := testutil.SamePartition(s.Partition(), want); err != nil {
				t.Fatal(err)
			}
			// Every mirrored copy is in its group's cluster.
			part := s.Partition()
			for g := range 10 {
				for i := range 3 {
					if part[fmt.Sprintf("g%d-flip%d", g, i)] != part[fmt.Sprintf("g%d-same0", g)] {
						t.Fatalf("group %d: mirrored copy %d is not clustered with the original", g, i)
					}
				}
			}
			for _, p := range []string{"g0-same0", "g3-flip1", "g6-oldflip", "s3"} {
				leave(t, db, s, p)
				delete(sigs, p)
			}
			if err := testutil.SamePartition(s.Partition(), testutil.Components(sigs, anyWithin)); err != nil {
				t.Fatal(err)
			}
			check(t, db, s)
		})
	}
}

// TestPDQLinkerTwoHashes: a member indexed under two hashes counts once,
// is found once, and is gone from both when removed or replaced.
func TestPDQLinkerTwoHashes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	l, err := NewPDQLinker(testThreshold)
	if err != nil {
		t.Fatal(err)
	}
	a, c := sig(rng), sig(rng)
	if err := l.Add(1, PDQSignature(a, c)); err != nil {
		t.Fatal(err)
	}
	if err := l.Add(2, sig(rng)); err != nil {
		t.Fatal(err)
	}
	if l.Len() != 2 {
		t.Fatalf("Len %d, want 2", l.Len())
	}
	// A query near both of member 1's hashes finds it once.
	got, err := l.Neighbours(PDQSignature(flip(a, 3), flip(c, 9)), nil)
	if err != nil || !slices.Equal(got, []uint64{1}) {
		t.Fatalf("Neighbours = %v, %v; want [1]", got, err)
	}
	// Re-adding member 1 with other hashes replaces both entries.
	b := sig(rng)
	if err := l.Add(1, b); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.Neighbours(c, nil); len(got) != 0 {
		t.Fatalf("the replaced canonical hash still finds %v", got)
	}
	if l.Len() != 2 {
		t.Fatalf("Len %d after a replace, want 2", l.Len())
	}
	l.Remove(1)
	l.Remove(1)
	if got, _ := l.Neighbours(b, nil); len(got) != 0 || l.Len() != 1 {
		t.Fatalf("after Remove: Neighbours %v, Len %d", got, l.Len())
	}
	for _, n := range []int{0, 40, (maxPDQCodes + 1) * 32} {
		if _, err := l.Neighbours(make([]byte, n), nil); err == nil {
			t.Fatalf("a %d-byte signature was accepted", n)
		}
	}
	for _, tc := range []struct {
		canon []byte
		want  int
	}{
		{nil, 32}, {a, 32}, {c, 64}, {append(append([]byte(nil), c...), a...), 64},
		{append(append([]byte(nil), c...), c...), 64}, {append(append([]byte(nil), c...), b...), 96},
	} {
		if got := PDQSignature(a, tc.canon); len(got) != tc.want || string(got[:32]) != string(a) {
			t.Fatalf("PDQSignature with %d canonical bytes: %d bytes, want %d starting with the PDQ hash", len(tc.canon), len(got), tc.want)
		}
	}
	// Three hashes: found by the third.
	d := sig(rng)
	if err := l.Add(5, PDQSignature(sig(rng), append(append([]byte(nil), sig(rng)...), d...))); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.Neighbours(flip(d, 1), nil); !slices.Equal(got, []uint64{5}) {
		t.Fatalf("the second canonical hash finds %v, want [5]", got)
	}
	// Content-region hashes (a meme's picture): a member is found by any of
	// them, and finds by them; a signature keeps at most nine hashes.
	e, f := sig(rng), sig(rng)
	meme := PDQSignature(sig(rng), sig(rng), append(append([]byte(nil), e...), f...))
	if len(meme) != 4*32 {
		t.Fatalf("a signature with two region hashes has %d bytes, want 128", len(meme))
	}
	if err := l.Add(6, meme); err != nil {
		t.Fatal(err)
	}
	if got, _ := l.Neighbours(flip(f, 2), nil); !slices.Equal(got, []uint64{6}) {
		t.Fatalf("the second region hash finds %v, want [6]", got)
	}
	if ok, _ := l.Linked(PDQSignature(sig(rng), nil, flip(e, 3)), meme); !ok {
		t.Fatal("two signatures sharing a region hash are not linked")
	}
	var many []byte
	for range 12 {
		many = append(many, sig(rng)...)
	}
	if got := PDQSignature(a, nil, many); len(got) != maxPDQCodes*32 {
		t.Fatalf("PDQSignature of 13 hashes keeps %d bytes, want %d", len(got), maxPDQCodes*32)
	}
	l.Remove(6)
	if got, _ := l.Neighbours(flip(f, 2), nil); len(got) != 0 {
		t.Fatalf("after Remove, a region hash finds %v", got)
	}
}
