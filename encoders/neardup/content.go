package neardup

import (
	"image"
	"math"
	"slices"
)

// Content rectangles: a re-post often shows the picture inside something
// else (a meme's caption band, an app's or a browser's frame, letterbox
// bars). Such surroundings are separated from the picture by flat rows or
// columns (uniform to within a few grey levels), so a recursive XY-cut
// (splitting a region at every run of flat rows, then of flat columns, as
// page-layout analysis does) isolates the picture as one leaf. The leaves
// large and busy enough to be a picture are the hypotheses a query is
// matched with besides the whole image.

// cutSide is the side of the plane the cut runs on.
const cutSide = 512

// flatTol is how far (grey levels) a pixel may stray from its line's
// median and still count as flat; flatShare the share of a line's pixels
// that must be flat for the line to be flat.
const (
	flatTol   = 4
	flatShare = 0.95
)

// contentRects returns up to max rectangles (in full-resolution pixels of
// a w x h luma plane) that may hold a picture shown inside a frame,
// largest first, excluding ones that cover nearly the whole image.
func contentRects(luma []float32, w, h, maxRects int) []image.Rectangle {
	if w < 32 || h < 32 {
		return nil
	}
	s := math.Min(1, cutSide/float64(max(w, h)))
	pw, ph := max(int(math.Round(float64(w)*s)), 1), max(int(math.Round(float64(h)*s)), 1)
	p := resampleArea(luma, w, h, pw, ph)
	var leaves []image.Rectangle
	xyCut(p, image.Rect(0, 0, pw, ph), 0, &leaves)
	minArea := 0.08 * float64(pw*ph)
	var out []image.Rectangle
	for _, r := range leaves {
		if float64(r.Dx()*r.Dy()) < minArea || r.Dx() < 24 || r.Dy() < 24 {
			continue
		}
		if float64(r.Dx()) > 0.97*float64(pw) && float64(r.Dy()) > 0.97*float64(ph) {
			continue
		}
		// Back to full resolution, then snap each edge to the exact row or
		// column where the picture starts.
		fr := image.Rect(int(float64(r.Min.X)/s), int(float64(r.Min.Y)/s), int(math.Ceil(float64(r.Max.X)/s)), int(math.Ceil(float64(r.Max.Y)/s)))
		fr = refineRect(luma, w, h, fr, int(math.Ceil(1/s))+1)
		if fr.Dx() < 16 || fr.Dy() < 16 {
			continue
		}
		out = append(out, fr)
	}
	slices.SortFunc(out, func(a, b image.Rectangle) int { return b.Dx()*b.Dy() - a.Dx()*a.Dy() })
	if len(out) > maxRects {
		out = out[:maxRects]
	}
	return out
}

// xyCut splits r at runs of flat rows, then of flat columns, recursively,
// appending the leaves (regions with no flat line across them) to out.
func xyCut(p *plane, r image.Rectangle, depth int, out *[]image.Rectangle) {
	if depth > 12 || r.Dx() < 8 || r.Dy() < 8 {
		return
	}
	for _, horiz := range []bool{true, false} {
		parts := splitFlat(p, r, horiz)
		if len(parts) == 1 && parts[0] == r {
			continue
		}
		for _, q := range parts {
			xyCut(p, q, depth+1, out)
		}
		return
	}
	*out = append(*out, r)
}

// splitFlat returns the parts of r between runs of flat lines (rows when
// horiz), trimming flat lines at its ends. A region that is all flat has
// no parts.
func splitFlat(p *plane, r image.Rectangle, horiz bool) []image.Rectangle {
	n := r.Dy()
	if !horiz {
		n = r.Dx()
	}
	flat := make([]bool, n)
	buf := make([]float32, max(r.Dx(), r.Dy()))
	for i := range n {
		var line []float32
		if horiz {
			y := r.Min.Y + i
			line = p.p[y*p.w+r.Min.X : y*p.w+r.Max.X]
		} else {
			x := r.Min.X + i
			line = buf[:r.Dy()]
			for j := range line {
				line[j] = p.p[(r.Min.Y+j)*p.w+x]
			}
		}
		flat[i] = isFlat(line, buf)
	}
	var parts []image.Rectangle
	start := -1
	for i := 0; i <= n; i++ {
		if i < n && !flat[i] {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			if horiz {
				parts = append(parts, image.Rect(r.Min.X, r.Min.Y+start, r.Max.X, r.Min.Y+i))
			} else {
				parts = append(parts, image.Rect(r.Min.X+start, r.Min.Y, r.Min.X+i, r.Max.Y))
			}
			start = -1
		}
	}
	return parts
}

// isFlat reports whether flatShare of line lies within flatTol of its
// median (scratch must be at least as long as line when line aliases it).
func isFlat(line, scratch []float32) bool {
	// The median from a 64-bin histogram (4 grey levels a bin).
	var hist [65]int
	for _, v := range line {
		hist[min(max(int(v)/4, 0), 64)]++
	}
	half, acc, bin := len(line)/2, 0, 0
	for b, c := range hist {
		acc += c
		if acc > half {
			bin = b
			break
		}
	}
	med := float32(bin*4 + 2)
	ok := 0
	for _, v := range line {
		if d := v - med; d <= flatTol+2 && d >= -flatTol-2 {
			ok++
		}
	}
	return float64(ok) >= flatShare*float64(len(line))
}

// refineRect moves each edge of r (full-resolution pixels) within slack
// pixels to the first line, going inwards, that is not flat.
func refineRect(luma []float32, w, h int, r image.Rectangle, slack int) image.Rectangle {
	r = r.Intersect(image.Rect(0, 0, w, h))
	if r.Empty() {
		return r
	}
	buf := make([]float32, max(w, h))
	rowFlat := func(y int) bool { return isFlat(luma[y*w+r.Min.X:y*w+r.Max.X], buf) }
	colFlat := func(x int) bool {
		line := buf[:r.Dy()]
		for j := range line {
			line[j] = luma[(r.Min.Y+j)*w+x]
		}
		return isFlat(line, nil)
	}
	// Top: from slack above, the first non-flat row.
	for y := max(r.Min.Y-slack, 0); y < min(r.Min.Y+slack, r.Max.Y); y++ {
		if !rowFlat(y) {
			r.Min.Y = y
			break
		}
	}
	for y := min(r.Max.Y+slack, h) - 1; y >= max(r.Max.Y-slack, r.Min.Y); y-- {
		if !rowFlat(y) {
			r.Max.Y = y + 1
			break
		}
	}
	for x := max(r.Min.X-slack, 0); x < min(r.Min.X+slack, r.Max.X); x++ {
		if !colFlat(x) {
			r.Min.X = x
			break
		}
	}
	for x := min(r.Max.X+slack, w) - 1; x >= max(r.Max.X-slack, r.Min.X); x-- {
		if !colFlat(x) {
			r.Max.X = x + 1
			break
		}
	}
	return r
}
