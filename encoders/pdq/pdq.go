package pdq

import (
	"fmt"
	"image"
	"math"
	"slices"
)

// Dihedral names one of the eight symmetries of the square, in the order
// FromImageDihedral returns them, with the reference's names. Each is the
// hash the image would have after that transformation: Rotate90 turns it 90
// degrees counter-clockwise (numpy's rot90), Rotate270 clockwise, FlipX
// mirrors it top to bottom, FlipY left to right, FlipPlus1 transposes it
// (mirror about the main diagonal) and FlipMinus1 mirrors it about the
// anti-diagonal.
type Dihedral int

const (
	Original Dihedral = iota
	Rotate90
	Rotate180
	Rotate270
	FlipX
	FlipY
	FlipPlus1
	FlipMinus1
)

var dihedralNames = [...]string{"original", "rotate90", "rotate180", "rotate270", "flipx", "flipy", "flipplus1", "flipminus1"}

func (d Dihedral) String() string {
	if d >= 0 && int(d) < len(dihedralNames) {
		return dihedralNames[d]
	}
	return fmt.Sprintf("Dihedral(%d)", int(d))
}

// How each dihedral variant is read off the original's DCT coefficients.
// Mirroring the image negates the coefficients of odd frequency along the
// mirrored axis; frequencies are 1..16, so those are even indices 0, 2, ...
// Transposing the image transposes the coefficients.
var dihedralOps = [8]struct{ transpose, negEvenRows, negEvenCols bool }{
	Original:   {false, false, false},
	Rotate90:   {true, false, true},
	Rotate180:  {false, true, true},
	Rotate270:  {true, true, false},
	FlipX:      {false, true, false},
	FlipY:      {false, false, true},
	FlipPlus1:  {true, false, false},
	FlipMinus1: {true, true, true},
}

// dctSize is the side of the kept block of DCT coefficients.
const dctSize = 16

// dctMatrix is the 16x64 DCT-II basis (rows for frequencies 1..16), built as
// the reference builds it: a float32 scale times a float64 cosine, rounded
// to float32. Computed once; never written afterwards.
var dctMatrix = func() (m [dctSize][outDim]float32) {
	scale := float64(float32(math.Sqrt(2.0 / outDim)))
	for i := range m {
		for j := range m[i] {
			m[i][j] = float32(scale * math.Cos(math.Pi/2/outDim*float64(i+1)*float64(2*j+1)))
		}
	}
	return m
}()

// Hasher computes PDQ hashes, reusing its scratch buffers between calls so
// that hashing a stream of images does not allocate per image (except when
// shrinking large images). The zero value is ready to use and hashes as
// FromImage does. A Hasher is not safe for concurrent use: give each
// goroutine its own.
type Hasher struct {
	// MaxSide bounds the image side hashed directly: a larger image is first
	// shrunk to fit in MaxSide x MaxSide, aspect kept, as the reference
	// command-line hashers do (whose output the published test vectors
	// are). 0 means DefaultMaxSide (512). A negative value hashes every
	// image at full resolution, as the reference library functions and the
	// pdqhash Python wheel do. It applies to images, not to luma planes.
	MaxSide int

	ds    downsampler
	thumb thumbScratch
	grid  gridScratch
	dct   [dctSize][dctSize]float32
}

// FromImage returns the PDQ hash of img and its quality (0..100; below 50
// the image is too flat for its hash to be trusted). Images with a side
// under 5 pixels get the zero hash and quality 0. Images with a side over
// 512 are first shrunk to fit 512x512, as the reference tools do; use a
// Hasher with a negative MaxSide to hash at full resolution.
func FromImage(img image.Image) (Hash, int) {
	var hs Hasher
	return hs.Hash(img)
}

// FromImageDihedral returns the hashes of img under the eight dihedral
// symmetries, indexed by Dihedral (original, rotate90, rotate180, rotate270,
// flipx, flipy, flipplus1, flipminus1), and its quality. They are derived
// from one DCT, not by rehashing transformed pixels.
func FromImageDihedral(img image.Image) ([8]Hash, int) {
	var hs Hasher
	return hs.Dihedral(img)
}

// FromLuma hashes a w x h row-major plane of luminance values (0..255, as
// 0.299R + 0.587G + 0.114B). luma is not modified.
func FromLuma(luma []float32, w, h int) (Hash, int) {
	var hs Hasher
	return hs.HashLuma(luma, w, h)
}

