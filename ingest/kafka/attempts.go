package kafka

// The attempts table: the compacted <group>.attempts topic that keeps how
// often each offset was handed out, across restarts and members.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
)

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
