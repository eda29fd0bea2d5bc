package query

import (
	"context"
	"errors"
	"image"
	"math"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/encoders/pdq"
)

// Coder computes the binary code of a query vector for the hash and hybrid
// plans; *encoders/hash.Coder implements it. m is the modality the vector
// came from (text for a text query, image for an image query; a raw vector
// is taken to be of the modality searched).
type Coder interface {
	Code(vec []float32, m domain.Modality) []byte
}

// PDQMaxSide is the pdq.Hasher MaxSide of query images, and must be that of
// the indexed ones (cmd/xmodal uses it at ingest): -1 hashes at full
// resolution, as the reference library functions and the pdqhash wheel do.
// The reference command-line tools shrink images to 512 pixels first; both
// forms of one image agree within about 12 bits, but the shrink breaks the
// mirror symmetry of the sampling grid, so flipped copies would match 16-18
// bits off instead of within 10.
const PDQMaxSide = -1

// Near-duplicate request limits and defaults.
const (
	// DefaultNearDupDistance is PDQ's usual match threshold (ThreatExchange).
	DefaultNearDupDistance = 31
	DefaultNearDupK        = 100
)

// NearDupRequest is the body of xmodal.v1.neardup: exactly one of Image
// (base64 in JSON), ImageURL and PDQ (64 hex characters).
//
// An image query matches over the eight dihedral variants of its PDQ hash
// (rotations and mirror images match too); a PDQ hex query matches that
// hash only (the variants come from the image's DCT, not from the hash).
type NearDupRequest struct {
	Image    []byte `json:"image,omitempty"`
	ImageURL string `json:"image_url,omitempty"`
	PDQ      string `json:"pdq,omitempty"`
	// MaxDistance is the Hamming distance bound, 0..256; default 31.
	MaxDistance *int `json:"max_distance,omitempty"`
	// K bounds the matches returned, nearest first, 1..MaxK; absent: 100. An
	// explicit 0 is refused (400); a Go client's zero K is omitted, so it asks
	// for the default.
	K int `json:"k,omitempty"`
	// MinQuality skips indexed images whose PDQ quality (0..100) is lower.
	MinQuality int           `json:"min_quality,omitempty"`
	Filter     domain.Filter `json:"filter,omitzero"`
	Thumbnails bool          `json:"thumbnails,omitempty"`
	// Windows searches an image query's windows too (encoders/neardup:
	// crops that whole-image PDQ misses), where the index holds them (the
	// index with image.neardup_windows: embedded, or Milvus with its shared
	// windows); absent: true.
	Windows *bool `json:"windows,omitempty"`
	// Parts also finds the indexed images that show a part of the query
	// image (its crops: the query contains them), kind "part", by their
	// windows, as a moderator looking for the posts that cut a known image
	// needs. An image query with windows only; the query hashes its
	// windows at two more sizes (a few ms more).
	Parts bool `json:"parts,omitempty"`
}

// NearDupMatch is one near-duplicate: the hit (Distance set) and, for image
// queries, the transform of the query that matched (original, rotate90,
// rotate180, rotate270, flipx, flipy, flipplus1, flipminus1) and, when the
// match was the picture inside the query rather than the whole query (a
// caption band, an app or browser frame or borders cut away), the
// rectangle of the query that held it, [x0, y0, x1, y1] in query pixels.
//
// Kind says what found it: "whole" (the query's whole-image PDQ hash or one
// of its variants), "region" (the PDQ hash of a content rectangle of the
// query: the picture inside a caption band or a frame) or "window" (the
// image's near-duplicate windows: a crop, found by Windows windows that
// agree on one placement, of the Visible indexed windows that lie in the
// part of the image the query shows; Shown is then the part of the indexed image the
// query shows, [x0, y0, x1, y1] as fractions of its width and height,
// Pixels and Detail the pixel check's correlations of the query's pixels
// with the indexed image's over that part, of the values and of the detail
// (docs/neardup.md), and Distance the best window's). "area": the area
// hash of the query (or of the content rectangle Region) lies within the
// threshold of the indexed image's (a downscaled copy; encoders/neardup).
// "cleaned": the PDQ hash of the query (or of the content rectangle Region)
// with bright thin overlays suppressed lies within the threshold of the
// indexed image's PDQ hash or, on the embedded index with windows, of its
// cleaned hash (a watermarked copy; encoders/neardup). "part" (a request
// with Parts): the indexed image shows a part of the query (a crop of its
// picture), found by its windows; Region is where in the query it lies
// and Shown the whole indexed image.
type NearDupMatch struct {
	domain.Hit
	Kind      string    `json:"kind"`
	Transform string    `json:"transform,omitempty"`
	Region    []int     `json:"region,omitempty"`
	Windows   int       `json:"windows,omitempty"`
	Visible   int       `json:"visible_windows,omitempty"`
	Shown     []float32 `json:"shown,omitempty"`
	Pixels    float64   `json:"pixels,omitempty"`
	Detail    float64   `json:"pixel_detail,omitempty"`
	// LowFrequency: a window match whose windows agreed only on their
	// lowest frequencies (a copy re-compressed hard; Distance then beyond
	// the window radius).
	LowFrequency bool `json:"low_frequency,omitempty"`
}

