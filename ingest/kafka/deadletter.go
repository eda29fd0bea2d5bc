package kafka

// Dead letters: the Source's own (Send), their headers, and the writer
// that `xmodal ingest` shares with it.

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/xmodal/xmodal/ingest"
)

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

// DeadLetterWriter writes dead letters to cfg.DLQTopic with the headers
// DeadLetterHeaders gives (the Source's own dead letters and those of
// `xmodal ingest --to kafka` alike). It implements ingest.DeadLetter.
type DeadLetterWriter struct {
	topic string
	w     *kafkago.Writer
}

// NewDeadLetterWriter returns a DeadLetterWriter on conn; the topic is created
// by the broker on first write when it does not exist (New creates it first).
func NewDeadLetterWriter(cfg Config, conn *Connection) *DeadLetterWriter {
	cfg = cfg.WithDefaults()
	return &DeadLetterWriter{topic: cfg.DLQTopic, w: &kafkago.Writer{Addr: kafkago.TCP(cfg.Brokers...), Topic: cfg.DLQTopic,
		Balancer: &kafkago.Hash{}, RequiredAcks: kafkago.RequireAll, MaxAttempts: 10, BatchTimeout: time.Millisecond,
		WriteTimeout: cfg.Timeout, ReadTimeout: cfg.Timeout, AllowAutoTopicCreation: true, Transport: conn.Transport,
		ErrorLogger: kafkago.LoggerFunc(func(f string, a ...any) { cfg.Logger.Debug("kafka dead-letter writer: " + fmt.Sprintf(f, a...)) })}}
}

// Topic is the dead-letter topic.
func (d *DeadLetterWriter) Topic() string { return d.topic }

// Send writes m's dead letter: its key (null when m had none), its value (null
// for a tombstone), and the dead-letter headers.
func (d *DeadLetterWriter) Send(ctx context.Context, m *ingest.Message, stage ingest.Stage, reason string) error {
	out := kafkago.Message{Key: []byte(m.Key), Value: m.Value, Headers: DeadLetterHeaders(m, stage, reason, time.Now())}
	if m.NoKey {
		out.Key = nil // a null key stays null
	}
	if m.Tombstone {
		out.Value = nil
	}
	if err := d.w.WriteMessages(ctx, out); err != nil {
		return fmt.Errorf("kafka: dead letter for %q to %s: %w", m.Key, d.topic, err)
	}
	return nil
}

// Close flushes and closes the writer.
func (d *DeadLetterWriter) Close() error { return d.w.Close() }

var _ ingest.DeadLetter = (*DeadLetterWriter)(nil)
