// Package matching matches every post written to the index against the
// moderation banks and records each match as a durable event (issue #18):
// a domain.Writer that wraps the index's writer.
//
// For each change it is given (one version of a post), the image record's
// PDQ hash and media URL, the text record's text (and the URLs in it) and
// both records' vectors are looked up in every enabled bank. Each match
// becomes an Event with a deterministic id (post id, version, entry id),
// published to the JetStream stream XMODAL_MATCH_EVENTS on the subject
// xmodal.events.v1.match.<bank> with that id as Nats-Msg-Id, so a
// redelivered post adds no event within the stream's duplicate window.
// Apply returns only when the events are durable (acknowledged by the
// stream) and the write is done, so a post is never acknowledged upstream
// before its events exist. Events of review and log banks are published
// beside the index write; a match in a bank whose action is block takes
// the post down instead (deny-list first, then a delete in the index, an
// audit line naming bank and entry): for those banks matching gates the
// write. With a Memory, a new version of a post makes events only for the
// entries its previous matched version did not match; posts on the
// deny-list are not matched.
package matching

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/encoders/pdq"
)

// Stream and subjects of the match events.
const (
	Stream        = "XMODAL_MATCH_EVENTS"
	SubjectPrefix = "xmodal.events.v1.match"
)

// Subject is the subject of the events of one bank.
func Subject(bank string) string { return SubjectPrefix + "." + bank }

// Sources of an event.
const (
	SourceIngest = "ingest"
	SourceSweep  = "sweep"
)

// Event is one match of one version of a post with one bank entry.
type Event struct {
	// ID is EventID(post id, version, entry id): the same post version
	// matching the same entry always has the same id.
	ID         string           `json:"id"`
	PostID     string           `json:"post_id"`
	Version    uint64           `json:"version"`
	Author     string           `json:"author,omitempty"`
	CreatedAt  time.Time        `json:"created_at"`
	Modality   domain.Modality  `json:"modality"`
	Bank       string           `json:"bank"`
	EntryID    string           `json:"entry_id"`
	SignalType banks.SignalType `json:"signal_type"`
	Distance   *int             `json:"distance,omitempty"`
	Score      *float32         `json:"score,omitempty"`
	Labels     []string         `json:"labels,omitempty"`
	Action     banks.Action     `json:"action"`
	MatchedAt  time.Time        `json:"matched_at"`
	Source     string           `json:"source"`
	// Region says how an image matched when not by its whole-image
	// hashes: "content" (the PDQ hash of a content rectangle: the
	// picture inside a meme's caption band, a screenshot's frame, borders)
	// or "cleaned" (the picture's hash with bright thin overlays such as a
	// watermark suppressed); from domain.Record.PDQRegions, which ingest
	// computes with banks.match_regions or clusters.regions. "window": a
	// crop of the banked image (alone, or inside a meme or a screenshot),
	// found by the image's windows among the entries that carry their
	// image's windows (domain.Record.NearDupQuery; banks.State.MatchWindows).
	Region string `json:"region,omitempty"`
	// Shown, for a "window" match, is the part of the banked image the
	// post shows (fractions of its width and height: x0, y0, x1, y1);
	// Windows the number of the post's windows that agree on it, and Pixels
	// the pixel check's correlation of the post with the banked image's
	// patch over that part (1 for an exact crop).
	Shown   *[4]float32 `json:"shown,omitempty"`
	Windows int         `json:"windows,omitempty"`
	Pixels  float64     `json:"pixels,omitempty"`
}

