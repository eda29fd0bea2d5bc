package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
	"github.com/xmodal/xmodal/sink/matching"
)

// TestMatchEventsOnKafka: `xmodal run` ingesting from a real Kafka broker
// writes its match events to the events topic as well as to JetStream:
// keyed by post id, the event's JSON as value, its id in the
// Xmodal-Event-Id header. They are there as soon as the posts' offsets are
// committed (the events are durable before the ack). Edits make an event
// only when the post's matches changed; a post taken down by a tombstone
// makes no more. A retro sweep's events go to the topic too. A malformed
// kafka.events_topic is refused at start, naming the key.
func TestMatchEventsOnKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Kafka broker")
	}
	requireORT(t)
	b := startKafka(t)
	b.CreateTopic(t, "posts", 2)
	cfg := matchRunConfig(t)
	cfg.Kafka.Brokers, cfg.Kafka.Topic, cfg.Kafka.Group = []string{b.Plain()}, "posts", "ix"
	cfg.Kafka.CommitInterval = 100 * time.Millisecond
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	cfg.Kafka.EventsTopic = "no spaces allowed"
	if a, err := startApp(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil))); err == nil || !strings.Contains(err.Error(), "config kafka.events_topic") {
		if a != nil {
			a.Close()
		}
		t.Fatalf("kafka.events_topic %q: %v, want a refusal naming the key", cfg.Kafka.EventsTopic, err)
	}
	cfg.Kafka.EventsTopic = "moderation.events"
	cfg.DataDir = t.TempDir()
	a := runTestApp(t, ctx, cancel, cfg, logs)
	cl := client.New(a.nc)
	for _, bk := range []struct {
		name   string
		action banks.Action
		text   string
	}{{"spam", banks.ActionReview, "Buy followers now"}, {"forbidden", banks.ActionBlock, "forbidden words here"}} {
		if err := cl.Call(ctx, "admin.banks.create", query.BankRequest{Name: bk.name, Action: bk.action, Actor: "t"}, nil); err != nil {
			t.Fatal(err)
		}
		if err := cl.Call(ctx, "admin.banks.add", query.BankAddRequest{Bank: bk.name, Entries: []banks.Entry{{Type: banks.SignalText, Value: bk.text}}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	w := b.writer("posts")
	defer w.Close()
	now := time.Now().UTC().Format(time.RFC3339)
	var msgs []kafkago.Message
	for _, p := range [][2]string{{"k-spam", "BUY followers NOW!!!"}, {"k-forbidden", "Forbidden words, here."}, {"k-clean", "a quiet afternoon"}} {
		msgs = append(msgs, kafkago.Message{Key: []byte(p[0]), Value: []byte(fmt.Sprintf(`{"schema":1,"id":%q,"author":"u","created_at":%q,"text":%q}`, p[0], now, p[1]))})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	waitCommitted := func() {
		ends, err := b.endOffsets(t, "posts", 2)
		if err != nil {
			t.Fatal(err)
		}
		testutil.CheckFor(t, 90*time.Second, 100*time.Millisecond, func() error {
			c, err := b.committed("posts", "ix", 2)
			if err != nil {
				return err
			}
			for p, end := range ends {
				if end > 0 && c[p] != end {
					return fmt.Errorf("committed %v, ends %v", c, ends)
				}
			}
			return nil
		})
	}
	waitCommitted()
	// Committed, so the events are on the topic already: read it at once.
	checkEvents(t, b, "moderation.events", "k-forbidden:forbidden:block:ingest", "k-spam:spam:review:ingest")
	// Edits: k-spam's new text matches the same entry (no new event);
	// k-clean's edit now matches spam (an event of its new version). A
	// tombstone takes k-spam down; its next version makes nothing.
	edit := func(id, text string) kafkago.Message {
		return kafkago.Message{Key: []byte(id), Value: []byte(fmt.Sprintf(`{"schema":1,"id":%q,"author":"u","created_at":%q,"text":%q}`, id, now, text))}
	}
	if err := w.WriteMessages(ctx, edit("k-spam", "buy followers now (edited)"), edit("k-clean", "Buy. Followers. Now.")); err != nil {
		t.Fatal(err)
	}
	waitCommitted()
	if err := w.WriteMessages(ctx, kafkago.Message{Key: []byte("k-spam")}); err != nil {
		t.Fatal(err)
	}
	waitCommitted()
	if err := w.WriteMessages(ctx, edit("k-spam", "BUY FOLLOWERS NOW")); err != nil {
		t.Fatal(err)
	}
	waitCommitted()
	checkEvents(t, b, "moderation.events", "k-clean:spam:review:ingest", "k-forbidden:forbidden:block:ingest", "k-spam:spam:review:ingest")
	// The same events are in JetStream.
	out := eventsTail(t, ctx, a, "--all")
	if strings.Count(out, "\n") != 3 || !strings.Contains(out, "post=k-spam") || !strings.Contains(out, "post=k-forbidden") || !strings.Contains(out, "post=k-clean") {
		t.Fatalf("events tail --all:\n%s", out)
	}
	// A retro sweep of a process ingesting from Kafka writes its events to
	// the topic too: an image indexed before its hash is banked.
	img, err := os.ReadFile(filepath.Join(testutil.MustRepoRoot(t), "testdata", "pdq", "images", "dih", "bridge-1-original.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := json.Marshal(map[string]any{"schema": 1, "id": "k-img", "created_at": now, "image": map[string]any{"data": img, "mime": "image/jpeg"}})
	if err := w.WriteMessages(ctx, kafkago.Message{Key: []byte("k-img"), Value: pb}); err != nil {
		t.Fatal(err)
	}
	waitCommitted()
	res, err := cl.Get(ctx, &query.GetRequest{PostIDs: []string{"k-img"}})
	if err != nil || len(res.Records) == 0 || res.Records[0].PDQ == "" {
		t.Fatalf("k-img: %+v %v", res, err)
	}
	if err := cl.Call(ctx, "admin.banks.create", query.BankRequest{Name: "late", Actor: "t"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := cl.Call(ctx, "admin.banks.add", query.BankAddRequest{Bank: "late", Entries: []banks.Entry{{Type: banks.SignalPDQ, Value: res.Records[0].PDQ}}}, nil); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		var sw query.SweepsResponse
		if err := cl.Call(ctx, "banks.sweeps", struct{}{}, &sw); err != nil {
			return err
		}
		// The text entries added before any post swept an empty index; the
		// PDQ entry of "late" finds k-img.
		for _, s := range sw.Sweeps {
			if s.Bank == "late" && s.State == "done" {
				return nil
			}
		}
		return fmt.Errorf("sweeps %+v", sw.Sweeps)
	})
	checkEvents(t, b, "moderation.events", "k-clean:spam:review:ingest", "k-forbidden:forbidden:block:ingest", "k-img:late:review:sweep", "k-spam:spam:review:ingest")
}

// checkEvents reads every event on topic and compares "post:bank:action:source" of each with want.
func checkEvents(t *testing.T, b *kafkaBroker, topic string, want ...string) {
	t.Helper()
	got := b.readTopic(t, topic)
	var desc []string
	for _, m := range got {
		var e matching.Event
		if err := json.Unmarshal(m.Value, &e); err != nil {
			t.Fatalf("event %s: %v", m.Value, err)
		}
		var id, bank string
		for _, h := range m.Headers {
			switch h.Key {
			case matching.HeaderEventID:
				id = string(h.Value)
			case "Xmodal-Bank":
				bank = string(h.Value)
			}
		}
		if string(m.Key) != e.PostID || id != e.ID || bank != e.Bank || e.ID != matching.EventID(e.PostID, e.Version, e.EntryID) {
			t.Errorf("event message key %q, id header %q, bank header %q: %+v", m.Key, id, bank, e)
		}
		desc = append(desc, e.PostID+":"+e.Bank+":"+string(e.Action)+":"+e.Source)
	}
	slices.Sort(desc)
	if !slices.Equal(desc, want) {
		t.Fatalf("events on the topic: %v, want %v", desc, want)
	}
}

// eventsTail runs `xmodal events tail --follow=false` against a's NATS server.
func eventsTail(t *testing.T, ctx context.Context, a *app, args ...string) string {
	t.Helper()
	root := newRoot()
	var out, errw strings.Builder
	root.SetOut(&out)
	root.SetErr(&errw)
	root.SetArgs(append([]string{"events", "tail", "--follow=false", "--nats-url", a.ns.ClientURL()}, args...))
	if err := root.ExecuteContext(ctx); err != nil {
		t.Fatalf("events tail %v: %v\n%s", args, err, errw.String())
	}
	return out.String()
}
