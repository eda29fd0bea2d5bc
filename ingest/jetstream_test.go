package ingest_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/internal/testutil"
)

// TestFetchLosesNoDeliveredMessage (issue #15 item 8): short fetches of large
// messages hand out every message the server delivers. A fetch that gave up
// on the client side while the server was still sending left messages
// delivered but unseen, so they waited in ack pending for the ack-wait
// redelivery (here 60 s, far beyond the test's patience).
func TestFetchLosesNoDeliveredMessage(t *testing.T) {
	ns := testutil.StartNATS(t, "")
	nc, js := testutil.ConnectJS(t, ns.ClientURL())
	ctx := context.Background()
	src, err := ingest.NewJetStream(ctx, nc, ingest.JetStreamConfig{AckWait: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	const n = 64
	big := bytes.Repeat([]byte("x"), 256<<10)
	for i := range n {
		if err := ingest.Publish(ctx, js, "xmodal.posts", fmt.Sprint("p", i), big); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[uint64]bool{}
	deadline := time.Now().Add(20 * time.Second)
	for len(seen) < n && time.Now().Before(deadline) {
		msgs, err := src.Fetch(ctx, 8, 2*time.Millisecond)
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		for _, m := range msgs {
			if seen[m.Seq] || m.Attempt != 1 {
				t.Fatalf("seq %d handed out again (attempt %d)", m.Seq, m.Attempt)
			}
			seen[m.Seq] = true
			if err := m.Ack(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	cons, err := js.Consumer(ctx, "XMODAL_POSTS", "indexer")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != n || info.NumAckPending != 0 {
		t.Fatalf("fetched %d of %d messages; the server counts %d delivered and not acknowledged (lost in a fetch)",
			len(seen), n, info.NumAckPending)
	}
}
