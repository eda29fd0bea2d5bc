package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
	"github.com/xmodal/xmodal/sink/matching"
)

// child is an `xmodal run` process started from the test binary.
type child struct {
	cmd  *exec.Cmd
	out  *bytes.Buffer
	done chan error
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type syncBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

func startChild(t *testing.T, dataDir, listen string, env ...string) *child {
	t.Helper()
	return startChildHTTP(t, dataDir, listen, "", env...)
}

// startChildHTTP is startChild with http.listen set (/metrics), "" for none.
func startChildHTTP(t *testing.T, dataDir, listen, httpListen string, env ...string) *child {
	t.Helper()
	requireORT(t)
	cmd := exec.Command(os.Args[0], "run", "--model", "testdata/models/parity", "--data-dir", dataDir, "--nats-listen", listen, "--http-listen", httpListen,
		"--ingest-batch-size", "8", "--ingest-fetch-wait", "20ms", "--ingest-ack-wait", "2s", "--log-level", "warn")
	cmd.Dir = testutil.MustRepoRoot(t)
	cmd.Env = append(os.Environ(), append([]string{"XMODAL_TEST_MAIN=1"}, env...)...)
	buf := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, out: &buf.Buffer, done: make(chan error, 1)}
	go func() { c.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-c.done
		if t.Failed() {
			buf.mu.Lock()
			t.Logf("child output:\n%s", buf.String())
			buf.mu.Unlock()
		}
	})
	return c
}

