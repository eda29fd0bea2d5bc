package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	kafkago "github.com/segmentio/kafka-go"

	kafkasrc "github.com/xmodal/xmodal/ingest/kafka"
	"github.com/xmodal/xmodal/sink/matching"
)

// eventPublisher is where the match events of this process go (the matcher
// at ingest and the retro sweeps): the JetStream stream, and with
// kafka.brokers set (posts come from Kafka) also the Kafka topic
// kafka.events_topic. A batch is durable when both hold it.
func (a *app) eventPublisher(ctx context.Context) (matching.Publisher, error) {
	if a.evOut != nil {
		return a.evOut, nil
	}
	evs, err := a.openEvents(ctx)
	if err != nil {
		return nil, err
	}
	if len(a.cfg.Kafka.Brokers) == 0 {
		a.evOut = evs
		return evs, nil
	}
	kc, conn, err := kafkaConnect(a.cfg, "xmodal-events")
	if err != nil {
		return nil, err
	}
	topic := kafkasrc.EventsTopic(a.cfg.Kafka.EventsTopic, a.cfg.Kafka.Topic)
	w, err := kafkasrc.NewTopicWriter(ctx, kc, conn, topic, a.log)
	var ce *kafkasrc.ConfigError
	if errors.As(err, &ce) {
		return nil, fmt.Errorf("config kafka.events_topic: %s", ce.Reason)
	}
	if err != nil {
		return nil, err
	}
	a.kafkaEvents = w
	a.log.Info("match events also go to Kafka", "topic", topic)
	a.evOut = matching.Publishers{evs, kafkaEvents{w}}
	return a.evOut, nil
}

// kafkaEvents writes match events to the Kafka topic: key the post id (a
// post's events stay in order on one partition), value the event's JSON, the
// event id in the Xmodal-Event-Id header and the bank in Xmodal-Bank (for
// consumers that route without parsing).
type kafkaEvents struct{ w *kafkasrc.TopicWriter }

func (k kafkaEvents) Publish(ctx context.Context, evs []matching.Event) error {
	msgs := make([]kafkago.Message, len(evs))
	for i, e := range evs {
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		msgs[i] = kafkago.Message{Key: []byte(e.PostID), Value: b, Headers: []kafkago.Header{
			{Key: matching.HeaderEventID, Value: []byte(e.ID)}, {Key: "Xmodal-Bank", Value: []byte(e.Bank)}}}
	}
	return k.w.Write(ctx, msgs...)
}
