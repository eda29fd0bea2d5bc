package imageprep

import (
	"context"
	"fmt"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// Budget bounds the memory of the decodes in flight across every caller
// that shares it (the media workers and the query service of one process):
// a decode reserves its estimated peak (decoded pixels plus the codec's
// working memory) before allocating anything, waits while others hold the
// budget, and returns it when the caller releases the decoded image. A
// single image that needs more than the whole budget is refused with
// ErrTooLarge. Waiting honours the caller's context.
type Budget struct {
	sem   *semaphore.Weighted
	limit int64
	used  atomic.Int64
	high  atomic.Int64
}

// NewBudget returns a budget of limit bytes (> 0).
func NewBudget(limit int64) *Budget {
	if limit <= 0 {
		panic(fmt.Sprintf("imageprep: budget of %d bytes", limit))
	}
	return &Budget{sem: semaphore.NewWeighted(limit), limit: limit}
}

// Limit is the budget's size in bytes.
func (b *Budget) Limit() int64 { return b.limit }

// InUse is the number of bytes reserved now.
func (b *Budget) InUse() int64 { return b.used.Load() }

// HighWater is the most bytes ever reserved at once.
func (b *Budget) HighWater() int64 { return b.high.Load() }

// reservation is bytes held from a budget (a nil budget holds nothing).
type reservation struct {
	b *Budget
	n int64
}

// reserve waits for n bytes of b (nil: no budget).
func (b *Budget) reserve(ctx context.Context, n int64, what string) (*reservation, error) {
	if b == nil {
		return &reservation{}, nil
	}
	n = max(n, 1)
	if n > b.limit {
		return nil, fmt.Errorf("%w: %s needs about %d MB to decode, over the decode memory budget of %d MB",
			ErrTooLarge, what, (n+(1<<20)-1)>>20, b.limit>>20)
	}
	if err := b.sem.Acquire(ctx, n); err != nil {
		return nil, err
	}
	u := b.used.Add(n)
	for {
		h := b.high.Load()
		if u <= h || b.high.CompareAndSwap(h, u) {
			break
		}
	}
	return &reservation{b: b, n: n}, nil
}

// shrink gives back what is held above n bytes.
func (r *reservation) shrink(n int64) {
	if r == nil || r.b == nil || n >= r.n {
		return
	}
	n = max(n, 0)
	d := r.n - n
	r.n = n
	r.b.used.Add(-d)
	r.b.sem.Release(d)
}

// join moves what o holds into r (both from the same budget).
func (r *reservation) join(o *reservation) {
	if r == nil || o == nil || o.b == nil {
		return
	}
	r.b, r.n = o.b, r.n+o.n
	o.n = 0
}

// release gives everything back; it is safe to call more than once.
func (r *reservation) release() { r.shrink(0) }
