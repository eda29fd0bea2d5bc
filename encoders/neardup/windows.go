package neardup

import (
	"math"
	"slices"

	"github.com/xmodal/xmodal/encoders/pdq"
)

// winSize is the side of the grid a window is sampled on before hashing.
const winSize = 32

// window is a square region of the working plane anchored on a pair of
// keypoints: centred on their midpoint, one side along the line through
// them, side proportional to their distance. The frame is therefore the
// same, relative to the content, in any copy of the picture that is
// shifted, scaled, cropped (keeping both keypoints) or rotated.
type window struct {
	cx, cy, side, angle float64 // plane pixels, radians
	// hashes of the canonical variant (and of the other variant when the
	// choice was close) and the variant each is.
	hashes   []pdq.Hash
	variants []pdq.Dihedral
	quality  int
	// flips holds, for the first hash (the canonical variant: the one
	// that seeds), the low key's bits whose coefficients lie nearest the
	// hash's median, least certain first (keyFlips; only when asked for).
	flips [lowFlips]uint8
}

// winFrame is where a window's grid points lie: on src (a level of the
// scale space, sc plane pixels a pixel), at cx, cy + a*(ux, uy) + b*(vx,
// vy) for a, b = (i+0.5)*step - half.
type winFrame struct {
	src                                    *plane
	cx, cy, half, step, ux, uy, vx, vy, sc float64
}

// frameOf is the frame of the window centred on cx, cy with the given side
// and angle, sampled from the level of ss blurred just enough for the
// sampling step; false when a corner leaves the plane.
func frameOf(ss *scaleSpace, p *plane, cx, cy, side, angle float64) (winFrame, bool) {
	step := side / winSize
	src, sc := p, 1.0
	want := 0.5 * step
	for o, lv := range ss.octaves {
		for i, s := range ss.sigmas[o] {
			if s <= want && i < len(lv) {
				src, sc = lv[i], ss.scale[o]
			}
		}
	}
	ux, uy := math.Cos(angle), math.Sin(angle)
	vx, vy := -uy, ux
	half := side / 2
	// Corners must lie inside the plane.
	for _, c := range [4][2]float64{{-1, -1}, {1, -1}, {-1, 1}, {1, 1}} {
		x := cx + c[0]*half*ux + c[1]*half*vx
		y := cy + c[0]*half*uy + c[1]*half*vy
		if x < 0 || y < 0 || x > float64(p.w) || y > float64(p.h) {
			return winFrame{}, false
		}
	}
	return winFrame{src: src, cx: cx, cy: cy, half: half, step: step, ux: ux, uy: uy, vx: vx, vy: vy, sc: sc}, true
}

// sampleWindow fills buf (winSize x winSize) with the plane's values over
// the window, from the level of ss blurred just enough for the sampling
// step.
func sampleWindow(ss *scaleSpace, p *plane, cx, cy, side, angle float64, buf []float32) bool {
	f, ok := frameOf(ss, p, cx, cy, side, angle)
	if !ok {
		return false
	}
	for j := range winSize {
		b := (float64(j)+0.5)*f.step - f.half
		for i := range winSize {
			a := (float64(i)+0.5)*f.step - f.half
			x := f.cx + a*f.ux + b*f.vx
			y := f.cy + a*f.uy + b*f.vy
			buf[j*winSize+i] = f.src.sample(x/f.sc, y/f.sc)
		}
	}
	return true
}

// canonical picks, among the four variants that a swap of the pair's
// order (rotate180) or a mirror image (flipx, flipy) would give, the one
// whose right half and lower half are the brighter ones, so that the index
// stores one hash per window whichever way the copy is turned. It returns
// the variants to try: the canonical one, and the runner-up when the
// choice was within margin (a fraction of the window's mean absolute
// deviation).
func canonical(buf []float32, margin float64) []pdq.Dihedral {
	sx, sy, dev := canonSums(buf)
	return canonicalOf(sx, sy, dev, margin)
}

// canonSums is canonical's sums: of the deviations from the mean, the
// right half's minus the left's (sx) and the lower half's minus the
// upper's (sy), and of their absolute values (dev).
func canonSums(buf []float32) (sx, sy, dev float64) {
	var mean float64
	for _, v := range buf {
		mean += float64(v)
	}
	mean /= float64(len(buf))
	for j := range winSize {
		for i := range winSize {
			v := float64(buf[j*winSize+i]) - mean
			dev += math.Abs(v)
			if i >= winSize/2 {
				sx += v
			} else {
				sx -= v
			}
			if j >= winSize/2 {
				sy += v
			} else {
				sy -= v
			}
		}
	}
	return sx, sy, dev
}

// canonicalOf is canonical from its sums.
func canonicalOf(sx, sy, dev, margin float64) []pdq.Dihedral {
	pick := func(x, y bool) pdq.Dihedral { // x: right half brighter, y: lower half brighter
		switch {
		case x && y:
			return pdq.Original
		case !x && !y:
			return pdq.Rotate180
		case x:
			return pdq.FlipX
		}
		return pdq.FlipY
	}
	px, py := sx >= 0, sy >= 0
	out := []pdq.Dihedral{pick(px, py)}
	if dev == 0 {
		return out
	}
	ax, ay := math.Abs(sx)/dev, math.Abs(sy)/dev
	if ax < margin {
		out = append(out, pick(!px, py))
	}
	if ay < margin {
		out = append(out, pick(px, !py))
	}
	if ax < margin && ay < margin {
		out = append(out, pick(!px, !py))
	}
	return out
}

