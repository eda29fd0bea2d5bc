// Package neardup finds re-posts of known images that plain PDQ misses:
// crops, meme caption bands, screenshots inside app or browser frames,
// downscales, mirror images and rotations, alone or combined.
//
// An image's signature (Signatures) is a short list of 256-bit hashes of
// the PDQ family, all compared by Hamming distance in one index:
//
//   - its whole-image PDQ hash (bit-identical to encoders/pdq, so hash
//     lists from other platforms match as they always did);
//   - the hashes of up to MaxWindows square windows anchored on pairs of
//     blobs (difference-of-Gaussian extrema): each window is centred on
//     the midpoint of two blobs, turned so that one side runs along the
//     line through them, with a side equal to their distance. The window
//     covers the same content in any copy that is shifted, scaled,
//     cropped (keeping both blobs), rotated or mirrored, so its hash
//     matches where the whole-image hash cannot. Of the four variants a
//     swap of the pair or a mirror gives, the one whose right and lower
//     halves are brighter is stored (Transform says which).
//
// A query (Query) hashes the whole image (the eight dihedral variants),
// the content rectangles found by cutting away flat surroundings (caption
// bands, frames, margins: an XY-cut at flat rows and columns) and the
// windows of the whole image and of each content rectangle. Matching
// (Index.Search) takes whole-image candidates within PDQ's usual 31 bits,
// and window candidates within WindowDistance bits, in two stages: the
// query's windows are searched within SeedDistance bits (a tenth of the
// multi-index probes of WindowDistance), and each indexed image with such
// a seed has all its windows compared with all the query's within
// WindowDistance. A window candidate counts only with a second window of
// the same image that agrees on the geometry (the same scale, rotation and placement of the query in the
// original), unless it is nearly exact. The verified match reports which
// region of the original matched and how the query was transformed.
package neardup

import (
	"errors"
	"fmt"
	"image"
	"math"
	"slices"

	"github.com/xmodal/xmodal/encoders/pdq"
)

// Kind says what a region hash covers.
type Kind uint8

const (
	// Whole is the whole image's PDQ hash (a query's content rectangles
	// are of this kind too: they are matched against whole images).
	Whole Kind = iota
	// Window is a square anchored on a pair of blobs.
	Window
	// Patch is not a hash: the image's luminance reduced to PatchSide x
	// PatchSide cells (RegionHash.Pixels), which verifies window matches.
	Patch
	// ScaledWindow is a link window (WindowsIn): a window of the image
	// drawn at cropScale of the working size (what a 75 % crop of the
	// image shows at the image's own scale), or of its content rectangle
	// drawn at the working size (the picture inside a screenshot or a
	// frame at the picture's own scale), placed in the image's frame.
	// Only the clusters' window relation (Linker) reads them; the
	// lookup's index does not hold them.
	ScaledWindow
	// Area is the image's area hash (area.go): PDQ's hash of the image
	// area-averaged onto the 64 x 64 grid, which a downscale leaves nearly
	// unchanged. A query's area hashes (of the whole image and of each
	// content rectangle) meet indexed area hashes only.
	Area
	// Cleaned is the image's cleaned hash (clean.go): PDQ's hash of the
	// image with bright thin overlays (a watermark's lettering)
	// suppressed. A query's cleaned hashes (of the whole image and of each
	// content rectangle) meet indexed cleaned hashes and whole-image PDQ
	// hashes; an indexed one meets query cleaned hashes only.
	Cleaned
)

