package domain

import (
	"context"
	"errors"
	"fmt"
)

// ErrInvalidQuery marks an error caused by the query itself (a distance
// bound out of range, a code of the wrong length, a plan the index cannot
// run): the query service answers it with 400, not as an index failure.
// Wrap it: fmt.Errorf("%w: ...", ErrInvalidQuery).
var ErrInvalidQuery = errors.New("invalid query")

// PDQ hashes are 256 bits.
const (
	PDQBytes       = 32
	MaxPDQDistance = 256
)

// NearDupQuery asks for the image records whose PDQ hash is within
// MaxDistance bits of any of Hashes (for an image query, its eight dihedral
// variants, so rotated and mirrored copies match too).
type NearDupQuery struct {
	Hashes      [][]byte // PDQBytes each
	MaxDistance int      // 0..MaxPDQDistance
	// K bounds the matches returned, nearest first; 0 returns every match.
	K int
	// MinQuality skips records whose PDQ quality (0..100) is lower.
	MinQuality int
	Filter     Filter
}

// WindowSearch tunes a search of an image query's near-duplicate windows:
// K bounds the matches (0: all), Filter restricts the records, and Parts
// also finds the records that show a part of the query image (its crops:
// the query contains them), as well as those that show it.
type WindowSearch struct {
	K      int
	Filter Filter
	Parts  bool
}

// MaxNearDupHashes bounds the hashes of one near-duplicate query.
const MaxNearDupHashes = 64

// Validate checks q as every index does before it searches: the distance
// bound in 0..MaxPDQDistance, 1 to MaxNearDupHashes hashes of PDQBytes each,
// K not negative. The error wraps ErrInvalidQuery.
func (q *NearDupQuery) Validate() error {
	if q.MaxDistance < 0 || q.MaxDistance > MaxPDQDistance {
		return fmt.Errorf("%w: distance bound %d is outside 0..%d", ErrInvalidQuery, q.MaxDistance, MaxPDQDistance)
	}
	if len(q.Hashes) == 0 || len(q.Hashes) > MaxNearDupHashes {
		return fmt.Errorf("%w: give 1 to %d PDQ hashes, got %d", ErrInvalidQuery, MaxNearDupHashes, len(q.Hashes))
	}
	if q.K < 0 {
		return fmt.Errorf("%w: k must not be negative, got %d", ErrInvalidQuery, q.K)
	}
	for i, h := range q.Hashes {
		if len(h) != PDQBytes {
			return fmt.Errorf("%w: PDQ hash %d has %d bytes, want %d", ErrInvalidQuery, i, len(h), PDQBytes)
		}
	}
	return nil
}

// NearDupHit is a near-duplicate match: Hit.Distance is the smallest
// Hamming distance to any query hash and Variant the index in
// NearDupQuery.Hashes that gave it (the first one on ties).
type NearDupHit struct {
	Hit
	Variant int `json:"-"`
	// Windows, for a match found by the image's near-duplicate windows
	// (a crop, or a copy that whole-image PDQ misses), says how it matched;
	// nil for a whole-image match.
	Windows *WindowMatch `json:"-"`
}

// WindowMatch is the evidence of a near-duplicate found by windows: how
// many windows agree on one placement of the query over the original (of
// how many of its indexed windows lie in the part the query shows),
// the part of the query that showed the picture ([x0, y0, x1, y1] in query
// pixels), the part of the original it shows ([x0, y0, x1, y1] as
// fractions of its width and height: the crop), and the rotation or mirror
// that turns the original into the query (encoders/pdq's names).
type WindowMatch struct {
	// Part marks a match of a WindowSearch with Parts: the indexed image
	// shows a part of the query (a crop of its picture), QueryRect is
	// where in the query, and Shown the whole indexed image.
	Part      bool
	Windows   int
	Visible   int // the original's windows inside the part the query shows
	QueryRect [4]int
	Shown     [4]float32
	Transform string
	// Pixels and PixelDetail are the pixel check's correlations of the
	// query's pixels with the original's, of the values and of the detail
	// (0: not checked, windows stored before the check; PixelDetail 0: the
	// original has no detail at the check's scale).
	Pixels, PixelDetail float64
	// LowFrequency marks a window match whose agreeing windows met only on
	// the bits of their lowest frequencies (encoders/neardup's low hits: a
	// copy re-compressed hard); the distance is then beyond the window
	// radius.
	LowFrequency bool
	// Whole marks a whole-image match beyond the PDQ threshold that the
	// pixel check verified (encoders/neardup.WholeBandDistance): the
	// query rectangle laid over the whole original, no windows.
	Whole bool
	// Area marks a match by the area hash of the query rectangle (the
	// whole image, or a content rectangle, area-averaged onto PDQ's 64 x
	// 64 grid: encoders/neardup's Kind Area) within the PDQ threshold of
	// the original's: a downscaled copy whose PDQ hash moved. No windows.
	Area bool
	// Cleaned marks a match by the cleaned hash of the query rectangle
	// (bright thin overlays such as a watermark suppressed:
	// encoders/neardup's Kind Cleaned) within the PDQ threshold of the
	// original's cleaned hash: a watermarked copy. No windows.
	Cleaned bool
}

// NearDupSearcher answers near-duplicate queries. Results are sorted by
// distance, then primary key.
type NearDupSearcher interface {
	NearDup(ctx context.Context, q NearDupQuery) ([]NearDupHit, error)
}
