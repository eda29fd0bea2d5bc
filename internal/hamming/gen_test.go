package hamming

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// Test data: uniform random codes, codes in clusters of near-duplicates,
// and codes at an exact distance of another.

func randomCode(rng *rand.Rand) Code {
	return Code{rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()}
}

// flip returns c with d distinct random bits flipped (Distance(c, x) == d).
func flip(rng *rand.Rand, c Code, d int) Code {
	for _, b := range rng.Perm(Bits)[:d] {
		c[b>>6] ^= 1 << (b & 63)
	}
	return c
}

// clustered returns n codes: a fraction frac of them in clusters of about
// size members within maxFlip bits of their cluster's centre, the rest
// uniform; shuffled.
func clustered(rng *rand.Rand, n int, frac float64, size, maxFlip int) []Code {
	out := make([]Code, 0, n)
	nc := int(float64(n) * frac)
	for len(out) < nc {
		centre := randomCode(rng)
		for range min(size, nc-len(out)) {
			out = append(out, flip(rng, centre, rng.IntN(maxFlip+1)))
		}
	}
	for len(out) < n {
		out = append(out, randomCode(rng))
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// model is the reference: the entries as a map, searched linearly.
type model map[uint64]Code

func (m model) search(t testing.TB, qs []Code, r int) []Match {
	t.Helper()
	ids := make([]uint64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	codes := make([]Code, len(ids))
	for i, id := range ids {
		codes[i] = m[id]
	}
	got, err := Linear(codes, qs, r, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		got[i].ID = ids[got[i].ID]
	}
	SortMatches(got)
	return got
}

// queriesFor returns query sets (of 1 to 8 codes, like an image's dihedral
// variants) near entries of codes at distances around r, and random ones.
func queriesFor(rng *rand.Rand, codes []Code, r, n int) [][]Code {
	var out [][]Code
	for i := range n {
		nv := 1 + rng.IntN(8)
		qs := make([]Code, nv)
		for j := range qs {
			qs[j] = randomCode(rng)
		}
		if len(codes) > 0 && i%4 != 3 {
			// One variant near an entry, at r-2..r+2 bits (clamped).
			d := min(max(r-2+rng.IntN(5), 0), Bits)
			qs[rng.IntN(nv)] = flip(rng, codes[rng.IntN(len(codes))], d)
		}
		if i%5 == 0 && nv > 1 {
			qs[nv-1] = qs[0] // a repeated variant
		}
		out = append(out, qs)
	}
	return out
}
