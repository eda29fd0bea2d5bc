package neardup

import (
	"bytes"
	"errors"
	"image/color"
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
)

// Windows gives the windows of Signatures.
func TestWindowsMatchSignatures(t *testing.T) {
	h := NewHasher(Options{PDQMaxSide: -1})
	for _, name := range []string{"astronaut.jpg", "coffee.jpg"} {
		img := loadPhoto(t, name)
		sig, err := h.Signatures(img)
		if err != nil {
			t.Fatal(err)
		}
		ws, err := h.Windows(img)
		if err != nil {
			t.Fatal(err)
		}
		if len(ws) != len(sig)-1 || len(ws) == 0 {
			t.Fatalf("%s: %d windows, want %d", name, len(ws), len(sig)-1)
		}
		for i, w := range ws {
			if !reflect.DeepEqual(w, sig[i+1]) {
				t.Errorf("%s: %s %d differs", name, w.Kind, i)
			}
		}
		if last := ws[len(ws)-1]; last.Kind != Patch || len(last.Pixels) != PatchSide*PatchSide {
			t.Errorf("%s: last element %s with %d pixels, want the patch", name, last.Kind, len(last.Pixels))
		}
	}
	if _, err := h.Windows(uniform(8, 8, color.White)); !errors.Is(err, ErrTooSmall) {
		t.Errorf("8x8 image: %v, want ErrTooSmall", err)
	}
}

// The stored form keeps the windows' hashes and variants exactly and
// their geometry within the fixed-point step, and an index of stored
// windows finds the same crops as one of the signatures.
func TestStoredWindowsRoundTrip(t *testing.T) {
	h := NewHasher(Options{PDQMaxSide: -1})
	img := loadPhoto(t, "astronaut.jpg")
	sig, err := h.Signatures(img)
	if err != nil {
		t.Fatal(err)
	}
	W, H := img.Bounds().Dx(), img.Bounds().Dy()
	b := AppendWindows(nil, W, H, sig)
	if len(b) != StoredWindowsSize(len(sig)-4) { // less the PDQ, area and cleaned hashes and the patch
		t.Fatalf("%d bytes, want %d", len(b), StoredWindowsSize(len(sig)-4))
	}
	if b[0] != windowsFormat5 {
		t.Fatalf("format %d, want %d (with the area and cleaned hashes)", b[0], windowsFormat5)
	}
	w, hh, got, err := ParseWindows(b)
	if err != nil {
		t.Fatal(err)
	}
	if w != W || hh != H || len(got) != len(sig)-1 {
		t.Fatalf("parsed %dx%d with %d windows, want %dx%d with %d", w, hh, len(got), W, H, len(sig)-1)
	}
	if p, want := got[len(got)-1], sig[len(sig)-1]; p.Kind != Patch || !bytes.Equal(p.Pixels, want.Pixels) {
		t.Fatalf("patch not kept: %s", p.Kind)
	}
	for i, k := range []Kind{Area, Cleaned} {
		if a := got[i]; a.Kind != k || a.Hash != sig[i+1].Hash || a.Quality != sig[i+1].Quality {
			t.Fatalf("parsed hash %d: %s %v quality %d, want the %s hash %v quality %d", i, a.Kind, a.Hash, a.Quality, k, sig[i+1].Hash, sig[i+1].Quality)
		}
	}
	for i, g := range got[2 : len(got)-1] {
		s := sig[i+3]
		if g.Hash != s.Hash || g.Transform != s.Transform || g.Kind != Window {
			t.Fatalf("window %d: hash/variant differ", i)
		}
		da := math.Abs(math.Remainder(float64(g.Region.Angle-s.Region.Angle), 2*math.Pi))
		if math.Abs(float64(g.Region.CX-s.Region.CX)) > 1e-4 || math.Abs(float64(g.Region.CY-s.Region.CY)) > 1e-4 ||
			math.Abs(float64(g.Region.Side-s.Region.Side)) > 1e-4 || da > 1e-3 {
			t.Errorf("window %d geometry %+v, want %+v", i, g.Region, s.Region)
		}
	}
	ix := NewIndex()
	ix.Add(7, w, hh, got)
	for ki, k := range [][]reposts.Kind{{reposts.Crop75}, {reposts.Crop90}, {reposts.FlipH, reposts.Crop75}} {
		q := repostQuery(t, h, img, k, uint64(ki), 11)
		ms := ix.Search(q, SearchOptions{})
		if len(ms) != 1 || ms[0].ID != 7 || ms[0].Kind != Window {
			t.Errorf("%s: matches %+v, want the stored image by its windows", reposts.Name(k), ms)
		}
	}
}

