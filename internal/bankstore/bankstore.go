// Package bankstore keeps the moderation banks (package banks) in every
// xmodal process, replicated through NATS JetStream by internal/replstate,
// as the deny-list is: the operations (banks.Op, JSON) go to the stream
// XMODAL_STATE_BANKS in order, and snapshots of the whole bank set (the
// banks package's binary snapshot) go to the object store XMODAL_SNAPSHOTS
// every so many operations, with the stream purged below them. Every process
// loads the newest snapshot at start, replays the operations after it and
// follows new ones live, so an entry added through one process is matched by
// every other once it has synced (Sync: the read barrier) — see
// docs/moderation.md for the measured delay.
//
// Do returns once an operation is durable in the stream and applied to the
// local copy, with what it changed; an operation that the state refuses
// (a bank name taken, a bank that no longer exists) is refused the same way
// in every process, and Do returns that error.
package bankstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/internal/replstate"
)

// Name is the replicated state's name: stream XMODAL_STATE_BANKS, subject
// xmodal.state.banks.
const Name = "banks"

// Config of the store. Zero values take replstate's defaults.
type Config struct {
	Replicas int // stream replicas in a NATS cluster (default 1)
	// SnapshotEvery is how many operations after the newest snapshot make a
	// process write a new one (default 50: an operation carries up to 10,000
	// entries, and replaying an operation's entries is much slower than
	// loading them from a snapshot — 1 million entries replayed took 59 s on
	// the shared test machine — so at most about 500,000 are replayed at
	// start; negative: never).
	SnapshotEvery int
	Timeout       time.Duration
	Logger        *slog.Logger
}

// Store is the replicated banks of one process. Its methods are safe for
// concurrent use.
type Store struct {
	f  *replstate.Follower
	st *state
	m  *metrics
}

// Open loads the banks and follows them. It returns once the local copy
// holds every operation in the stream (replstate.Open); an error wrapping
// replstate.ErrNoJetStream when the server has no JetStream.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	every := cfg.SnapshotEvery
	if every == 0 {
		every = 50
	}
	st := &state{log: log, waiting: map[[32]byte]*applied{}}
	st.cur.Store(banks.NewState())
	f, err := replstate.Open(ctx, js, replstate.Config{Name: Name, Replicas: cfg.Replicas, SnapshotEvery: every,
		Timeout: cfg.Timeout, Logger: log}, st)
	if err != nil {
		return nil, err
	}
	return &Store{f: f, st: st, m: newMetrics()}, nil
}

// Close stops following. The local copy keeps what it holds.
func (s *Store) Close() { s.f.Close() }

// State is the local copy of the banks (Sync first when the answer must
// include changes made elsewhere just now). A snapshot reload replaces it:
// call State for every lookup rather than keeping the pointer.
func (s *Store) State() *banks.State { return s.st.cur.Load() }

// Sync brings the local copy up to every operation recorded before the
// call; an error wrapping replstate.ErrBehind when it cannot (fail closed).
func (s *Store) Sync(ctx context.Context) error { return s.f.Sync(ctx) }

// Seq is the last stream sequence the local copy reflects.
func (s *Store) Seq() uint64 { return s.f.Applied() }

// Stats are the follower's counters.
func (s *Store) Stats() replstate.Stats { return s.f.Stats() }

// SnapshotNow writes a snapshot at once (operators and tests).
func (s *Store) SnapshotNow(ctx context.Context) (uint64, error) { return s.f.SnapshotNow(ctx) }

// Do records op in the stream and returns, once it is applied to the local
// copy, what it changed. The op is checked first against the local copy
// (form, bank exists or not, every entry valid), so that a bad request is
// refused before anything is recorded; the stream's order then decides
// between concurrent writers, and an op the state refuses is refused by
// every process alike (Do returns its error, wrapping the banks error kind).
func (s *Store) Do(ctx context.Context, op banks.Op) (banks.Result, error) {
	if op.Version == 0 {
		op.Version = banks.OpVersion
	}
	if op.At.IsZero() {
		op.At = time.Now().UTC()
	}
	if err := s.precheck(op); err != nil {
		return banks.Result{}, err
	}
	data, err := banks.EncodeOp(op)
	if err != nil {
		return banks.Result{}, err
	}
	key := sha256.Sum256(data)
	w := s.st.wait(key)
	defer s.st.unwait(key)
	if _, err := s.f.Publish(ctx, data, "banks-"+hex.EncodeToString(key[:16])); err != nil {
		return banks.Result{}, fmt.Errorf("bankstore: %w", err)
	}
	select {
	case <-w.done:
		return w.res, w.err
	default:
		// Applied before we registered (impossible: wait precedes Publish)
		// or deduplicated by the stream (a retried identical op): it was
		// applied the first time.
		return banks.Result{}, nil
	}
}

