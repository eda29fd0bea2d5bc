package banks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// OpKind names an operation on the banks.
type OpKind string

// The operations.
const (
	OpCreateBank OpKind = "create_bank" // Config: the new bank
	OpUpdateBank OpKind = "update_bank" // Config: the bank's new configuration (replaces it)
	OpDeleteBank OpKind = "delete_bank" // the bank and its entries
	OpAddEntries OpKind = "add_entries" // Entries: added, or replacing those of the same id
	// OpRemoveEntries removes the entries IDs (ids not present are
	// ignored and reported).
	OpRemoveEntries OpKind = "remove_entries"
	// OpSetEntries sets Disabled and/or Stale on the entries IDs.
	OpSetEntries OpKind = "set_entries"
)

// OpVersion is the encoding version of operations.
const OpVersion = 1

// Op is one change to the banks: the unit the shared log carries and that
// State.Apply applies. Apply is deterministic (it reads nothing but the
// state and the op: no clock, no randomness), so every process applying
// the same ops in the same order holds the same banks. An op is atomic: it
// applies entirely or, when Apply returns an error, not at all. At and
// Actor say who changed what when (the audit trail).
type Op struct {
	Version int       `json:"v"`
	Kind    OpKind    `json:"op"`
	Bank    string    `json:"bank"`
	At      time.Time `json:"at"`
	Actor   string    `json:"actor,omitempty"`
	Config  *Bank     `json:"config,omitempty"`
	Entries []Entry   `json:"entries,omitempty"`
	IDs     []string  `json:"ids,omitempty"`
	// Disabled and Stale: the flags set by set_entries (nil: unchanged).
	Disabled *bool `json:"disabled,omitempty"`
	Stale    *bool `json:"stale,omitempty"`
}

// MaxOpEntries bounds the entries (or ids) of one operation. Imports are
// split into several (OpBatcher).
const MaxOpEntries = 100_000

// Validate checks the op's form (not against a state): its version, kind,
// bank name and the fields its kind needs. It does not normalise entries
// (Apply does, atomically).
func (o *Op) Validate() error {
	if o.Version != OpVersion {
		return fmt.Errorf("%w: version %d (this build reads %d)", ErrInvalidOp, o.Version, OpVersion)
	}
	if err := ValidateName(o.Bank); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidOp, err)
	}
	if o.At.IsZero() {
		return fmt.Errorf("%w: %s without a time", ErrInvalidOp, o.Kind)
	}
	has := func(cfg, entries, ids, flags bool) error {
		var errs []error
		if cfg != (o.Config != nil) {
			errs = append(errs, fmt.Errorf("config %s", want(cfg)))
		}
		if entries != (len(o.Entries) > 0) {
			errs = append(errs, fmt.Errorf("entries %s", want(entries)))
		}
		if ids != (len(o.IDs) > 0) {
			errs = append(errs, fmt.Errorf("ids %s", want(ids)))
		}
		if flags != (o.Disabled != nil || o.Stale != nil) {
			errs = append(errs, fmt.Errorf("disabled or stale %s", want(flags)))
		}
		if len(o.Entries) > MaxOpEntries || len(o.IDs) > MaxOpEntries {
			errs = append(errs, fmt.Errorf("more than %d entries or ids", MaxOpEntries))
		}
		if o.Config != nil && o.Config.Name != o.Bank {
			errs = append(errs, fmt.Errorf("config names bank %s", quote(o.Config.Name)))
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("%w: %s %s: %w", ErrInvalidOp, o.Kind, o.Bank, err)
		}
		return nil
	}
	switch o.Kind {
	case OpCreateBank, OpUpdateBank:
		return has(true, false, false, false)
	case OpDeleteBank:
		return has(false, false, false, false)
	case OpAddEntries:
		return has(false, true, false, false)
	case OpRemoveEntries:
		return has(false, false, true, false)
	case OpSetEntries:
		return has(false, false, true, true)
	}
	return fmt.Errorf("%w: unknown kind %s", ErrInvalidOp, quote(string(o.Kind)))
}

func want(b bool) string {
	if b {
		return "required"
	}
	return "not allowed"
}

// EncodeOp encodes an op (JSON, one object).
func EncodeOp(o Op) ([]byte, error) {
	if o.Version == 0 {
		o.Version = OpVersion
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(o)
}

// DecodeOp decodes and validates an op. Unknown fields are refused: an
// op that this build cannot apply exactly must not be applied partly.
func DecodeOp(data []byte) (Op, error) {
	var o Op
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return Op{}, fmt.Errorf("%w: %v", ErrInvalidOp, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Op{}, fmt.Errorf("%w: data after the op", ErrInvalidOp)
	}
	if err := o.Validate(); err != nil {
		return Op{}, err
	}
	return o, nil
}

// OpBatcher groups entries into add_entries ops whose encoding stays under
// MaxBytes (NATS's default max_payload is 1 MB), for imports.
type OpBatcher struct {
	Bank  string
	Actor string
	At    time.Time
	// MaxBytes bounds an op's encoding (default 900 KB); MaxEntries its
	// entries (default 10,000).
	MaxBytes   int
	MaxEntries int

	cur   []Entry
	bytes int
}

// Add adds an entry; when the batch is full it returns the op of the
// entries before it (nil otherwise).
func (b *OpBatcher) Add(e Entry) (*Op, error) {
	eb, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	maxBytes, maxEntries := b.MaxBytes, b.MaxEntries
	if maxBytes == 0 {
		maxBytes = 900 << 10
	}
	if maxEntries == 0 {
		maxEntries = 10_000
	}
	const overhead = 256 // the op's other fields
	if len(eb)+overhead > maxBytes {
		return nil, fmt.Errorf("%w: entry %s encodes to %d bytes, more than an op may hold (%d)", ErrInvalidEntry, e.ID, len(eb), maxBytes-overhead)
	}
	var out *Op
	if len(b.cur) > 0 && (b.bytes+len(eb)+1+overhead > maxBytes || len(b.cur) >= maxEntries) {
		out = b.Flush()
	}
	b.cur = append(b.cur, e)
	b.bytes += len(eb) + 1
	return out, nil
}

// Flush returns the op of the entries added since the last op (nil when
// none).
func (b *OpBatcher) Flush() *Op {
	if len(b.cur) == 0 {
		return nil
	}
	o := &Op{Version: OpVersion, Kind: OpAddEntries, Bank: b.Bank, At: b.At, Actor: b.Actor, Entries: b.cur}
	b.cur, b.bytes = nil, 0
	return o
}

// AddAll reads every signal of im into ops (entry makes each signal's
// entry): send gets each op as it fills and the last one; bad gets each bad
// line, which is skipped. It returns how many good lines it read; it stops
// at the first error of im (other than a bad line), entry's op or send.
func (b *OpBatcher) AddAll(im *Importer, entry func(ImportedSignal) Entry, send func(*Op) error, bad func(*LineError)) (int, error) {
	good := 0
	for {
		sig, err := im.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var le *LineError
		if errors.As(err, &le) {
			bad(le)
			continue
		}
		if err != nil {
			return good, err
		}
		good++
		op, err := b.Add(entry(sig))
		if err != nil {
			return good, err
		}
		if op != nil {
			if err := send(op); err != nil {
				return good, err
			}
		}
	}
	if op := b.Flush(); op != nil {
		return good, send(op)
	}
	return good, nil
}
