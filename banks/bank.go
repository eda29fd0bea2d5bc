package banks

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"time"
)

// Action is what a bank's matches ask of their consumers. xmodal reports
// it; the ingest matcher (block) and moderation tools act on it.
type Action string

// The actions.
const (
	ActionReview Action = "review"
	ActionBlock  Action = "block"
	ActionLog    Action = "log"
)

// Threshold defaults and ranges.
const (
	// DefaultPDQThreshold is the PDQ authors' and HMA's match threshold.
	DefaultPDQThreshold = 31
	MaxPDQThreshold     = 64
	MaxLabels           = 32
	MaxTags             = 32
	MaxTokenBytes       = 64
)

// Bank is a named list of known content and how its matches are reported.
// The entries are kept apart (State).
type Bank struct {
	// Name is a subject-safe token (NameRule): it appears in NATS subjects.
	Name string `json:"name"`
	// Description is free text for people.
	Description string `json:"description,omitempty"`
	// Labels are copied onto every match (for example "csam", "terror").
	Labels []string `json:"labels,omitempty"`
	// Enabled banks take part in matching.
	Enabled bool `json:"enabled"`
	// Action is the hint for consumers: review, block or log.
	Action     Action     `json:"action"`
	Thresholds Thresholds `json:"thresholds"`
	// PDQDihedral is how an image's seven rotated and mirrored hashes are
	// searched (its original hash is always searched exactly within the
	// PDQ threshold): fast (the default), exact or off. See DihedralMode.
	PDQDihedral DihedralMode `json:"pdq_dihedral,omitempty"`
	// StoreMedia allows keeping the exemplar images of embedding entries
	// (off by default: HMA keeps only hashes, and holding harmful media is
	// a legal matter). Without media, a model change leaves image
	// exemplars stale.
	StoreMedia bool      `json:"store_media,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	CreatedBy  string    `json:"created_by,omitempty"`
	UpdatedAt  time.Time `json:"updated_at"`
	UpdatedBy  string    `json:"updated_by,omitempty"`
}

// DihedralMode is how a bank searches the rotated and mirrored (dihedral)
// PDQ hashes of an image query. The image's own hash is searched exactly
// in every mode; the seven others cost most of a lookup when searched
// exactly (seven of the eight multi-index searches of a million entries),
// and a rotated or mirrored re-post lies close to its entry far more often
// than at the threshold's edge.
type DihedralMode string

// The dihedral modes.
const (
	// DihedralFast (the default) probes each chunk of the multi-index
	// within one bit for the seven variants: every entry within 2m-1 bits
	// of a variant is found (m, the index's chunks: 11 at a million
	// entries, so 21 bits; at least 15 bits for any bank), and beyond that
	// an entry that agrees with it within one bit on some chunk (96 % of
	// X
	// TestProbeRecall). About four times cheaper than DihedralExact at a
	// million entries. A bank small enough to be scanned is searched
	// exactly whatever the mode.
	DihedralFast DihedralMode = "fast"
	// DihedralExact searches every variant exactly within the threshold.
	DihedralExact DihedralMode = "exact"
	// DihedralOff matches the image's own hash only (as HMA does): rotated
	// and mirrored copies do not match.
	DihedralOff DihedralMode = "off"
)

// DihedralProbeBits is the chunk radius DihedralFast probes the seven
// variants at.
const DihedralProbeBits = 1

// Thresholds are a bank's match thresholds per signal type.
type Thresholds struct {
	// PDQ is the largest Hamming distance that matches (0..64; default 31).
	PDQ *int `json:"pdq,omitempty"`
	// Embedding holds the smallest cosine similarity that matches, per
	// pair of modalities.
	Embedding EmbeddingThresholds `json:"embedding,omitzero"`
}

// PDQThreshold is the bank's PDQ threshold with the default applied.
func (t Thresholds) PDQThreshold() int {
	if t.PDQ == nil {
		return DefaultPDQThreshold
	}
	return *t.PDQ
}

// EmbeddingThresholds are cosine similarities in (0, 1], one per pair of
// an entry's modality and a query's; 0 (unset) means the pair does not
// match. A text concept scores lower against images than an image
// exemplar does, hence separate thresholds.
type EmbeddingThresholds struct {
	ImageImage float32 `json:"image_image,omitempty"` // exemplar image, image query
	TextImage  float32 `json:"text_image,omitempty"`  // written concept, image query
	TextText   float32 `json:"text_text,omitempty"`   // written concept, text query
	ImageText  float32 `json:"image_text,omitempty"`  // exemplar image, text query
}

// Pair names a pair of modalities: "<entry>_<query>" (image_image,
// text_image, text_text, image_text).
type Pair string

// The pairs.
const (
	PairImageImage Pair = "image_image"
	PairTextImage  Pair = "text_image"
	PairTextText   Pair = "text_text"
	PairImageText  Pair = "image_text"
)

// Pairs lists the pairs.
var Pairs = []Pair{PairImageImage, PairTextImage, PairTextText, PairImageText}

// PairOf is the pair of an entry's and a query's modality ("image" or
// "text").
func PairOf(entry, query string) Pair { return Pair(entry + "_" + query) }

// Get returns the threshold of pair p (0: the pair does not match).
func (t EmbeddingThresholds) Get(p Pair) float32 {
	switch p {
	case PairImageImage:
		return t.ImageImage
	case PairTextImage:
		return t.TextImage
	case PairTextText:
		return t.TextText
	case PairImageText:
		return t.ImageText
	}
	return 0
}

// NameRule is the form of a bank name: lower-case letters, digits, '-'
// and '_', starting with a letter or digit, at most 64 bytes. Such a name
// is one NATS subject token (no '.', '*', '>' or space) and a safe file
// name.
var NameRule = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// ValidateName checks a bank name against NameRule.
func ValidateName(name string) error {
	if !NameRule.MatchString(name) {
		return fmt.Errorf("%w %s: use 1-64 lower-case letters, digits, '-' or '_', starting with a letter or digit", ErrInvalidName, quote(name))
	}
	return nil
}

// WithDefaults returns b with the defaults filled in: action review, the
// PDQ threshold 31, dihedral search fast, labels sorted and without
// repeats.
func (b Bank) WithDefaults() Bank {
	if b.Action == "" {
		b.Action = ActionReview
	}
	if b.PDQDihedral == "" {
		b.PDQDihedral = DihedralFast
	}
	if b.Thresholds.PDQ == nil {
		d := DefaultPDQThreshold
		b.Thresholds.PDQ = &d
	} else {
		v := *b.Thresholds.PDQ
		b.Thresholds.PDQ = &v
	}
	b.Labels = sortedSet(b.Labels)
	return b
}

// Validate checks b (after WithDefaults) without a model calibration:
// the name, the action, the labels, the dihedral mode, the PDQ threshold
// within 0..64 and the embedding thresholds within [0, 1]. Use
// ValidateWith to also refuse embedding thresholds below the current
// model's noise floor.
func (b *Bank) Validate() error {
	var errs []error
	if err := ValidateName(b.Name); err != nil {
		errs = append(errs, err)
	}
	switch b.Action {
	case ActionReview, ActionBlock, ActionLog:
	default:
		errs = append(errs, fmt.Errorf("%w: action %s (want review, block or log)", ErrInvalidBank, quote(string(b.Action))))
	}
	if len(b.Labels) > MaxLabels {
		errs = append(errs, fmt.Errorf("%w: %d labels (at most %d)", ErrInvalidBank, len(b.Labels), MaxLabels))
	}
	for _, l := range b.Labels {
		if !validToken(l, MaxTokenBytes) {
			errs = append(errs, fmt.Errorf("%w: label %s: use 1-%d bytes without spaces, commas or control characters", ErrInvalidBank, quote(l), MaxTokenBytes))
		}
	}
	if len(b.Description) > 4096 {
		errs = append(errs, fmt.Errorf("%w: a description of %d bytes (at most 4096)", ErrInvalidBank, len(b.Description)))
	}
	switch b.PDQDihedral {
	case "", DihedralFast, DihedralExact, DihedralOff:
	default:
		errs = append(errs, fmt.Errorf("%w: pdq_dihedral %s (want fast, exact or off)", ErrInvalidBank, quote(string(b.PDQDihedral))))
	}
	if p := b.Thresholds.PDQThreshold(); p < 0 || p > MaxPDQThreshold {
		errs = append(errs, fmt.Errorf("%w: pdq threshold %d is outside 0..%d", ErrInvalidBank, p, MaxPDQThreshold))
	}
	for _, p := range Pairs {
		v := b.Thresholds.Embedding.Get(p)
		if math.IsNaN(float64(v)) || v < 0 || v > 1 {
			errs = append(errs, fmt.Errorf("%w: embedding threshold %s %v is outside (0, 1] (0: the pair does not match)", ErrInvalidBank, p, v))
		}
	}
	return errors.Join(errs...)
}

// ValidateWith is Validate plus the noise-floor rule: every embedding
// threshold set must be at least the calibration's floor for its pair
// (the 99.9th percentile of unrelated pairs' similarity under the current
// model). A pair the calibration does not cover is refused: without a
// floor, a threshold cannot be judged.
func (b *Bank) ValidateWith(cal *Calibration) error {
	errs := []error{b.Validate()}
	for _, p := range Pairs {
		v := b.Thresholds.Embedding.Get(p)
		if v == 0 {
			continue
		}
		if cal == nil {
			errs = append(errs, fmt.Errorf("%w: embedding threshold %s %v: no model calibration to check it against", ErrThresholdBelowNoise, p, v))
			continue
		}
		floor, ok := cal.Floors[p]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%w: embedding threshold %s %v: the calibration of model %s has no floor for %s", ErrThresholdBelowNoise, p, v, cal.ModelVersion, p))
		case v < floor:
			errs = append(errs, fmt.Errorf("%w: embedding threshold %s %v is below %.4f, the %.1fth percentile of unrelated pairs under model %s: it would match unrelated content",
				ErrThresholdBelowNoise, p, v, floor, 100*cal.Quantile, cal.ModelVersion))
		}
	}
	return errors.Join(errs...)
}

// sortedSet returns the distinct strings of s, sorted (nil when empty).
func sortedSet(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

// SweepStatus is the progress of a retro sweep: the posts already indexed
// looked up against a bank's new entries.
type SweepStatus struct {
	ID      int    `json:"id"`
	Bank    string `json:"bank"`
	Entries int    `json:"entries"`           // entries to sweep (PDQ, text, URL and embedding entries that are not disabled)
	Done    int    `json:"done"`              // entries done (the text, URL and embedding entries when the record scan ends)
	Records int    `json:"records,omitempty"` // records scanned for the text, URL and embedding entries
	Matches int    `json:"matches"`           // match events recorded (source sweep)
	// Known counts the posts found whose records already carried the
	// entry's match (matched at ingest after the entry was added, or by an
	// earlier sweep): their event was made then, so the sweep makes none.
	Known    int       `json:"known,omitempty"`
	Resumed  int       `json:"resumed,omitempty"` // entries done before a restart: the sweep resumed from this checkpoint
	State    string    `json:"state"`             // queued, running, done, failed
	Error    string    `json:"error,omitempty"`
	Queued   time.Time `json:"queued"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
}
