//go:build crashtest

package main

// Crash points for the crash tests (built only with -tags crashtest; the
// release binary has none): XMODAL_CRASH_AT=point:n kills the process with
// SIGKILL the n-th time it reaches the point. The points wrap the pipeline's
// dependencies, so nothing in the write path knows about them:
//
//	after-fetch           a source fetch returned messages
//	after-encode          a model call returned vectors
//	mid-write             between the two halves of a sink write (the test
//	                      wrapper splits each write in two)
//	after-write           the sink write returned, before the acknowledgements
//	before-events         a batch's match events are about to be published
//	                      (the index write runs beside them)
//	after-events          a batch's match events are durable, before the
//	                      batch is acknowledged
//	ingest-after-produce  xmodal ingest --to kafka produced a batch
//	sweep-lookup          a retro sweep looked an entry up in the index,
//	                      before that entry's events are published

import (
	"context"
	"fmt"
	"image"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/sink/matching"
	"github.com/xmodal/xmodal/workers"
)

// crashTestBuild says this binary has crash points.
const crashTestBuild = true

type crasher struct {
	point string
	at    int
	mu    sync.Mutex
	seen  int
}

// armedCrasher reads XMODAL_CRASH_AT; nil when it is not set.
func armedCrasher(log *slog.Logger) *crasher {
	spec := os.Getenv("XMODAL_CRASH_AT")
	if spec == "" {
		return nil
	}
	point, nStr, _ := strings.Cut(spec, ":")
	n, err := strconv.Atoi(nStr)
	if err != nil || n < 1 {
		n = 1
	}
	log.Warn("crash point armed (crash-test build)", "point", point, "at", n)
	return &crasher{point: point, at: n}
}

func (c *crasher) hit(point string) {
	if c == nil || point != c.point {
		return
	}
	c.mu.Lock()
	c.seen++
	now := c.seen == c.at
	c.mu.Unlock()
	if now {
		fmt.Fprintf(os.Stderr, "XMODAL_CRASH_AT: killing the process at %s #%d\n", point, c.at)
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}

// crashPoints wraps the pipeline's source, model and sink with the armed point.
func crashPoints(d *workers.Deps, log *slog.Logger) {
	c := armedCrasher(log)
	if c == nil {
		return
	}
	d.Source = &crashSource{Source: d.Source, c: c}
	d.Sink = &crashSink{Writer: d.Sink, c: c}
	if pe, ok := d.Embedder.(pixelEmbedder); ok {
		d.Embedder = &crashPixelEmbedder{crashEmbedder: crashEmbedder{Embedder: d.Embedder, c: c}, pix: pe}
	} else {
		d.Embedder = &crashEmbedder{Embedder: d.Embedder, c: c}
	}
}

// crashEvents wraps the match events publisher with the before-events and
// after-events points.
func crashEvents(p matching.Publisher, log *slog.Logger) matching.Publisher {
	c := armedCrasher(log)
	if c == nil || (c.point != "before-events" && c.point != "after-events") {
		return p
	}
	return &crashPublisher{Publisher: p, c: c}
}

type crashPublisher struct {
	matching.Publisher
	c *crasher
}

func (p *crashPublisher) Publish(ctx context.Context, evs []matching.Event) error {
	p.c.hit("before-events")
	err := p.Publisher.Publish(ctx, evs)
	if err == nil {
		p.c.hit("after-events")
	}
	return err
}

// crashPoint returns the armed point's hit function for commands outside the
// pipeline (ingest --to kafka).
func crashPoint(log *slog.Logger) func(string) { return armedCrasher(log).hit }

type crashSource struct {
	ingest.Source
	c *crasher
}

func (s *crashSource) Fetch(ctx context.Context, n int, wait time.Duration) ([]*ingest.Message, error) {
	msgs, err := s.Source.Fetch(ctx, n, wait)
	if len(msgs) > 0 {
		defer s.c.hit("after-fetch")
	}
	return msgs, err
}

type crashSink struct {
	domain.Writer
	c *crasher
}

func (s *crashSink) Apply(ctx context.Context, chs []domain.Change) ([]domain.Outcome, error) {
	if half := len(chs) / 2; half > 0 && s.c.point == "mid-write" {
		first, err := s.Writer.Apply(ctx, chs[:half])
		if err != nil {
			return nil, err
		}
		s.c.hit("mid-write")
		rest, err := s.Writer.Apply(ctx, chs[half:])
		if err != nil {
			return nil, err
		}
		return append(first, rest...), nil
	}
	out, err := s.Writer.Apply(ctx, chs)
	if err == nil {
		s.c.hit("after-write")
	}
	return out, err
}

type crashEmbedder struct {
	workers.Embedder
	c *crasher
}

func (e *crashEmbedder) EmbedTexts(ctx context.Context, texts []string) ([][]float32, error) {
	v, err := e.Embedder.EmbedTexts(ctx, texts)
	e.c.hit("after-encode")
	return v, err
}

func (e *crashEmbedder) EmbedImages(ctx context.Context, imgs []image.Image) ([][]float32, error) {
	v, err := e.Embedder.EmbedImages(ctx, imgs)
	e.c.hit("after-encode")
	return v, err
}

type pixelEmbedder = workers.PixelEmbedder

type crashPixelEmbedder struct {
	crashEmbedder
	pix pixelEmbedder
}

func (e *crashPixelEmbedder) ImageTensorLen() int { return e.pix.ImageTensorLen() }

func (e *crashPixelEmbedder) PreprocessImage(img image.Image, dst []float32) error {
	return e.pix.PreprocessImage(img, dst)
}

func (e *crashPixelEmbedder) EmbedPixels(ctx context.Context, pixels []float32, n int) ([][]float32, error) {
	v, err := e.pix.EmbedPixels(ctx, pixels, n)
	e.c.hit("after-encode")
	return v, err
}

// crashSweeps wraps the retro sweeps' index with the armed point.
func crashSweeps(nd domain.NearDupSearcher, log *slog.Logger) domain.NearDupSearcher {
	c := armedCrasher(log)
	if c == nil || c.point != "sweep-lookup" {
		return nd
	}
	return &crashNearDup{NearDupSearcher: nd, c: c}
}

type crashNearDup struct {
	domain.NearDupSearcher
	c *crasher
}

func (n *crashNearDup) NearDup(ctx context.Context, q domain.NearDupQuery) ([]domain.NearDupHit, error) {
	hits, err := n.NearDupSearcher.NearDup(ctx, q)
	n.c.hit("sweep-lookup")
	return hits, err
}
