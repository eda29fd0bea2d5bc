package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/xmodal/xmodal/ingest"
)

// ErrClosed is returned by Fetch and Send after Close.
var ErrClosed = errors.New("kafka: source closed")

// Source consumes the posts topic as a member of a consumer group. It implements
// ingest.Source and ingest.DeadLetter.
type Source struct {
	cfg   Config
	log   *slog.Logger
	conn  *Connection
	group *kafkago.ConsumerGroup
	dlq   *DeadLetterWriter
	hist  *kafkago.Writer // the attempts table
	m     *metrics

	in      chan fetched // from the partition readers
	pending []fetched    // received, not handed out (recording them failed)

	fetchMu  sync.Mutex // one Fetch at a time
	handMu   sync.Mutex // a hand-out (record + register) vs. a generation's teardown
	commitMu sync.Mutex // one commit at a time, so commits never go backwards
	mu       sync.Mutex // gen and every partition's state
	gen      *generation

	ctx     context.Context // ends the group loop
	cancel  context.CancelFunc
	loop    sync.WaitGroup
	closed  chan struct{}
	closeMu sync.Once
	warned  map[string]time.Time // rate limit for repeated warnings
	warnMu  sync.Mutex
}

type fetched struct {
	p   *partition
	msg kafkago.Message
}

// generation is this member's share of one consumer-group generation.
type generation struct {
	kg      *kafkago.Generation
	parts   map[int]*partition
	revoked bool // guarded by Source.mu; set once, when the generation ends
}

// partition is one assigned partition within a generation.
type partition struct {
	gen       *generation
	id        int
	label     string
	track     tracker
	committed int64  // next offset to read as last committed; -1 unknown
	hwm       int64  // high-water mark seen on fetch; -1 unknown
	prior     []span // delivery history of earlier generations
	cur       span   // what this generation handed out; From -1 before the first
}

// New validates cfg, checks that the brokers answer (and accept the SASL
// credentials) and that the topic exists, creates the dead-letter and attempts
// topics when missing, and joins the consumer group in the background.
func New(ctx context.Context, cfg Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	conn, err := cfg.Connect()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, log: cfg.Logger.With("component", "kafka", "topic", cfg.Topic, "group", cfg.Group),
		conn: conn, m: m, in: make(chan fetched, cfg.QueueSize), closed: make(chan struct{}), warned: map[string]time.Time{}}
	if err := Probe(ctx, cfg, conn); err != nil {
		return nil, err
	}
	if err := s.ensureTopics(ctx); err != nil {
		return nil, err
	}
	s.dlq = NewDeadLetterWriter(cfg, conn)
	s.hist = &kafkago.Writer{Addr: kafkago.TCP(cfg.Brokers...), Topic: cfg.AttemptsTopic, Balancer: &kafkago.Hash{},
		RequiredAcks: kafkago.RequireAll, BatchTimeout: time.Millisecond, BatchSize: 10000, WriteTimeout: cfg.Timeout,
		ReadTimeout: cfg.Timeout, MaxAttempts: 3, Transport: conn.Transport, ErrorLogger: s.kafkaLogger(slog.LevelDebug)}
	start := kafkago.FirstOffset
	if cfg.StartOffset == "latest" {
		start = kafkago.LastOffset
	}
	s.group, err = kafkago.NewConsumerGroup(kafkago.ConsumerGroupConfig{
		ID: cfg.Group, Brokers: cfg.Brokers, Dialer: conn.Dialer, Topics: []string{cfg.Topic},
		HeartbeatInterval: cfg.HeartbeatInterval, SessionTimeout: cfg.SessionTimeout, RebalanceTimeout: cfg.RebalanceTimeout,
		JoinGroupBackoff: cfg.JoinBackoff, StartOffset: start, Timeout: cfg.Timeout,
		WatchPartitionChanges: true, PartitionWatchInterval: 10 * time.Second,
		Logger: s.kafkaLogger(slog.LevelDebug), ErrorLogger: s.kafkaLogger(slog.LevelDebug),
	})
	if err != nil {
		s.dlq.Close()
		s.hist.Close()
		return nil, fmt.Errorf("kafka: consumer group %q: %w", cfg.Group, err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.loop.Add(1)
	go s.run()
	return s, nil
}

// ensureTopics creates the dead-letter topic (broker defaults) and the attempts
// table (one compacted partition) when they do not exist.
func (s *Source) ensureTopics(ctx context.Context) error {
	res, err := s.conn.Client.CreateTopics(ctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{
		{Topic: s.cfg.DLQTopic, NumPartitions: -1, ReplicationFactor: -1},
		{Topic: s.cfg.AttemptsTopic, NumPartitions: 1, ReplicationFactor: -1, ConfigEntries: []kafkago.ConfigEntry{
			{ConfigName: "cleanup.policy", ConfigValue: "compact"},
			// Small segments, so that the cleaner compacts the table down to one
			// record per partition soon and a rebalance reads little.
			{ConfigName: "segment.ms", ConfigValue: "60000"},
			{ConfigName: "segment.bytes", ConfigValue: "8388608"},
			{ConfigName: "min.cleanable.dirty.ratio", ConfigValue: "0.1"},
		}},
	}})
	if err != nil {
		return fmt.Errorf("kafka: create topics %s and %s: %w", s.cfg.DLQTopic, s.cfg.AttemptsTopic, err)
	}
	for name, e := range res.Errors {
		switch {
		case e == nil, errors.Is(e, kafkago.TopicAlreadyExists):
		case errors.Is(e, kafkago.TopicAuthorizationFailed), errors.Is(e, kafkago.ClusterAuthorizationFailed):
			s.log.Warn("not allowed to create topic; assuming it exists", "name", name, "err", e)
		default:
			return fmt.Errorf("kafka: create topic %s: %w", name, e)
		}
	}
	return nil
}

