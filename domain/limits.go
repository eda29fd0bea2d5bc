package domain

import (
	"fmt"
	"unicode/utf8"
)

// Limits of a post's identifying fields. Ingest validates posts against them
// (ingest.Validate) and the query service validates the ids and filters of
// requests against the same ones, so a request can name anything a post can
// carry and nothing longer.
const (
	MaxPostIDLen = 128 // bytes
	MaxAuthorLen = 256 // bytes
	MaxLabelLen  = 128 // bytes of one label or tag
)

// ValidPostID reports why id is not a valid post id ("" when it is valid):
// 1 to MaxPostIDLen bytes of letters, digits and . _ - : @ (so no NUL, no
// control characters, no PKSep).
func ValidPostID(id string) string {
	if id == "" {
		return "missing"
	}
	if len(id) > MaxPostIDLen {
		return fmt.Sprintf("%d bytes, over %d", len(id), MaxPostIDLen)
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == '-', c == ':', c == '@':
		default:
			return fmt.Sprintf("character %q not allowed (use letters, digits and . _ - : @)", c)
		}
	}
	return ""
}

// QuoteID quotes a post id for a message, cutting a long one (a valid id is
// at most MaxPostIDLen bytes; a bad one may be any size and is never echoed
// whole).
func QuoteID(id string) string {
	const keep = 40
	if len(id) <= MaxPostIDLen {
		return fmt.Sprintf("%q", id)
	}
	cut := id[:keep]
	for len(cut) > 0 && !utf8.ValidString(cut) {
		cut = cut[:len(cut)-1]
	}
	return fmt.Sprintf("%q… (%d bytes)", cut, len(id))
}
