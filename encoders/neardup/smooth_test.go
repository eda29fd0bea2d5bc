package neardup

import (
	"testing"

	"github.com/xmodal/xmodal/eval/reposts"
)

// TestSmoothed: plane.smoothed is the [1 2 1] / 4 filter across and down,
// edges repeated: a lone pixel of 16 spreads into the binomial kernel (1 2
// 1 / 2 4 2 / 1 2 1), and into 9 3 / 3 1 from a corner, where the
// repeated edge keeps three quarters of each pass; the sum is kept.
func TestSmoothed(t *testing.T) {
	for _, c := range []struct {
		name string
		x, y int
		want map[[2]int]float32
	}{
		{"inside", 2, 1, map[[2]int]float32{{1, 0}: 1, {2, 0}: 2, {3, 0}: 1, {1, 1}: 2, {2, 1}: 4, {3, 1}: 2, {1, 2}: 1, {2, 2}: 2, {3, 2}: 1}},
		{"corner", 0, 0, map[[2]int]float32{{0, 0}: 9, {1, 0}: 3, {0, 1}: 3, {1, 1}: 1}},
	} {
		g := &plane{w: 5, h: 4, p: make([]float32, 20)}
		g.p[c.y*5+c.x] = 16
		s := g.smoothed()
		var sum float32
		for y := range 4 {
			for x := range 5 {
				if got, want := s.p[y*5+x], c.want[[2]int{x, y}]; got != want {
					t.Errorf("%s: (%d,%d) = %v, want %v", c.name, x, y, got, want)
				}
				sum += s.p[y*5+x]
			}
		}
		if sum != 16 || g.p[c.y*5+c.x] != 16 {
			t.Errorf("%s: sum %v, want 16, and the input unchanged", c.name, sum)
		}
	}
}

// TestSmoothedCropPlane: the windows of the smoothed crop plane find hard
// re-compressed crops (crop75+jpeg30) that the other planes' windows miss:
// 100 generated pictures, each query searched whole and without the
// smoothed plane's windows, on the same index. More are found with them,
// and no same-family distractor is matched.
func TestSmoothedCropPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("hashes 100 generated pictures and queries 200")
	}
	const nPics = 100
	h := NewHasher(Options{PDQMaxSide: -1})
	ix := NewIndexWith(NewMIHSearcher(false), NewMIHSearcher(false))
	pic := evalPic
	indexEvalPics(t, h, nPics, ix)
	var n foundTally
	smoothed := 0
	for p := range nPics {
		q := repostQuery(t, h, pic(p), []reposts.Kind{reposts.Crop75, reposts.JPEG30}, uint64(p), 23)
		without := *q
		without.Hashes = nil
		for _, qh := range q.Hashes {
			if qh.smoothed {
				smoothed++
			} else {
				without.Hashes = append(without.Hashes, qh)
			}
		}
		a := ix.Search(q, SearchOptions{K: 1})
		b := ix.Search(&without, SearchOptions{K: 1})
		n.add(len(a) > 0 && a[0].ID == int64(p), len(b) > 0 && b[0].ID == int64(p))
		d := repostQuery(t, h, pic(1000+p), []reposts.Kind{reposts.Crop75, reposts.JPEG30}, uint64(p), 29)
		if ms := ix.Search(d, SearchOptions{K: 1}); len(ms) > 0 {
			t.Errorf("distractor %d matched picture %d (%v)", 1000+p, ms[0].ID, ms[0].Kind)
		}
	}
	t.Logf("crop75+jpeg30 of %d pictures: %d found with the smoothed crop plane (%d windows), %d without, %d found only without", nPics, n.with, smoothed, n.without, n.lost)
	if smoothed == 0 || n.with <= n.without {
		t.Errorf("with the smoothed plane's %d windows %d found, without %d", smoothed, n.with, n.without)
	}
}
