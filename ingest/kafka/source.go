package kafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"

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

// run follows the group from generation to generation until Close.
func (s *Source) run() {
	defer s.loop.Done()
	for {
		kg, err := s.group.Next(s.ctx)
		if err != nil {
			if errors.Is(err, kafkago.ErrGroupClosed) || s.ctx.Err() != nil {
				return
			}
			s.m.groupErrors.Inc()
			s.warn("group", "consumer group join failed; retrying", "err", err)
			continue
		}
		s.m.generations.Inc()
		s.startGeneration(kg)
	}
}

// startGeneration runs one generation: it loads the delivery history of the
// assigned partitions, starts one reader per partition, and commits on an
// interval; when the generation ends (rebalance, lost coordinator, Close) it
// commits what is safe and abandons the rest.
func (s *Source) startGeneration(kg *kafkago.Generation) {
	g := &generation{kg: kg, parts: map[int]*partition{}}
	assigned := kg.Assignments[s.cfg.Topic]
	kg.Start(func(ctx context.Context) {
		ids := make([]int, 0, len(assigned))
		for _, a := range assigned {
			ids = append(ids, a.ID)
		}
		slices.Sort(ids)
		s.log.Info("partitions assigned", "generation", kg.ID, "member", kg.MemberID, "partitions", ids)
		if s.cfg.OnAssign != nil {
			s.cfg.OnAssign(ids)
		}
		var hist map[int][]span
		for backoff := 100 * time.Millisecond; ; backoff = min(backoff*2, 5*time.Second) {
			var err error
			if hist, err = s.loadHistory(ctx); err == nil {
				break
			}
			s.warn("history", "reading the attempts table failed; retrying", "topic", s.cfg.AttemptsTopic, "err", err)
			if !sleep(ctx, backoff) {
				s.teardown(g)
				return
			}
		}
		s.mu.Lock()
		for _, a := range assigned {
			p := &partition{gen: g, id: a.ID, label: strconv.Itoa(a.ID), track: newTracker(), committed: -1, hwm: -1, cur: span{-1, -1}}
			if a.Offset >= 0 {
				p.committed = a.Offset
				s.m.committed.WithLabelValues(s.cfg.Topic, p.label).Set(float64(a.Offset))
			}
			p.prior = prune(hist[a.ID], p.committed)
			g.parts[a.ID] = p
		}
		s.gen = g
		s.mu.Unlock()
		for _, a := range assigned {
			p, off := g.parts[a.ID], a.Offset
			kg.Start(func(ctx context.Context) { s.readPartition(ctx, p, off) })
		}
		t := time.NewTicker(s.cfg.CommitInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				s.teardown(g)
				return
			case <-t.C:
				s.commit(g)
			}
		}
	})
}

// readPartition feeds one partition's messages, from offset on, to Fetch.
func (s *Source) readPartition(ctx context.Context, p *partition, offset int64) {
	for ctx.Err() == nil {
		r := kafkago.NewReader(kafkago.ReaderConfig{
			Brokers: s.cfg.Brokers, Topic: s.cfg.Topic, Partition: p.id, Dialer: s.conn.Dialer,
			MinBytes: s.cfg.MinBytes, MaxBytes: s.cfg.MaxBytes, MaxWait: s.cfg.MaxWait, QueueCapacity: 256,
			ReadBackoffMin: 100 * time.Millisecond, ReadBackoffMax: time.Second, MaxAttempts: 3,
			OffsetOutOfRangeError: true, Logger: s.kafkaLogger(slog.LevelDebug - 4), ErrorLogger: s.kafkaLogger(slog.LevelDebug),
		})
		if err := r.SetOffset(offset); err != nil {
			r.Close()
			s.warn("seek", "seek failed", "partition", p.id, "offset", offset, "err", err)
			return
		}
		for {
			msg, err := r.FetchMessage(ctx)
			if err != nil {
				if ctx.Err() != nil {
					r.Close()
					return
				}
				if errors.Is(err, kafkago.OffsetOutOfRange) {
					s.log.Error("offset out of range (retention or a recreated topic); restarting from the earliest offset",
						"partition", p.id, "offset", offset, "err", err)
					offset = kafkago.FirstOffset
					break
				}
				s.warn(fmt.Sprint("read", p.id), "reading a partition failed; retrying", "partition", p.id, "err", err)
				continue
			}
			offset = msg.Offset + 1
			select {
			case s.in <- fetched{p: p, msg: msg}:
			case <-ctx.Done():
				r.Close()
				return
			}
		}
		r.Close()
	}
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

// ack marks off done. Acks of a generation that ended are ignored: its
// partitions were committed as far as was safe and the rest will be redelivered.
func (s *Source) ack(p *partition, off int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !p.gen.revoked {
		p.track.ack(off)
	}
}

// safeOffsets returns, per partition, the offset to commit when it moved.
// Callers hold s.mu.
func (s *Source) safeOffsets(g *generation) map[int]int64 {
	out := map[int]int64{}
	for id, p := range g.parts {
		if off := p.track.safe(); off >= 0 && off > p.committed {
			out[id] = off
		}
	}
	return out
}

// commit commits g's safe offsets, if it is still the live generation.
func (s *Source) commit(g *generation) error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	if g.revoked {
		s.mu.Unlock()
		return nil
	}
	offs := s.safeOffsets(g)
	s.mu.Unlock()
	return s.commitOffsets(g, offs)
}

