package neardup

import (
	"image"
	"math"

	"github.com/xmodal/xmodal/encoders/pdq"
)

// QueryHash is one hash of a query.
type QueryHash struct {
	Hash pdq.Hash
	Kind Kind
	// Rect indexes Query.Rects: the part of the query image hashed (0:
	// the whole image, then content rectangles).
	Rect int
	// Transform is the dihedral variant of the query's pixels hashed.
	Transform pdq.Dihedral
	Quality   int
	// A window's frame in query pixels (Kind Window).
	cx, cy, side, angle float64
	// A window's plane (the index of its working size among the
	// rectangle's: 0 workSide, 1 nearCropScale, 2 cropScale; plus the
	// number of sizes for an overlay-cleaned or a smoothed plane, plus
	// twice that for a smoothed plane after an overlay-cleaned one), its
	// rank among the plane's windows, and whether it is a runner-up
	// variant.
	plane, rank int
	alt         bool
	// overlay marks a window of an overlay-cleaned plane.
	overlay bool
	// smoothed marks a window of the smoothed crop plane (see
	// smoothCropPlane).
	smoothed bool
	// flips are the low key's least certain bits (keyFlips), for the
	// canonical variant of a window of the crop plane (hasFlips): the low
	// seeds probe the key with each flipped too (lowseed.go).
	flips    [lowFlips]uint8
	hasFlips bool
	// Cleaned marks the PDQ hash (Kind Whole, upright) of the rectangle
	// with bright thin overlays suppressed (cleanedHash): a watermark
	// across a smooth picture moves the plain hash 34-56 bits; the cleaned
	// hash of the copy lies near the original's cleaned hash (Kind
	// Cleaned, indexed with windows) and often near its plain hash too
	// (the opening finds little else to remove in a smooth picture). It is
	// matched against both within WholeDistance only (no pixel-verified
	// band).
	Cleaned bool
}

// Query is what Hasher.Query computes from a query image.
type Query struct {
	W, H int
	// Rects are the hypotheses of where the picture lies in the query:
	// [0] the whole image, then content rectangles, in query pixels.
	Rects  []image.Rectangle
	Hashes []QueryHash
	// pixels is the reduced luminance the pixel check reads (nil without
	// windows); cleanPixels that of the whole image with a watermark's
	// lettering unblended (letteringCleaned; nil when it found none).
	pixels, cleanPixels *queryPixels
}

// maxContentRects bounds the content rectangles of one query.
const maxContentRects = 2

// Query computes the hashes of a query image: the whole image's and each
// content rectangle's PDQ hash in all eight dihedral variants, their area
// hashes, and the windows of each. It refuses images as Signatures does.
func (h *Hasher) Query(img image.Image) (*Query, error) {
	return h.query(img, true, false)
}

// PartsQuery is Query with the windows of the whole image drawn larger
// too, at partScales of the working size: a 90 % or 75 % crop of the
// image, hashed at the working size, shows the content that much larger.
// Searched with SearchOptions.Parts, it finds the indexed images that show
// a part of the query image (its crops) beside its copies.
func (h *Hasher) PartsQuery(img image.Image) (*Query, error) {
	return h.query(img, true, true)
}

// QueryRects is Query without windows: the whole image's and the content
// rectangles' PDQ hashes only, for an index that holds whole-image PDQ
// hashes alone (they find caption bands, frames and borders, not crops).
func (h *Hasher) QueryRects(img image.Image) (*Query, error) {
	return h.query(img, false, false)
}

