package kafka

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/internal/testutil"
)

// value reads a counter's or gauge's value.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		return -1
	}
	if d.Counter != nil {
		return d.GetCounter().GetValue()
	}
	return d.GetGauge().GetValue()
}

// fetchN fetches until n messages arrived (or fails after d).
func fetchN(t testing.TB, s *Source, n int, d time.Duration) []*ingest.Message {
	t.Helper()
	var out []*ingest.Message
	deadline := time.Now().Add(d)
	for len(out) < n {
		if time.Now().After(deadline) {
			t.Fatalf("fetched %d of %d messages in %v", len(out), n, d)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		msgs, err := s.Fetch(ctx, 64, 100*time.Millisecond)
		cancel()
		if err != nil {
			t.Fatalf("Fetch: %v", err)
		}
		out = append(out, msgs...)
	}
	return out
}

func ackAll(t testing.TB, msgs []*ingest.Message) {
	t.Helper()
	for _, m := range msgs {
		if err := m.Ack(context.Background()); err != nil {
			t.Fatalf("Ack %s: %v", m.Origin, err)
		}
	}
}

func origin(t testing.TB, m *ingest.Message) (int, int64) {
	t.Helper()
	_, p, o, ok := ParseOrigin(m.Origin)
	if !ok {
		t.Fatalf("bad origin %q", m.Origin)
	}
	return p, o
}

// TestConsumeAcksInRandomOrder: 500 messages over 6 partitions, acknowledged in
// random order; commits reach the end offsets and every field is filled.
func TestConsumeAcksInRandomOrder(t *testing.T) {
	addr := broker.Need(t).Plain()
	topic := newTopic(t, 6)
	produce(t, addr, topic, 0, 499, 6)
	// A tombstone (null value) for post-499, on partition 499 % 6.
	w := &kafkago.Writer{Addr: kafkago.TCP(addr), Topic: topic, RequiredAcks: kafkago.RequireAll, BatchTimeout: time.Millisecond,
		Balancer: kafkago.BalancerFunc(func(kafkago.Message, ...int) int { return 499 % 6 })}
	if err := w.WriteMessages(context.Background(), kafkago.Message{Key: []byte("post-499")}); err != nil {
		t.Fatal(err)
	}
	w.Close()
	group := name(t, "group")
	reg := prometheus.NewRegistry()
	cfg := testConfig(t, addr, topic, group)
	cfg.Registerer = reg
	s := newSource(t, cfg)

	msgs := fetchN(t, s, 500, time.Minute)
	if len(msgs) != 500 {
		t.Fatalf("fetched %d messages, want 500", len(msgs))
	}
	seen := map[string]bool{}
	last := map[int]int64{}
	for _, m := range msgs {
		p, off := origin(t, m)
		if prev, ok := last[p]; ok && off <= prev {
			t.Fatalf("partition %d: offset %d after %d", p, off, prev)
		}
		last[p] = off
		if seen[m.Key] {
			t.Fatalf("%s handed out twice", m.Key)
		}
		seen[m.Key] = true
		i, _ := strconv.Atoi(strings.TrimPrefix(m.Key, "post-"))
		if p != i%6 || m.Seq != uint64(off)+1 || m.Attempt != 1 {
			t.Fatalf("%s: partition %d seq %d attempt %d (origin %q)", m.Key, p, m.Seq, m.Attempt, m.Origin)
		}
		if !strings.HasPrefix(m.Origin, "topic "+topic+" partition ") {
			t.Fatalf("origin %q", m.Origin)
		}
		if i == 499 {
			if !m.Tombstone || m.Value != nil {
				t.Fatalf("null value: tombstone %v value %q", m.Tombstone, m.Value)
			}
			continue
		}
		if m.Tombstone || string(m.Value) != fmt.Sprintf(`{"schema":1,"id":"post-%d","text":"hello %d"}`, i, i) || m.Headers["trace"] != strconv.Itoa(i) {
			t.Fatalf("%s: value %q headers %v", m.Key, m.Value, m.Headers)
		}
	}
	rand.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })
	ackAll(t, msgs)
	ends := endOffsets(t, addr, topic, 6)
	waitCommitted(t, addr, group, topic, ends)

	if got := value(s.m.fetched.WithLabelValues(topic)); got != 500 {
		t.Errorf("fetched metric = %v", got)
	}
	for p, end := range ends {
		testutil.Eventually(t, 5*time.Second, func() error {
			c := value(s.m.committed.WithLabelValues(topic, strconv.Itoa(p)))
			l := value(s.m.lag.WithLabelValues(topic, strconv.Itoa(p)))
			if !(c == float64(end) && l == 0) {
				return fmt.Errorf("metrics follow the commit; now partition %d committed %v lag %v", p, c, l)
			}
			return nil
		})
	}
	var h dto.Metric
	if err := s.m.commitTime.Write(&h); err != nil || h.GetHistogram().GetSampleCount() == 0 {
		t.Errorf("commit latency histogram: %v %v", h.GetHistogram().GetSampleCount(), err)
	}
}

