// Package sharedclusters keeps the near-duplicate clusters of a deployment
// whose records live outside the process (Milvus), shared by every process:
// the indexers that write posts and the servers that answer cluster,
// trending and search requests (docs/clusters.md, "Milvus").
//
// The clusters are a replicated state machine on NATS JetStream
// (internal/replstate, as the deny-list and the banks): after an indexer's
// write round lands in the index, it appends the round's cluster actions (a
// post joins with its signature, or leaves) to one stream, and every process
// applies the stream in sequence order to its own copy of the cluster store
// (internal/clusters.Store in a local bbolt file, the same code the embedded
// index runs). The link relation is evaluated when an action is applied,
// against every member applied before it, so the relation stays symmetric
// and complete whichever indexer wrote a post and however many write at
// once: the stream orders all joins, and each copy links a post to every
// member within the threshold that precedes it. Every copy applies the same
// actions in the same order, so every process holds the same partition with
// the same cluster ids.
//
// Cluster ids live only in the cluster store, not in the index's rows: a
// merge relabels no record, and replies join the cluster (id, size, first
// seen) from the local copy. A cluster filter becomes a filter on the
// members' post ids.
package sharedclusters

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/internal/clusters"
	"github.com/xmodal/xmodal/internal/replstate"
)

// Config configures the shared clusters.
type Config struct {
	// Name is the replicated state's name (see StateName): processes that
	// give the same name share the clusters.
	Name string
	// Dir holds this process's copy of the cluster store (a bbolt file,
	// rebuilt from the stream at every start). Required.
	Dir string
	// Threshold is the PDQ link distance (default 31).
	Threshold int
	// Signer signs records (its MinQuality defaults to domain.LowPDQQuality).
	// With Windows the records' near-duplicate windows (computed at ingest
	// with image.neardup_windows; Milvus rows keep none) link crops as the
	// embedded index's clusters.windows does: the signatures carry them.
	Signer clusters.Signer
	// Bucket, Retention and SplitLimit: see clusters.Options.
	Bucket     time.Duration
	Retention  time.Duration
	SplitLimit int
	// Replicas, SnapshotEvery and Timeout tune the replicated state
	// (replstate.Config); SnapshotEvery counts write rounds (default 1000).
	Replicas      int
	SnapshotEvery int
	Timeout       time.Duration
	Logger        *slog.Logger
}

// StateName is the replicated state's name for the clusters of collection
// (a Milvus alias) kept with fingerprint (the options that change the
// relation: the threshold and what links): processes of one deployment
// with the same options share one state; a change of options starts
// another (empty) one.
func StateName(collection, fingerprint string) string {
	name := "clusters-" + collection + "-" + fingerprint
	ok := len(name) <= 64
	for _, r := range name {
		ok = ok && (r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}
	if ok {
		return name
	}
	sum := sha256.Sum256([]byte(collection + "\x00" + fingerprint))
	return "clusters-" + hex.EncodeToString(sum[:12])
}

// Fingerprint names the options of c that change the link relation.
func (c *Config) Fingerprint() string {
	fp := "t" + strconv.Itoa(c.threshold())
	if c.Signer.Dihedral {
		fp += "d"
	}
	if c.Signer.Regions {
		fp += "r"
	}
	if c.Signer.Windows {
		fp += "w"
	}
	if c.Signer.Text {
		fp += "x"
	}
	if q := c.minQuality(); q != domain.LowPDQQuality {
		fp += "q" + strconv.Itoa(q)
	}
	return fp
}

func (c *Config) threshold() int {
	if c.Threshold == 0 {
		return 31
	}
	return c.Threshold
}

func (c *Config) minQuality() int {
	if c.Signer.MinQuality == 0 {
		return domain.LowPDQQuality
	}
	return c.Signer.MinQuality
}

func (c *Config) validate() error {
	if c.Dir == "" {
		return errors.New("sharedclusters: a directory for the local copy is required")
	}
	if t := c.threshold(); t < 0 || t > domain.MaxPDQDistance {
		return fmt.Errorf("sharedclusters: threshold %d is outside 0..%d", t, domain.MaxPDQDistance)
	}
	return nil
}

// Clusters is this process's copy of the shared clusters.
type Clusters struct {
	f         *replstate.Follower
	st        *state
	signer    clusters.Signer
	threshold int
	log       *slog.Logger
}

// Open loads the shared clusters (the newest snapshot and the actions after
// it) into a fresh local copy under cfg.Dir and follows the stream.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Clusters, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Name == "" {
		return nil, errors.New("sharedclusters: a state name is required (StateName)")
	}
	signer := cfg.Signer
	signer.MinQuality = cfg.minQuality()
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
	return &Clusters{f: f, st: st, signer: signer, threshold: cfg.threshold(), log: cfg.Logger}, nil
}

