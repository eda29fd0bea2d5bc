package neardup

import (
	"errors"
	"image"
	"image/color"
	"image/draw"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
	"github.com/xmodal/xmodal/internal/testutil"
)

const photoDir = "../../testdata/neardup/photos"

func loadPhoto(t testing.TB, name string) image.Image {
	t.Helper()
	return testutil.DecodeImage(t, filepath.Join(photoDir, name))
}

// photoIndex indexes every committed photo; ids are positions in names.
func photoIndex(t testing.TB, h *Hasher) (*Index, []string) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(photoDir, "*.jpg"))
	if err != nil || len(paths) < 10 {
		t.Fatalf("committed photos missing in %s: %v", photoDir, err)
	}
	ix := NewIndexWith(NewChunkSearcher(), NewChunkSearcher())
	var names []string
	for i, p := range paths {
		name := filepath.Base(p)
		img := loadPhoto(t, name)
		sig, err := h.Signatures(img)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ix.Add(int64(i), img.Bounds().Dx(), img.Bounds().Dy(), sig)
		names = append(names, name)
	}
	return ix, names
}

// The whole-image hash of a signature is plain PDQ, bit for bit, in both
// of PDQ's size modes.
func TestWholeHashIsPDQ(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join(photoDir, "*.jpg"))
	more, _ := filepath.Glob("../../testdata/pdq/images/bridge-mods/*.jpg")
	paths = append(paths, more...)
	for _, maxSide := range []int{0, -1} {
		h := NewHasher(Options{PDQMaxSide: maxSide})
		ph := pdq.Hasher{MaxSide: maxSide}
		for _, p := range paths {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			img, _, err := pdq.Decode(data)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := h.Signatures(img)
			if err != nil {
				t.Fatal(err)
			}
			want, wq := ph.Hash(img)
			if sig[0].Kind != Whole || sig[0].Hash != want || sig[0].Quality != wq {
				t.Errorf("maxSide %d %s: whole %v %s q%d, pdq %s q%d", maxSide, filepath.Base(p), sig[0].Kind, sig[0].Hash, sig[0].Quality, want, wq)
			}
			if sig[1].Kind != Area || sig[2].Kind != Cleaned {
				t.Errorf("%s: second and third hashes %s, %s, want the area and cleaned hashes", filepath.Base(p), sig[1].Kind, sig[2].Kind)
			}
			wins := len(sig) - 3
			if wins > 0 {
				wins-- // the patch
				if sig[len(sig)-1].Kind != Patch {
					t.Errorf("%s: no patch after the windows", filepath.Base(p))
				}
			}
			if wins > MaxWindows || EncodedSize(sig) != 3*wholeBytes+wins*windowBytes+min(wins, 1)*patchBytes {
				t.Errorf("%s: %d hashes, %d bytes", filepath.Base(p), len(sig), EncodedSize(sig))
			}
		}
	}
}

// gridded is a picture that says it is a reduced decode of a larger one.
type gridded struct {
	image.Image
	g pdq.Grid
}

func (m gridded) PDQGrid() (pdq.Grid, bool) { return m.g, true }

// A reduced decode (pdq.Grid) gets the whole-image hashes pdq gives it,
// the full image's geometry, in signatures and in queries: the same hashes
// a record of it carries.
func TestWholeHashOfGriddedImage(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join(photoDir, "*.jpg"))
	h := NewHasher(Options{PDQMaxSide: -1})
	ph := pdq.Hasher{MaxSide: -1}
	differ := 0
	for _, p := range paths[:min(len(paths), 8)] {
		img := loadPhoto(t, filepath.Base(p))
		b := img.Bounds()
		gi := gridded{img, pdq.Grid{Scale: 2, FullW: 2*b.Dx() - 1, FullH: 2 * b.Dy()}}
		want, wq := ph.Dihedral(gi)
		sig, err := h.Signatures(gi)
		if err != nil {
			t.Fatal(err)
		}
		if sig[0].Hash != want[pdq.Original] || sig[0].Quality != wq {
			t.Errorf("%s: signature's whole hash %s, pdq's %s", filepath.Base(p), sig[0].Hash, want[pdq.Original])
		}
		q, err := h.QueryRects(gi)
		if err != nil {
			t.Fatal(err)
		}
		for d := range want {
			if qh := q.Hashes[d]; qh.Rect != 0 || qh.Hash != want[d] {
				t.Errorf("%s: query's %v hash %s, pdq's %s", filepath.Base(p), pdq.Dihedral(d), qh.Hash, want[d])
			}
		}
		if plain, _ := ph.Hash(img); plain != want[pdq.Original] {
			differ++
		}
	}
	if differ == 0 {
		t.Fatal("no photo's hash depends on its grid: the test shows nothing")
	}
}

