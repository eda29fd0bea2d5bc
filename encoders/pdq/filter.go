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

// quotient returns x / n rounded to float32, as the reference's float32
// division does, but with a float64 multiply by inv = 1/n, which is much
// cheaper than a division. The result is exactly the same: x / n is never
// a float32 rounding midpoint, and is at least 2^-25/n (relative) away from
// one, far more than the 2^-52 error of the float64 product (for n < 2^27).
func quotient(x float32, inv float64) float32 {
	return float32(float64(x) * inv)
}

// boxRow is the reference's 1-D box filter over a contiguous vector: a
// centred window of size win (clipped at the ends, divided by the number of
// samples in it), kept as a running sum. len(in) must be >= win, and out
// must be at least as long as in.
func boxRow(in, out []float32, win int) {
	n := len(in)
	sum := boxHead(in, out, win)
	inv := 1 / float64(win)
	head := win - (win+2)/2 + 1
	adds, drops, outs := in[win:n], in[:n-win], out[head:head+n-win]
	for k, v := range adds {
		sum += v
		sum -= drops[k]
		outs[k] = quotient(sum, inv)
	}
	boxTail(in, out, win, sum)
}

// boxHead runs the first phases of boxRow: accumulate the first half
// window, then write the outputs of the growing window. It returns the sum
// of in[:win].
func boxHead(in, out []float32, win int) float32 {
	half := (win + 2) / 2
	var sum float32
	for _, v := range in[:half-1] {
		sum += v
	}
	for k, v := range in[half-1 : win] {
		sum += v
		out[k] = quotient(sum, 1/float64(half+k))
	}
	return sum
}

// boxTail runs the last phase of boxRow, the shrinking window, from the sum
// of the last win values.
func boxTail(in, out []float32, win int, sum float32) {
	n := len(in)
	half := (win + 2) / 2
	li := n - win
	for oi := n - half + 1; oi < n; oi++ {
		sum -= in[li]
		li++
		out[oi] = quotient(sum, 1/float64(win-(li-(n-win))))
	}
}

// boxRow4 is boxRow on four rows of equal length at once. The running sums
// are serial chains of float additions; interleaving four independent ones
// lets them overlap, without changing any result.
func boxRow4(in, out *[4][]float32, win int) {
	n := len(in[0])
	var sums [4]float32
	for l := range in {
		sums[l] = boxHead(in[l], out[l], win)
	}
	inv := 1 / float64(win)
	head := win - (win+2)/2 + 1
	a0, d0, o0 := in[0][win:n], in[0][:n-win], out[0][head:head+n-win]
	a1, d1, o1 := in[1][win:n], in[1][:n-win], out[1][head:head+n-win]
	a2, d2, o2 := in[2][win:n], in[2][:n-win], out[2][head:head+n-win]
	a3, d3, o3 := in[3][win:n], in[3][:n-win], out[3][head:head+n-win]
	s0, s1, s2, s3 := sums[0], sums[1], sums[2], sums[3]
	for k, v := range a0 {
		s0 += v
		s1 += a1[k]
		s2 += a2[k]
		s3 += a3[k]
		s0 -= d0[k]
		s1 -= d1[k]
		s2 -= d2[k]
		s3 -= d3[k]
		o0[k] = quotient(s0, inv)
		o1[k] = quotient(s1, inv)
		o2[k] = quotient(s2, inv)
		o3[k] = quotient(s3, inv)
	}
	sums = [4]float32{s0, s1, s2, s3}
	for l := range in {
		boxTail(in[l], out[l], win, sums[l])
	}
}

// lanes is how many rows go through the row filters together.
const lanes = 4

// downsampler holds the scratch space of one streaming downsample.
type downsampler struct {
	luma  []float32 // lanes rows of luminance
	ring  []float32 // winCols+lanes rows of row-filtered luminance
	sum   []float32 // running column sums
	batch []float32 // lanes column-filtered rows (first pass)
	row2  []float32 // lanes rows filtered again (second pass)
	cols  []float32 // 64 sampled columns, each h long (column-major)
	col   []float32 // one filtered column
	plane [outDim][outDim]float32
}

