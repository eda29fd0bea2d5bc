// Package ingest turns messages from a source (JetStream, Kafka, files) into
// validated posts, and sends what cannot be indexed to a dead-letter destination
// with its reason.
package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/xmodal/xmodal/domain"
)

// Limits of a valid post (schema 1). They are documented in docs/post-format.md.
const (
	MaxMessageBytes  = 8 << 20 // a whole message, inline image included
	MaxIDLen         = domain.MaxPostIDLen
	MaxAuthorLen     = domain.MaxAuthorLen
	MaxTextBytes     = 64 << 10
	MaxLangLen       = 35
	MaxURLLen        = 2048
	MaxInlineImage   = 6 << 20
	MaxListItems     = 64
	MaxListItemBytes = domain.MaxLabelLen
)

// earliest is the oldest created_at accepted; future timestamps may lead the
// ingest clock by at most maxClockSkew.
var earliest = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

const maxClockSkew = 24 * time.Hour

// ValidationError says which field of a post is wrong and why.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return "invalid post: " + e.Reason
	}
	return "invalid post: " + e.Field + ": " + e.Reason
}

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// DecodePost parses and validates one message value as a post. now bounds how far
// in the future created_at may be. Unknown fields are refused: producers that add
// fields must bump the schema version.
func DecodePost(b []byte, now time.Time) (*domain.Post, error) {
	if len(b) == 0 {
		return nil, invalid("", "empty message")
	}
	if len(b) > MaxMessageBytes {
		return nil, invalid("", "message is %d bytes, over the %d-byte limit", len(b), MaxMessageBytes)
	}
	if !utf8.Valid(b) {
		return nil, invalid("", "message is not valid UTF-8")
	}
	var p domain.Post
	if rest, data, ok := splitImageData(b, fastDataMin); ok && decodeJSON(rest, &p) == nil && p.Image != nil {
		// A large inline image, taken out of the message (fastdata.go).
		p.Image.Data = data
	} else {
		p = domain.Post{}
		if err := decodeJSON(b, &p); err != nil {
			return nil, err
		}
	}
	if err := Validate(&p, now); err != nil {
		return nil, err
	}
	return &p, nil
}

// decodeJSON decodes one JSON object into p, refusing unknown fields and
// trailing data.
func decodeJSON(b []byte, p *domain.Post) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(p); err != nil {
		if namesLocalFile(b) {
			return invalid("image_file", "%s", ImageFileRefusal)
		}
		return invalid("", "malformed JSON: %s", jsonErr(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return invalid("", "trailing data after the JSON object")
	}
	return nil
}

// ImageFileRefusal is why a message naming a local image path is refused.
const ImageFileRefusal = "a local file path is never opened by the server; `xmodal post` and `xmodal ingest` " +
	"read image_file on the client side (relative to the posts file) and send the bytes as image.data; " +
	"other producers send image.url or image.data"

// namesLocalFile reports whether a message that failed strict decoding has
// an image_file field (the client-side field of post files).
func namesLocalFile(b []byte) bool {
	var probe struct {
		ImageFile json.RawMessage `json:"image_file"`
	}
	return json.Unmarshal(b, &probe) == nil && len(probe.ImageFile) > 0
}

// QuoteID quotes a post id for a message, cutting a long one
// (domain.QuoteID).
func QuoteID(id string) string { return domain.QuoteID(id) }

func jsonErr(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s at byte %d", se.Error(), se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %q: %s is not a %s", te.Field, te.Value, te.Type)
	}
	return err.Error()
}

// ValidID reports why id is not a valid post id ("" when it is valid);
// the rule is domain.ValidPostID, which the query service applies too.
func ValidID(id string) string { return domain.ValidPostID(id) }

// Validate checks every field of a post.
func Validate(p *domain.Post, now time.Time) error {
	if p.Schema == 0 {
		return invalid("schema", "missing (this build reads schema %d)", domain.SchemaVersion)
	}
	if p.Schema != domain.SchemaVersion {
		return invalid("schema", "version %d is not supported (this build reads %d)", p.Schema, domain.SchemaVersion)
	}
	if why := ValidID(p.ID); why != "" {
		return invalid("id", "%s", why)
	}
	if len(p.Author) > MaxAuthorLen {
		return invalid("author", "%d bytes, over %d", len(p.Author), MaxAuthorLen)
	}
	if hasControl(p.Author) {
		return invalid("author", "contains control characters")
	}
	if p.CreatedAt.IsZero() {
		return invalid("created_at", "missing")
	}
	if p.CreatedAt.Before(earliest) {
		return invalid("created_at", "%s is before %s", p.CreatedAt.Format(time.RFC3339), earliest.Format("2006-01-02"))
	}
	if !now.IsZero() && p.CreatedAt.After(now.Add(maxClockSkew)) {
		return invalid("created_at", "%s is more than %s in the future", p.CreatedAt.Format(time.RFC3339), maxClockSkew)
	}
	if len(p.Text) > MaxTextBytes {
		return invalid("text", "%d bytes, over %d", len(p.Text), MaxTextBytes)
	}
	if strings.ContainsRune(p.Text, utf8.RuneError) {
		return invalid("text", "contains U+FFFD (invalid UTF-8 upstream)")
	}
	if len(p.Lang) > MaxLangLen || strings.ContainsFunc(p.Lang, func(r rune) bool {
		return !(r == '-' || r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r)))
	}) {
		return invalid("lang", "%q is not a language tag", p.Lang)
	}
	if p.Image != nil {
		if err := validateImage(p.Image); err != nil {
			return err
		}
	}
	if !p.HasText() && !p.HasImage() {
		return invalid("", "neither text nor image: nothing to index")
	}
	if err := validateList("tags", p.Tags); err != nil {
		return err
	}
	return validateList("labels", p.Labels)
}

func validateImage(im *domain.ImageRef) error {
	switch {
	case im.URL != "" && len(im.Data) > 0:
		return invalid("image", "has both url and data; give one")
	case im.URL == "" && len(im.Data) == 0:
		return invalid("image", "has neither url nor data")
	case len(im.Data) > MaxInlineImage:
		return invalid("image.data", "%d bytes, over %d (use a URL)", len(im.Data), MaxInlineImage)
	}
	if im.URL != "" {
		if len(im.URL) > MaxURLLen {
			return invalid("image.url", "%d bytes, over %d", len(im.URL), MaxURLLen)
		}
		u, err := url.Parse(im.URL)
		if err != nil {
			return invalid("image.url", "%v", err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return invalid("image.url", "scheme %q not allowed (http or https)", u.Scheme)
		}
		if u.Host == "" {
			return invalid("image.url", "no host")
		}
	}
	if im.MIME != "" && !strings.HasPrefix(im.MIME, "image/") {
		return invalid("image.mime", "%q is not an image type", im.MIME)
	}
	return nil
}

func validateList(field string, xs []string) error {
	if len(xs) > MaxListItems {
		return invalid(field, "%d items, over %d", len(xs), MaxListItems)
	}
	for i, x := range xs {
		if x == "" || len(x) > MaxListItemBytes {
			return invalid(fmt.Sprintf("%s[%d]", field, i), "must be 1 to %d bytes", MaxListItemBytes)
		}
		if hasControl(x) {
			return invalid(fmt.Sprintf("%s[%d]", field, i), "contains control characters")
		}
	}
	return nil
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, unicode.IsControl)
}
