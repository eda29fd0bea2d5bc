// Package postfile reads post files: JSON Lines in the post format of
// docs/post-format.md, one post per line, as `xmodal post`, `xmodal ingest`,
// `xmodal demo` and `xmodal hash fit` read them. Two conveniences exist only
// in files, on the client side, and never reach a server:
//
//   - "image_file": a path to a local image, relative to the file's directory
//     (or absolute). The client reads it and sends the bytes inline as
//     image.data (with image.mime sniffed from them). A message on Kafka or
//     JetStream that names a path is dead-lettered: the server never opens a
//     path named in a message.
//   - {"id":"X","delete":true}: a tombstone for post X (an empty message
//     keyed X).
//
// Every other field is sent as written; the server validates the post.
package postfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/ingest"
)

// FieldImageFile is the client-side field naming a local image.
const FieldImageFile = "image_file"

// Error says why a line of a post file cannot be sent. Field is the field at
// fault ("" for the whole line).
type Error struct {
	Field  string
	Reason string
	Err    error // the cause (a file system error, say), for errors.Is
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// ErrNoID is the cause of a line without a readable post id.
var ErrNoID = errors.New("no post id")

// Message is one resolved line: what goes on the stream.
type Message struct {
	Key       string // the post id
	Value     []byte // the post JSON; nil for a tombstone
	Tombstone bool
	// ImageFile is the path the line's image_file named, resolved ("" when none).
	ImageFile string
}

// head is what Resolve reads of a line before anything else.
type head struct {
	ID json.RawMessage `json:"id"`
}

// Key reads a line's post id (its message key) without validating the rest.
// An id that is not a valid post id is an *Error (its text never repeats a
// long id in full).
func Key(line []byte) (string, error) {
	var h head
	if err := json.Unmarshal(line, &h); err != nil {
		return "", &Error{Reason: "not a JSON object: " + shortJSONErr(err), Err: ErrNoID}
	}
	if len(h.ID) == 0 || string(h.ID) == "null" {
		return "", &Error{Field: "id", Reason: "missing (every post needs an id: it is the message key)", Err: ErrNoID}
	}
	var id string
	if err := json.Unmarshal(h.ID, &id); err != nil {
		return "", &Error{Field: "id", Reason: "not a string", Err: ErrNoID}
	}
	if why := ingest.ValidID(id); why != "" {
		return "", &Error{Field: "id", Reason: ingest.QuoteID(id) + ": " + why, Err: ErrNoID}
	}
	return id, nil
}

// Resolve turns one line of a post file into the message a server receives:
// the key, and the value with image_file read (relative to dir) and sent as
// image.data. A line {"id":"X","delete":true} is a tombstone. Resolve does
// not validate the post itself (Validate does); it fails only for what the
// server could not be sent: no id, or an image_file that cannot be read.
func Resolve(line []byte, dir string) (*Message, error) {
	line = bytes.TrimSpace(line)
	key, err := Key(line)
	if err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(line, &fields); err != nil {
		return nil, &Error{Reason: "not a JSON object: " + shortJSONErr(err)}
	}
	hadDelete := false
	if del, ok := fields["delete"]; ok {
		hadDelete = true
		if string(del) == "true" {
			if len(fields) != 2 {
				return nil, &Error{Field: "delete", Reason: `a tombstone line holds only "id" and "delete": true`}
			}
			return &Message{Key: key, Tombstone: true}, nil
		}
		if string(del) != "false" {
			return nil, &Error{Field: "delete", Reason: "must be true or false"}
		}
		delete(fields, "delete")
	}
	raw, ok := fields[FieldImageFile]
	if !ok {
		if hadDelete {
			line, _ = json.Marshal(fields)
		}
		return &Message{Key: key, Value: append([]byte(nil), line...)}, nil
	}
	var rel string
	if err := json.Unmarshal(raw, &rel); err != nil || strings.TrimSpace(rel) == "" {
		return nil, &Error{Field: FieldImageFile, Reason: "must be a non-empty path (relative to the file)"}
	}
	if _, both := fields["image"]; both {
		return nil, &Error{Field: FieldImageFile, Reason: "give image or image_file, not both"}
	}
	path := rel
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	data, err := readImage(path)
	if err != nil {
		return nil, err
	}
	img, _ := json.Marshal(&domain.ImageRef{Data: data, MIME: sniff(data)})
	delete(fields, FieldImageFile)
	fields["image"] = img
	value, err := json.Marshal(fields)
	if err != nil {
		return nil, &Error{Reason: err.Error()}
	}
	return &Message{Key: key, Value: value, ImageFile: path}, nil
}

// readImage reads a local image, refusing what the server would refuse
// anyway (over ingest.MaxInlineImage) before reading it whole.
func readImage(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, &Error{Field: FieldImageFile, Reason: fsReason(path, err), Err: err}
	}
	if !st.Mode().IsRegular() {
		return nil, &Error{Field: FieldImageFile, Reason: path + " is not a regular file"}
	}
	if st.Size() > ingest.MaxInlineImage {
		return nil, &Error{Field: FieldImageFile, Reason: fmt.Sprintf("%s is %d bytes, over the %d-byte limit of an inline image (serve it and give image.url)",
			path, st.Size(), ingest.MaxInlineImage)}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &Error{Field: FieldImageFile, Reason: fsReason(path, err), Err: err}
	}
	if len(b) == 0 {
		return nil, &Error{Field: FieldImageFile, Reason: path + " is empty"}
	}
	return b, nil
}

func fsReason(path string, err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return path + " does not exist (image_file is relative to the posts file's directory)"
	case errors.Is(err, fs.ErrPermission):
		return path + ": permission denied"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return path + ": " + pe.Err.Error()
	}
	return err.Error()
}

// sniff names the image type of data ("" when it is not one the standard
// sniffer knows; the server sniffs again regardless).
func sniff(data []byte) string {
	t := http.DetectContentType(data)
	if strings.HasPrefix(t, "image/") {
		return t
	}
	return ""
}

// Validate checks a resolved message as the server will (ingest.DecodePost),
// so that a client can report a bad line at once.
func Validate(m *Message, now time.Time) error {
	if m.Tombstone {
		return nil
	}
	_, err := ingest.DecodePost(m.Value, now)
	return err
}

// LineError is a bad line of a file.
type LineError struct {
	Path string
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("%s line %d: %v", e.Path, e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// Load reads every post of a file, resolved and validated (now bounds
// created_at as the server does). Tombstones are skipped. Bad lines are
// returned beside the good posts, one LineError each; err is for the file
// itself.
func Load(path string, now time.Time) (posts []domain.Post, bad []*LineError, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	dir := filepath.Dir(path)
	for i, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		m, err := Resolve(line, dir)
		if err != nil {
			bad = append(bad, &LineError{Path: path, Line: i + 1, Err: err})
			continue
		}
		if m.Tombstone {
			continue
		}
		p, err := ingest.DecodePost(m.Value, now)
		if err != nil {
			bad = append(bad, &LineError{Path: path, Line: i + 1, Err: err})
			continue
		}
		posts = append(posts, *p)
	}
	return posts, bad, nil
}

// shortJSONErr describes a JSON error in a few words (the standard errors
// can quote the input).
func shortJSONErr(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("a JSON %s where an object was expected", te.Value)
	}
	s := err.Error()
	if len(s) > 120 || !utf8.ValidString(s) {
		return "malformed JSON"
	}
	return s
}
