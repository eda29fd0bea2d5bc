// Package replstate keeps a small replicated state machine in every process of
// a deployment, with NATS JetStream as the only server: a stream of changes
// ("ops") in sequence order plus snapshots of the whole state in a JetStream
// object store. Each process loads the newest snapshot at start, replays the
// changes after it, and follows new ones live. Sync is the read barrier: it
// returns once the local copy holds every change that was in the stream when
// Sync was called, so a reader that syncs first never misses a change another
// process made before.
//
// Changes are appended with Publish, which returns once the change is durable
// in the stream (the JetStream publish acknowledgement) and applied locally.
// Every so many changes one process writes a snapshot named by the sequence it
// covers and purges the stream below it; followers that fall behind a purge
// reload the snapshot.
//
// The deny-list (internal/denylist) and the moderation banks run on it. It is
// not a key-value store: the stream holds one subject, so the server keeps no
// per-key state however many entries the state has.
package replstate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// State is the in-memory state a Follower maintains. Apply and Snapshot are
// called from one goroutine, in sequence order, never concurrently with each
// other or with Restore; readers of the state run concurrently with them, so
// the implementation guards its own data.
type State interface {
	// Restore replaces the whole state with a snapshot's contents (nil reader:
	// the empty state).
	Restore(r io.Reader) error
	// Apply applies one change. An error is logged and the change skipped (every
	// process skips it the same way); it does not stop the follower.
	Apply(op []byte) error
	// Snapshot captures the state as of the changes applied so far and returns a
	// function that writes it; the function runs on another goroutine while later
	// changes are applied, so it must not see them.
	Snapshot() (func(w io.Writer) error, error)
}

// Config names a replicated state and tunes it. Zero values take the defaults.
type Config struct {
	// Name is the state's name: letters, digits, '_' and '-' (e.g. "deny").
	// The stream is XMODAL_STATE_<NAME>, its subject xmodal.state.<name>.
	Name string
	// Replicas of the stream and the snapshot bucket in a NATS cluster (default 1).
	Replicas int
	// SnapshotEvery is how many changes after the newest snapshot make a process
	// write a new one (default 10000; negative: never).
	SnapshotEvery int
	// KeepSnapshots is how many snapshots are kept (default 2: a follower
	// reading the older one while the newer is written still finds it).
	KeepSnapshots int
	// Duplicates is the stream's duplicate window for Publish's message ids
	// (default 2m).
	Duplicates time.Duration
	// Bucket is the object store bucket of the snapshots (default
	// XMODAL_SNAPSHOTS), shared by every state.
	Bucket string
	// Timeout bounds each JetStream request (default 5s).
	Timeout time.Duration
	Logger  *slog.Logger
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate checks the configuration.
func (c *Config) Validate() error {
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("replstate: name %q: want 1-64 letters, digits, '_' or '-'", c.Name)
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		return fmt.Errorf("replstate: replicas %d: want 1..5", c.Replicas)
	}
	return nil
}