func TestParseWindowsRefuses(t *testing.T) {
	one := []RegionHash{{Kind: Window}}
	good := AppendWindows(nil, 100, 80, one)
	win := good[windowsHeader : windowsHeader+storedWindowBytes]
	patch := good[len(good)-patchBytes:]
	build := func(format byte, wins int, tail []byte) []byte {
		b := append([]byte{format}, good[1:windowsHeader]...)
		for range wins {
			b = append(b, win...)
		}
		return append(b, tail...)
	}
	good3 := AppendWindowsIn(nil, 100, 80, one, Region{X0: 0.1, Y0: 0.2, X1: 0.9, Y1: 0.7})
	withArea := append([]RegionHash{{Kind: Area, Hash: pdq.Hash{1, 2, 3}, Quality: 77}}, one...)
	good4 := AppendWindows(nil, 100, 80, withArea)
	badQuality := slices.Clone(good4)
	badQuality[windowsHeader+contentBytes+32] = 101
	withCleaned := append([]RegionHash{{Kind: Cleaned, Hash: pdq.Hash{4, 5, 6}, Quality: 66}}, withArea...)
	good5 := AppendWindows(nil, 100, 80, withCleaned)
	badCleaned := slices.Clone(good5)
	badCleaned[windowsHeader+contentBytes+areaBytes+32] = 101
	badVariant := slices.Clone(good)
	badVariant[windowsHeader+storedWindowBytes-1] = 8
	bad := map[string][]byte{
		"empty":         nil,
		"format":        append([]byte{9}, good[1:]...),
		"short":         good[:len(good)-1],
		"no patch":      build(windowsFormat, 1, nil),
		"tiny image":    AppendWindows(nil, 4, 80, one),
		"variant":       badVariant,
		"too many":      build(windowsFormat, MaxWindows+1, patch),
		"too many (v1)": build(windowsFormat1, MaxWindows+1, nil),
		"no content":    good3[:windowsHeader+contentBytes-1],
		"empty content": AppendWindowsIn(nil, 100, 80, one, Region{X0: 0.5, Y0: 0.1, X1: 0.5, Y1: 0.9}),
		"v3 no patch":   good3[:len(good3)-patchBytes],
		"v4 no area":    good4[:windowsHeader+contentBytes+areaBytes-1],
		"v4 quality":    badQuality,
		"v5 no cleaned": good5[:windowsHeader+contentBytes+2*areaBytes-1],
		"v5 quality":    badCleaned,
		"v3 scaled > n": append(slices.Clone(good3[:windowsHeader+contentBytes-1]), append([]byte{2}, good3[windowsHeader+contentBytes:]...)...),
	}
	for name, b := range bad {
		if _, _, _, err := ParseWindows(b); !errors.Is(err, ErrBadWindows) {
			t.Errorf("%s: %v, want ErrBadWindows", name, err)
		}
	}
	if _, _, s, err := ParseWindows(good); err != nil || len(s) != 2 || s[1].Kind != Patch {
		t.Errorf("good: %v, %d elements", err, len(s))
	}
	if _, _, s, c, err := ParseWindowsIn(good3); err != nil || len(s) != 2 || s[1].Kind != Patch ||
		math.Abs(float64(c.X0-0.1)) > 1e-4 || math.Abs(float64(c.Y1-0.7)) > 1e-4 {
		t.Errorf("good, format 3: %v, %d elements, content %+v", err, len(s), c)
	}
	// The area hash (format 4) comes back first, as stored.
	if good4[0] != windowsFormat4 {
		t.Errorf("a list with an area hash stored in format %d, want 4", good4[0])
	}
	if _, _, s, err := ParseWindows(good4); err != nil || len(s) != 3 || s[0].Kind != Area || s[0].Hash != withArea[0].Hash ||
		s[0].Quality != 77 || s[1].Kind != Window || s[2].Kind != Patch {
		t.Errorf("good, format 4: %v, %+v", err, s)
	}
	// The cleaned hash (format 5) comes back after the area hash, as
	// stored; without an area hash none is stored (format 2).
	if good5[0] != windowsFormat5 {
		t.Errorf("a list with area and cleaned hashes stored in format %d, want 5", good5[0])
	}
	if _, _, s, err := ParseWindows(good5); err != nil || len(s) != 4 || s[0].Kind != Area || s[0].Hash != withArea[0].Hash ||
		s[1].Kind != Cleaned || s[1].Hash != withCleaned[0].Hash || s[1].Quality != 66 || s[2].Kind != Window || s[3].Kind != Patch {
		t.Errorf("good, format 5: %v, %+v", err, s)
	}
	if b := AppendWindows(nil, 100, 80, append([]RegionHash{withCleaned[0]}, one...)); b[0] != windowsFormat {
		t.Errorf("a cleaned hash without an area hash: format %d, want 2", b[0])
	}
	// Scaled windows (format 3) come back from ParseWindowsIn only.
	two := []RegionHash{{Kind: Window, Region: Region{CX: 0.5, CY: 0.5, Side: 0.2}}, {Kind: ScaledWindow, Region: Region{CX: 0.25, CY: 0.5, Side: 0.3}}}
	b3 := AppendWindowsIn(nil, 100, 80, two, Region{X1: 1, Y1: 1})
	if b3[0] != windowsFormat3 {
		t.Errorf("scaled windows stored in format %d, want 3", b3[0])
	}
	if _, _, s, _, err := ParseWindowsIn(b3); err != nil || len(s) != 3 || s[0].Kind != Window || s[1].Kind != ScaledWindow || s[2].Kind != Patch {
		t.Errorf("ParseWindowsIn with a scaled window: %v, %+v", err, s)
	}
	if _, _, s, err := ParseWindows(b3); err != nil || len(s) != 2 || s[0].Kind != Window || s[1].Kind != Patch {
		t.Errorf("ParseWindows with a scaled window: %v, %d elements (want the plain window and the patch)", err, len(s))
	}
	if b := AppendWindows(nil, 100, 80, two); b[0] != windowsFormat {
		t.Errorf("AppendWindows of a list with scaled windows: format %d, want 2 (the lookup's form)", b[0])
	}
	// Up to MaxWindows plain and maxLinkWindows link windows are kept
	// (the image at cropScale and its content rectangle), more are cut.
	var many []RegionHash
	for i := range MaxWindows + 2*maxLinkWindows {
		k := Window
		if i >= MaxWindows+1 {
			k = ScaledWindow
		}
		many = append(many, RegionHash{Kind: k, Region: Region{CX: 0.5, CY: 0.5, Side: 0.2}})
	}
	if _, _, s, _, err := ParseWindowsIn(AppendWindowsIn(nil, 100, 80, many, Region{X1: 1, Y1: 1})); err != nil ||
		len(s) != MaxWindows+maxLinkWindows+1 || s[MaxWindows-1].Kind != Window || s[MaxWindows].Kind != ScaledWindow {
		t.Errorf("%d plain and %d link windows: %v, %d elements back (want %d and %d and the patch)", MaxWindows+1, 2*maxLinkWindows-1, err, len(s), MaxWindows, maxLinkWindows)
	}
	// The whole image as content writes format 2.
	if b := AppendWindowsIn(nil, 100, 80, one, Region{X1: 1, Y1: 1}); !bytes.Equal(b, good) {
		t.Errorf("whole-image content: format %d, want the bytes of AppendWindows", b[0])
	}
	// Format 1 (stored before patches): windows, no patch.
	if _, _, s, err := ParseWindows(build(windowsFormat1, 2, nil)); err != nil || len(s) != 2 || s[0].Kind != Window || s[1].Kind != Window {
		t.Errorf("format 1: %v, %d elements", err, len(s))
	}
}