// commitOffsets sends offs; callers hold commitMu.
func (s *Source) commitOffsets(g *generation, offs map[int]int64) error {
	if len(offs) == 0 {
		return nil
	}
	t0 := time.Now()
	err := g.kg.CommitOffsets(map[string]map[int]int64{s.cfg.Topic: offs})
	if err != nil {
		s.m.commitErrors.Inc()
		s.warn("commit", "offset commit failed", "generation", g.kg.ID, "err", err)
		return fmt.Errorf("kafka: commit: %w", err)
	}
	s.m.commitTime.Observe(time.Since(t0).Seconds())
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, off := range offs {
		p := g.parts[id]
		if off > p.committed {
			p.committed = off
		}
		if !g.revoked {
			s.m.committed.WithLabelValues(s.cfg.Topic, p.label).Set(float64(p.committed))
			if p.hwm >= 0 {
				s.m.lag.WithLabelValues(s.cfg.Topic, p.label).Set(float64(max(p.hwm-p.committed, 0)))
			}
		}
	}
	return nil
}

// teardown ends g: no more hand-outs or acks count for it; what is safe is
// committed, the rest will be redelivered to the partitions' next owner.
func (s *Source) teardown(g *generation) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.handMu.Lock()
	s.mu.Lock()
	offs := s.safeOffsets(g)
	g.revoked = true
	if s.gen == g {
		s.gen = nil
	}
	outstanding := 0
	ids := slices.Sorted(maps.Keys(g.parts))
	for _, id := range ids {
		outstanding += g.parts[id].track.outstanding()
	}
	s.mu.Unlock()
	s.handMu.Unlock()
	err := s.commitOffsets(g, offs)
	s.mu.Lock()
	for _, id := range ids {
		s.m.committed.DeleteLabelValues(s.cfg.Topic, g.parts[id].label)
		s.m.lag.DeleteLabelValues(s.cfg.Topic, g.parts[id].label)
	}
	s.mu.Unlock()
	s.log.Info("partitions revoked", "generation", g.kg.ID, "partitions", ids, "committed", offs,
		"abandoned_unacked", outstanding, "commit_err", err)
}

