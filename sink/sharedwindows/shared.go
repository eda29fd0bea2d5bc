// Package sharedwindows keeps the near-duplicate windows of a deployment
// whose records live in Milvus, shared by every process: the indexers
// compute each image's windows at ingest (image.neardup_windows) and append
// them here after their write round lands in Milvus; every serving process
// keeps a copy in memory (internal/winindex, the tables the embedded index
// searches) and answers xmodal.v1.neardup's window search from it, so a
// Milvus deployment finds crops, downscales and watermarked copies that
// whole-image PDQ misses, with no change to the Milvus schema
// (docs/neardup.md, "Milvus").
//
// The windows are a replicated state machine on NATS JetStream
// (internal/replstate, as the clusters, the deny-list and the banks): one
// stream of write rounds' puts and deletes in order, snapshots of the whole
// state in the object store. Each process applies the stream to a local
// bbolt file (the snapshots' form, rebuilt from the stream at every start)
// and to its window tables. A put older than the version the copy holds
// (Change.Seq, as the index decides) is skipped, so two indexers that
// append one post's versions out of order leave the newer one.
package sharedwindows

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/internal/replstate"
	"github.com/xmodal/xmodal/internal/winindex"
)

// Config configures the shared windows.
type Config struct {
	// Name is the replicated state's name (StateName): processes that give
	// the same name share the windows.
	Name string
	// Dir holds this process's copy (a bbolt file rebuilt from the stream
	// at every start). Required.
	Dir string
	// NoTables makes a process that appends windows but never searches
	// them (an indexer that does not serve): it keeps the file (what a
	// rebuild of the clusters reads, Stored; snapshots) but builds no
	// window tables (no memory).
	NoTables bool
	// Index tunes the window tables (neardup.IndexOptions).
	Index neardup.IndexOptions
	// Replicas, SnapshotEvery and Timeout tune the replicated state
	// (replstate.Config); SnapshotEvery counts write rounds (default 1000).
	Replicas      int
	SnapshotEvery int
	Timeout       time.Duration
	Logger        *slog.Logger
}

