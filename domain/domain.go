// Package domain holds the few types every stage of xmodal shares: a post as it
// arrives, a record as it is indexed, and a hit as a query returns it. It has no
// dependencies on any stage; stages depend on it and never on each other's internals.
package domain

import (
	"errors"
	"strings"
	"time"
)

// SchemaVersion is the post schema this build writes and the newest it reads.
const SchemaVersion = 1

// Modality is the kind of content a record's vector was computed from.
type Modality string

// The modalities of a record. A fused record exists when a post has both an image
// and a text that encoded: normalise(image vector + text vector).
const (
	ModalityImage Modality = "image"
	ModalityText  Modality = "text"
	ModalityFused Modality = "fused"
)

// Modalities lists every record modality in a stable order.
var Modalities = []Modality{ModalityImage, ModalityText, ModalityFused}

// Valid reports whether m is one of the record modalities.
func (m Modality) Valid() bool {
	switch m {
	case ModalityImage, ModalityText, ModalityFused:
		return true
	}
	return false
}

// ParseModality turns a string into a Modality or returns an error naming it.
func ParseModality(s string) (Modality, error) {
	m := Modality(strings.ToLower(strings.TrimSpace(s)))
	if !m.Valid() {
		return "", errors.New("unknown modality " + quote(s) + " (want image, text or fused)")
	}
	return m, nil
}

// ImageRef says where a post's image is: a URL to fetch, or inline bytes
// (base64 in JSON). Exactly one of URL and Data is set on a valid post.
type ImageRef struct {
	URL  string `json:"url,omitempty"`
	Data []byte `json:"data,omitempty"`
	MIME string `json:"mime,omitempty"`
}

