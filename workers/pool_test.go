package workers_test

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/workers"
)

// scriptedEmbedder wraps the real model without its PixelEmbedder methods
// (images go to EmbedImages whole), records the model calls in order, and can
// hold image calls until released or slow them down.
type scriptedEmbedder struct {
	m         workers.Embedder
	imageGate chan struct{} // nil: image calls run at once
	imageCost time.Duration // extra time per image call (a slower model)

	mu    sync.Mutex
	calls []string // "text 3", "image 4": modality and batch size
}

func (s *scriptedEmbedder) record(kind string, n int) {
	s.mu.Lock()
	s.calls = append(s.calls, fmt.Sprintf("%s %d", kind, n))
	s.mu.Unlock()
}

func (s *scriptedEmbedder) log() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

func (s *scriptedEmbedder) EmbedTexts(ctx context.Context, texts []string) ([][]float32, error) {
	s.record("text", len(texts))
	return s.m.EmbedTexts(ctx, texts)
}

func (s *scriptedEmbedder) EmbedImages(ctx context.Context, imgs []image.Image) ([][]float32, error) {
	s.record("image", len(imgs))
	if s.imageGate != nil {
		select {
		case <-s.imageGate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if s.imageCost > 0 {
		time.Sleep(s.imageCost)
	}
	return s.m.EmbedImages(ctx, imgs)
}

func (s *scriptedEmbedder) Version() string { return s.m.Version() }

// TestAcksDoNotWaitForEarlierMessages: a text post fetched after an image post
// is written and acknowledged while the image is still in the encoder; the
// image post follows when the encoder returns. Acknowledgement order follows
// completion, not fetch or batch order.
func TestAcksDoNotWaitForEarlierMessages(t *testing.T) {
	e := newEnv(t)
	emb := &scriptedEmbedder{m: e.model, imageGate: make(chan struct{})}
	e.publish(t, "slow-image", post("slow-image", "", pngBytes(color.RGBA{200, 10, 10, 255})))
	e.publish(t, "quick-text", post("quick-text", "a caption that needs no image", nil))
	p := newPipeline(t, e, nil, emb, workers.Config{BatchSize: 8, Encoders: 2})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	testutil.Eventually(t, 30*time.Second, func() error {
		_, unacked := e.pending(t)
		if n := e.count(domain.ModalityText); n != 1 || unacked != 1 {
			return fmt.Errorf("the text post indexed and acknowledged: %d text records, %d unacknowledged", n, unacked)
		}
		return nil
	})
	if n := e.count(domain.ModalityImage); n != 0 {
		t.Fatalf("%d image records while the image encoder is held", n)
	}
	close(emb.imageGate)
	e.waitAllAcked(t)
	if n := e.count(domain.ModalityImage); n != 1 {
		t.Errorf("%d image records after release, want 1", n)
	}
}

// TestNoModalityStarves: with one encoder and a flood of images queued, a text
// post that arrives behind them is encoded after at most one more image batch,
// not after the flood.
func TestNoModalityStarves(t *testing.T) {
	e := newEnv(t)
	// A slow image model keeps an image batch always waiting.
	emb := &scriptedEmbedder{m: e.model, imageCost: 30 * time.Millisecond}
	const images = 48
	for i := range images {
		id := fmt.Sprint("img", i)
		e.publish(t, id, post(id, "", pngBytes(color.RGBA{uint8(i * 5), 0, 0, 255})))
	}
	e.publish(t, "txt", post("txt", "the lone caption", nil))
	p := newPipeline(t, e, nil, emb, workers.Config{BatchSize: 64, MaxInFlight: 64, EncodeBatch: 4, Encoders: 1})
	runUntil(t, p, func() bool { return e.allAcked(t) })

	calls := emb.log()
	textAt, imagesBefore := -1, 0
	for i, c := range calls {
		if c == "text 1" {
			textAt = i
			break
		}
		imagesBefore++
	}
	if textAt < 0 {
		t.Fatalf("no text call in %v", calls)
	}
	t.Logf("model calls: %v", calls)
	// The text is queued as soon as it is fetched, while the images are still
	// decoding; at worst it waits for the image batch running and the one
	// offered before it.
	if imagesBefore > 2 {
		t.Errorf("the text waited behind %d image batches (of %d); want at most 2", imagesBefore, len(calls)-1)
	}
	if len(calls) < images/4 {
		t.Errorf("%d model calls for %d images in batches of 4", len(calls), images)
	}
}

// TestBackpressureBoundsInFlight: with the sink stalled, the pipeline fetches
// no more than MaxInFlight messages, or than MaxInFlightBytes allows (the
// messages under the bound, plus one fetch of BatchSize), and resumes when
// the sink does.
func TestBackpressureBoundsInFlight(t *testing.T) {
	const posts = 60
	for _, tc := range []struct {
		name    string
		cfg     workers.Config
		textLen int // bytes of each post's text
		most    int // messages handed out at most while the sink stalls
	}{
		{"messages", workers.Config{BatchSize: 4, MaxInFlight: 8}, 20, 8},
		// Messages of about 3,100 bytes under a bound of 10,000 bytes: at
		// most 3 under it, then one fetch of 2.
		{"bytes", workers.Config{BatchSize: 2, MaxInFlight: 64, MaxInFlightBytes: 10_000}, 3000, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			for i := range posts {
				id := fmt.Sprint("p", i)
				text := fmt.Sprint("post number ", i, " ", strings.Repeat("x", tc.textLen))
				e.publish(t, id, post(id, text, nil))
			}
			sink := &gateSink{Writer: e.ix, entered: make(chan struct{}, 1), release: make(chan struct{})}
			p := newPipeline(t, e, sink, nil, tc.cfg)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			defer func() { cancel(); <-done }()
			select {
			case <-sink.entered:
			case <-time.After(30 * time.Second):
				t.Fatal("nothing reached the sink")
			}
			// However long the sink stalls, the source has handed out at
			// most the in-flight limit.
			maxOut := 0
			for range 15 {
				_, unacked := e.pending(t)
				maxOut = max(maxOut, unacked)
				time.Sleep(20 * time.Millisecond)
			}
			if maxOut == 0 || maxOut > tc.most {
				t.Fatalf("with the sink stalled the source handed out %d messages; want 1..%d", maxOut, tc.most)
			}
			close(sink.release)
			e.waitAllAcked(t)
			if n := e.count(domain.ModalityText); n != posts {
				t.Errorf("%d records, want %d", n, posts)
			}
		})
	}
}
