package neardup

import (
	"image"
	"math/rand/v2"
	"testing"

	"github.com/xmodal/xmodal/eval/reposts"
)

// rectIoU is the intersection over union of two rectangles.
func rectIoU(a, b image.Rectangle) float64 {
	i := a.Intersect(b)
	if i.Empty() {
		return 0
	}
	ia := float64(i.Dx() * i.Dy())
	return ia / (float64(a.Dx()*a.Dy()+b.Dx()*b.Dy()) - ia)
}

// TestPartsSearch: with the crops of 53 pictures indexed (the committed
// photos and 40 generated; plus the crops of 40 other generated pictures,
// never queried), each picture queried with PartsQuery and Parts finds its
// own 90 % and 75 % crops, says Part and where in the query each crop lies,
// and matches no other picture's crop. Without the enlarged planes (a
// plain Query) fewer 75 % crops are found.
func TestPartsSearch(t *testing.T) {
	if testing.Short() {
		t.Skip("hashes 186 crops and queries 53 pictures twice")
	}
	h := NewHasher(Options{PDQMaxSide: -1})
	origs := committedPhotos(t)
	for p := range 40 {
		origs = append(origs, evalPic(p))
	}
	kinds := [][]reposts.Kind{{reposts.Crop90}, {reposts.Crop75}}
	ix := NewIndexWith(NewMIHSearcher(false), NewMIHSearcher(false))
	type rec struct {
		orig, kind int
		shown      image.Rectangle
	}
	var recs []rec
	add := func(img image.Image, orig, kind int, seed uint64) {
		rp, err := reposts.Apply(img, kinds[kind], rand.New(rand.NewPCG(seed, uint64(kind)+7)))
		if err != nil {
			t.Fatal(err)
		}
		sig, err := h.Signatures(rp.Image)
		if err != nil {
			t.Fatal(err)
		}
		ix.Add(int64(len(recs)), rp.Image.Bounds().Dx(), rp.Image.Bounds().Dy(), sig)
		recs = append(recs, rec{orig, kind, rp.Shown})
	}
	for oi, img := range origs {
		for k := range kinds {
			add(img, oi, k, uint64(oi))
		}
	}
	for p := range 40 {
		for k := range kinds {
			add(evalPic(1000+p), -1, k, uint64(1000+p))
		}
	}
	ix.Finish()
	count := func(parts bool) (found [2]int) {
		for oi, img := range origs {
			q, err := h.Query(img)
			if parts {
				q, err = h.PartsQuery(img)
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ix.Search(q, SearchOptions{Parts: true}) {
				r := recs[m.ID]
				if r.orig != oi {
					t.Errorf("picture %d (parts %v) matched a crop of picture %d (%v at %d bits, %d windows, pixels %.3f/%.3f)",
						oi, parts, r.orig, m.Kind, m.Distance, m.Windows, m.Pixels, m.PixelDetail)
					continue
				}
				if !m.Part {
					continue // found as a copy (a light crop's frame covers the query)
				}
				at := image.Rect(m.QueryRect[0], m.QueryRect[1], m.QueryRect[2], m.QueryRect[3])
				if iou := rectIoU(at, r.shown); iou < 0.8 {
					t.Errorf("picture %d: crop %v reported at %v (IoU %.2f)", oi, r.shown, at, iou)
				}
				if m.Shown != (Region{X1: 1, Y1: 1}) {
					t.Errorf("picture %d: a part match shows %v of the crop, want all of it", oi, m.Shown)
				}
				found[r.kind]++
			}
		}
		return found
	}
	with, without := count(true), count(false)
	t.Logf("of %d pictures, crops found as parts: crop90 %d, crop75 %d with PartsQuery; %d, %d with Query", len(origs), with[0], with[1], without[0], without[1])
	if with[0] < len(origs)-3 || with[1] < len(origs)-5 {
		t.Errorf("PartsQuery found %v of %d crops of each kind", with, len(origs))
	}
	if with[1] < without[1]+10 {
		t.Errorf("the enlarged planes found %d 75 %% crops against %d without", with[1], without[1])
	}
	// A plain search does not take a crop for a part of the query.
	for oi, img := range origs[:5] {
		q, err := h.PartsQuery(img)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ix.Search(q, SearchOptions{}) {
			if m.Part {
				t.Errorf("picture %d: a search without Parts matched crop %d as a part", oi, m.ID)
			}
		}
	}
}