// precheck refuses an op that cannot apply to the local copy.
func (s *Store) precheck(op banks.Op) error {
	if err := op.Validate(); err != nil {
		return err
	}
	st := s.State()
	_, err := st.Bank(op.Bank)
	exists := err == nil
	switch op.Kind {
	case banks.OpCreateBank:
		if exists {
			return fmt.Errorf("%w: %s", banks.ErrBankExists, op.Bank)
		}
		cfg := op.Config.WithDefaults()
		return cfg.Validate()
	case banks.OpUpdateBank:
		if !exists {
			return fmt.Errorf("%w: %s", banks.ErrBankNotFound, op.Bank)
		}
		cfg := op.Config.WithDefaults()
		return cfg.Validate()
	default:
		if !exists {
			return fmt.Errorf("%w: %s", banks.ErrBankNotFound, op.Bank)
		}
	}
	if op.Kind == banks.OpAddEntries {
		for i := range op.Entries {
			e := op.Entries[i]
			if err := e.Normalize(); err != nil {
				return fmt.Errorf("entry %d: %w", i, err)
			}
		}
	}
	return nil
}

// ---- the replicated state ----

// state adapts a banks.State to replstate.State. A snapshot reload builds a
// new banks.State and swaps it in, so lookups never wait for a load.
type state struct {
	log *slog.Logger
	cur atomic.Pointer[banks.State]

	mu      sync.Mutex
	waiting map[[32]byte]*applied // ops this process published, by their encoding's hash
}

type applied struct {
	done chan struct{}
	res  banks.Result
	err  error
}

func (s *state) wait(key [32]byte) *applied {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := &applied{done: make(chan struct{})}
	s.waiting[key] = w
	return w
}

func (s *state) unwait(key [32]byte) {
	s.mu.Lock()
	delete(s.waiting, key)
	s.mu.Unlock()
}

func (s *state) Restore(r io.Reader) error {
	if r == nil {
		s.cur.Store(banks.NewState())
		return nil
	}
	st, err := banks.ReadSnapshot(r, banks.ReadOptions{Logger: s.log})
	if err != nil {
		return err
	}
	s.cur.Store(st)
	return nil
}

func (s *state) Apply(data []byte) error {
	op, err := banks.DecodeOp(data)
	var res banks.Result
	if err == nil {
		res, err = s.cur.Load().Apply(op)
	}
	key := sha256.Sum256(data)
	s.mu.Lock()
	if w := s.waiting[key]; w != nil {
		select {
		case <-w.done:
		default:
			w.res, w.err = res, err
			close(w.done)
		}
	}
	s.mu.Unlock()
	if err != nil {
		// Every process refuses it alike; the writer's Do returns the error.
		return err
	}
	if op.Actor != "" || op.Kind != "" {
		s.log.Debug("banks: applied", "op", op.Kind, "bank", op.Bank, "actor", op.Actor)
	}
	return nil
}

// Snapshot writes the state into memory at once (Apply waits meanwhile:
// banks.State.WriteSnapshot holds its read lock), so that the writer
// returned never sees later operations.
func (s *state) Snapshot() (func(io.Writer) error, error) {
	var buf bytes.Buffer
	if err := s.cur.Load().WriteSnapshot(&buf); err != nil {
		return nil, err
	}
	return func(w io.Writer) error {
		_, err := w.Write(buf.Bytes())
		return err
	}, nil
}

// IsNoJetStream reports whether err says the NATS server has no JetStream.
func IsNoJetStream(err error) bool { return errors.Is(err, replstate.ErrNoJetStream) }
