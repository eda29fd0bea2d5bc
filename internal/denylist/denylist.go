// Package denylist is the deny-list every xmodal process shares: the set of
// taken-down post ids, replicated through NATS JetStream (internal/replstate)
// and held in memory in each process. A lookup is a map read; Sync is the
// read barrier that makes a takedown recorded anywhere visible here before a
// write round or a reply; Deny returns once a takedown is durable in the
// stream and applied locally.
//
// The indexes keep their own deny rows as the durable record of what they
// deleted; a new stream (a fresh NATS server, an upgrade from a build without
// this list) is seeded from them (Seed).
package denylist

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/internal/replstate"
)

// Name is the replicated state's name: stream XMODAL_STATE_DENY, subject
// xmodal.state.deny.
const Name = "deny"

// maxPerOp is how many takedowns one change carries (a change must stay under
// the server's max_payload: ids are at most 256 bytes).
const maxPerOp = 1000

// Config of the deny-list.
type Config struct {
	Replicas      int // stream replicas in a NATS cluster (default 1)
	SnapshotEvery int // takedowns between snapshots (default 10000)
	Timeout       time.Duration
	Logger        *slog.Logger
}

// List is the replicated deny-list. It implements domain.DenyList.
type List struct {
	f  *replstate.Follower
	st *state
}

var _ domain.DenyList = (*List)(nil)

// op is one change in the stream (JSON, so `nats stream view` shows it).
type op struct {
	V    int               `json:"v"`
	Deny []domain.Takedown `json:"deny"`
}

// Open loads the deny-list and follows it (replstate.Open).
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*List, error) {
	st := &state{ids: map[string]int64{}}
	f, err := replstate.Open(ctx, js, replstate.Config{Name: Name, Replicas: cfg.Replicas, SnapshotEvery: cfg.SnapshotEvery,
		Timeout: cfg.Timeout, Logger: cfg.Logger}, st)
	if err != nil {
		return nil, err
	}
	return &List{f: f, st: st}, nil
}

// Close stops following.
func (l *List) Close() { l.f.Close() }

// Denied reports whether the post id is on the local copy of the list (Sync
// first when the answer must include takedowns made elsewhere just now).
func (l *List) Denied(postID string) bool { return l.st.has(postID) }

// Sync brings the local copy up to every takedown recorded before the call;
// it returns an error wrapping replstate.ErrBehind when it cannot.
func (l *List) Sync(ctx context.Context) error { return l.f.Sync(ctx) }

// Generation names the list's current position: it changes with every
// takedown anywhere (once synced), and never repeats, even across a
// re-created stream. The query cache keys replies by it.
func (l *List) Generation() string {
	return l.f.Epoch() + "." + strconv.FormatUint(l.f.Applied(), 10)
}

// Seq is the last stream sequence the local copy reflects.
func (l *List) Seq() uint64 { return l.f.Applied() }

// Len is the number of denied ids.
func (l *List) Len() int { return l.st.len() }

// Stats returns the follower's counters.
func (l *List) Stats() replstate.Stats { return l.f.Stats() }

// Deny records the takedowns; it returns once they are durable in the stream
// and in the local copy. A retry of the same takedowns within the stream's
// duplicate window records nothing twice.
func (l *List) Deny(ctx context.Context, ts []domain.Takedown) error {
	for from := 0; from < len(ts); from += maxPerOp {
		chunk := ts[from:min(from+maxPerOp, len(ts))]
		for i := range chunk {
			if chunk[i].PostID == "" {
				return errors.New("denylist: a takedown without a post id")
			}
			if chunk[i].At.IsZero() {
				chunk[i].At = time.Now().UTC()
			}
		}
		b, err := json.Marshal(op{V: 1, Deny: chunk})
		if err != nil {
			return err
		}
		if _, err := l.f.Publish(ctx, b, msgID(chunk)); err != nil {
			return fmt.Errorf("denylist: %w", err)
		}
	}
	return nil
}