// Window search states of a near-duplicate reply (NearDupResponse.Windows).
const (
	WindowsSearched    = "searched"    // the query's windows were matched
	WindowsBuilding    = "building"    // the index is still building its window tables (whole-image matches only)
	WindowsUnavailable = "unavailable" // the index holds no windows (image.neardup_windows off), or the query is a hash
	WindowsOff         = "off"         // the request asked for none
)

// NearDupResponse is the reply of xmodal.v1.neardup.
type NearDupResponse struct {
	Matches []NearDupMatch `json:"matches"`
	// PDQ is the query's hash (hex) and Quality its quality (image queries).
	PDQ         string `json:"pdq"`
	Quality     *int   `json:"quality,omitempty"`
	MaxDistance int    `json:"max_distance"`
	// Windows says whether windows were searched (WindowsSearched, ...).
	Windows string  `json:"windows"`
	TookMS  float64 `json:"took_ms"`
}

// windowSearcher is an index that holds its images' near-duplicate windows
// (the embedded index; a Milvus index with the deployment's shared windows).
type windowSearcher interface {
	NearDupWindows(ctx context.Context, q *neardup.Query, s domain.WindowSearch) ([]domain.NearDupHit, error)
	WindowsReady() bool
	// WindowImages is the number of images whose windows it holds (0:
	// windows are not computed at ingest, image.neardup_windows).
	WindowImages() int
}

// ParseNearDup decodes and validates a near-duplicate request, filling the
// defaults (exported for the fuzz test and the HTTP gateway).
func ParseNearDup(data []byte) (*NearDupRequest, error) {
	var w struct {
		NearDupRequest
		K *int `json:"k"` // shadows NearDupRequest.K: absent (nil) is not 0
	}
	if err := decodeStrict(data, &w); err != nil {
		return nil, err
	}
	r := w.NearDupRequest
	r.K = orDefault(w.K, DefaultNearDupK)
	if err := oneOf("image, image_url or pdq", len(r.Image) > 0, r.ImageURL != "", r.PDQ != ""); err != nil {
		return nil, err
	}
	if err := checkImageSize(r.Image); err != nil {
		return nil, err
	}
	if err := checkPDQHex(r.PDQ); err != nil {
		return nil, err
	}
	if r.Parts && (r.PDQ != "" || (r.Windows != nil && !*r.Windows)) {
		return nil, errorf(CodeBadRequest, "parts: give an image query with windows (a hash cannot show where a crop lies)")
	}
	if r.MaxDistance == nil {
		d := DefaultNearDupDistance
		r.MaxDistance = &d
	}
	if d := *r.MaxDistance; d < 0 || d > domain.MaxPDQDistance {
		return nil, errorf(CodeBadRequest, "max_distance %d is outside 0..%d", d, domain.MaxPDQDistance)
	}
	if r.K < 1 || r.K > MaxK {
		return nil, errorf(CodeBadRequest, "k must be between 1 and %d, got %d", MaxK, r.K)
	}
	if r.MinQuality < 0 || r.MinQuality > 100 {
		return nil, errorf(CodeBadRequest, "min_quality %d is outside 0..100", r.MinQuality)
	}
	if err := validateFilter(&r.Filter); err != nil {
		return nil, err
	}
	return &r, nil
}

