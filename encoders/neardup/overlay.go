package neardup

import (
	"image"
	"slices"
)

// Lettering-cleaned query planes. A large semi-transparent watermark
// across a cropped copy defeats both the cleaned hash (the crop moves it)
// and the windows: the lettering's strokes are the plane's strongest
// blobs, so the query's windows are anchored on the text and hash mostly
// text. On 24 real crop90+watermark re-posts (8 photos, 3 seeds), 27 of
// the originals' windows had a query window within 28 bits, against 577
// for the same crops without the watermark.
//
// The first remedy opened the whole plane where lifted pixels were dense
// (a morphological opening, as the cleaned hash does), which also removed
// the photo's own small bright details wherever the photo was textured:
// on a real photo the region covered most of the plane (coffee.jpg: 81 %)
// and the cleaned plane's windows met the original's no better. Opening
// exactly the watermark's pixels (known from the unmarked crop: an
// oracle) gave 200 of the 577; unblending them with the watermark's
// opacity, 226.
//
// So the query looks for a line of lettering instead of dense lifts. On a
// plane of letterSide pixels, a pixel is lifted when it stands more than
// letterLift grey levels over the opening (cleanSquare's square) with a
// lift of letterMinRatio to letterMaxRatio of the way to white (a white
// overlay of opacity a lifts v to v + (255 - v) a: its ratio is a; texture
// gives every ratio). Connected lifted pixels are letter-like when their
// box is between a 40th and a quarter of the plane's height, at most
// twice as wide as tall (plus two pixels) and 15-80 % filled; the search
// runs over the whole ratio range and over four overlapping parts of it
// (letterRatios), since texture lifted at other ratios joins the strokes
// into shapes that are not letters. A line is
// at least letterMin letter-like components that cross the middle of the
// first one's box, of heights within a factor of two, with gaps under one
// and a half of its height; the line covering the most pixels wins. Its
// components are unblended with the opacity their pixels agree on (the
// two-thirds quantile of their ratios): v = (v' - 255 a) / (1 - a); their
// edges, and lifted pixels around them, take the opening's value. On the
// 24 re-posts above the windows met 63 of the originals' (the whole
// ratio range alone); in `xmodal eval neardup` on the real photos (ten
// seeds) crop90+watermark went from 0.860 to 0.905 with the whole range
// and to 0.940 with its parts too (docs/neardup.md).
//
// The lettering-cleaned plane is searched beside the plain one at the
// first overlayPlanes working sizes, and the pixel check, which the
// lettering's detail fails, reads it where the plain one fails.
const (
	letterSide      = 256
	letterLift      = 12
	letterMinRatio  = 0.15
	letterMaxRatio  = 0.85
	letterMin       = 4
	letterEdgeLift  = 3
	letterCoreRatio = 0.7
	// overlayPlanes: the query's first working sizes (workSide,
	// nearCropScale) that are also searched cleaned; the cropScale plane
	// added nothing (docs/neardup.md).
	overlayPlanes = 2
)

// letterComp is a connected component of lifted pixels: its box (x0, y0
// inclusive, x1, y1 exclusive) and its pixel count.
type letterComp struct{ x0, y0, x1, y1, area int }

// letteringCleaned returns the rectangle r of a w x hh luma plane drawn
// at letterSide, with a line of semi-transparent white lettering found on
// it unblended; nil when it has no such line.
func (h *Hasher) letteringCleaned(luma []float32, w, hh int, r image.Rectangle) *plane {
	p := h.workPlaneSized(luma, w, hh, r, letterSide)
	pw, ph := p.w, p.h
	if pw < 16 || ph < 16 {
		return nil
	}
	op := &plane{w: pw, h: ph, p: append([]float32(nil), p.p...)}
	h.openLifted(op, cleanSquare(p))
	// The line of the opacity range that finds the largest one.
	var lab []int32
	var comps []letterComp
	var line []int
	best := 0
	for _, rg := range letterRatios {
		l, c, ln, area := letterLine(p, op, rg[0], rg[1])
		if area > best {
			lab, comps, line, best = l, c, ln, area
		}
	}
	if line == nil {
		return nil
	}
	// The opacity the line's pixels agree on.
	var ratios []float32
	inLine := map[int32]bool{}
	for _, ci := range line {
		inLine[int32(ci+1)] = true
		c := comps[ci]
		for y := c.y0; y < c.y1; y++ {
			for x := c.x0; x < c.x1; x++ {
				if j := y*pw + x; lab[j] == int32(ci+1) {
					ratios = append(ratios, (p.p[j]-op.p[j])/(255-op.p[j]))
				}
			}
		}
	}
	slices.Sort(ratios)
	a := ratios[len(ratios)*2/3]
	out := &plane{w: pw, h: ph, p: append([]float32(nil), p.p...)}
	for _, ci := range line {
		c := comps[ci]
		for y := max(c.y0-1, 0); y < min(c.y1+1, ph); y++ {
			for x := max(c.x0-1, 0); x < min(c.x1+1, pw); x++ {
				j := y*pw + x
				lift := p.p[j] - op.p[j]
				if lift <= letterEdgeLift {
					continue
				}
				if inLine[lab[j]] && lift/(255-op.p[j]) > letterCoreRatio*a {
					out.p[j] = (p.p[j] - 255*a) / (1 - a)
				} else {
					out.p[j] = op.p[j]
				}
			}
		}
	}
	return out
}

