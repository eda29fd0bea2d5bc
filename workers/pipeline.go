// Package workers runs posts from a source through media fetching, the encoders
// and the sink, and acknowledges each message only after its records (or its dead
// letter) are durable.
package workers

import (
	"context"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/ingest"
)

// Embedder turns texts and decoded images into L2-normalised vectors.
// *encoders.Model implements it.
type Embedder interface {
	EmbedTexts(ctx context.Context, texts []string) ([][]float32, error)
	EmbedImages(ctx context.Context, imgs []image.Image) ([][]float32, error)
	Version() string
}

// Fetcher downloads an image by URL (behind the SSRF guard).
type Fetcher interface {
	Fetch(ctx context.Context, url string) ([]byte, error)
}

// Hasher computes the binary code of a vector and the perceptual hash of an image.
// Either function may be nil.
type Hasher struct {
	Code func(vec []float32) []byte
	PDQ  func(img image.Image) (hash []byte, quality int)
}

// CrashPoint names a place where tests may kill the process (see Config.Crash).
type CrashPoint string

// The deterministic crash points of a batch.
const (
	CrashAfterFetch  CrashPoint = "after-fetch"
	CrashAfterEncode CrashPoint = "after-encode"
	CrashMidWrite    CrashPoint = "mid-write"
	CrashAfterWrite  CrashPoint = "after-write"
)

// Config of a pipeline. Zero values take the defaults.
type Config struct {
	BatchSize   int           // messages per batch, default 32
	FetchWait   time.Duration // max wait for a batch to fill, default 100ms
	MaxAttempts int           // deliveries before a message is dead-lettered as poison, default 5
	// MediaConcurrency bounds parallel image fetch+decode, default 8.
	MediaConcurrency int
	// KeepAlive is how often messages of a batch in flight are reported as in
	// progress to the source, default 10s (keep it under the source's ack wait).
	KeepAlive time.Duration
	// Crash, when set, is called at each crash point of each batch (tests kill the
	// process there).
	Crash func(CrashPoint)
}

func (c *Config) defaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = 32
	}
	if c.FetchWait <= 0 {
		c.FetchWait = 100 * time.Millisecond
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 5
	}
	if c.MediaConcurrency <= 0 {
		c.MediaConcurrency = 8
	}
	if c.KeepAlive <= 0 {
		c.KeepAlive = 10 * time.Second
	}
	if c.Crash == nil {
		c.Crash = func(CrashPoint) {}
	}
}

// Pipeline is one indexing loop.
type Pipeline struct {
	cfg     Config
	src     ingest.Source
	dlq     ingest.DeadLetter
	sink    domain.Writer
	emb     Embedder
	fetch   Fetcher
	decode  func([]byte) (image.Image, error)
	thumb   func(image.Image) []byte
	hash    Hasher
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time
}

// Deps are what a pipeline runs on.
type Deps struct {
	Source     ingest.Source
	DeadLetter ingest.DeadLetter
	Sink       domain.Writer
	Embedder   Embedder
	Fetcher    Fetcher                           // nil: URL images fail with a fetch error
	Decode     func([]byte) (image.Image, error) // required
	Thumbnail  func(image.Image) []byte          // nil: no thumbnails
	Hasher     Hasher
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: metrics are not registered
}