// FromLumaDihedral is FromLuma with the eight dihedral hashes.
func FromLumaDihedral(luma []float32, w, h int) ([8]Hash, int) {
	var hs Hasher
	return hs.DihedralLuma(luma, w, h)
}

// Hash is FromImage using hs's buffers.
func (hs *Hasher) Hash(img image.Image) (Hash, int) {
	q, ok := hs.coefficientsImage(img)
	if !ok {
		return Hash{}, 0
	}
	return hs.bits(Original), q
}

// Dihedral is FromImageDihedral using hs's buffers.
func (hs *Hasher) Dihedral(img image.Image) ([8]Hash, int) {
	var out [8]Hash
	q, ok := hs.coefficientsImage(img)
	if !ok {
		return out, 0
	}
	hs.dihedralBits(&out)
	return out, q
}

// HashLuma is FromLuma using hs's buffers.
func (hs *Hasher) HashLuma(luma []float32, w, h int) (Hash, int) {
	q, ok := hs.coefficientsLuma(luma, w, h)
	if !ok {
		return Hash{}, 0
	}
	return hs.bits(Original), q
}

// DihedralLuma is FromLumaDihedral using hs's buffers.
func (hs *Hasher) DihedralLuma(luma []float32, w, h int) ([8]Hash, int) {
	var out [8]Hash
	q, ok := hs.coefficientsLuma(luma, w, h)
	if !ok {
		return out, 0
	}
	hs.dihedralBits(&out)
	return out, q
}

func (hs *Hasher) coefficientsImage(img image.Image) (quality int, ok bool) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w < minDim || h < minDim {
		return 0, false
	}
	fill := rowFiller(img)
	maxSide := hs.MaxSide
	if maxSide == 0 {
		maxSide = DefaultMaxSide
	}
	// A reduced decode is hashed as the full image it stands for, unless
	// the reference would shrink that image first.
	if g, ok := GridOf(img); ok && (maxSide < 0 || (g.FullW <= maxSide && g.FullH <= maxSide)) {
		hs.grid.gridPlane(g, img, w, h, fill, &hs.ds.plane)
		return hs.finish(), true
	}
	if maxSide > 0 && (w > maxSide || h > maxSide) {
		small, sw, sh := thumbnail(w, h, maxSide, fill, &hs.thumb)
		if sw < minDim || sh < minDim {
			return 0, false
		}
		hs.ds.run(sw, sh, func(y int, dst []float32) { copy(dst, small[y*sw:(y+1)*sw]) })
		return hs.finish(), true
	}
	if m, ok := img.(PackedRGB); !ok || !hs.ds.downsampleRGB(m, w, h) {
		hs.ds.run(w, h, fill)
	}
	return hs.finish(), true
}

func (hs *Hasher) coefficientsLuma(luma []float32, w, h int) (quality int, ok bool) {
	if w < 0 || h < 0 || len(luma) < w*h {
		panic(fmt.Sprintf("pdq: luma plane of %d values is too small for %dx%d", len(luma), w, h))
	}
	if w < minDim || h < minDim {
		return 0, false
	}
	hs.ds.run(w, h, func(y int, dst []float32) { copy(dst, luma[y*w:(y+1)*w]) })
	return hs.finish(), true
}

// finish scores the 64x64 plane and transforms it into hs.dct.
func (hs *Hasher) finish() int {
	q := quality(&hs.ds.plane)
	dct64To16(&hs.ds.plane, &hs.dct)
	return q
}

// quality is the reference's heuristic: the sum of quantised absolute
// neighbour differences in the 64x64 plane, scaled and capped at 100.
func quality(p *[outDim][outDim]float32) int {
	sum := 0
	for i := 0; i < outDim-1; i++ {
		for j := 0; j < outDim; j++ {
			sum += absInt(int((p[i][j] - p[i+1][j]) * 100 / 255))
		}
	}
	for i := 0; i < outDim; i++ {
		for j := 0; j < outDim-1; j++ {
			sum += absInt(int((p[i][j] - p[i][j+1]) * 100 / 255))
		}
	}
	return min(sum/90, 100)
}

