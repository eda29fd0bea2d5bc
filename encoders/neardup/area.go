package neardup

import (
	"image"

	"github.com/xmodal/xmodal/encoders/pdq"
)

// Area hashes: PDQ shrinks an image to its 64 x 64 grid with a box filter
// whose window grows in whole pixels with the image's size (one pixel up to
// 128, two up to 256, ...), so a textured picture aliases differently at
// each size: a 256-pixel photo of the ThreatExchange set and its 25 %
// downscale lie 70 bits apart, a 640-pixel brick wall and its 50 %
// downscale 58. The area hash of an image (or of a query's content
// rectangle) is PDQ's hash of the image area-averaged onto the 64 x 64
// grid, which any downscale leaves nearly unchanged (0-6 bits on the
// committed photos at 50 % and 25 %). Indexed images carry it beside their
// PDQ hash, and queries search theirs among the indexed area hashes only:
// it is not PDQ, so it never meets a PDQ hash (see areaSpace).

// areaSide is the grid an area hash is computed on (PDQ's own).
const areaSide = 64

// areaHash returns the area hash of the rectangle r of a w x hh luma
// plane, and its PDQ quality.
func (h *Hasher) areaHash(luma []float32, w, hh int, r image.Rectangle) (pdq.Hash, int) {
	src, sw, sh := luma, w, hh
	if r != image.Rect(0, 0, w, hh) {
		c := (&plane{w: w, h: hh, p: luma}).crop(r.Min.X, r.Min.Y, r.Max.X, r.Max.Y)
		src, sw, sh = c.p, c.w, c.h
	}
	var p *plane
	if h.useFast() {
		p = h.fs.resample(src, sw, sh, areaSide, areaSide)
	} else {
		p = resampleArea(src, sw, sh, areaSide, areaSide)
	}
	return h.pdq.HashLuma(p.p, p.w, p.h)
}

// inSpace returns h with every byte XORed with b, a byte of four set bits
// (so 128 bits in all): two hashes moved by the same b lie as far apart as
// before, while a moved and an unmoved hash lie about 128 bits apart
// whatever the pictures (within 56 bits, the widest whole-image search,
// with odds under 1e-12). Hashes of different kinds then share one list
// or one multi-index without meeting.
func inSpace(h pdq.Hash, b byte) pdq.Hash {
	for i := range h {
		h[i] ^= b
	}
	return h
}

// The bytes that move area hashes (in the index's whole-image searcher)
// and cleaned hashes (there, and in near-duplicate clusters' signatures)
// into spaces of their own. Fixed: stored signatures depend on them.
const (
	areaSpaceByte    = 0x5a
	cleanedSpaceByte = 0xa5
)

// areaSpace moves an area hash into its space in the whole-image searcher
// (stored signatures hold area hashes as computed).
func areaSpace(h pdq.Hash) pdq.Hash { return inSpace(h, areaSpaceByte) }

// areaRef marks an area hash's ref in the whole-image searcher: entry
// index | areaRef (an entry's PDQ hash is under the entry index itself).
const areaRef = 1 << 31

// cleanedRef marks a cleaned hash's ref there in the same way (clean.go).
// An index therefore holds under 2^30 images (a PDQ hash's ref is the
// entry index itself).
const cleanedRef = 1 << 30