// connect waits for the child's embedded NATS server.
func connect(t *testing.T, listen string, c *child) *nats.Conn {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		nc, err := nats.Connect("nats://"+listen, nats.MaxReconnects(0))
		if err == nil {
			return nc
		}
		select {
		case err := <-c.done:
			c.done <- err
			t.Fatalf("xmodal exited before serving: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("xmodal did not start: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitService waits until the query service answers.
func waitService(t *testing.T, nc *nats.Conn) {
	t.Helper()
	cl := client.New(nc)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cl.Stats(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("query service did not answer: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tinyPNG(seed int) []byte {
	r := rand.New(rand.NewPCG(uint64(seed), 1))
	img := image.NewRGBA(image.Rect(0, 0, 48, 40))
	bg := color.RGBA{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256)), 255}
	fg := color.RGBA{uint8(r.IntN(256)), uint8(r.IntN(256)), uint8(r.IntN(256)), 255}
	x0, y0 := r.IntN(24), r.IntN(20)
	for y := range 40 {
		for x := range 48 {
			c := bg
			if x >= x0 && x < x0+20 && y >= y0 && y < y0+16 {
				c = fg
			}
			img.Set(x, y, c)
		}
	}
	var b bytes.Buffer
	png.Encode(&b, img)
	return b.Bytes()
}

// workload is a deterministic mix of posts, edits, tombstones and bad messages,
// with the end state it must converge to.
type workload struct {
	msgs []struct {
		key   string
		value []byte
	}
	wantText, wantImage, wantFused map[string]string // post id -> expected text ("" for image-only)
	deleted                        []string
	bad                            map[string]bool // keys of messages that must be dead-lettered
}

func newWorkload(n int) *workload {
	w := &workload{wantText: map[string]string{}, wantImage: map[string]string{}, wantFused: map[string]string{}, bad: map[string]bool{}}
	add := func(key string, v []byte) {
		w.msgs = append(w.msgs, struct {
			key   string
			value []byte
		}{key, v})
	}
	created := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for i := range n {
		id := fmt.Sprintf("post-%03d", i)
		p := domain.Post{Schema: 1, ID: id, Author: fmt.Sprintf("user%d", i%5), CreatedAt: created.Add(time.Duration(i) * time.Minute)}
		switch i % 3 {
		case 0:
			p.Text = fmt.Sprintf("post number %d about topic %d", i, i%7)
		case 1:
			p.Image = &domain.ImageRef{Data: tinyPNG(i)}
		case 2:
			p.Text = fmt.Sprintf("photo %d with a caption", i)
			p.Image = &domain.ImageRef{Data: tinyPNG(i)}
		}
		b, _ := json.Marshal(p)
		add(id, b)
		if p.Text != "" {
			w.wantText[id] = p.Text
		}
		if p.Image != nil {
			w.wantImage[id] = p.Text
		}
		if p.Text != "" && p.Image != nil {
			w.wantFused[id] = p.Text
		}
	}
	// Edits: a later version replaces the text.
	for i := 1; i < n; i += 9 {
		id := fmt.Sprintf("post-%03d", i)
		p := domain.Post{Schema: 1, ID: id, Author: "editor", CreatedAt: created, Text: fmt.Sprintf("edited post %d", i)}
		b, _ := json.Marshal(p)
		add(id, b)
		w.wantText[id] = p.Text
		delete(w.wantImage, id)
		delete(w.wantFused, id)
	}
	// Tombstones.
	for i := 4; i < n; i += 10 {
		id := fmt.Sprintf("post-%03d", i)
		add(id, nil)
		delete(w.wantText, id)
		delete(w.wantImage, id)
		delete(w.wantFused, id)
		w.deleted = append(w.deleted, id)
	}
	// Bad messages, each under its own key.
	bad := [][]byte{
		[]byte(`{not json`),
		[]byte(`{"schema":1,"id":"bad-2","created_at":"2026-11-01T00:00:00Z"}`),
		[]byte(`{"schema":1,"id":"bad-3","created_at":"2026-11-01T00:00:00Z","image":{"data":"bm90IGFuIGltYWdl"}}`),
		[]byte(`{"schema":9,"id":"bad-4","created_at":"2026-11-01T00:00:00Z","text":"x"}`),
		[]byte(`{"schema":1,"id":"other","created_at":"2026-11-01T00:00:00Z","text":"key differs"}`),
	}
	for i, b := range bad {
		key := "bad-" + strconv.Itoa(i+1)
		add(key, b)
		w.bad[key] = true
	}
	return w
}

// publish publishes the workload's messages from index from on, in order, and
// returns the index of the first it could not publish (len(w.msgs) when all
// went). The server is embedded in the process under test: a crash point can
// kill it mid-publish, and the rest is published after the restart (the one
// that failed again: a duplicate of a post version is idempotent, and the
// order of versions is kept).
func (w *workload) publish(t *testing.T, js jetstream.JetStream, from int) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := from; i < len(w.msgs); i++ {
		m := nats.NewMsg("xmodal.posts")
		m.Header.Set(ingest.HeaderKey, w.msgs[i].key)
		// As an idempotent producer does: a message whose ack the kill
		// lost (stored, but the publisher never heard) is published again
		// after the restart, and the stream's duplicate window stores it
		// once. Without the id it would be a second version of its post,
		// with events of its own.
		m.Header.Set(nats.MsgIdHdr, fmt.Sprintf("workload-%d", i))
		m.Data = w.msgs[i].value
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Logf("publishing message %d of %d stopped: %v", i, len(w.msgs), err)
			return i
		}
	}
	return len(w.msgs)
}

// converged checks the end state; it returns a description of what differs.
func (w *workload) converged(ctx context.Context, nc *nats.Conn, js jetstream.JetStream) string {
	cl := client.New(nc)
	st, err := cl.Stats(ctx)
	if err != nil {
		return "stats: " + err.Error()
	}
	want := map[domain.Modality]int{domain.ModalityText: len(w.wantText), domain.ModalityImage: len(w.wantImage), domain.ModalityFused: len(w.wantFused)}
	for m, n := range want {
		if st.Records[m] != n {
			return fmt.Sprintf("%s records: %d, want %d", m, st.Records[m], n)
		}
	}
	cons, err := js.Consumer(ctx, "XMODAL_POSTS", "indexer")
	if err != nil {
		return "consumer: " + err.Error()
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return "consumer info: " + err.Error()
	}
	if info.NumPending != 0 || info.NumAckPending != 0 {
		return fmt.Sprintf("consumer has %d pending and %d unacked", info.NumPending, info.NumAckPending)
	}
	// Every expected record holds the latest text.
	var pks []string
	for id := range w.wantText {
		pks = append(pks, domain.PrimaryKey(id, domain.ModalityText))
	}
	got, err := cl.Get(ctx, &query.GetRequest{PKs: pks})
	if err != nil {
		return "get: " + err.Error()
	}
	for _, r := range got.Records {
		if r.Text != w.wantText[r.PostID] {
			return fmt.Sprintf("%s holds %q, want %q", r.PK, r.Text, w.wantText[r.PostID])
		}
	}
	if _, err := cl.Get(ctx, &query.GetRequest{PostIDs: w.deleted}); err == nil {
		return "a deleted post is still indexed"
	} else if e := query.AsError(err); e.Code != query.CodeNotFound {
		return "get deleted: " + err.Error()
	}
	// The distinct dead letters are exactly the bad messages.
	dlq, err := js.Stream(ctx, "XMODAL_DLQ")
	if err != nil {
		return "dlq stream: " + err.Error()
	}
	seen := map[string]bool{}
	si, _ := dlq.Info(ctx)
	for seq := uint64(1); seq <= si.State.LastSeq; seq++ {
		m, err := dlq.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		key := m.Header.Get(ingest.HeaderKey)
		if m.Header.Get(ingest.HeaderReason) == "" || m.Header.Get(ingest.HeaderStage) == "" {
			return "dead letter without reason or stage: " + key
		}
		if key == "" {
			key = "bad-1" // the unparseable message has no id; its key header is what we published
		}
		seen[key] = true
	}
	for k := range w.bad {
		if !seen[k] {
			return fmt.Sprintf("no dead letter for %s (have %v)", k, seen)
		}
	}
	if len(seen) != len(w.bad) {
		return fmt.Sprintf("dead letters for %v, want exactly %v", seen, w.bad)
	}
	return ""
}

func TestKill9ConvergesToIndexedOnce(t *testing.T) {
	requireCrashBuild(t)
	if testing.Short() {
		t.Skip("starts xmodal processes")
	}
	for _, point := range []string{"after-fetch", "after-encode", "mid-write", "after-write"} {
		t.Run(point, func(t *testing.T) {
			dir := t.TempDir()
			listen := freePort(t)
			w := newWorkload(40)

			c := startChild(t, dir, listen, "XMODAL_CRASH_AT="+point+":3")
			nc := connect(t, listen, c)
			js, _ := jetstream.New(nc)
			waitService(t, nc)
			published := w.publish(t, js, 0)
			waitKilled(t, c, point)
			nc.Close()
			nc2, js2 := restartAndPublish(t, dir, listen, w, published)
			deadline := time.Now().Add(90 * time.Second)
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				diff := w.converged(ctx, nc2, js2)
				cancel()
				if diff == "" {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("did not converge after restart: %s", diff)
				}
				time.Sleep(250 * time.Millisecond)
			}
		})
	}
}

