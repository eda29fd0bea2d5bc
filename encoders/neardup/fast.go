package neardup

import (
	"math"
)

// The window pipeline's hot loops (the luminance, the area resampling, the
// blur of the scale space, the DoG extremum scan, window sampling, quality,
// DCT and hash) have a C implementation in fast.c, built with cgo on
// amd64: the same float32 and float64 operations in the same order, so
// the windows are bit for bit those of the Go code, which stays the
// reference (and the code that runs elsewhere); fast_test.go compares
// them. The fast path also keeps its buffers on the Hasher between images.

// The C scan hardcodes an octave of six levels (five DoG planes, extrema
// on the middle three).
var _ = [1]struct{}{}[levelsPerOct-3]

// fastScratch is the fast path's reused memory.
type fastScratch struct {
	avx2 bool        // run the kernels' AVX2 builds
	oct  [][]float32 // per octave, its levels one after the other
	tmp  []float32   // blur and resampling intermediate
	pad  []float32
	dogs []float32
	cand []int32
}

func grow[T any](s *[]T, n int) []T {
	if cap(*s) < n {
		*s = make([]T, n)
	}
	return (*s)[:n]
}

// useFast says whether h runs the C kernels.
func (h *Hasher) useFast() bool { return haveFast && !h.goKernels }

// blurInto is gaussBlurBuf writing into dst (len w*h).
func (fs *fastScratch) blurInto(g *plane, sigma float64, dst []float32) *plane {
	out := &plane{w: g.w, h: g.h, p: dst}
	k, rad := blurKernel(sigma, g.w, g.h)
	if k == nil {
		copy(dst, g.p)
		return out
	}
	if rad > maxBlurRad {
		copy(dst, gaussBlurBuf(g, sigma, &fs.tmp).p)
		return out
	}
	blurC(fs.avx2, g.p, g.w, g.h, k, rad, grow(&fs.tmp, g.w*g.h), grow(&fs.pad, g.w+2*rad), dst)
	return out
}

// buildScaleSpace is buildScaleSpace with the levels of each octave in one
// buffer of fs (valid until fs builds the next one).
func (fs *fastScratch) buildScaleSpace(p *plane, octaves int) *scaleSpace {
	ss := &scaleSpace{width: float64(p.w), height: float64(p.h)}
	k := math.Pow(2, 1.0/levelsPerOct)
	step := 1.0
	const nl = levelsPerOct + 3
	bw, bh := p.w, p.h
	var base *plane // the next octave's first level, when it is not p's blur
	for o := range octaves {
		if bw < 16 || bh < 16 {
			break
		}
		n := bw * bh
		if len(fs.oct) <= o {
			fs.oct = append(fs.oct, nil)
		}
		buf := grow(&fs.oct[o], nl*n)
		var first *plane
		if o == 0 {
			first = fs.blurInto(p, math.Sqrt(sigma0*sigma0-0.25), buf[:n])
		} else {
			copy(buf[:n], base.p)
			first = &plane{w: bw, h: bh, p: buf[:n]}
		}
		lv := []*plane{first}
		sg := []float64{sigma0 * step}
		prev := sigma0
		for i := 1; i < nl; i++ {
			s := sigma0 * math.Pow(k, float64(i))
			lv = append(lv, fs.blurInto(lv[i-1], math.Sqrt(s*s-prev*prev), buf[i*n:(i+1)*n]))
			sg = append(sg, s*step)
			prev = s
		}
		ss.octaves = append(ss.octaves, lv)
		ss.sigmas = append(ss.sigmas, sg)
		ss.scale = append(ss.scale, step)
		base = downsample2(lv[levelsPerOct])
		bw, bh = base.w, base.h
		step *= 2
	}
	return ss
}

// detect is scaleSpace.detect over a scale space of fs.buildScaleSpace,
// the candidates found by the C scan.
func (fs *fastScratch) detect(ss *scaleSpace, n int, border, minResp float64) []keypoint {
	return pickKeypoints(fs.extrema(ss, border, minResp), n, ss.width, ss.height)
}

// extrema is scaleSpace.extrema over a scale space of fs.buildScaleSpace.
func (fs *fastScratch) extrema(ss *scaleSpace, border, minResp float64) []keypoint {
	// |v| >= minResp (v a float32) is v >= thr, the least float32 not
	// under minResp.
	thr := float32(minResp)
	if float64(thr) < minResp {
		thr = math.Nextafter32(thr, float32(math.Inf(1)))
	}
	var kps []keypoint
	for o, lv := range ss.octaves {
		w, h := lv[0].w, lv[0].h
		np := w * h
		dogs := grow(&fs.dogs, 5*np)
		cand := grow(&fs.cand, 3*np)
		sc := ss.scale[o]
		bd := max(int(math.Ceil(border/sc)), 1)
		c := scanC(fs.avx2, fs.oct[o][:6*np], w, h, bd, thr, dogs, cand)
		for _, e := range cand[:c] {
			s, i := int(e)/np, int(e)%np
			if k, ok := fitKeypoint(dogs[s*np:(s+1)*np], i, w, i%w, i/w, sc, ss.sigmas[o][s]); ok {
				kps = append(kps, k)
			}
		}
	}
	return kps
}

// flatWeights is a []axisWeight in three flat arrays (output i: weights
// w[off[i]:off[i+1]] from input start[i]).
type flatWeights struct {
	start, off []int32
	w          []float32
}

func flatten(aw []axisWeight) flatWeights {
	f := flatWeights{start: make([]int32, len(aw)), off: make([]int32, len(aw)+1)}
	for i, k := range aw {
		f.start[i] = int32(k.start)
		f.w = append(f.w, k.w...)
		f.off[i+1] = int32(len(f.w))
	}
	return f
}

// resample is resampleArea.
func (fs *fastScratch) resample(src []float32, w, h, dw, dh int) *plane {
	dst := &plane{w: dw, h: dh, p: make([]float32, dw*dh)}
	resampleC(fs.avx2, src, w, h, dw, dh, flatten(axisWeights(h, dh)), flatten(axisWeights(w, dw)), grow(&fs.tmp, w*dh), dst.p)
	return dst
}