// Each edit of a few committed photos is found (top match), with the
// transform and region it reports matching how the re-post was made.
func TestEditsFound(t *testing.T) {
	h := NewHasher(Options{PDQMaxSide: -1})
	ix, names := photoIndex(t, h)
	id := map[string]int64{}
	for i, n := range names {
		id[n] = int64(i)
	}
	kinds := append([][]reposts.Kind{}, [][]reposts.Kind{{reposts.JPEG30}, {reposts.Down50}, {reposts.Down25}, {reposts.Crop90}, {reposts.Crop75},
		{reposts.Bright}, {reposts.Contrast}, {reposts.Grey}, {reposts.FlipH}, {reposts.Rot90}, {reposts.Caption}, {reposts.Screenshot},
		{reposts.Watermark}, {reposts.FlipH, reposts.Crop75}, {reposts.Crop90, reposts.Caption}, {reposts.Screenshot, reposts.JPEG30}}...)
	for _, name := range []string{"astronaut.jpg", "coffee.jpg", "chelsea.jpg"} {
		img := loadPhoto(t, name)
		ow, oh := float64(img.Bounds().Dx()), float64(img.Bounds().Dy())
		for ki, k := range kinds {
			t.Run(name+"/"+reposts.Name(k), func(t *testing.T) {
				rp, err := reposts.Apply(img, k, rand.New(rand.NewPCG(uint64(ki), 11)))
				if err != nil {
					t.Fatal(err)
				}
				q, err := h.Query(rp.Image)
				if err != nil {
					t.Fatal(err)
				}
				ms := ix.Search(q, SearchOptions{})
				if len(ms) == 0 || ms[0].ID != id[name] {
					t.Fatalf("top match %+v, want %s (id %d)", ms, name, id[name])
				}
				m := ms[0]
				for _, o := range ms[1:] {
					t.Errorf("also matched %s: %+v", names[o.ID], o)
				}
				if m.Transform != rp.Dihedral {
					t.Errorf("transform %v, want %v (evidence %v)", m.Transform, rp.Dihedral, m.Kind)
				}
				// The part of the original shown: the crop for a window
				// match, the whole for a whole-image match.
				sh := rp.Shown
				want := Region{X0: float32(float64(sh.Min.X) / ow), Y0: float32(float64(sh.Min.Y) / oh), X1: float32(float64(sh.Max.X) / ow), Y1: float32(float64(sh.Max.Y) / oh)}
				tol := 0.05
				if m.Kind == Whole {
					want, tol = Region{X1: 1, Y1: 1}, 0
					// A whole match of a cropped copy would be a wrong
					// region.
					if sh != img.Bounds() {
						t.Errorf("whole-image match of a crop %v", sh)
					}
				}
				for _, d := range [4]float64{float64(m.Shown.X0 - want.X0), float64(m.Shown.Y0 - want.Y0), float64(m.Shown.X1 - want.X1), float64(m.Shown.Y1 - want.Y1)} {
					if math.Abs(d) > tol {
						t.Errorf("shown %+v, want %+v", m.Shown, want)
						break
					}
				}
				// Where the picture is in the query: the content rectangle
				// for a whole match (within 2 % of the query's size).
				if m.Kind == Whole {
					pl := rp.Placed
					qw, qh := float64(rp.Image.Bounds().Dx()), float64(rp.Image.Bounds().Dy())
					got := m.QueryRect
					for i, d := range [4]float64{float64(got[0] - pl.Min.X), float64(got[1] - pl.Min.Y), float64(got[2] - pl.Max.X), float64(got[3] - pl.Max.Y)} {
						s := qw
						if i%2 == 1 {
							s = qh
						}
						if math.Abs(d) > 0.02*s {
							t.Errorf("query rect %v, picture placed at %v", got, pl)
							break
						}
					}
				}
			})
		}
	}
}