// WithDefaults returns c with the zero (or negative) fields set to their
// defaults.
func (c Config) WithDefaults() Config {
	o := c
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.SnapshotEvery == 0 {
		o.SnapshotEvery = 10000
	}
	if o.KeepSnapshots <= 0 {
		o.KeepSnapshots = 2
	}
	if o.Duplicates <= 0 {
		o.Duplicates = 2 * time.Minute
	}
	if o.Bucket == "" {
		o.Bucket = "XMODAL_SNAPSHOTS"
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Stream returns the name of the stream of a state called name.
func Stream(name string) string { return "XMODAL_STATE_" + strings.ToUpper(name) }

// Subject returns the subject of the changes of a state called name.
func Subject(name string) string { return "xmodal.state." + name }

// Errors.
var (
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("replstate: closed")
	// ErrBehind is returned by Sync when the local copy cannot be brought up to
	// date (the server is unreachable or the follower is failing): a reader
	// must not trust it (fail closed).
	ErrBehind = errors.New("replstate: state is not up to date")
	// ErrNoJetStream is returned by Open when the server has no JetStream.
	ErrNoJetStream = errors.New("replstate: the NATS server has no JetStream (enable it: jetstream {} in the server config)")
)

// Follower keeps one State up to date. Its methods are safe for concurrent use.
type Follower struct {
	cfg    Config
	js     jetstream.JetStream
	stream jetstream.Stream
	obs    jetstream.ObjectStore
	st     State
	log    *slog.Logger
	epoch  string // the stream's creation time: a new stream starts a new epoch

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	applyMu sync.Mutex // held while the state changes (Apply, Restore) or is captured (Snapshot)

	mu       sync.Mutex
	applied  uint64        // the last stream sequence reflected in st
	changed  chan struct{} // closed and replaced whenever applied moves
	followEr error         // the follower's last error (nil while healthy)
	snapSeq  uint64        // the newest snapshot this process knows of
	snapping bool

	// the read barrier: callers join the next stream-info request
	barMu   sync.Mutex
	barNext *barrier
	barRun  bool

	syncs, syncFails, nSnapshots, reloads atomic.Int64
}

type barrier struct {
	done chan struct{}
	last uint64
	err  error
}

// Open creates the stream and the snapshot bucket when missing, restores the
// newest snapshot, replays the changes after it and starts following. It
// returns once the state is up to date (as Sync).
func Open(ctx context.Context, js jetstream.JetStream, cfg Config, st State) (*Follower, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	f := &Follower{cfg: cfg, js: js, st: st, log: cfg.Logger.With("state", cfg.Name), changed: make(chan struct{})}
	rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var err error
	f.stream, err = js.CreateOrUpdateStream(rctx, jetstream.StreamConfig{
		Name:        Stream(cfg.Name),
		Subjects:    []string{Subject(cfg.Name)},
		Description: "xmodal replicated state " + cfg.Name + ": changes in order; snapshots in " + cfg.Bucket,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Duplicates:  cfg.Duplicates,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
	})
	if err != nil {
		// A server without JetStream answers nothing on $JS.API (no
		// responders); an account without it answers with an error.
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) ||
			errors.Is(err, nats.ErrNoResponders) {
			return nil, ErrNoJetStream
		}
		return nil, fmt.Errorf("replstate %s: stream: %w", cfg.Name, err)
	}
	info, err := f.stream.Info(rctx)
	if err != nil {
		return nil, fmt.Errorf("replstate %s: stream info: %w", cfg.Name, err)
	}
	f.epoch = strconv.FormatInt(info.Created.UnixNano(), 36)
	f.obs, err = js.CreateOrUpdateObjectStore(rctx, jetstream.ObjectStoreConfig{
		Bucket: cfg.Bucket, Description: "xmodal replicated state snapshots", Storage: jetstream.FileStorage, Replicas: cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("replstate %s: snapshot bucket %s: %w", cfg.Name, cfg.Bucket, err)
	}
	if err := f.restore(ctx); err != nil {
		return nil, err
	}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	f.wg.Add(1)
	go f.follow()
	if err := f.Sync(ctx); err != nil {
		f.Close()
		return nil, err
	}
	f.log.Info("replicated state loaded", "stream", Stream(cfg.Name), "seq", f.Applied(), "snapshot", f.snapshotSeq())
	return f, nil
}

// Epoch identifies the stream's life: it changes when the stream is deleted
// and created anew, so (Epoch, Applied) orders every state a deployment had.
func (f *Follower) Epoch() string { return f.epoch }

// Applied is the last stream sequence the local state reflects.
func (f *Follower) Applied() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

func (f *Follower) snapshotSeq() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snapSeq
}

// Close stops following. The state keeps what it holds.
func (f *Follower) Close() {
	if f.cancel != nil {
		f.cancel()
	}
	f.wg.Wait()
}

// snapName is the object name of the snapshot covering seq (zero-padded so
// that names sort by sequence).
func (f *Follower) snapName(seq uint64) string {
	return fmt.Sprintf("%s.%020d", f.cfg.Name, seq)
}

// snapshots lists the sequences of this state's complete snapshots, ascending.
func (f *Follower) snapshots(ctx context.Context) ([]uint64, error) {
	infos, err := f.obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var seqs []uint64
	prefix := f.cfg.Name + "."
	for _, in := range infos {
		if in.Deleted || !strings.HasPrefix(in.Name, prefix) {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimPrefix(in.Name, prefix), 10, 64)
		if err == nil {
			seqs = append(seqs, n)
		}
	}
	slices.Sort(seqs)
	return seqs, nil
}

// restore loads the newest snapshot (or the empty state when there is none).
func (f *Follower) restore(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
		seqs, err := f.snapshots(rctx)
		cancel()
		if err != nil {
			return fmt.Errorf("replstate %s: list snapshots: %w", f.cfg.Name, err)
		}
		if len(seqs) == 0 {
			if err := f.st.Restore(nil); err != nil {
				return fmt.Errorf("replstate %s: reset: %w", f.cfg.Name, err)
			}
			f.setApplied(0, 0)
			return nil
		}
		seq := seqs[len(seqs)-1]
		err = f.restoreFrom(ctx, seq)
		if err == nil {
			f.setApplied(seq, seq)
			return nil
		}
		// A snapshot removed while we read it: a newer one exists; list again.
		if !errors.Is(err, jetstream.ErrObjectNotFound) || attempt >= 3 {
			return fmt.Errorf("replstate %s: snapshot %d: %w", f.cfg.Name, seq, err)
		}
	}
}

