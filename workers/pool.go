package workers

import (
	"context"
	"crypto/md5"
	"errors"
	"image"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xmodal/xmodal/ingest"
)

// Modalities of the encoder queues.
const (
	modText  = 0
	modImage = 1
)

var modName = [2]string{"text", "image"}

// run is one life of the pipeline's stages:
//
//	submit ─┬─ text ──────────────────────────────▶ batcher ─┐
//	        ├─ media workers (fetch, decode, thumb,          ├─▶ encoders ─▶ writer ─▶ acks
//	        │   PDQ, preprocess) ── image ────────▶ batcher ─┘      ▲
//	        └─ deletes and failures ────────────────────────────────┘
//
// Every queue holds at most MaxInFlight items, because a message holds one of
// MaxInFlight slots from its fetch to its acknowledgement: sends on the
// queues never wait, and a stalled encoder or sink stops the fetching.
type run struct {
	p      *Pipeline
	ctx    context.Context // work: when it ends, what is in flight is abandoned
	cancel context.CancelFunc
	wg     sync.WaitGroup

	slots   chan struct{} // a token per message in flight
	freed   chan struct{} // a slot was released (finish waits on it)
	media   chan *item
	queue   [2]chan *item   // into the batchers
	batches [2]chan []*item // out of the batchers, into the encoders
	ready   chan *item      // into the writer

	tensors sync.Pool // *[]float32: one image's model input

	bytes atomic.Int64 // the sizes of the messages in flight (item.size)

	mu    sync.Mutex
	live  map[*item]struct{} // in flight, for keep-alives
	tails map[string]*item   // per post id, the latest change in flight
}

// start launches the stages under work.
func (p *Pipeline) start(work context.Context) *run {
	ctx, cancel := context.WithCancel(work)
	n := p.cfg.MaxInFlight
	r := &run{p: p, ctx: ctx, cancel: cancel,
		slots: make(chan struct{}, n), freed: make(chan struct{}, 1),
		media: make(chan *item, n), ready: make(chan *item, n),
		live: map[*item]struct{}{}, tails: map[string]*item{}}
	for m := range r.queue {
		r.queue[m] = make(chan *item, n)
		r.batches[m] = make(chan []*item)
		b := &batcher[*item]{in: r.queue[m], out: r.batches[m], max: p.cfg.EncodeBatch, wait: p.cfg.EncodeWait, timer: p.timer}
		r.goRun(func() { b.run(ctx) })
	}
	if p.pix != nil {
		size := p.pix.ImageTensorLen()
		r.tensors.New = func() any {
			b := make([]float32, size)
			return &b
		}
	}
	for range p.cfg.MediaConcurrency {
		r.goRun(r.mediaWorker)
	}
	for range p.cfg.Encoders {
		r.goRun(r.encoder)
	}
	for range p.cfg.Writers {
		r.goRun(r.writer)
	}
	r.goRun(r.keepAlive)
	p.cur.Store(r)
	return r
}

func (r *run) goRun(f func()) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		f()
	}()
}

// reserve takes between 1 and want slots, waiting for the first one until
// ctx ends.
func (r *run) reserve(ctx context.Context, want int) (int, error) {
	select {
	case r.slots <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-r.ctx.Done():
		return 0, r.ctx.Err()
	}
	got := 1
	for got < want {
		select {
		case r.slots <- struct{}{}:
			got++
		default:
			return got, nil
		}
	}
	return got, nil
}

// underBytes waits while the messages in flight hold MaxInFlightBytes or
// more (when set); false when stop or the run ended meanwhile.
func (r *run) underBytes(stop context.Context) bool {
	lim := r.p.cfg.MaxInFlightBytes
	for lim > 0 && r.bytes.Load() >= lim {
		select {
		case <-r.freed:
		case <-stop.Done():
			return false
		case <-r.ctx.Done():
			return false
		}
	}
	return true
}

// unreserve gives back n slots.
func (r *run) unreserve(n int) {
	for range n {
		<-r.slots
	}
	if n > 0 {
		select {
		case r.freed <- struct{}{}:
		default:
		}
	}
}

// inFlight is the number of slots taken: messages between fetch and
// acknowledgement plus the room reserved for a fetch in progress.
func (r *run) inFlight() int { return len(r.slots) }

// posts is the number of messages between fetch and acknowledgement (the
// xmodal_inflight_messages gauge): unlike inFlight it does not count the
// room a fetch in progress has reserved, so an idle pipeline reads 0.
func (r *run) posts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.live)
}

