package neardup

import (
	"math"
)

// The pixel check of a window match. Windows agree on a map from the
// query to the original, but a few windows can agree by chance between
// two different pictures of similar content (at 10,000 originals, 4 in
// 10,000 distractor queries did: 2-5 agreeing windows at 12-22 bits). So
// each indexed image keeps a patch, its luminance reduced to
// PatchSide x PatchSide cells (the whole image, stretched; PatchSide^2
// bytes), and a window match stands only when the query's pixels, read
// through the map at the cells the query shows, correlate with the
// patch's cells (Pearson's r, which brightness, contrast and greyscale
// leave unchanged): the cells' values at least MinPixelCorr and, where
// the original has detail at the scale of a cell, the cells' detail at
// least MinPixelDetail; where it has none (a smooth photo), the values
// at least MinPixelCorrSmooth. A re-post agrees at the scale of a cell
// whatever its JPEG quality, watermark or scale; a different picture of
// similar layout that shares a few windows agrees on the values (0.9 was
// seen) but not on the detail (at most 0.63 in the 10k eval).

// PatchSide is the side of an indexed image's patch, in cells.
const PatchSide = 24

// patchBytes is the stored size of a patch.
const patchBytes = PatchSide * PatchSide

// patchOf reduces a w x h luma plane to the patch (each cell the
// area-weighted mean of the pixels it covers, rounded to a byte).
func patchOf(luma []float32, w, h int) []byte {
	p := resampleArea(luma, w, h, PatchSide, PatchSide)
	out := make([]byte, patchBytes)
	for i, v := range p.p {
		out[i] = byte(min(max(math.Round(float64(v)), 0), 255))
	}
	return out
}

// queryPixels is a query's luminance, reduced (the whole query's working
// plane, workSide pixels on its longer side: a cell of a patch is
// 1/PatchSide of the original, and a query shows at least minCovered of
// it, so a cell spans a few of these pixels at the least), with its
// summed-area table for box means.
type queryPixels struct {
	w, h   int
	sx, sy float64   // plane pixels per query pixel
	sum    []float64 // (w+1) x (h+1) summed-area table
}

// newQueryPixels reads p, the whole w x h query reduced (p is not kept).
func newQueryPixels(p *plane, w, h int) *queryPixels {
	pw, ph := p.w, p.h
	qp := &queryPixels{w: pw, h: ph, sx: float64(pw) / float64(w), sy: float64(ph) / float64(h), sum: make([]float64, (pw+1)*(ph+1))}
	for y := range ph {
		row := 0.0
		for x := range pw {
			row += float64(p.p[y*pw+x])
			qp.sum[(y+1)*(pw+1)+x+1] = qp.sum[y*(pw+1)+x+1] + row
		}
	}
	return qp
}

// boxMean is the mean of the plane over [x0, x1) x [y0, y1) in plane
// pixels (rounded to whole pixels, at least one).
func (qp *queryPixels) boxMean(x0, y0, x1, y1 float64) float64 {
	ix0 := min(max(int(math.Round(x0)), 0), qp.w-1)
	iy0 := min(max(int(math.Round(y0)), 0), qp.h-1)
	ix1 := min(max(int(math.Round(x1)), ix0+1), qp.w)
	iy1 := min(max(int(math.Round(y1)), iy0+1), qp.h)
	s := qp.sum
	W := qp.w + 1
	v := s[iy1*W+ix1] - s[iy0*W+ix1] - s[iy1*W+ix0] + s[iy0*W+ix0]
	return v / float64((ix1-ix0)*(iy1-iy0))
}

// minPatchCells is the least number of cells the query must show for the
// pixel check to decide; fewer and a window match is refused.
const minPatchCells = 32

// pixelAgreement compares the patch of an original of W x H pixels with
// the query's pixels under inv (original pixels to query pixels), over the
// cells whose image under inv lies inside the query rectangle [rx0, rx1) x
// [ry0, ry1), cells of them: r is Pearson's correlation of the cells'
// values; detail that of their detail (a cell less the mean of its four
// neighbours, for the cells whose neighbours are shown too), which the
// layout of a scene (a sky above, a ground below) does not carry, and
// judged whether the original has detail to compare (a standard deviation
// of at least one level; a smooth photo has not). A correlation is 0 where
// the query side is flat.
func pixelAgreement(patch []byte, W, H float64, qp *queryPixels, inv affine, rx0, ry0, rx1, ry1 float64) (r, detail float64, judged bool, cells int) {
	cw, ch := W/PatchSide, H/PatchSide
	var qa [PatchSide * PatchSide]float64
	var in [PatchSide * PatchSide]bool
	var pa, pb pearson
	for j := range PatchSide {
		for i := range PatchSide {
			x0, y0 := float64(i)*cw, float64(j)*ch
			// The cell's corners in the query.
			qx0, qy0, qx1, qy1 := math.Inf(1), math.Inf(1), math.Inf(-1), math.Inf(-1)
			for _, c := range [4][2]float64{{x0, y0}, {x0 + cw, y0}, {x0, y0 + ch}, {x0 + cw, y0 + ch}} {
				x, y := inv.apply(c[0], c[1])
				qx0, qy0, qx1, qy1 = math.Min(qx0, x), math.Min(qy0, y), math.Max(qx1, x), math.Max(qy1, y)
			}
			if qx0 < rx0-0.5 || qy0 < ry0-0.5 || qx1 > rx1+0.5 || qy1 > ry1+0.5 {
				continue
			}
			k := j*PatchSide + i
			in[k] = true
			qa[k] = qp.boxMean(qx0*qp.sx, qy0*qp.sy, qx1*qp.sx, qy1*qp.sy)
			pa.add(float64(patch[k]), qa[k])
			cells++
		}
	}
	for j := 1; j < PatchSide-1; j++ {
		for i := 1; i < PatchSide-1; i++ {
			k := j*PatchSide + i
			if !in[k] || !in[k-1] || !in[k+1] || !in[k-PatchSide] || !in[k+PatchSide] {
				continue
			}
			a := float64(patch[k]) - (float64(patch[k-1])+float64(patch[k+1])+float64(patch[k-PatchSide])+float64(patch[k+PatchSide]))/4
			b := qa[k] - (qa[k-1]+qa[k+1]+qa[k-PatchSide]+qa[k+PatchSide])/4
			pb.add(a, b)
		}
	}
	return pa.r(), pb.r(), pb.varA() >= 1, cells
}

// pearson accumulates Pearson's correlation of pairs.
type pearson struct{ n, sa, sb, saa, sbb, sab float64 }

func (p *pearson) add(a, b float64) {
	p.n++
	p.sa, p.sb, p.saa, p.sbb, p.sab = p.sa+a, p.sb+b, p.saa+a*a, p.sbb+b*b, p.sab+a*b
}

// varA is the variance of the first values (0 without pairs).
func (p *pearson) varA() float64 {
	if p.n == 0 {
		return 0
	}
	m := p.sa / p.n
	return p.saa/p.n - m*m
}

// r is the correlation, 0 without pairs or where either side has a
// standard deviation under one level.
func (p *pearson) r() float64 {
	if p.n == 0 {
		return 0
	}
	ma, mb := p.sa/p.n, p.sb/p.n
	va, vb := p.saa/p.n-ma*ma, p.sbb/p.n-mb*mb
	if va < 1 || vb < 1 {
		return 0
	}
	return (p.sab/p.n - ma*mb) / math.Sqrt(va*vb)
}