func (f *Follower) restoreFrom(ctx context.Context, seq uint64) error {
	res, err := f.obs.Get(ctx, f.snapName(seq))
	if err != nil {
		return err
	}
	defer res.Close()
	start := time.Now()
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	if err := f.st.Restore(res); err != nil {
		return err
	}
	f.log.Info("snapshot restored", "seq", seq, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func (f *Follower) setApplied(seq, snap uint64) {
	f.mu.Lock()
	f.applied = seq
	if snap > f.snapSeq {
		f.snapSeq = snap
	}
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

func (f *Follower) setErr(err error) {
	f.mu.Lock()
	f.followEr = err
	f.mu.Unlock()
}

// follow consumes the stream from the sequence after the state's and applies
// each change. A gap in the sequence (changes purged below a newer snapshot)
// reloads the newest snapshot.
func (f *Follower) follow() {
	defer f.wg.Done()
	backoff := 100 * time.Millisecond
	for f.ctx.Err() == nil {
		err := f.consume()
		if f.ctx.Err() != nil {
			return
		}
		f.setErr(err)
		f.log.Warn("following the state stream failed; retrying", "err", err, "backoff", backoff)
		select {
		case <-time.After(backoff):
		case <-f.ctx.Done():
			return
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

var errGap = errors.New("replstate: changes were purged below a newer snapshot")

func (f *Follower) consume() error {
	start := f.Applied() + 1
	cons, err := f.js.OrderedConsumer(f.ctx, Stream(f.cfg.Name), jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: start,
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("ordered consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(512))
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	defer it.Stop()
	stop := context.AfterFunc(f.ctx, it.Stop)
	defer stop()
	f.setErr(nil)
	for {
		msg, err := it.Next()
		if err != nil {
			if f.ctx.Err() != nil {
				return nil
			}
			return err
		}
		md, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("message metadata: %w", err)
		}
		seq := md.Sequence.Stream
		applied := f.Applied()
		switch {
		case seq <= applied:
			continue // already in the state (a snapshot newer than the consumer's start)
		case seq > applied+1:
			if err := f.reload(seq); err != nil {
				return err
			}
			if f.Applied() >= seq {
				continue
			}
			if f.Applied()+1 != seq {
				return fmt.Errorf("%w: next change is %d, newest snapshot covers %d", errGap, seq, f.Applied())
			}
		}
		f.applyMu.Lock()
		if err := f.st.Apply(msg.Data()); err != nil {
			f.log.Warn("a change could not be applied; skipped", "seq", seq, "err", err)
		}
		f.setApplied(seq, 0)
		f.applyMu.Unlock()
		f.maybeSnapshot(seq)
	}
}

// reload restores the newest snapshot when it covers more than the state.
func (f *Follower) reload(next uint64) error {
	ctx, cancel := context.WithTimeout(f.ctx, 4*f.cfg.Timeout)
	defer cancel()
	seqs, err := f.snapshots(ctx)
	if err != nil {
		return fmt.Errorf("list snapshots: %w", err)
	}
	if len(seqs) == 0 || seqs[len(seqs)-1] < next-1 {
		return fmt.Errorf("%w: next change is %d, no snapshot covers %d", errGap, next, next-1)
	}
	seq := seqs[len(seqs)-1]
	if err := f.restoreFrom(ctx, seq); err != nil {
		return fmt.Errorf("snapshot %d: %w", seq, err)
	}
	f.reloads.Add(1)
	f.setApplied(seq, seq)
	return nil
}

// Sync returns once the local state reflects every change that was in the
// stream when it was called, or ErrBehind (wrapped with the cause) when that
// cannot be established before ctx ends: fail closed.
func (f *Follower) Sync(ctx context.Context) error {
	f.syncs.Add(1)
	if nc := f.js.Conn(); nc != nil && !nc.IsConnected() {
		// A request now would wait in the reconnect buffer until it times out.
		f.syncFails.Add(1)
		return fmt.Errorf("%w: %s: not connected to NATS (%s)", ErrBehind, f.cfg.Name, nc.Status())
	}
	last, err := f.lastSeq(ctx)
	if err != nil {
		f.syncFails.Add(1)
		return fmt.Errorf("%w: %s: %w", ErrBehind, f.cfg.Name, err)
	}
	if err := f.WaitFor(ctx, last); err != nil {
		f.syncFails.Add(1)
		return err
	}
	return nil
}

// WaitFor returns once the local state reflects the change at seq.
func (f *Follower) WaitFor(ctx context.Context, seq uint64) error {
	for {
		f.mu.Lock()
		applied, ch, ferr := f.applied, f.changed, f.followEr
		f.mu.Unlock()
		if applied >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			if ferr != nil {
				return fmt.Errorf("%w: %s at %d of %d: %w", ErrBehind, f.cfg.Name, applied, seq, ferr)
			}
			return fmt.Errorf("%w: %s at %d of %d: %w", ErrBehind, f.cfg.Name, applied, seq, ctx.Err())
		case <-f.doneCh():
			return ErrClosed
		}
	}
}

func (f *Follower) doneCh() <-chan struct{} {
	if f.ctx == nil {
		return nil
	}
	return f.ctx.Done()
}

// lastSeq asks the server for the stream's last sequence. Concurrent callers
// share requests: a caller joins the next request to start, never one that
// started before it arrived, so the answer is at least as new as the call.
func (f *Follower) lastSeq(ctx context.Context) (uint64, error) {
	f.barMu.Lock()
	if f.barNext == nil {
		f.barNext = &barrier{done: make(chan struct{})}
	}
	b := f.barNext
	if !f.barRun {
		f.barRun = true
		go f.runBarriers()
	}
	f.barMu.Unlock()
	select {
	case <-b.done:
		return b.last, b.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (f *Follower) runBarriers() {
	for {
		f.barMu.Lock()
		b := f.barNext
		f.barNext = nil
		if b == nil {
			f.barRun = false
			f.barMu.Unlock()
			return
		}
		f.barMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), f.cfg.Timeout)
		info, err := f.stream.Info(ctx)
		cancel()
		if err == nil {
			b.last = info.State.LastSeq
		}
		b.err = err
		close(b.done)
	}
}

// Publish appends a change and returns its sequence once the change is durable
// in the stream and applied to the local state. msgID, when set, makes a
// retried publish (same id within the duplicate window) a no-op that returns
// the first one's sequence.
func (f *Follower) Publish(ctx context.Context, op []byte, msgID string) (uint64, error) {
	if f.ctx.Err() != nil {
		return 0, ErrClosed
	}
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	opts = append(opts, jetstream.WithExpectStream(Stream(f.cfg.Name)))
	ack, err := f.js.PublishMsg(ctx, &nats.Msg{Subject: Subject(f.cfg.Name), Data: op}, opts...)
	if err != nil {
		return 0, fmt.Errorf("replstate %s: publish: %w", f.cfg.Name, err)
	}
	if err := f.WaitFor(ctx, ack.Sequence); err != nil {
		return ack.Sequence, err
	}
	return ack.Sequence, nil
}

// maybeSnapshot starts a snapshot when enough changes followed the newest one.
// Every process may write one; names carry the sequence, the newest wins, and
// a lower one written late is harmless (it is never preferred, and purges only
// remove changes below the snapshot that was written).
func (f *Follower) maybeSnapshot(seq uint64) {
	if f.cfg.SnapshotEvery < 0 {
		return
	}
	f.mu.Lock()
	due := !f.snapping && seq >= f.snapSeq+uint64(f.cfg.SnapshotEvery)
	if due {
		f.snapping = true
	}
	f.mu.Unlock()
	if !due {
		return
	}
	f.applyMu.Lock()
	write, err := f.st.Snapshot()
	f.applyMu.Unlock()
	if err != nil {
		f.log.Warn("snapshot failed", "seq", seq, "err", err)
		f.mu.Lock()
		f.snapping = false
		f.mu.Unlock()
		return
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		defer func() {
			f.mu.Lock()
			f.snapping = false
			f.mu.Unlock()
		}()
		// Jitter: when several processes cross the mark together, the first
		// one's snapshot usually lands before the others look.
		select {
		case <-time.After(time.Duration(rand.Int64N(int64(2 * time.Second)))):
		case <-f.ctx.Done():
			return
		}
		ctx, cancel := context.WithTimeout(f.ctx, 10*f.cfg.Timeout)
		defer cancel()
		if err := f.writeSnapshot(ctx, seq, write, false); err != nil && f.ctx.Err() == nil {
			f.log.Warn("snapshot failed", "seq", seq, "err", err)
		}
	}()
}

func (f *Follower) writeSnapshot(ctx context.Context, seq uint64, write func(io.Writer) error, force bool) error {
	seqs, err := f.snapshots(ctx)
	if err != nil {
		return err
	}
	if len(seqs) > 0 && seqs[len(seqs)-1] >= seq || !force && len(seqs) > 0 && seqs[len(seqs)-1]+uint64(f.cfg.SnapshotEvery)/2 > seq {
		f.setApplied(f.Applied(), seqs[len(seqs)-1]) // another process wrote one
		return nil
	}
	var buf bytes.Buffer
	if err := write(&buf); err != nil {
		return err
	}
	if _, err := f.obs.Put(ctx, jetstream.ObjectMeta{Name: f.snapName(seq),
		Description: fmt.Sprintf("snapshot of %s through sequence %d", f.cfg.Name, seq)}, &buf); err != nil {
		return err
	}
	f.mu.Lock()
	if seq > f.snapSeq {
		f.snapSeq = seq
	}
	f.mu.Unlock()
	f.nSnapshots.Add(1)
	// Changes at or below seq are in the snapshot now.
	if err := f.stream.Purge(ctx, jetstream.WithPurgeSequence(seq+1)); err != nil {
		return fmt.Errorf("purge below %d: %w", seq+1, err)
	}
	all := append(seqs, seq)
	slices.Sort(all)
	all = slices.Compact(all)
	for _, old := range all[:max(0, len(all)-f.cfg.KeepSnapshots)] {
		if err := f.obs.Delete(ctx, f.snapName(old)); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			f.log.Warn("removing an old snapshot failed", "seq", old, "err", err)
		}
	}
	f.log.Info("snapshot written", "seq", seq, "bytes", buf.Len())
	return nil
}

// Stats are counters for metrics.
type Stats struct {
	Applied, Snapshot                       uint64
	Syncs, SyncFailures, Snapshots, Reloads int64
	Healthy                                 bool
}

// Stats returns the follower's counters.
func (f *Follower) Stats() Stats {
	f.mu.Lock()
	s := Stats{Applied: f.applied, Snapshot: f.snapSeq, Healthy: f.followEr == nil}
	f.mu.Unlock()
	s.Syncs, s.SyncFailures, s.Snapshots, s.Reloads = f.syncs.Load(), f.syncFails.Load(), f.nSnapshots.Load(), f.reloads.Load()
	return s
}

// SnapshotNow writes a snapshot of the current state at once and purges the
// changes below it (operators and tests; processes also write one every
// SnapshotEvery changes). It returns the sequence the snapshot covers.
func (f *Follower) SnapshotNow(ctx context.Context) (uint64, error) {
	if err := f.Sync(ctx); err != nil {
		return 0, err
	}
	f.mu.Lock()
	if f.snapping {
		f.mu.Unlock()
		return 0, errors.New("replstate: a snapshot is being written; try again")
	}
	f.snapping = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.snapping = false
		f.mu.Unlock()
	}()
	f.applyMu.Lock()
	seq := f.Applied()
	write, err := f.st.Snapshot()
	f.applyMu.Unlock()
	if err != nil {
		return 0, err
	}
	return seq, f.writeSnapshot(ctx, seq, write, true)
}
