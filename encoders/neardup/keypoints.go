package neardup

import (
	"math"
	"slices"
)

// keypoint is a blob found as an extremum of the difference of Gaussians:
// its position in working-plane pixels, its scale (sigma, plane pixels)
// and the strength of its response.
type keypoint struct {
	x, y, sigma float64
	resp        float64
}

// scaleSpace is a small Gaussian pyramid of the working plane: per octave,
// the blurred levels and their sigmas (in plane pixels).
type scaleSpace struct {
	octaves [][]*plane
	sigmas  [][]float64
	scale   []float64 // plane pixels per octave pixel
	// size of the plane
	width, height float64
}

const (
	sigma0       = 1.6
	levelsPerOct = 3
)

// buildScaleSpace blurs p into octaves of levelsPerOct+3 levels, each
// octave starting from the previous one's level at twice its base sigma,
// halved. The input is taken to carry a blur of 0.5 pixel.
func buildScaleSpace(p *plane, octaves int) *scaleSpace {
	ss := &scaleSpace{width: float64(p.w), height: float64(p.h)}
	k := math.Pow(2, 1.0/levelsPerOct)
	step := 1.0
	var scratch []float32
	base := gaussBlurBuf(p, math.Sqrt(sigma0*sigma0-0.25), &scratch)
	for o := range octaves {
		if base.w < 16 || base.h < 16 {
			break
		}
		lv := []*plane{base}
		sg := []float64{sigma0 * step}
		prev := sigma0
		for i := 1; i < levelsPerOct+3; i++ {
			s := sigma0 * math.Pow(k, float64(i))
			lv = append(lv, gaussBlurBuf(lv[i-1], math.Sqrt(s*s-prev*prev), &scratch))
			sg = append(sg, s*step)
			prev = s
		}
		ss.octaves = append(ss.octaves, lv)
		ss.sigmas = append(ss.sigmas, sg)
		ss.scale = append(ss.scale, step)
		_ = o
		base = downsample2(lv[levelsPerOct])
		step *= 2
	}
	return ss
}

// detect returns the difference-of-Gaussian extrema of ss, strongest
// first, at most n, skipping those within border plane pixels of the edge,
// those on edges (principal curvature ratio over 10) and those weaker than
// minResp.
func (ss *scaleSpace) detect(n int, border, minResp float64) []keypoint {
	return pickKeypoints(ss.extrema(border, minResp), n, ss.width, ss.height)
}

// extrema returns every difference-of-Gaussian extremum of ss that detect
// would pick from, in no particular order.
func (ss *scaleSpace) extrema(border, minResp float64) []keypoint {
	var kps []keypoint
	for o, lv := range ss.octaves {
		w, h := lv[0].w, lv[0].h
		dogs := make([][]float32, len(lv)-1)
		buf := make([]float32, w*h*len(dogs))
		for i := range dogs {
			d := buf[i*w*h : (i+1)*w*h]
			a, b := lv[i].p, lv[i+1].p
			for j := range d {
				d[j] = b[j] - a[j]
			}
			dogs[i] = d
		}
		sc := ss.scale[o]
		bd := max(int(math.Ceil(border/sc)), 1)
		for s := 1; s < len(dogs)-1; s++ {
			d0, d1, d2 := dogs[s-1], dogs[s], dogs[s+1]
			for y := bd; y < h-bd; y++ {
				for x := bd; x < w-bd; x++ {
					i := y*w + x
					v := d1[i]
					if math.Abs(float64(v)) < minResp {
						continue
					}
					if !extremum(v, i, w, d0, d1, d2) {
						continue
					}
					if k, ok := fitKeypoint(d1, i, w, x, y, sc, ss.sigmas[o][s]); ok {
						kps = append(kps, k)
					}
				}
			}
		}
	}
	return kps
}