// Fetch returns up to n messages in partition order, waiting up to wait for
// the batch to fill; it returns no messages and no error when none arrived. Each
// message's delivery is recorded in the attempts table before it is returned.
func (s *Source) Fetch(ctx context.Context, n int, wait time.Duration) ([]*ingest.Message, error) {
	s.fetchMu.Lock()
	defer s.fetchMu.Unlock()
	select {
	case <-s.closed:
		return nil, ErrClosed
	default:
	}
	n = max(n, 1)
	batch := s.live(s.pending)
	s.pending = nil
	if d, ok := ctx.Deadline(); ok && time.Until(d) < wait {
		wait = time.Until(d)
	}
	timer := time.NewTimer(max(wait, 0))
	defer timer.Stop()
	for len(batch) < n {
		select {
		case f := <-s.in:
			batch = append(batch, f)
			continue
		default:
		}
		select {
		case f := <-s.in:
			batch = append(batch, f)
			continue
		case <-timer.C:
		case <-ctx.Done():
			s.pending = batch
			return nil, ctx.Err()
		case <-s.closed:
			return nil, ErrClosed
		}
		break
	}
	return s.handOut(ctx, s.live(batch))
}

// live drops messages of generations that ended.
func (s *Source) live(batch []fetched) []fetched {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := batch[:0]
	for _, f := range batch {
		if !f.p.gen.revoked {
			out = append(out, f)
		}
	}
	return out
}