func (s *Service) neardup(ctx context.Context, data []byte) (any, error) {
	start := time.Now()
	r, err := ParseNearDup(data)
	if err != nil {
		return nil, err
	}
	if err := s.checkIndexFilter(&r.Filter); err != nil {
		return nil, err
	}
	nd, ok := s.d.Index.(domain.NearDupSearcher)
	if !ok {
		return nil, errorf(CodeUnavailable, "near-duplicate search is not supported by this index")
	}
	if err := s.syncDeny(ctx); err != nil {
		return nil, err
	}
	res := &NearDupResponse{MaxDistance: *r.MaxDistance, Windows: WindowsUnavailable}
	ws, hasWindows := s.d.Index.(windowSearcher)
	wantWindows := hasWindows && r.PDQ == "" && (r.Windows == nil || *r.Windows)
	switch {
	case r.PDQ != "":
	case !hasWindows:
	case ws.WindowsReady() && ws.WindowImages() == 0:
		wantWindows = false // nothing indexed has windows: "unavailable"
	case !wantWindows:
		res.Windows = WindowsOff
	case !ws.WindowsReady():
		res.Windows, wantWindows = WindowsBuilding, false
	default:
		res.Windows = WindowsSearched
	}
	var hashes [][]byte
	var rects []queryRect // per image-query hash: its part of the query and variant
	var wq *neardup.Query
	if r.PDQ != "" {
		h, _ := pdq.ParseHex(r.PDQ) // validated by ParseNearDup
		hashes = [][]byte{h[:]}
		res.PDQ = h.String()
	} else {
		dec, err := s.queryImage(ctx, r.Image, r.ImageURL)
		if err != nil {
			return nil, err
		}
		in := dec.HashInput
		if in == nil {
			in = dec.Image
		}
		hashes, rects, res.PDQ, res.Quality, wq = imageQueryHashes(in, wantWindows, r.Parts)
		dec.Release()
	}
	hits, err := nd.NearDup(ctx, domain.NearDupQuery{Hashes: hashes, MaxDistance: *r.MaxDistance, K: r.K,
		MinQuality: r.MinQuality, Filter: r.Filter})
	if err != nil {
		return nil, indexErr(err)
	}
	var winHits []domain.NearDupHit
	if wq != nil {
		if winHits, err = ws.NearDupWindows(ctx, wq, domain.WindowSearch{K: r.K, Filter: r.Filter, Parts: r.Parts}); err != nil {
			return nil, indexErr(err)
		}
	} else if wantWindows {
		res.Windows = WindowsUnavailable // the query image has no windows (too small or too large)
	}
	res.Matches = make([]NearDupMatch, 0, len(hits)+len(winHits))
	seen := map[string]bool{}
	for _, h := range hits {
		if s.d.Deny.Denied(h.PostID) {
			continue
		}
		m := NearDupMatch{Hit: h.Hit, Kind: "whole"}
		if !r.Thumbnails {
			m.Thumbnail = nil
		}
		if h.Variant < len(rects) {
			qr := rects[h.Variant]
			m.Transform = qr.transform.String()
			if !qr.whole {
				m.Kind = "region"
				m.Region = []int{qr.rect.Min.X, qr.rect.Min.Y, qr.rect.Max.X, qr.rect.Max.Y}
			}
			if qr.cleaned {
				m.Kind = "cleaned"
			}
		}
		seen[h.PK] = true
		res.Matches = append(res.Matches, m)
	}
	// Window matches follow the whole-image ones (a whole-image match is
	// the stronger evidence), best first, up to k in all.
	for _, h := range winHits {
		if len(res.Matches) >= r.K {
			break
		}
		if seen[h.PK] || h.Windows == nil || s.d.Deny.Denied(h.PostID) {
			continue
		}
		w := h.Windows
		m := NearDupMatch{Hit: h.Hit, Kind: "window", Transform: w.Transform, Windows: w.Windows, Visible: w.Visible, Shown: w.Shown[:],
			Pixels: math.Round(w.Pixels*1000) / 1000, Detail: math.Round(w.PixelDetail*1000) / 1000, LowFrequency: w.LowFrequency}
		switch {
		case w.Part:
			// The indexed image is a crop of the query's picture:
			// Region (below) is where in the query.
			m.Kind = "part"
		case w.Whole:
			// The whole-image hash beyond the threshold, verified by the
			// pixel check: "whole", or "region" for a content rectangle.
			m.Kind, m.Windows, m.Visible, m.Shown = "whole", 0, 0, nil
			if w.QueryRect != [4]int{0, 0, wq.W, wq.H} {
				m.Kind = "region"
			}
		case w.Area:
			// The area hash of the query (or of a content rectangle,
			// Region set below) within the threshold of the original's.
			m.Kind, m.Windows, m.Visible, m.Shown = "area", 0, 0, nil
		case w.Cleaned:
			// The cleaned hash of the query (or of a content
			// rectangle) within the threshold of the original's.
			m.Kind, m.Windows, m.Visible, m.Shown = "cleaned", 0, 0, nil
		}
		if !r.Thumbnails {
			m.Thumbnail = nil
		}
		if qr := w.QueryRect; qr != [4]int{0, 0, wq.W, wq.H} {
			m.Region = qr[:]
		}
		res.Matches = append(res.Matches, m)
	}
	res.TookMS = float64(time.Since(start).Microseconds()) / 1000
	return res, nil
}

// queryRect says what an image query's hash covers.
type queryRect struct {
	rect      image.Rectangle
	whole     bool
	transform pdq.Dihedral
	cleaned   bool // the rectangle's cleaned hash (neardup.QueryHash.Cleaned)
}