// submit classifies messages (their slots already reserved) and routes each
// to the first stage it needs.
//
// Versions of one post are written in the order they were fetched: a change
// to a post that has an earlier change in flight waits (holding its slot)
// until that one is written, so an edit never overtakes the version it
// replaces, nor a re-post its takedown, whatever the sink's version checks.
func (r *run) submit(msgs []*ingest.Message) {
	for _, m := range msgs {
		it := r.p.classify(r.ctx, m)
		r.bytes.Add(it.size)
		r.mu.Lock()
		r.live[it] = struct{}{}
		if key := it.orderKey(); key != "" {
			it.key = key
			if prev := r.tails[key]; prev != nil {
				prev.next = it
				r.tails[key] = it
				r.mu.Unlock()
				continue
			}
			r.tails[key] = it
		}
		r.mu.Unlock()
		r.route(it)
	}
}

// orderKey is the post id whose versions it must not overtake, or "" when it
// writes nothing.
func (it *item) orderKey() string {
	switch {
	case it.change != nil:
		return it.change.PostID
	case !it.done && it.post != nil:
		return it.post.ID
	}
	return ""
}

// route sends it to the first stage it needs.
func (r *run) route(it *item) {
	if it.done || it.change != nil {
		r.send(r.ready, it)
		return
	}
	hasText, hasImage := it.post.HasText(), it.post.HasImage()
	var parts int32
	if hasText {
		parts++
	}
	if hasImage {
		parts++
	}
	it.pending.Store(parts)
	if hasImage {
		r.send(r.media, it)
	}
	if hasText {
		it.queued[modText] = time.Now()
		r.send(r.queue[modText], it)
	}
}

// written releases the items of a durable write from the per-post order and
// routes the changes that waited for them.
func (r *run) written(items []*item) {
	var next []*item
	r.mu.Lock()
	for _, it := range items {
		key := it.key
		if key == "" {
			continue
		}
		if it.next != nil {
			next = append(next, it.next)
		} else if r.tails[key] == it {
			delete(r.tails, key)
		}
	}
	r.mu.Unlock()
	for _, it := range next {
		r.route(it)
	}
}

// send puts it on q unless the run ends first.
func (r *run) send(q chan<- *item, it *item) {
	select {
	case q <- it:
	case <-r.ctx.Done():
	}
}

// finish waits until every message in flight is acknowledged or the run's
// context ends, then stops the stages. It returns the number of messages
// abandoned unacknowledged.
func (r *run) finish() int {
	for r.inFlight() > 0 && r.ctx.Err() == nil {
		select {
		case <-r.freed:
		case <-r.ctx.Done():
		}
	}
	abandoned := r.inFlight()
	r.cancel()
	r.wg.Wait()
	return abandoned
}

// keepAlive reports the messages in flight as in progress every KeepAlive.
func (r *run) keepAlive() {
	t := time.NewTicker(r.p.cfg.KeepAlive)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		msgs := make([]*ingest.Message, 0, len(r.live))
		for it := range r.live {
			msgs = append(msgs, it.msg)
		}
		r.mu.Unlock()
		for _, m := range msgs {
			if err := m.KeepAlive(r.ctx); err != nil {
				r.p.log.Debug("keep-alive failed", "origin", m.Origin, "err", err)
			}
		}
	}
}

// ---- media ----

func (r *run) mediaWorker() {
	for {
		select {
		case it := <-r.media:
			r.prepareImage(it)
		case <-r.ctx.Done():
			return
		}
	}
}

