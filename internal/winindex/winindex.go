// Package winindex keeps the near-duplicate windows of image records in
// memory, by primary key: a neardup.Index over internal/hamming's
// multi-index tables (encoders/neardup: hashes of squares anchored on pairs
// of blobs, which find crops that whole-image PDQ misses). The embedded
// index keeps its records' windows in one, loaded from its store; a Milvus
// deployment keeps them in one per serving process, loaded from the
// replicated copy in JetStream (sink/sharedwindows), since Milvus rows hold
// whole-image PDQ only.
//
// Writes reach the tables asynchronously: Put and Delete give each image a
// fresh id and queue the change; one goroutine (Start) applies the queue and
// maintains the tables, so a long table merge never holds up searches or
// writers. Search maps the ids it finds back to primary keys and keeps only
// the current id of a record, so a replaced or deleted record's windows
// never answer, even before the queue has removed them. Until Start's
// goroutine has built the tables of what was loaded before it, Ready is
// false.
package winindex

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/encoders/pdq"
)

type op struct {
	id      int64
	w, h    int
	sig     []neardup.RegionHash
	removed bool
}

// Index is the in-memory window index of a set of image records. Its
// methods are safe for concurrent use.
type Index struct {
	nd *neardup.Index

	mu   sync.RWMutex
	idOf map[string]int64 // pk -> current id
	pkOf map[int64]string // id -> pk
	next int64
	// loading: before Start; changes go straight into the index (its
	// searchers only append until the tables are built).
	loading bool

	qmu      sync.Mutex
	queue    []op
	draining int  // changes taken from the queue and not yet applied
	ready    bool // the tables are built

	kick   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns an empty index: load it with Put, then Start it.
func New(opt neardup.IndexOptions) *Index {
	return &Index{
		nd:   neardup.NewIndexWithOptions(neardup.NewMIHSearcher(true), neardup.NewMIHSearcher(true), opt),
		idOf: map[string]int64{}, pkOf: map[int64]string{},
		kick: make(chan struct{}, 1), loading: true,
	}
}

// Put records the windows of the image record pk: windows in their stored
// form (neardup.AppendWindows; empty: none, and pk's are dropped) and its
// whole-image PDQ hash (nil: none) with its quality, which the
// pixel-verified band beyond the PDQ threshold searches
// (neardup.WholeBandDistance; the matches within it come from whole-image
// search). A window list that does not parse is an error wrapping
// neardup.ErrBadWindows, and pk then has none. Call Poke after a batch.
func (x *Index) Put(pk string, windows, pdqHash []byte, quality int) error {
	var o *op
	var err error
	if len(windows) > 0 {
		w, h, sig, perr := neardup.ParseWindows(windows)
		if perr != nil {
			err = fmt.Errorf("record %q: %w", pk, perr)
		} else {
			if len(pdqHash) == domain.PDQBytes {
				sig = append(sig, neardup.RegionHash{Kind: neardup.Whole, Hash: pdq.Hash(pdqHash), Quality: quality})
			}
			o = &op{w: w, h: h, sig: sig}
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	old, had := x.idOf[pk]
	if had {
		delete(x.pkOf, old)
		delete(x.idOf, pk)
	}
	if o != nil {
		x.next++
		o.id = x.next
		x.idOf[pk], x.pkOf[o.id] = o.id, pk
	}
	if x.loading {
		if had {
			x.nd.Remove(old)
		}
		if o != nil {
			x.nd.Add(o.id, o.w, o.h, o.sig)
		}
		return err
	}
	x.qmu.Lock()
	if had {
		x.queue = append(x.queue, op{id: old, removed: true})
	}
	if o != nil {
		x.queue = append(x.queue, *o)
	}
	x.qmu.Unlock()
	return err
}

// Delete drops pk's windows. Call Poke after a batch.
func (x *Index) Delete(pk string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	old, had := x.idOf[pk]
	if !had {
		return
	}
	delete(x.idOf, pk)
	delete(x.pkOf, old)
	if x.loading {
		x.nd.Remove(old)
		return
	}
	x.qmu.Lock()
	x.queue = append(x.queue, op{id: old, removed: true})
	x.qmu.Unlock()
}

// Poke wakes the goroutine that applies the queued changes.
func (x *Index) Poke() {
	select {
	case x.kick <- struct{}{}:
	default:
	}
}

// Start ends loading and starts the goroutine that builds the tables of
// what was loaded, then applies queued changes and maintains the tables
// until Stop. log reports the build.
func (x *Index) Start(log func(msg string, args ...any)) {
	ctx, cancel := context.WithCancel(context.Background())
	x.mu.Lock()
	x.loading = false
	x.mu.Unlock()
	x.cancel, x.done = cancel, make(chan struct{})
	go x.run(ctx, log)
}

// Stop stops that goroutine. It does not wait: the goroutine touches memory
// only, and a table build of millions of windows, which checks for the stop
// only when it ends, would hold up a graceful shutdown for minutes.
func (x *Index) Stop() {
	if x.cancel != nil {
		x.cancel()
	}
}

func (x *Index) run(ctx context.Context, log func(msg string, args ...any)) {
	defer close(x.done)
	start := time.Now()
	x.drain()
	x.nd.Finish()
	x.qmu.Lock()
	x.ready = true
	x.qmu.Unlock()
	if log != nil {
		log("near-duplicate window tables built", "images", x.nd.Len(), "took", time.Since(start).Round(time.Millisecond))
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-x.kick:
		}
		if x.drain() {
			x.nd.Maintain()
		}
	}
}

// drain applies the queued changes; false when there were none.
func (x *Index) drain() bool {
	x.qmu.Lock()
	q := x.queue
	x.queue, x.draining = nil, len(q)
	x.qmu.Unlock()
	for _, o := range q {
		if o.removed {
			x.nd.Remove(o.id)
		} else {
			x.nd.Add(o.id, o.w, o.h, o.sig)
		}
	}
	x.qmu.Lock()
	x.draining = 0
	x.qmu.Unlock()
	return len(q) > 0
}

// Ready reports whether the tables are built (Start's goroutine has built
// those of what was loaded).
func (x *Index) Ready() bool {
	x.qmu.Lock()
	defer x.qmu.Unlock()
	return x.ready
}

// Pending is the number of changes put or deleted that the tables do not
// reflect yet (searches do not see them).
func (x *Index) Pending() int {
	x.qmu.Lock()
	defer x.qmu.Unlock()
	return len(x.queue) + x.draining
}

// Len is the number of images whose windows the tables hold.
func (x *Index) Len() int { return x.nd.Len() }

// Has reports whether pk has windows (put and not deleted since).
func (x *Index) Has(pk string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	_, ok := x.idOf[pk]
	return ok
}

// Hit is a record found by Search.
type Hit struct {
	PK string
	ID int64 // the id of pk's windows that matched (Current)
	// Distance is the match's best Hamming distance, Score its score
	// (neardup.Match).
	Distance int
	Score    float64
	Match    domain.WindowMatch
}

// Search returns the records whose windows match q (verified: agreeing
// windows and a placement of the query over the original that a re-post
// gives; encoders/neardup), or whose area hash or cleaned hash matches q's,
// or whose whole-image hash lies in the pixel-verified band beyond the PDQ
// threshold, best first; with parts also those that show a part of the
// query (neardup.SearchOptions.Parts). Whole-image matches within the
// threshold are left out: they come from a whole-image search.
func (x *Index) Search(q *neardup.Query, parts bool) []Hit {
	ms := x.nd.Search(q, neardup.SearchOptions{BandOnly: true, Parts: parts})
	out := make([]Hit, 0, len(ms))
	x.mu.RLock()
	for _, m := range ms {
		band := m.Kind == neardup.Whole && m.Distance > neardup.WholeDistance
		if m.Kind != neardup.Window && m.Kind != neardup.Area && m.Kind != neardup.Cleaned && !band {
			continue
		}
		pk, ok := x.pkOf[m.ID]
		if !ok || x.idOf[pk] != m.ID {
			continue // replaced or deleted since
		}
		out = append(out, Hit{PK: pk, ID: m.ID, Distance: m.Distance, Score: m.Score, Match: domain.WindowMatch{
			Windows: m.Windows, Visible: m.Visible, QueryRect: m.QueryRect,
			Shown:     [4]float32{m.Shown.X0, m.Shown.Y0, m.Shown.X1, m.Shown.Y1},
			Transform: m.Transform.String(), Pixels: m.Pixels, PixelDetail: m.PixelDetail, Whole: band, Area: m.Kind == neardup.Area,
			Cleaned: m.Kind == neardup.Cleaned, LowFrequency: m.LowFrequency, Part: m.Part,
		}})
	}
	x.mu.RUnlock()
	slices.SortStableFunc(out, func(a, b Hit) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return 0
	})
	return out
}

// Current reports whether id is still pk's windows (not replaced or
// deleted since a Search returned it).
func (x *Index) Current(pk string, id int64) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.idOf[pk] == id
}

// NearDupHit is h as a near-duplicate hit of rec.
func (h *Hit) NearDupHit(rec *domain.Record) domain.NearDupHit {
	d := h.Distance
	wm := h.Match
	out := domain.NearDupHit{Hit: domain.HitFromRecord(rec, float32(h.Score)), Windows: &wm}
	out.Distance = &d
	return out
}