func (h *Hasher) query(img image.Image, windows, parts bool) (*Query, error) {
	luma, w, hh, err := h.lumaOf(img)
	if err != nil {
		return nil, err
	}
	q := &Query{W: w, H: hh, Rects: []image.Rectangle{image.Rect(0, 0, w, hh)}}
	q.Rects = append(q.Rects, h.contentRects(luma, w, hh, maxContentRects, cutSide)...)
	var lettering *plane // of the rectangle, at letterSide (letteringCleaned)
	for ri, r := range q.Rects {
		var vs [8]pdq.Hash
		var qual int
		if ri == 0 {
			vs, qual = h.wholeHashes(luma, w, hh)
		} else {
			sub := (&plane{w: w, h: hh, p: luma}).crop(r.Min.X, r.Min.Y, r.Max.X, r.Max.Y)
			vs, qual = h.pdq.DihedralPlane(sub.p, sub.w, sub.h)
		}
		for d, v := range vs {
			q.Hashes = append(q.Hashes, QueryHash{Hash: v, Kind: Whole, Rect: ri, Transform: pdq.Dihedral(d), Quality: qual})
		}
		if cv, cq := h.cleanedRect(luma, w, hh, r); cv != vs[pdq.Original] {
			q.Hashes = append(q.Hashes, QueryHash{Hash: cv, Kind: Whole, Rect: ri, Transform: pdq.Original, Quality: cq, Cleaned: true})
		}
		if !windows {
			continue
		}
		// The area hash (upright only), which meets indexed area hashes:
		// a downscale that moved the PDQ hash.
		av, aq := h.areaHash(luma, w, hh, r)
		q.Hashes = append(q.Hashes, QueryHash{Hash: av, Kind: Area, Rect: ri, Transform: pdq.Original, Quality: aq})
		sizes := []int{workSide, int(math.Round(nearCropScale * workSide))}
		if ri == 0 {
			sizes = append(sizes, int(math.Round(cropScale*workSide)))
			if parts {
				for _, f := range partScales {
					sizes = append(sizes, int(math.Round(f*workSide)))
				}
			}
		}
		for pi, size := range sizes {
			p := h.workPlaneSized(luma, w, hh, r, size)
			if ri == 0 && pi == 0 {
				q.pixels = newQueryPixels(p, w, hh)
			}
			limit := maxQueryWins
			if h.opts.QueryWindows > 0 {
				limit = h.opts.QueryWindows
			}
			planes := []*plane{p}
			// A watermark's lettering on the picture (the whole image, or
			// each content rectangle where there are some: the lettering
			// of a caption band is no watermark): the windows of the plane
			// with the lettering unblended too (overlay.go). The whole
			// image's cleaned pixels serve the pixel check in any case.
			if pi < overlayPlanes && (ri > 0 || len(q.Rects) == 1 || pi == 0) {
				if pi == 0 {
					lettering = h.letteringCleaned(luma, w, hh, r)
				}
				if lettering != nil {
					pc := h.workPlaneSized(lettering.p, lettering.w, lettering.h, image.Rect(0, 0, lettering.w, lettering.h), size)
					if ri > 0 || len(q.Rects) == 1 {
						planes = append(planes, pc)
					}
					if ri == 0 && pi == 0 {
						q.cleanPixels = newQueryPixels(pc, w, hh)
					}
				}
			}
			// The whole image's crop plane smoothed too (smoothCropPlane).
			smooth := len(planes)
			if ri == 0 && pi == 2 && smoothCropPlane {
				planes = append(planes, p.smoothed())
			}
			for ci, pl := range planes {
				// Plane pixels to query pixels.
				sx, sy := float64(r.Dx())/float64(pl.w), float64(r.Dy())/float64(pl.h)
				// The crop plane's windows (plain and smoothed) say which
				// of their low key's bits are least certain (lowseed.go).
				crop := ri == 0 && pi == 2
				ws := h.windows(pl, queryKeypoints, queryMinPair, queryMaxPair, queryMargin, limit, false, crop)
				for wi, wd := range ws {
					for k, hv := range wd.hashes {
						qh := QueryHash{Hash: hv, Kind: Window, Rect: ri, Transform: wd.variants[k], Quality: wd.quality,
							cx: float64(r.Min.X) + wd.cx*sx, cy: float64(r.Min.Y) + wd.cy*sy, side: wd.side * sx, angle: wd.angle,
							plane: pi + ci*len(sizes), rank: wi, alt: k > 0, overlay: ci > 0 && ci < smooth, smoothed: ci == smooth}
						if crop && k == 0 {
							qh.flips, qh.hasFlips = wd.flips, true
						}
						q.Hashes = append(q.Hashes, qh)
					}
				}
			}
		}
	}
	return q, nil
}

// affine is a map x -> A x + t between pixel frames.
type affine struct{ a, b, c, d, tx, ty float64 }

func (m affine) apply(x, y float64) (float64, float64) {
	return m.a*x + m.b*y + m.tx, m.c*x + m.d*y + m.ty
}