// Close stops following and removes the local copy.
func (c *Clusters) Close() {
	c.f.Close()
	c.st.close()
}

// Signer is how records are signed.
func (c *Clusters) Signer() clusters.Signer { return c.signer }

// Sync brings the local copy up to every action appended before the call
// (a read barrier: a reply after it reflects every write round that
// finished anywhere before the request).
func (c *Clusters) Sync(ctx context.Context) error { return c.f.Sync(ctx) }

// Seq is the last stream sequence the local copy reflects.
func (c *Clusters) Seq() uint64 { return c.f.Applied() }

// maxOpBytes bounds one change in the stream (the server's max_payload is
// 1 MB by default).
const maxOpBytes = 512 << 10

// op is one change of the stream: a write round's actions, in order (JSON,
// so that `nats stream view` shows it).
type op struct {
	V int `json:"v"`
	// R empties the clusters before the actions (the first change of a
	// rebuild).
	R bool `json:"r,omitempty"`
	// Seed marks a rebuild's progress: "begin <id>" (with R), "done <id>"
	// after its last joins (Clusters.Seeded).
	Seed string     `json:"seed,omitempty"`
	A    []opAction `json:"a"`
}

type opAction struct {
	Post  string `json:"p"`
	Leave bool   `json:"l,omitempty"`
	At    int64  `json:"t,omitempty"` // Unix ns
	Sig   []byte `json:"s,omitempty"`
}

// Record appends the cluster actions of a write round (the changes and the
// index's outcomes of them) and returns once they are durable in the stream
// and applied to the local copy. Call it after the round landed in the
// index; an error means the actions may not be recorded, and the round
// must be retried (a retried round re-applies: the same version's join is
// a no-op).
func (c *Clusters) Record(ctx context.Context, changes []domain.Change, outs []domain.Outcome) error {
	if len(outs) != len(changes) {
		return fmt.Errorf("sharedclusters: %d outcomes for %d changes", len(outs), len(changes))
	}
	acts := make([]clusters.Action, 0, len(changes))
	for i := range changes {
		if a, ok := c.signer.Action(&changes[i], outs[i]); ok {
			acts = append(acts, a)
		}
	}
	return c.publish(ctx, acts)
}

// Leave appends that the posts left their clusters (deleted).
func (c *Clusters) Leave(ctx context.Context, posts []string) error {
	acts := make([]clusters.Action, len(posts))
	for i, p := range posts {
		acts[i] = clusters.Action{Post: p, Leave: true}
	}
	return c.publish(ctx, acts)
}

// Reset empties the clusters, in every process at the same point of the
// stream: a rebuild starts (Join follows, then MarkSeeded with the id
// Reset returns).
func (c *Clusters) Reset(ctx context.Context) (string, error) {
	var b [8]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	return id, c.publishOp(ctx, op{R: true, Seed: seedBegin + id})
}

// MarkSeeded records that the joins of rebuild id are all appended: the
// clusters are seeded unless another rebuild reset them since.
func (c *Clusters) MarkSeeded(ctx context.Context, id string) error {
	return c.publishOp(ctx, op{Seed: seedDone + id})
}

// Seeded reports whether the clusters hold a finished rebuild: false for
// a stream no rebuild has finished on (a new deployment, new options) or
// one whose last rebuild was interrupted.
func (c *Clusters) Seeded() bool {
	c.st.mu.RLock()
	defer c.st.mu.RUnlock()
	seeded := false
	c.st.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketMeta); b != nil {
			seeded = string(b.Get(keySeeded)) == "1"
		}
		return nil
	})
	return seeded
}

// Seed marks: "begin <id>" with a rebuild's reset, "done <id>" after its
// joins; the state is seeded when the done mark names the latest reset.
const (
	seedBegin = "begin "
	seedDone  = "done "
)

// The local copy's own bucket beside the store's (in snapshots too).
var (
	bucketMeta = []byte("sc_meta")
	keySeeded  = []byte("seeded")
)

func (c *Clusters) publishOp(ctx context.Context, o op) error {
	o.V = 1
	b, err := json.Marshal(o)
	if err != nil {
		return err
	}
	if _, err := c.f.Publish(ctx, b, ""); err != nil {
		return fmt.Errorf("sharedclusters: %w", err)
	}
	return nil
}