// hugeImage claims a size over the pixel cap without holding pixels.
type hugeImage struct{}

func (hugeImage) ColorModel() color.Model { return color.GrayModel }
func (hugeImage) Bounds() image.Rectangle { return image.Rect(0, 0, 20000, 20000) }
func (hugeImage) At(x, y int) color.Color { return color.Gray{uint8(x ^ y)} }

func uniform(w, h int, c color.Color) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(m, m.Bounds(), image.NewUniform(c), image.Point{}, draw.Src)
	return m
}

// Inputs that must not crash, must be refused clearly where they are
// refused, and must not match everything.
func TestAdversarial(t *testing.T) {
	h := NewHasher(Options{PDQMaxSide: -1})
	ix, names := photoIndex(t, h)
	// Flat images indexed too: a flat query may match those, never a photo.
	white, black := uniform(640, 480, color.White), uniform(300, 300, color.Black)
	for i, m := range []image.Image{white, black} {
		sig, err := h.Signatures(m)
		if err != nil {
			t.Fatal(err)
		}
		if len(sig) != 3 || sig[0].Kind != Whole || sig[1].Kind != Area || sig[2].Kind != Cleaned || sig[0].Quality != 0 || sig[1].Quality != 0 || sig[2].Quality != 0 {
			t.Errorf("flat image: %d hashes, qualities %d, %d; want only the PDQ, area and cleaned hashes, quality 0", len(sig), sig[0].Quality, sig[1].Quality)
		}
		ix.Add(int64(100+i), m.Bounds().Dx(), m.Bounds().Dy(), sig)
	}
	// A band of caption text alone.
	band := uniform(640, 120, color.White)
	bandRP, err := reposts.Apply(uniform(640, 20, color.Black), []reposts.Kind{reposts.Caption}, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	draw.Draw(band, band.Bounds(), bandRP.Image, image.Point{}, draw.Src)
	for _, tc := range []struct {
		name string
		img  image.Image
	}{
		{"white", uniform(500, 400, color.White)},
		{"black", uniform(400, 500, color.Black)},
		{"grey", uniform(256, 256, color.Gray{128})},
		{"caption band alone", band},
		{"text photo, not indexed: a screenshot of it", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := tc.img
			if img == nil {
				rp, err := reposts.Apply(loadPhoto(t, "text.jpg"), []reposts.Kind{reposts.Screenshot}, rand.New(rand.NewPCG(2, 2)))
				if err != nil {
					t.Fatal(err)
				}
				img = rp.Image
			}
			q, err := h.Query(img)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ix.Search(q, SearchOptions{}) {
				if m.ID < int64(len(names)) && (tc.img != nil || names[m.ID] != "text.jpg") {
					t.Errorf("matched photo %s: %+v", names[m.ID], m)
				}
			}
		})
	}
	// The text photo's own screenshot is found (it is indexed).
	for _, tc := range []struct {
		name string
		img  image.Image
		err  error
	}{
		{"8x8", uniform(8, 8, color.White), ErrTooSmall},
		{"1x4000", uniform(1, 4000, color.White), ErrTooSmall},
		{"over the pixel cap", hugeImage{}, ErrTooLarge},
	} {
		if _, err := h.Signatures(tc.img); !errors.Is(err, tc.err) {
			t.Errorf("%s: Signatures error %v, want %v", tc.name, err, tc.err)
		}
		if _, err := h.Query(tc.img); !errors.Is(err, tc.err) {
			t.Errorf("%s: Query error %v, want %v", tc.name, err, tc.err)
		}
	}
	// Just above the size floor works.
	if _, err := h.Query(uniform(MinSide, MinSide, color.White)); err != nil {
		t.Errorf("%dx%d: %v", MinSide, MinSide, err)
	}
}