// msgID identifies a chunk of takedowns by its ids, sources and reasons, so
// that a retried request is deduplicated by the stream.
func msgID(ts []domain.Takedown) string {
	h := sha256.New()
	for _, t := range ts {
		h.Write([]byte(t.PostID))
		h.Write([]byte{0})
		h.Write([]byte(t.Source))
		h.Write([]byte{0})
		h.Write([]byte(t.Reason))
		h.Write([]byte{0})
	}
	return "deny-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// Lister lists an index's own deny rows; sink/embedded and sink/milvus
// implement it.
type Lister interface {
	DeniedIDs(ctx context.Context, fn func(postID string, at time.Time) error) error
}

// Seed copies an index's deny rows into a list that has never recorded a
// takedown (a new stream): a deployment upgraded from a build without the
// replicated list, or one whose NATS server lost its data, keeps its
// takedowns. It does nothing when the list has entries or history already.
func (l *List) Seed(ctx context.Context, src Lister) (int, error) {
	if err := l.Sync(ctx); err != nil {
		return 0, err
	}
	if l.f.Applied() > 0 {
		return 0, nil
	}
	var batch []domain.Takedown
	n := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := l.Deny(ctx, batch)
		n += len(batch)
		batch = batch[:0]
		return err
	}
	err := src.DeniedIDs(ctx, func(id string, at time.Time) error {
		batch = append(batch, domain.Takedown{PostID: id, At: at, Source: "seed"})
		if len(batch) == maxPerOp {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return n, err
}

// ---- the replicated state ----

// state is the set itself: post id → time of the takedown (Unix ns).
type state struct {
	mu  sync.RWMutex
	ids map[string]int64
}

func (s *state) has(id string) bool {
	s.mu.RLock()
	_, ok := s.ids[id]
	s.mu.RUnlock()
	return ok
}

func (s *state) len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.ids)
}

func (s *state) Apply(b []byte) error {
	var o op
	if err := json.Unmarshal(b, &o); err != nil {
		return fmt.Errorf("denylist: change: %w", err)
	}
	if o.V != 1 {
		return fmt.Errorf("denylist: change version %d (this build reads 1)", o.V)
	}
	s.mu.Lock()
	for _, t := range o.Deny {
		if _, ok := s.ids[t.PostID]; !ok {
			s.ids[t.PostID] = t.At.UnixNano()
		}
	}
	s.mu.Unlock()
	return nil
}

// snapshot format: "XDL1", then per entry uvarint(len id), id, varint(at).
var magic = []byte("XDL1")

func (s *state) Restore(r io.Reader) error {
	ids := map[string]int64{}
	if r != nil {
		br := bufio.NewReaderSize(r, 1<<16)
		head := make([]byte, len(magic))
		if _, err := io.ReadFull(br, head); err != nil {
			return fmt.Errorf("denylist: snapshot header: %w", err)
		}
		if string(head) != string(magic) {
			return fmt.Errorf("denylist: snapshot header %q, want %q", head, magic)
		}
		for {
			n, err := binary.ReadUvarint(br)
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("denylist: snapshot: %w", err)
			}
			if n > 1<<16 {
				return fmt.Errorf("denylist: snapshot: id of %d bytes", n)
			}
			id := make([]byte, n)
			if _, err := io.ReadFull(br, id); err != nil {
				return fmt.Errorf("denylist: snapshot: %w", err)
			}
			at, err := binary.ReadVarint(br)
			if err != nil {
				return fmt.Errorf("denylist: snapshot: %w", err)
			}
			ids[string(id)] = at
		}
	}
	s.mu.Lock()
	s.ids = ids
	s.mu.Unlock()
	return nil
}

func (s *state) Snapshot() (func(io.Writer) error, error) {
	s.mu.RLock()
	ids := maps.Clone(s.ids)
	s.mu.RUnlock()
	return func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<16)
		bw.Write(magic)
		var buf [2 * binary.MaxVarintLen64]byte
		for _, id := range slices.Sorted(maps.Keys(ids)) {
			n := binary.PutUvarint(buf[:], uint64(len(id)))
			bw.Write(buf[:n])
			bw.WriteString(id)
			n = binary.PutVarint(buf[:], ids[id])
			if _, err := bw.Write(buf[:n]); err != nil {
				return err
			}
		}
		return bw.Flush()
	}, nil
}
