package kafka

// Partition readers: one per assigned partition, feeding Fetch.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

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
