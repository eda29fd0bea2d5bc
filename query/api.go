// Package query answers cross-modal lookups over NATS request-reply
// (subjects under xmodal.v1.). The request and response types are specified with
// examples in docs/query-api.md.
package query

import (
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/xmodal/xmodal/domain"
)

// SubjectPrefix versions every subject of the service.
const SubjectPrefix = "xmodal.v1"

// Limits on requests.
const (
	DefaultK       = 10
	MaxK           = 1000
	MaxQueryText   = 4096
	MaxImageBytes  = 6 << 20
	MaxRequestSize = 8 << 20
	MaxCandidates  = 1_000_000
)

// SearchRequest is the body of xmodal.v1.search. Exactly one of Text, Image,
// ImageURL and Vector is set.
type SearchRequest struct {
	Text     string `json:"text,omitempty"`
	Image    []byte `json:"image,omitempty"` // base64 in JSON
	ImageURL string `json:"image_url,omitempty"`
	Vector   Vector `json:"vector,omitempty"`
	// Target is the modality of the records to return: image, text, fused or any
	// (default). any merges the per-modality lists by rank.
	Target string `json:"target,omitempty"`
	// K is the number of hits, 1..MaxK; absent: DefaultK. An explicit 0 is
	// refused (400), not read as "absent" (a Go client's zero K is omitted
	// from the JSON, so it asks for the default).
	K      int           `json:"k,omitempty"`
	Filter domain.Filter `json:"filter,omitzero"`
	Plan   string        `json:"plan,omitempty"`
	// Candidates is C of the hybrid plan: how many records of smallest
	// Hamming distance are re-ranked by cosine (0: the index's default;
	// 1..MaxCandidates, never below k; only with plan hybrid).
	Candidates int `json:"candidates,omitempty"`
	// Thumbnails asks for each hit's thumbnail (off by default: it makes replies large).
	Thumbnails bool `json:"thumbnails,omitempty"`
	// Recency boosts recent posts for trending use (see recency.go for the formula).
	Recency *Recency `json:"recency,omitempty"`
	// Trending keeps hits from the clusters trending now (cluster.go).
	Trending *TrendingSearch `json:"trending,omitempty"`
}

// SearchResponse is the reply of xmodal.v1.search.
type SearchResponse struct {
	Hits   []domain.Hit `json:"hits"`
	TookMS float64      `json:"took_ms"`
	Plan   string       `json:"plan"`
	Cached bool         `json:"cached"`
	Model  string       `json:"model"`
}

// GetRequest is the body of xmodal.v1.get: records by primary key and/or
// every record of some posts, a page at a time.
type GetRequest struct {
	PKs     []string `json:"pks,omitempty"`
	PostIDs []string `json:"post_ids,omitempty"`
	// Thumbnails includes the records' thumbnails (off by default: they make
	// replies large).
	Thumbnails bool `json:"thumbnails,omitempty"`
	// Limit is the most records of one page, 1..MaxK; absent: DefaultGetLimit
	// (an explicit 0 is refused). Cursor is the previous page's NextCursor.
	Limit  int    `json:"limit,omitempty"`
	Cursor string `json:"cursor,omitempty"`
}

// DefaultGetLimit is the page size of xmodal.v1.get.
const DefaultGetLimit = 100

// GetResponse is the reply of xmodal.v1.get. NextCursor is set when more of
// the asked-for records remain: send it back as cursor.
type GetResponse struct {
	Records    []Record `json:"records"`
	NextCursor string   `json:"next_cursor,omitempty"`
}

// Record is a record as xmodal.v1.get returns it: without its vector, and with
// the binary code and the PDQ hash in hex, the form near-duplicate requests
// take and their replies give (the thumbnail, when asked for, stays base64: it
// is an image, sent as query images are).
type Record struct {
	PK           string          `json:"pk"`
	PostID       string          `json:"post_id"`
	Modality     domain.Modality `json:"modality"`
	Author       string          `json:"author,omitempty"`
	CreatedAt    time.Time       `json:"created_at"`
	ModelVersion string          `json:"model_version"`
	Labels       []string        `json:"labels,omitempty"`
	Text         string          `json:"text,omitempty"`
	MediaURL     string          `json:"media_url,omitempty"`
	Thumbnail    []byte          `json:"thumbnail,omitempty"`
	// Code is the binary hash code in hex, most significant bit first.
	Code string `json:"code,omitempty"`
	// PDQ is the image's PDQ hash, 64 hex characters (pdq.Hash's form), and
	// PDQQuality its quality.
	PDQ        string `json:"pdq,omitempty"`
	PDQQuality int    `json:"pdq_quality,omitempty"`
	// Matches are the moderation bank entries the post matched at ingest
	// (embedded index).
	Matches []domain.RecordMatch `json:"matches,omitempty"`
}

// recordReply is r as a get reply gives it.
func recordReply(r *domain.Record) Record {
	return Record{
		PK: r.PK, PostID: r.PostID, Modality: r.Modality, Author: r.Author, CreatedAt: r.CreatedAt,
		ModelVersion: r.ModelVersion, Labels: r.Labels, Text: r.Text, MediaURL: r.MediaURL, Thumbnail: r.Thumbnail,
		Code: hex.EncodeToString(r.Code), PDQ: hex.EncodeToString(r.PDQ), PDQQuality: r.PDQQuality, Matches: r.Matches,
	}
}

// StatsResponse is the reply of xmodal.v1.stats.
type StatsResponse struct {
	Records map[domain.Modality]int `json:"records"`
	Model   string                  `json:"model"`
	Dim     int                     `json:"dim"`
}

// Error codes, as HTTP-like numbers carried in the NATS micro error headers.
const (
	CodeBadRequest     = 400
	CodeNotFound       = 404
	CodeConflict       = 409 // a bank name that is taken; a dedup job already running
	CodeTooLarge       = 413
	CodeUnprocessable  = 422 // an image that cannot be decoded
	CodeTooManyRequest = 429
	CodeInternal       = 500
	CodeUnavailable    = 503 // a dependency is down
	CodeTimeout        = 504
)

// Error is a query failure with a code. Code and Message are what a client
// receives; Err, the cause (an index, media or NATS error), stays in the
// process for errors.Is/As and logs.
type Error struct {
	Code    int
	Message string
	Err     error
}

func (e *Error) Error() string { return fmt.Sprintf("%d: %s", e.Code, e.Message) }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// errorf builds an Error whose message is fmt.Errorf's; an argument formatted
// with %w becomes the cause.
func errorf(code int, format string, args ...any) *Error {
	err := fmt.Errorf(format, args...)
	return &Error{Code: code, Message: err.Error(), Err: errors.Unwrap(err)}
}

// AsError returns err as an *Error, wrapping unknown errors as internal ones
// (with err as the cause).
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Code: CodeInternal, Message: err.Error(), Err: err}
}