func FuzzParseWindows(f *testing.F) {
	f.Add(AppendWindows(nil, 640, 480, []RegionHash{{Kind: Window, Region: Region{CX: 0.5, CY: 0.25, Side: 0.3, Angle: 1}}}))
	f.Add(AppendWindowsIn(nil, 640, 480, []RegionHash{{Kind: Window, Region: Region{CX: 0.5, CY: 0.25, Side: 0.3, Angle: 1}}}, Region{X0: 0.1, Y0: 0.2, X1: 0.8, Y1: 0.9}))
	f.Add(AppendWindows(nil, 640, 480, []RegionHash{{Kind: Area, Quality: 90}, {Kind: Window, Region: Region{CX: 0.5, CY: 0.25, Side: 0.3, Angle: 1}}}))
	f.Add(AppendWindows(nil, 640, 480, []RegionHash{{Kind: Area, Quality: 90}, {Kind: Cleaned, Quality: 80}, {Kind: Window, Region: Region{CX: 0.5, CY: 0.25, Side: 0.3, Angle: 1}}}))
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Add(append([]byte{1, 100, 0, 80, 0}, make([]byte, storedWindowBytes)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		w, h, sig, content, err := ParseWindowsIn(b)
		if err != nil {
			return
		}
		// What parses re-encodes to the same bytes (format 1 gains a
		// flat patch).
		again := AppendWindowsIn(nil, w, h, sig, content)
		want := b
		if b[0] == windowsFormat1 {
			want = append(append([]byte{windowsFormat}, b[1:]...), make([]byte, patchBytes)...)
		}
		if string(again) != string(want) {
			t.Fatalf("re-encoded %x, want %x", again, want)
		}
	})
}

