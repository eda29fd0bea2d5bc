package workers

import (
	"context"
	"time"
)

// batcher groups the inputs of one modality into model batches.
//
// A batch opens with its first input and is offered to the encoders when it
// holds max inputs or when wait has passed since it opened. An offered batch
// that no encoder takes at once keeps growing (up to max) until one does, so
// a busy encoder gets the largest batch the queue allows and an idle one
// never waits longer than wait: dynamic batching.
type batcher[T any] struct {
	in   <-chan T
	out  chan<- []T
	max  int
	wait time.Duration
	// timer starts a timer of d; tests replace it to control time.
	timer func(d time.Duration) (<-chan time.Time, func())
}

func realTimer(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}

// run forms batches until ctx ends. Inputs it holds when ctx ends are dropped
// (the pipeline abandons them unacknowledged).
func (b *batcher[T]) run(ctx context.Context) {
	timer := b.timer
	if timer == nil {
		timer = realTimer
	}
	for {
		var cur []T
		select {
		case x := <-b.in:
			cur = append(cur, x)
		case <-ctx.Done():
			return
		}
		expired, stop := timer(b.wait)
	fill:
		for len(cur) < b.max {
			select {
			case x := <-b.in:
				cur = append(cur, x)
			case <-expired:
				break fill
			case <-ctx.Done():
				stop()
				return
			}
		}
		stop()
		// Offer the batch; while no encoder takes it, let it grow.
	offer:
		for {
			if len(cur) >= b.max {
				select {
				case b.out <- cur:
				case <-ctx.Done():
					return
				}
				break offer
			}
			select {
			case b.out <- cur:
				break offer
			case x := <-b.in:
				cur = append(cur, x)
			case <-ctx.Done():
				return
			}
		}
	}
}
