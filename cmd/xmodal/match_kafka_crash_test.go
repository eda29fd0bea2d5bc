package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
	"github.com/xmodal/xmodal/sink/matching"
)

// TestMatchEventsKafkaKill9: `xmodal run` ingesting from a real Kafka broker
// is killed with SIGKILL at a crash point while posts that match a bank
// flow — after a write returned (its events durable, its posts not yet
// acknowledged) and after an encode (nothing written) — and started again
// on the same data dir. Afterwards the group's offsets reach the ends, the
// events topic holds an event for every matching post, a consumer that
// deduplicates by Xmodal-Event-Id sees each (post, entry) once, and no post
// that does not match has one; JetStream holds each once. The "random" case
// does the same with 10,000 posts and SIGKILLs at seeded random moments
// (XMODAL_E2E_SEED replays one).
func TestMatchEventsKafkaKill9(t *testing.T) {
	requireCrashBuild(t)
	if testing.Short() {
		t.Skip("starts a Kafka broker and xmodal processes")
	}
	b := startKafka(t)
	for _, point := range []string{"after-write", "after-encode", "random"} {
		t.Run(point, func(t *testing.T) {
			posts, crash := 60, []string{"XMODAL_CRASH_AT=" + point + ":3"}
			if point == "random" {
				posts, crash = 10_000, nil
			}
			topic, events := "posts-"+point, "events-"+point
			b.CreateTopic(t, topic, 2)
			dir, listen := t.TempDir(), lowPort(t)
			env := []string{"XMODAL_KAFKA_BROKERS=" + b.Plain(), "XMODAL_KAFKA_TOPIC=" + topic, "XMODAL_KAFKA_GROUP=ix-" + point,
				"XMODAL_KAFKA_COMMIT_INTERVAL=100ms", "XMODAL_KAFKA_EVENTS_TOPIC=" + events}
			c := startChild(t, dir, listen, append(env, crash...)...)
			nc := connect(t, listen, c)
			waitService(t, nc)
			ctx := context.Background()
			cl := client.New(nc)
			if err := cl.Call(ctx, "admin.banks.create", query.BankRequest{Name: "spam", Actor: "t"}, nil); err != nil {
				t.Fatal(err)
			}
			if err := cl.Call(ctx, "admin.banks.add", query.BankAddRequest{Bank: "spam", Entries: []banks.Entry{{Type: banks.SignalText, Value: "buy followers now"}}}, nil); err != nil {
				t.Fatal(err)
			}
			entry := banks.EntryID(banks.SignalText, "", "buy followers now")
			w := b.writer(topic)
			defer w.Close()
			want := map[string]bool{}
			var msgs []kafkago.Message
			for i := range posts {
				id, text := fmt.Sprintf("p%05d", i), fmt.Sprintf("hello number %d", i)
				if i%3 == 0 {
					text = "Buy followers NOW!"
					want[id] = true
				}
				msgs = append(msgs, kafkago.Message{Key: []byte(id), Value: []byte(fmt.Sprintf(`{"schema":1,"id":%q,"created_at":"2026-11-01T00:00:00Z","text":%q}`, id, text))})
			}
			for from := 0; from < len(msgs); from += 1000 {
				if err := w.WriteMessages(ctx, msgs[from:min(from+1000, len(msgs))]...); err != nil {
					t.Fatal(err)
				}
			}
			if point == "random" {
				seed := e2eSeed(t)
				t.Logf("seed %d (XMODAL_E2E_SEED=%d replays it)", seed, seed)
				rng := rand.New(rand.NewPCG(seed, 18))
				ends, err := b.endOffsets(t, topic, 2)
				if err != nil {
					t.Fatal(err)
				}
				var last int64
				for kill := range 4 {
					// Kill while posts flow: once this run has committed some
					// (a restart first waits for the group's rebalance), then
					// at a random moment.
					testutil.CheckFor(t, 3*time.Minute, 100*time.Millisecond, func() error {
						got, err := b.committed(topic, "ix-"+point, 2)
						if err != nil {
							return err
						}
						if n := sumOffsets(got); n < min(last+200, sumOffsets(ends)) {
							return fmt.Errorf("%d committed", n)
						}
						return nil
					})
					time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
					got, err := b.committed(topic, "ix-"+point, 2)
					last = sumOffsets(got)
					if err == nil && sumOffsets(got) == sumOffsets(ends) {
						t.Logf("everything was committed before kill %d", kill+1)
						break
					}
					t.Logf("kill %d with %d of %d messages committed", kill+1, sumOffsets(got), sumOffsets(ends))
					nc.Close()
					c.cmd.Process.Kill()
					c.done <- <-c.done
					c = startChild(t, dir, listen, env...)
					nc = connect(t, listen, c)
					waitService(t, nc)
				}
				c.cmd.Process.Kill() // the last kill: the run below finishes the work
				c.done <- <-c.done
			} else {
				select {
				case err := <-c.done:
					c.done <- err
				case <-time.After(2 * time.Minute):
					t.Fatal("xmodal was not killed at the crash point")
				}
				if out := c.out.String(); !strings.Contains(out, "killing the process at "+point) {
					t.Fatalf("xmodal exited, but not at the crash point:\n%s", out)
				}
			}
			nc.Close()

			c2 := startChild(t, dir, listen, env...)
			nc2 := connect(t, listen, c2)
			waitService(t, nc2)
			ends, err := b.endOffsets(t, topic, 2)
			if err != nil {
				t.Fatal(err)
			}
			testutil.CheckFor(t, 5*time.Minute, 200*time.Millisecond, func() error {
				got, err := b.committed(topic, "ix-"+point, 2)
				if err != nil {
					return err
				}
				for p, end := range ends {
					if got[p] != end {
						return fmt.Errorf("committed %v, ends %v", got, ends)
					}
				}
				return nil
			})
			copies, byID := map[string]int{}, map[string]string{}
			for _, m := range b.readTopic(t, events) {
				var e matching.Event
				if err := json.Unmarshal(m.Value, &e); err != nil {
					t.Fatal(err)
				}
				var id string
				for _, h := range m.Headers {
					if h.Key == matching.HeaderEventID {
						id = string(h.Value)
					}
				}
				if id != e.ID || string(m.Key) != e.PostID || e.EntryID != entry {
					t.Fatalf("event message key %q id %q: %+v", m.Key, id, e)
				}
				if prev, ok := byID[id]; ok && prev != e.PostID {
					t.Fatalf("id %s names posts %s and %s", id, prev, e.PostID)
				}
				byID[id] = e.PostID
				copies[e.PostID]++
			}
			seen := map[string]int{} // after deduplicating by id
			for _, post := range byID {
				seen[post]++
			}
			for post := range want {
				if seen[post] != 1 {
					t.Errorf("post %s: %d distinct events after deduplication, want 1", post, seen[post])
				}
			}
			repeats := 0
			for post, n := range copies {
				if !want[post] {
					t.Errorf("post %s matches nothing, yet has %d events", post, n)
				}
				repeats += n - 1
			}
			// JetStream dropped the repeats within its duplicate window.
			js, _ := jetstream.New(nc2)
			s, err := js.Stream(ctx, matching.Stream)
			if err != nil {
				t.Fatal(err)
			}
			info, err := s.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if info.State.Msgs != uint64(len(want)) {
				t.Errorf("JetStream holds %d events, want %d", info.State.Msgs, len(want))
			}
			t.Logf("%s: %d matching posts, %d event messages on Kafka (%d repeats of redelivered posts)", point, len(want), len(byID)+repeats, repeats)
		})
	}
}