// prepareImage fetches and decodes a post's image and makes everything the
// record needs from its pixels (thumbnail, PDQ hash, model input), so that
// the decoded image is dropped before the item waits for the encoder.
func (r *run) prepareImage(it *item) {
	p := r.p
	failed := func(stage ingest.Stage, err error) {
		it.stage, it.imgErr = stage, err
		r.partDone(it)
	}
	data := it.post.Image.Data
	if it.post.Image.URL != "" {
		if p.fetch == nil {
			failed(ingest.StageFetch, errors.New("image URLs are not enabled (no fetcher configured)"))
			return
		}
		start := time.Now()
		b, err := p.fetch.Fetch(r.ctx, it.post.Image.URL)
		p.metrics.stage.WithLabelValues("fetch").Observe(time.Since(start).Seconds())
		if err != nil {
			if r.ctx.Err() != nil {
				return // abandoned with the run
			}
			failed(ingest.StageFetch, err)
			return
		}
		data = b
	}
	if p.hash.MD5 != nil && p.hash.MD5() {
		sum := md5.Sum(data)
		it.md5 = sum[:]
	}
	start := time.Now()
	dec, err := p.decode(r.ctx, data)
	p.metrics.stage.WithLabelValues("decode").Observe(time.Since(start).Seconds())
	it.post.Image.Data = nil // decoded: the message keeps the original bytes for a dead letter
	if err != nil {
		if r.ctx.Err() != nil {
			return // abandoned with the run
		}
		failed(ingest.StageImage, err)
		return
	}
	release := dec.Release
	if release == nil {
		release = func() {}
	}
	start = time.Now()
	img := dec.Image
	it.mode = dec.Mode
	it.thumb = p.thumb(img)
	if p.hash.PDQVariants != nil {
		in := dec.HashInput
		if in == nil {
			in = img
		}
		var canon []int
		it.pdqVars, canon, it.pdqQ = p.hash.PDQVariants(in)
		if len(it.pdqVars) > 0 {
			it.pdq = it.pdqVars[0]
			if p.hash.PDQCanonical != nil {
				for _, c := range canon {
					if c >= 0 && c < len(it.pdqVars) {
						it.pdqCanon = append(it.pdqCanon, it.pdqVars[c]...)
					}
				}
			}
		}
	} else if p.hash.PDQRegions != nil {
		in := dec.HashInput
		if in == nil {
			in = img
		}
		rh := p.hash.PDQRegions(in, true)
		it.pdq, it.regions, it.framed, it.pdqQ = rh.PDQ, rh.Regions, rh.Framed, rh.Quality
		if p.hash.PDQCanonical != nil {
			it.pdqCanon = rh.Canonical
		}
	} else if p.hash.PDQCanonical != nil {
		in := dec.HashInput
		if in == nil {
			in = img
		}
		it.pdq, it.pdqCanon, it.pdqQ = p.hash.PDQCanonical(in)
	} else if p.hash.PDQ != nil {
		in := dec.HashInput
		if in == nil {
			in = img
		}
		it.pdq, it.pdqQ = p.hash.PDQ(in)
	}
	if p.hash.PDQRegions != nil && p.hash.PDQVariants != nil && len(it.pdq) > 0 {
		in := dec.HashInput
		if in == nil {
			in = img
		}
		rh := p.hash.PDQRegions(in, false)
		it.regions, it.framed = rh.Regions, rh.Framed
	}
	if p.hash.Windows != nil {
		it.windows = p.hash.Windows(img)
	}
	if p.hash.NearDupQuery != nil {
		in := dec.HashInput
		if in == nil {
			in = img
		}
		it.ndq = p.hash.NearDupQuery(in)
	}
	if p.pix != nil {
		px := r.tensors.Get().(*[]float32)
		err := p.pix.PreprocessImage(img, *px)
		release() // the pixels are no longer needed
		if err != nil {
			r.tensors.Put(px)
			failed(ingest.StageImage, err)
			return
		}
		it.pixels = px
	} else {
		it.img, it.release = img, release // released once encoded
	}
	p.metrics.stage.WithLabelValues("preprocess").Observe(time.Since(start).Seconds())
	it.queued[modImage] = time.Now()
	r.send(r.queue[modImage], it)
}

// ---- encoders ----

// encoder runs model batches. When both modalities have a batch waiting it
// takes them in turn, so a flood of one never starves the other.
func (r *run) encoder() {
	last := modImage
	for {
		var b []*item
		m := 1 - last
		select {
		case b = <-r.batches[m]:
		default:
			select {
			case b = <-r.batches[modText]:
				m = modText
			case b = <-r.batches[modImage]:
				m = modImage
			case <-r.ctx.Done():
				return
			}
		}
		last = m
		r.encode(m, b)
	}
}

// encode embeds one batch of one modality; an item that the model fails on is
// isolated by retrying the batch one by one.
func (r *run) encode(m int, items []*item) {
	p := r.p
	now := time.Now()
	p.metrics.encodeBatch.WithLabelValues(modName[m]).Observe(float64(len(items)))
	for _, it := range items {
		p.metrics.encodeWait.WithLabelValues(modName[m]).Observe(now.Sub(it.queued[m]).Seconds())
	}
	var (
		vecs []vecOrErr
		err  error
	)
	switch {
	case m == modText:
		texts := make([]string, len(items))
		for i, it := range items {
			texts[i] = it.post.Text
		}
		vecs, err = embedEach(p, r.ctx, "text", texts, p.emb.EmbedTexts)
	case p.pix != nil:
		xs := make([][]float32, len(items))
		for i, it := range items {
			xs[i] = *it.pixels
		}
		vecs, err = embedEach(p, r.ctx, "image", xs, r.embedTensors)
		for _, it := range items {
			r.tensors.Put(it.pixels)
			it.pixels = nil
		}
	default:
		imgs := make([]image.Image, len(items))
		for i, it := range items {
			imgs[i] = it.img
		}
		vecs, err = embedEach(p, r.ctx, "image", imgs, p.emb.EmbedImages)
	}
	if m == modImage {
		for _, it := range items {
			if it.release != nil {
				it.release()
				it.release = nil
			}
			it.img = nil
		}
	}
	if err != nil {
		return // the run ended: the batch is abandoned with it
	}
	for i, it := range items {
		if vecs[i].err != nil {
			it.fail(ingest.StageEncode, modName[m]+": "+vecs[i].err.Error())
		} else {
			it.mu.Lock()
			if m == modText {
				it.txtVec = vecs[i].vec
			} else {
				it.imgVec = vecs[i].vec
			}
			it.mu.Unlock()
		}
		r.partDone(it)
	}
}

