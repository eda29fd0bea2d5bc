package neardup

import (
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
	k := max(3, int(math.Round(float64(min(p.w, p.h))*cleanFrac))|1)
	open := make([]float32, len(p.p))
	tmp := make([]float32, len(p.p))
	morph(p.p, tmp, p.w, p.h, k, true, false)
	morph(tmp, open, p.w, p.h, k, false, false)
	morph(open, tmp, p.w, p.h, k, true, true)
	morph(tmp, open, p.w, p.h, k, false, true)
	for i, v := range p.p {
		if v-open[i] > cleanLift {
			p.p[i] = open[i]
		}
	}
	return p
}

// morph writes to out the minimum (or, with isMax, the maximum) of in over
// a window of k pixels centred on each pixel, along rows (horiz) or
// columns, the window clipped at the borders. It is van Herk's and Gil and
// Werman's algorithm: running minima from the left and from the right of
// blocks of k, three comparisons a pixel whatever k is. The maximum is the
// minimum of the negated plane, negated. Columns are done a row at a time
// (whole rows of running minima), as the plane lies in memory.
func morph(in, out []float32, w, h, k int, horiz, isMax bool) {
	src := in
	if isMax {
		src = make([]float32, len(in))
		for i, v := range in {
			src[i] = -v
		}
	}
	if horiz {
		erodeRows(src, out, w, h, k/2)
	} else {
		erodeCols(src, out, w, h, k/2)
	}
	if isMax {
		for i, v := range out {
			out[i] = -v
		}
	}
}

// erodeRows is morph's minimum along each row over [x-r, x+r].
func erodeRows(in, out []float32, w, h, r int) {
	k := 2*r + 1
	// Each row is padded with r values of +Inf on each side, so that
	// every window spans k values and so covers at most two blocks: pixel
	// x's window is [x, x+2r] of the padded row.
	m := w + 2*r
	line := make([]float32, m)
	fwd := make([]float32, m)
	bwd := make([]float32, m)
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
		for x := range o {
			o[x] = min(bwd[x], fwd[x+2*r])
		}
	}
}

// erodeCols is morph's minimum along each column over [y-r, y+r], by
// whole rows: the running minima of blocks of k rows, from the top and
// from the bottom, then each output row the minimum of two of them.
func erodeCols(in, out []float32, w, h, r int) {
	k := 2*r + 1
	m := h + 2*r // rows, padded with r rows of +Inf above and below
	fwd := make([]float32, m*w)
	bwd := make([]float32, m*w)
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
			for x := range cur {
				cur[x] = min(cur[x], prev[x])
			}
		}
		fill(bwd[(end-1)*w:end*w], end-1)
		for j := end - 2; j >= i; j-- {
			next, cur := bwd[(j+1)*w:(j+2)*w], bwd[j*w:(j+1)*w]
			fill(cur, j)
			for x := range cur {
				cur[x] = min(cur[x], next[x])
			}
		}
	}
	for y := range h {
		b, f, o := bwd[y*w:(y+1)*w], fwd[(y+2*r)*w:(y+2*r+1)*w], out[y*w:(y+1)*w]
		for x := range o {
			o[x] = min(b[x], f[x])
		}
	}
}