// Post is one social-media post as it arrives on the ingest stream (JSON, one
// object per message, key = post id). Validation lives in ingest.
type Post struct {
	Schema    int       `json:"schema"`
	ID        string    `json:"id"`
	Author    string    `json:"author,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Text      string    `json:"text,omitempty"`
	Lang      string    `json:"lang,omitempty"`
	Image     *ImageRef `json:"image,omitempty"`
	Tags      []string  `json:"tags,omitempty"`
	Labels    []string  `json:"labels,omitempty"`
}

// HasText reports whether the post carries text to encode.
func (p *Post) HasText() bool { return strings.TrimSpace(p.Text) != "" }

// HasImage reports whether the post carries an image reference.
func (p *Post) HasImage() bool {
	return p.Image != nil && (p.Image.URL != "" || len(p.Image.Data) > 0)
}

// PKSep separates the post id and the modality in a primary key. Post ids may not
// contain it (ingest validates this).
const PKSep = "#"

// PrimaryKey derives the primary key of a record from its post id and modality, so
// that upserts are idempotent: re-delivering a post writes the same keys again.
func PrimaryKey(postID string, m Modality) string { return postID + PKSep + string(m) }

// SplitPrimaryKey is the inverse of PrimaryKey.
func SplitPrimaryKey(pk string) (postID string, m Modality, ok bool) {
	i := strings.LastIndex(pk, PKSep)
	if i <= 0 {
		return "", "", false
	}
	m = Modality(pk[i+1:])
	if !m.Valid() {
		return "", "", false
	}
	return pk[:i], m, true
}

// Record is one row of the index: one per (post, modality).
type Record struct {
	PK           string    `json:"pk"`
	PostID       string    `json:"post_id"`
	Modality     Modality  `json:"modality"`
	Author       string    `json:"author,omitempty"`
	CreatedAt    time.Time `json:"created_at"`
	ModelVersion string    `json:"model_version"`
	Labels       []string  `json:"labels,omitempty"`
	// Text is the post's text, truncated to MaxStoredText bytes on a rune boundary.
	Text      string `json:"text,omitempty"`
	MediaURL  string `json:"media_url,omitempty"`
	Thumbnail []byte `json:"thumbnail,omitempty"` // small JPEG, images only
	// Vector is always L2-normalised.
	Vector []float32 `json:"vector"`
	// Code is the binary hash code, packed most significant bit first.
	Code []byte `json:"code,omitempty"`
	// PDQ is the 256-bit perceptual hash of an image record (32 bytes), with its quality.
	PDQ        []byte `json:"pdq,omitempty"`
	PDQQuality int    `json:"pdq_quality,omitempty"`
	// MD5 is the MD5 of an image record's file bytes (16 bytes), computed
	// while a bank holds md5 entries (the banks' md5 entries, HMA's
	// photo_md5, match it at ingest) or always with image.keep_md5; the
	// embedded index keeps it with the stored record, so that md5 entries
	// added later are swept; not returned in replies.
	MD5 []byte `json:"-"`
	// PDQVariants are the image's eight dihedral PDQ hashes (original,
	// rotations, mirrors, in encoders/pdq's Dihedral order; the first is
	// PDQ) while the record is matched at ingest, so that a rotated or
	// mirrored copy of a banked image matches; not stored.
	PDQVariants [][]byte `json:"-"`
	// PDQCanonical is the image's canonical dihedral hashes, one or two of
	// 32 bytes each, concatenated (encoders/pdq.HashCanonical: those of its
	// eight dihedral hashes that a mirrored or rotated copy shares), by
	// which near-duplicate clusters link such copies; kept by the embedded
	// index, not returned in replies. Nil: none computed.
	PDQCanonical []byte `json:"-"`
	// PDQRegions is the PDQ hashes of the image's content rectangles (the
	// picture inside a meme's caption band or a screenshot's frame; at most
	// two, each followed by its canonical dihedral hashes, 32 bytes each,
	// concatenated: encoders/neardup.Hasher.ContentHashes), by which
	// near-duplicate clusters link a meme or a screenshot to its picture,
	// then, unless the image is framed, its cleaned hash (the picture with
	// bright thin overlays such as a watermark suppressed, in a space of its
	// own), by which a watermarked copy links to its picture; kept by the
	// embedded index, not returned in replies. Nil: none.
	PDQRegions []byte `json:"-"`
	// PDQFramed: the largest content rectangle covers less than half of the
	// image (a screenshot, a picture in a wide frame), whose whole-image
	// hashes are mostly the frame's: clusters link it by PDQRegions alone.
	PDQFramed bool `json:"-"`
	// Windows is the stored form of an image record's near-duplicate
	// windows (encoders/neardup.AppendWindows: hashes of squares anchored on
	// pairs of blobs, which find crops of the image); kept by the embedded
	// index, not returned in replies. Nil: none computed.
	Windows []byte `json:"-"`
	// NearDupQuery is an image record's near-duplicate query (an
	// *encoders/neardup.Query: its window hashes at the query's scales and
	// the reduced pixels the window search's pixel check reads), computed at
	// ingest while a bank holds entries with windows and banks.match_regions
	// is on, so that the matcher finds crops of banked images as a lookup
	// (xmodal.v1.match) does; held in memory from the worker to the matcher
	// (0.2-0.9 MB an image), never stored. Nil: none.
	NearDupQuery any `json:"-"`
	// Preprocess names how the image of an image or fused record was decoded
	// and preprocessed for the model ("fast": JPEGs reduced in the IDCT as
	// Pillow's draft does; "exact": full size); empty for text records and
	// for records written before it was recorded.
	Preprocess string `json:"preprocess,omitempty"`
	// Cluster is the post's near-duplicate cluster (0: none), kept at
	// ingest by the embedded index, or by a Milvus deployment's shared
	// clusters and joined when the record is read (docs/clusters.md).
	Cluster uint64 `json:"cluster,omitempty"`
	// Matches are the moderation bank entries this version of the post
	// matched when it was written (the same list on each of the post's
	// records); only the embedded index keeps them (docs/moderation.md).
	Matches []RecordMatch `json:"matches,omitempty"`
}

// RecordMatch is one bank entry a post matched at ingest: the bank, the
// entry, the post's record that matched it, and how close it was.
type RecordMatch struct {
	Bank       string   `json:"bank"`
	EntryID    string   `json:"entry_id"`
	SignalType string   `json:"signal_type,omitempty"`
	Modality   Modality `json:"modality,omitempty"`
	Distance   *int     `json:"distance,omitempty"`
	Score      *float32 `json:"score,omitempty"`
}

// MaxStoredText is how many bytes of a post's text a record keeps for display.
const MaxStoredText = 1024

// TruncateText cuts s to at most n bytes without splitting a UTF-8 sequence.
func TruncateText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// Hit is one ranked result of a query.
type Hit struct {
	PK        string    `json:"pk"`
	PostID    string    `json:"post_id"`
	Modality  Modality  `json:"modality"`
	Score     float32   `json:"score"`
	Distance  *int      `json:"distance,omitempty"` // Hamming distance for near-duplicate hits
	Author    string    `json:"author,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	Labels    []string  `json:"labels,omitempty"`
	Text      string    `json:"text,omitempty"`
	MediaURL  string    `json:"media_url,omitempty"`
	Thumbnail []byte    `json:"thumbnail,omitempty"`
	// Cluster is the post's near-duplicate cluster, joined when the reply is
	// built (nil: none, or an index without clusters).
	Cluster *ClusterRef `json:"cluster,omitempty"`
	// Matches are the bank entries the post matched at ingest (embedded
	// index only).
	Matches []RecordMatch `json:"matches,omitempty"`
}

// ClusterRef is what a hit shows of its post's cluster.
type ClusterRef struct {
	ID        uint64    `json:"id"`
	Size      int       `json:"size"`
	FirstSeen time.Time `json:"first_seen"`
}

// HitFromRecord copies what a result page shows from r.
func HitFromRecord(r *Record, score float32) Hit {
	return Hit{
		PK: r.PK, PostID: r.PostID, Modality: r.Modality, Score: score,
		Author: r.Author, CreatedAt: r.CreatedAt, Labels: r.Labels,
		Text: r.Text, MediaURL: r.MediaURL, Thumbnail: r.Thumbnail, Matches: r.Matches,
	}
}

func quote(s string) string { return "\"" + s + "\"" }

// LowPDQQuality is the PDQ quality (0..100) below which a hash comes from a
// flat or featureless picture and its near-duplicate matches are unreliable
// (the line Meta's PDQ documentation draws). Tools and the search page warn
// below it.
const LowPDQQuality = 50