// embedTensors runs the image tower on preprocessed inputs laid end to end.
func (r *run) embedTensors(ctx context.Context, xs [][]float32) ([][]float32, error) {
	per := r.p.pix.ImageTensorLen()
	pixels := make([]float32, 0, len(xs)*per)
	for _, x := range xs {
		pixels = append(pixels, x...)
	}
	return r.p.pix.EmbedPixels(ctx, pixels, len(xs))
}

// partDone records that one modality input of it is finished; the last one
// sends it to the writer.
func (r *run) partDone(it *item) {
	if it.pending.Add(-1) != 0 {
		return
	}
	p := r.p
	it.mu.Lock()
	if it.imgErr != nil {
		it.failed = append(it.failed, failure{it.stage, it.imgErr.Error()})
	}
	if it.txtVec == nil && it.imgVec == nil {
		it.done = true // nothing encoded: the failures above say why
		if len(it.failed) == 0 {
			it.failed = append(it.failed, failure{ingest.StageEncode, "nothing could be encoded"})
		}
	}
	switch {
	case it.done:
		p.metrics.messages.WithLabelValues("dead_letter").Inc()
	case len(it.failed) > 0:
		p.metrics.messages.WithLabelValues("partial").Inc()
	default:
		p.metrics.messages.WithLabelValues("indexed").Inc()
	}
	it.mu.Unlock()
	r.send(r.ready, it)
}

// ---- writer ----

// writer writes finished items in batches: whatever finished while the last
// write ran goes into the next one (up to BatchSize).
func (r *run) writer() {
	for {
		var batch []*item
		select {
		case it := <-r.ready:
			batch = append(batch, it)
		case <-r.ctx.Done():
			return
		}
	more:
		for len(batch) < r.p.cfg.BatchSize {
			select {
			case it := <-r.ready:
				batch = append(batch, it)
			default:
				break more
			}
		}
		if err := r.write(batch); err != nil {
			return // the run ended: the batch is abandoned unacknowledged
		}
	}
}

// write makes a batch durable (dead letters, then the sink) and acknowledges
// its messages.
func (r *run) write(items []*item) error {
	p, ctx := r.p, r.ctx
	p.metrics.batch.Observe(float64(len(items)))
	// Dead letters first: once they are durable, the batch's outcome is fixed.
	for _, it := range items {
		for _, f := range it.failed {
			if err := r.deadLetter(it.msg, f); err != nil {
				return err
			}
		}
	}
	if err := p.apply(ctx, p.changes(items)); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	r.written(items)
	// Confirmed acks are round trips: send them all at once.
	var wg sync.WaitGroup
	for _, it := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := it.msg.Ack(ctx); err != nil {
				p.metrics.ackErrors.Inc()
				p.log.Warn("acknowledgement failed; the message will be redelivered (upserts are idempotent)", "origin", it.msg.Origin, "err", err)
			}
		}()
	}
	wg.Wait()
	r.mu.Lock()
	for _, it := range items {
		delete(r.live, it)
		r.bytes.Add(-it.size)
	}
	r.mu.Unlock()
	r.unreserve(len(items))
	return nil
}

// deadLetter sends one dead letter, retrying with backoff until it is durable
// or the run ends.
func (r *run) deadLetter(m *ingest.Message, f failure) error {
	p := r.p
	backoff := 100 * time.Millisecond
	for {
		err := p.dlq.Send(r.ctx, m, f.stage, f.reason)
		if err == nil {
			p.metrics.dlq.WithLabelValues(string(f.stage)).Inc()
			p.log.Warn("dead-lettered", "key", m.Key, "origin", m.Origin, "stage", f.stage, "reason", f.reason)
			return nil
		}
		if r.ctx.Err() != nil {
			return r.ctx.Err()
		}
		p.log.Warn("dead-letter write failed; retrying", "key", m.Key, "err", err, "backoff", backoff)
		sleep(r.ctx, backoff)
		backoff = min(backoff*2, 30*time.Second)
	}
}
