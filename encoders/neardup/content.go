package neardup

import (
	"image"
	"math"
	"slices"

	"github.com/xmodal/xmodal/encoders/pdq"
)

// Content rectangles: a re-post often shows the picture inside something
// else (a meme's caption band, an app's or a browser's frame, letterbox
// bars). Such surroundings are separated from the picture by flat rows or
// columns (uniform to within a few grey levels), so a recursive XY-cut
// (splitting a region at every run of flat rows, then of flat columns, as
// page-layout analysis does) isolates the picture as one leaf. The leaves
// large and busy enough to be a picture are the hypotheses a query is
// matched with besides the whole image.

// cutSide is the side of the plane a query's cut runs on; regionCutSide
// that of ContentHashes (a quarter of the pixels: it runs on every image
// at ingest).
// regionCutDepth the levels of its cut.
const (
	cutSide        = 512
	regionCutSide  = 256
	regionCutDepth = 2
)

// flatTol is how far (grey levels) a pixel may stray from its line's
// median and still count as flat; flatShare the share of a line's pixels
// that must be flat for the line to be flat.
const (
	flatTol   = 4
	flatShare = 0.95
)

// contentRects returns up to max rectangles (in full-resolution pixels of
// a w x h luma plane) that may hold a picture shown inside a frame,
// largest first, excluding ones that cover nearly the whole image. The cut
// runs on a plane whose longer side is at most side pixels (cutSide for
// queries; ContentHashes, which runs at ingest, uses the cheaper
// regionCutSide), and each edge is then snapped at full resolution.
func (hs *Hasher) contentRects(luma []float32, w, h, maxRects int, side float64) []image.Rectangle {
	if w < 32 || h < 32 {
		return nil
	}
	s := math.Min(1, side/float64(max(w, h)))
	pw, ph := max(int(math.Round(float64(w)*s)), 1), max(int(math.Round(float64(h)*s)), 1)
	var p *plane
	if s == 1 && side != cutSide {
		p = &plane{w: w, h: h, p: luma} // the cut only reads it
	} else if hs.useFast() {
		p = hs.fs.resample(luma, w, h, pw, ph)
	} else {
		p = resampleArea(luma, w, h, pw, ph)
	}
	var leaves []image.Rectangle
	hs.cut.prepare(p, hs.useFast())
	if side == cutSide {
		cut(&hs.cut, image.Rect(0, 0, pw, ph), 0, 12, false, cutNone, &leaves)
	} else {
		cut(&hs.cut, image.Rect(0, 0, pw, ph), 0, regionCutDepth, true, cutNone, &leaves)
	}
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

// cutPlane is a plane prepared for the cut: its values row by row and
// column by column (so that both kinds of line are contiguous), and each
// value's histogram bin (isFlat's) beside it.
// With the C kernels (fast) it only keeps the plane: nd_flat_lines reads
// rows and columns from it in place.
type cutPlane struct {
	w, h  int
	p, pt []float32
	b, bt []uint8
	fast  bool
	src   *plane
	hist  []int32
}

// prepare makes c the cut plane of p, reusing c's buffers.
func (c *cutPlane) prepare(p *plane, fast bool) {
	c.w, c.h, c.p, c.src, c.fast = p.w, p.h, p.p, p, fast
	if fast {
		return
	}
	c.pt, c.b, c.bt = grow(&c.pt, len(p.p)), grow(&c.b, len(p.p)), grow(&c.bt, len(p.p))
	for y := range p.h {
		row := p.p[y*p.w : (y+1)*p.w]
		for x, v := range row {
			bin := uint8(min(max(int(v)/4, 0), 64))
			c.b[y*p.w+x] = bin
			c.pt[x*p.h+y], c.bt[x*p.h+y] = v, bin
		}
	}
}

// Which lines of a region are known not to be flat (the direction its
// parent was cut in: the parts of a cut at flat rows span the same columns,
// so none of their rows is flat, and cutting them at rows again finds
// nothing).
const (
	cutNone = iota
	cutRows
	cutCols
)

// cut splits r at runs of flat rows, then of flat columns, recursively,
// appending the leaves (regions with no flat line across them) to out:
// a recursive XY-cut.
// Below maxDepth levels of cuts nothing is kept, except that with
// leafAtDepth the regions reached there are kept as leaves (the cheaper
// cut of ContentHashes: a frame or a band around a picture takes a level or
// two, while the deep levels split the picture's own flat parts, which
// cost a scan each).
// known says which lines of r are known not to be flat.
func cut(p *cutPlane, r image.Rectangle, depth, maxDepth int, leafAtDepth bool, known int, out *[]image.Rectangle) {
	if r.Dx() < 8 || r.Dy() < 8 {
		return
	}
	if depth > maxDepth {
		if leafAtDepth {
			*out = append(*out, r)
		}
		return
	}
	for _, horiz := range []bool{true, false} {
		if (horiz && known == cutRows) || (!horiz && known == cutCols) {
			continue
		}
		parts := splitFlat(p, r, horiz)
		if len(parts) == 1 && parts[0] == r {
			continue
		}
		k := cutCols
		if horiz {
			k = cutRows
		}
		for _, q := range parts {
			cut(p, q, depth+1, maxDepth, leafAtDepth, k, out)
		}
		return
	}
	*out = append(*out, r)
}

// splitFlat returns the parts of r between runs of flat lines (rows when
// horiz), trimming flat lines at its ends. A region that is all flat has
// no parts.
func splitFlat(p *cutPlane, r image.Rectangle, horiz bool) []image.Rectangle {
	n := r.Dy()
	if !horiz {
		n = r.Dx()
	}
	flat := make([]bool, n)
	if p.fast {
		flatLinesC(p.src, r, horiz, grow(&p.hist, 66*r.Dx()), flat)
		return runs(r, flat, horiz)
	}
	for i := range n {
		if horiz {
			y := r.Min.Y + i
			flat[i] = isFlatBinned(p.p[y*p.w+r.Min.X:y*p.w+r.Max.X], p.b[y*p.w+r.Min.X:y*p.w+r.Max.X])
		} else {
			x := r.Min.X + i
			flat[i] = isFlatBinned(p.pt[x*p.h+r.Min.Y:x*p.h+r.Max.Y], p.bt[x*p.h+r.Min.Y:x*p.h+r.Max.Y])
		}
	}
	return runs(r, flat, horiz)
}

// runs returns the parts of r between runs of flat lines.
func runs(r image.Rectangle, flat []bool, horiz bool) []image.Rectangle {
	n := len(flat)
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
	// The median from a 64-bin histogram (4 grey levels a bin), counted in
	// four interleaved histograms: a flat line increments one bin over and
	// over, and one histogram would wait on each increment's store.
	var hist [4][65]int32
	n4 := len(line) &^ 3
	for i := 0; i < n4; i += 4 {
		hist[0][min(max(int(line[i])/4, 0), 64)]++
		hist[1][min(max(int(line[i+1])/4, 0), 64)]++
		hist[2][min(max(int(line[i+2])/4, 0), 64)]++
		hist[3][min(max(int(line[i+3])/4, 0), 64)]++
	}
	for _, v := range line[n4:] {
		hist[0][min(max(int(v)/4, 0), 64)]++
	}
	return flatAround(line, &hist)
}

// isFlatBinned is isFlat for a line whose values' bins are known.
func isFlatBinned(line []float32, bins []uint8) bool {
	var hist [4][65]int32
	n4 := len(bins) &^ 3
	for i := 0; i < n4; i += 4 {
		hist[0][bins[i]]++
		hist[1][bins[i+1]]++
		hist[2][bins[i+2]]++
		hist[3][bins[i+3]]++
	}
	for _, b := range bins[n4:] {
		hist[0][b]++
	}
	return flatAround(line, &hist)
}

// flatAround finishes isFlat: the median bin from the histograms, then
// the share of values near it.
func flatAround(line []float32, hist *[4][65]int32) bool {
	half, acc, bin := int32(len(line)/2), int32(0), 0
	for b := range hist[0] {
		acc += hist[0][b] + hist[1][b] + hist[2][b] + hist[3][b]
		if acc > half {
			bin = b
			break
		}
	}
	med := float32(bin*4 + 2)
	// At most n - ceil(flatShare n) values may stray: stop at the first
	// one more (most lines of a photo stray early).
	allowed := len(line) - int(math.Ceil(flatShare*float64(len(line))))
	for _, v := range line {
		if d := v - med; d > flatTol+2 || d < -flatTol-2 {
			if allowed--; allowed < 0 {
				return false
			}
		}
	}
	return true
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

// ContentHashes returns img's PDQ hash, its canonical dihedral hashes
// (pdq.Hasher.HashCanonical) and its quality, bit for bit as plain PDQ
// computes them, with the PDQ hashes of its content rectangles (at most
// two, largest first: the picture inside a meme's caption band, an app's
// or a browser's frame, letterbox bars), the rectangles found on one
// luminance plane.
// Each rectangle's hash is followed by its canonical hashes when canonical
// is set (concatenated 32 bytes a hash); a rectangle whose hash has quality
// under minQuality is left out. An image with no content rectangle (most
// photos) has no rectangle hashes (its cleaned hash only, below).
// Near-duplicate clusters link an image by
// these besides its whole-image hashes, so a meme or a screenshot of a
// picture joins the picture's cluster whichever arrived first
// (domain.Record.PDQRegions).
//
// Unless the image is framed, the list ends with its cleaned hash
// (cleanedHash, moved into a space of its own by cleanedSpace: it meets
// only other cleaned hashes): the picture, the largest content rectangle
// or else the whole image, with bright thin overlays such as a watermark
// suppressed, so that a watermarked copy joins its picture's cluster.
//
// framed reports that the largest of those rectangles covers less than
// half of the image (FramedShare): a screenshot, a picture in a wide
// frame. The whole-image hash of such an image is mostly its frame's, and
// two screenshots of different pictures in the same app can lie within 31
// bits of each other, so clusters link a framed image by its regions alone,
// and not at all when its picture is too flat for its hash to be kept
// (quality under minQuality: framed, and no regions).
func (h *Hasher) ContentHashes(img image.Image, canonical bool, minQuality int) (whole pdq.Hash, canon []pdq.Hash, quality int, regions []byte, framed bool, err error) {
	regions, framed, err = h.RegionHashes(img, canonical, minQuality)
	if err != nil {
		return whole, nil, 0, nil, false, err
	}
	// The image's own hashes from the image (pdq's fastest path for the
	// pipeline's decoded images); the rectangles' from the plane.
	whole, canon, quality = h.pdq.HashCanonical(img)
	return whole, canon, quality, regions, framed, nil
}

// RegionHashes is ContentHashes without the whole image's hashes (for a
// caller that has them).
func (h *Hasher) RegionHashes(img image.Image, canonical bool, minQuality int) (regions []byte, framed bool, err error) {
	luma, w, hh, err := h.lumaOf(img)
	if err != nil {
		return nil, false, err
	}
	rects := h.contentRects(luma, w, hh, maxContentRects, regionCutSide)
	if len(rects) > 0 { // the largest, whether its hash is kept or not
		framed = float64(rects[0].Dx()*rects[0].Dy()) < FramedShare*float64(w*hh)
	}
	for _, r := range rects {
		sub := (&plane{w: w, h: hh, p: luma}).crop(r.Min.X, r.Min.Y, r.Max.X, r.Max.Y)
		v, cs, q := h.pdq.HashCanonicalPlane(sub.p, sub.w, sub.h)
		if q < minQuality {
			continue
		}
		regions = append(regions, v[:]...)
		if canonical {
			for _, c := range cs {
				if c != v {
					regions = append(regions, c[:]...)
				}
			}
		}
	}
	if !framed {
		// The cleaned picture (cleanedHash): a watermarked copy links
		// with its picture by it. The picture is the largest content
		// rectangle when there is one: a caption's lettering, cleaned,
		// looks alike under every meme.
		p := &plane{w: w, h: hh, p: luma}
		if len(rects) > 0 {
			p = p.crop(rects[0].Min.X, rects[0].Min.Y, rects[0].Max.X, rects[0].Max.Y)
		}
		if v, q := h.cleanedHash(p.p, p.w, p.h); q >= minQuality {
			v = cleanedSpace(v)
			regions = append(regions, v[:]...)
		}
	}
	return regions, framed, nil
}

// RegionMatchHashes returns the hashes by which a region list
// (RegionHashes, domain.Record.PDQRegions) matches whole-image PDQ hashes
// such as a bank's entries: content holds every hash of the list as
// stored (its content rectangles' hashes match as they are), cleaned every
// hash moved back out of the cleaned hashes' space (the picture's cleaned
// hash, stored moved, matches that way). A hash of one kind moved the
// other way lies about 128 bits from every PDQ hash, so it matches nothing
// and the list needs no marks.
func RegionMatchHashes(regions []byte) (content, cleaned []pdq.Hash) {
	for k := 0; k+len(pdq.Hash{}) <= len(regions); k += len(pdq.Hash{}) {
		h := pdq.Hash(regions[k : k+len(pdq.Hash{})])
		content = append(content, h)
		cleaned = append(cleaned, cleanedSpace(h))
	}
	return content, cleaned
}

// FramedShare is the share of an image below which its largest content
// rectangle makes it framed (ContentHashes).
const FramedShare = 0.5
