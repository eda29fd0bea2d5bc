package workers_test

import (
	"context"
	"fmt"
	"image/color"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/workers"
)

// BenchmarkSpine measures posts/s from the JetStream stream to the embedded index
// (decode, encode with the parity model, one fsynced write per batch, confirmed
// acks). One op is one post: each run publishes b.N posts with the timer
// stopped, then times the pipeline from its start until every post is
// acknowledged.
func BenchmarkSpine(b *testing.B) {
	for _, kind := range []string{"text", "image"} {
		b.Run(kind, func(b *testing.B) {
			e := newEnv(b)
			for i := range b.N {
				id := fmt.Sprintf("p%d", i)
				if kind == "text" {
					e.publish(b, id, post(id, fmt.Sprintf("post %d about #topic%d with @user%d", i, i%13, i%7), nil))
				} else {
					e.publish(b, id, post(id, "", pngBytes(color.RGBA{uint8(i), uint8(i * 7), uint8(i * 13), 255})))
				}
			}
			p, err := workers.New(workers.Config{BatchSize: 32, FetchWait: 5 * time.Millisecond, KeepAlive: testAckWait / 3},
				workers.Deps{Source: e.src, DeadLetter: e.src, Sink: e.ix, Deny: e.deny, Embedder: e.model, Decode: decode})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			b.ResetTimer()
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			for !e.allAcked(b) {
				time.Sleep(2 * time.Millisecond)
			}
			el := time.Since(start)
			b.StopTimer()
			cancel()
			<-done
			if got := e.count(map[string]domain.Modality{"text": domain.ModalityText, "image": domain.ModalityImage}[kind]); got != b.N {
				b.Fatalf("%d %s records for %d posts", got, kind, b.N)
			}
			b.ReportMetric(float64(b.N)/el.Seconds(), "posts/s")
		})
	}
}