// letterRatios are the ranges of lift ratio (the opacity of a white
// overlay) searched for a line in turn: all of them at once, then four
// overlapping parts. Texture lifted at other ratios than the lettering's
// joins its strokes into components that are not letter-like in the
// whole range; a part of it that holds the lettering's opacity leaves
// them apart.
var letterRatios = [][2]float32{{letterMinRatio, letterMaxRatio}, {0.15, 0.35}, {0.25, 0.5}, {0.35, 0.65}, {0.5, 0.85}}

// letterLine finds the best line of letter-like components among the
// pixels of p lifted over its opening op by more than letterLift grey
// levels at a ratio in (lo, hi): the component labels (from 1), the
// components, the line (indexes into them; nil: none) and the pixels it
// covers.
func letterLine(p, op *plane, lo, hi float32) ([]int32, []letterComp, []int, int) {
	pw, ph := p.w, p.h
	lifted := make([]bool, len(p.p))
	for i, v := range p.p {
		o := op.p[i]
		if lift := v - o; lift > letterLift && o < 250 {
			if ratio := lift / (255 - o); ratio > lo && ratio < hi {
				lifted[i] = true
			}
		}
	}
	lab := make([]int32, len(p.p))
	var comps []letterComp
	var stack []int
	for i, l := range lifted {
		if !l || lab[i] != 0 {
			continue
		}
		id := int32(len(comps) + 1)
		c := letterComp{x0: pw, y0: ph}
		lab[i] = id
		stack = append(stack[:0], i)
		for len(stack) > 0 {
			j := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			x, y := j%pw, j/pw
			c.x0, c.y0, c.x1, c.y1 = min(c.x0, x), min(c.y0, y), max(c.x1, x+1), max(c.y1, y+1)
			c.area++
			for _, n := range [4]int{j - 1, j + 1, j - pw, j + pw} {
				if n < 0 || n >= len(lifted) || (n == j-1 && x == 0) || (n == j+1 && x == pw-1) {
					continue
				}
				if lifted[n] && lab[n] == 0 {
					lab[n] = id
					stack = append(stack, n)
				}
			}
		}
		comps = append(comps, c)
	}
	var letters []int
	for ci, c := range comps {
		ch, cw := c.y1-c.y0, c.x1-c.x0
		if ch < max(4, ph/40) || ch > ph/4 || cw > 2*ch+2 {
			continue
		}
		if fill := float64(c.area) / float64(ch*cw); fill < 0.15 || fill > 0.8 {
			continue
		}
		letters = append(letters, ci)
	}
	line := bestLine(comps, letters)
	area := 0
	for _, ci := range line {
		area += comps[ci].area
	}
	return lab, comps, line, area
}

// bestLine returns the line of lettering among the letter-like components
// (indexes into comps) that covers the most pixels: at least letterMin
// components crossing the middle of one's box, of heights within a factor
// of two of its, left to right with gaps under one and a half of its
// height; nil when there is none.
func bestLine(comps []letterComp, letters []int) []int {
	var best []int
	bestArea := 0
	var row []int
	for _, a := range letters {
		ca := comps[a]
		ha := ca.y1 - ca.y0
		mid := (ca.y0 + ca.y1) / 2
		row = row[:0]
		for _, b := range letters {
			cb := comps[b]
			if hb := cb.y1 - cb.y0; cb.y0 <= mid && cb.y1 >= mid && 2*hb >= ha && hb <= 2*ha {
				row = append(row, b)
			}
		}
		slices.SortFunc(row, func(x, y int) int { return comps[x].x0 - comps[y].x0 })
		start := 0
		for i := 1; i <= len(row); i++ {
			if i < len(row) && comps[row[i]].x0-comps[row[i-1]].x1 <= 3*ha/2 {
				continue
			}
			area := 0
			for _, ci := range row[start:i] {
				area += comps[ci].area
			}
			if i-start >= letterMin && area > bestArea {
				best, bestArea = slices.Clone(row[start:i]), area
			}
			start = i
		}
	}
	return best
}
