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
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/internal/vecmath"
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

// Hasher computes the perceptual hash of an image (nil: none). Binary codes
// of vectors are the index's business (sink/embedded and sink/milvus code
// records with the model's coder).
type Hasher struct {
	PDQ func(img image.Image) (hash []byte, quality int)
	// PDQVariants, when set, replaces PDQ: it returns the image's eight
	// dihedral hashes (the first is the PDQ hash; one DCT makes all eight),
	// which the record carries for matching at ingest
	// (domain.Record.PDQVariants), and which of them are canonical.
	PDQVariants func(img image.Image) (hashes [][]byte, canon []int, quality int)
	// PDQCanonical, when set, gives image records their canonical dihedral
	// hashes too (domain.Record.PDQCanonical, concatenated: near-duplicate
	// clusters link mirrored and rotated copies by them); it replaces PDQ
	// when PDQVariants is not set, and takes the canonical hashes from the
	// variants when it is.
	PDQCanonical func(img image.Image) (hash, canon []byte, quality int)
	// PDQRegions, when set, gives image records the PDQ hashes of their
	// content rectangles too (domain.Record.PDQRegions; nil when the image
	// has none) and replaces PDQCanonical and PDQ: it returns the PDQ hash,
	// the canonical hashes and the region hashes from one luminance plane.
	// With PDQVariants, the hashes come from the variants and only the
	// region hashes from it (whole false: it may leave the others out).
	PDQRegions func(img image.Image, whole bool) RegionHashes
	// Windows, when set, gives an image record the stored form of its
	// near-duplicate windows (encoders/neardup; domain.Record.Windows),
	// computed from the decoded image the model and thumbnail use (the
	// windows are hashed on a 192-pixel plane, so the larger PDQ decode is
	// not needed); nil when the image has none.
	Windows func(img image.Image) []byte
	// NearDupQuery, when set, gives an image record its near-duplicate
	// query (domain.Record.NearDupQuery), computed from the image PDQ is
	// computed from, for the matcher's window search of banks with
	// windows; nil when none is wanted now (no bank holds windows) or the
	// image has none.
	NearDupQuery func(img image.Image) any
	// MD5, when set and true at the time an image is prepared, gives its
	// record the MD5 of the file's bytes (domain.Record.MD5: the banks' md5
	// entries, HMA's photo_md5, match it at ingest). Nil: never.
	MD5 func() bool
}

// RegionHashes are an image's PDQ hashes with those of its content
// rectangles (Hasher.PDQRegions): domain.Record's PDQ, PDQQuality,
// PDQCanonical, PDQRegions and PDQFramed.
type RegionHashes struct {
	PDQ, Canonical, Regions []byte
	Framed                  bool
	Quality                 int
}

// Decoded is an image decoded for the media stage.
type Decoded struct {
	// Image is what the thumbnail and the model input are made from, and the
	// perceptual hash's input unless HashInput is set.
	Image image.Image
	// HashInput, when set, is the perceptual hash's input (a larger decode
	// of the same picture, when Image is too small for the hash).
	HashInput image.Image
	// Mode names how the image was decoded and preprocessed (for example
	// "fast" or "exact"); it is recorded on the post's image and fused
	// records. Empty: not recorded.
	Mode string
	// Release, when set, is called once the pipeline no longer needs the
	// pixels (to return them to a decode-memory budget).
	Release func()
}

// DecodeFunc decodes an encoded image under ctx (which ends when the run
// does).
type DecodeFunc func(ctx context.Context, data []byte) (Decoded, error)

