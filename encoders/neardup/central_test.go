package neardup

import (
	"math/rand/v2"
	"testing"

	"github.com/xmodal/xmodal/eval/reposts"
)

// TestCentralWindows: an indexed image's windows anchored on the blobs of
// its middle (centralExtra) meet 75 % crops that the windows of its whole
// plane's blobs miss (a photo whose strongest blobs lie near an edge, as
// rocket.jpg's launch lights, keeps few of those windows in a crop). The
// committed photos and 20 generated pictures, each indexed twice (with
// every stored window, and with the whole plane's alone), their crop75,
// hflip+crop75 and crop75+jpeg30 re-posts as queries: more found at rank
// 1 with the middle's windows, none found only without them, and no other
// picture matched.
func TestCentralWindows(t *testing.T) {
	if testing.Short() {
		t.Skip("queries 3 edits of every committed photo and 20 generated pictures, 3 seeds")
	}
	h := NewHasher(Options{PDQMaxSide: -1})
	photos := committedPhotos(t)
	for p := range 20 {
		photos = append(photos, genPhoto(t, p))
	}
	with := NewIndexWith(NewMIHSearcher(false), NewMIHSearcher(false))
	without := NewIndexWith(NewMIHSearcher(false), NewMIHSearcher(false))
	for i, img := range photos {
		sig, err := h.Signatures(img)
		if err != nil {
			t.Fatal(err)
		}
		wins, central := 0, 0
		for _, r := range sig {
			if r.Kind == Window {
				wins++
				if wins > wholeWindows {
					central++
					// Anchored on two blobs of the middle: centred there.
					lo, hi := float32(1-centralFrac)/2, float32(1+centralFrac)/2
					if r.Region.CX < lo || r.Region.CX > hi || r.Region.CY < lo || r.Region.CY > hi {
						t.Errorf("picture %d: middle window centred at %.2f, %.2f", i, r.Region.CX, r.Region.CY)
					}
				}
			}
		}
		if wins > MaxWindows || central > centralExtra {
			t.Errorf("picture %d: %d windows, %d of the middle (at most %d and %d)", i, wins, central, MaxWindows, centralExtra)
		}
		b := img.Bounds()
		with.Add(int64(i), b.Dx(), b.Dy(), sig)
		without.Add(int64(i), b.Dx(), b.Dy(), wholePlaneWindows(sig))
	}
	var n foundTally
	for i, img := range photos {
		for k, edit := range [][]reposts.Kind{{reposts.Crop75}, {reposts.FlipH, reposts.Crop75}, {reposts.Crop75, reposts.JPEG30}} {
			for seed := range uint64(3) {
				rp, err := reposts.Apply(img, edit, rand.New(rand.NewPCG(uint64(i), uint64(k)*10+seed)))
				if err != nil {
					t.Fatal(err)
				}
				q, err := h.Query(rp.Image)
				if err != nil {
					t.Fatal(err)
				}
				top := func(ix *Index) bool {
					ms := ix.Search(q, SearchOptions{})
					for _, m := range ms {
						if m.ID != int64(i) {
							t.Errorf("picture %d %s seed %d: matched picture %d (%v, %d windows)", i, reposts.Name(edit), seed, m.ID, m.Kind, m.Windows)
						}
					}
					return len(ms) > 0 && ms[0].ID == int64(i)
				}
				n.add(top(with), top(without))
			}
		}
	}
	t.Logf("75 %% crops of %d pictures: %d found with the middle's windows, %d without, %d found only without", len(photos), n.with, n.without, n.lost)
	if n.with < n.without+3 || n.lost > 0 {
		t.Errorf("with the middle's windows %d found, without %d, %d found only without", n.with, n.without, n.lost)
	}
}