// Flush commits the acknowledged offsets now instead of at the next interval.
func (s *Source) Flush(ctx context.Context) error {
	s.mu.Lock()
	g := s.gen
	s.mu.Unlock()
	if g == nil {
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- s.commit(g) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
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

// Send writes a dead letter: the original key, value and headers, plus the
// Xmodal-* headers naming the failure, to the DLQ topic, and waits until every
// in-sync replica has it.
func (s *Source) Send(ctx context.Context, m *ingest.Message, stage ingest.Stage, reason string) error {
	select {
	case <-s.closed:
		return ErrClosed
	default:
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if err := s.dlq.Send(wctx, m, stage, reason); err != nil {
		return err
	}
	s.m.deadLetters.WithLabelValues(string(stage)).Inc()
	return nil
}

// Dead-letter headers added besides ingest's.
const (
	HeaderSourceTopic     = "Xmodal-Source-Topic"
	HeaderSourcePartition = "Xmodal-Source-Partition"
	HeaderSourceOffset    = "Xmodal-Source-Offset"
)

// DeadLetterHeaders are the Kafka headers of m's dead letter: m's own headers
// (sorted by name) with the Xmodal-* ones replaced.
func DeadLetterHeaders(m *ingest.Message, stage ingest.Stage, reason string, at time.Time) []kafkago.Header {
	set := map[string]string{
		ingest.HeaderKey:     m.Key,
		ingest.HeaderReason:  reason,
		ingest.HeaderStage:   string(stage),
		ingest.HeaderOrigin:  m.Origin,
		ingest.HeaderAttempt: strconv.Itoa(m.Attempt),
		ingest.HeaderFailed:  at.UTC().Format(time.RFC3339Nano),
	}
	if topic, part, off, ok := ParseOrigin(m.Origin); ok {
		set[HeaderSourceTopic] = topic
		set[HeaderSourcePartition] = strconv.Itoa(part)
		set[HeaderSourceOffset] = strconv.FormatInt(off, 10)
	}
	var hs []kafkago.Header
	for _, k := range slices.Sorted(maps.Keys(m.Headers)) {
		if _, ours := set[k]; !ours {
			hs = append(hs, kafkago.Header{Key: k, Value: []byte(m.Headers[k])})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(set)) {
		hs = append(hs, kafkago.Header{Key: k, Value: []byte(set[k])})
	}
	return hs
}

// ParseOrigin reads a Kafka message's Origin ("topic T partition P offset O").
func ParseOrigin(origin string) (topic string, partition int, offset int64, ok bool) {
	f := strings.Fields(origin)
	if len(f) != 6 || f[0] != "topic" || f[2] != "partition" || f[4] != "offset" {
		return "", 0, 0, false
	}
	p, err1 := strconv.Atoi(f[3])
	o, err2 := strconv.ParseInt(f[5], 10, 64)
	if err1 != nil || err2 != nil || p < 0 || o < 0 {
		return "", 0, 0, false
	}
	return f[1], p, o, true
}

func historyKey(topic string, partition int) string { return topic + "/" + strconv.Itoa(partition) }

// loadHistory reads the attempts table from its start to its end, keeping the
// newest record of each of this topic's partitions.
func (s *Source) loadHistory(ctx context.Context) (map[int][]span, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*s.cfg.Timeout)
	defer cancel()
	lo, err := s.conn.Client.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{
		s.cfg.AttemptsTopic: {kafkago.FirstOffsetOf(0), kafkago.LastOffsetOf(0)}}})
	if err != nil {
		return nil, err
	}
	ps := lo.Topics[s.cfg.AttemptsTopic]
	if len(ps) == 0 {
		return nil, fmt.Errorf("no offsets for %s", s.cfg.AttemptsTopic)
	}
	if ps[0].Error != nil {
		return nil, ps[0].Error
	}
	first, end := ps[0].FirstOffset, ps[0].LastOffset
	out := map[int][]span{}
	prefix := s.cfg.Topic + "/"
	for off, empty := first, 0; off < end && empty < 3; {
		res, err := s.conn.Client.Fetch(ctx, &kafkago.FetchRequest{Topic: s.cfg.AttemptsTopic, Partition: 0, Offset: off,
			MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 100 * time.Millisecond})
		if err != nil {
			return nil, err
		}
		if res.Error != nil {
			return nil, res.Error
		}
		n := 0
		for {
			r, err := res.Records.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, err
			}
			n++
			off = r.Offset + 1
			key, err := protocol.ReadAll(r.Key)
			if err != nil {
				return nil, err
			}
			k, ok := strings.CutPrefix(string(key), prefix)
			if !ok {
				continue
			}
			part, err := strconv.Atoi(k)
			if err != nil {
				continue
			}
			if r.Value == nil {
				delete(out, part)
				continue
			}
			val, err := protocol.ReadAll(r.Value)
			if err != nil {
				return nil, err
			}
			spans, err := decodeSpans(val)
			if err != nil {
				s.log.Warn("ignoring a bad attempts record", "key", string(key), "err", err)
				continue
			}
			out[part] = spans
		}
		if n == 0 {
			empty++
		}
	}
	return out, nil
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
