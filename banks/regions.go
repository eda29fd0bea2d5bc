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
	// Shown, for a "window" match, is the part of the banked image that
	// the query shows, as fractions of its width and height: x0, y0, x1,
	// y1 (a 75 % crop shows about three quarters of each side).
	Shown *[4]float32 `json:"shown,omitempty"`
	// Windows, for a "window" match, is the number of the query's windows
	// that agree on where it lies in the banked image; Pixels the pixel
	// check's correlation of the query with the banked image's patch over
	// that part (neardup.Match.Pixels: 1 for an exact crop).
	Windows int     `json:"windows,omitempty"`
	Pixels  float64 `json:"pixels,omitempty"`
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
// part, except against the entries that carry the windows of their image
// (Entry.Windows): when q has windows (neardup.Hasher.Query), they are
// matched by neardup's verified window search, region "window" (a crop of
// the banked image, alone or inside a meme or a screenshot), Rect the
// query rectangle that shows it, Shown the part of the banked image shown
// and Distance the nearest agreeing window's; and the query's cleaned and
// area hashes meet those entries' own (a watermarked or a downscaled copy
// that the entry's PDQ hash misses: region "whole" or "content", Cleaned
// for the cleaned hash). Each entry is reported once,
// by its nearest region (the whole image first on ties; a window match
// only for an entry no hash matched). A content
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
	if slices.ContainsFunc(q.Hashes, func(h neardup.QueryHash) bool { return h.Kind == neardup.Window }) {
		wms, err := s.matchWindows(ctx, q, banks)
		if err != nil {
			return nil, err
		}
		for _, m := range wms {
			if _, ok := best[key{m.Bank, m.EntryID}]; !ok {
				out = append(out, m)
			}
		}
	}
	// Match's order for PDQ matches: bank, distance, entry id.
	slices.SortFunc(out, func(a, b RegionMatch) int {
		return cmp.Or(strings.Compare(a.Bank, b.Bank), cmp.Compare(*a.Distance, *b.Distance), strings.Compare(a.EntryID, b.EntryID))
	})
	return out, nil
}

// MatchWindows matches only the windows, and the cleaned and area hashes,
// of q (neardup.Hasher.Query) against the entries with windows of the
// enabled banks (or of names): MatchRegions' window part, for a caller that
// matches the query's whole-image and region hashes on its own (the
// matcher at ingest matches a record's stored hashes by Match). Region,
// Rect, Shown, Windows and Pixels as MatchRegions reports them; an entry
// may be reported by a window and by a hash of the same query.
func (s *State) MatchWindows(ctx context.Context, q *neardup.Query, names []string) ([]RegionMatch, error) {
	if q == nil || len(q.Rects) == 0 {
		return nil, fmt.Errorf("%w: no image regions", ErrInvalidQuery)
	}
	return s.matchWindows(ctx, q, names)
}

// matchWindows searches the windows of q among the entries with windows
// of the enabled banks (or of names).
func (s *State) matchWindows(ctx context.Context, q *neardup.Query, names []string) ([]RegionMatch, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	named := len(names) > 0
	if !named {
		for n, b := range s.banks {
			if b.wins != nil {
				names = append(names, n)
			}
		}
		slices.Sort(names)
	}
	enabled, err := s.enabled(names, named)
	if err != nil {
		return nil, err
	}
	var out []RegionMatch
	for _, b := range enabled {
		if b.wins == nil || b.wins.Len() == 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		for _, m := range b.wins.Search(q, neardup.SearchOptions{}) {
			slot := uint32(m.ID)
			if !b.usable(slot) {
				continue
			}
			rm := RegionMatch{Match: b.distanceMatch(slot, m.Distance, m.Transform.String()), Rect: m.QueryRect}
			switch m.Kind {
			case neardup.Window:
				rm.Region, rm.Windows, rm.Pixels = "window", m.Windows, m.Pixels
				rm.Shown = &[4]float32{m.Shown.X0, m.Shown.Y0, m.Shown.X1, m.Shown.Y1}
			case neardup.Cleaned, neardup.Area:
				// The entry's own cleaned or area hash (a watermarked or
				// a downscaled copy), which its PDQ hash alone misses.
				rm.Region, rm.Cleaned = "content", m.Kind == neardup.Cleaned
				if m.QueryRect == [4]int{0, 0, q.W, q.H} {
					rm.Region = "whole"
				}
			default:
				continue
			}
			out = append(out, rm)
		}
	}
	return out, nil
}
