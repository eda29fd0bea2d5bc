package replstate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmodal/xmodal/internal/testutil"
)

// set is a State holding a set of strings; an op is "+x" or "-x".
type set struct {
	mu sync.Mutex
	m  map[string]bool
	n  int // ops applied
}

func (s *set) Restore(r io.Reader) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m = map[string]bool{}
	if r == nil {
		return nil
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		s.m[sc.Text()] = true
	}
	return sc.Err()
}

func (s *set) Apply(op []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	switch {
	case len(op) > 1 && op[0] == '+':
		s.m[string(op[1:])] = true
	case len(op) > 1 && op[0] == '-':
		delete(s.m, string(op[1:]))
	default:
		return fmt.Errorf("bad op %q", op)
	}
	return nil
}

func (s *set) Snapshot() (func(io.Writer) error, error) {
	s.mu.Lock()
	keys := make([]string, 0, len(s.m))
	for k := range s.m {
		keys = append(keys, k)
	}
	s.mu.Unlock()
	return func(w io.Writer) error {
		_, err := io.WriteString(w, strings.Join(keys, "\n")+"\n")
		return err
	}, nil
}

func (s *set) has(k string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[k]
}

func (s *set) keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for k := range s.m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func startServer(t *testing.T, dir string) *server.Server { return testutil.StartNATS(t, dir) }

func connect(t *testing.T, url string) jetstream.JetStream {
	_, js := testutil.ConnectJS(t, url)
	return js
}