// Remove takes an image out of every search; adding an id again replaces
// its signature; both with the multi-index searcher built deferred and
// maintained later.
func TestIndexRemoveAndReplace(t *testing.T) {
	h := NewHasher(Options{PDQMaxSide: -1})
	paths, _ := filepath.Glob(filepath.Join(photoDir, "*.jpg"))
	if len(paths) < 3 {
		t.Fatal("committed photos missing")
	}
	a, b := loadPhoto(t, "astronaut.jpg"), loadPhoto(t, "coffee.jpg")
	sa, _ := h.Signatures(a)
	sb, _ := h.Signatures(b)
	for _, tc := range []struct {
		name string
		ix   *Index
	}{
		{"linear", NewIndex()},
		{"mih-deferred", NewIndexWith(NewMIHSearcher(true), NewMIHSearcher(true))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ix := tc.ix
			ix.Add(1, a.Bounds().Dx(), a.Bounds().Dy(), sa)
			ix.Add(2, b.Bounds().Dx(), b.Bounds().Dy(), sb)
			ix.Maintain()
			crop := repostQuery(t, h, a, []reposts.Kind{reposts.Crop75}, 3, 11)
			whole, err := h.Query(a)
			if err != nil {
				t.Fatal(err)
			}
			ids := func(q *Query) []int64 {
				var out []int64
				for _, m := range ix.Search(q, SearchOptions{}) {
					out = append(out, m.ID)
				}
				return out
			}
			if got := ids(crop); len(got) != 1 || got[0] != 1 {
				t.Fatalf("crop found %v, want [1]", got)
			}
			if ix.Len() != 2 {
				t.Errorf("Len %d, want 2", ix.Len())
			}
			// Id 1 now holds the coffee photo: the astronaut is gone.
			ix.Add(1, b.Bounds().Dx(), b.Bounds().Dy(), sb)
			ix.Maintain()
			if got := ids(crop); len(got) != 0 {
				t.Errorf("after replacing id 1, the crop found %v", got)
			}
			if !ix.Remove(1) || ix.Remove(1) {
				t.Error("Remove(1) should succeed once")
			}
			ix.Maintain()
			if got := ids(whole); len(got) != 0 {
				t.Errorf("after removing, the astronaut found %v", got)
			}
			ix.Add(3, a.Bounds().Dx(), a.Bounds().Dy(), sa)
			ix.Maintain()
			if got := ids(whole); len(got) != 1 || got[0] != 3 {
				t.Errorf("re-added as 3: found %v", got)
			}
			if ix.Len() != 2 {
				t.Errorf("Len %d, want 2 (ids 2 and 3)", ix.Len())
			}
		})
	}
}

// The pixel check: crops of a photo are found by its windows while its
// own patch backs them, not when the windows carry another photo's patch
// (the windows still agree; the pixels do not), and without a patch
// (windows stored before patches) unchecked.
func TestPixelCheck(t *testing.T) {
	h := NewHasher(Options{PDQMaxSide: -1})
	a, b := loadPhoto(t, "astronaut.jpg"), loadPhoto(t, "coffee.jpg")
	sigA, err := h.Windows(a)
	if err != nil {
		t.Fatal(err)
	}
	sigB, err := h.Windows(b)
	if err != nil {
		t.Fatal(err)
	}
	wins := sigA[:len(sigA)-1]
	for _, tc := range []struct {
		name  string
		sig   []RegionHash
		found bool
	}{
		{"own patch", sigA, true},
		{"another photo's patch", append(slices.Clone(wins), sigB[len(sigB)-1]), false},
		{"no patch", wins, true},
	} {
		ix := NewIndex()
		ix.Add(1, a.Bounds().Dx(), a.Bounds().Dy(), tc.sig)
		for ki, k := range [][]reposts.Kind{{reposts.Crop75}, {reposts.Crop90}, {reposts.Caption}, {reposts.Rot90, reposts.Crop90}} {
			q := repostQuery(t, h, a, k, uint64(ki), 5)
			var win *Match
			for _, m := range ix.Search(q, SearchOptions{MinQuality: 101}) { // windows only
				if m.Kind == Window {
					win = &m
				}
			}
			switch {
			case tc.found && win == nil:
				t.Errorf("%s, %s: not found by its windows", tc.name, reposts.Name(k))
			case !tc.found && win != nil:
				t.Errorf("%s, %s: found (pixels %.2f), want refused by the pixel check", tc.name, reposts.Name(k), win.Pixels)
			case win != nil && tc.name == "own patch" && win.Pixels < MinPixelCorr:
				t.Errorf("%s, %s: pixels %.2f under %.2f", tc.name, reposts.Name(k), win.Pixels, MinPixelCorr)
			case win != nil && tc.name == "no patch" && win.Pixels != 0:
				t.Errorf("%s, %s: pixels %.2f, want 0 (unchecked)", tc.name, reposts.Name(k), win.Pixels)
			}
		}
	}
}