func (k Kind) String() string {
	switch k {
	case Whole:
		return "whole"
	case Window:
		return "window"
	case Patch:
		return "patch"
	case ScaledWindow:
		return "scaled-window"
	case Area:
		return "area"
	case Cleaned:
		return "cleaned"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Region locates a hashed region in its image, in fractions of the image's
// width (X, Side) and height (Y) for a rectangle, or, for a window, its
// centre (CX, CY as fractions of width and height), side and rotation.
type Region struct {
	// A whole-image or content-rectangle region: [X0, X1) x [Y0, Y1).
	X0, Y0, X1, Y1 float32
	// A window: centre, side (fraction of the image's longer side) and
	// angle (radians, of the side along the pair, y pointing down).
	CX, CY, Side, Angle float32
}

// RegionHash is one hash of an image's signature.
type RegionHash struct {
	Hash pdq.Hash
	Kind Kind
	// Region is where the hashed pixels lie.
	Region Region
	// Transform is the dihedral variant of the region's pixels that Hash
	// is the PDQ hash of (Original for whole-image hashes).
	Transform pdq.Dihedral
	// Quality is PDQ's quality score of the region (0..100).
	Quality int
	// Pixels is a Patch's cells, row by row (PatchSide^2 bytes); nil for
	// the other kinds.
	Pixels []byte
}

// Errors.
var (
	// ErrTooSmall: the image is smaller than MinSide on a side; it has no
	// signature (PDQ itself gives such images the zero hash).
	ErrTooSmall = errors.New("neardup: image too small")
	// ErrTooLarge: the image has more than MaxPixels pixels.
	ErrTooLarge = errors.New("neardup: image too large")
)

// Limits.
const (
	MinSide   = 16
	MaxPixels = pdq.MaxPixels
	// MaxWindows bounds the windows of one indexed image: wholeWindows
	// anchored on the blobs of its working plane, centralExtra on those of
	// the plane's middle (storedWindows).
	MaxWindows = wholeWindows + centralExtra
	// maxLinkWindows bounds the windows of one image that only the
	// clusters' relation reads (Kind ScaledWindow: those of the image at
	// cropScale and those of its content rectangle, wholeWindows each).
	maxLinkWindows = 2 * wholeWindows
	// WhiteDistance is the whole-image match bound (PDQ's usual 31).
	WholeDistance = 31
	// WindowDistance is the window match bound.
	WindowDistance = 28
	// SeedDistance is the radius of the window search's first stage: an
	// indexed image is verified (all its windows against all the query's,
	// within WindowDistance) only when one of its windows lies within
	// SeedDistance of a query window. The clusters' link relation
	// (Linker) seeds at this radius exactly; the lookup's first stage does
	// with IndexOptions.ExactLookup.
	SeedDistance = 19
	// ProbeSeedDistance is the radius of the lookup's first stage by
	// default, where it is approximate: a query window seeds the indexed
	// windows within ProbeSeedDistance bits that also agree with it
	// exactly on one chunk of the multi-index (about 25 bits at a million
	// images; MIHSearcher.RangeAnyProbe). That probes one bucket a chunk,
	// where an exact search within SeedDistance probes each chunk's one-bit
	// neighbours too (26 buckets). With the band probed too
	// (BandProbeBits), the lookup's CPU p99 at a million images fell from
	// 20.1-21.7 to 4.3-4.5 ms and it found more of the benchmark's
	// re-posts (0.9715 against 0.9687; bench/results/
	// neardup-lookup-1m-approx.txt, docs/neardup.md).
	ProbeSeedDistance = 24
	// BandProbeBits is how far each chunk of the whole-image multi-index
	// is probed for the pixel-verified band (WholeBandDistance) by default:
	// an exact search within 56 bits probes each 20-bit chunk's neighbours
	// within 4 bits (about 6,000 buckets a chunk), this one within 2 (about
	// 200). It finds the band's copies whose hash agrees with the query's
	// within 2 bits on one of the 13 chunks; at a million images the
	// benchmark's re-posts were found as by the exact band (docs/neardup.md).
	BandProbeBits = 2
)

// Options tunes signatures; the zero value gives the defaults.
type Options struct {
	// PDQMaxSide is the pdq.Hasher MaxSide of whole-image hashes: 0 the
	// reference tools' 512-pixel shrink, -1 full resolution (what
	// xmodal's query service and ingest use).
	PDQMaxSide int
	// QueryWindows bounds the windows a query hashes per plane (0: 128):
	// fewer make the lookup faster and find fewer crops.
	QueryWindows int
}

// Hasher computes signatures and query hashes. Not safe for concurrent
// use: give each goroutine its own.
type Hasher struct {
	opts Options
	pdq  pdq.Hasher
	luma []float32
	// goKernels runs the Go code of the window pipeline even where the C
	// kernels are built in (they compute the same bits; tests compare).
	goKernels bool
	fs        fastScratch
	cut       cutPlane // the content cut's scratch
	// grid is the last lumaOf image's pdq.Grid (a reduced JPEG decode):
	// its whole-image hashes are computed with the full image's geometry,
	// as pdq hashes the image itself (wholeHashes).
	grid   pdq.Grid
	gridOK bool
}

// wholeHashes are the dihedral PDQ hashes of the whole plane that lumaOf
// returned last: those pdq.Hasher.Dihedral gives for the image.
func (h *Hasher) wholeHashes(luma []float32, w, hh int) ([8]pdq.Hash, int) {
	if h.gridOK {
		return h.pdq.DihedralGridPlane(luma, w, hh, h.grid)
	}
	return h.pdq.DihedralPlane(luma, w, hh)
}

// NewHasher returns a Hasher with opts.
func NewHasher(opts Options) *Hasher {
	return &Hasher{opts: opts, pdq: pdq.Hasher{MaxSide: opts.PDQMaxSide}, fs: fastScratch{avx2: cpuAVX2}}
}

func (h *Hasher) lumaOf(img image.Image) ([]float32, int, int, error) {
	h.grid, h.gridOK = pdq.GridOf(img)
	b := img.Bounds()
	w, hh := b.Dx(), b.Dy()
	if int64(w)*int64(hh) > MaxPixels {
		return nil, 0, 0, fmt.Errorf("%w: %dx%d (limit %d pixels)", ErrTooLarge, w, hh, MaxPixels)
	}
	if w < MinSide || hh < MinSide {
		return nil, 0, 0, fmt.Errorf("%w: %dx%d (each side must be at least %d)", ErrTooSmall, w, hh, MinSide)
	}
	if h.useFast() {
		if l, ok := lumaC(h.fs.avx2, img, h.luma); ok {
			h.luma = l
			return l, w, hh, nil
		}
	}
	var l []float32
	l, w, hh = pdq.Luma(img, h.luma)
	h.luma = l
	return l, w, hh, nil
}

// workSide is the longer side of the plane keypoints and windows use.
const workSide = 192

// workPlane resamples the rectangle r of a luma plane to the working size.
func (h *Hasher) workPlane(luma []float32, w, hh int, r image.Rectangle) *plane {
	return h.workPlaneSized(luma, w, hh, r, workSide)
}

// workPlaneSized resamples the rectangle r of a luma plane so that its
// longer side is side pixels.
func (hs *Hasher) workPlaneSized(luma []float32, w, h int, r image.Rectangle, side int) *plane {
	fs := float64(side)
	src, sw, sh := luma, w, h
	if r != image.Rect(0, 0, w, h) {
		c := (&plane{w: w, h: h, p: luma}).crop(r.Min.X, r.Min.Y, r.Max.X, r.Max.Y)
		src, sw, sh = c.p, c.w, c.h
	}
	dw, dh := side, side
	if sw >= sh {
		dh = max(int(math.Round(float64(sh)*fs/float64(sw))), 1)
	} else {
		dw = max(int(math.Round(float64(sw)*fs/float64(sh))), 1)
	}
	if hs.useFast() {
		return hs.fs.resample(src, sw, sh, dw, dh)
	}
	return resampleArea(src, sw, sh, dw, dh)
}

// Signatures returns the hashes to index for img: its whole-image PDQ hash
// first, then its area hash, its cleaned hash, its windows (at most
// MaxWindows), then its patch. An image under MinSide
// pixels on a side or over MaxPixels is refused with ErrTooSmall or
// ErrTooLarge.
func (h *Hasher) Signatures(img image.Image) ([]RegionHash, error) {
	luma, w, hh, err := h.lumaOf(img)
	if err != nil {
		return nil, err
	}
	whole, q := h.wholeHashes(luma, w, hh)
	out := []RegionHash{{Hash: whole[pdq.Original], Kind: Whole, Region: Region{X1: 1, Y1: 1}, Quality: q}, h.areaOf(luma, w, hh), h.cleanedOf(luma, w, hh)}
	p := h.workPlane(luma, w, hh, image.Rect(0, 0, w, hh))
	patch := RegionHash{Kind: Patch, Region: Region{X1: 1, Y1: 1}, Pixels: patchOf(p.p, p.w, p.h)}
	ws := h.storedWindows(p)
	for _, wd := range ws {
		out = append(out, RegionHash{Hash: wd.hashes[0], Kind: Window, Region: wd.region(p), Transform: wd.variants[0], Quality: wd.quality})
	}
	if len(ws) == 0 {
		return out, nil // no window match to check
	}
	return append(out, patch), nil
}

// areaOf is the whole image's area hash as a RegionHash.
func (h *Hasher) areaOf(luma []float32, w, hh int) RegionHash {
	v, q := h.areaHash(luma, w, hh, image.Rect(0, 0, w, hh))
	return RegionHash{Hash: v, Kind: Area, Region: Region{X1: 1, Y1: 1}, Quality: q}
}

// cleanedOf is the whole image's cleaned hash as a RegionHash.
func (h *Hasher) cleanedOf(luma []float32, w, hh int) RegionHash {
	v, q := h.cleanedHash(luma, w, hh)
	return RegionHash{Hash: v, Kind: Cleaned, Region: Region{X1: 1, Y1: 1}, Quality: q}
}

// Window parameters: blobs per plane, pair distances (fractions of the
// plane's longer side), the least window quality and the variant margin.
const (
	indexMinPair  = 0.12
	indexMaxPair  = 0.7
	queryMinPair  = 0.06
	queryMaxPair  = 0.95
	minWinQuality = 40
	queryMargin   = 0.08
	//

)

// windows returns the windows of plane p, strongest pairs first.
func (h *Hasher) windows(p *plane, nKeypoints int, minPair, maxPair, margin float64, limit int, central, flips bool) []window {
	long := float64(max(p.w, p.h))
	minResp := 0.002*planeStd(p) + 1e-3
	if h.useFast() {
		ss := h.fs.buildScaleSpace(p, 3)
		kps := h.fs.detect(ss, nKeypoints, 4, minResp)
		return pairWindows(ss, p, kps, minPair*long, maxPair*long, 1.0, minWinQuality, margin, limit, central, flips, true, h.fs.avx2)
	}
	ss := buildScaleSpace(p, 3)
	kps := ss.detect(nKeypoints, 4, minResp)
	return pairWindows(ss, p, kps, minPair*long, maxPair*long, 1.0, minWinQuality, margin, limit, central, flips, false, false)
}

// storedWindows returns the windows an indexed image stores: the
// windows of its working plane's blobs (windows), then up to centralExtra
// more from the blobs that a crop of its middle would pick.
func (h *Hasher) storedWindows(p *plane) []window {
	long := float64(max(p.w, p.h))
	minResp := 0.002*planeStd(p) + 1e-3
	var ss *scaleSpace
	var all []keypoint
	fast := h.useFast()
	if fast {
		ss = h.fs.buildScaleSpace(p, 3)
		all = h.fs.extrema(ss, 4, minResp)
	} else {
		ss = buildScaleSpace(p, 3)
		all = ss.extrema(4, minResp)
	}
	kps := pickKeypoints(slices.Clone(all), indexKeypoints, ss.width, ss.height)
	ws := pairWindows(ss, p, kps, indexMinPair*long, indexMaxPair*long, 1.0, minWinQuality, 0, wholeWindows, true, false, fast, fast && h.fs.avx2)
	if centralExtra == 0 {
		return ws
	}
	// The middle cropFrac of the plane, as a crop's plane would see it.
	x0, y0 := float64(p.w)*(1-centralFrac)/2, float64(p.h)*(1-centralFrac)/2
	cw, ch := float64(p.w)*centralFrac, float64(p.h)*centralFrac
	var in []keypoint
	for _, k := range all {
		if k.x >= x0+4 && k.x < x0+cw-4 && k.y >= y0+4 && k.y < y0+ch-4 {
			k.x -= x0
			k.y -= y0
			in = append(in, k)
		}
	}
	ckps := pickKeypoints(in, indexKeypoints, cw, ch)
	for i := range ckps {
		ckps[i].x += x0
		ckps[i].y += y0
	}
	clong := long * centralFrac
	more := pairWindows(ss, p, ckps, indexMinPair*clong, indexMaxPair*clong, 1.0, minWinQuality, 0, MaxWindows, true, false, fast, fast && h.fs.avx2)
	n := len(ws) + centralExtra
	for _, c := range more {
		if len(ws) >= n {
			break
		}
		if !slices.ContainsFunc(ws, func(w window) bool {
			return math.Abs(w.cx-c.cx) < 0.5 && math.Abs(w.cy-c.cy) < 0.5 && math.Abs(w.side-c.side) < 0.5 && math.Abs(w.angle-c.angle) < 0.01
		}) {
			ws = append(ws, c)
		}
	}
	return ws
}

// centralFrac and centralExtra: an indexed image also stores up to
// centralExtra windows anchored on the blobs of its middle centralFrac.
const (
	centralFrac  = 0.75
	centralExtra = 16
)

func planeStd(p *plane) float64 {
	var s, s2 float64
	for _, v := range p.p {
		s += float64(v)
		s2 += float64(v) * float64(v)
	}
	n := float64(len(p.p))
	return math.Sqrt(math.Max(s2/n-(s/n)*(s/n), 0))
}

// region converts a window to fractions of its plane.
func (wd *window) region(p *plane) Region {
	long := float32(max(p.w, p.h))
	return Region{CX: float32(wd.cx) / float32(p.w), CY: float32(wd.cy) / float32(p.h), Side: float32(wd.side) / long, Angle: float32(wd.angle)}
}

// Window selection: blobs detected per plane (index, query), windows kept
// per query plane, and the extra working size of a query's whole image.
// An indexed image's windows come from pairs of its 32 strongest blobs (24
// until 2026-12-04): of three smooth generated pictures whose 75 % crops
// no indexed window met (nearest 32-108 bits), each had one to three
// windows within 28 bits with 32, as the 48 most central windows then
// draw on more pairs.
const (
	indexKeypoints = 32
	queryKeypoints = 28
	wholeWindows   = 48
	maxQueryWins   = 128
	// cropScale is the extra working size (a fraction of workSide) at
	// which a query's whole image is searched for windows: a copy cropped
	// to a fraction f of the original's side shows its content at the
	// original's scale when drawn at f x workSide. 0.75 (0.8 until
	// 2026-12-03): in the 10k x 10k eval it found 0.925 of the generated
	// 75 % crops against 0.850, and hflip+crop75 0.925 against 0.850,
	// with no false positive; the real photos moved by one query either
	// way per kind (docs/neardup.md).
	cropScale = 0.75
	// nearCropScale is the working size (a fraction of workSide) at which
	// every query rectangle, the whole image and each content rectangle,
	// is also searched for windows: a light crop (90 %) drawn at the
	// working size shows its content a ninth larger than the original's
	// windows do, which neither workSide nor cropScale meets well. Added
	// 2026-12-03: in the 1k eval (1,000 generated originals and the real
	// photos, 1,000 distractors) real crop90 went from 0.850 to 1.000,
	// crop90+screenshot 0.900 to 1.000, all real single edits (PDQ quality
	// >= 50) 0.973 to 0.988 and two-edit combinations 0.900 to 0.932,
	// generated combinations 0.930 to 0.943, with no false positive; a
	// query hashes and searches about a third more windows
	// (docs/neardup.md).
	nearCropScale = 0.9
	// smoothCropPlane: a query's whole image is also searched for the
	// windows of its cropScale plane smoothed once by a [1 2 1] / 4
	// filter across and down (plane.smoothed; the query only, so the
	// stored hashes are unchanged). Hard JPEG re-compression over a crop
	// (crop75+jpeg30) leaves blocking and ringing that move the keypoints
	// and the bits of that plane's windows; the smoothed plane's windows
	// meet the original's more often. In the 200-picture run
	// crop75+jpeg30 went from 0.900 to 0.920 (both planes: 0.925; the
	// working size's alone: 0.905), crop75 0.955 to 0.960, hflip+crop75
	// 0.965 to 0.970, with no false positive (docs/neardup.md).
	smoothCropPlane = true
)

// partScales are the extra working sizes (fractions of workSide) of a
// PartsQuery's whole image: an indexed 90 % or 75 % crop of the query
// image, hashed at workSide, shows the query's content 1/0.9 or 1/0.75
// times larger. On 53 pictures (the committed photos and 40 generated)
// with their crops indexed, the pictures as queries found (as parts) 53
// of 53 crop90 and 32 of 53 crop75 without these planes, 53 and 51 with
// them (TestPartsSearch).
var partScales = [...]float64{1 / nearCropScale, 1 / cropScale}
