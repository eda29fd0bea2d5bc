package query

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/pdq"
)

// Caps on the lists of a request. Every list a request carries has one
// (docs/query-api.md, "Limits"); a list over its cap is refused with 413
// naming the field and the cap, before any work is done. The filter caps keep
// a filter's cost per record small: a 100,000-author filter took seconds
// and slowed every other query.
const (
	MaxFilterAuthors = 100
	MaxFilterLabels  = 100
	// MaxFilterBanks bounds filter.matched_banks.
	MaxFilterBanks = 100
	// MaxVectorDim caps a query vector's length before it is compared with
	// the model's dimension.
	MaxVectorDim = 4096
)

// checkList refuses a list longer than its cap (413, naming field and cap).
func checkList(field string, n, limit int) error {
	if n > limit {
		return errorf(CodeTooLarge, "%s has %d items, at most %d", field, n, limit)
	}
	return nil
}

// checkItems refuses an item that no post could carry: empty, over maxLen
// bytes, not UTF-8, or holding control characters (400, naming field[i]).
func checkItems(field string, xs []string, maxLen int) error {
	for i, x := range xs {
		var why string
		switch {
		case strings.TrimSpace(x) == "":
			why = "is blank"
		case len(x) > maxLen:
			why = fmt.Sprintf("is %d bytes, over %d", len(x), maxLen)
		case !utf8.ValidString(x):
			why = "is not valid UTF-8"
		case strings.ContainsFunc(x, isControl):
			why = "contains control characters"
		}
		if why != "" {
			return errorf(CodeBadRequest, "%s[%d] %s", field, i, why)
		}
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// validateFilter checks a search or near-duplicate filter.
func validateFilter(f *domain.Filter) error {
	if err := checkList("filter.authors", len(f.Authors), MaxFilterAuthors); err != nil {
		return err
	}
	if err := checkList("filter.labels", len(f.Labels), MaxFilterLabels); err != nil {
		return err
	}
	if err := checkItems("filter.authors", f.Authors, domain.MaxAuthorLen); err != nil {
		return err
	}
	if err := checkItems("filter.labels", f.Labels, domain.MaxLabelLen); err != nil {
		return err
	}
	if err := checkList("filter.matched_banks", len(f.MatchedBanks), MaxFilterBanks); err != nil {
		return err
	}
	if err := checkItems("filter.matched_banks", f.MatchedBanks, 64); err != nil { // bank names are at most 64 bytes
		return err
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return errorf(CodeBadRequest, "filter: since must be before until")
	}
	return nil
}

// oneOf requires exactly one of the inputs named in names to be set.
func oneOf(names string, set ...bool) error {
	n := 0
	for _, b := range set {
		if b {
			n++
		}
	}
	switch {
	case n == 0:
		return errorf(CodeBadRequest, "give one of %s", names)
	case n > 1:
		return errorf(CodeBadRequest, "give only one of %s", names)
	}
	return nil
}

// checkImageSize refuses an inline image over MaxImageBytes (413).
func checkImageSize(b []byte) error {
	if len(b) > MaxImageBytes {
		return errorf(CodeTooLarge, "image is %d bytes, over %d", len(b), MaxImageBytes)
	}
	return nil
}

// checkPDQHex checks a PDQ hash given as hex ("" is none). The message,
// "pdq: malformed hash ...", names the field by the package's prefix.
func checkPDQHex(h string) error {
	if h == "" {
		return nil
	}
	if _, err := pdq.ParseHex(h); err != nil {
		return errorf(CodeBadRequest, "%w", err)
	}
	return nil
}

// checkIndexFilter refuses a filter the index cannot apply: matched_banks
// needs an index whose records keep their bank matches (the embedded one,
// Milvus collections of schema 2).
func (s *Service) checkIndexFilter(f *domain.Filter) error {
	if len(f.MatchedBanks) == 0 {
		return nil
	}
	if mk, ok := s.d.Index.(domain.MatchKeeper); !ok || !mk.KeepsMatches() {
		return errorf(CodeBadRequest, "filter.matched_banks needs an index whose records keep their bank matches: the embedded index, or Milvus collections of the current schema (migrate older ones with xmodal milvus migrate)")
	}
	return nil
}
