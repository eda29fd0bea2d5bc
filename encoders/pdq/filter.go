package pdq

// Downsampling: the reference blurs the full-resolution luminance with a
// Jarosz tent filter (1-D box filters along rows, then along columns, twice)
// and then picks the 64x64 pixels at cell centres. This file computes the
// same values with the same float32 operations in the same order, but
// streams the image a row at a time: only a ring of window+1 filtered rows
// and the 64 sampled columns are kept, and the second pass is evaluated only
// where the decimation reads it.

const (
	outDim = 64 // side of the decimated image
	// minDim is the smallest side the reference hashes; smaller images get
	// the zero hash and quality 0.
	minDim = 5
)

// windowSize is the per-pass box window for shrinking dim to 64 with two
// passes: ceil(dim / 128).
func windowSize(dim int) int {
	return (dim + 2*outDim - 1) / (2 * outDim)
}

// sampleIndex is the input index read for output cell i of 64 (cell
// centres, as the reference's decimation computes them).
func sampleIndex(i, dim int) int {
	return int((float64(i) + 0.5) * float64(dim) / outDim)
}

// boxRow is the reference's 1-D box filter over a contiguous vector: a
// centred window of size win (clipped at the ends, divided by the number of
// samples in it), kept as a running sum. len(in) must be >= win, and out
// must be at least as long as in.
func boxRow(in, out []float32, win int) {
	n := len(in)
	out = out[:n]
	half := (win + 2) / 2
	var sum float32
	cnt := 0
	ri, li, oi := 0, 0, 0
	// Accumulate the first half window with no output.
	for ; ri < half-1; ri++ {
		sum += in[ri]
		cnt++
	}
	// Growing window.
	for k := 0; k < win-half+1; k++ {
		sum += in[ri]
		ri++
		cnt++
		out[oi] = sum / float32(cnt)
		oi++
	}
	// Full window: add on the right, drop on the left.
	full := float32(cnt)
	for ; ri < n; ri++ {
		sum += in[ri]
		sum -= in[li]
		li++
		out[oi] = sum / full
		oi++
	}
	// Shrinking window at the end.
	for ; oi < n; oi++ {
		sum -= in[li]
		li++
		cnt--
		out[oi] = sum / float32(cnt)
	}
}

// downsampler holds the scratch space of one streaming downsample.
type downsampler struct {
	luma  []float32 // one row of luminance
	ring  []float32 // (winCols+1) rows of row-filtered luminance
	sum   []float32 // running column sums
	row   []float32 // column-filtered row (first pass)
	row2  []float32 // row-filtered again (second pass)
	cols  []float32 // 64 sampled columns, each h long (column-major)
	col   []float32 // one filtered column
	xs    [outDim]int
	plane [outDim][outDim]float32
}

func grow(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

// run downsamples a w x h image whose luminance rows fill writes, leaving
// the 64x64 result in d.plane. w and h must be >= minDim.
func (d *downsampler) run(w, h int, fill func(y int, dst []float32)) {
	winRows := windowSize(w) // window of the filters along each row
	winCols := windowSize(h) // window of the filters along each column
	half := (winCols + 2) / 2
	slots := winCols + 1

	d.luma = grow(d.luma, w)
	d.ring = grow(d.ring, slots*w)
	d.sum = grow(d.sum, w)
	d.row = grow(d.row, w)
	d.row2 = grow(d.row2, w)
	d.cols = grow(d.cols, outDim*h)
	d.col = grow(d.col, h)
	clear(d.sum)
	for j := range d.xs {
		d.xs[j] = sampleIndex(j, w)
	}

	// emit takes first-pass output row oi (complete in d.row), runs the
	// second row pass on it and keeps the sampled columns.
	emit := func(oi int) {
		boxRow(d.row, d.row2, winRows)
		for j, x := range d.xs {
			d.cols[j*h+oi] = d.row2[x]
		}
	}
	slot := func(r int) []float32 {
		s := r % slots
		return d.ring[s*w : (s+1)*w]
	}

	sum := d.sum
	out := d.row
	cnt := 0
	for y := 0; y < h; y++ {
		fill(y, d.luma)
		in := slot(y)
		boxRow(d.luma, in, winRows)
		// First column pass, streamed: add row y, drop row y-winCols once
		// the window is full, and emit row y-(half-1) once it is defined.
		if y < winCols {
			cnt++
			for j, v := range in {
				sum[j] += v
			}
		} else {
			old := slot(y - winCols)
			for j, v := range in {
				sum[j] += v
				sum[j] -= old[j]
			}
		}
		if y >= half-1 {
			fc := float32(cnt)
			for j, s := range sum {
				out[j] = s / fc
			}
			emit(y - (half - 1))
		}
	}
	for oi := h - half + 1; oi < h; oi++ {
		old := slot(oi - (winCols - half + 1))
		cnt--
		fc := float32(cnt)
		for j, v := range old {
			sum[j] -= v
			out[j] = sum[j] / fc
		}
		emit(oi)
	}

	// Second column pass, only on the 64 sampled columns, read at the 64
	// sampled rows.
	var ys [outDim]int
	for i := range ys {
		ys[i] = sampleIndex(i, h)
	}
	for j := 0; j < outDim; j++ {
		boxRow(d.cols[j*h:(j+1)*h], d.col, winCols)
		for i, y := range ys {
			d.plane[i][j] = d.col[y]
		}
	}
}