// ChunkSearcher and MIHSearcher (tables maintained as hashes arrive, or
// built once by Finish) return exactly what the linear scan returns, on
// random hashes, clustered ones (near copies of a few centres) and
// duplicates, at every radius ChunkSearcher supports.
func TestSearchersExact(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    RangeSearcher
	}{{"chunk", NewChunkSearcher()}, {"mih", NewMIHSearcher(false)}, {"mih-deferred", NewMIHSearcher(true)}} {
		t.Run(tc.name, func(t *testing.T) { testSearcherExact(t, tc.s) })
	}
	defer func() {
		if recover() == nil {
			t.Errorf("radius 32 did not panic")
		}
	}()
	NewChunkSearcher().Range(pdq.Hash{}, 32, func(uint32, int) {})
}

func testSearcherExact(t *testing.T, ch RangeSearcher) {
	r := rand.New(rand.NewPCG(7, 7))
	randHash := func() pdq.Hash { return testutil.RandomPDQ(r) }
	flip := func(h pdq.Hash, n int) pdq.Hash {
		for _, b := range r.Perm(256)[:n] {
			h[b/8] ^= 1 << (b % 8)
		}
		return h
	}
	lin := &LinearSearcher{}
	var centres []pdq.Hash
	for range 20 {
		centres = append(centres, randHash())
	}
	for i := range 6000 {
		var h pdq.Hash
		switch i % 3 {
		case 0:
			h = randHash()
		case 1:
			h = flip(centres[r.IntN(len(centres))], r.IntN(40))
		default:
			h = centres[r.IntN(len(centres))] // exact duplicates
		}
		lin.Insert(uint32(i), h)
		ch.Insert(uint32(i), h)
	}
	if f, ok := ch.(finisher); ok {
		f.Finish()
	}
	if lin.Len() != ch.Len() {
		t.Fatalf("len %d vs %d", lin.Len(), ch.Len())
	}
	for qi := range 60 {
		q := flip(centres[qi%len(centres)], qi%35)
		if qi%4 == 0 {
			q = randHash()
		}
		for _, radius := range []int{0, 1, 7, 15, 16, 20, 28, 31} {
			want := map[uint32]int{}
			lin.Range(q, radius, func(ref uint32, d int) { want[ref] = d })
			got := map[uint32]int{}
			ch.Range(q, radius, func(ref uint32, d int) {
				if _, dup := got[ref]; dup {
					t.Errorf("ref %d reported twice", ref)
				}
				got[ref] = d
			})
			if len(got) != len(want) {
				t.Fatalf("query %d radius %d: %d hits, linear scan %d", qi, radius, len(got), len(want))
			}
			for ref, d := range want {
				if got[ref] != d {
					t.Fatalf("query %d radius %d: ref %d distance %d, want %d", qi, radius, ref, got[ref], d)
				}
			}
		}
	}
}

func TestKindString(t *testing.T) {
	if Whole.String() != "whole" || Window.String() != "window" || Kind(9).String() != "Kind(9)" {
		t.Errorf("kind names: %s %s %s", Whole, Window, Kind(9))
	}
}