// StateName is the replicated state's name for the windows of collection
// (a Milvus collection or alias).
func StateName(collection string) string {
	name := "windows-" + collection
	ok := len(name) <= 64
	for _, r := range name {
		ok = ok && (r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}
	if ok {
		return name
	}
	sum := sha256.Sum256([]byte(collection))
	return "windows-" + hex.EncodeToString(sum[:12])
}

// Windows is this process's copy of the shared windows.
type Windows struct {
	f   *replstate.Follower
	st  *state
	log *slog.Logger
}

// Open loads the shared windows (the newest snapshot and the rounds after
// it) into a fresh local copy under cfg.Dir and follows the stream. The
// window tables are built in the background: Ready is false until then.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Windows, error) {
	if cfg.Name == "" {
		return nil, errors.New("sharedwindows: a state name is required (StateName)")
	}
	if cfg.Dir == "" {
		return nil, errors.New("sharedwindows: a directory for the local copy is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	st, err := newState(cfg)
	if err != nil {
		return nil, err
	}
	every := cfg.SnapshotEvery
	if every == 0 {
		every = 1000
	}
	f, err := replstate.Open(ctx, js, replstate.Config{Name: cfg.Name, Replicas: cfg.Replicas, SnapshotEvery: every,
		Timeout: cfg.Timeout, Logger: cfg.Logger}, st)
	if err != nil {
		st.close()
		return nil, err
	}
	return &Windows{f: f, st: st, log: cfg.Logger}, nil
}

// Close stops following and removes the local copy.
func (w *Windows) Close() {
	w.f.Close()
	w.st.close()
}

// Sync brings the local copy up to every round appended before the call.
func (w *Windows) Sync(ctx context.Context) error { return w.f.Sync(ctx) }

// Seq is the last stream sequence the local copy reflects.
func (w *Windows) Seq() uint64 { return w.f.Applied() }

// Replication returns the follower's counters.
func (w *Windows) Replication() replstate.Stats { return w.f.Stats() }

// maxOpBytes bounds one change in the stream (the server's max_payload is
// 1 MB by default; a window list is at most a few KB).
const maxOpBytes = 512 << 10

// op is one change of the stream: a write round's puts and deletes, in
// order (JSON, so that `nats stream view` shows it).
type op struct {
	V int        `json:"v"`
	A []opAction `json:"a"`
}

type opAction struct {
	PK  string `json:"k"`
	Seq uint64 `json:"s,omitempty"`
	Del bool   `json:"d,omitempty"`
	// Windows is the image's stored window list (neardup.AppendWindows),
	// PDQ its whole-image hash and Quality that hash's quality.
	Windows []byte `json:"w,omitempty"`
	PDQ     []byte `json:"h,omitempty"`
	Quality int    `json:"q,omitempty"`
}

// ErrBadWindows refuses a round whose image record carries windows that do
// not parse (a bug upstream: the pipeline computes them).
var ErrBadWindows = neardup.ErrBadWindows

// Record appends the window changes of a write round (the changes and the
// index's outcomes of them) and returns once they are durable in the
// stream and applied to the local copy: an applied post's image record
// puts its windows (or deletes them when it has none, or no image), a
// deleted post deletes them; stale and denied changes append nothing.
// Call it after the round landed in the index; an error means the changes
// may not be recorded, and the round must be retried (a retried round
// re-applies: the same version puts the same windows).
func (w *Windows) Record(ctx context.Context, changes []domain.Change, outs []domain.Outcome) error {
	if len(outs) != len(changes) {
		return fmt.Errorf("sharedwindows: %d outcomes for %d changes", len(outs), len(changes))
	}
	acts := make([]opAction, 0, len(changes))
	for i := range changes {
		ch := &changes[i]
		pk := domain.PrimaryKey(ch.PostID, domain.ModalityImage)
		switch outs[i] {
		case domain.Deleted:
			acts = append(acts, opAction{PK: pk, Del: true})
		case domain.Applied:
			a := opAction{PK: pk, Seq: ch.Seq, Del: true}
			for j := range ch.Records {
				r := &ch.Records[j]
				if r.Modality != domain.ModalityImage || len(r.Windows) == 0 {
					continue
				}
				if _, _, _, err := neardup.ParseWindows(r.Windows); err != nil {
					return fmt.Errorf("sharedwindows: post %q: %w", ch.PostID, err)
				}
				a.Del, a.Windows, a.PDQ, a.Quality = false, r.Windows, r.PDQ, r.PDQQuality
				if r.PK != "" {
					a.PK = r.PK
				}
			}
			acts = append(acts, a)
		}
	}
	return w.publish(ctx, acts)
}

// Delete appends that the image records pks have no windows (their posts
// were deleted outside a write round).
func (w *Windows) Delete(ctx context.Context, pks []string) error {
	acts := make([]opAction, len(pks))
	for i, pk := range pks {
		acts[i] = opAction{PK: pk, Del: true}
	}
	return w.publish(ctx, acts)
}

func (w *Windows) publish(ctx context.Context, acts []opAction) error {
	var cur op
	size := 0
	flush := func() error {
		if len(cur.A) == 0 {
			return nil
		}
		cur.V = 1
		b, err := json.Marshal(cur)
		if err != nil {
			return err
		}
		if _, err := w.f.Publish(ctx, b, ""); err != nil {
			return fmt.Errorf("sharedwindows: %w", err)
		}
		cur.A, size = cur.A[:0], 0
		return nil
	}
	for _, a := range acts {
		if a.PK == "" {
			return errors.New("sharedwindows: a change without a primary key")
		}
		n := len(a.PK) + 4*(len(a.Windows)+len(a.PDQ))/3 + 64
		if size+n > maxOpBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		cur.A = append(cur.A, a)
		size += n
	}
	return flush()
}

// Ready reports whether the local copy's window tables are built (false
// while they build after a start or a snapshot reload, and always for a
// NoTables process).
func (w *Windows) Ready() bool {
	x := w.st.index()
	return x != nil && x.Ready()
}

// Len is the number of images whose windows the local copy holds.
func (w *Windows) Len() int {
	if x := w.st.index(); x != nil {
		return x.Len()
	}
	return 0
}

// Pending is the number of applied changes the local copy's tables do not
// reflect yet (winindex.Index.Pending).
func (w *Windows) Pending() int {
	if x := w.st.index(); x != nil {
		return x.Pending()
	}
	return 0
}

// Search returns the image records whose windows match q in the local
// copy (winindex.Index.Search), best first; with parts also those that
// show a part of the query. ErrNotReady while the tables build.
func (w *Windows) Search(q *neardup.Query, parts bool) ([]winindex.Hit, error) {
	x := w.st.index()
	if x == nil || !x.Ready() {
		return nil, ErrNotReady
	}
	return x.Search(q, parts), nil
}

// Current reports whether a hit of Search is still its record's windows
// (not replaced or deleted since).
func (w *Windows) Current(h *winindex.Hit) bool {
	x := w.st.index()
	return x != nil && x.Current(h.PK, h.ID)
}

// Stored returns the stored window list of the image record pk in the
// local copy (false: none), as the index's record carried it at ingest:
// what a rebuild of the shared clusters signs a record with.
func (w *Windows) Stored(pk string) ([]byte, bool) {
	w.st.mu.RLock()
	defer w.st.mu.RUnlock()
	var out []byte
	w.st.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketWindows).Get([]byte(pk)); v != nil {
			if _, _, _, ws, err := decodeEntry(v); err == nil {
				out = append([]byte(nil), ws...)
			}
		}
		return nil
	})
	return out, out != nil
}

