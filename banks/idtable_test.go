package banks

import (
	"math/rand/v2"
	"testing"
)

// TestIDTableAgainstMap drives an idTable and a map with the same random
// adds, replacements and removals (slots reused as the bank reuses them)
// and checks that they agree after every step. Keys are small integers
// whose tags are drawn from a few values, so probe runs are long, tags
// collide and removals shift cells across the table's wrap.
func TestIDTableAgainstMap(t *testing.T) {
	for _, tags := range []uint32{1, 7, 1<<32 - 1} {
		rng := rand.New(rand.NewPCG(uint64(tags), 5))
		var (
			tab  idTable
			recs []rec
			keys []int // slot -> key (-1: free)
			free []uint32
			want = map[int]uint32{}
		)
		// The keys' tags: a multiplicative hash, reduced to tags values.
		tagOf := func(key int) uint32 { return uint32(uint64(uint32(key*2654435761)) % uint64(tags)) }
		find := func(key int) (uint32, bool) {
			return tab.find(recs, tagOf(key), func(slot uint32) bool { return keys[slot] == key })
		}
		for step := range 20000 {
			key := rng.IntN(600)
			switch op := rng.IntN(3); {
			case op < 2: // add or replace
				if _, ok := want[key]; ok {
					break
				}
				var slot uint32
				if n := len(free); n > 0 {
					slot, free = free[n-1], free[:n-1]
				} else {
					slot = uint32(len(recs))
					recs, keys = append(recs, rec{}), append(keys, -1)
				}
				recs[slot] = rec{tag: tagOf(key)}
				keys[slot] = key
				tab.insert(recs, slot)
				want[key] = slot
			default: // remove
				slot, ok := want[key]
				if !ok {
					break
				}
				tab.remove(recs, slot)
				recs[slot], keys[slot] = rec{}, -1
				free = append(free, slot)
				delete(want, key)
			}
			if tab.len() != len(want) {
				t.Fatalf("tags %d step %d: table holds %d, map %d", tags, step, tab.len(), len(want))
			}
			if step%97 == 0 || tags == 1 && step%11 == 0 {
				for k := range 600 {
					got, ok := find(k)
					w, wok := want[k]
					if ok != wok || got != w {
						t.Fatalf("tags %d step %d: key %d: table (%d, %v), map (%d, %v)", tags, step, k, got, ok, w, wok)
					}
				}
			}
		}
		if len(tab.cells)*3/4 < tab.len() {
			t.Fatalf("table of %d cells holds %d", len(tab.cells), tab.len())
		}
	}
}
