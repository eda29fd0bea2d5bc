package pdq

import "image"

// Hashing a reduced decode as the full image it stands for.
//
// A JPEG decoded with libjpeg's reduced IDCT at 1/s (Pillow's draft) is,
// up to rounding, the means of the full image's s x s blocks. Hashing those
// pixels as an image of their own runs the reference's filter at their
// scale: its window sizes and its cell centres are rounded at that
// resolution, and on 3000x2000 photos the hash of a 1/4 decode strays up to
// 26 bits from the full-resolution hash. Grid hashes the same pixels with
// the full-resolution image's geometry instead: the reference's two box
// passes along each axis, with the full image's window, clipped at its
// edges, sampled at its 64 cell centres, applied to the image in which
// every reduced pixel fills its block. Both passes and the decimation are
// linear, so each of the 64 samples along an axis is a weighted sum of the
// reduced pixels (the kernel's weights summed over each block); the 64x64
// plane is two small matrix products in float64. That is the reference's
// algorithm on the block-filled image up to float rounding (the reference
// sums in float32), not bit for bit: a bit can differ only where a
// coefficient lies within rounding of the median (TestGridMatchesFilled).

// Grid places a reduced image on the full-resolution image it stands for:
// pixel (x, y) is the mean of the full image's pixels in
// [OffX+Scale*x, OffX+Scale*(x+1)) x [OffY+Scale*y, OffY+Scale*(y+1)),
// clipped to the full image. OffX and OffY are 0 when the partial blocks
// are at the right and bottom edges (as libjpeg decodes them), and
// negative when the image was mirrored so that they come first.
type Grid struct {
	Scale        int
	FullW, FullH int
	OffX, OffY   int
}

// Gridded is implemented by images that are a reduced decode of a larger
// one (encoders/imageprep's RGBImage after a scaled JPEG decode). The
// hasher reads their Grid and hashes them with the full image's geometry.
type Gridded interface {
	PDQGrid() (Grid, bool)
}

// GridOf returns img's grid when it has a usable one.
func GridOf(img image.Image) (Grid, bool) {
	gi, ok := img.(Gridded)
	if !ok {
		return Grid{}, false
	}
	g, ok := gi.PDQGrid()
	if !ok {
		return Grid{}, false
	}
	b := img.Bounds()
	return g, g.fits(b.Dx(), b.Dy())
}

// fits reports whether g describes a w x h reduced image: a scale over 1,
// each axis's blocks covering the full image with the first and last
// blocks overlapping it.
func (g Grid) fits(w, h int) bool {
	if g.Scale < 2 || g.Scale > 64 || g.FullW < minDim || g.FullH < minDim {
		return false
	}
	axis := func(n, full, off int) bool {
		return n > 0 && off <= 0 && off > -g.Scale && off+g.Scale*n >= full && off+g.Scale*(n-1) < full
	}
	return axis(w, g.FullW, g.OffX) && axis(h, g.FullH, g.OffY)
}

// axisWeights returns, for each of the 64 samples along an axis of full
// length n, the first reduced pixel it reads and its weights over the
// reduced pixels from there: the reference's two box passes (window
// windowSize(n), clipped at the ends) evaluated at the cell centre, summed
// over each block of scale full pixels starting at off.
func axisWeights(n, scale, off, reduced int) (first [outDim]int, weights [outDim][]float64) {
	win := windowSize(n)
	half := (win + 2) / 2
	span := func(i int) (int, int) { // the full pixels pass output i averages
		return max(0, i-(win-half)), min(n-1, i+half-1)
	}
	// The kernel of sample i is a sum of boxes (one per first-pass output
	// the second pass averages), built in a difference array: linear in
	// the window, so a very wide image costs no more than its pixels.
	diff := make([]float64, n+1)
	for i := range outDim {
		c := sampleIndex(i, n)
		lo, hi := span(c)
		klo, khi := n, -1
		for j := lo; j <= hi; j++ {
			l2, h2 := span(j)
			wgt := 1 / float64((hi-lo+1)*(h2-l2+1))
			diff[l2] += wgt
			diff[h2+1] -= wgt
			klo, khi = min(klo, l2), max(khi, h2)
		}
		b0 := (klo - off) / scale
		b1 := min((khi-off)/scale, reduced-1)
		ws := make([]float64, b1-b0+1)
		var k float64
		for x := klo; x <= khi; x++ {
			k += diff[x]
			ws[(x-off)/scale-b0] += k
			diff[x] = 0
		}
		diff[khi+1] = 0
		first[i], weights[i] = b0, ws
	}
	return first, weights
}

// gridAxis is one axis's weights, also laid out flat for the C pass.
type gridAxis struct {
	key     [4]int
	first   [outDim]int
	weights [outDim][]float64
	first32 [outDim]int32
	off32   [outDim + 1]int32 // weights of sample j: flat[off32[j]:off32[j+1]]
	flat    []float64
}

func (a *gridAxis) set(n, scale, off, reduced int) {
	key := [4]int{n, scale, off, reduced}
	if key == a.key {
		return
	}
	a.key = key
	first, ws := axisWeights(n, scale, off, reduced)
	a.first, a.flat = first, a.flat[:0]
	for j := range outDim {
		a.first32[j], a.off32[j] = int32(first[j]), int32(len(a.flat))
		a.flat = append(a.flat, ws[j]...)
	}
	a.off32[outDim] = int32(len(a.flat))
	for j := range outDim {
		a.weights[j] = a.flat[a.off32[j]:a.off32[j+1]]
	}
}

// gridScratch caches the last axes' weights (a stream of photos of one
// size reuses them) and holds the column sums.
type gridScratch struct {
	x, y gridAxis
	row  []float32
	acc  []float64 // the 64 vertical samples, each a row of w values
}

// gridPlane fills plane with the 64x64 decimation of the block-filled full
// image: first the 64 vertical samples of every column, adding each
// reduced row (its luminance computed once) into the samples whose kernel
// covers it (in C for packed RGB, vectorised along the row), then each
// sample row's 64 horizontal samples.
func (s *gridScratch) gridPlane(g Grid, img image.Image, w, h int, fill func(y int, dst []float32), plane *[outDim][outDim]float32) {
	s.x.set(g.FullW, g.Scale, g.OffX, w)
	s.y.set(g.FullH, g.Scale, g.OffY, h)
	s.row = grow(s.row, w)
	if cap(s.acc) < outDim*w {
		s.acc = make([]float64, outDim*w)
	}
	acc := s.acc[:outDim*w]
	clear(acc)
	if m, ok := img.(PackedRGB); !ok || !s.rowsRGB(m, w, h, acc) {
		// Samples whose kernel covers row y: a window sliding down.
		lo := 0
		for y := range h {
			row := s.row[:w]
			fill(y, row)
			for lo < outDim && s.y.first[lo]+len(s.y.weights[lo]) <= y {
				lo++
			}
			for i := lo; i < outDim && s.y.first[i] <= y; i++ {
				wgt := s.y.weights[i][y-s.y.first[i]]
				a := acc[i*w : (i+1)*w]
				for x, v := range row {
					a[x] += float64(wgt * float64(v)) // no fused multiply-add: the C pass's sums
				}
			}
		}
	}
	for i := range outDim {
		a := acc[i*w : (i+1)*w]
		for j := range outDim {
			src := a[s.x.first[j]:]
			var sum float64
			for k, wgt := range s.x.weights[j] {
				sum += float64(wgt * src[k])
			}
			plane[i][j] = float32(sum)
		}
	}
}
