package testutil

import (
	"fmt"
	"maps"
	"slices"
)

// Components is the reference partition of the clustering tests: the keys
// of sigs labelled by the connected components of the graph that joins two
// keys when linked says their signatures are linked (every pair is asked,
// by a search of its own rather than the union-find under test).
func Components(sigs map[string][]byte, linked func(a, b []byte) bool) map[string]int {
	rest := slices.Sorted(maps.Keys(sigs))
	label := make(map[string]int, len(rest))
	for c := 0; len(rest) > 0; c++ {
		stack := []string{rest[0]}
		label[rest[0]], rest = c, rest[1:]
		for len(stack) > 0 {
			p := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			kept := rest[:0]
			for _, q := range rest {
				if linked(sigs[p], sigs[q]) {
					label[q] = c
					stack = append(stack, q)
				} else {
					kept = append(kept, q)
				}
			}
			rest = kept
		}
	}
	return label
}

// SamePartition reports how two labellings of the same keys differ in how
// they group them (nil when they group them alike, whatever the labels).
func SamePartition[A, B comparable](a map[string]A, b map[string]B) error {
	if len(a) != len(b) {
		return fmt.Errorf("%d posts against %d", len(a), len(b))
	}
	fwd, back := map[A]B{}, map[B]A{}
	for p, x := range a {
		y, ok := b[p]
		if !ok {
			return fmt.Errorf("post %q missing", p)
		}
		if v, ok := fwd[x]; ok && v != y {
			return fmt.Errorf("post %q: grouped differently", p)
		}
		if v, ok := back[y]; ok && v != x {
			return fmt.Errorf("post %q: grouped differently", p)
		}
		fwd[x], back[y] = y, x
	}
	return nil
}
