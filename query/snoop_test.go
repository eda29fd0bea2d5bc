package query_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
)

// TestNATSReaderSeesOnlyItsOwnReplies (issue #15 item 4): under
// deploy/nats/xmodal.conf a reader cannot subscribe to other users' inboxes
// (nor to "_INBOX.>", where the default prefix puts everyone's replies), and
// what it may subscribe to carries nothing but the replies to its own
// requests, while a moderator deletes and searches, an nkey reader searches
// and the xmodal process pulls posts from JetStream.
func TestNATSReaderSeesOnlyItsOwnReplies(t *testing.T) {
	ss := newSecureStack(t, "xmodal.conf")
	ctx, cancelAll := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelAll()
	var mu sync.Mutex
	var violations []error
	snoopNC, err := nats.Connect(ss.url, nats.UserInfo("reader", "reader-secret"), userInbox(t, "reader"), nats.MaxReconnects(0),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			mu.Lock()
			violations = append(violations, err)
			mu.Unlock()
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(snoopNC.Close)
	got := map[string][]string{} // subscription -> subjects received
	forbidden := []string{">", "_INBOX.>", "_INBOX_moderator.>", nkeyReaderInbox + ".>", "xmodal.>", "$JS.>"}
	own := "_INBOX_reader.>"
	for _, subj := range append(forbidden, own) {
		if _, err := snoopNC.Subscribe(subj, func(m *nats.Msg) {
			mu.Lock()
			got[subj] = append(got[subj], m.Subject)
			mu.Unlock()
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := snoopNC.Flush(); err != nil {
		t.Fatal(err)
	}
	snooper := client.New(snoopNC)

	// Everyone else at work.
	mod, err := connect(t, ss.url, nats.UserInfo("moderator", "admin-secret"), userInbox(t, "moderator"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mod.Search(ctx, &query.SearchRequest{Text: ss.texts[0], K: 3}); err != nil {
		t.Fatalf("moderator search: %v", err)
	}
	if res, err := mod.Delete(ctx, &query.DeleteRequest{PostIDs: []string{"t1"}, Reason: "test"}); err != nil || res.Count != 1 {
		t.Fatalf("moderator delete: %+v %v", res, err)
	}
	pub, _ := ss.readerK.PublicKey()
	nk, err := connect(t, ss.url, nats.Nkey(pub, ss.readerK.Sign), nats.CustomInboxPrefix(nkeyReaderInbox))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nk.Get(ctx, &query.GetRequest{PostIDs: []string{"t2"}}); err != nil {
		t.Fatalf("nkey reader get: %v", err)
	}
	// The xmodal process (its own user, its own prefix) pulls a post.
	svcNC, err := nats.Connect(ss.url, nats.UserInfo("xmodal", "service-secret"), userInbox(t, "xmodal"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svcNC.Close)
	src, err := ingest.NewJetStream(ctx, svcNC, ingest.JetStreamConfig{})
	if err != nil {
		t.Fatalf("jetstream as the service user: %v", err)
	}
	js, err := jetstream.New(svcNC)
	if err != nil {
		t.Fatal(err)
	}
	if err := ingest.Publish(ctx, js, "xmodal.posts", "secret-post", []byte(`{"schema":1,"id":"secret-post","text":"not for readers"}`)); err != nil {
		t.Fatal(err)
	}
	msgs, err := src.Fetch(ctx, 1, time.Second)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("the service's pull: %d messages, %v", len(msgs), err)
	}
	// The snooper's own request.
	if _, err := snooper.Stats(ctx); err != nil {
		t.Fatalf("reader stats: %v", err)
	}
	ownInbox := snoopNC.NewRespInbox()
	ownPrefix := ownInbox[:strings.LastIndexByte(ownInbox, '.')+1]
	if err := snoopNC.Flush(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)

	mu.Lock()
	defer mu.Unlock()
	for _, subj := range forbidden {
		if len(got[subj]) > 0 {
			t.Errorf("the reader's subscription %q received %d messages (%v...)", subj, len(got[subj]), got[subj][0])
		}
	}
	if len(got[own]) == 0 {
		t.Error("the reader's own inbox received not even its own reply")
	}
	for _, subj := range got[own] {
		if !strings.HasPrefix(subj, ownPrefix) {
			t.Errorf("the reader's inbox received %q, not a reply to its own requests (%s*)", subj, ownPrefix)
		}
	}
	refused := 0
	for _, err := range violations {
		if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), "Subscription") {
			refused++
		}
	}
	if refused < len(forbidden) {
		t.Errorf("%d subscriptions refused, want %d: %v", refused, len(forbidden), violations)
	}

	// A reader that keeps the default prefix gets no replies, and is told why.
	plain, err := connect(t, ss.url, nats.UserInfo("reader", "reader-secret"), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = plain.Stats(sctx)
	if e := query.AsError(err); err == nil || e.Code != query.CodeTimeout || !strings.Contains(e.Message, "client.UserInbox") {
		t.Errorf("a reader with the default inbox prefix: %v; want a timeout that names the inbox prefix", err)
	}
}