// Config of a pipeline. Zero values take the defaults.
type Config struct {
	// BatchSize is the most messages taken from the source at once and the
	// most posts written to the sink in one call, default 32.
	BatchSize int
	// FetchWait is the longest a source fetch waits to fill, default 100ms.
	FetchWait   time.Duration
	MaxAttempts int // deliveries before a message is dead-lettered as poison, default 5
	// MediaConcurrency is the number of media workers: image fetch, decode,
	// thumbnail, PDQ and model preprocessing, in parallel with encoding;
	// default 8.
	MediaConcurrency int
	// EncodeBatch is the most inputs of one modality per model call, default
	// BatchSize.
	EncodeBatch int
	// EncodeWait is how long the first input of a model batch waits for
	// others before the batch is offered to a free encoder, default 5ms. A
	// batch that no encoder takes at once keeps growing up to EncodeBatch.
	EncodeWait time.Duration
	// Encoders is the number of model calls run at once, default 1. Give the
	// model as many sessions (encoders.Options.Sessions) for independent
	// ONNX Runtime thread pools.
	Encoders int
	// Writers is the number of sink writes in flight at once, default 1. A
	// sink that runs writes concurrently (Milvus rounds) takes more; writes in
	// flight never hold two versions of one post.
	Writers int
	// MaxInFlight bounds the messages between fetch and acknowledgement;
	// when that many are in flight nothing more is fetched (backpressure from
	// a slow encoder or sink), default 4×BatchSize.
	MaxInFlight int
	// MaxInFlightBytes bounds the bytes of the messages between fetch and
	// acknowledgement (0: no bound): while they hold this many or more,
	// nothing more is fetched. A fetch started under the bound may take it
	// over by up to BatchSize messages. Each message in flight is kept
	// whole until its acknowledgement (a dead letter carries it), inline
	// images included, so with large images this, not MaxInFlight, is what
	// bounds the memory.
	MaxInFlightBytes int64
	// KeepAlive is how often messages in flight are reported as in progress
	// to the source, default 10s (keep it under the source's ack wait).
	KeepAlive time.Duration
}

// WithDefaults returns c with the zero (or negative) fields set to their
// defaults.
func (c Config) WithDefaults() Config {
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
	if c.EncodeBatch <= 0 {
		c.EncodeBatch = c.BatchSize
	}
	if c.EncodeWait <= 0 {
		c.EncodeWait = 5 * time.Millisecond
	}
	if c.Encoders <= 0 {
		c.Encoders = 1
	}
	if c.Writers <= 0 {
		c.Writers = 1
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 4 * c.BatchSize
	}
	c.MaxInFlight = max(c.MaxInFlight, c.BatchSize)
	if c.KeepAlive <= 0 {
		c.KeepAlive = 10 * time.Second
	}
	return c
}

// PixelEmbedder is an Embedder whose image preprocessing can run apart from
// the model call (*encoders.Model implements it). The pipeline then
// preprocesses on its media workers while the encoders run, drops each
// decoded image as soon as its tensor, thumbnail and PDQ hash are made, and
// calls EmbedPixels instead of EmbedImages.
type PixelEmbedder interface {
	ImageTensorLen() int
	PreprocessImage(img image.Image, dst []float32) error
	EmbedPixels(ctx context.Context, pixels []float32, n int) ([][]float32, error)
}

// Pipeline is one indexing loop.
type Pipeline struct {
	cfg     Config
	src     ingest.Source
	dlq     ingest.DeadLetter
	sink    domain.Writer
	deny    domain.DenyList
	emb     Embedder
	pix     PixelEmbedder // nil: images go to EmbedImages whole
	fetch   Fetcher
	decode  DecodeFunc
	thumb   func(image.Image) []byte
	hash    Hasher
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time
	timer   func(time.Duration) (<-chan time.Time, func()) // batchers' clock (tests)
	cur     atomic.Pointer[run]                            // the running stages, for the gauges
	failing atomic.Pointer[WriteFailure]                   // sink writes failing since (nil: they succeed)
}

// WriteFailure says that sink writes have failed since Since, Attempts
// times in a row, the last with Err; the pipeline keeps retrying them and
// acknowledges nothing meanwhile. Readiness reports it (a full or read-only
// disk under the embedded index, Milvus refusing writes).
type WriteFailure struct {
	Since    time.Time
	Attempts int
	Err      error
}

