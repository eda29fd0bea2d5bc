package banks

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/encoders/pdq"
)

// RegionMatch is a PDQ entry matched by one region of a query image.
type RegionMatch struct {
	Match
	// Region is "whole" (the whole image's hash, as Match finds it) or
	// "content" (a content rectangle: the picture cut from a caption
	// band, an app's or a browser's frame, margins or letterboxing).
	Region string `json:"region"`
	// Rect is the region in query pixels: x0, y0, x1, y1.
	Rect [4]int `json:"rect"`
	// Cleaned says that the region's cleaned hash matched
	// (neardup.QueryHash.Cleaned: bright thin overlays such as a
	// watermark suppressed), not its plain PDQ hash.
	Cleaned bool `json:"cleaned,omitempty"`
}

// MatchRegions matches a query image against the PDQ entries of the
// enabled banks (or of banks) by the near-duplicate region method of
// encoders/neardup: the whole image's eight dihedral hashes, exactly as
// Match with Query.PDQ does, and those of each content rectangle of q
// (neardup.Hasher.QueryRects), so that a meme or a screenshot of a banked
// image is found although its whole-image hash is far from the entry's.
// The cleaned hash of each (QueryHash.Cleaned: a watermarked copy) is
// matched too, reported with Cleaned. Banks hold whole-image PDQ hashes
// (from other platforms too), so the query's windows (crops) cannot take
// part. Each entry is reported once,
// by its nearest region (the whole image first on ties). A content
// rectangle flatter than neardup.DefaultMinQuality is skipped: a plain band
// would match every plain entry.
func (s *State) MatchRegions(ctx context.Context, q *neardup.Query, banks []string) ([]RegionMatch, error) {
	if q == nil || len(q.Rects) == 0 {
		return nil, fmt.Errorf("%w: no image regions", ErrInvalidQuery)
	}
	type key struct{ bank, entry string }
	best := map[key]int{}
	var out []RegionMatch
	for i := range 2 * len(q.Rects) {
		// Each rectangle's plain hashes, then its cleaned hash.
		ri, cleaned := i/2, i%2 == 1
		r := q.Rects[ri]
		var hs []pdq.Hash
		quality := 0
		for _, h := range q.Hashes {
			if h.Kind == neardup.Whole && h.Rect == ri && h.Cleaned == cleaned {
				hs = append(hs, h.Hash)
				quality = h.Quality
			}
		}
		if len(hs) == 0 || ((ri > 0 || cleaned) && quality < neardup.DefaultMinQuality) {
			continue
		}
		ms, err := s.Match(ctx, Query{PDQ: hs, Banks: banks})
		if err != nil {
			return nil, err
		}
		region := "content"
		if ri == 0 {
			region = "whole"
		}
		for _, m := range ms {
			rm := RegionMatch{Match: m, Region: region, Rect: [4]int{r.Min.X, r.Min.Y, r.Max.X, r.Max.Y}, Cleaned: cleaned}
			k := key{m.Bank, m.EntryID}
			if i, ok := best[k]; ok {
				if *m.Distance < *out[i].Distance {
					out[i] = rm
				}
				continue
			}
			best[k] = len(out)
			out = append(out, rm)
		}
	}
	// Match's order for PDQ matches: bank, distance, entry id.
	slices.SortFunc(out, func(a, b RegionMatch) int {
		return cmp.Or(strings.Compare(a.Bank, b.Bank), cmp.Compare(*a.Distance, *b.Distance), strings.Compare(a.EntryID, b.EntryID))
	})
	return out, nil
}
