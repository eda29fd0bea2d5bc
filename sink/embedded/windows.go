package embedded

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/encoders/pdq"
)

// The near-duplicate windows of image records (encoders/neardup: hashes of
// squares anchored on pairs of blobs, which find crops that whole-image PDQ
// misses) live in the store with their record (domain.Record.Windows) and
// in memory in a neardup.Index over internal/hamming's multi-index tables.
//
// Writes reach that index asynchronously: Apply (under mu) gives each
// image record that has windows a fresh id and queues the change; one
// goroutine applies the queue and maintains the tables, outside mu, so a
// long table merge never holds up searches or Apply. A search maps the ids
// it finds back to primary keys under mu and keeps only the current id of a
// record, so a replaced or deleted record's windows never answer, even
// before the queue has removed them. On open the stored windows are loaded
// and the tables built by the same goroutine; until then window searches
// answer ErrWindowsBuilding (whole-image near-dup search works throughout).

// ErrWindowsBuilding is returned by NearDupWindows while the window tables
// are being built after the index opened.
var ErrWindowsBuilding = errors.New("embedded index: the near-duplicate window tables are still being built")

type winOp struct {
	id      int64
	w, h    int
	sig     []neardup.RegionHash
	removed bool
}

type windowIndex struct {
	nd *neardup.Index
	// idOf (pk -> current id) and pkOf (id -> pk) are guarded by Index.mu.
	idOf map[string]int64
	pkOf map[int64]string
	next int64

	qmu   sync.Mutex
	queue []winOp
	ready bool // the tables are built (qmu)

	// loading: Open is loading the store; changes go straight into the
	// index (its searchers only append until the tables are built).
	loading bool

	kick   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
	bad    int // stored window lists that did not parse (mu)
}

func newWindowIndex(opt neardup.IndexOptions) *windowIndex {
	return &windowIndex{
		nd:   neardup.NewIndexWithOptions(neardup.NewMIHSearcher(true), neardup.NewMIHSearcher(true), opt),
		idOf: map[string]int64{}, pkOf: map[int64]string{},
		kick: make(chan struct{}, 1), loading: true,
	}
}

// put records r's windows (the caller holds Index.mu for writing).
func (wi *windowIndex) put(r *domain.Record) (bad bool) {
	old, had := wi.idOf[r.PK]
	var op *winOp
	if len(r.Windows) > 0 {
		w, h, sig, err := neardup.ParseWindows(r.Windows)
		if err != nil {
			bad = true
		} else {
			// The whole-image hash too, for the pixel-verified band beyond
			// the PDQ threshold (neardup.WholeBandDistance; the matches
			// within it come from NearDup).
			if len(r.PDQ) == domain.PDQBytes {
				sig = append(sig, neardup.RegionHash{Kind: neardup.Whole, Hash: pdq.Hash(r.PDQ), Quality: r.PDQQuality})
			}
			wi.next++
			id := wi.next
			wi.idOf[r.PK], wi.pkOf[id] = id, r.PK
			op = &winOp{id: id, w: w, h: h, sig: sig}
		}
	}
	if op == nil {
		delete(wi.idOf, r.PK)
	}
	if wi.loading {
		if had {
			delete(wi.pkOf, old)
			wi.nd.Remove(old)
		}
		if op != nil {
			wi.nd.Add(op.id, op.w, op.h, op.sig)
		}
		return bad
	}
	wi.qmu.Lock()
	if had {
		delete(wi.pkOf, old)
		wi.queue = append(wi.queue, winOp{id: old, removed: true})
	}
	if op != nil {
		wi.queue = append(wi.queue, *op)
	}
	wi.qmu.Unlock()
	return bad
}

// del drops pk's windows (the caller holds Index.mu for writing).
func (wi *windowIndex) del(pk string) {
	old, had := wi.idOf[pk]
	if !had {
		return
	}
	delete(wi.idOf, pk)
	delete(wi.pkOf, old)
	if wi.loading {
		wi.nd.Remove(old)
		return
	}
	wi.qmu.Lock()
	wi.queue = append(wi.queue, winOp{id: old, removed: true})
	wi.qmu.Unlock()
}

// poke wakes the goroutine that applies the queue.
func (wi *windowIndex) poke() {
	select {
	case wi.kick <- struct{}{}:
	default:
	}
}

// run builds the tables of what was loaded, then applies queued changes
// and maintains the tables until ctx ends.
func (wi *windowIndex) run(ctx context.Context, log func(msg string, args ...any)) {
	defer close(wi.done)
	start := time.Now()
	wi.drain()
	wi.nd.Finish()
	wi.qmu.Lock()
	wi.ready = true
	wi.qmu.Unlock()
	log("near-duplicate window tables built", "images", wi.nd.Len(), "took", time.Since(start).Round(time.Millisecond))
	for {
		select {
		case <-ctx.Done():
			return
		case <-wi.kick:
		}
		if wi.drain() {
			wi.nd.Maintain()
		}
	}
}

