package neardup

import (
	"image"
	"math"

	"github.com/xmodal/xmodal/encoders/pdq"
)

// Cleaned hashes: a semi-transparent watermark (a handle or a word in
// white across a picture or in a corner) lifts the brightness of thin
// strokes, and across a smooth picture that is enough to move its
// whole-image PDQ hash 34-56 bits while leaving no window to match either.
// A morphological opening (a grey-level erosion then dilation with a
// square larger than a stroke is wide) removes bright structures thinner
// than the square and keeps the rest; pixels that the opening lowers by
// more than cleanLift grey levels take its value. The cleaned picture of a
// watermarked copy and that of its original then lie close (2-6 bits on the
// generated misses, against 34-56 between their plain hashes), because
// the same suppression takes the original's own small bright details as
// well. So a cleaned hash is compared only with cleaned hashes.
//
// cleanSide is the longer side of the plane it runs on; cleanFrac the
// square's side as a share of the plane's shorter side (a stroke of the
// watermark generator's large lettering is about 3 % of the height);
// cleanLift the least lowering, in grey levels, that counts.
const (
	cleanSide = 256
	cleanFrac = 1.0 / 20
	cleanLift = 10
)

// cleanedHash returns the PDQ hash, and its quality, of a w x hh luma
// plane with bright thin overlays suppressed (see cleanSide): near-duplicate
// clusters link two images whose cleaned hashes lie within their
// threshold, so that a watermarked copy joins its picture (RegionHashes).
func (h *Hasher) cleanedHash(luma []float32, w, hh int) (pdq.Hash, int) {
	p := h.cleanPlane(luma, w, hh)
	return h.pdq.HashLuma(p.p, p.w, p.h)
}

// cleanedRect is cleanedHash of the rectangle r of a w x hh luma plane.
func (h *Hasher) cleanedRect(luma []float32, w, hh int, r image.Rectangle) (pdq.Hash, int) {
	p := &plane{w: w, h: hh, p: luma}
	if r != image.Rect(0, 0, w, hh) {
		p = p.crop(r.Min.X, r.Min.Y, r.Max.X, r.Max.Y)
	}
	return h.cleanedHash(p.p, p.w, p.h)
}

// cleanedSpace moves a cleaned hash into a space of its own (inSpace), so
// that, in a list of hashes compared each with each (the hashes a
// near-duplicate cluster member links by), it lies within a threshold of
// other cleaned hashes only.
func cleanedSpace(v pdq.Hash) pdq.Hash { return inSpace(v, cleanedSpaceByte) }

// cleanPlane returns the opened-where-lifted plane of a w x hh luma plane,
// at most cleanSide on its longer side.
func (h *Hasher) cleanPlane(luma []float32, w, hh int) *plane {
	s := math.Min(1, cleanSide/float64(max(w, hh)))
	pw, ph := max(int(math.Round(float64(w)*s)), 1), max(int(math.Round(float64(hh)*s)), 1)
	var p *plane
	if s == 1 {
		p = &plane{w: w, h: hh, p: append([]float32(nil), luma...)}
	} else if h.useFast() {
		p = h.fs.resample(luma, w, hh, pw, ph)
	} else {
		p = resampleArea(luma, w, hh, pw, ph)
	}
	h.openLifted(p, cleanSquare(p))
	return p
}

// cleanSquare is the side of the opening's square on plane p.
func cleanSquare(p *plane) int {
	return max(3, int(math.Round(float64(min(p.w, p.h))*cleanFrac))|1)
}

// openLifted replaces, in place, every pixel of p that the opening with a
// k x k square lowers by more than cleanLift grey levels with the
// opening's value.
func (h *Hasher) openLifted(p *plane, k int) {
	if h.useFast() {
		cleanC(h.fs.avx2, p, k, cleanLift)
		return
	}
	// The opening: erosion (minimum over k x k), then dilation, the
	// maximum, done as the minimum of the negated plane, negated.
	var sc morphScratch
	open := make([]float32, len(p.p))
	tmp := make([]float32, len(p.p))
	sc.erode(p.p, tmp, p.w, p.h, k, true)
	sc.erode(tmp, open, p.w, p.h, k, false)
	for i, v := range open {
		open[i] = -v
	}
	sc.erode(open, tmp, p.w, p.h, k, true)
	sc.erode(tmp, open, p.w, p.h, k, false)
	for i, v := range p.p {
		if o := -open[i]; v-o > cleanLift {
			p.p[i] = o
		}
	}
}