// handOut records the batch's deliveries in the attempts table, then registers
// each offset as outstanding and wraps it. A batch whose recording fails is kept
// for the next Fetch.
func (s *Source) handOut(ctx context.Context, batch []fetched) ([]*ingest.Message, error) {
	if len(batch) == 0 {
		return nil, ctx.Err()
	}
	s.handMu.Lock()
	defer s.handMu.Unlock()
	batch = s.live(batch) // a generation may have ended while we waited
	if len(batch) == 0 {
		return nil, nil
	}
	// One history record per partition: earlier generations' spans plus this
	// generation's, extended to the batch's last offset.
	s.mu.Lock()
	last := map[*partition]int64{}
	var order []*partition
	for _, f := range batch {
		if _, ok := last[f.p]; !ok {
			order = append(order, f.p)
		}
		last[f.p] = f.msg.Offset
	}
	recs := make([]kafkago.Message, 0, len(order))
	for _, p := range order {
		cur := p.cur
		if cur.From < 0 {
			cur.From = batch[slices.IndexFunc(batch, func(f fetched) bool { return f.p == p })].msg.Offset
		}
		cur.To = last[p]
		spans := prune(append(slices.Clone(p.prior), cur), p.committed)
		recs = append(recs, kafkago.Message{Key: []byte(historyKey(s.cfg.Topic, p.id)), Value: encodeSpans(spans)})
	}
	s.mu.Unlock()

	t0 := time.Now()
	wctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	err := s.hist.WriteMessages(wctx, recs...)
	cancel()
	if err != nil {
		s.pending = batch
		return nil, fmt.Errorf("kafka: recording deliveries in %s: %w", s.cfg.AttemptsTopic, err)
	}
	s.m.historyTime.Observe(time.Since(t0).Seconds())

	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*ingest.Message, 0, len(batch))
	for _, f := range batch {
		p, km := f.p, f.msg
		if p.cur.From < 0 {
			p.cur.From = km.Offset
		}
		p.cur.To = km.Offset
		if !p.track.add(km.Offset) {
			// The partition went backwards (a truncated or recreated topic after an
			// out-of-range reset): start the bookkeeping over from here.
			s.log.Error("partition offsets went backwards; resetting its commit point", "partition", p.id, "offset", km.Offset)
			p.track = newTracker()
			p.track.add(km.Offset)
			p.committed, p.cur = -1, span{km.Offset, km.Offset}
		}
		if km.HighWaterMark > p.hwm {
			p.hwm = km.HighWaterMark
			if p.committed >= 0 {
				s.m.lag.WithLabelValues(s.cfg.Topic, p.label).Set(float64(max(p.hwm-p.committed, 0)))
			}
		}
		off := km.Offset
		m := ingest.NewMessage(string(km.Key), km.Value, func(context.Context) error { s.ack(p, off); return nil })
		m.NoKey = km.Key == nil
		m.Origin = fmt.Sprintf("topic %s partition %d offset %d", km.Topic, km.Partition, km.Offset)
		m.Seq = uint64(km.Offset) + 1
		m.Attempt = attemptOf(p.prior, km.Offset)
		if len(km.Headers) > 0 {
			m.Headers = make(map[string]string, len(km.Headers))
			for _, h := range km.Headers {
				m.Headers[h.Key] = string(h.Value)
			}
		}
		out = append(out, m)
	}
	s.m.fetched.WithLabelValues(s.cfg.Topic).Add(float64(len(out)))
	return out, nil
}

// Assigned lists the partitions this member owns in the current generation.
func (s *Source) Assigned() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(s.gen.parts))
}

// Close commits what is safe, leaves the group and releases the connections.
// Acks after Close are ignored. It waits for the group to wind down until ctx ends.
func (s *Source) Close(ctx context.Context) error {
	var err error
	s.closeMu.Do(func() {
		close(s.closed)
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.group.Close() // ends the generation (teardown commits) and leaves the group
			s.cancel()
			s.loop.Wait()
			s.fetchMu.Lock() // a Fetch in flight has returned
			s.pending = nil
			s.fetchMu.Unlock()
			s.dlq.Close()
			s.hist.Close()
		}()
		select {
		case <-done:
		case <-ctx.Done():
			err = fmt.Errorf("kafka: close: %w", ctx.Err())
		}
	})
	return err
}

// kafkaLogger adapts kafka-go's Printf logging to slog at level.
func (s *Source) kafkaLogger(level slog.Level) kafkago.Logger {
	return kafkago.LoggerFunc(func(format string, args ...any) {
		if s.log.Enabled(context.Background(), level) {
			s.log.Log(context.Background(), level, strings.TrimSpace(fmt.Sprintf(format, args...)))
		}
	})
}

// warn logs at most once per 10 s per key, so an outage does not flood the log.
func (s *Source) warn(key, msg string, args ...any) {
	s.warnMu.Lock()
	last, seen := s.warned[key]
	now := time.Now()
	if seen && now.Sub(last) < 10*time.Second {
		s.warnMu.Unlock()
		return
	}
	s.warned[key] = now
	s.warnMu.Unlock()
	s.log.Warn(msg, args...)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

var (
	_ ingest.Source     = (*Source)(nil)
	_ ingest.DeadLetter = (*Source)(nil)
)