// ErrNotReady is returned by Search while the window tables build (after a
// start or a snapshot reload) and by a NoTables process.
var ErrNotReady = errors.New("sharedwindows: the near-duplicate window tables are still being built")

// bucketWindows holds pk -> entry (encodeEntry).
var bucketWindows = []byte("sw_windows")

// An entry: the version (8 bytes, big-endian), the PDQ quality (1 byte),
// the PDQ hash's length (1 byte) and bytes, then the stored window list.
func encodeEntry(a *opAction) []byte {
	b := make([]byte, 0, 10+len(a.PDQ)+len(a.Windows))
	b = binary.BigEndian.AppendUint64(b, a.Seq)
	b = append(b, byte(min(max(a.Quality, 0), 255)), byte(len(a.PDQ)))
	b = append(b, a.PDQ...)
	return append(b, a.Windows...)
}

func decodeEntry(b []byte) (seq uint64, quality int, pdqHash, windows []byte, err error) {
	if len(b) < 10 || len(b) < 10+int(b[9]) {
		return 0, 0, nil, nil, fmt.Errorf("sharedwindows: a stored entry of %d bytes", len(b))
	}
	n := int(b[9])
	return binary.BigEndian.Uint64(b), int(b[8]), b[10 : 10+n], b[10+n:], nil
}

// state is the local copy: the entries in a bbolt file of its own and the
// window tables built from them. The replstate follower calls Restore,
// Apply and Snapshot from one goroutine; readers take mu for reading
// (Restore swaps the file and the tables).
type state struct {
	cfg Config
	lc  *replstate.LocalCopy

	mu sync.RWMutex
	db *bolt.DB
	x  *winindex.Index
}

func newState(cfg Config) (*state, error) {
	s := &state{cfg: cfg}
	lc, err := replstate.NewLocalCopy(cfg.Dir, "windows", cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("sharedwindows: %w", err)
	}
	s.lc = lc
	if err := s.Restore(nil); err != nil {
		lc.Remove()
		return nil, err
	}
	return s, nil
}

