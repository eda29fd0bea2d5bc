package workers

import (
	"context"
	"slices"
	"testing"
	"time"
)

// fakeClock hands the batcher timers that fire only when the test says so.
type fakeClock struct {
	started chan chan time.Time // each timer the batcher starts
}

func newFakeClock() *fakeClock { return &fakeClock{started: make(chan chan time.Time, 16)} }

func (c *fakeClock) timer(time.Duration) (<-chan time.Time, func()) {
	ch := make(chan time.Time, 1)
	c.started <- ch
	return ch, func() {}
}

// next waits for the batcher to start its next timer.
func (c *fakeClock) next(t *testing.T) chan time.Time {
	t.Helper()
	select {
	case ch := <-c.started:
		return ch
	case <-time.After(10 * time.Second):
		t.Fatal("the batcher started no timer")
		return nil
	}
}

type batcherRig struct {
	in    chan int
	out   chan []int
	clock *fakeClock
}

func startBatcher(t *testing.T, max int) *batcherRig {
	t.Helper()
	r := &batcherRig{in: make(chan int, 256), out: make(chan []int), clock: newFakeClock()}
	b := &batcher[int]{in: r.in, out: r.out, max: max, wait: time.Hour, timer: r.clock.timer}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func (r *batcherRig) recv(t *testing.T) []int {
	t.Helper()
	select {
	case b := <-r.out:
		return b
	case <-time.After(10 * time.Second):
		t.Fatal("no batch offered")
		return nil
	}
}

// offered reports whether a batch is on offer right now.
func (r *batcherRig) offered() ([]int, bool) {
	select {
	case b := <-r.out:
		return b, true
	default:
		return nil, false
	}
}

// waitQueued waits until the batcher has taken all but n queued inputs.
func (r *batcherRig) waitQueued(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(r.in) > n {
		if time.Now().After(deadline) {
			t.Fatalf("%d inputs still queued, want %d", len(r.in), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func seq(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func TestBatcher(t *testing.T) {
	tests := []struct {
		name string
		max  int
		run  func(t *testing.T, r *batcherRig)
	}{
		{"trickle: a lone input is offered when max-wait expires, alone", 8, func(t *testing.T, r *batcherRig) {
			for i := range 3 {
				r.in <- i
				expire := r.clock.next(t)
				// The batch is open and not full: nothing may be offered before
				// the wait ends, however long the test takes here.
				if b, ok := r.offered(); ok {
					t.Fatalf("input %d: batch %v offered before max-wait", i, b)
				}
				expire <- time.Now()
				if b := r.recv(t); !slices.Equal(b, []int{i}) {
					t.Fatalf("input %d: batch %v, want [%d]", i, b, i)
				}
			}
		}},
		{"burst: full batches go without waiting, in order", 8, func(t *testing.T, r *batcherRig) {
			for i := range 20 {
				r.in <- i
			}
			r.clock.next(t)
			if b := r.recv(t); !slices.Equal(b, seq(0, 8)) {
				t.Fatalf("first batch %v, want 0..7", b)
			}
			r.clock.next(t)
			if b := r.recv(t); !slices.Equal(b, seq(8, 16)) {
				t.Fatalf("second batch %v, want 8..15", b)
			}
			expire := r.clock.next(t)
			r.waitQueued(t, 0)
			if b, ok := r.offered(); ok {
				t.Fatalf("partial batch %v offered before max-wait", b)
			}
			expire <- time.Now()
			if b := r.recv(t); !slices.Equal(b, seq(16, 20)) {
				t.Fatalf("last batch %v, want 16..19", b)
			}
		}},
		{"busy encoder: an offered batch grows until taken, up to max", 6, func(t *testing.T, r *batcherRig) {
			r.in <- 0
			r.in <- 1
			r.clock.next(t) <- time.Now() // expired: now on offer, nobody takes it
			for i := 2; i < 9; i++ {
				r.in <- i
			}
			// 2..5 join the offered batch; 6..8 wait for the next one.
			r.waitQueued(t, 3)
			if b := r.recv(t); !slices.Equal(b, seq(0, 6)) {
				t.Fatalf("offered batch %v, want it grown to 0..5", b)
			}
			// The next batch's timer starts with 6; it expires once 7 and 8
			// have joined it (the batcher's select would otherwise pick the
			// expiry or an input at random).
			expire := r.clock.next(t)
			r.waitQueued(t, 0)
			expire <- time.Now()
			if b := r.recv(t); !slices.Equal(b, seq(6, 9)) {
				t.Fatalf("next batch %v, want 6..8", b)
			}
		}},
		{"max 1: every input alone, no waiting", 1, func(t *testing.T, r *batcherRig) {
			for i := range 4 {
				r.in <- i
			}
			for i := range 4 {
				r.clock.next(t)
				if b := r.recv(t); !slices.Equal(b, []int{i}) {
					t.Fatalf("batch %v, want [%d]", b, i)
				}
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, startBatcher(t, tc.max)) })
	}
}

// TestBatcherStopsWithContext: a batcher blocked offering a batch returns when
// its context ends.
func TestBatcherStopsWithContext(t *testing.T) {
	in, out := make(chan int, 4), make(chan []int)
	clock := newFakeClock()
	b := &batcher[int]{in: in, out: out, max: 2, wait: time.Hour, timer: clock.timer}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.run(ctx) }()
	in <- 1
	in <- 2 // full: offered, never taken
	clock.next(t)
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("batcher did not stop with its context")
	}
}