// Searches of one ChunkSearcher run concurrently (run with -race): each
// gets the linear scan's answer.
func TestChunkSearcherConcurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	lin, ch := &LinearSearcher{}, NewChunkSearcher()
	var hs []pdq.Hash
	for i := range 2000 {
		var h pdq.Hash
		for j := range h {
			h[j] = byte(r.Uint32())
		}
		if i%2 == 1 {
			h = hs[i-1]
			h[i%32] ^= 0x11
		}
		hs = append(hs, h)
		lin.Insert(uint32(i), h)
		ch.Insert(uint32(i), h)
	}
	done := make(chan error, 8)
	for g := range 8 {
		go func() {
			for k := range 50 {
				q := hs[(g*50+k)%len(hs)]
				want, got := map[uint32]int{}, map[uint32]int{}
				lin.Range(q, 28, func(ref uint32, d int) { want[ref] = d })
				ch.Range(q, 28, func(ref uint32, d int) { got[ref] = d })
				if len(want) != len(got) {
					done <- errors.New("concurrent search differs from the linear scan")
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// kth agrees with sorting, on random values, ties and sorted input.
func TestKth(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	for trial := range 300 {
		n := 1 + r.IntN(300)
		s := make([]float32, n)
		for i := range s {
			switch trial % 3 {
			case 0:
				s[i] = r.Float32()
			case 1:
				s[i] = float32(r.IntN(4)) // many ties
			default:
				s[i] = float32(i) // sorted
			}
		}
		want := slices.Clone(s)
		slices.Sort(want)
		k := r.IntN(n)
		if got := kth(slices.Clone(s), k); got != want[k] {
			t.Fatalf("trial %d: kth(%d) of %d values = %v, want %v", trial, k, n, got, want[k])
		}
	}
}

// TestTwoStageWindowSearch: the two-stage window search (seeds within
// SeedDistance, then every window of a seeded image within WindowDistance)
// reports only images the one-stage search over every query window at
// WindowDistance reports, with the same evidence for each, and finds the
// photos' crops, captions and screenshots as the one-stage search does.
func TestTwoStageWindowSearch(t *testing.T) {
	h := NewHasher(Options{PDQMaxSide: -1})
	ix, names := photoIndex(t, h)
	// The one-stage search has no low hits (lowseed.go): compared without
	// them (TestLowSeeds has theirs).
	ix.vp.lowHitBits = 0
	if ix.vp.seedDistance >= ix.vp.windowDistance {
		t.Fatalf("default seed radius %d is not under the window radius %d", ix.vp.seedDistance, ix.vp.windowDistance)
	}
	if ix.vp.probeDistance >= ix.vp.windowDistance {
		t.Fatalf("default probe radius %d is not under the window radius %d", ix.vp.probeDistance, ix.vp.windowDistance)
	}
	oneStage := &Index{whole: ix.whole, windows: ix.windows, entries: ix.entries, winRef: ix.winRef, vp: ix.vp}
	oneStage.vp.seedDistance, oneStage.vp.probeDistance = oneStage.vp.windowDistance, 0
	kinds := [][]reposts.Kind{{reposts.Crop75}, {reposts.Crop90, reposts.Caption}, {reposts.Screenshot, reposts.JPEG30}, {reposts.FlipH, reposts.Crop75}}
	windowMatches := 0
	for i, name := range names[:6] {
		img := loadPhoto(t, name)
		for ki, k := range kinds {
			q := repostQuery(t, h, img, k, uint64(i), uint64(ki))
			two := ix.Search(q, SearchOptions{})
			one := oneStage.Search(q, SearchOptions{})
			byID := map[int64]Match{}
			for _, m := range one {
				byID[m.ID] = m
			}
			for _, m := range two {
				o, ok := byID[m.ID]
				switch {
				case !ok:
					t.Errorf("%s %s: two stages matched %s, one stage did not", name, reposts.Name(k), names[m.ID])
				case o.Kind != m.Kind || o.Windows != m.Windows:
					t.Errorf("%s %s: two stages %+v, one stage %+v", name, reposts.Name(k), m, o)
				}
				if m.Kind == Window {
					windowMatches++
				}
			}
			if len(one) > 0 && one[0].ID == int64(i) && (len(two) == 0 || two[0].ID != int64(i)) {
				t.Errorf("%s %s: one stage found it, two stages did not", name, reposts.Name(k))
			}
		}
	}
	if windowMatches == 0 {
		t.Errorf("no window matches: the two-stage path was not exercised")
	}
}

// countingProber is an MIHSearcher that counts the approximate and the
// exact batched searches made through it, and the approximate and exact
// searches of one hash at a radius beyond WholeDistance (the band's).
type countingProber struct {
	*MIHSearcher
	probes, exact         int
	bandProbes, bandExact int
}

func (c *countingProber) RangeProbe(q pdq.Hash, radius, chunkRadius int, fn func(ref uint32, dist int)) {
	if radius > WholeDistance {
		if chunkRadius >= 0 {
			c.bandProbes++
		} else {
			c.bandExact++
		}
	}
	c.MIHSearcher.RangeProbe(q, radius, chunkRadius, fn)
}

func (c *countingProber) Range(q pdq.Hash, radius int, fn func(ref uint32, dist int)) {
	c.RangeProbe(q, radius, -1, fn)
}

func (c *countingProber) RangeAnyProbe(qs []pdq.Hash, radius, chunkRadius int, fn func(ref uint32)) {
	c.probes++
	c.MIHSearcher.RangeAnyProbe(qs, radius, chunkRadius, fn)
}

func (c *countingProber) RangeAny(qs []pdq.Hash, radius int, fn func(ref uint32)) {
	c.exact++
	c.MIHSearcher.RangeAny(qs, radius, fn)
}

// TestApproximateLookup: by default the window search seeds approximately
// (RangeAnyProbe within ProbeSeedDistance, chunk radius 0) and the
// whole-image band is probed approximately (BandProbeBits); with
// IndexOptions.ExactLookup the seeds are searched exactly within
// SeedDistance and the band exactly. Either way every
// match is one the one-stage search makes, with the same evidence, and on
// the photos' crop, caption and screenshot re-posts the probed seeds find
// at least as many originals as the exact ones.
func TestApproximateLookup(t *testing.T) {
	h := NewHasher(Options{PDQMaxSide: -1})
	paths, _ := filepath.Glob(filepath.Join(photoDir, "*.jpg"))
	probe := &countingProber{MIHSearcher: NewMIHSearcher(false)}
	exactW := &countingProber{MIHSearcher: NewMIHSearcher(false)}
	probeWhole := &countingProber{MIHSearcher: NewMIHSearcher(false)}
	exactWhole := &countingProber{MIHSearcher: NewMIHSearcher(false)}
	def := NewIndexWith(probeWhole, probe)
	exact := NewIndexWithOptions(exactWhole, exactW, IndexOptions{ExactLookup: true})
	oneStage := NewIndexWith(NewMIHSearcher(false), NewMIHSearcher(false))
	oneStage.vp.seedDistance, oneStage.vp.probeDistance = oneStage.vp.windowDistance, 0
	// The one-stage search has no low hits (lowseed.go): compared without
	// them.
	def.vp.lowHitBits, exact.vp.lowHitBits = 0, 0
	var imgs []image.Image
	for i, p := range paths {
		img := loadPhoto(t, filepath.Base(p))
		sig, err := h.Signatures(img)
		if err != nil {
			t.Fatal(err)
		}
		for _, ix := range []*Index{def, exact, oneStage} {
			ix.Add(int64(i), img.Bounds().Dx(), img.Bounds().Dy(), sig)
		}
		imgs = append(imgs, img)
	}
	kinds := [][]reposts.Kind{{reposts.Crop75}, {reposts.Crop90}, {reposts.Caption}, {reposts.Screenshot, reposts.JPEG30}, {reposts.FlipH, reposts.Crop75}}
	foundProbe, foundExact := 0, 0
	for i, img := range imgs {
		for ki, k := range kinds {
			q := repostQuery(t, h, img, k, uint64(i), uint64(ki))
			windowsOnly := SearchOptions{MinQuality: 101}
			def.Search(q, SearchOptions{}) // the band's searches, counted
			exact.Search(q, SearchOptions{})
			one := map[int64]Match{}
			for _, m := range oneStage.Search(q, windowsOnly) {
				one[m.ID] = m
			}
			for name, ms := range map[string][]Match{"probed": def.Search(q, windowsOnly), "exact": exact.Search(q, windowsOnly)} {
				for _, m := range ms {
					if o, ok := one[m.ID]; !ok || o.Kind != m.Kind || o.Windows != m.Windows {
						t.Errorf("photo %d %s: %s seeds matched %+v, one stage %+v (%v)", i, reposts.Name(k), name, m, o, ok)
					}
					if m.ID == int64(i) {
						if name == "probed" {
							foundProbe++
						} else {
							foundExact++
						}
					}
				}
			}
		}
	}
	t.Logf("originals found through windows: probed seeds %d, exact seeds %d, of %d re-posts", foundProbe, foundExact, len(imgs)*len(kinds))
	if probe.probes == 0 || probe.exact != 0 {
		t.Errorf("default index: %d probed and %d exact seed searches, want probed only", probe.probes, probe.exact)
	}
	if exactW.probes != 0 || exactW.exact == 0 {
		t.Errorf("ExactLookup index: %d probed and %d exact seed searches, want exact only", exactW.probes, exactW.exact)
	}
	if probeWhole.bandProbes == 0 || probeWhole.bandExact != 0 {
		t.Errorf("default index: %d probed and %d exact band searches, want probed only", probeWhole.bandProbes, probeWhole.bandExact)
	}
	if exactWhole.bandProbes != 0 || exactWhole.bandExact == 0 {
		t.Errorf("ExactLookup index: %d probed and %d exact band searches, want exact only", exactWhole.bandProbes, exactWhole.bandExact)
	}
	if foundExact == 0 || foundProbe < foundExact {
		t.Errorf("probed seeds found %d originals, exact seeds %d", foundProbe, foundExact)
	}
}

// IndexOptions.SeedWindows: seeding with fewer query windows finds a
// subset of what seeding with all of them finds, and with one window per
// plane, fewer crops.
func TestSeedWindowsOption(t *testing.T) {
	h := NewHasher(Options{PDQMaxSide: -1})
	all, names := photoIndex(t, h)
	few := NewIndexWithOptions(all.whole, all.windows, IndexOptions{SeedWindows: 1})
	few.entries, few.winRef = all.entries, all.winRef
	if all.vp.seedWindows != 0 || few.vp.seedWindows != 1 {
		t.Fatalf("seed windows %d and %d, want 0 and 1", all.vp.seedWindows, few.vp.seedWindows)
	}
	kinds := [][]reposts.Kind{{reposts.Crop75}, {reposts.FlipH, reposts.Crop75}, {reposts.Rot90, reposts.Crop90}}
	foundAll, foundFew := 0, 0
	for i, name := range names[:8] {
		img := loadPhoto(t, name)
		for ki, k := range kinds {
			q := repostQuery(t, h, img, k, uint64(i), uint64(ki))
			a := all.Search(q, SearchOptions{MinQuality: 101}) // windows only
			f := few.Search(q, SearchOptions{MinQuality: 101})
			inAll := map[int64]bool{}
			for _, m := range a {
				inAll[m.ID] = true
			}
			for _, m := range f {
				if !inAll[m.ID] {
					t.Errorf("%s %s: one seed window per plane matched %s, every window did not", name, reposts.Name(k), names[m.ID])
				}
			}
			if len(a) > 0 && a[0].ID == int64(i) {
				foundAll++
			}
			if len(f) > 0 && f[0].ID == int64(i) {
				foundFew++
			}
		}
	}
	t.Logf("crops found seeding every window: %d, one per plane: %d (of %d)", foundAll, foundFew, 8*len(kinds))
	if foundFew >= foundAll {
		t.Errorf("one seed window per plane found %d crops, every window %d: the option had no effect", foundFew, foundAll)
	}
}

// repostQuery is the query of img re-posted under k, the edits seeded by
// (a, b).
func repostQuery(t testing.TB, h *Hasher, img image.Image, k []reposts.Kind, a, b uint64) *Query {
	t.Helper()
	rp, err := reposts.Apply(img, k, rand.New(rand.NewPCG(a, b)))
	if err != nil {
		t.Fatal(err)
	}
	q, err := h.Query(rp.Image)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// TestNearCropScale: a light crop drawn at the working size shows its
// content a ninth larger than the original's windows do; the query's
// planes at nearCropScale (every query rectangle) meet them. Light crops
// of the committed photos and 20 generated pictures, alone and inside a
// screenshot, are found at rank 1 more often with those planes than
// without (the same query, its nearCropScale planes left out; 66 against
// 63 of 66), and the pictures found without them stay found.
func TestNearCropScale(t *testing.T) {
	if testing.Short() {
		t.Skip("queries 2 edits of every committed photo and 20 generated pictures")
	}
	h := NewHasher(Options{PDQMaxSide: -1})
	photos := committedPhotos(t)
	for p := range 20 {
		photos = append(photos, genPhoto(t, p))
	}
	ix := NewIndexWith(NewMIHSearcher(false), NewMIHSearcher(false))
	for i, img := range photos {
		sig, err := h.Signatures(img)
		if err != nil {
			t.Fatal(err)
		}
		ix.Add(int64(i), img.Bounds().Dx(), img.Bounds().Dy(), sig)
	}
	var n foundTally
	for i, img := range photos {
		for k, edit := range [][]reposts.Kind{{reposts.Crop90}, {reposts.Crop90, reposts.Screenshot}} {
			rp, err := reposts.Apply(img, edit, rand.New(rand.NewPCG(uint64(i), uint64(k))))
			if err != nil {
				t.Fatal(err)
			}
			q, err := h.Query(rp.Image)
			if err != nil {
				t.Fatal(err)
			}
			top := func(q *Query) bool {
				ms := ix.Search(q, SearchOptions{K: 1})
				return len(ms) > 0 && ms[0].ID == int64(i)
			}
			plain := *q
			plain.Hashes = slices.DeleteFunc(slices.Clone(q.Hashes), func(qh QueryHash) bool { return qh.Kind == Window && qh.plane == 1 })
			a, b := top(q), top(&plain)
			n.add(a, b)
		}
	}
	t.Logf("light crops of %d photos, alone and in a screenshot: %d found with the nearCropScale planes, %d without, %d lost", len(photos), n.with, n.without, n.lost)
	if n.with < n.without+2 || n.lost > 0 {
		t.Errorf("with the nearCropScale planes %d found, without %d, %d found only without", n.with, n.without, n.lost)
	}
}

// TestPixelCheckTriesEachRect: a cropped picture under a caption band
// matches through windows of the whole query image as well as of its
// content rectangle, and the pixel check must read the picture where it
// is. Kept to the whole image's windows alone, the crop90+caption
// re-posts that the full query finds are still found (all but 2 of 24;
// 15 when the check read the best hit's rectangle only): the check over
// the whole image compares the original's cells that the crop moved into
// the band, and fails.
func TestPixelCheckTriesEachRect(t *testing.T) {
	if testing.Short() {
		t.Skip("hashes 24 generated pictures")
	}
	h := NewHasher(Options{PDQMaxSide: -1})
	ix := NewIndexWith(NewMIHSearcher(false), NewMIHSearcher(false))
	const n = 24
	for p := range n {
		img := genPhoto(t, p)
		sig, err := h.Signatures(img)
		if err != nil {
			t.Fatal(err)
		}
		ix.Add(int64(p), 640, 480, sig)
	}
	var found, wholeOnly, tried int
	for p := range n {
		q := repostQuery(t, h, genPhoto(t, p), []reposts.Kind{reposts.Crop90, reposts.Caption}, uint64(p), 11)
		if len(q.Rects) < 2 {
			continue // no content rectangle found: nothing to test
		}
		ms := ix.Search(q, SearchOptions{K: 1})
		if len(ms) == 0 || ms[0].ID != int64(p) {
			continue
		}
		found++
		whole := *q
		whole.Hashes = slices.DeleteFunc(slices.Clone(q.Hashes), func(qh QueryHash) bool { return qh.Kind != Window || qh.Rect != 0 })
		if !slices.ContainsFunc(whole.Hashes, func(qh QueryHash) bool { return qh.Kind == Window }) {
			continue
		}
		tried++
		ms = ix.Search(&whole, SearchOptions{K: 1})
		if len(ms) == 0 || ms[0].ID != int64(p) {
			t.Logf("picture %d: found by its full query, not by its whole image's windows alone", p)
			continue
		}
		wholeOnly++
	}
	t.Logf("%d of %d crop90+caption re-posts found; %d of the %d with whole-image windows found by those alone", found, n, wholeOnly, tried)
	if tried < n/2 || wholeOnly < tried-2 {
		t.Errorf("%d of %d re-posts found by their whole image's windows alone; want all but 2, of at least %d", wholeOnly, tried, n/2)
	}
}
