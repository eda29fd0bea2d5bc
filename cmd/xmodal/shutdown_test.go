package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/internal/natsserver"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
	"github.com/xmodal/xmodal/sink/embedded"
)

// withStore runs f against the JetStream store xmodal keeps under dir, served
// by a server of the test's own while no xmodal process runs.
func withStore(t *testing.T, dir string, f func(ctx context.Context, js jetstream.JetStream)) {
	t.Helper()
	ns, err := natsserver.Start(natsserver.Options{Listen: "127.0.0.1:0", StoreDir: filepath.Join(dir, "jetstream")})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f(ctx, js)
}

func indexerInfo(t *testing.T, ctx context.Context, js jetstream.JetStream) *jetstream.ConsumerInfo {
	t.Helper()
	cons, err := js.Consumer(ctx, "XMODAL_POSTS", "indexer")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestSIGTERMDuringIngestionAcksOnlyIndexed stops `xmodal run` with SIGTERM while
// it indexes, then inspects what it left on disk: the process exits 0, the stop
// came mid-stream (posts were left unacknowledged: otherwise the test would prove
// nothing), and every message the consumer acknowledged is in the index
// (acknowledgement follows the sink; stopping commits nothing else). A restart
// then indexes the rest, delivering each post that was not acknowledged once
// and none that was.
func TestSIGTERMDuringIngestionAcksOnlyIndexed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts xmodal processes")
	}
	const n = 600
	dir := t.TempDir()
	listen := freePort(t)
	created := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	ids := make([]string, n)
	// The posts are in the stream before xmodal starts, so that it cannot have
	// indexed them all by the time the test sees the first record and stops it.
	withStore(t, dir, func(ctx context.Context, js jetstream.JetStream) {
		if err := ingest.EnsureStreams(ctx, js, ingest.JetStreamConfig{}); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			ids[i] = fmt.Sprintf("p-%03d", i)
			p := domain.Post{Schema: 1, ID: ids[i], CreatedAt: created, Text: fmt.Sprintf("post %d", i), Image: &domain.ImageRef{Data: tinyPNG(i)}}
			b, _ := json.Marshal(p)
			if err := ingest.Publish(ctx, js, "xmodal.posts", ids[i], b); err != nil {
				t.Fatal(err)
			}
		}
	})

	c := startChild(t, dir, listen, "XMODAL_SHUTDOWN_GRACE=15s")
	nc := connect(t, listen, c)
	// Stop once some posts are indexed.
	cl := client.New(nc)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := cl.Stats(ctx)
		cancel()
		if err == nil && st.Records[domain.ModalityText] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing indexed in 60s (last error %v)", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	nc.Close()
	select {
	case err := <-c.done:
		c.done <- err
		if err != nil {
			t.Fatalf("xmodal exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("xmodal did not stop within 30s of SIGTERM")
	}
	if out := c.out.String(); strings.Contains(out, "abandoning") {
		t.Errorf("the batch in flight was abandoned within a 15s grace:\n%s", out)
	}

	// What was acknowledged, from the JetStream store the process left.
	var stop *jetstream.ConsumerInfo
	withStore(t, dir, func(ctx context.Context, js jetstream.JetStream) { stop = indexerInfo(t, ctx, js) })
	floor := int(stop.AckFloor.Stream)
	// Every delivered message is acknowledged or still pending (no post here is
	// bad, so none is terminated): acks may run out of order above the floor.
	acked := int(stop.Delivered.Stream) - stop.NumAckPending
	t.Logf("after SIGTERM: ack floor %d of %d messages, %d acknowledged, %d delivered unacknowledged", floor, n, acked, stop.NumAckPending)
	if acked >= n || floor >= n {
		t.Fatalf("every post was acknowledged before the stop took effect (%d of %d): the stop was not mid-stream and the test checked nothing; raise n", acked, n)
	}

	// Every acknowledged post is in the index.
	ix, err := embedded.Open(context.Background(), embedded.Options{Path: filepath.Join(dir, "index.db"), Dim: 64, ModelVersion: "xmodal-parity@1"})
	if err != nil {
		t.Fatal(err)
	}
	var pks []string
	for _, id := range ids[:floor] {
		pks = append(pks, domain.PrimaryKey(id, domain.ModalityText), domain.PrimaryKey(id, domain.ModalityImage))
	}
	recs, err := ix.Get(context.Background(), pks)
	ix.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(pks) {
		have := map[string]bool{}
		for _, r := range recs {
			have[r.PK] = true
		}
		var missing []string
		for _, pk := range pks {
			if !have[pk] {
				missing = append(missing, pk)
			}
		}
		t.Fatalf("%d acknowledged records are not in the index: %v", len(missing), missing[:min(len(missing), 10)])
	}

	// A restart indexes the rest. The index cannot show a post indexed twice
	// (records are keyed by post and modality), so the restarted process's
	// count of messages processed does: it must process exactly the posts that
	// were not acknowledged, each once (those pending at the stop come back
	// after the ack wait), and none that was.
	metricsAddr := freePort(t)
	c2 := startChildHTTP(t, dir, listen, metricsAddr)
	nc3 := connect(t, listen, c2)
	defer nc3.Close()
	waitService(t, nc3)
	cl3 := client.New(nc3)
	js3, _ := jetstream.New(nc3)
	deadline = time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cl3.Stats(ctx)
		var info *jetstream.ConsumerInfo
		if err == nil && st.Records[domain.ModalityText] == n && st.Records[domain.ModalityImage] == n && st.Records[domain.ModalityFused] == n {
			info = indexerInfo(t, ctx, js3)
		}
		cancel()
		if info != nil && info.NumPending == 0 && info.NumAckPending == 0 {
			processed := messagesProcessed(t, "http://"+metricsAddr+"/metrics")
			t.Logf("the restart processed %d messages in %d deliveries", processed, info.Delivered.Consumer-stop.Delivered.Consumer)
			if processed != n-acked {
				t.Fatalf("the restart processed %d messages, want %d: the %d posts not acknowledged before the stop, each once", processed, n-acked, n-acked)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the restart: %v, %v; consumer %+v; want %d of each modality, all acknowledged", st, errors.Unwrap(err), info, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// messagesProcessed sums xmodal_ingest_messages_total over its outcomes.
func messagesProcessed(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	total, seen := 0.0, false
	for _, l := range strings.Split(string(body), "\n") {
		if f := strings.Fields(l); len(f) == 2 && strings.HasPrefix(f[0], "xmodal_ingest_messages_total{") {
			v, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			total, seen = total+v, true
		}
	}
	if !seen {
		t.Fatalf("%s has no xmodal_ingest_messages_total", url)
	}
	return int(total)
}

// TestSIGTERMUnderQueryLoad stops `xmodal run` with SIGTERM while clients keep
// searching over NATS and over the HTTP gateway. Shutdown stops taking
// requests, waits for those in flight, drains NATS and only then closes the
// index and the model: no request may fail because a resource it used was
// closed under it (a 500, or a 503 from the index), the process exits 0 and
// logs no failed query. Refusals while stopping (503 "shutting down", no
// responders, a closed connection) are what a client of a stopping instance
// should see, and are allowed.
func TestSIGTERMUnderQueryLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("starts xmodal processes")
	}
	dir := t.TempDir()
	listen, httpAddr := freePort(t), freePort(t)
	c := startChildHTTP(t, dir, listen, httpAddr, "XMODAL_SHUTDOWN_GRACE=5s", "XMODAL_QUERY_CONCURRENCY=64")
	nc := connect(t, listen, c)
	defer nc.Close()
	waitService(t, nc)
	js, _ := jetstream.New(nc)
	pctx, pcancel := context.WithTimeout(context.Background(), time.Minute)
	defer pcancel()
	for i := range 20 {
		p := domain.Post{Schema: 1, ID: fmt.Sprintf("q-%02d", i), CreatedAt: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC),
			Text: fmt.Sprintf("a post about query %d", i), Image: &domain.ImageRef{Data: tinyPNG(i)}}
		b, _ := json.Marshal(p)
		if err := ingest.Publish(pctx, js, "xmodal.posts", p.ID, b); err != nil {
			t.Fatal(err)
		}
	}
	cl := client.New(nc)
	testutil.Eventually(t, time.Minute, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := cl.Stats(ctx)
		if err != nil || st.Records[domain.ModalityText] < 20 {
			return fmt.Errorf("20 posts indexed: stats %v, %v", st, err)
		}
		return nil
	})

	// closedResource says whether a failed request failed because of the
	// server's own shutdown order (what this test guards against).
	closedResource := func(code int, msg string) bool {
		refusal := strings.Contains(msg, "shutting down") || strings.Contains(msg, "no xmodal query service is listening")
		return code == query.CodeInternal || (code == query.CodeUnavailable && !refusal)
	}
	var (
		mu       sync.Mutex
		ok, bad  int
		badCases []string
	)
	record := func(err error, code int, msg string) {
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			ok++
			return
		}
		if closedResource(code, msg) {
			bad++
			badCases = append(badCases, fmt.Sprintf("%d %s", code, msg))
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(2)
		go func() { // NATS
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := cl.Search(ctx, &query.SearchRequest{Text: fmt.Sprintf("query %d from %d", i, w), K: 5})
				cancel()
				var qe *query.Error
				if errors.As(err, &qe) {
					record(err, qe.Code, qe.Message)
				} else {
					record(err, 0, "")
				}
				if err != nil {
					time.Sleep(5 * time.Millisecond) // a stopping server: do not spin
				}
			}
		}()
		go func() { // HTTP gateway
			defer wg.Done()
			hc := &http.Client{Timeout: 5 * time.Second}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body := strings.NewReader(fmt.Sprintf(`{"text":"gateway query %d from %d","k":5}`, i, w))
				resp, err := hc.Post("http://"+httpAddr+"/v1/search", "application/json", body)
				if err != nil {
					record(err, 0, "") // refused or reset: the server is gone
					time.Sleep(5 * time.Millisecond)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					record(nil, 0, "")
					continue
				}
				var eb query.ErrorBody
				json.Unmarshal(b, &eb)
				record(fmt.Errorf("HTTP %d", resp.StatusCode), eb.Error.Code, eb.Error.Message)
			}
		}()
	}
	time.Sleep(time.Second) // load running
	mu.Lock()
	before := ok
	mu.Unlock()
	if before == 0 {
		close(stop)
		wg.Wait()
		t.Fatal("no query succeeded before the stop: the load proves nothing")
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	var exitErr error
	select {
	case exitErr = <-c.done:
		c.done <- exitErr
	case <-time.After(60 * time.Second):
		close(stop)
		wg.Wait()
		t.Fatal("xmodal did not stop within 60s of SIGTERM")
	}
	time.Sleep(200 * time.Millisecond) // the clients see the end
	close(stop)
	wg.Wait()
	t.Logf("%d queries answered before and during the stop (%d before the SIGTERM)", ok, before)
	if exitErr != nil {
		t.Errorf("xmodal exited with %v after SIGTERM, want 0", exitErr)
	}
	if bad > 0 {
		t.Errorf("%d queries failed from a closed resource, e.g. %q", bad, badCases[:min(len(badCases), 5)])
	}
	out := c.out.String()
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "query failed") || strings.Contains(l, "panic") || strings.Contains(l, "level=ERROR") {
			t.Errorf("xmodal logged during the stop: %s", l)
		}
	}
}