func (s *state) index() *winindex.Index {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.x
}

// Restore implements replstate.State: a new file from the snapshot (a
// bbolt file) or empty, and new window tables loaded from it, built in the
// background (winindex.Index.Start; none with NoTables).
func (s *state) Restore(r io.Reader) error {
	db, err := s.lc.Open(r)
	if err != nil {
		return fmt.Errorf("sharedwindows: %w", err)
	}
	var x *winindex.Index
	if !s.cfg.NoTables {
		x = winindex.New(s.cfg.Index)
	}
	bad := 0
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketWindows)
		if err != nil || x == nil {
			return err
		}
		return b.ForEach(func(k, v []byte) error {
			_, q, h, w, err := decodeEntry(v)
			if err == nil {
				err = x.Put(string(k), w, h, q)
			}
			if err != nil {
				bad++
			}
			return nil
		})
	})
	if err != nil {
		s.lc.Discard(db)
		return fmt.Errorf("sharedwindows: restore: %w", err)
	}
	if bad > 0 {
		s.cfg.Logger.Warn("sharedwindows: stored window lists that do not parse were skipped", "count", bad)
	}
	if x != nil {
		x.Start(s.cfg.Logger.Info)
	}
	s.mu.Lock()
	oldDB, oldX := s.db, s.x
	s.db, s.x = db, x
	s.mu.Unlock()
	if oldX != nil {
		oldX.Stop()
	}
	if oldDB != nil {
		s.lc.Discard(oldDB)
	}
	return nil
}

// Apply implements replstate.State: the op's actions in one transaction,
// then in the window tables. A put older than the entry's version is
// skipped; a window list that does not parse is skipped (every process
// skips it the same way) and reported.
func (s *state) Apply(b []byte) error {
	var o op
	if err := json.Unmarshal(b, &o); err != nil {
		return fmt.Errorf("sharedwindows: a change that is not JSON: %w", err)
	}
	if o.V != 1 {
		return fmt.Errorf("sharedwindows: change version %d (this build reads 1)", o.V)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	var done []*opAction
	var errs []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketWindows)
		for i := range o.A {
			a := &o.A[i]
			key := []byte(a.PK)
			if a.Del {
				if err := bk.Delete(key); err != nil {
					return err
				}
				done = append(done, a)
				continue
			}
			if v := bk.Get(key); v != nil && a.Seq != 0 {
				if seq, _, _, _, err := decodeEntry(v); err == nil && seq != 0 && a.Seq < seq {
					continue // an older version than the copy holds
				}
			}
			if _, _, _, err := neardup.ParseWindows(a.Windows); err != nil {
				errs = append(errs, fmt.Sprintf("%q: %v", a.PK, err))
				continue
			}
			if err := bk.Put(key, encodeEntry(a)); err != nil {
				return err
			}
			done = append(done, a)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sharedwindows: %w", err)
	}
	if s.x != nil {
		for _, a := range done {
			if a.Del {
				s.x.Delete(a.PK)
			} else {
				s.x.Put(a.PK, a.Windows, a.PDQ, a.Quality) // parsed above
			}
		}
		s.x.Poke()
	}
	if len(errs) > 0 {
		return fmt.Errorf("sharedwindows: skipped %d window lists that do not parse: %s", len(errs), strings.Join(errs, "; "))
	}
	return nil
}

// Snapshot implements replstate.State: a copy of the bbolt file as of the
// changes applied so far, made at once into a file beside it.
func (s *state) Snapshot() (func(io.Writer) error, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	w, err := s.lc.Snapshot(s.db)
	if err != nil {
		return nil, fmt.Errorf("sharedwindows: %w", err)
	}
	return w, nil
}

func (s *state) close() {
	s.mu.Lock()
	if s.x != nil {
		s.x.Stop()
	}
	if s.db != nil {
		s.db.Close()
		s.db = nil
	}
	s.mu.Unlock()
	s.lc.Remove()
}
