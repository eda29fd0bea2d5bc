package neardup

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/xmodal/xmodal/eval/reposts"
)

// TestLinkerRelation: the clusters' link relation on stored windows links
// a photo with its crops, caption band, screenshot and rotated crop,
// whichever side is which (symmetric), and not with other photos; a
// linker's Neighbours returns exactly the linked members (complete), and
// a removed member is not returned.
func TestLinkerRelation(t *testing.T) {
	h := NewHasher(Options{PDQMaxSide: -1})
	// Beside the relation, what lookups find on the same pairs: a query
	// from the edit's pixels over the original (Search), and one from the
	// original's pixels over the edit with the link placement.
	fromEdit, fromOriginal := 0, 0
	var origSig []RegionHash
	var origQuery *Query
	var origW, origH int
	stored := func(name string, k []reposts.Kind, seed uint64) []byte {
		img := loadPhoto(t, name)
		w, hh := img.Bounds().Dx(), img.Bounds().Dy()
		if len(k) > 0 {
			rp, err := reposts.Apply(img, k, rand.New(rand.NewPCG(seed, 7)))
			if err != nil {
				t.Fatal(err)
			}
			img = rp.Image
		}
		sig, err := h.Windows(img)
		if err != nil {
			t.Fatal(err)
		}
		q, err := h.Query(img)
		if err != nil {
			t.Fatal(err)
		}
		if len(k) == 0 {
			origSig, origQuery, origW, origH = sig, q, w, hh
		} else {
			ix := NewIndex()
			ix.Add(1, origW, origH, origSig)
			for _, m := range ix.Search(q, SearchOptions{MinQuality: 101}) { // windows only
				if m.Kind == Window {
					fromEdit++
					break
				}
			}
			ix = NewIndex()
			ix.Add(2, img.Bounds().Dx(), img.Bounds().Dy(), sig)
			for ei, hits := range ix.windowHits(origQuery) {
				if _, ok := ix.verify(origQuery, &ix.entries[ei], hits, true); ok {
					fromOriginal++
					break
				}
			}
		}
		return AppendWindows(nil, img.Bounds().Dx(), img.Bounds().Dy(), sig)
	}
	photos := []string{"astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg", "camera.jpg", "coins.jpg", "hubble.jpg", "clock.jpg"}
	edits := [][]reposts.Kind{{reposts.Crop90}, {reposts.Crop75}, {reposts.Caption}, {reposts.Screenshot}, {reposts.Rot90, reposts.Crop90}}
	type member struct {
		name  string
		photo int
		sig   []byte
	}
	var ms []member
	for pi, p := range photos {
		ms = append(ms, member{p, pi, stored(p, nil, 0)})
		for ei, k := range edits {
			ms = append(ms, member{fmt.Sprintf("%s %s", p, reposts.Name(k)), pi, stored(p, k, uint64(ei))})
		}
	}
	l := NewLinker()
	for i, m := range ms {
		if err := l.Add(uint64(i), m.sig); err != nil {
			t.Fatal(err)
		}
	}
	linkedToOriginal := map[int]int{} // photo -> edits linked to it
	for i, a := range ms {
		nb, err := l.Neighbours(a.sig, nil)
		if err != nil {
			t.Fatal(err)
		}
		for j, b := range ms {
			ab, err := l.Linked(a.sig, b.sig)
			if err != nil {
				t.Fatal(err)
			}
			ba, _ := l.Linked(b.sig, a.sig)
			if ab != ba {
				t.Errorf("%s ~ %s is %v one way and %v the other", a.name, b.name, ab, ba)
			}
			if ab != slices.Contains(nb, uint64(j)) {
				t.Errorf("%s ~ %s is %v, but Neighbours of %s lists %v", a.name, b.name, ab, a.name, nb)
			}
			if ab && a.photo != b.photo {
				t.Errorf("%s and %s, different photos, are linked", a.name, b.name)
			}
			if ab && i != j && i%(len(edits)+1) == 0 {
				linkedToOriginal[a.photo]++
			}
		}
	}
	// Stored windows link fewer edits than a lookup finds (docs/clusters.md),
	// but every photo here links with some of its edits.
	total := 0
	for pi, p := range photos {
		total += linkedToOriginal[pi]
		if linkedToOriginal[pi] == 0 {
			t.Errorf("%s linked to none of its edits", p)
		}
	}
	t.Logf("of %d (photo, edit) pairs: %d linked by stored windows; a lookup from the edit's pixels finds %d, one from the original's pixels over the stored edit %d",
		len(photos)*len(edits), total, fromEdit, fromOriginal)
	l.Remove(0)
	if nb, _ := l.Neighbours(ms[1].sig, nil); slices.Contains(nb, 0) {
		t.Errorf("a removed member is still a neighbour: %v", nb)
	}
	if l.Len() != len(ms)-1 {
		t.Errorf("Len %d, want %d", l.Len(), len(ms)-1)
	}
	if _, err := l.Neighbours([]byte{9, 9}, nil); err == nil {
		t.Error("a bad stored window list was accepted")
	}
}