// TestCommitStopsAtUnacked: nothing is committed past an unacknowledged
// message; acks after Close are no-ops; the next member gets the rest again with
// its attempt counted.
func TestCommitStopsAtUnacked(t *testing.T) {
	addr := broker.Need(t).Plain()
	topic := newTopic(t, 1)
	produce(t, addr, topic, 0, 50, 1)
	group := name(t, "group")
	cfg := testConfig(t, addr, topic, group)
	ctx := context.Background()
	s, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	msgs := fetchN(t, s, 50, 30*time.Second)
	var hold *ingest.Message
	for _, m := range msgs {
		if _, off := origin(t, m); off == 20 {
			hold = m
			continue
		}
		if err := m.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	waitCommitted(t, addr, group, topic, map[int]int64{0: 20})
	time.Sleep(5 * cfg.CommitInterval)
	if got := committed(t, addr, group, topic, 1); got[0] != 20 {
		t.Fatalf("committed %d past the unacked offset 20", got[0])
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Revoked: the ack is accepted and ignored.
	if err := hold.Ack(ctx); err != nil {
		t.Fatalf("ack after close: %v", err)
	}
	time.Sleep(3 * cfg.CommitInterval)
	if got := committed(t, addr, group, topic, 1); got[0] != 20 {
		t.Fatalf("an ack after Close was committed: %d", got[0])
	}

	// A new member resumes at 20; offsets 20..49 were handed out once before.
	s2 := newSource(t, cfg)
	again := fetchN(t, s2, 30, 30*time.Second)
	for i, m := range again {
		if _, off := origin(t, m); off != int64(20+i) || m.Attempt != 2 {
			t.Fatalf("redelivery %d: offset %d attempt %d", i, off, m.Attempt)
		}
	}
	ackAll(t, again)
	waitCommitted(t, addr, group, topic, map[int]int64{0: 50})
}

// TestAttemptsSurviveNewSource: a message never acknowledged counts one more
// attempt with every new Source instance, until it is acknowledged.
func TestAttemptsSurviveNewSource(t *testing.T) {
	addr := broker.Need(t).Plain()
	topic := newTopic(t, 2)
	produce(t, addr, topic, 0, 4, 2)
	group := name(t, "group")
	cfg := testConfig(t, addr, topic, group)
	ctx := context.Background()
	for want := 1; want <= 3; want++ {
		s, err := New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		msgs := fetchN(t, s, 4, 30*time.Second)
		for _, m := range msgs {
			if m.Attempt != want {
				t.Fatalf("instance %d: %s attempt %d", want, m.Origin, m.Attempt)
			}
		}
		if want == 3 {
			// Acknowledge post-0 and post-1 (one per partition); the others stay.
			for _, m := range msgs {
				if m.Key == "post-0" || m.Key == "post-1" {
					m.Ack(ctx)
				}
			}
		}
		if err := s.Close(ctx); err != nil { // commits what is safe
			t.Fatal(err)
		}
	}
	s := newSource(t, cfg)
	msgs := fetchN(t, s, 2, 30*time.Second)
	for _, m := range msgs {
		if (m.Key != "post-2" && m.Key != "post-3") || m.Attempt != 4 {
			t.Fatalf("after 3 instances: %s attempt %d", m.Key, m.Attempt)
		}
	}
	ackAll(t, msgs)
	waitCommitted(t, addr, group, topic, map[int]int64{0: 2, 1: 2})
}

// TestTwoMembersSplitAndTakeOver: two members split the partitions; when one
// closes mid-run the other takes its partitions over; every message is handed
// out at least once and the commits reach the ends.
func TestTwoMembersSplitAndTakeOver(t *testing.T) {
	addr := broker.Need(t).Plain()
	topic := newTopic(t, 6)
	produce(t, addr, topic, 0, 500, 6)
	group := name(t, "group")
	cfg := testConfig(t, addr, topic, group)
	cfg.MaxBytes = 2 << 10 // small fetches, so that consumption takes a while
	ctx := context.Background()

	var mu sync.Mutex
	seen := map[string]int{}
	perMember := map[string]int{}
	record := func(who string, msgs []*ingest.Message) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range msgs {
			seen[m.Key]++
			perMember[who]++
		}
	}
	a, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	waitAssigned(t, a, allPartitions(6))
	first := fetchN(t, a, 60, 30*time.Second)
	record("a", first)
	ackAll(t, first)

	b := newSource(t, cfg)
	// Keep both members fetching while the group rebalances: a rebalance waits
	// for every member to rejoin.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	consume := func(who string, s *Source, ackEvery int) {
		defer wg.Done()
		n := 0
		for {
			select {
			case <-stop:
				return
			default:
			}
			msgs, err := s.Fetch(ctx, 8, 50*time.Millisecond)
			if err != nil {
				return
			}
			record(who, msgs)
			for _, m := range msgs {
				n++
				if n%ackEvery != 0 { // leave some unacked on a
					m.Ack(ctx)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wg.Add(2)
	go consume("a", a, 7)
	go consume("b", b, 1<<30)
	testutil.Eventually(t, 30*time.Second, func() error {
		pa, pb := a.Assigned(), b.Assigned()
		all := slices.Sorted(slices.Values(append(slices.Clone(pa), pb...)))
		if !(len(pa) == 3 && len(pb) == 3 && slices.Equal(all, allPartitions(6))) {
			return fmt.Errorf("the partitions split 3/3; now a %v b %v", pa, pb)
		}
		return nil
	})
	testutil.Eventually(t, 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if !(perMember["b"] > 20 && perMember["a"] > 80) {
			return fmt.Errorf("both members consume; now %v", perMember)
		}
		return nil
	})
	closeCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	if err := a.Close(closeCtx); err != nil { // mid-run, with unacked messages
		t.Fatal(err)
	}
	cancel()
	waitAssigned(t, b, allPartitions(6))
	testutil.Eventually(t, 90*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if !(len(seen) == 500) {
			return fmt.Errorf("every message handed out; now %d distinct of 500, per member %v", len(seen), perMember)
		}
		return nil
	})
	waitCommitted(t, addr, group, topic, endOffsets(t, addr, topic, 6))
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for _, n := range seen {
		dups += n - 1
	}
	t.Logf("handed out: %v; redelivered %d", perMember, dups)
	if dups == 0 {
		t.Errorf("a closed with unacked messages, yet nothing was redelivered")
	}
}

// TestBrokerRestart: the broker stops and starts again on the same data in the
// middle of consumption; the source reconnects and finishes.
func TestBrokerRestart(t *testing.T) {
	addr := broker.Need(t).Plain()
	topic := newTopic(t, 3)
	produce(t, addr, topic, 0, 90, 3)
	group := name(t, "group")
	cfg := testConfig(t, addr, topic, group)
	s := newSource(t, cfg)
	msgs := fetchN(t, s, 90, 30*time.Second)
	ackAll(t, msgs[:45])
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		seen[m.Key] = true
	}

	broker.Need(t).Stop(t)
	// Fetch while the broker is away: no messages, no hang.
	for i := 0; i < 5; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		got, _ := s.Fetch(ctx, 10, 200*time.Millisecond)
		cancel()
		if len(got) > 0 {
			t.Fatalf("fetched %d messages with the broker down", len(got))
		}
	}
	// Acks while the broker is away: either the generation is still live (the
	// commit fails until the member rejoins, then the rest is redelivered) or it
	// ended and they are no-ops. Either way nothing is lost.
	ackAll(t, msgs[45:])
	broker.Need(t).Restart(t)
	produce(t, addr, topic, 90, 60, 3)

	deadline := time.Now().Add(2 * time.Minute)
	for len(seen) < 150 {
		if time.Now().After(deadline) {
			t.Fatalf("after the restart: %d of 150 messages seen", len(seen))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		got, err := s.Fetch(ctx, 64, 200*time.Millisecond)
		cancel()
		if err != nil {
			t.Logf("Fetch after restart: %v", err)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		for _, m := range got {
			seen[m.Key] = true
		}
		ackAll(t, got)
	}
	waitCommitted(t, addr, group, topic, endOffsets(t, addr, topic, 3))
}

// TestSASL: the SASL_PLAINTEXT listener accepts the script's user with PLAIN and
// SCRAM, and a wrong password fails New with an error that says so.
func TestSASL(t *testing.T) {
	addr := broker.Need(t).Plain()
	topic := newTopic(t, 1)
	produce(t, addr, topic, 0, 3, 1)
	for _, c := range []struct {
		mech, password string
		ok             bool
	}{
		{"plain", "xmodal-secret", true},
		{"scram-sha-256", "xmodal-secret", true},
		{"scram-sha-512", "xmodal-secret", true},
		{"plain", "wrong", false},
		{"scram-sha-512", "wrong", false},
	} {
		t.Run(c.mech+"/"+c.password, func(t *testing.T) {
			cfg := testConfig(t, broker.Need(t).SASL(), topic, name(t, "group"))
			cfg.SASL = SASL{Mechanism: c.mech, User: "xmodal", Password: c.password}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := New(ctx, cfg)
			if !c.ok {
				if err == nil {
					s.Close(ctx)
					t.Fatal("wrong password accepted")
				}
				msg := err.Error()
				if !strings.Contains(msg, "SASL") || !strings.Contains(msg, "authentication") || !strings.Contains(msg, `"xmodal"`) {
					t.Fatalf("unclear error: %v", err)
				}
				t.Logf("wrong password: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("New over SASL %s: %v", c.mech, err)
			}
			defer s.Close(ctx)
			msgs := fetchN(t, s, 3, 30*time.Second)
			ackAll(t, msgs)
		})
	}
	t.Run("no-sasl-on-sasl-port", func(t *testing.T) {
		cfg := testConfig(t, broker.Need(t).SASL(), topic, name(t, "group"))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		s, err := New(ctx, cfg)
		if err == nil {
			s.Close(ctx)
			t.Fatal("a plain client got through a SASL listener")
		}
		if !strings.Contains(err.Error(), "require SASL") {
			t.Fatalf("unclear error: %v", err)
		}
		t.Logf("plain client on the SASL listener: %v", err)
	})
}

// TestDeadLetter: the DLQ record carries the original key, value and headers and
// the Xmodal-* headers, written with acks=all.
func TestDeadLetter(t *testing.T) {
	addr := broker.Need(t).Plain()
	topic := newTopic(t, 2)
	produce(t, addr, topic, 0, 2, 2)
	cfg := testConfig(t, addr, topic, name(t, "group"))
	s := newSource(t, cfg)
	msgs := fetchN(t, s, 2, 30*time.Second)
	m := msgs[0]
	for _, x := range msgs {
		if x.Key == "post-1" {
			m = x
		}
	}
	before := time.Now().UTC().Add(-time.Second)
	if err := s.Send(context.Background(), m, ingest.StageDecode, "bad json: unexpected end"); err != nil {
		t.Fatalf("Send: %v", err)
	}
	ackAll(t, msgs)

	// The DLQ has the broker's default partition count; the key picks the partition.
	// (A fresh transport: kafka-go answers Metadata from its transport's cache.)
	tr := &kafkago.Transport{}
	defer tr.CloseIdleConnections()
	md, err := (&kafkago.Client{Addr: kafkago.TCP(addr), Transport: tr}).Metadata(context.Background(),
		&kafkago.MetadataRequest{Topics: []string{cfg.Topic + ".dlq"}})
	if err != nil || len(md.Topics) != 1 || len(md.Topics[0].Partitions) == 0 {
		t.Fatalf("DLQ metadata: %v %+v", err, md)
	}
	part := (&kafkago.Hash{}).Balance(kafkago.Message{Key: []byte(m.Key)}, allPartitions(len(md.Topics[0].Partitions))...)
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{addr}, Topic: cfg.Topic + ".dlq", Partition: part, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := r.ReadMessage(ctx)
	if err != nil {
		t.Fatalf("no dead letter in DLQ partition %d: %v", part, err)
	}
	checkDeadLetter(t, got, m, before)
}

func checkDeadLetter(t *testing.T, got kafkago.Message, m *ingest.Message, before time.Time) {
	t.Helper()
	_, part, off, _ := ParseOrigin(m.Origin)
	if string(got.Key) != "post-1" || string(got.Value) != string(m.Value) {
		t.Fatalf("dead letter key %q value %q, want post-1 %q", got.Key, got.Value, m.Value)
	}
	h := map[string]string{}
	for _, x := range got.Headers {
		h[x.Key] = string(x.Value)
	}
	want := map[string]string{
		"trace": "1", ingest.HeaderKey: "post-1", ingest.HeaderReason: "bad json: unexpected end", ingest.HeaderStage: "decode",
		ingest.HeaderOrigin: m.Origin, ingest.HeaderAttempt: "1",
		HeaderSourcePartition: strconv.Itoa(part), HeaderSourceOffset: strconv.FormatInt(off, 10),
	}
	for k, v := range want {
		if h[k] != v {
			t.Errorf("header %s = %q, want %q (all: %v)", k, h[k], v, h)
		}
	}
	at, err := time.Parse(time.RFC3339Nano, h[ingest.HeaderFailed])
	if err != nil || at.Before(before) || at.After(time.Now().Add(time.Second)) {
		t.Errorf("%s = %q", ingest.HeaderFailed, h[ingest.HeaderFailed])
	}
}

// TestNewFailsClearly: a missing topic and an unreachable broker.
func TestNewFailsClearly(t *testing.T) {
	addr := broker.Need(t).Plain()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := New(ctx, testConfig(t, addr, name(t, "missing"), "g"))
	if err == nil || !strings.Contains(err.Error(), "topic") {
		t.Fatalf("missing topic: %v", err)
	}
	cfg := testConfig(t, "127.0.0.1:1", "posts", "g")
	cfg.Timeout = time.Second
	if _, err := New(ctx, cfg); err == nil || !strings.Contains(err.Error(), "no broker answered") {
		t.Fatalf("unreachable broker: %v", err)
	}
}

// A record with a null key reaches the dead-letter topic with a null key, not
// an empty one. Read back with franz-go, which tells the two apart (kafka-go
// reads both as nil).
func TestDeadLetterKeepsANullKey(t *testing.T) {
	addr := broker.Need(t).Plain()
	topic := newTopic(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: nil, Value: []byte(`{"no":"key"}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, addr, topic, name(t, "group"))
	s := newSource(t, cfg)
	msgs := fetchN(t, s, 1, 30*time.Second)
	if !msgs[0].NoKey {
		t.Fatal("a record with a null key is not marked NoKey")
	}
	if err := s.Send(ctx, msgs[0], ingest.StageDecode, "no id"); err != nil {
		t.Fatal(err)
	}
	ackAll(t, msgs)
	rd, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic+".dlq"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	for {
		fs := rd.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("no dead letter read back: %v", err)
		}
		var got []*kgo.Record
		fs.EachRecord(func(r *kgo.Record) {
			if string(r.Value) == `{"no":"key"}` {
				got = append(got, r)
			}
		})
		if len(got) == 0 {
			continue
		}
		if got[0].Key != nil {
			t.Fatalf("dead letter key %q (non-null), want null", got[0].Key)
		}
		return
	}
}