// New builds a pipeline.
func New(cfg Config, d Deps) (*Pipeline, error) {
	cfg.defaults()
	if d.Source == nil || d.DeadLetter == nil || d.Sink == nil || d.Embedder == nil || d.Decode == nil {
		return nil, errors.New("workers: source, dead letter, sink, embedder and decoder are required")
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Thumbnail == nil {
		d.Thumbnail = func(image.Image) []byte { return nil }
	}
	m, err := newMetrics(d.Registerer)
	if err != nil {
		return nil, err
	}
	return &Pipeline{cfg: cfg, src: d.Source, dlq: d.DeadLetter, sink: d.Sink, emb: d.Embedder, fetch: d.Fetcher,
		decode: d.Decode, thumb: d.Thumbnail, hash: d.Hasher, log: d.Logger, metrics: m, now: time.Now}, nil
}

// Run processes batches until ctx ends. A failing sink is retried with backoff and
// nothing is acknowledged until it succeeds.
func (p *Pipeline) Run(ctx context.Context) error { return p.RunUntil(ctx, ctx) }

// RunUntil fetches batches until stop ends and processes each under work: when
// stop ends, no new batch is fetched and the batch in flight (fetched messages
// included) runs to its end unless work ends too, in which case it is abandoned
// unacknowledged (redelivered later). Cancel work some grace period after stop
// for a graceful shutdown. It returns stop's error.
func (p *Pipeline) RunUntil(stop, work context.Context) error {
	backoff := 100 * time.Millisecond
	for stop.Err() == nil && work.Err() == nil {
		msgs, err := p.src.Fetch(stop, p.cfg.BatchSize, p.cfg.FetchWait)
		if err != nil && stop.Err() == nil {
			p.log.Warn("fetch failed", "err", err)
			sleep(stop, backoff)
			backoff = min(backoff*2, 10*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		if len(msgs) == 0 {
			continue
		}
		if err := p.Process(work, msgs); err != nil {
			if work.Err() != nil {
				p.log.Warn("batch abandoned unacknowledged; it will be redelivered", "messages", len(msgs))
				break
			}
			p.log.Error("batch failed; its messages will be redelivered", "err", err, "messages", len(msgs))
		}
	}
	if err := stop.Err(); err != nil {
		return err
	}
	return work.Err()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// item is one post in flight.
type item struct {
	msg    *ingest.Message
	post   *domain.Post
	change *domain.Change // set for deletes
	img    image.Image
	imgErr error
	stage  ingest.Stage
	txtVec []float32
	imgVec []float32
	failed []failure // partial failures to dead-letter
	done   bool      // nothing to write (dead-lettered or skipped)
}

type failure struct {
	stage  ingest.Stage
	reason string
}

// Process runs one batch to the end: every message is either written or
// dead-lettered, then acknowledged. An error means nothing was acknowledged.
func (p *Pipeline) Process(ctx context.Context, msgs []*ingest.Message) error {
	p.metrics.batch.Observe(float64(len(msgs)))
	stop := p.keepAlive(ctx, msgs)
	defer stop()
	items := make([]*item, len(msgs))
	for i, m := range msgs {
		items[i] = p.classify(ctx, m)
	}
	if err := p.fetchImages(ctx, items); err != nil {
		return err
	}
	p.cfg.Crash(CrashAfterFetch)
	if err := p.encode(ctx, items); err != nil {
		return err
	}
	p.cfg.Crash(CrashAfterEncode)

	// Dead letters first: once they are durable, the batch's outcome is fixed.
	for _, it := range items {
		for _, f := range it.failed {
			if err := p.dlq.Send(ctx, it.msg, f.stage, f.reason); err != nil {
				return err
			}
			p.metrics.dlq.WithLabelValues(string(f.stage)).Inc()
			p.log.Warn("dead-lettered", "key", it.msg.Key, "origin", it.msg.Origin, "stage", f.stage, "reason", f.reason)
		}
	}
	changes := p.changes(items)
	if err := p.apply(ctx, changes); err != nil {
		return err
	}
	p.cfg.Crash(CrashAfterWrite)
	// Confirmed acks are round trips: send them all at once.
	errs := make([]error, len(msgs))
	var wg sync.WaitGroup
	for i, m := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := m.Ack(ctx); err != nil {
				errs[i] = fmt.Errorf("ack %s: %w", m.Origin, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// keepAlive reports the batch's messages as in progress until stop is called.
func (p *Pipeline) keepAlive(ctx context.Context, msgs []*ingest.Message) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(p.cfg.KeepAlive)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				for _, m := range msgs {
					if err := m.KeepAlive(ctx); err != nil {
						p.log.Debug("keep-alive failed", "origin", m.Origin, "err", err)
					}
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// classify decodes a message and decides what it needs.
func (p *Pipeline) classify(ctx context.Context, m *ingest.Message) *item {
	it := &item{msg: m}
	fail := func(stage ingest.Stage, reason string) *item {
		it.failed = append(it.failed, failure{stage, reason})
		it.done = true
		p.metrics.messages.WithLabelValues("dead_letter").Inc()
		return it
	}
	if m.Attempt > p.cfg.MaxAttempts {
		return fail(ingest.StagePoison, fmt.Sprintf("delivered %d times without completing (limit %d)", m.Attempt, p.cfg.MaxAttempts))
	}
	if m.Tombstone {
		if why := ingest.ValidID(m.Key); why != "" {
			return fail(ingest.StageDecode, "tombstone without a valid key: "+why)
		}
		it.change = &domain.Change{PostID: m.Key, Delete: true, Deny: true}
		p.metrics.messages.WithLabelValues("delete").Inc()
		return it
	}
	post, err := ingest.DecodePost(m.Value, p.now())
	if err != nil {
		return fail(ingest.StageDecode, err.Error())
	}
	if m.Key == "" {
		m.Key = post.ID
	} else if m.Key != post.ID {
		return fail(ingest.StageDecode, fmt.Sprintf("message key %q differs from post id %q", m.Key, post.ID))
	}
	denied, err := p.sink.IsDenied(ctx, post.ID)
	if err == nil && denied {
		p.metrics.messages.WithLabelValues("denied").Inc()
		p.log.Info("post is deny-listed; not indexed", "id", post.ID, "origin", m.Origin)
		it.done = true
		return it
	}
	it.post = post
	return it
}

func (p *Pipeline) fetchImages(ctx context.Context, items []*item) error {
	sem := make(chan struct{}, p.cfg.MediaConcurrency)
	var wg sync.WaitGroup
	for _, it := range items {
		if it.done || it.post == nil || !it.post.HasImage() {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			data := it.post.Image.Data
			if it.post.Image.URL != "" {
				if p.fetch == nil {
					it.stage, it.imgErr = ingest.StageFetch, errors.New("image URLs are not enabled (no fetcher configured)")
					return
				}
				start := time.Now()
				b, err := p.fetch.Fetch(ctx, it.post.Image.URL)
				p.metrics.stage.WithLabelValues("fetch").Observe(time.Since(start).Seconds())
				if err != nil {
					it.stage, it.imgErr = ingest.StageFetch, err
					return
				}
				data = b
			}
			start := time.Now()
			img, err := p.decode(data)
			p.metrics.stage.WithLabelValues("decode").Observe(time.Since(start).Seconds())
			if err != nil {
				it.stage, it.imgErr = ingest.StageImage, err
				return
			}
			it.img = img
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// encode embeds every text and image of the batch, one model call per modality;
// when a batch call fails, items are retried one by one to find the bad ones.
func (p *Pipeline) encode(ctx context.Context, items []*item) error {
	var texts []string
	var textItems []*item
	var imgs []image.Image
	var imgItems []*item
	for _, it := range items {
		if it.done || it.post == nil {
			continue
		}
		if it.post.HasText() {
			texts = append(texts, it.post.Text)
			textItems = append(textItems, it)
		}
		if it.img != nil {
			imgs = append(imgs, it.img)
			imgItems = append(imgItems, it)
		}
	}
	if len(texts) > 0 {
		vecs, err := embedEach(p, ctx, "text", texts, p.emb.EmbedTexts)
		if err != nil {
			return err
		}
		for i, it := range textItems {
			if vecs[i].err != nil {
				it.failed = append(it.failed, failure{ingest.StageEncode, "text: " + vecs[i].err.Error()})
			} else {
				it.txtVec = vecs[i].vec
			}
		}
	}
	if len(imgs) > 0 {
		vecs, err := embedEach(p, ctx, "image", imgs, p.emb.EmbedImages)
		if err != nil {
			return err
		}
		for i, it := range imgItems {
			if vecs[i].err != nil {
				it.failed = append(it.failed, failure{ingest.StageEncode, "image: " + vecs[i].err.Error()})
			} else {
				it.imgVec = vecs[i].vec
			}
		}
	}
	for _, it := range items {
		if it.imgErr != nil {
			it.failed = append(it.failed, failure{it.stage, it.imgErr.Error()})
		}
		if !it.done && it.post != nil && it.txtVec == nil && it.imgVec == nil {
			it.done = true // nothing encoded: the failures above say why
			if len(it.failed) == 0 {
				it.failed = append(it.failed, failure{ingest.StageEncode, "nothing could be encoded"})
			}
		}
		switch {
		case it.done && it.post != nil:
			p.metrics.messages.WithLabelValues("dead_letter").Inc()
		case it.post != nil && len(it.failed) > 0:
			p.metrics.messages.WithLabelValues("partial").Inc()
		case it.post != nil:
			p.metrics.messages.WithLabelValues("indexed").Inc()
		}
	}
	return nil
}

type vecOrErr struct {
	vec []float32
	err error
}

func embedEach[T any](p *Pipeline, ctx context.Context, modality string, xs []T, f func(context.Context, []T) ([][]float32, error)) ([]vecOrErr, error) {
	out := make([]vecOrErr, len(xs))
	start := time.Now()
	vecs, err := f(ctx, xs)
	p.metrics.stage.WithLabelValues("encode_" + modality).Observe(time.Since(start).Seconds())
	if err == nil && len(vecs) == len(xs) {
		for i := range vecs {
			out[i].vec = vecs[i]
		}
		return out, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err == nil {
		err = fmt.Errorf("model returned %d vectors for %d inputs", len(vecs), len(xs))
	}
	p.log.Warn("batch encode failed; retrying one by one", "modality", modality, "n", len(xs), "err", err)
	for i := range xs {
		v, err := f(ctx, xs[i:i+1])
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err == nil && len(v) != 1 {
			err = fmt.Errorf("model returned %d vectors for 1 input", len(v))
		}
		if err != nil {
			out[i].err = err
		} else {
			out[i].vec = v[0]
		}
	}
	return out, nil
}

// changes builds one change per post. Within a batch, the latest version of a post wins.
func (p *Pipeline) changes(items []*item) []domain.Change {
	var out []domain.Change
	index := map[string]int{}
	add := func(c domain.Change) {
		i, ok := index[c.PostID]
		if !ok {
			index[c.PostID] = len(out)
			out = append(out, c)
			return
		}
		switch prev := out[i]; {
		case prev.Delete: // deletes win, whatever their order in the batch
		case c.Delete || c.Seq >= prev.Seq:
			out[i] = c
		}
	}
	version := p.emb.Version()
	for _, it := range items {
		if it.change != nil {
			c := *it.change
			c.Seq = it.msg.Seq
			add(c)
			continue
		}
		if it.done || it.post == nil {
			continue
		}
		add(domain.Change{PostID: it.post.ID, Seq: it.msg.Seq, Records: p.records(it, version)})
	}
	return out
}

func (p *Pipeline) records(it *item, version string) []domain.Record {
	post := it.post
	base := domain.Record{
		PostID: post.ID, Author: post.Author, CreatedAt: post.CreatedAt.UTC(), ModelVersion: version,
		Labels: post.Labels, Text: domain.TruncateText(post.Text, domain.MaxStoredText),
	}
	if post.Image != nil {
		base.MediaURL = post.Image.URL
	}
	var thumb []byte
	if it.img != nil {
		thumb = p.thumb(it.img)
	}
	mk := func(m domain.Modality, vec []float32) domain.Record {
		r := base
		r.Modality = m
		r.PK = domain.PrimaryKey(post.ID, m)
		r.Vector = normalized(vec)
		r.Thumbnail = thumb
		if p.hash.Code != nil {
			r.Code = p.hash.Code(r.Vector)
		}
		return r
	}
	var out []domain.Record
	if it.txtVec != nil {
		out = append(out, mk(domain.ModalityText, it.txtVec))
	}
	if it.imgVec != nil {
		r := mk(domain.ModalityImage, it.imgVec)
		if p.hash.PDQ != nil {
			r.PDQ, r.PDQQuality = p.hash.PDQ(it.img)
		}
		out = append(out, r)
	}
	if it.txtVec != nil && it.imgVec != nil {
		sum := make([]float32, len(it.imgVec))
		for i := range sum {
			sum[i] = it.imgVec[i] + it.txtVec[i]
		}
		out = append(out, mk(domain.ModalityFused, sum))
	}
	return out
}

// normalized returns an L2-normalised copy of v (whatever the model returned).
func normalized(v []float32) []float32 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	out := make([]float32, len(v))
	if s == 0 {
		return out
	}
	inv := float32(1 / math.Sqrt(s))
	for i, x := range v {
		out[i] = x * inv
	}
	return out
}

// apply writes the changes, retrying a failing sink with backoff until ctx ends.
func (p *Pipeline) apply(ctx context.Context, changes []domain.Change) error {
	if len(changes) == 0 {
		return nil
	}
	write := func(chs []domain.Change) error {
		backoff := 100 * time.Millisecond
		for {
			start := time.Now()
			outcomes, err := p.sink.Apply(ctx, chs)
			p.metrics.stage.WithLabelValues("sink").Observe(time.Since(start).Seconds())
			if err == nil {
				for _, o := range outcomes {
					p.metrics.outcomes.WithLabelValues(string(o)).Inc()
				}
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			p.metrics.sinkErrors.Inc()
			p.log.Warn("sink write failed; retrying", "err", err, "backoff", backoff)
			sleep(ctx, backoff)
			backoff = min(backoff*2, 30*time.Second)
		}
	}
	half := len(changes) / 2
	if half > 0 {
		if err := write(changes[:half]); err != nil {
			return err
		}
		p.cfg.Crash(CrashMidWrite)
	}
	return write(changes[half:])
}
