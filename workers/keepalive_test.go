package workers_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/workers"
)

// slowEmbedder makes its first text batch take longer than the ack wait.
type slowEmbedder struct {
	workers.Embedder
	delay time.Duration
	calls atomic.Int32
}

func (s *slowEmbedder) EmbedTexts(ctx context.Context, texts []string) ([][]float32, error) {
	if s.calls.Add(1) == 1 {
		select {
		case <-time.After(s.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.Embedder.EmbedTexts(ctx, texts)
}

// TestSlowBatchIsKeptAlive: a post whose encoding outlasts the ack wait is
// kept alive (reported in progress) and delivered once, not redelivered to be
// encoded again.
func TestSlowBatchIsKeptAlive(t *testing.T) {
	e := newEnv(t)
	e.publish(t, "slow", post("slow", "a post the model takes its time over", nil))
	emb := &slowEmbedder{Embedder: e.model, delay: testAckWait * 2}
	p := newPipeline(t, e, nil, emb, workers.Config{})
	runUntil(t, p, func() bool { return e.allAcked(t) })
	if got := e.count(domain.ModalityText); got != 1 {
		t.Errorf("%d text records, want 1", got)
	}
	cons, err := e.js.Consumer(context.Background(), "XMODAL_POSTS", "indexer")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d := info.Delivered.Consumer; d != 1 || emb.calls.Load() != 1 {
		t.Errorf("delivered %d times and encoded in %d model calls, want 1 and 1: the post was redelivered while in flight (ack wait %v)",
			d, emb.calls.Load(), testAckWait)
	}
}
