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
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/internal/natsserver"
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