// morph writes to out the minimum (or, with isMax, the maximum) of in over
// a window of k pixels centred on each pixel, along rows (horiz) or
// columns, the window clipped at the borders. It is van Herk's and Gil and
// Werman's algorithm: running minima from the left and from the right of
// blocks of k, three comparisons a pixel whatever k is. The maximum is the
// minimum of the negated plane, negated. Columns are done a row at a time
// (whole rows of running minima), as the plane lies in memory.
func morph(in, out []float32, w, h, k int, horiz, isMax bool) {
	var sc morphScratch
	src := in
	if isMax {
		src = make([]float32, len(in))
		for i, v := range in {
			src[i] = -v
		}
	}
	sc.erode(src, out, w, h, k, horiz)
	if isMax {
		for i, v := range out {
			out[i] = -v
		}
	}
}

// morphScratch holds the running minima of erode, reused from call to
// call.
type morphScratch struct{ fwd, bwd, line []float32 }

// erode is morph's minimum along rows (horiz) or columns.
func (sc *morphScratch) erode(in, out []float32, w, h, k int, horiz bool) {
	if horiz {
		sc.erodeRows(in, out, w, h, k/2)
	} else {
		sc.erodeCols(in, out, w, h, k/2)
	}
}

// erodeRows is morph's minimum along each row over [x-r, x+r].
func (sc *morphScratch) erodeRows(in, out []float32, w, h, r int) {
	k := 2*r + 1
	// Each row is padded with r values of +Inf on each side, so that
	// every window spans k values and so covers at most two blocks: pixel
	// x's window is [x, x+2r] of the padded row.
	m := w + 2*r
	line, fwd, bwd := grow(&sc.line, m), grow(&sc.fwd, m), grow(&sc.bwd, m)
	inf := float32(math.Inf(1))
	for i := range r {
		line[i], line[m-1-i] = inf, inf
	}
	for y := range h {
		copy(line[r:r+w], in[y*w:(y+1)*w])
		for i := 0; i < m; i += k {
			end := min(i+k, m)
			fwd[i] = line[i]
			for j := i + 1; j < end; j++ {
				fwd[j] = min(fwd[j-1], line[j])
			}
			bwd[end-1] = line[end-1]
			for j := end - 2; j >= i; j-- {
				bwd[j] = min(bwd[j+1], line[j])
			}
		}
		o := out[y*w : (y+1)*w]
		b, f := bwd[:len(o)], fwd[2*r:2*r+len(o)]
		for x := range o {
			o[x] = min(b[x], f[x])
		}
	}
}

// erodeCols is morph's minimum along each column over [y-r, y+r], by
// whole rows: the running minima of blocks of k rows, from the top and
// from the bottom, then each output row the minimum of two of them.
func (sc *morphScratch) erodeCols(in, out []float32, w, h, r int) {
	k := 2*r + 1
	m := h + 2*r // rows, padded with r rows of +Inf above and below
	fwd, bwd := grow(&sc.fwd, m*w), grow(&sc.bwd, m*w)
	inf := float32(math.Inf(1))
	row := func(y int) []float32 { // padded row y of the input
		return in[(y-r)*w : (y-r+1)*w]
	}
	fill := func(dst []float32, y int) {
		if y < r || y >= r+h {
			for i := range dst {
				dst[i] = inf
			}
			return
		}
		copy(dst, row(y))
	}
	for i := 0; i < m; i += k {
		end := min(i+k, m)
		fill(fwd[i*w:(i+1)*w], i)
		for j := i + 1; j < end; j++ {
			prev, cur := fwd[(j-1)*w:j*w], fwd[j*w:(j+1)*w]
			fill(cur, j)
			prev = prev[:len(cur)]
			for x := range cur {
				cur[x] = min(cur[x], prev[x])
			}
		}
		fill(bwd[(end-1)*w:end*w], end-1)
		for j := end - 2; j >= i; j-- {
			next, cur := bwd[(j+1)*w:(j+2)*w], bwd[j*w:(j+1)*w]
			fill(cur, j)
			next = next[:len(cur)]
			for x := range cur {
				cur[x] = min(cur[x], next[x])
			}
		}
	}
	for y := range h {
		o := out[y*w : (y+1)*w]
		b, f := bwd[y*w:y*w+len(o)], fwd[(y+2*r)*w:(y+2*r)*w+len(o)]
		for x := range o {
			o[x] = min(b[x], f[x])
		}
	}
}
