package matching

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/internal/natsserver"
)

// The shipped deploy/nats/xmodal.conf: the service user publishes match
// events; a moderator consumes them through a consumer of their own but
// cannot publish one; a reader cannot read them.
func TestEventPermissionsOfShippedConfig(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	for k, v := range map[string]string{"XMODAL_SERVICE_PASSWORD": "service-secret", "XMODAL_READER_PASSWORD": "reader-secret",
		"XMODAL_ADMIN_PASSWORD": "admin-secret", "XMODAL_READER_NKEY": pub} {
		t.Setenv(k, v)
	}
	ns, err := natsserver.Start(natsserver.Options{Listen: "127.0.0.1:0", StoreDir: t.TempDir(),
		ConfigFile: filepath.Join("..", "..", "deploy", "nats", "xmodal.conf")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	violations := make(chan error, 16)
	connect := func(user, pass string) (*nats.Conn, jetstream.JetStream) {
		// Each user of the shipped configuration reads replies on its own
		// inbox prefix only (docs/security.md).
		nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo(user, pass), nats.MaxReconnects(0), nats.CustomInboxPrefix("_INBOX_"+user),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { violations <- err }))
		if err != nil {
			t.Fatalf("connect as %s: %v", user, err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return nc, js
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, sjs := connect("xmodal", "service-secret")
	es, err := OpenEvents(ctx, sjs, StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	ev := Event{ID: EventID("p1", 1, "pdq-x"), PostID: "p1", Version: 1, Bank: "known", EntryID: "pdq-x", SignalType: banks.SignalPDQ,
		Action: banks.ActionReview, Source: SourceIngest}
	if err := es.Publish(ctx, []Event{ev}); err != nil {
		t.Fatalf("the service publishes an event: %v", err)
	}

	// The moderator reads it through a durable consumer of their own.
	mnc, mjs := connect("moderator", "admin-secret")
	cons, err := mjs.CreateOrUpdateConsumer(ctx, Stream, jetstream.ConsumerConfig{Durable: "moderation", AckPolicy: jetstream.AckExplicitPolicy,
		FilterSubject: Subject("known")})
	if err != nil {
		t.Fatalf("a moderator creates a consumer: %v", err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatalf("a moderator reads an event: %v", err)
	}
	var got Event
	if err := json.Unmarshal(msg.Data(), &got); err != nil || got.ID != ev.ID {
		t.Fatalf("event read: %+v %v", got, err)
	}
	if err := msg.DoubleAck(ctx); err != nil {
		t.Fatalf("a moderator acknowledges an event: %v", err)
	}
	// ... but cannot publish one.
	if err := mnc.Publish(Subject("known"), []byte(`{"forged":true}`)); err != nil {
		t.Fatal(err)
	}
	mnc.Flush()
	select {
	case err := <-violations:
		if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Fatalf("async error %v, want a permissions violation", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("a moderator published on the events subject without a permissions violation")
	}
	s, _ := sjs.Stream(ctx, Stream)
	if info, err := s.Info(ctx); err != nil || info.State.Msgs != 1 {
		t.Fatalf("events stream after the forged publish: %+v %v", info, err)
	}

	// A reader cannot read the events.
	_, rjs := connect("reader", "reader-secret")
	rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
	defer rcancel()
	if _, err := rjs.OrderedConsumer(rctx, Stream, jetstream.OrderedConsumerConfig{}); err == nil {
		t.Fatal("a reader created a consumer on the match events")
	}
}