// TestKill9MatchEventsOnce: xmodal run matching posts against a text bank
// is killed with SIGKILL at deterministic points around the match events
// (before they are published, with the index write beside them; after they
// are durable, before the acknowledgements; after the whole write) and at a
// random point, then restarted. Afterwards every post that matches has its
// event (id = post, version, entry) in XMODAL_MATCH_EVENTS, a consumer that
// deduplicates by id sees each exactly once, and no other post has one.
func TestKill9MatchEventsOnce(t *testing.T) {
	requireCrashBuild(t)
	if testing.Short() {
		t.Skip("starts xmodal processes")
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 9))
	randomPoint := []string{"after-fetch", "after-encode", "mid-write", "after-write", "before-events", "after-events"}[rng.IntN(6)]
	randomAt := 1 + rng.IntN(3)
	t.Logf("random point: %s:%d (seed %d)", randomPoint, randomAt, seed)
	for _, tc := range []struct{ name, crash string }{
		{"before-events", "before-events:2"}, {"after-events", "after-events:2"}, {"after-write", "after-write:3"},
		{"random", fmt.Sprintf("%s:%d", randomPoint, randomAt)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			listen := freePort(t)
			w := newWorkload(40)
			// Posts whose text is in the bank (normalised), every fourth message.
			var matchers []string
			var msgs []struct {
				key   string
				value []byte
			}
			for i, m := range w.msgs {
				msgs = append(msgs, m)
				if i%4 == 3 {
					id := fmt.Sprintf("spam-%03d", i)
					text := fmt.Sprintf("BUY followers now%s", []string{"!", "!!", "", "."}[i%4])
					b, _ := json.Marshal(domain.Post{Schema: 1, ID: id, Author: "spammer", CreatedAt: time.Date(2026, 11, 2, 0, 0, i, 0, time.UTC), Text: text})
					msgs = append(msgs, struct {
						key   string
						value []byte
					}{id, b})
					w.wantText[id] = text
					matchers = append(matchers, id)
				}
			}
			w.msgs = msgs

			c := startChild(t, dir, listen, "XMODAL_CRASH_AT="+tc.crash)
			nc := connect(t, listen, c)
			js, _ := jetstream.New(nc)
			waitService(t, nc)
			cl := client.New(nc)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := cl.Call(ctx, "admin.banks.create", query.BankRequest{Name: "spam", Action: banks.ActionReview, Actor: "t"}, nil); err != nil {
				t.Fatal(err)
			}
			var ch query.BankChangeResponse
			if err := cl.Call(ctx, "admin.banks.add", query.BankAddRequest{Bank: "spam", Entries: []banks.Entry{{Type: banks.SignalText, Value: "buy followers now"}}}, &ch); err != nil {
				t.Fatal(err)
			}
			published := w.publish(t, js, 0)
			waitKilled(t, c, tc.crash)
			nc.Close()
			nc2, js2 := restartAndPublish(t, dir, listen, w, published)
			testutil.CheckFor(t, 90*time.Second, 250*time.Millisecond, func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if diff := w.converged(ctx, nc2, js2); diff != "" {
					return errors.New(diff)
				}
				return nil
			})
			// The events: read the whole stream, as a consumer would.
			evs, err := streamEvents(ctx, js2)
			if err != nil {
				t.Fatal(err)
			}
			ids := map[string][]string{} // post -> event ids, as delivered
			for _, e := range evs {
				if e.ID != matching.EventID(e.PostID, e.Version, e.EntryID) || e.MsgID != e.ID {
					t.Fatalf("event %+v: id or Nats-Msg-Id is not the (post, version, entry) id", e)
				}
				ids[e.PostID] = append(ids[e.PostID], e.ID)
			}
			repeats := 0
			for _, id := range matchers {
				got := ids[id]
				if len(got) == 0 {
					t.Errorf("%s matched the bank but has no event", id)
					continue
				}
				distinct := map[string]bool{}
				for _, x := range got {
					distinct[x] = true
				}
				if len(distinct) != 1 {
					t.Errorf("%s: events %v, want one id (one version, one entry); stream: %s", id, got, describeEvents(evs, id))
				}
				repeats += len(got) - 1
				delete(ids, id)
			}
			if len(ids) > 0 {
				t.Errorf("events for posts that match nothing: %v", ids)
			}
			t.Logf("%d matching posts, %d events in the stream beyond one per post (dropped by the duplicate window: 0 expected)", len(matchers), repeats)
			if repeats != 0 {
				t.Errorf("%d repeated events inside the duplicate window", repeats)
			}
		})
	}
}