func (f *WriteFailure) Error() string {
	return fmt.Sprintf("index writes failing since %s (%d attempts): %v", f.Since.UTC().Format(time.RFC3339), f.Attempts, f.Err)
}

func (f *WriteFailure) Unwrap() error { return f.Err }

// WriteHealth is nil while the sink takes the pipeline's writes (or none
// was tried yet), and a *WriteFailure while they fail: from the first failed
// attempt until one succeeds.
func (p *Pipeline) WriteHealth() error {
	if f := p.failing.Load(); f != nil {
		return f
	}
	return nil
}

// sinkResult records the outcome of one sink write attempt for WriteHealth.
func (p *Pipeline) sinkResult(err error) {
	if err == nil {
		p.failing.Store(nil)
		return
	}
	f := &WriteFailure{Since: p.now(), Attempts: 1, Err: err}
	if prev := p.failing.Load(); prev != nil {
		f.Since, f.Attempts = prev.Since, prev.Attempts+1
	}
	p.failing.Store(f)
}

// Deps are what a pipeline runs on.
type Deps struct {
	Source     ingest.Source
	DeadLetter ingest.DeadLetter
	Sink       domain.Writer
	// Deny is the replicated deny-list (internal/denylist): posts on it are not
	// indexed, and takedowns from the source (tombstones) are recorded in it
	// before the index deletes them and before they are acknowledged.
	Deny       domain.DenyList
	Embedder   Embedder
	Fetcher    Fetcher                  // nil: URL images fail with a fetch error
	Decode     DecodeFunc               // required
	Thumbnail  func(image.Image) []byte // nil: no thumbnails
	Hasher     Hasher
	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: metrics are not registered
}