func open(t *testing.T, js jetstream.JetStream, cfg Config) (*Follower, *set) {
	t.Helper()
	st := &set{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f, err := Open(ctx, js, cfg, st)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(f.Close)
	return f, st
}

func publish(t *testing.T, f *Follower, ops ...string) uint64 {
	t.Helper()
	var seq uint64
	for _, op := range ops {
		var err error
		seq, err = f.Publish(context.Background(), []byte(op), "")
		if err != nil {
			t.Fatalf("Publish(%q): %v", op, err)
		}
	}
	return seq
}

func TestTwoProcessesSeeEachOthersChanges(t *testing.T) {
	ns := startServer(t, t.TempDir())
	a, sa := open(t, connect(t, ns.ClientURL()), Config{Name: "deny"})
	b, sb := open(t, connect(t, ns.ClientURL()), Config{Name: "deny"})
	publish(t, a, "+p1", "+p2")
	// Publish returns once the change is applied where it was published...
	if !sa.has("p1") || !sa.has("p2") {
		t.Fatalf("publisher's own state misses its changes: %v", sa.keys())
	}
	// ...and Sync brings every other process up to it.
	if err := b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := sb.keys(); !slices.Equal(got, []string{"p1", "p2"}) {
		t.Fatalf("other process after Sync holds %v, want [p1 p2]", got)
	}
	publish(t, b, "-p1")
	if err := a.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if sa.has("p1") {
		t.Fatal("a removal made by the other process is not seen after Sync")
	}
	if a.Epoch() == "" || a.Epoch() != b.Epoch() {
		t.Fatalf("epochs %q and %q: want one non-empty epoch per stream", a.Epoch(), b.Epoch())
	}
}

func TestRestartReloadsTheSameState(t *testing.T) {
	dir := t.TempDir()
	ns := startServer(t, dir)
	a, _ := open(t, connect(t, ns.ClientURL()), Config{Name: "banks"})
	publish(t, a, "+x", "+y", "-x", "+z")
	a.Close()
	ns.Shutdown()
	ns.WaitForShutdown()
	ns2 := startServer(t, dir)
	b, sb := open(t, connect(t, ns2.ClientURL()), Config{Name: "banks"})
	if got := sb.keys(); !slices.Equal(got, []string{"y", "z"}) {
		t.Fatalf("after a server restart the state is %v, want [y z]", got)
	}
	if b.Applied() != 4 {
		t.Fatalf("applied %d, want 4", b.Applied())
	}
}

func TestSnapshotPurgesAndNewFollowersLoadIt(t *testing.T) {
	ns := startServer(t, t.TempDir())
	js := connect(t, ns.ClientURL())
	a, _ := open(t, js, Config{Name: "deny", SnapshotEvery: -1})
	for i := range 50 {
		publish(t, a, fmt.Sprintf("+k%02d", i))
	}
	seq, err := a.SnapshotNow(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if seq != 50 {
		t.Fatalf("snapshot covers %d, want 50", seq)
	}
	publish(t, a, "-k00", "+after")
	info, err := a.stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.FirstSeq != 51 || info.State.Msgs != 2 {
		t.Fatalf("stream after the snapshot: first %d, %d messages; want the changes below 51 purged", info.State.FirstSeq, info.State.Msgs)
	}
	b, sb := open(t, js, Config{Name: "deny", SnapshotEvery: -1})
	keys := sb.keys()
	if len(keys) != 50 || slices.Contains(keys, "k00") || !slices.Contains(keys, "after") {
		t.Fatalf("a follower started after the purge holds %d keys (%v...): want the snapshot plus the later changes", len(keys), keys[:min(5, len(keys))])
	}
	if b.Applied() != 52 {
		t.Fatalf("applied %d, want 52", b.Applied())
	}
}

// A follower that is behind when changes are purged below a newer snapshot
// reloads the snapshot instead of missing the purged changes.
func TestFollowerBehindAPurgeReloads(t *testing.T) {
	ns := startServer(t, t.TempDir())
	js := connect(t, ns.ClientURL())
	a, _ := open(t, js, Config{Name: "deny", SnapshotEvery: -1})
	b, sb := open(t, js, Config{Name: "deny", SnapshotEvery: -1})
	publish(t, a, "+first")
	if err := b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.Close() // b stops following at sequence 1
	publish(t, a, "+second", "+third", "-first")
	if _, err := a.SnapshotNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	publish(t, a, "+fourth")
	// b follows again from sequence 2, which was purged.
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.wg.Add(1)
	go b.follow()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := sb.keys(); !slices.Equal(got, []string{"fourth", "second", "third"}) {
		t.Fatalf("after the gap the state is %v, want [fourth second third]", got)
	}
	if b.Stats().Reloads != 1 {
		t.Fatalf("reloads %d, want 1", b.Stats().Reloads)
	}
}

func TestAutomaticSnapshots(t *testing.T) {
	ns := startServer(t, t.TempDir())
	js := connect(t, ns.ClientURL())
	a, _ := open(t, js, Config{Name: "deny", SnapshotEvery: 20})
	for i := range 45 {
		publish(t, a, fmt.Sprintf("+k%02d", i))
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		seqs, err := a.snapshots(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(seqs) > 0 && seqs[len(seqs)-1] >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no snapshot after 45 changes with SnapshotEvery 20 (have %v)", seqs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, sb := open(t, js, Config{Name: "deny", SnapshotEvery: -1})
	if n := len(sb.keys()); n != 45 {
		t.Fatalf("a new follower holds %d keys, want 45", n)
	}
}

func TestPublishWithMessageIDIsIdempotent(t *testing.T) {
	ns := startServer(t, t.TempDir())
	a, sa := open(t, connect(t, ns.ClientURL()), Config{Name: "deny"})
	s1, err := a.Publish(context.Background(), []byte("+p"), "id-1")
	if err != nil {
		t.Fatal(err)
	}
	s2, err := a.Publish(context.Background(), []byte("+p"), "id-1")
	if err != nil {
		t.Fatal(err)
	}
	if s1 != s2 {
		t.Fatalf("a retried publish got sequence %d, the first %d", s2, s1)
	}
	sa.mu.Lock()
	n := sa.n
	sa.mu.Unlock()
	if n != 1 {
		t.Fatalf("the change was applied %d times, want 1", n)
	}
}

func TestSyncFailsClosedWhenTheServerIsGone(t *testing.T) {
	ns := startServer(t, t.TempDir())
	a, _ := open(t, connect(t, ns.ClientURL()), Config{Name: "deny", Timeout: 500 * time.Millisecond})
	ns.Shutdown()
	ns.WaitForShutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	err := a.Sync(ctx)
	if !errors.Is(err, ErrBehind) {
		t.Fatalf("Sync with the server down: %v, want ErrBehind", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Sync took %s to fail", d)
	}
}

func TestConcurrentSyncsAndPublishes(t *testing.T) {
	ns := startServer(t, t.TempDir())
	js := connect(t, ns.ClientURL())
	a, _ := open(t, js, Config{Name: "deny", SnapshotEvery: 25})
	b, sb := open(t, js, Config{Name: "deny", SnapshotEvery: 25})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				key := fmt.Sprintf("w%d-%d", w, i)
				if _, err := a.Publish(context.Background(), []byte("+"+key), ""); err != nil {
					t.Error(err)
					return
				}
				// Read-your-writes on the other process: a Sync after the
				// publish returned must see it.
				if err := b.Sync(context.Background()); err != nil {
					t.Error(err)
					return
				}
				if !sb.has(key) {
					t.Errorf("%s published, b synced, but b does not have it", key)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := len(sb.keys()); n != 120 {
		t.Fatalf("b holds %d keys, want 120", n)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{Name: "deny"}, true},
		{Config{Name: "banks_v1-x"}, true},
		{Config{Name: ""}, false},
		{Config{Name: "a.b"}, false},
		{Config{Name: "a b"}, false},
		{Config{Name: "deny", Replicas: 7}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%+v) = %v, want ok=%v", tc.cfg, err, tc.ok)
		}
	}
}