// drain applies the queued changes; false when there were none.
func (wi *windowIndex) drain() bool {
	wi.qmu.Lock()
	q := wi.queue
	wi.queue = nil
	wi.qmu.Unlock()
	for _, op := range q {
		if op.removed {
			wi.nd.Remove(op.id)
		} else {
			wi.nd.Add(op.id, op.w, op.h, op.sig)
		}
	}
	return len(q) > 0
}

func (wi *windowIndex) isReady() bool {
	wi.qmu.Lock()
	defer wi.qmu.Unlock()
	return wi.ready
}

// startWindows starts the goroutine that builds and maintains the window
// tables (after load).
func (ix *Index) startWindows() {
	ctx, cancel := context.WithCancel(context.Background())
	ix.mu.Lock()
	ix.win.loading = false
	ix.mu.Unlock()
	ix.win.cancel, ix.win.done = cancel, make(chan struct{})
	go ix.win.run(ctx, ix.log.Info)
}

// stopWindows stops that goroutine. It does not wait: the goroutine
// touches memory only (never the store), and a table build of millions of
// windows, which checks for the stop only when it ends, would hold up a
// graceful shutdown for minutes.
func (ix *Index) stopWindows() {
	if ix.win.cancel != nil {
		ix.win.cancel()
	}
}

// WindowsReady reports whether the near-duplicate window tables are built
// (searches by window answer ErrWindowsBuilding until then).
func (ix *Index) WindowsReady() bool { return ix.win.isReady() }

// WindowImages is the number of images whose windows the tables hold.
func (ix *Index) WindowImages() int { return ix.win.nd.Len() }

// NearDupWindows returns the image records whose windows match q's
// (verified: agreeing windows and a placement of the query over the
// original that a re-post gives; encoders/neardup), or whose area hash
// matches q's (a downscale that moved the PDQ hash), or whose cleaned hash
// matches q's (a watermarked copy), best first, at most s.K (0: all),
// passing s.Filter; with s.Parts also those that show a part of the
// query (its crops; query with neardup.Hasher.PartsQuery), marked Part.
// Whole-image matches come from NearDup; a record can be in both. Each
// hit's Distance is its best window distance, Score the match's score,
// Windows the evidence.
func (ix *Index) NearDupWindows(ctx context.Context, q *neardup.Query, s domain.WindowSearch) ([]domain.NearDupHit, error) {
	k, filter := s.K, s.Filter
	if q == nil {
		return nil, fmt.Errorf("%w: no query", domain.ErrInvalidQuery)
	}
	if k < 0 {
		return nil, fmt.Errorf("%w: k must not be negative, got %d", domain.ErrInvalidQuery, k)
	}
	if !ix.win.isReady() {
		return nil, ErrWindowsBuilding
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ms := ix.win.nd.Search(q, neardup.SearchOptions{BandOnly: true, Parts: s.Parts})
	var out []domain.NearDupHit
	ix.mu.RLock()
	for _, m := range ms {
		band := m.Kind == neardup.Whole && m.Distance > neardup.WholeDistance
		if m.Kind != neardup.Window && m.Kind != neardup.Area && m.Kind != neardup.Cleaned && !band {
			continue
		}
		pk, ok := ix.win.pkOf[m.ID]
		if !ok || ix.win.idOf[pk] != m.ID {
			continue // replaced or deleted since
		}
		l, ok := ix.slotOf[pk]
		if !ok {
			continue
		}
		rec := ix.segs[l.seg].recs[l.pos]
		if !filter.Empty() && !filter.Match(rec) {
			continue
		}
		d := m.Distance
		h := domain.NearDupHit{Hit: domain.HitFromRecord(rec, float32(m.Score)), Windows: &domain.WindowMatch{
			Windows: m.Windows, Visible: m.Visible, QueryRect: m.QueryRect,
			Shown:     [4]float32{m.Shown.X0, m.Shown.Y0, m.Shown.X1, m.Shown.Y1},
			Transform: m.Transform.String(), Pixels: m.Pixels, PixelDetail: m.PixelDetail, Whole: band, Area: m.Kind == neardup.Area,
			Cleaned: m.Kind == neardup.Cleaned, LowFrequency: m.LowFrequency, Part: m.Part,
		}}
		h.Distance = &d
		out = append(out, h)
	}
	ix.mu.RUnlock()
	slices.SortStableFunc(out, func(a, b domain.NearDupHit) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return 0
	})
	if k > 0 && len(out) > k {
		out = out[:k]
	}
	if err := ix.display(nil, out); err != nil {
		return nil, err
	}
	return out, nil
}