// Join appends joins of posts (a rebuild from the index's records).
func (c *Clusters) Join(ctx context.Context, acts []clusters.Action) error {
	return c.publish(ctx, acts)
}

func (c *Clusters) publish(ctx context.Context, acts []clusters.Action) error {
	var cur op
	size := 0
	flush := func() error {
		if len(cur.A) == 0 {
			return nil
		}
		if err := c.publishOp(ctx, cur); err != nil {
			return err
		}
		cur.A, size = cur.A[:0], 0
		return nil
	}
	for _, a := range acts {
		if a.Post == "" {
			return errors.New("sharedclusters: an action without a post id")
		}
		oa := opAction{Post: a.Post, Leave: a.Leave}
		if !a.Leave {
			oa.At, oa.Sig = a.At.UnixNano(), a.Sig
		}
		n := len(a.Post) + 4*len(a.Sig)/3 + 48
		if size+n > maxOpBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		cur.A = append(cur.A, oa)
		size += n
	}
	return flush()
}

// Lookup returns the cluster of a post in the local copy.
func (c *Clusters) Lookup(post string) (clusters.Info, bool) { return c.st.store().Lookup(post) }

// ClusterOf returns the cluster of a post (0: none).
func (c *Clusters) ClusterOf(post string) uint64 { return c.st.store().ClusterOf(post) }

// Get returns a cluster's row.
func (c *Clusters) Get(id uint64) (clusters.Info, bool) { return c.st.store().Get(id) }

// Stats returns the local copy's statistics.
func (c *Clusters) Stats() clusters.Stats { return c.st.store().Stats() }

// Partition returns every clustered post's cluster.
func (c *Clusters) Partition() map[string]uint64 { return c.st.store().Partition() }

// Trending ranks the clusters by growth (clusters.Store.Trending).
func (c *Clusters) Trending(q clusters.TrendingQuery) ([]clusters.Trend, error) {
	return c.st.store().Trending(q)
}

// Members reads a page of a cluster's members, newest first.
func (c *Clusters) Members(id uint64, limit int, cursor []byte) (clusters.Page, error) {
	c.st.mu.RLock()
	defer c.st.mu.RUnlock()
	var pg clusters.Page
	err := c.st.db.View(func(tx *bolt.Tx) error {
		var err error
		pg, err = c.st.st.Members(tx, id, limit, cursor)
		return err
	})
	return pg, err
}

// MemberPosts returns the post ids of every member of the clusters, up to
// limit in all (false when they have more).
func (c *Clusters) MemberPosts(ids []uint64, limit int) ([]string, bool, error) {
	var posts []string
	for _, id := range ids {
		var cursor []byte
		for {
			pg, err := c.Members(id, 1000, cursor)
			if errors.Is(err, clusters.ErrNoCluster) {
				break
			}
			if err != nil {
				return nil, false, err
			}
			for _, m := range pg.Members {
				if len(posts) == limit {
					return posts, false, nil
				}
				posts = append(posts, m.Post)
			}
			if pg.Next == nil {
				break
			}
			cursor = pg.Next
		}
	}
	return posts, true, nil
}

// Collector returns the Prometheus collector of the local copy's
// statistics (the xmodal_cluster* metrics of the embedded index).
func (c *Clusters) Collector() *clusters.Collector { return clusters.NewCollector(c) }

// Replication returns the follower's counters.
func (c *Clusters) Replication() replstate.Stats { return c.f.Stats() }

// state is the local copy: a clusters.Store in a bbolt file of its own.
// The replstate follower calls Restore, Apply and Snapshot from one
// goroutine; readers take mu for reading (Restore swaps the file).
type state struct {
	cfg Config
	lc  *replstate.LocalCopy

	mu sync.RWMutex
	db *bolt.DB
	st *clusters.Store
}

func newState(cfg Config) (*state, error) {
	lc, err := replstate.NewLocalCopy(cfg.Dir, "clusters", cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("sharedclusters: %w", err)
	}
	s := &state{cfg: cfg, lc: lc}
	if err := s.Restore(nil); err != nil {
		lc.Remove()
		return nil, err
	}
	return s, nil
}

func (s *state) store() *clusters.Store {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.st
}

