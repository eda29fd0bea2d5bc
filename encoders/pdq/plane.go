package pdq

import "image"

// Luma writes img's luminance plane (row-major, w x h, values 0..255 as
// the hasher reads them: 0.299R + 0.587G + 0.114B of 8-bit RGB, alpha
// ignored) into dst, growing it when it is too short, and returns it with
// the size. Hashing the plane with DihedralPlane gives exactly the hashes
// Dihedral gives for img, so a caller that needs the pixels for more than
// the hash converts them once.
func Luma(img image.Image, dst []float32) ([]float32, int, int) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= 0 || h <= 0 {
		return dst[:0], 0, 0
	}
	dst = grow(dst, w*h)
	fill := rowFiller(img)
	for y := range h {
		fill(y, dst[y*w:(y+1)*w])
	}
	return dst, w, h
}

// DihedralPlane is Dihedral for an image given as its luminance plane (see
// Luma): unlike DihedralLuma it honours MaxSide, shrinking a plane larger
// than MaxSide first exactly as Dihedral shrinks the image, so
// hs.DihedralPlane(Luma(img)) == hs.Dihedral(img) in both modes. luma is
// not modified.
func (hs *Hasher) DihedralPlane(luma []float32, w, h int) ([8]Hash, int) {
	var out [8]Hash
	q, ok := hs.coefficientsPlane(luma, w, h)
	if !ok {
		return out, 0
	}
	for d := range out {
		out[d] = hs.bits(Dihedral(d))
	}
	return out, q
}

// HashCanonicalPlane is HashCanonical for an image given as its luminance
// plane (see Luma), honouring MaxSide as DihedralPlane does.
func (hs *Hasher) HashCanonicalPlane(luma []float32, w, h int) (Hash, []Hash, int) {
	q, ok := hs.coefficientsPlane(luma, w, h)
	if !ok {
		return Hash{}, nil, 0
	}
	return hs.canonicalHashes(q)
}

// coefficientsPlane computes the DCT coefficients of a luma plane
// (shrunk to MaxSide first), reporting false for a plane too small to hash.
func (hs *Hasher) coefficientsPlane(luma []float32, w, h int) (int, bool) {
	if w < 0 || h < 0 || len(luma) < w*h {
		panic("pdq: luma plane too small for its size")
	}
	if w < minDim || h < minDim {
		return 0, false
	}
	maxSide := hs.MaxSide
	if maxSide == 0 {
		maxSide = DefaultMaxSide
	}
	fill := func(y int, dst []float32) { copy(dst, luma[y*w:(y+1)*w]) }
	if maxSide > 0 && (w > maxSide || h > maxSide) {
		small, sw, sh := thumbnail(w, h, maxSide, fill, &hs.thumb)
		if sw < minDim || sh < minDim {
			return 0, false
		}
		hs.ds.run(sw, sh, func(y int, dst []float32) { copy(dst, small[y*sw:(y+1)*sw]) })
	} else {
		hs.ds.run(w, h, fill)
	}
	return hs.finish(), true
}

// DihedralGridPlane is DihedralPlane for the luminance plane of a reduced
// decode placed on the full image by g (see Grid): hashed with the full
// image's geometry, as Dihedral hashes a Gridded image. A g that does not
// fit the plane, or a full image MaxSide would shrink, hashes as
// DihedralPlane does.
func (hs *Hasher) DihedralGridPlane(luma []float32, w, h int, g Grid) ([8]Hash, int) {
	maxSide := hs.MaxSide
	if maxSide == 0 {
		maxSide = DefaultMaxSide
	}
	if len(luma) < w*h || w < minDim || h < minDim || !g.fits(w, h) || (maxSide > 0 && (g.FullW > maxSide || g.FullH > maxSide)) {
		return hs.DihedralPlane(luma, w, h)
	}
	hs.grid.gridPlane(g, nil, w, h, func(y int, dst []float32) { copy(dst, luma[y*w:(y+1)*w]) }, &hs.ds.plane)
	var out [8]Hash
	q := hs.finish()
	hs.dihedralBits(&out)
	return out, q
}