// imageQueryHashes returns the hashes an image query matches with: the
// eight dihedral variants of its PDQ hash and, for each content rectangle
// that encoders/neardup cuts out of it (the picture inside a meme's
// caption band, an app's or a browser's frame, borders), the eight
// variants of that rectangle's PDQ hash, which match the indexed whole
// image, and the cleaned hash of the whole image and of each rectangle
// (upright: a watermarked copy). Rectangles too flat to trust (PDQ quality under
// neardup.DefaultMinQuality) are left out. An image under neardup's size
// floor gets its whole-image variants only.
func imageQueryHashes(img image.Image, windows, parts bool) (hashes [][]byte, rects []queryRect, hex string, quality *int, wq *neardup.Query) {
	nh := neardup.NewHasher(neardup.Options{PDQMaxSide: PDQMaxSide})
	var q *neardup.Query
	var err error
	switch {
	case windows && parts:
		q, err = nh.PartsQuery(img)
	case windows:
		q, err = nh.Query(img)
	default:
		q, err = nh.QueryRects(img)
	}
	if err != nil {
		hs := pdq.Hasher{MaxSide: PDQMaxSide}
		vs, qual := hs.Dihedral(img)
		for i := range vs {
			hashes = append(hashes, vs[i][:])
			rects = append(rects, queryRect{rect: img.Bounds(), whole: true, transform: pdq.Dihedral(i)})
		}
		return hashes, rects, vs[pdq.Original].String(), &qual, nil
	}
	for _, h := range q.Hashes {
		if h.Kind != neardup.Whole {
			continue
		}
		if h.Rect == 0 && h.Transform == pdq.Original && !h.Cleaned {
			hex, quality = h.Hash.String(), &h.Quality
		}
		if (h.Rect > 0 || h.Cleaned) && h.Quality < neardup.DefaultMinQuality {
			continue
		}
		hashes = append(hashes, h.Hash[:])
		rects = append(rects, queryRect{rect: q.Rects[h.Rect], whole: h.Rect == 0, transform: h.Transform, cleaned: h.Cleaned})
	}
	if windows {
		wq = q
	}
	return hashes, rects, hex, quality, wq
}

// queryImage fetches (image_url) and decodes a query image: an *Error from
// the decoder keeps its code (413), any other failure is a 422. Release the
// result.
func (s *Service) queryImage(ctx context.Context, data []byte, url string) (DecodedImage, error) {
	if url != "" {
		b, err := s.fetchImage(ctx, url)
		if err != nil {
			return DecodedImage{}, err
		}
		data = b
	}
	return s.decodeImage(ctx, data)
}

// fetchImage fetches a query's image_url behind the SSRF guard (400 when
// this server fetches none, 422 when the fetch fails).
func (s *Service) fetchImage(ctx context.Context, url string) ([]byte, error) {
	if s.d.Fetcher == nil {
		return nil, errorf(CodeBadRequest, "image_url queries are not enabled on this server")
	}
	b, err := s.d.Fetcher.Fetch(ctx, url)
	if err != nil {
		return nil, errorf(CodeUnprocessable, "fetch image_url: %w", err)
	}
	return b, nil
}

// decodeImage decodes a query image under ctx; an *Error from the decoder
// keeps its code, the context's error passes through (the request's
// deadline), anything else is a 422. The result's Release is never nil.
func (s *Service) decodeImage(ctx context.Context, data []byte) (DecodedImage, error) {
	dec, err := s.d.Decode(ctx, data)
	if err != nil {
		var e *Error
		switch {
		case errors.As(err, &e):
			return DecodedImage{}, e
		case ctx.Err() != nil && errors.Is(err, ctx.Err()):
			return DecodedImage{}, err
		}
		return DecodedImage{}, errorf(CodeUnprocessable, "image: %w", err)
	}
	if dec.Release == nil {
		dec.Release = func() {}
	}
	return dec, nil
}

// searchCoded runs one per-modality search of a plan that ranks binary
// codes with the query's code set (from Deps.Coder; without one the index
// codes the query itself or refuses the plan).
func (s *Service) searchCoded(ctx context.Context, q domain.VectorQuery, r *SearchRequest) ([]domain.Hit, error) {
	if (q.Plan == domain.PlanHash || q.Plan == domain.PlanHybrid) && s.d.Coder != nil && len(q.Code) == 0 {
		src := q.Modality
		switch {
		case r.Text != "":
			src = domain.ModalityText
		case len(r.Image) > 0 || r.ImageURL != "":
			src = domain.ModalityImage
		}
		q.Code = s.d.Coder.Code(q.Vector, src)
	}
	return s.searchOne(ctx, q, r)
}

// invalidQuery maps an index's domain.ErrInvalidQuery to a 400.
func invalidQuery(err error) error {
	if errors.Is(err, domain.ErrInvalidQuery) {
		return errorf(CodeBadRequest, "%w", err)
	}
	return nil
}
