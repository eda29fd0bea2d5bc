package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	kafkago "github.com/segmentio/kafka-go"
)

// EventsTopic is the topic of the match events of an indexer that ingests
// posts from postsTopic: topic when it is set, else "<postsTopic>.match-events".
func EventsTopic(topic, postsTopic string) string {
	if topic != "" {
		return topic
	}
	return postsTopic + ".match-events"
}

// TopicWriter writes keyed messages to one topic and returns only once every
// in-sync replica holds them (acks=all): what it was given is durable when
// Write returns nil. Keys go to partitions as the Java client's default
// partitioner puts them (murmur2), so that one key's messages stay in order on
// one partition. The indexer writes its match events with it.
type TopicWriter struct {
	topic string
	w     *kafkago.Writer
}

// NewTopicWriter checks the topic's name, creates the topic when it does not
// exist (the brokers' default partitions and replication) and returns its
// writer.
func NewTopicWriter(ctx context.Context, cfg Config, conn *Connection, topic string, log *slog.Logger) (*TopicWriter, error) {
	if err := validTopic(topic); err != nil {
		return nil, &ConfigError{Field: "Topic", Reason: err.Error()}
	}
	cfg = cfg.WithDefaults()
	if log == nil {
		log = cfg.Logger
	}
	cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	res, err := conn.Client.CreateTopics(cctx, &kafkago.CreateTopicsRequest{Topics: []kafkago.TopicConfig{
		{Topic: topic, NumPartitions: -1, ReplicationFactor: -1}}})
	if err != nil {
		return nil, fmt.Errorf("kafka: create topic %s: %w", topic, err)
	}
	switch e := res.Errors[topic]; {
	case e == nil, errors.Is(e, kafkago.TopicAlreadyExists):
	case errors.Is(e, kafkago.TopicAuthorizationFailed), errors.Is(e, kafkago.ClusterAuthorizationFailed):
		log.Warn("not allowed to create topic; assuming it exists", "name", topic, "err", e)
	default:
		return nil, fmt.Errorf("kafka: create topic %s: %w", topic, e)
	}
	return &TopicWriter{topic: topic, w: NewProducer(cfg, conn, topic, log)}, nil
}

// Topic is the topic written to.
func (t *TopicWriter) Topic() string { return t.topic }

// Write writes msgs (their Topic left empty) and returns once every in-sync
// replica has every one of them.
func (t *TopicWriter) Write(ctx context.Context, msgs ...kafkago.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := t.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("kafka: write %d messages to %s: %w", len(msgs), t.topic, err)
	}
	return nil
}

// Close flushes and closes the writer.
func (t *TopicWriter) Close() error { return t.w.Close() }