// New builds a pipeline.
func New(cfg Config, d Deps) (*Pipeline, error) {
	cfg = cfg.WithDefaults()
	if d.Source == nil || d.DeadLetter == nil || d.Sink == nil || d.Deny == nil || d.Embedder == nil || d.Decode == nil {
		return nil, errors.New("workers: source, dead letter, sink, deny-list, embedder and decoder are required")
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Thumbnail == nil {
		d.Thumbnail = func(image.Image) []byte { return nil }
	}
	p := &Pipeline{cfg: cfg, src: d.Source, dlq: d.DeadLetter, sink: d.Sink, deny: d.Deny, emb: d.Embedder, fetch: d.Fetcher,
		decode: d.Decode, thumb: d.Thumbnail, hash: d.Hasher, log: d.Logger, now: time.Now, timer: realTimer}
	if pe, ok := d.Embedder.(PixelEmbedder); ok {
		p.pix = pe
	}
	m, err := newMetrics(d.Registerer, p)
	if err != nil {
		return nil, err
	}
	p.metrics = m
	return p, nil
}

// Run processes messages until ctx ends. A failing sink is retried with
// backoff and nothing is acknowledged until it succeeds.
func (p *Pipeline) Run(ctx context.Context) error { return p.RunUntil(ctx, ctx) }

// RunUntil fetches messages until stop ends and processes them under work:
// when stop ends, nothing more is fetched and the messages in flight run to
// their end (written or dead-lettered, then acknowledged) unless work ends
// too, in which case they are abandoned unacknowledged (redelivered later).
// Cancel work some grace period after stop for a graceful shutdown. It
// returns stop's error, or nil when a finite source is exhausted
// (ingest.ErrExhausted) and everything it handed out is acknowledged.
func (p *Pipeline) RunUntil(stop, work context.Context) error {
	r := p.start(work)
	backoff := 100 * time.Millisecond
	for stop.Err() == nil && work.Err() == nil {
		if !r.underBytes(stop) {
			break
		}
		room, err := r.reserve(stop, p.cfg.BatchSize)
		if err != nil {
			break
		}
		msgs, err := p.src.Fetch(stop, room, p.cfg.FetchWait)
		r.unreserve(room - len(msgs))
		if errors.Is(err, ingest.ErrExhausted) {
			break // a finite source: finish what is in flight, then return nil
		}
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
		r.submit(msgs)
	}
	if n := r.finish(); n > 0 {
		p.log.Warn("messages abandoned unacknowledged; they will be redelivered", "messages", n)
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

// item is one message in flight.
type item struct {
	msg      *ingest.Message
	size     int64     // len(msg.Value), counted in run.bytes while in flight
	received time.Time // when the source handed msg over
	post     *domain.Post
	change   *domain.Change // set for deletes
	done     bool           // nothing to write (dead-lettered or skipped)
	key      string         // the post id it is ordered by ("" when it writes nothing)
	next     *item          // the next change to the same post, waiting for this one (run.mu)

	// Set by the media stage.
	img      image.Image // kept only when the embedder takes whole images
	release  func()      // returns img's memory (nil: nothing to return)
	pixels   *[]float32  // the image's model input (PixelEmbedder), from run.tensors
	thumb    []byte
	pdq      []byte
	pdqQ     int
	md5      []byte
	pdqVars  [][]byte
	pdqCanon []byte
	regions  []byte
	framed   bool
	windows  []byte
	ndq      any
	mode     string // how the image was decoded and preprocessed
	imgErr   error
	stage    ingest.Stage
	queued   [2]time.Time // when the text / image input joined its modality's queue
	pending  atomic.Int32 // modality inputs not yet encoded

	mu     sync.Mutex // the text and image encoders may finish at once
	txtVec []float32
	imgVec []float32
	failed []failure // partial failures to dead-letter
}

func (it *item) fail(stage ingest.Stage, reason string) {
	it.mu.Lock()
	it.failed = append(it.failed, failure{stage, reason})
	it.mu.Unlock()
}

type failure struct {
	stage  ingest.Stage
	reason string
}

// classify decodes a message and decides what it needs.
func (p *Pipeline) classify(ctx context.Context, m *ingest.Message) *item {
	it := &item{msg: m, received: time.Now(), size: int64(len(m.Value))}
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
	if m.Key != "" && m.Key != post.ID {
		return fail(ingest.StageDecode, fmt.Sprintf("message key %s differs from post id %q", ingest.QuoteID(m.Key), post.ID))
	}
	// The local copy of the deny-list saves the work of encoding a post taken
	// down long ago; the write round syncs it and checks again (apply).
	if p.deny.Denied(post.ID) {
		p.metrics.messages.WithLabelValues("denied").Inc()
		p.log.Info("post is deny-listed; not indexed", "id", post.ID, "origin", m.Origin)
		it.done = true
		return it
	}
	it.post = post
	return it
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

// changes builds the batch's changes, one per post: a change to a post with
// an earlier change in flight waits for it to be written (run.submit), so a
// write never holds two versions of one post.
func (p *Pipeline) changes(items []*item) []domain.Change {
	var out []domain.Change
	version := p.emb.Version()
	for _, it := range items {
		switch {
		case it.change != nil:
			c := *it.change
			c.Seq, c.Received = it.msg.Seq, it.received
			out = append(out, c)
		case !it.done && it.post != nil:
			out = append(out, domain.Change{PostID: it.post.ID, Seq: it.msg.Seq, Records: p.records(it, version), Received: it.received})
		}
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
	thumb := it.thumb
	mk := func(m domain.Modality, vec []float32) domain.Record {
		r := base
		r.Modality = m
		r.PK = domain.PrimaryKey(post.ID, m)
		r.Vector = vec // the Embedder's vectors are L2-normalised (its contract)
		r.Thumbnail = thumb
		return r
	}
	var out []domain.Record
	if it.txtVec != nil {
		out = append(out, mk(domain.ModalityText, it.txtVec))
	}
	if it.imgVec != nil {
		r := mk(domain.ModalityImage, it.imgVec)
		r.PDQ, r.PDQQuality, r.MD5, r.PDQVariants, r.Windows, r.PDQCanonical = it.pdq, it.pdqQ, it.md5, it.pdqVars, it.windows, it.pdqCanon
		r.PDQRegions, r.PDQFramed, r.NearDupQuery = it.regions, it.framed, it.ndq
		r.Preprocess = it.mode
		out = append(out, r)
	}
	if it.txtVec != nil && it.imgVec != nil {
		r := mk(domain.ModalityFused, vecmath.Fuse(it.imgVec, it.txtVec))
		r.Preprocess = it.mode
		out = append(out, r)
	}
	return out
}

// apply makes a batch's changes durable, retrying what fails with backoff
// until ctx ends (a source redelivers whatever is not acknowledged):
//
//  1. takedowns from the source (tombstones) go to the replicated deny-list,
//     so every process stops serving and indexing them;
//  2. the deny-list is caught up with takedowns made anywhere else, and
//     upserts of denied posts are dropped (fail closed: no write while it
//     cannot be caught up);
//  3. one Apply writes the batch;
//  4. the deny-list is caught up again: a takedown recorded while the write
//     ran may have deleted the post from the index before this write landed,
//     so the posts it names are deleted again.
func (p *Pipeline) apply(ctx context.Context, changes []domain.Change) error {
	if len(changes) == 0 {
		return nil
	}
	var tds []domain.Takedown
	now := p.now().UTC()
	for _, c := range changes {
		if c.Delete && c.Deny {
			tds = append(tds, domain.Takedown{PostID: c.PostID, At: now, Source: "tombstone"})
		}
	}
	if len(tds) > 0 {
		if err := p.retry(ctx, "deny-list takedown", func() error { return p.deny.Deny(ctx, tds) }); err != nil {
			return err
		}
	}
	if err := p.retry(ctx, "deny-list sync", func() error { return p.deny.Sync(ctx) }); err != nil {
		return err
	}
	kept := make([]domain.Change, 0, len(changes))
	for _, c := range changes {
		if !c.Delete && p.deny.Denied(c.PostID) {
			p.metrics.outcomes.WithLabelValues(string(domain.Denied)).Inc()
			p.log.Info("post is deny-listed; not indexed", "id", c.PostID)
			continue
		}
		kept = append(kept, c)
	}
	if err := p.write(ctx, kept); err != nil {
		return err
	}
	if err := p.retry(ctx, "deny-list sync", func() error { return p.deny.Sync(ctx) }); err != nil {
		return err
	}
	var late []domain.Change
	for _, c := range kept {
		if !c.Delete && p.deny.Denied(c.PostID) {
			late = append(late, domain.Change{PostID: c.PostID, Delete: true, Deny: true})
		}
	}
	if len(late) > 0 {
		p.log.Info("posts taken down while their write ran; deleted again", "posts", len(late))
		return p.write(ctx, late)
	}
	return nil
}

// write applies changes in one call, retrying a failing sink until ctx ends.
func (p *Pipeline) write(ctx context.Context, changes []domain.Change) error {
	if len(changes) == 0 {
		return nil
	}
	return p.retry(ctx, "sink write", func() error {
		start := time.Now()
		outcomes, err := p.sink.Apply(ctx, changes)
		p.metrics.stage.WithLabelValues("sink").Observe(time.Since(start).Seconds())
		if err != nil && ctx.Err() != nil {
			return err // abandoned with the run: says nothing of the sink
		}
		p.sinkResult(err)
		if err != nil {
			p.metrics.sinkErrors.Inc()
			return err
		}
		for _, o := range outcomes {
			p.metrics.outcomes.WithLabelValues(string(o)).Inc()
		}
		return nil
	})
}

// retry calls f until it succeeds or ctx ends, with backoff.
func (p *Pipeline) retry(ctx context.Context, what string, f func() error) error {
	backoff := 100 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.log.Warn(what+" failed; retrying", "err", err, "backoff", backoff)
		sleep(ctx, backoff)
		backoff = min(backoff*2, 30*time.Second)
	}
}