// pairWindows builds the windows of every pair of keypoints whose distance
// lies in [minD, maxD] (plane pixels), side = sideK times the distance,
// skipping windows that leave the plane or whose quality is under
// minQuality. margin > 0 asks for the runner-up variants of close calls.
// flips asks for the canonical hash's least certain key bits
// (window.flips). fast runs the C kernels (fast.c), the same bits as the
// Go code (avx2: their AVX2 builds).
func pairWindows(ss *scaleSpace, p *plane, kps []keypoint, minD, maxD, sideK float64, minQuality int, margin float64, limit int, central, flips, fast, avx2 bool) []window {
	buf := make([]float32, winSize*winSize)
	type pair struct {
		a, b keypoint
		rank float64
	}
	var pairs []pair
	for i := range kps {
		for j := i + 1; j < len(kps); j++ {
			a, b := kps[i], kps[j]
			rank := float64(i + j)
			if central {
				// How far the window reaches from the centre (fraction of
				// the half-side): crops keep the middle.
				d := math.Hypot(b.x-a.x, b.y-a.y) * sideK
				cx, cy := (a.x+b.x)/2, (a.y+b.y)/2
				reach := math.Max(math.Abs(cx-float64(p.w)/2)+d*0.7, 0)/(float64(p.w)/2) + math.Max(math.Abs(cy-float64(p.h)/2)+d*0.7, 0)/(float64(p.h)/2)
				rank = reach + 0.02*float64(i+j)
			}
			pairs = append(pairs, pair{a, b, rank})
		}
	}
	if fast && !slices.ContainsFunc(pairs, func(x pair) bool { return math.IsNaN(x.rank) }) {
		// The stable sort's order, found faster: by rank, then by position,
		// sorting small keys.
		type key struct {
			rank float64
			i    int
		}
		keys := make([]key, len(pairs))
		for i, pr := range pairs {
			keys[i] = key{pr.rank, i}
		}
		slices.SortFunc(keys, func(x, y key) int {
			switch {
			case x.rank < y.rank:
				return -1
			case x.rank > y.rank:
				return 1
			}
			return x.i - y.i
		})
		sorted := make([]pair, len(pairs))
		for k, ky := range keys {
			sorted[k] = pairs[ky.i]
		}
		pairs = sorted
	} else {
		slices.SortStableFunc(pairs, func(x, y pair) int {
			switch {
			case x.rank < y.rank:
				return -1
			case x.rank > y.rank:
				return 1
			}
			return 0
		})
	}
	var out []window
	var coeffs [hashFreqs][hashFreqs]float32
	var canon [3]float64
	for _, pr := range pairs {
		if len(out) >= limit {
			break
		}
		{
			a, b := pr.a, pr.b
			dx, dy := b.x-a.x, b.y-a.y
			d := math.Hypot(dx, dy)
			if d < minD || d > maxD {
				continue
			}
			cx, cy := (a.x+b.x)/2, (a.y+b.y)/2
			angle := math.Atan2(dy, dx)
			side := sideK * d
			var q int
			if fast {
				f, ok := frameOf(ss, p, cx, cy, side, angle)
				if !ok {
					continue
				}
				if q, ok = windowC(avx2, f.src, f.cx, f.cy, f.half, f.step, f.ux, f.uy, f.vx, f.vy, f.sc, buf, minQuality, &coeffs, &canon); !ok || q < minQuality {
					continue
				}
			} else {
				if !sampleWindow(ss, p, cx, cy, side, angle, buf) {
					continue
				}
				var ok bool
				if q, ok = normQuality(buf); !ok || q < minQuality {
					continue
				}
				winCoeffs(buf, &coeffs)
			}
			var vs []pdq.Dihedral
			if fast {
				vs = canonicalOf(canon[0], canon[1], canon[2], margin)
			} else {
				vs = canonical(buf, margin)
			}
			if margin <= 0 {
				vs = vs[:1]
			}
			w := window{cx: cx, cy: cy, side: side, angle: angle, quality: q}
			for _, v := range vs {
				if fast {
					w.hashes = append(w.hashes, coeffHashC(avx2, &coeffs, v))
				} else {
					w.hashes = append(w.hashes, coeffHash(&coeffs, v))
				}
				w.variants = append(w.variants, v)
				if flips && len(w.hashes) == 1 {
					w.flips = keyFlips(&coeffs, v, w.hashes[0])
				}
			}
			out = append(out, w)
		}
	}
	return out
}

// normQuality is the window's quality (gridQuality) with its contrast
// normalised to a standard deviation of 40 grey levels, so that a dark or
// washed-out picture's windows count as much as a crisp one's (the hash
// itself ignores contrast). A window flatter than one grey level is
// refused.
func normQuality(g []float32) (int, bool) {
	var s, s2 float64
	for _, v := range g {
		s += float64(v)
		s2 += float64(v) * float64(v)
	}
	n := float64(len(g))
	std := math.Sqrt(math.Max(s2/n-(s/n)*(s/n), 0))
	if std < 1 {
		return 0, false
	}
	var scaled [winSize * winSize]float32
	k := float32(40 / std)
	for i, v := range g {
		scaled[i] = v * k
	}
	return gridQuality(scaled[:]), true
}