// waitKilled waits for the child to die of the crash point's SIGKILL.
func waitKilled(t *testing.T, c *child, what string) {
	t.Helper()
	select {
	case err := <-c.done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("xmodal ended with %v, want SIGKILL at %s", err, what)
		}
		c.done <- err
	case <-time.After(60 * time.Second):
		t.Fatalf("xmodal was not killed at %s", what)
	}
}

// restartAndPublish starts the child again on dir, publishes the rest of
// the workload (from published on) and returns its connection.
func restartAndPublish(t *testing.T, dir, listen string, w *workload, published int) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	c2 := startChild(t, dir, listen)
	nc2 := connect(t, listen, c2)
	t.Cleanup(nc2.Close)
	js2, _ := jetstream.New(nc2)
	waitService(t, nc2)
	if n := w.publish(t, js2, published); n != len(w.msgs) {
		t.Fatalf("after the restart, publishing stopped at message %d of %d", n, len(w.msgs))
	}
	return nc2, js2
}

// storedEvent is a match event as XMODAL_MATCH_EVENTS holds it.
type storedEvent struct {
	matching.Event
	MsgID string // the message's Nats-Msg-Id
}

// streamEvents reads every event of XMODAL_MATCH_EVENTS, as a consumer would.
func streamEvents(ctx context.Context, js jetstream.JetStream) ([]storedEvent, error) {
	s, err := js.Stream(ctx, matching.Stream)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []storedEvent
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			return nil, err
		}
		var e storedEvent
		if err := json.Unmarshal(m.Data, &e.Event); err != nil {
			return nil, err
		}
		e.MsgID = m.Header.Get("Nats-Msg-Id")
		out = append(out, e)
	}
	return out, nil
}

// describeEvents lists a post's events as stored (version, entry, source,
// matched_at), for a failure message.
func describeEvents(evs []storedEvent, postID string) string {
	var b strings.Builder
	for _, e := range evs {
		if e.PostID == postID {
			fmt.Fprintf(&b, "[v%d %s %s %s] ", e.Version, e.EntryID, e.Source, e.MatchedAt.Format(time.RFC3339Nano))
		}
	}
	return b.String()
}