// inverse returns the inverse map (false when m is singular).
func (m affine) inverse() (affine, bool) {
	det := m.a*m.d - m.b*m.c
	if det == 0 {
		return affine{}, false
	}
	a, b, c, d := m.d/det, -m.b/det, -m.c/det, m.a/det
	return affine{a, b, c, d, -(a*m.tx + b*m.ty), -(c*m.tx + d*m.ty)}, true
}

// gridMat is the action of a dihedral variant on window grid coordinates
// (a along the pair, b across; PDQ's meaning of the variants, y down).
var gridMat = [8][4]float64{
	pdq.Original:   {1, 0, 0, 1},
	pdq.Rotate90:   {0, 1, -1, 0},
	pdq.Rotate180:  {-1, 0, 0, -1},
	pdq.Rotate270:  {0, -1, 1, 0},
	pdq.FlipX:      {1, 0, 0, -1},
	pdq.FlipY:      {-1, 0, 0, 1},
	pdq.FlipPlus1:  {0, 1, 1, 0},
	pdq.FlipMinus1: {0, -1, -1, 0},
}

// windowMap is the map from query pixels to original pixels that a
// matched pair of windows implies: query grid coordinates go through the
// query's variant, back through the original's, onto the original's
// frame.
func windowMap(qs, qa, qx, qy float64, qv pdq.Dihedral, is, ia, ix, iy float64, iv pdq.Dihedral) affine {
	// Query pixel -> query grid: g = R(-qa) (x - c) / qs.
	cq, sq := math.Cos(qa), math.Sin(qa)
	q2g := [4]float64{cq / qs, sq / qs, -sq / qs, cq / qs}
	// Variant actions: hashed image = variant applied to the grid. Equal
	// hashes mean Gq gq = Gi gi, so gi = Gi^T Gq gq.
	gq, gi := gridMat[qv], gridMat[iv]
	m := mul2(transpose2(gi), gq)
	// Original grid -> original pixels: x = c + is R(ia) g.
	ci, si := math.Cos(ia), math.Sin(ia)
	g2o := [4]float64{ci * is, -si * is, si * is, ci * is}
	a := mul2(g2o, mul2(m, q2g))
	// t = ic - A qc
	tx := ix - (a[0]*qx + a[1]*qy)
	ty := iy - (a[2]*qx + a[3]*qy)
	return affine{a[0], a[1], a[2], a[3], tx, ty}
}

func mul2(x, y [4]float64) [4]float64 {
	return [4]float64{x[0]*y[0] + x[1]*y[2], x[0]*y[1] + x[1]*y[3], x[2]*y[0] + x[3]*y[2], x[2]*y[1] + x[3]*y[3]}
}

func transpose2(x [4]float64) [4]float64 { return [4]float64{x[0], x[2], x[1], x[3]} }

// dihedralOf names the rotation or mirror closest to the linear part of m
// (as pdq names the transformation from the original to the query: the
// inverse of m's).
func dihedralOf(m affine) pdq.Dihedral {
	s := math.Sqrt(math.Abs(m.a*m.d - m.b*m.c))
	if s == 0 {
		return pdq.Original
	}
	// Inverse of a scaled orthogonal matrix: transpose / s^2, and the
	// scale does not matter for the nearest dihedral.
	inv := [4]float64{m.a / s, m.c / s, m.b / s, m.d / s}
	best, bd := pdq.Original, math.Inf(1)
	for d, g := range dihedralMatPixel {
		var e float64
		for i := range 4 {
			e += (inv[i] - g[i]) * (inv[i] - g[i])
		}
		if e < bd {
			best, bd = pdq.Dihedral(d), e
		}
	}
	return best
}

// dihedralMatPixel is each dihedral as a map of centred pixel coordinates
// (x right, y down) of the original to the transformed image.
var dihedralMatPixel = [8][4]float64{
	pdq.Original:   {1, 0, 0, 1},
	pdq.Rotate90:   {0, 1, -1, 0},
	pdq.Rotate180:  {-1, 0, 0, -1},
	pdq.Rotate270:  {0, -1, 1, 0},
	pdq.FlipX:      {1, 0, 0, -1},
	pdq.FlipY:      {-1, 0, 0, 1},
	pdq.FlipPlus1:  {0, 1, 1, 0},
	pdq.FlipMinus1: {0, -1, -1, 0},
}
