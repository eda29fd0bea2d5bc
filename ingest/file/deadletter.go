package file

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/xmodal/xmodal/ingest"
)

// DeadLetterFile appends dead letters to a JSON Lines file, synced before Send
// returns (ingest.DeadLetter).
type DeadLetterFile struct {
	mu    sync.Mutex
	f     *os.File
	count atomic.Int64
}

// DeadLetterLine is one line of the dead-letter file.
type DeadLetterLine struct {
	Key         string            `json:"key"`
	Value       *string           `json:"value,omitempty"`        // the original line, when it is UTF-8
	ValueBase64 []byte            `json:"value_base64,omitempty"` // otherwise
	Tombstone   bool              `json:"tombstone,omitempty"`
	Stage       ingest.Stage      `json:"stage"`
	Reason      string            `json:"reason"`
	Origin      string            `json:"origin"`
	Attempt     int               `json:"attempt"`
	FailedAt    time.Time         `json:"failed_at"`
	Headers     map[string]string `json:"headers,omitempty"`
}

// OpenDeadLetterFile opens (creating or appending to) the dead-letter file at path.
func OpenDeadLetterFile(path string) (*DeadLetterFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("ingest --dlq: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("ingest --dlq: %w", err)
	}
	return &DeadLetterFile{f: f}, nil
}

// Send appends m's dead letter and syncs the file.
func (d *DeadLetterFile) Send(_ context.Context, m *ingest.Message, stage ingest.Stage, reason string) error {
	l := DeadLetterLine{Key: m.Key, Tombstone: m.Tombstone, Stage: stage, Reason: reason, Origin: m.Origin,
		Attempt: m.Attempt, FailedAt: time.Now().UTC(), Headers: m.Headers}
	if utf8.Valid(m.Value) {
		if !m.Tombstone {
			v := string(m.Value)
			l.Value = &v
		}
	} else {
		l.ValueBase64 = m.Value
	}
	b, err := json.Marshal(&l)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("dead-letter file: %w", err)
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("dead-letter file: %w", err)
	}
	d.count.Add(1)
	return nil
}

// Close closes the file.
func (d *DeadLetterFile) Close() error { return d.f.Close() }

// Count is how many dead letters Send wrote.
func (d *DeadLetterFile) Count() int64 { return d.count.Load() }

var _ ingest.DeadLetter = (*DeadLetterFile)(nil)
