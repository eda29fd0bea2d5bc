package kafka

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/xmodal/xmodal/internal/testutil"
)

// The test broker: a real Apache Kafka started with scripts/kafka.sh on ports of
// its own (so that it does not collide with a developer's broker on the default
// ports), shared by the package's tests and stopped after them when the tests
// started it. XMODAL_TEST_KAFKA_PORT moves it (SASL is port+1, controller +2).
type testBroker struct {
	once    sync.Once
	err     error
	root    string
	port    int
	started bool // by these tests (so they stop it and remove its data)
}

var broker = &testBroker{port: 19192}

func (b *testBroker) plain() string { return "127.0.0.1:" + strconv.Itoa(b.port) }
func (b *testBroker) sasl() string  { return "127.0.0.1:" + strconv.Itoa(b.port+1) }

func (b *testBroker) env() []string {
	return append(os.Environ(),
		"KAFKA_PORT="+strconv.Itoa(b.port),
		"KAFKA_SASL_PORT="+strconv.Itoa(b.port+1),
		"KAFKA_CONTROLLER_PORT="+strconv.Itoa(b.port+2),
		"KAFKA_DATA="+b.dataDir(),
	)
}

func (b *testBroker) dataDir() string {
	return filepath.Join(b.root, ".cache", "kafka", "test-data-"+strconv.Itoa(b.port))
}

// script runs scripts/kafka.sh with the test broker's settings.
func (b *testBroker) script(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(b.root, "scripts", "kafka.sh")}, args...)...)
	cmd.Env = b.env()
	cmd.Dir = b.root
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func repoRoot() (string, error) { return testutil.RepoRoot() }

// need returns the broker's plain address, starting the broker on first use. A
// missing java, mvn or broker fails the test; it is never skipped.
func (b *testBroker) need(t testing.TB) string {
	t.Helper()
	b.once.Do(func() {
		if p := os.Getenv("XMODAL_TEST_KAFKA_PORT"); p != "" {
			if b.port, b.err = strconv.Atoi(p); b.err != nil {
				return
			}
		}
		if b.root, b.err = repoRoot(); b.err != nil {
			return
		}
		// A broker that a test run started carries this mark, so that one left
		// behind by a crashed run is stopped by the next; one started by hand is
		// used and left running.
		mark := filepath.Join(b.dataDir(), "started-by-go-test")
		if _, err := b.script(30*time.Second, "status"); err == nil {
			_, err := os.Stat(mark)
			b.started = err == nil
			return
		}
		out, err := b.script(10*time.Minute, "start")
		if err != nil {
			b.err = fmt.Errorf("%v\n%s", err, out)
			return
		}
		b.started = true
		os.WriteFile(mark, nil, 0o644)
	})
	if b.err != nil {
		testutil.Unavailable(t, "Kafka broker", "`scripts/kafka.sh start` (KAFKA_PORT=%d) failed; it needs java >= 17, mvn and Maven Central (or a cached .cache/kafka): %v",
			b.port, b.err)
	}
	return b.plain()
}

func (b *testBroker) stop(t testing.TB) {
	t.Helper()
	if out, err := b.script(time.Minute, "stop"); err != nil {
		t.Fatalf("scripts/kafka.sh stop: %v\n%s", err, out)
	}
}

func (b *testBroker) start(t testing.TB) {
	t.Helper()
	if out, err := b.script(5*time.Minute, "start"); err != nil {
		t.Fatalf("Kafka broker did not restart: scripts/kafka.sh start: %v\n%s", err, out)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if broker.started {
		if out, err := broker.script(time.Minute, "stop"); err != nil {
			fmt.Fprintf(os.Stderr, "scripts/kafka.sh stop: %v\n%s", err, out)
		}
		os.RemoveAll(broker.dataDir())
	}
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

// newTopic creates a topic with n partitions and waits until each has a leader.
func newTopic(t testing.TB, addr string, partitions int) string {
	t.Helper()
	topic := name(t, "posts")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := admin(addr).CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{
		{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1}}})
	if err != nil {
		t.Fatalf("create topic %s: %v", topic, err)
	}
	if e := res.Errors[topic]; e != nil {
		t.Fatalf("create topic %s: %v", topic, e)
	}
	for {
		md, err := admin(addr).Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
		if err == nil && len(md.Topics) == 1 && md.Topics[0].Error == nil && len(md.Topics[0].Partitions) == partitions {
			ready := true
			for _, p := range md.Topics[0].Partitions {
				ready = ready && p.Leader.ID >= 0 && p.Error == nil
			}
			if ready {
				return topic
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("topic %s has no leaders: %v", topic, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
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

// eventually polls cond until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s; last state: %s", d, what, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitCommitted(t testing.TB, addr, group, topic string, want map[int]int64) {
	t.Helper()
	eventually(t, 30*time.Second, "committed offsets reach the ends "+fmt.Sprint(want), func() (bool, string) {
		got := committed(t, addr, group, topic, len(want))
		for p, end := range want {
			if got[p] == -1 && end == 0 { // an empty partition has nothing to commit
				got[p] = 0
			}
		}
		return maps.Equal(got, want), fmt.Sprint(got)
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
	eventually(t, 30*time.Second, fmt.Sprintf("partitions %v assigned", want), func() (bool, string) {
		got := s.Assigned()
		return slices.Equal(got, want), fmt.Sprint(got)
	})
}

func allPartitions(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}
