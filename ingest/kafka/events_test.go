package kafka

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

func TestEventsTopic(t *testing.T) {
	for _, c := range []struct{ topic, posts, want string }{
		{"", "posts", "posts.match-events"},
		{"moderation.events", "posts", "moderation.events"},
	} {
		if got := EventsTopic(c.topic, c.posts); got != c.want {
			t.Errorf("EventsTopic(%q, %q) = %q, want %q", c.topic, c.posts, got, c.want)
		}
	}
}

// TestTopicWriter: the writer creates its topic when missing, and what Write
// returned for is on the broker with its keys and headers, one key's
// messages on one partition in order; a second writer on the existing topic
// starts too; a malformed topic name is refused with a ConfigError.
func TestTopicWriter(t *testing.T) {
	addr := broker.Need(t).Plain()
	topic := name(t, "events")
	cfg := testConfig(t, addr, "unused", "unused")
	conn, err := cfg.WithDefaults().Connect()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := NewTopicWriter(ctx, cfg, conn, "bad topic!", nil); !errors.As(err, new(*ConfigError)) {
		t.Fatalf("a malformed topic name: %v, want a ConfigError", err)
	}
	w, err := NewTopicWriter(ctx, cfg, conn, topic, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var msgs []kafkago.Message
	for i := range 30 {
		key := fmt.Sprintf("post-%d", i%3)
		msgs = append(msgs, kafkago.Message{Key: []byte(key), Value: []byte(fmt.Sprintf(`{"n":%d}`, i)),
			Headers: []kafkago.Header{{Key: "Xmodal-Event-Id", Value: []byte(fmt.Sprintf("id-%d", i))}}})
	}
	if err := w.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	// Written means readable, at once: no waiting.
	n := 0
	md, err := admin(addr).Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	parts := len(md.Topics[0].Partitions)
	ends := endOffsets(t, addr, topic, parts)
	partOf := map[string]int{}
	lastN := map[string]int{}
	for p := range parts {
		if ends[p] == 0 {
			continue
		}
		r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{addr}, Topic: topic, Partition: p, MaxWait: 100 * time.Millisecond})
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				r.Close()
				t.Fatal(err)
			}
			n++
			var i int
			fmt.Sscanf(string(m.Value), `{"n":%d}`, &i)
			if len(m.Headers) != 1 || string(m.Headers[0].Value) != fmt.Sprintf("id-%d", i) || string(m.Key) != fmt.Sprintf("post-%d", i%3) {
				t.Errorf("message %d/%d: key %q value %s headers %v", p, m.Offset, m.Key, m.Value, m.Headers)
			}
			if q, ok := partOf[string(m.Key)]; ok && q != p {
				t.Errorf("key %s on partitions %d and %d", m.Key, q, p)
			}
			partOf[string(m.Key)] = p
			if l, ok := lastN[string(m.Key)]; ok && l >= i {
				t.Errorf("key %s: message %d after %d", m.Key, i, l)
			}
			lastN[string(m.Key)] = i
			if m.Offset+1 >= ends[p] {
				break
			}
		}
		r.Close()
	}
	if n != len(msgs) {
		t.Fatalf("topic %s holds %d messages, wrote %d", topic, n, len(msgs))
	}
	w2, err := NewTopicWriter(ctx, cfg, conn, topic, nil)
	if err != nil {
		t.Fatalf("a writer on the existing topic: %v", err)
	}
	w2.Close()
}
