package banks

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/xmodal/xmodal/encoders/neardup"
)

// Entry is one signal of a bank.
type Entry struct {
	// ID is derived from the signal (EntryID): the same signal added again
	// replaces the entry. Normalize sets it; a given ID must agree.
	ID   string     `json:"id"`
	Type SignalType `json:"signal_type"`
	// Value is the signal in canonical form (Canonical): lower-case hex for
	// pdq and md5, the normalised text or URL, and for embeddings the
	// concept text or the exemplar image's SHA-256.
	Value string `json:"signal"`
	// Modality, Vector and ModelVersion are for embeddings: a written
	// concept ("text") or an exemplar image ("image"), the model's vector
	// of it (stored L2-normalised) and the model version that computed it.
	Modality     string    `json:"modality,omitempty"`
	Vector       []float32 `json:"vector,omitempty"`
	ModelVersion string    `json:"model_version,omitempty"`
	// Stale marks an embedding whose model is no longer the current one
	// and that could not be recomputed (an exemplar without its image).
	Stale bool `json:"stale,omitempty"`
	// Disabled entries do not match (a false positive under review).
	Disabled bool `json:"disabled,omitempty"`
	// Windows, for a pdq entry added from an image, is the image's
	// near-duplicate windows in encoders/neardup's stored form
	// (neardup.AppendWindows: up to 64 window hashes, its area and cleaned
	// hashes and a 24 x 24 grey patch that verifies window matches; about
	// 3.3 KB), so that crops of the image match an image query
	// (State.MatchRegions, region "window"). Entries from hash lists have
	// none. Adding the signal again without windows keeps the ones held.
	Windows []byte `json:"windows,omitempty"`
	// Tags are tokens (no spaces or commas), sorted, each once.
	Tags    []string  `json:"tags,omitempty"`
	Note    string    `json:"note,omitempty"`
	Source  string    `json:"source,omitempty"`
	AddedAt time.Time `json:"added_at"`
	AddedBy string    `json:"added_by,omitempty"`
}

// Entry field limits.
const (
	MaxNoteBytes         = 4096
	MaxSourceBytes       = 1024
	MaxActorBytes        = 256
	MaxModelVersionBytes = 256
	MaxVectorDim         = 4096
)

// Normalize validates e and puts it in canonical form: the value by
// Canonical (CanonicalEmbedding), the id derived from it (a given id must
// be that one), tags sorted without repeats, the vector L2-normalised.
// AddedAt must be set. Errors name every problem (errors.Join) and wrap
// the package's error kinds.
func (e *Entry) Normalize() error {
	var errs []error
	if !e.Type.Valid() {
		t, err := ParseSignalType(string(e.Type))
		if err != nil {
			return err
		}
		e.Type = t
	}
	var err error
	if e.Type == SignalEmbedding {
		e.Value, err = CanonicalEmbedding(e.Modality, e.Value)
	} else {
		e.Value, err = Canonical(e.Type, e.Value)
	}
	if err != nil {
		return err
	}
	id := EntryID(e.Type, e.Modality, e.Value)
	if e.ID != "" && e.ID != id {
		errs = append(errs, fmt.Errorf("%w: id %s is not the signal's id %s (ids are derived from the signal)", ErrInvalidEntry, quote(e.ID), id))
	}
	e.ID = id
	if e.Type == SignalEmbedding {
		if len(e.Vector) == 0 || len(e.Vector) > MaxVectorDim {
			errs = append(errs, fmt.Errorf("%w: an embedding needs a vector of 1..%d dimensions, got %d", ErrInvalidEntry, MaxVectorDim, len(e.Vector)))
		} else if v, err := normalized(e.Vector); err != nil {
			errs = append(errs, err)
		} else {
			e.Vector = v
		}
		if e.ModelVersion == "" || len(e.ModelVersion) > MaxModelVersionBytes {
			errs = append(errs, fmt.Errorf("%w: an embedding needs its model version (1..%d bytes)", ErrInvalidEntry, MaxModelVersionBytes))
		}
	} else {
		if e.Modality != "" || len(e.Vector) != 0 || e.ModelVersion != "" || e.Stale {
			errs = append(errs, fmt.Errorf("%w: modality, vector, model version and stale are for embedding entries, not %s", ErrInvalidEntry, e.Type))
		}
	}
	if len(e.Windows) > 0 {
		if err := checkWindows(e.Type, e.Windows); err != nil {
			errs = append(errs, err)
		}
	}
	e.Tags = sortedSet(e.Tags)
	if len(e.Tags) > MaxTags {
		errs = append(errs, fmt.Errorf("%w: %d tags (at most %d)", ErrInvalidEntry, len(e.Tags), MaxTags))
	}
	for _, t := range e.Tags {
		if !validToken(t, MaxTokenBytes) {
			errs = append(errs, fmt.Errorf("%w: tag %s: use 1-%d bytes without spaces, commas or control characters", ErrInvalidEntry, quote(t), MaxTokenBytes))
		}
	}
	errs = append(errs, checkText("note", e.Note, MaxNoteBytes), checkText("source", e.Source, MaxSourceBytes), checkText("added_by", e.AddedBy, MaxActorBytes))
	if e.AddedAt.IsZero() {
		errs = append(errs, fmt.Errorf("%w: added_at is not set", ErrInvalidEntry))
	}
	e.AddedAt = e.AddedAt.UTC()
	return errors.Join(errs...)
}

// MaxWindowsBytes bounds an entry's stored windows.
const MaxWindowsBytes = 8 << 10

// checkWindows validates an entry's stored windows.
func checkWindows(t SignalType, b []byte) error {
	if t != SignalPDQ {
		return fmt.Errorf("%w: windows are for pdq entries, not %s", ErrInvalidEntry, t)
	}
	if len(b) > MaxWindowsBytes {
		return fmt.Errorf("%w: windows of %d bytes (at most %d)", ErrInvalidEntry, len(b), MaxWindowsBytes)
	}
	_, _, sig, err := neardup.ParseWindows(b)
	if err != nil {
		return fmt.Errorf("%w: windows: %w", ErrInvalidEntry, err)
	}
	if !slices.ContainsFunc(sig, func(r neardup.RegionHash) bool { return r.Kind == neardup.Window }) {
		return fmt.Errorf("%w: windows: none in %d bytes", ErrInvalidEntry, len(b))
	}
	return nil
}

func checkText(field, s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("%w: %s of %d bytes (at most %d)", ErrInvalidEntry, field, len(s), max)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidEntry, field)
	}
	if strings.ContainsAny(s, "\x00") {
		return fmt.Errorf("%w: %s holds a NUL byte", ErrInvalidEntry, field)
	}
	return nil
}
