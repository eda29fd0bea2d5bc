package neardup

import (
	"fmt"
	"image"
	"math"
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
				if _, ok := ix.verify(origQuery, &ix.entries[ei], hits, verifyLink); ok {
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

// TestEnlargePatchMatchesSample: the separable enlargement gives exactly
// plane.sample's values.
func TestEnlargePatchMatchesSample(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	patch := make([]byte, patchBytes)
	for i := range patch {
		patch[i] = byte(r.IntN(256))
	}
	got := enlargePatch(patch)
	src := &plane{w: PatchSide, h: PatchSide, p: make([]float32, patchBytes)}
	for i, v := range patch {
		src.p[i] = float32(v)
	}
	scale := float64(PatchSide) / linkPlaneSide
	for y := range linkPlaneSide {
		for x := range linkPlaneSide {
			if want := src.sample((float64(x)+0.5)*scale, (float64(y)+0.5)*scale); got.p[y*linkPlaneSide+x] != want {
				t.Fatalf("(%d, %d): %v, want %v", x, y, got.p[y*linkPlaneSide+x], want)
			}
		}
	}
}

// TestLinkerContent: two different pictures under the same meme caption
// (the same band, the same lettering) share the band's windows; with the
// content rectangle stored (WindowsIn, AppendWindowsIn) the linker leaves
// the band out and links neither to the other, where the same windows
// stored without it link them; each still links to its own picture.
func TestLinkerContent(t *testing.T) {
	h := NewHasher(Options{PDQMaxSide: -1})
	type member struct{ plain, inner []byte }
	var ms []member
	for _, img := range []image.Image{reposts.Photo(0, 11, 640, 480), reposts.Photo(2, 12, 640, 480)} {
		rp, err := reposts.Apply(img, []reposts.Kind{reposts.Caption}, rand.New(rand.NewPCG(5, 5))) // the same band on both
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range []image.Image{img, rp.Image} {
			sig, content, err := h.WindowsIn(im)
			if err != nil {
				t.Fatal(err)
			}
			b := im.Bounds()
			ms = append(ms, member{AppendWindows(nil, b.Dx(), b.Dy(), sig), AppendWindowsIn(nil, b.Dx(), b.Dy(), sig, content)})
		}
	}
	for _, m := range []member{ms[1], ms[3]} {
		if _, _, _, content, err := ParseWindowsIn(m.inner); err != nil || isWhole(content) {
			t.Fatalf("format %d, content %+v (%v): want the memes' content rectangles stored", m.inner[0], content, err)
		}
	}
	l := NewLinker()
	memes := func(sig func(member) []byte) bool {
		ok, err := l.Linked(sig(ms[1]), sig(ms[3]))
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !memes(func(m member) []byte { return m.plain }) {
		t.Fatal("the two memes are not linked even without content rectangles: the test shows nothing")
	}
	if memes(func(m member) []byte { return m.inner }) {
		t.Error("two memes of different pictures under the same caption are linked with content rectangles")
	}
	for _, p := range [][2]int{{0, 1}, {2, 3}} {
		if ok, err := l.Linked(ms[p[0]].inner, ms[p[1]].inner); err != nil || !ok {
			t.Errorf("picture %d and its meme not linked with content rectangles (%v)", p[0]/2, err)
		}
	}
}

// TestLinkerSharesIdenticalLists: members with byte-identical stored lists
// share one index entry, yet each is a neighbour, Remove drops one member
// only, and a skipped member is left out while its twin is returned.
func TestLinkerSharesIdenticalLists(t *testing.T) {
	h := NewHasher(Options{PDQMaxSide: -1})
	img := reposts.Photo(1, 5, 640, 480)
	sig, content, err := h.WindowsIn(img)
	if err != nil {
		t.Fatal(err)
	}
	stored := AppendWindowsIn(nil, 640, 480, sig, content)
	rp, err := reposts.Apply(img, []reposts.Kind{reposts.Crop90}, rand.New(rand.NewPCG(1, 2)))
	if err != nil {
		t.Fatal(err)
	}
	csig, ccontent, err := h.WindowsIn(rp.Image)
	if err != nil {
		t.Fatal(err)
	}
	crop := AppendWindowsIn(nil, rp.Image.Bounds().Dx(), rp.Image.Bounds().Dy(), csig, ccontent)
	l := NewLinker()
	for _, id := range []uint64{1, 2, 3} {
		if err := l.Add(id, stored); err != nil {
			t.Fatal(err)
		}
	}
	if l.Len() != 3 || l.ix.Len() != 1 {
		t.Fatalf("Len %d with %d index entries, want 3 members in 1 entry", l.Len(), l.ix.Len())
	}
	nb, err := l.Neighbours(crop, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(nb, []uint64{1, 2, 3}) {
		t.Fatalf("the crop's neighbours %v, want the three copies (is the crop linked at all?)", nb)
	}
	var got []uint64
	if err := l.NeighboursSkip(crop, func(id uint64) bool { return id == 2 }, func(id uint64) { got = append(got, id) }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []uint64{1, 3}) {
		t.Errorf("skipping 2: %v, want [1 3]", got)
	}
	l.Remove(1)
	l.Remove(3)
	if nb, _ := l.Neighbours(crop, nil); !slices.Equal(nb, []uint64{2}) || l.Len() != 1 {
		t.Errorf("after removing two copies: neighbours %v, Len %d; want [2] and 1", nb, l.Len())
	}
	l.Remove(2)
	if l.ix.Len() != 0 || l.Len() != 0 {
		t.Errorf("after removing every copy: %d entries, Len %d", l.ix.Len(), l.Len())
	}
}

// TestLinkerScaledWindows: the stored windows of a picture and of its 75 %
// crop, each drawn at the working size, show the content at two scales and
// rarely coincide; with the scaled windows stored too (WindowsIn) most
// crops link with their picture, and still no picture with another's crop.
func TestLinkerScaledWindows(t *testing.T) {
	if testing.Short() {
		t.Skip("hashes 60 generated images")
	}
	h := NewHasher(Options{PDQMaxSide: -1})
	l := NewLinker()
	const n = 30
	var plain, scaled, falseLinks int
	var prev []byte
	for p := range n {
		img := genPhoto(t, p)
		rp, err := reposts.Apply(img, []reposts.Kind{reposts.Crop75}, rand.New(rand.NewPCG(uint64(p), 9)))
		if err != nil {
			t.Fatal(err)
		}
		stored := func(im image.Image) (plain, withScaled []byte) {
			sig, content, err := h.WindowsIn(im)
			if err != nil {
				t.Fatal(err)
			}
			b := im.Bounds()
			return AppendWindows(nil, b.Dx(), b.Dy(), sig), AppendWindowsIn(nil, b.Dx(), b.Dy(), sig, content)
		}
		op, os := stored(img)
		cp, cs := stored(rp.Image)
		if ok, _ := l.Linked(op, cp); ok {
			plain++
		}
		if ok, _ := l.Linked(os, cs); ok {
			scaled++
		}
		if prev != nil {
			if ok, _ := l.Linked(prev, cs); ok {
				falseLinks++
			}
		}
		prev = os
	}
	t.Logf("75 %% crops linked with their picture: %d of %d by plain windows, %d with scaled ones; false links %d", plain, n, scaled, falseLinks)
	if scaled < 2*n/3 || scaled < plain+n/6 {
		t.Errorf("with scaled windows %d of %d crops link (plain windows alone: %d)", scaled, n, plain)
	}
	if falseLinks > 0 {
		t.Errorf("%d crops linked with another picture", falseLinks)
	}
}

// genPhoto is generated picture p of the re-post generator at 640 x 480.
func genPhoto(t *testing.T, p int) image.Image {
	t.Helper()
	return reposts.Photo(p%len(reposts.Families), uint64(p)*31+7, 640, 480)
}

// TestLinkerContentWindows: a screenshot shows a picture small inside an
// app's frame, so its stored windows show the picture at another scale
// than the picture's own; with the windows of its content rectangle drawn
// at the working size stored too (WindowsIn) most screenshots link with
// their picture (20 of 20 against 5 when this was written), and still no
// picture with another's screenshot.
func TestLinkerContentWindows(t *testing.T) {
	if testing.Short() {
		t.Skip("hashes 40 generated images")
	}
	h := NewHasher(Options{PDQMaxSide: -1})
	l := NewLinker()
	const n = 20
	var without, with, falseLinks int
	var prev []byte
	for p := range n {
		img := genPhoto(t, p)
		rp, err := reposts.Apply(img, []reposts.Kind{reposts.Screenshot}, rand.New(rand.NewPCG(uint64(p), 11)))
		if err != nil {
			t.Fatal(err)
		}
		sig, content, err := h.WindowsIn(rp.Image)
		if err != nil {
			t.Fatal(err)
		}
		if isWhole(content) {
			t.Fatalf("picture %d: the screenshot has no content rectangle", p)
		}
		// The same list without the content rectangle's windows: those
		// follow the scaled windows of the whole image.
		luma, w, hh, err := h.lumaOf(rp.Image)
		if err != nil {
			t.Fatal(err)
		}
		sp := h.workPlaneSized(luma, w, hh, image.Rect(0, 0, w, hh), int(math.Round(cropScale*workSide)))
		nScaled := len(h.windows(sp, indexKeypoints, indexMinPair, indexMaxPair, 0, wholeWindows, true, false))
		var kept []RegionHash
		for _, r := range sig {
			if r.Kind == ScaledWindow {
				if nScaled == 0 {
					continue
				}
				nScaled--
			}
			kept = append(kept, r)
		}
		if len(kept) == len(sig) {
			t.Fatalf("picture %d: no content windows stored", p)
		}
		b := rp.Image.Bounds()
		shot := AppendWindowsIn(nil, b.Dx(), b.Dy(), sig, content)
		shotWithout := AppendWindowsIn(nil, b.Dx(), b.Dy(), kept, content)
		osig, ocontent, err := h.WindowsIn(img)
		if err != nil {
			t.Fatal(err)
		}
		orig := AppendWindowsIn(nil, img.Bounds().Dx(), img.Bounds().Dy(), osig, ocontent)
		if ok, _ := l.Linked(orig, shot); ok {
			with++
		}
		if ok, _ := l.Linked(orig, shotWithout); ok {
			without++
		}
		if prev != nil {
			if ok, _ := l.Linked(prev, shot); ok {
				falseLinks++
			}
		}
		prev = orig
	}
	t.Logf("screenshots linked with their picture: %d of %d with content windows, %d without; false links %d", with, n, without, falseLinks)
	if with < 2*n/3 || with < without+n/4 {
		t.Errorf("with content windows %d of %d screenshots link (without: %d)", with, n, without)
	}
	if falseLinks > 0 {
		t.Errorf("%d screenshots linked with another picture", falseLinks)
	}
}