// EventID is an event's deterministic id: 32 hex characters of SHA-256 over
// the post id, the version and the entry id.
func EventID(postID string, version uint64, entryID string) string {
	h := sha256.New()
	h.Write([]byte(postID))
	h.Write([]byte{0})
	h.Write([]byte(strconv.FormatUint(version, 10)))
	h.Write([]byte{0})
	h.Write([]byte(entryID))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Banks is what the writer matches against (internal/bankstore.Store).
type Banks interface {
	Sync(ctx context.Context) error
	// MatchAll answers a batch of queries at once (banks.State.MatchAll:
	// the embedding entries are read once for the whole write batch).
	MatchAll(ctx context.Context, qs []banks.Query) ([]banks.MatchResult, error)
	// MatchWindows matches an image's near-duplicate query against the
	// entries that carry their image's windows
	// (banks.State.MatchWindows).
	MatchWindows(ctx context.Context, q *neardup.Query) ([]banks.RegionMatch, error)
}

// Publisher makes events durable (EventStream; the indexer's Kafka topic).
type Publisher interface {
	Publish(ctx context.Context, evs []Event) error
}

// HeaderEventID is the header that carries an event's id where the
// transport has no deduplication of its own (the Kafka topic of events,
// keyed by post id): consumers deduplicate by it.
const HeaderEventID = "Xmodal-Event-Id"

// Publishers publishes every event to each of its publishers at once and
// returns when all of them hold the events; when one fails the call fails
// (and the batch is retried whole: the ids make the repeats harmless).
type Publishers []Publisher

// Publish publishes evs to every publisher.
func (ps Publishers) Publish(ctx context.Context, evs []Event) error {
	if len(ps) == 1 {
		return ps[0].Publish(ctx, evs)
	}
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.Publish(ctx, evs)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Deps of the writer.
type Deps struct {
	Next   domain.Writer
	Banks  Banks
	Events Publisher
	// Deny records takedowns by block banks (the replicated deny-list).
	Deny domain.DenyList
	// Memory, when set, holds what each post matched last: a new version
	// gets events only for entries its previous matched version did not
	// match (nil: every version's matches are events).
	Memory *Memory
	// MatchRegions matches an image's region hashes too
	// (domain.Record.PDQRegions: its content rectangles' and its cleaned
	// hash; banks.match_regions), so that memes, screenshots and
	// watermarked copies of banked images make events.
	// With MatchRegions, an image record's near-duplicate query
	// (domain.Record.NearDupQuery, which the pipeline computes while a bank
	// holds entries with windows) is matched against those entries too
	// (Banks.MatchWindows): crops of banked images make events (region
	// window).
	MatchRegions bool
	// WindowBlockPixels is the least pixel value (banks.RegionMatch.Pixels)
	// at which a window match in a block bank takes the post down; a window
	// match below it is recorded with action review instead (a person
	// decides). 0 takes DefaultWindowBlockPixels.
	WindowBlockPixels float64
	Logger            *slog.Logger
	Registerer        prometheus.Registerer
	// Now is the clock of matched_at (default time.Now).
	Now func() time.Time
}

// DefaultWindowBlockPixels is Deps.WindowBlockPixels' default. On
// generated pictures banked with windows, the pixel value of right window
// matches had a 5th percentile of 0.948 and a 1st of 0.848; the one wrong
// match seen among 1,600 re-posts (a run before the query's lettering
// line) had 0.833 (bench/results/banks-crops.txt and its history).
const DefaultWindowBlockPixels = 0.9

// Writer is a domain.Writer that matches, records events, and writes.
type Writer struct {
	d         Deps
	matches   *prometheus.CounterVec
	unchanged prometheus.Counter
	blocked   prometheus.Counter
	latency   prometheus.Histogram
	toEvent   prometheus.Histogram
}

var _ domain.Writer = (*Writer)(nil)

// New wraps d.Next.
func New(d Deps) (*Writer, error) {
	if d.Next == nil || d.Banks == nil || d.Events == nil || d.Deny == nil {
		return nil, errors.New("matching: next writer, banks, event publisher and deny-list are required")
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.WindowBlockPixels == 0 {
		d.WindowBlockPixels = DefaultWindowBlockPixels
	}
	w := &Writer{d: d,
		matches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xmodal_match_events_total",
			Help: "Match events recorded, by bank and source (ingest, sweep)."}, []string{"bank", "source"}),
		unchanged: prometheus.NewCounter(prometheus.CounterOpts{Name: "xmodal_match_unchanged_total",
			Help: "Matches at ingest that made no event: the post's previous matched version matched the same entry (edits, redeliveries)."}),
		blocked: prometheus.NewCounter(prometheus.CounterOpts{Name: "xmodal_match_blocked_posts_total",
			Help: "Posts taken down at ingest because they matched a bank whose action is block."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "xmodal_match_seconds",
			Help:    "Time to match one write batch against the banks and make its events durable.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		toEvent: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "xmodal_match_event_latency_seconds",
			Help:    "Ingest-to-event latency: from the pipeline receiving a post to its match events being durable, one observation per post with events at ingest.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
	}
	if d.Registerer != nil {
		for _, c := range []prometheus.Collector{w.matches, w.unchanged, w.blocked, w.latency, w.toEvent} {
			if err := d.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return w, nil
}

// recQuery is one banks lookup of a record; region names the region
// hashes it holds ("": the record's own signals).
type recQuery struct {
	rec    *domain.Record
	q      banks.Query
	region string
}

// queries are the lookups of one change: one per record (image, text),
// then, with regions, for an image with region hashes, one per region
// hash, as stored (content) and moved back (cleaned). A record's own
// lookup comes first, so an entry it matches is reported by it.
func queries(c *domain.Change, regions bool) []recQuery {
	var out []recQuery
	for i := range c.Records {
		r := &c.Records[i]
		q, ok := recordQuery(r)
		if !ok {
			continue
		}
		out = append(out, recQuery{rec: r, q: q})
	}
	for i := range c.Records {
		if !regions {
			break
		}
		out = append(out, regionQueries(&c.Records[i])...)
	}
	return out
}

// regionQueries are the lookups of an image record's region hashes
// (domain.Record.PDQRegions), one a hash: as stored (region "content")
// and moved back (region "cleaned"; neardup.RegionMatchHashes). Other
// records have none.
func regionQueries(r *domain.Record) []recQuery {
	if r.Modality != domain.ModalityImage || len(r.PDQRegions) == 0 {
		return nil
	}
	var out []recQuery
	content, cleaned := neardup.RegionMatchHashes(r.PDQRegions)
	for _, k := range []struct {
		region string
		hs     []pdq.Hash
	}{{"content", content}, {"cleaned", cleaned}} {
		for _, h := range k.hs {
			out = append(out, recQuery{rec: r, q: banks.Query{PDQ: []pdq.Hash{h}}, region: k.region})
		}
	}
	return out
}

// recordQuery is the banks lookup of one record: an image's PDQ hashes
// (its eight dihedral ones when it has them), MD5, URL and vector; a
// text's text (and the URLs in it) and vector. Fused records, and records
// with nothing to match, have none (false).
func recordQuery(r *domain.Record) (banks.Query, bool) {
	var q banks.Query
	switch r.Modality {
	case domain.ModalityImage:
		if len(r.PDQVariants) == 8 {
			// The eight dihedral hashes: a rotated or mirrored copy of
			// a banked image matches, naming its transform.
			for _, h := range r.PDQVariants {
				q.PDQ = append(q.PDQ, pdq.Hash(h))
			}
		} else if len(r.PDQ) == len(pdq.Hash{}) {
			q.PDQ = []pdq.Hash{pdq.Hash(r.PDQ)}
		}
		if len(r.MD5) == md5.Size {
			q.MD5 = hex.EncodeToString(r.MD5)
		}
		if r.MediaURL != "" && !strings.HasPrefix(r.MediaURL, "data:") {
			q.URLs = []string{r.MediaURL}
		}
		q.Vector, q.Modality = r.Vector, "image"
	case domain.ModalityText:
		q.Text = r.Text
		q.Vector, q.Modality = r.Vector, "text"
	default:
		return q, false // fused: its image and text are matched on their own
	}
	if r.ModelVersion == "" {
		q.Vector, q.Modality = nil, "" // a vector is matched only against entries of its model
	} else if len(q.Vector) > 0 {
		q.ModelVersion = r.ModelVersion
	}
	if len(q.PDQ) == 0 && q.Text == "" && len(q.URLs) == 0 && len(q.Vector) == 0 {
		return q, false
	}
	return q, true
}

// Apply matches the changes' records, takes down posts that match a block
// bank, records every match as an event and writes the changes; it returns
// once the events are durable and the write is done. On any error nothing
// is acknowledged upstream and the whole batch is retried: every step is
// idempotent (event ids, deny-list message ids, versioned writes).
func (w *Writer) Apply(ctx context.Context, changes []domain.Change) ([]domain.Outcome, error) {
	start := w.d.Now()
	if err := w.d.Banks.Sync(ctx); err != nil {
		// Fail closed: a post must not pass a block bank unchecked.
		return nil, fmt.Errorf("matching: banks: %w", err)
	}
	var evs []Event
	var tds []domain.Takedown
	var memos []Memo
	var received []time.Time // of the posts with events, to observe once they are durable
	unchanged := 0
	out := slices.Clone(changes)
	now := w.d.Now().UTC()
	// Every record's lookup of the batch in one MatchAll.
	qsOf := make([][]recQuery, len(out))
	skip := make([]bool, len(out))
	var all []banks.Query
	for i := range out {
		c := &out[i]
		if c.Delete || w.d.Deny.Denied(c.PostID) {
			// A post taken down is not matched again (the pipeline does not
			// write it either; the index refuses it).
			skip[i] = true
			continue
		}
		qsOf[i] = queries(c, w.d.MatchRegions)
		for _, rq := range qsOf[i] {
			all = append(all, rq.q)
		}
	}
	results, err := w.matchAll(ctx, all)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("matching: banks: %w", err)
	}
	winsOf, err := w.matchWindows(ctx, out, skip)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("matching: banks: %w", err)
	}
	next := 0
	for i := range out {
		c := &out[i]
		if skip[i] {
			continue
		}
		var block *banks.Match
		var chEvs []Event
		seen := map[string]bool{}
		for _, rq := range qsOf[i] {
			ms, err := results[next].Matches, results[next].Err
			next++
			if err != nil {
				// A record the banks cannot read (a malformed vector, say)
				// would fail every retry: it is logged and not matched,
				// rather than stalling the stream.
				w.d.Logger.Warn("matching: a record could not be matched; skipped", "post_id", c.PostID, "modality", rq.rec.Modality, "err", err)
				continue
			}
			for _, m := range ms {
				id := EventID(c.PostID, c.Seq, m.EntryID)
				if seen[m.Bank+"\x00"+id] {
					continue
				}
				seen[m.Bank+"\x00"+id] = true
				chEvs = append(chEvs, Event{ID: id, PostID: c.PostID, Version: c.Seq, Author: rq.rec.Author, CreatedAt: rq.rec.CreatedAt,
					Modality: rq.rec.Modality, Bank: m.Bank, EntryID: m.EntryID, SignalType: m.SignalType, Distance: m.Distance,
					Score: m.Score, Labels: m.Labels, Action: m.Action, MatchedAt: now, Source: SourceIngest, Region: rq.region})
				if m.Action == banks.ActionBlock && block == nil {
					mm := m
					block = &mm
				}
			}
		}
		// Then the windows (after the hashes: an entry a hash matched is
		// reported by the hash).
		for _, wm := range winsOf[i] {
			m := wm.m
			id := EventID(c.PostID, c.Seq, m.EntryID)
			if seen[m.Bank+"\x00"+id] {
				continue
			}
			seen[m.Bank+"\x00"+id] = true
			e := Event{ID: id, PostID: c.PostID, Version: c.Seq, Author: wm.rec.Author, CreatedAt: wm.rec.CreatedAt,
				Modality: wm.rec.Modality, Bank: m.Bank, EntryID: m.EntryID, SignalType: m.SignalType, Distance: m.Distance,
				Score: m.Score, Labels: m.Labels, Action: m.Action, MatchedAt: now, Source: SourceIngest, Region: windowRegion(m)}
			if m.Region == "window" {
				e.Shown, e.Windows, e.Pixels = m.Shown, m.Windows, m.Pixels
				if e.Action == banks.ActionBlock && m.Pixels < w.d.WindowBlockPixels {
					// Not sure enough to take the post down unseen.
					e.Action = banks.ActionReview
				}
			}
			chEvs = append(chEvs, e)
			if e.Action == banks.ActionBlock && block == nil {
				mm := m.Match
				block = &mm
			}
		}
		if block == nil && len(chEvs) > 0 {
			// The record keeps its matches (every one, announced or not):
			// hits show them and searches filter by bank.
			rms := make([]domain.RecordMatch, len(chEvs))
			for j, e := range chEvs {
				rms[j] = domain.RecordMatch{Bank: e.Bank, EntryID: e.EntryID, SignalType: string(e.SignalType), Modality: e.Modality,
					Distance: e.Distance, Score: e.Score}
			}
			c.Records = slices.Clone(c.Records)
			for j := range c.Records {
				c.Records[j].Matches = rms
			}
		}
		if block == nil && w.d.Memory != nil {
			kept, memo, err := w.sinceLast(ctx, c, chEvs)
			if err != nil {
				return nil, fmt.Errorf("matching: %w", err)
			}
			unchanged += len(chEvs) - len(kept)
			chEvs = kept
			if memo != nil {
				memos = append(memos, *memo)
			}
		}
		evs = append(evs, chEvs...)
		if len(chEvs) > 0 && !c.Received.IsZero() {
			received = append(received, c.Received)
		}
		if block != nil {
			reason := fmt.Sprintf("matched bank %s entry %s (%s)", block.Bank, block.EntryID, block.SignalType)
			tds = append(tds, domain.Takedown{PostID: c.PostID, At: now, Source: "bank:" + block.Bank, Reason: reason})
			w.d.Logger.Info("audit: takedown at ingest", "post_id", c.PostID, "version", c.Seq, "bank", block.Bank, "entry", block.EntryID,
				"signal_type", block.SignalType, "reason", reason)
			*c = domain.Change{PostID: c.PostID, Seq: c.Seq, Delete: true, Deny: true}
		}
	}
	// Block banks gate the write: the takedown is durable before anything
	// is written, so no replica serves the post even for a moment.
	if len(tds) > 0 {
		if err := w.d.Deny.Deny(ctx, tds); err != nil {
			return nil, fmt.Errorf("matching: takedown: %w", err)
		}
		w.blocked.Add(float64(len(tds)))
	}
	// The events and the write run side by side; both must finish before
	// the batch is acknowledged.
	var wg sync.WaitGroup
	var evErr error
	if len(evs) > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			evErr = w.d.Events.Publish(ctx, evs)
		}()
	}
	outcomes, err := w.d.Next.Apply(ctx, out)
	wg.Wait()
	if evErr != nil {
		return nil, fmt.Errorf("matching: events: %w", evErr)
	}
	if err != nil {
		return nil, err
	}
	// What each post matched is remembered once its events are durable: a
	// crash before this point redelivers the post, which then matches as
	// new again (the same ids, dropped as duplicates).
	if len(memos) > 0 {
		if err := w.d.Memory.Remember(ctx, memos); err != nil {
			return nil, fmt.Errorf("matching: %w", err)
		}
	}
	for _, e := range evs {
		w.matches.WithLabelValues(e.Bank, e.Source).Inc()
	}
	w.unchanged.Add(float64(unchanged))
	end := w.d.Now()
	if len(evs) > 0 || len(changes) > 0 {
		w.latency.Observe(end.Sub(start).Seconds())
	}
	for _, r := range received {
		w.toEvent.Observe(end.Sub(r).Seconds())
	}
	return outcomes, nil
}

// matchAll looks a batch's queries up, split over up to GOMAXPROCS
// concurrent MatchAll calls of at least 8 queries each: the lookups are
// CPU-bound (multi-index probes, the concept scan) and the batch is written
// by one writer, so one goroutine would leave the other cores idle.
func (w *Writer) matchAll(ctx context.Context, qs []banks.Query) ([]banks.MatchResult, error) {
	if len(qs) == 0 {
		return nil, nil
	}
	parts := min(runtime.GOMAXPROCS(0), (len(qs)+7)/8)
	if parts <= 1 {
		return w.d.Banks.MatchAll(ctx, qs)
	}
	out := make([]banks.MatchResult, len(qs))
	errs := make([]error, parts)
	var wg sync.WaitGroup
	per := (len(qs) + parts - 1) / parts
	for p := range parts {
		lo, hi := p*per, min((p+1)*per, len(qs))
		if lo >= hi {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := w.d.Banks.MatchAll(ctx, qs[lo:hi])
			if err != nil {
				errs[p] = err
				return
			}
			copy(out[lo:hi], res)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// recWindows is a window match of a record.
type recWindows struct {
	rec *domain.Record
	m   banks.RegionMatch
}

// windowRegion is an event's region for a window lookup's match: "window"
// for a crop; for the entry's own cleaned or area hash, "cleaned", or
// "content" for a content rectangle's area hash ("" for the whole
// image's, as for its PDQ hash).
func windowRegion(m banks.RegionMatch) string {
	switch {
	case m.Region == "window":
		return "window"
	case m.Cleaned:
		return "cleaned"
	case m.Region == "content":
		return "content"
	}
	return ""
}

// matchWindows runs the window lookups of the changes' image records that
// carry a near-duplicate query (with MatchRegions), split over up to
// GOMAXPROCS goroutines (each lookup is CPU-bound: a multi-index probe of
// some hundreds of window hashes and their verification). out[i] holds
// change i's matches in order of its records.
func (w *Writer) matchWindows(ctx context.Context, changes []domain.Change, skip []bool) ([][]recWindows, error) {
	out := make([][]recWindows, len(changes))
	if !w.d.MatchRegions {
		return out, nil
	}
	type job struct {
		change int
		rec    *domain.Record
		q      *neardup.Query
		ms     []banks.RegionMatch
	}
	var jobs []*job
	for i := range changes {
		if skip[i] {
			continue
		}
		for j := range changes[i].Records {
			r := &changes[i].Records[j]
			if q, ok := r.NearDupQuery.(*neardup.Query); ok && q != nil && r.Modality == domain.ModalityImage {
				jobs = append(jobs, &job{change: i, rec: r, q: q})
			}
		}
	}
	if len(jobs) == 0 {
		return out, nil
	}
	var next atomic.Int64
	errs := make([]error, min(runtime.GOMAXPROCS(0), len(jobs)))
	var wg sync.WaitGroup
	for g := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1)) - 1
				if k >= len(jobs) || ctx.Err() != nil {
					return
				}
				ms, err := w.d.Banks.MatchWindows(ctx, jobs[k].q)
				if errors.Is(err, banks.ErrInvalidQuery) {
					// As for a record's hashes: a query the banks cannot
					// read would fail every retry.
					w.d.Logger.Warn("matching: an image's windows could not be matched; skipped", "post_id", changes[jobs[k].change].PostID, "err", err)
					continue
				}
				if err != nil {
					errs[g] = err
					return
				}
				jobs[k].ms = ms
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, j := range jobs {
		for _, m := range j.ms {
			out[j.change] = append(out[j.change], recWindows{rec: j.rec, m: m})
		}
	}
	return out, nil
}

// sinceLast keeps the events of entries that the post's previous matched
// version (its memo) did not match, and returns the memo to record (nil:
// unchanged). "Changed" means a different set of (bank, entry) pairs:
// distances, scores and modalities do not count. A version older than the
// memo's (a redelivery after a newer one) makes no event and no memo.
func (w *Writer) sinceLast(ctx context.Context, c *domain.Change, evs []Event) ([]Event, *Memo, error) {
	keys := make([]string, 0, len(evs))
	for _, e := range evs {
		keys = append(keys, entryKey(e.Bank, e.EntryID))
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	if len(keys) == 0 && !w.d.Memory.Known(c.PostID) {
		return nil, nil, nil // matched nothing, and nothing before (as far as the watcher knows)
	}
	prev, err := w.d.Memory.Last(ctx, c.PostID)
	if err != nil {
		return nil, nil, err
	}
	if prev == nil {
		if len(keys) == 0 {
			return nil, nil, nil
		}
		return evs, &Memo{PostID: c.PostID, Version: c.Seq, Entries: keys}, nil
	}
	if c.Seq != 0 && prev.Version > c.Seq {
		return nil, nil, nil // an older version: the index ignores it too
	}
	had := make(map[string]bool, len(prev.Entries))
	for _, k := range prev.Entries {
		had[k] = true
	}
	var kept []Event
	for _, e := range evs {
		if !had[entryKey(e.Bank, e.EntryID)] {
			kept = append(kept, e)
		}
	}
	if sameEntries(keys, prev.Entries) {
		return kept, nil, nil
	}
	return kept, &Memo{PostID: c.PostID, Version: c.Seq, Entries: keys}, nil
}

// IsDenied asks the wrapped writer.
func (w *Writer) IsDenied(ctx context.Context, postID string) (bool, error) {
	return w.d.Next.IsDenied(ctx, postID)
}

// Close closes the wrapped writer.
func (w *Writer) Close() error {
	if c, ok := w.d.Next.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}

// ---- the event stream ----

// StreamConfig configures the events stream.
type StreamConfig struct {
	// Duplicates is the duplicate window of event ids; make it at least the
	// ingest ack wait × max deliveries (a redelivered post within it adds no
	// event). Default 10 minutes.
	Duplicates time.Duration
	// MaxAge bounds how long events are kept (default 30 days).
	MaxAge   time.Duration
	Replicas int
	Timeout  time.Duration
}

// EventStream publishes events to JetStream.
type EventStream struct {
	js      jetstream.JetStream
	timeout time.Duration
}

// OpenEvents creates or updates the events stream.
func OpenEvents(ctx context.Context, js jetstream.JetStream, cfg StreamConfig) (*EventStream, error) {
	if cfg.Duplicates <= 0 {
		cfg.Duplicates = 10 * time.Minute
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = 30 * 24 * time.Hour
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	rctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	_, err := js.CreateOrUpdateStream(rctx, jetstream.StreamConfig{
		Name: Stream, Subjects: []string{SubjectPrefix + ".>"},
		Description: "xmodal match events: one per (post version, bank entry); Nats-Msg-Id is the event id",
		Storage:     jetstream.FileStorage, Replicas: cfg.Replicas, Duplicates: cfg.Duplicates, MaxAge: cfg.MaxAge,
		Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("matching: events stream %s: %w", Stream, err)
	}
	return &EventStream{js: js, timeout: cfg.Timeout}, nil
}

// Publish publishes the events and returns once every one is acknowledged
// by the stream (durable; a duplicate id is acknowledged without a new
// message).
func (s *EventStream) Publish(ctx context.Context, evs []Event) error {
	futs := make([]jetstream.PubAckFuture, 0, len(evs))
	for _, e := range evs {
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		m := nats.NewMsg(Subject(e.Bank))
		m.Data = b
		m.Header.Set(jetstream.MsgIDHeader, e.ID)
		f, err := s.js.PublishMsgAsync(m, jetstream.WithExpectStream(Stream))
		if err != nil {
			return fmt.Errorf("publish event %s: %w", e.ID, err)
		}
		futs = append(futs, f)
	}
	timer := time.NewTimer(s.timeout)
	defer timer.Stop()
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("event not stored: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			return fmt.Errorf("events not acknowledged within %s", s.timeout)
		}
	}
	return nil
}

// Latest returns up to n of the newest events, newest first, of one bank
// ("" for every bank), reading back from the end of the stream (at most 20n
// messages are read).
func (s *EventStream) Latest(ctx context.Context, bank string, n int) ([]json.RawMessage, error) {
	st, err := s.js.Stream(ctx, Stream)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	out := []json.RawMessage{}
	if info.State.Msgs == 0 {
		return out, nil
	}
	want := ""
	if bank != "" {
		want = Subject(bank)
	}
	for seq, read := info.State.LastSeq, 0; seq >= info.State.FirstSeq && seq > 0 && len(out) < n && read < 20*n; seq, read = seq-1, read+1 {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if want == "" || m.Subject == want {
			out = append(out, json.RawMessage(m.Data))
		}
	}
	return out, nil
}
