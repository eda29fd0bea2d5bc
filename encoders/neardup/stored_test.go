package neardup

import (
	"errors"
	"image/color"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

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
			if w != sig[i+1] {
				t.Errorf("%s: window %d differs", name, i)
			}
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
	if len(b) != StoredWindowsSize(len(sig)-1) {
		t.Fatalf("%d bytes, want %d", len(b), StoredWindowsSize(len(sig)-1))
	}
	w, hh, got, err := ParseWindows(b)
	if err != nil {
		t.Fatal(err)
	}
	if w != W || hh != H || len(got) != len(sig)-1 {
		t.Fatalf("parsed %dx%d with %d windows, want %dx%d with %d", w, hh, len(got), W, H, len(sig)-1)
	}
	for i, g := range got {
		s := sig[i+1]
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
		rp, err := reposts.Apply(img, k, rand.New(rand.NewPCG(uint64(ki), 11)))
		if err != nil {
			t.Fatal(err)
		}
		q, err := h.Query(rp.Image)
		if err != nil {
			t.Fatal(err)
		}
		ms := ix.Search(q, SearchOptions{})
		if len(ms) != 1 || ms[0].ID != 7 || ms[0].Kind != Window {
			t.Errorf("%s: matches %+v, want the stored image by its windows", reposts.Name(k), ms)
		}
	}
}

func TestParseWindowsRefuses(t *testing.T) {
	good := AppendWindows(nil, 100, 80, []RegionHash{{Kind: Window}})
	bad := map[string][]byte{
		"empty":      nil,
		"format":     append([]byte{9}, good[1:]...),
		"short":      good[:len(good)-1],
		"tiny image": AppendWindows(nil, 4, 80, []RegionHash{{Kind: Window}}),
		"variant":    append(append([]byte{}, good[:len(good)-1]...), 8),
		"too many":   AppendWindows(nil, 100, 80, nil),
	}
	for range MaxWindows + 1 {
		bad["too many"] = append(bad["too many"], good[windowsHeader:]...)
	}
	for name, b := range bad {
		if _, _, _, err := ParseWindows(b); !errors.Is(err, ErrBadWindows) {
			t.Errorf("%s: %v, want ErrBadWindows", name, err)
		}
	}
	if _, _, s, err := ParseWindows(good); err != nil || len(s) != 1 {
		t.Errorf("good: %v, %d windows", err, len(s))
	}
}

func FuzzParseWindows(f *testing.F) {
	f.Add(AppendWindows(nil, 640, 480, []RegionHash{{Kind: Window, Region: Region{CX: 0.5, CY: 0.25, Side: 0.3, Angle: 1}}}))
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		w, h, sig, err := ParseWindows(b)
		if err != nil {
			return
		}
		// What parses re-encodes to the same bytes.
		again := AppendWindows(nil, w, h, sig)
		if string(again) != string(b) {
			t.Fatalf("re-encoded %x, want %x", again, b)
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
			crop := func(img any) *Query {
				rp, err := reposts.Apply(a, []reposts.Kind{reposts.Crop75}, rand.New(rand.NewPCG(3, 11)))
				if err != nil {
					t.Fatal(err)
				}
				q, err := h.Query(rp.Image)
				if err != nil {
					t.Fatal(err)
				}
				return q
			}(a)
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