func grow(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

// rows returns n consecutive w-long rows of buf, starting at row first.
func rows(buf []float32, w, first, n int) [][]float32 {
	r := make([][]float32, n)
	for k := range r {
		r[k] = buf[(first+k)*w : (first+k+1)*w]
	}
	return r
}

// boxRows runs boxRow over each in[k] into out[k], four at a time.
func boxRows(in, out [][]float32, win int) {
	k := 0
	for ; k+lanes <= len(in); k += lanes {
		boxRow4((*[4][]float32)(in[k:k+lanes]), (*[4][]float32)(out[k:k+lanes]), win)
	}
	for ; k < len(in); k++ {
		boxRow(in[k], out[k], win)
	}
}

// run downsamples a w x h image whose luminance rows fill writes, leaving
// the 64x64 result in d.plane. w and h must be >= minDim.
//
// The passes are those of the reference, in its order: box filter along
// rows, along columns, along rows, along columns, then decimation. Rows are
// read, row-filtered and pushed through the first column pass (kept as
// running column sums over a ring of rows) as they arrive; each first-pass
// output row is row-filtered again and only its 64 sampled columns kept;
// the last column pass runs on those 64 columns only.
func (d *downsampler) run(w, h int, fill func(y int, dst []float32)) {
	winRows := windowSize(w) // window of the filters along each row
	winCols := windowSize(h) // window of the filters along each column
	half := (winCols + 2) / 2
	slots := winCols + lanes

	d.luma = grow(d.luma, lanes*w)
	d.ring = grow(d.ring, slots*w)
	d.sum = grow(d.sum, w)
	d.batch = grow(d.batch, lanes*w)
	d.row2 = grow(d.row2, lanes*w)
	d.cols = grow(d.cols, outDim*h)
	d.col = grow(d.col, h)
	clear(d.sum)
	var xs [outDim]int
	for j := range xs {
		xs[j] = sampleIndex(j, w)
	}
	lumaRows := rows(d.luma, w, 0, lanes)
	batchRows := rows(d.batch, w, 0, lanes)
	row2Rows := rows(d.row2, w, 0, lanes)
	ringRows := rows(d.ring, w, 0, slots)
	slot := func(r int) []float32 { return ringRows[r%slots] }

	// Output rows of the first column pass collect in batch; flush runs the
	// second row pass on them and keeps the sampled columns.
	pending, first := 0, 0
	flush := func() {
		boxRows(batchRows[:pending], row2Rows[:pending], winRows)
		for k, r := range row2Rows[:pending] {
			oi := first + k
			for j, x := range xs {
				d.cols[j*h+oi] = r[x]
			}
		}
		first += pending
		pending = 0
	}
	next := func() []float32 {
		if pending == lanes {
			flush()
		}
		pending++
		return batchRows[pending-1]
	}

	sum := d.sum[:w]
	cnt := 0
	filtered := make([][]float32, lanes)
	for y0 := 0; y0 < h; y0 += lanes {
		n := min(lanes, h-y0)
		for k := range n {
			fill(y0+k, lumaRows[k])
			filtered[k] = slot(y0 + k)
		}
		boxRows(lumaRows[:n], filtered[:n], winRows)
		// First column pass: add row y, drop row y-winCols once the window
		// is full, and output row y-(half-1) once it is defined.
		for y := y0; y < y0+n; y++ {
			in := slot(y)
			switch {
			case y >= winCols:
				old := slot(y - winCols)[:w]
				out := next()[:w]
				inv := 1 / float64(cnt)
				for j, v := range in {
					s := sum[j] + v
					s -= old[j]
					sum[j] = s
					out[j] = quotient(s, inv)
				}
			case y >= half-1:
				cnt++
				out := next()[:w]
				inv := 1 / float64(cnt)
				for j, v := range in {
					sum[j] += v
					out[j] = quotient(sum[j], inv)
				}
			default:
				cnt++
				for j, v := range in {
					sum[j] += v
				}
			}
		}
	}
	for oi := h - half + 1; oi < h; oi++ {
		old := slot(oi - (winCols - half + 1))[:w]
		out := next()[:w]
		cnt--
		inv := 1 / float64(cnt)
		for j, v := range old {
			sum[j] -= v
			out[j] = quotient(sum[j], inv)
		}
	}
	flush()

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
