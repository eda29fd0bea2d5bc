package kafka

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	kafkago "github.com/segmentio/kafka-go"
)

// BenchmarkConsume measures messages per second through Source.Fetch with an
// immediate Ack of each message, over a 6-partition topic, from the first Fetch
// until the commits reach the end offsets. Run it with -benchtime=Nx (N messages).
func BenchmarkConsume(b *testing.B) {
	addr := broker.Need(b).Plain()
	topic := newTopic(b, 6)
	produceBulk(b, addr, topic, b.N)
	group := name(b, "group")
	cfg := testConfig(b, addr, topic, group)
	cfg.CommitInterval = 200 * time.Millisecond
	s := newSource(b, cfg)
	waitAssigned(b, s, allPartitions(6))
	ends := endOffsets(b, addr, topic, 6)
	ctx := context.Background()

	b.ResetTimer()
	t0 := time.Now()
	for n := 0; n < b.N; {
		msgs, err := s.Fetch(ctx, 256, 50*time.Millisecond)
		if err != nil {
			b.Fatal(err)
		}
		for _, m := range msgs {
			m.Ack(ctx)
		}
		n += len(msgs)
	}
	consumed := time.Since(t0)
	if err := s.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	waitCommitted(b, addr, group, topic, ends)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/consumed.Seconds(), "msgs/s")
	b.ReportMetric(histMean(b, s.m.commitTime)*1e3, "commit-ms")
	b.ReportMetric(histMean(b, s.m.historyTime)*1e3, "attempts-write-ms")
}

// BenchmarkCommit measures one synchronous offset commit (Ack + Flush) to the
// group coordinator.
func BenchmarkCommit(b *testing.B) {
	addr := broker.Need(b).Plain()
	topic := newTopic(b, 1)
	produceBulk(b, addr, topic, b.N)
	cfg := testConfig(b, addr, topic, name(b, "group"))
	cfg.CommitInterval = time.Hour // only Flush commits
	s := newSource(b, cfg)
	ctx := context.Background()
	msgs := fetchN(b, s, b.N, 2*time.Minute)
	b.ResetTimer()
	for _, m := range msgs[:b.N] {
		m.Ack(ctx)
		if err := s.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(histMean(b, s.m.commitTime)*1e3, "commit-ms")
}

func histMean(b *testing.B, h interface{ Write(*dto.Metric) error }) float64 {
	var d dto.Metric
	if err := h.Write(&d); err != nil || d.GetHistogram().GetSampleCount() == 0 {
		return 0
	}
	return d.GetHistogram().GetSampleSum() / float64(d.GetHistogram().GetSampleCount())
}

// produceBulk writes n messages of about 200 bytes, round-robin over partitions.
func produceBulk(b *testing.B, addr, topic string, n int) {
	b.Helper()
	w := &kafkago.Writer{Addr: kafkago.TCP(addr), Topic: topic, RequiredAcks: kafkago.RequireOne,
		BatchTimeout: 5 * time.Millisecond, BatchSize: 2000, Balancer: &kafkago.RoundRobin{}}
	defer w.Close()
	pad := strings.Repeat("x", 120)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for start := 0; start < n; start += 5000 {
		msgs := make([]kafkago.Message, 0, 5000)
		for i := start; i < min(n, start+5000); i++ {
			msgs = append(msgs, kafkago.Message{Key: []byte(fmt.Sprintf("post-%d", i)),
				Value: []byte(fmt.Sprintf(`{"schema":1,"id":"post-%d","text":"%s"}`, i, pad))})
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			b.Fatalf("produce: %v", err)
		}
	}
}