// fitKeypoint fits a quadratic in x and y around the extremum at index i
// (column x, row y) of the DoG plane d1 of an octave of scale sc, whose
// level has the given sigma: false when it is an edge, not a blob, or its
// offset is too large.
func fitKeypoint(d1 []float32, i, w, x, y int, sc, sigma float64) (keypoint, bool) {
	v := d1[i]
	// Quadratic fit in x and y for a sub-pixel position.
	dx := float64(d1[i+1]-d1[i-1]) / 2
	dy := float64(d1[i+w]-d1[i-w]) / 2
	dxx := float64(d1[i+1] + d1[i-1] - 2*v)
	dyy := float64(d1[i+w] + d1[i-w] - 2*v)
	dxy := float64(d1[i+w+1]-d1[i+w-1]-d1[i-w+1]+d1[i-w-1]) / 4
	det := dxx*dyy - dxy*dxy
	if det <= 0 {
		return keypoint{}, false
	}
	tr := dxx + dyy
	if tr*tr/det >= (10.0+1)*(10.0+1)/10 {
		return keypoint{}, false // an edge, not a blob
	}
	ox := -(dyy*dx - dxy*dy) / det
	oy := -(dxx*dy - dxy*dx) / det
	if math.Abs(ox) > 0.6 || math.Abs(oy) > 0.6 {
		return keypoint{}, false
	}
	resp := math.Abs(float64(v) + 0.5*(dx*ox+dy*oy))
	return keypoint{
		x:     (float64(x) + 0.5 + ox) * sc,
		y:     (float64(y) + 0.5 + oy) * sc,
		sigma: sigma,
		resp:  resp,
	}, true
}

// pickKeypoints orders kps strongest first, drops the weaker of blobs that
// sit on top of each other and spreads the rest (spread) over a width x
// height plane, at most n.
func pickKeypoints(kps []keypoint, n int, width, height float64) []keypoint {
	slices.SortFunc(kps, func(a, b keypoint) int {
		switch {
		case a.resp > b.resp:
			return -1
		case a.resp < b.resp:
			return 1
		}
		return 0
	})
	// Keep the strongest of blobs that sit on top of each other.
	var uniq []keypoint
	for _, k := range kps {
		dup := false
		for _, o := range uniq {
			if r := 0.75*math.Min(k.sigma, o.sigma) + 1; (k.x-o.x)*(k.x-o.x)+(k.y-o.y)*(k.y-o.y) < r*r {
				dup = true
				break
			}
		}
		if !dup {
			uniq = append(uniq, k)
			if len(uniq) == 4*n {
				break
			}
		}
	}
	return spread(uniq, n, width, height)
}

// spread picks n of kps (strongest first): first the strongest perCell of
// each cell of a 3x3 grid over the plane, then the strongest of the rest,
// so that text or a busy corner cannot take every place, and a crop keeps
// some of an image's blobs whichever part it keeps. The result is in
// order of strength.
func spread(kps []keypoint, n int, w, h float64) []keypoint {
	if len(kps) <= n {
		return kps
	}
	perCell := max(n/(2*9), 1)
	var count [9]int
	taken := make([]bool, len(kps))
	m := 0
	for i, k := range kps {
		c := min(int(3*k.x/w), 2) + 3*min(int(3*k.y/h), 2)
		if c >= 0 && count[c] < perCell {
			count[c]++
			taken[i] = true
			m++
		}
	}
	for i := range kps {
		if m >= n {
			break
		}
		if !taken[i] {
			taken[i] = true
			m++
		}
	}
	out := make([]keypoint, 0, n)
	for i, k := range kps {
		if taken[i] && len(out) < n {
			out = append(out, k)
		}
	}
	return out
}

func extremum(v float32, i, w int, d0, d1, d2 []float32) bool {
	// The four same-level neighbours first: most pixels fail there.
	if v > 0 {
		if d1[i-1] > v || d1[i+1] > v || d1[i-w] > v || d1[i+w] > v {
			return false
		}
	} else if d1[i-1] < v || d1[i+1] < v || d1[i-w] < v || d1[i+w] < v {
		return false
	}
	if v > 0 {
		for _, d := range [3][]float32{d0, d1, d2} {
			for _, j := range [9]int{i - w - 1, i - w, i - w + 1, i - 1, i, i + 1, i + w - 1, i + w, i + w + 1} {
				if d[j] > v {
					return false
				}
			}
		}
		return true
	}
	for _, d := range [3][]float32{d0, d1, d2} {
		for _, j := range [9]int{i - w - 1, i - w, i - w + 1, i - 1, i, i + 1, i + w - 1, i + w, i + w + 1} {
			if d[j] < v {
				return false
			}
		}
	}
	return true
}