func absInt(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// dct64To16Go computes D A D^T for the 16x64 basis D, summing in the
// reference's order. The explicit float32 conversions keep the compiler from
// fusing multiply-adds, so every architecture gives the same bits. With cgo,
// dct64To16 runs the same sums in C (downsample.c).
func dct64To16Go(a *[outDim][outDim]float32, b *[dctSize][dctSize]float32) {
	var t [dctSize][outDim]float32
	for i := range t {
		ti := &t[i]
		for k := 0; k < outDim; k++ {
			d := dctMatrix[i][k]
			ak := &a[k]
			for j := range ti {
				ti[j] += float32(d * ak[j])
			}
		}
	}
	for i := range b {
		ti := &t[i]
		for j := range b[i] {
			dj := &dctMatrix[j]
			var s float32
			for k := range ti {
				s += float32(ti[k] * dj[k])
			}
			b[i][j] = s
		}
	}
}

// bits thresholds the dihedral variant d of hs.dct at its median.
func (hs *Hasher) bits(d Dihedral) Hash {
	var v [dctSize * dctSize]float32
	hs.variant(d, &v)
	return threshold(&v, median(&v))
}

// dihedralBits sets out[d] to bits(d) for every variant. A variant's
// coefficients are the original's with some signs flipped and perhaps
// transposed; a transpose does not change the values, only their order, so
// the variants that differ by one (Original and FlipPlus1, Rotate90 and
// FlipY, Rotate180 and FlipMinus1, Rotate270 and FlipX) share their median,
// found once for both.
func (hs *Hasher) dihedralBits(out *[8]Hash) {
	var medians [4]float32
	var known [4]bool
	var v [dctSize * dctSize]float32
	for d := range out {
		op := dihedralOps[d]
		signs := 0
		if op.negEvenRows {
			signs |= 2
		}
		if op.negEvenCols {
			signs |= 1
		}
		hs.variant(Dihedral(d), &v)
		if !known[signs] {
			medians[signs], known[signs] = median(&v), true
		}
		out[d] = threshold(&v, medians[signs])
	}
}

// variant writes the coefficients of the dihedral variant d of hs.dct to v,
// row by row.
func (hs *Hasher) variant(d Dihedral, v *[dctSize * dctSize]float32) {
	op := dihedralOps[d]
	for i := 0; i < dctSize; i++ {
		for j := 0; j < dctSize; j++ {
			x := hs.dct[i][j]
			if (op.negEvenRows && i&1 == 0) != (op.negEvenCols && j&1 == 0) {
				x = -x
			}
			if op.transpose {
				v[j*dctSize+i] = x
			} else {
				v[i*dctSize+j] = x
			}
		}
	}
}

// median is the reference's median of 256 values (Torben's method): the
// 128th smallest, found by selection (the value a sort would put there).
func median(v *[dctSize * dctSize]float32) float32 {
	w := *v
	for _, x := range w {
		if x != x { // NaN: selection assumes an order; sort as slices.Sort does
			slices.Sort(w[:])
			return w[len(w)/2-1]
		}
	}
	return kthSmallest(w[:], len(w)/2-1)
}

// kthSmallest returns the value a sort of a (no NaNs) would put at index k,
// reordering a (Hoare's selection, median-of-three pivots).
func kthSmallest(a []float32, k int) float32 {
	lo, hi := 0, len(a)-1
	for lo < hi {
		mid := lo + (hi-lo)/2
		if a[mid] < a[lo] {
			a[mid], a[lo] = a[lo], a[mid]
		}
		if a[hi] < a[lo] {
			a[hi], a[lo] = a[lo], a[hi]
		}
		if a[hi] < a[mid] {
			a[hi], a[mid] = a[mid], a[hi]
		}
		p := a[mid]
		i, j := lo, hi
		for i <= j {
			for a[i] < p {
				i++
			}
			for p < a[j] {
				j--
			}
			if i <= j {
				a[i], a[j] = a[j], a[i]
				i++
				j--
			}
		}
		// a[lo..j] <= p, a[i..hi] >= p, and anything between equals p.
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return a[k]
		}
	}
	return a[k]
}

// threshold sets the bit of every coefficient strictly greater than median.
func threshold(v *[dctSize * dctSize]float32, median float32) Hash {
	var h Hash
	for k, x := range v {
		if x > median {
			h.setBit(k)
		}
	}
	return h
}