func (s *state) options() (clusters.Options, error) {
	var l clusters.Linker
	l, err := clusters.NewPDQLinker(s.cfg.threshold())
	if err != nil {
		return clusters.Options{}, err
	}
	if s.cfg.Signer.Windows {
		l = clusters.Union{A: l, B: neardup.NewLinker()}
	}
	if s.cfg.Signer.Text {
		l = clusters.Either{Image: l, Text: clusters.NewExactLinker()}
	}
	return clusters.Options{Linker: l, Bucket: s.cfg.Bucket, Retention: s.cfg.Retention, SplitLimit: s.cfg.SplitLimit}, nil
}

// Restore implements replstate.State: a new file from the snapshot (a
// bbolt file) or empty, and a store opened on it with a new linker.
func (s *state) Restore(r io.Reader) error {
	db, err := s.lc.Open(r)
	if err != nil {
		return fmt.Errorf("sharedclusters: %w", err)
	}
	opt, err := s.options()
	var st *clusters.Store
	if err == nil {
		err = db.Update(clusters.Init)
	}
	if err == nil {
		err = db.View(func(tx *bolt.Tx) error {
			var err error
			st, err = clusters.Open(tx, opt)
			return err
		})
	}
	if err != nil {
		s.lc.Discard(db)
		return fmt.Errorf("sharedclusters: restore: %w", err)
	}
	s.mu.Lock()
	old := s.db
	s.db, s.st = db, st
	s.mu.Unlock()
	if old != nil {
		s.lc.Discard(old) // waits for a snapshot still reading it
	}
	return nil
}

// Apply implements replstate.State: the op's actions in one transaction;
// when one fails (a signature the linker refuses), each action in its own,
// skipping the failing ones, which every process skips the same way.
func (s *state) Apply(b []byte) error {
	var o op
	if err := json.Unmarshal(b, &o); err != nil {
		return fmt.Errorf("sharedclusters: a change that is not JSON: %w", err)
	}
	if o.V != 1 {
		return fmt.Errorf("sharedclusters: change version %d (this build reads 1)", o.V)
	}
	acts := make([]clusters.Action, len(o.A))
	for i, a := range o.A {
		acts[i] = clusters.Action{Post: a.Post, Leave: a.Leave, At: time.Unix(0, a.At), Sig: a.Sig}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	err := s.st.Update(s.db, func(t *clusters.Txn) error {
		if o.R {
			if err := t.Reset(); err != nil {
				return err
			}
		}
		if err := markSeed(t.Tx(), o.Seed); err != nil {
			return err
		}
		for _, a := range acts {
			if err := t.Do(a); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		return nil
	}
	if o.R || o.Seed != "" {
		if err := s.st.Update(s.db, func(t *clusters.Txn) error {
			if o.R {
				if err := t.Reset(); err != nil {
					return err
				}
			}
			return markSeed(t.Tx(), o.Seed)
		}); err != nil {
			return fmt.Errorf("sharedclusters: reset: %w", err)
		}
	}
	var errs []string
	for _, a := range acts {
		if err := s.st.Update(s.db, func(t *clusters.Txn) error { return t.Do(a) }); err != nil {
			errs = append(errs, fmt.Sprintf("post %q: %v", a.Post, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("sharedclusters: skipped %d actions: %s", len(errs), strings.Join(errs, "; "))
	}
	return nil
}

// markSeed records a rebuild's progress in tx: a begin mark leaves the
// clusters unseeded until the done mark of the same rebuild.
func markSeed(tx *bolt.Tx, seed string) error {
	if seed == "" {
		return nil
	}
	b, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return err
	}
	switch {
	case strings.HasPrefix(seed, seedBegin):
		return b.Put(keySeeded, []byte("pending "+strings.TrimPrefix(seed, seedBegin)))
	case strings.HasPrefix(seed, seedDone):
		if string(b.Get(keySeeded)) == "pending "+strings.TrimPrefix(seed, seedDone) {
			return b.Put(keySeeded, []byte("1"))
		}
	}
	return nil
}

// Snapshot implements replstate.State: a copy of the bbolt file as of the
// changes applied so far, made at once into a file beside it (the follower
// may never call the writer: a snapshot another process wrote first, or a
// close; a copy left so is removed by the next snapshot or by close).
func (s *state) Snapshot() (func(io.Writer) error, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	w, err := s.lc.Snapshot(s.db)
	if err != nil {
		return nil, fmt.Errorf("sharedclusters: %w", err)
	}
	return w, nil
}

func (s *state) close() {
	s.mu.Lock()
	if s.db != nil {
		s.db.Close()
		s.db = nil
	}
	s.mu.Unlock()
	s.lc.Remove()
}
