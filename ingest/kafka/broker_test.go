package kafka

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/xmodal/xmodal/internal/testutil"
)

// The test broker: a real Apache Kafka started with scripts/kafka.sh on ports of
// its own (so that it does not collide with a developer's broker on the default
// ports), shared by the package's tests and stopped after them when the tests
// started it. XMODAL_TEST_KAFKA_PORT moves it (SASL is port+1, controller +2).
var broker = &testutil.SharedKafka{Port: 19192}

func TestMain(m *testing.M) {
	code := m.Run()
	broker.Close()
	os.Exit(code)
}

var admin = func(addr string) *kafkago.Client {
	return &kafkago.Client{Addr: kafkago.TCP(addr), Timeout: 20 * time.Second}
}

// name returns a topic or group name unique to this test run.
func name(t testing.TB, what string) string {
	s := strings.NewReplacer("/", "-", " ", "-", "_", "-").Replace(t.Name())
	return fmt.Sprintf("xm-%s-%s-%x", strings.ToLower(s), what, rand.Uint32())
}

// newTopic creates a topic with n partitions on the shared broker and waits
// until each has a leader, through kafka-go's default transport (which the
// producers here share, so that they know the topic at once).
func newTopic(t testing.TB, partitions int) string {
	t.Helper()
	topic := name(t, "posts")
	testutil.CreateKafkaTopic(t, admin(broker.Need(t).Plain()), topic, partitions)
	return topic
}

// produce writes n messages, keys post-<first>..; message i goes to partition
// i % partitions (or to partition part when part >= 0). A nil value in values
// writes a tombstone.
func produce(t testing.TB, addr, topic string, first, n, partitions int) {
	t.Helper()
	w := &kafkago.Writer{Addr: kafkago.TCP(addr), Topic: topic, RequiredAcks: kafkago.RequireAll,
		BatchTimeout: time.Millisecond, BatchSize: 1000,
		Balancer: kafkago.BalancerFunc(func(m kafkago.Message, parts ...int) int {
			i, _ := strconv.Atoi(strings.TrimPrefix(string(m.Key), "post-"))
			return parts[i%len(parts)]
		})}
	defer w.Close()
	msgs := make([]kafkago.Message, n)
	for i := range msgs {
		k := first + i
		msgs[i] = kafkago.Message{Key: []byte(fmt.Sprintf("post-%d", k)), Value: []byte(fmt.Sprintf(`{"schema":1,"id":"post-%d","text":"hello %d"}`, k, k)),
			Headers: []kafkago.Header{{Key: "trace", Value: []byte(strconv.Itoa(k))}}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce %d messages to %s: %v", n, topic, err)
	}
}

// endOffsets returns each partition's end (high-water mark).
func endOffsets(t testing.TB, addr, topic string, partitions int) map[int]int64 {
	t.Helper()
	req := make([]kafkago.OffsetRequest, partitions)
	for p := range req {
		req[p] = kafkago.LastOffsetOf(p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := admin(addr).ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{topic: req}})
	if err != nil {
		t.Fatalf("list offsets of %s: %v", topic, err)
	}
	out := map[int]int64{}
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			t.Fatalf("list offsets of %s/%d: %v", topic, p.Partition, p.Error)
		}
		out[p.Partition] = p.LastOffset
	}
	return out
}

// committed reads the group's committed offsets from the broker (-1: none).
func committed(t testing.TB, addr, group, topic string, partitions int) map[int]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ps := make([]int, partitions)
	for i := range ps {
		ps[i] = i
	}
	res, err := admin(addr).OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
	if err != nil {
		t.Fatalf("offset fetch for group %s: %v", group, err)
	}
	if res.Error != nil {
		t.Fatalf("offset fetch for group %s: %v", group, res.Error)
	}
	out := map[int]int64{}
	for _, p := range res.Topics[topic] {
		out[p.Partition] = p.CommittedOffset
	}
	return out
}

func waitCommitted(t testing.TB, addr, group, topic string, want map[int]int64) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, func() error {
		got := committed(t, addr, group, topic, len(want))
		for p, end := range want {
			if got[p] == -1 && end == 0 { // an empty partition has nothing to commit
				got[p] = 0
			}
		}
		if !(maps.Equal(got, want)) {
			return fmt.Errorf("committed offsets reach the ends %v; now %v", want, got)
		}
		return nil
	})
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testConfig is a Config tuned for quick tests.
func testConfig(t testing.TB, addr, topic, group string) Config {
	return Config{Brokers: []string{addr}, Topic: topic, Group: group, SessionTimeout: MinSessionTimeout,
		HeartbeatInterval: 300 * time.Millisecond, CommitInterval: 100 * time.Millisecond, MaxWait: 200 * time.Millisecond,
		RebalanceTimeout: 10 * time.Second, JoinBackoff: 300 * time.Millisecond, Logger: testLogger(t)}
}

func newSource(t testing.TB, cfg Config) *Source {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Close(ctx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func waitAssigned(t testing.TB, s *Source, want []int) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, func() error {
		got := s.Assigned()
		if !(slices.Equal(got, want)) {
			return fmt.Errorf("partitions %v assigned; now %v", want, got)
		}
		return nil
	})
}

func allPartitions(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
