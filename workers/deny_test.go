package workers_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/workers"
)

// A takedown recorded by another process (an admin delete on a serve
// replica) keeps the post out of the index, though this index never saw it.
func TestPostDeniedElsewhereIsNotIndexed(t *testing.T) {
	e := newEnv(t)
	other := openDenyList(t, e.js.Conn().ConnectedUrl())
	if err := other.Deny(context.Background(), []domain.Takedown{{PostID: "gone", Source: "admin"}}); err != nil {
		t.Fatal(err)
	}
	e.publish(t, "gone", post("gone", "taken down on another replica", nil))
	e.publish(t, "kept", post("kept", "an ordinary post", nil))
	p := newPipeline(t, e, nil, nil, workers.Config{})
	runUntil(t, p, func() bool { return e.allAcked(t) })
	recs, _ := e.ix.Get(context.Background(), []string{"gone#text", "kept#text"})
	if len(recs) != 1 || recs[0].PostID != "kept" {
		t.Fatalf("records %v, want only kept", recs)
	}
}

// A tombstone from the source is recorded in the replicated list, so every
// other process stops serving the post.
func TestTombstoneReachesEveryProcess(t *testing.T) {
	e := newEnv(t)
	e.publish(t, "p1", post("p1", "hello", nil))
	e.publish(t, "p1", nil)
	other := openDenyList(t, e.js.Conn().ConnectedUrl())
	p := newPipeline(t, e, nil, nil, workers.Config{})
	runUntil(t, p, func() bool { return e.allAcked(t) })
	if err := other.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !other.Denied("p1") {
		t.Fatal("a tombstone was acknowledged but another process's deny-list does not hold the id")
	}
}

// racingSink holds the first Apply until a takedown of the post it writes has
// been recorded and applied to the index, as an admin delete on another
// replica would do while the write is in flight.
type racingSink struct {
	domain.Writer
	takedown func()
	once     atomic.Bool
}

func (s *racingSink) Apply(ctx context.Context, chs []domain.Change) ([]domain.Outcome, error) {
	if s.once.CompareAndSwap(false, true) {
		s.takedown()
	}
	return s.Writer.Apply(ctx, chs)
}

// A delete racing a write: the takedown lands after the pipeline checked the
// deny-list and before its write; the post must not stay in the index.
func TestTakedownRacingAWriteWins(t *testing.T) {
	e := newEnv(t)
	admin := openDenyList(t, e.js.Conn().ConnectedUrl())
	e.publish(t, "race", post("race", "written while taken down", nil))
	sink := &racingSink{Writer: e.ix, takedown: func() {
		ctx := context.Background()
		if err := admin.Deny(ctx, []domain.Takedown{{PostID: "race", Source: "admin"}}); err != nil {
			t.Error(err)
		}
		// The index's own deny row is left out: a store whose deny rows a
		// writer reads at bounded staleness (Milvus) does not see it yet, so
		// only the replicated list can stop the write.
		if _, err := e.ix.Apply(ctx, []domain.Change{{PostID: "race", Delete: true}}); err != nil {
			t.Error(err)
		}
	}}
	p := newPipeline(t, e, sink, nil, workers.Config{})
	runUntil(t, p, func() bool { return e.allAcked(t) })
	if recs, _ := e.ix.Get(context.Background(), []string{"race#text"}); len(recs) != 0 {
		t.Fatalf("the post taken down during its write is in the index: %v", recs)
	}
}

// failingDeny is the real deny-list whose Sync fails while down is set (the
// NATS server unreachable).
type failingDeny struct {
	domain.DenyList
	down atomic.Bool
}

func (d *failingDeny) Sync(ctx context.Context) error {
	if d.down.Load() {
		return errors.New("nats: no servers available")
	}
	return d.DenyList.Sync(ctx)
}

// While the deny-list cannot be brought up to date the pipeline writes and
// acknowledges nothing (fail closed), and it resumes once it can.
func TestDenyListOutageFailsClosed(t *testing.T) {
	e := newEnv(t)
	e.publish(t, "p1", post("p1", "waits for the deny-list", nil))
	fd := &failingDeny{DenyList: e.deny}
	fd.down.Store(true)
	p, err := workers.New(workers.Config{FetchWait: 20 * time.Millisecond},
		workers.Deps{Source: e.src, DeadLetter: e.src, Sink: e.ix, Deny: fd, Embedder: e.model, Decode: decode})
	if err != nil {
		t.Fatal(err)
	}
	recovered := time.Now().Add(1500 * time.Millisecond)
	runUntil(t, p, func() bool {
		if time.Now().Before(recovered) {
			if e.count(domain.ModalityText) != 0 {
				t.Fatal("a post was written while the deny-list could not be synced")
			}
			return false
		}
		fd.down.Store(false)
		return e.allAcked(t)
	})
	if e.count(domain.ModalityText) != 1 {
		t.Fatal("the post was not written after the deny-list came back")
	}
}

// overlapSink records every post that one Apply carried while another Apply
// carrying the same post was still running.
type overlapSink struct {
	domain.Writer
	mu       sync.Mutex
	inFlight map[string]int
	overlaps []string
}

func (s *overlapSink) Apply(ctx context.Context, chs []domain.Change) ([]domain.Outcome, error) {
	s.mu.Lock()
	for _, c := range chs {
		if s.inFlight[c.PostID] > 0 {
			s.overlaps = append(s.overlaps, c.PostID)
		}
		s.inFlight[c.PostID]++
	}
	s.mu.Unlock()
	time.Sleep(5 * time.Millisecond) // writes that take a while, as Milvus rounds do
	out, err := s.Writer.Apply(ctx, chs)
	s.mu.Lock()
	for _, c := range chs {
		s.inFlight[c.PostID]--
	}
	s.mu.Unlock()
	return out, err
}

// Several writes in flight at once never carry two versions of one post at
// the same time, so versions are written in fetch order whatever the sink's
// own version checks.
func TestConcurrentWritersKeepVersionOrder(t *testing.T) {
	e := newEnv(t)
	const posts, versions = 30, 4
	for i := range posts { // a post's versions one after the other: they share fetches
		for v := range versions {
			id := fmt.Sprint("p", i)
			e.publish(t, id, post(id, fmt.Sprintf("version %d", v), nil))
		}
	}
	sink := &overlapSink{Writer: e.ix, inFlight: map[string]int{}}
	p := newPipeline(t, e, sink, nil, workers.Config{BatchSize: 4, Writers: 4, MaxInFlight: 64})
	runUntil(t, p, func() bool { return e.allAcked(t) })
	if len(sink.overlaps) > 0 {
		t.Fatalf("versions of one post written at once: %v", sink.overlaps)
	}
	for i := range posts {
		recs, _ := e.ix.Get(context.Background(), []string{fmt.Sprintf("p%d#text", i)})
		if len(recs) != 1 || recs[0].Text != fmt.Sprintf("version %d", versions-1) {
			t.Fatalf("p%d holds %v, want its last version", i, recs)
		}
	}
}
