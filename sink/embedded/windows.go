package embedded

import (
	"context"
	"errors"
	"fmt"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/internal/winindex"
)

// The near-duplicate windows of image records (encoders/neardup: hashes of
// squares anchored on pairs of blobs, which find crops that whole-image PDQ
// misses) live in the store with their record (domain.Record.Windows) and
// in memory in an internal/winindex.Index, which applies writes
// asynchronously (Apply, under mu, queues them) and keeps only the current
// windows of a record. On open the stored windows are loaded and the
// tables built by winindex's goroutine; until then window searches answer
// ErrWindowsBuilding (whole-image near-dup search works throughout).

// ErrWindowsBuilding is returned by NearDupWindows while the window tables
// are being built after the index opened.
var ErrWindowsBuilding = errors.New("embedded index: the near-duplicate window tables are still being built")

// windowIndex is the index's window tables (internal/winindex) and the
// count of stored window lists that did not parse (mu).
type windowIndex struct {
	*winindex.Index
	bad int
}

func newWindowIndex(opt neardup.IndexOptions) *windowIndex {
	return &windowIndex{Index: winindex.New(opt)}
}

// put records r's windows (the caller holds Index.mu for writing).
func (wi *windowIndex) put(r *domain.Record) (bad bool) {
	return wi.Put(r.PK, r.Windows, r.PDQ, r.PDQQuality) != nil
}

// del drops pk's windows (the caller holds Index.mu for writing).
func (wi *windowIndex) del(pk string) { wi.Delete(pk) }

// poke wakes the goroutine that applies the queue.
func (wi *windowIndex) poke() { wi.Poke() }

// startWindows starts the goroutine that builds and maintains the window
// tables (after load).
func (ix *Index) startWindows() { ix.win.Start(ix.log.Info) }

// stopWindows stops that goroutine (without waiting: winindex.Index.Stop).
func (ix *Index) stopWindows() { ix.win.Stop() }

// WindowsReady reports whether the near-duplicate window tables are built
// (searches by window answer ErrWindowsBuilding until then).
func (ix *Index) WindowsReady() bool { return ix.win.Ready() }

// WindowImages is the number of images whose windows the tables hold.
func (ix *Index) WindowImages() int { return ix.win.Len() }

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
	if !ix.win.Ready() {
		return nil, ErrWindowsBuilding
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ws := ix.win.Search(q, s.Parts)
	var out []domain.NearDupHit
	ix.mu.RLock()
	for i := range ws {
		w := &ws[i]
		// Put runs under mu: a record replaced or deleted since the
		// search is seen here.
		if !ix.win.Current(w.PK, w.ID) {
			continue
		}
		l, ok := ix.slotOf[w.PK]
		if !ok {
			continue
		}
		rec := ix.segs[l.seg].recs[l.pos]
		if !filter.Empty() && !filter.Match(rec) {
			continue
		}
		out = append(out, w.NearDupHit(rec))
	}
	ix.mu.RUnlock()
	if k > 0 && len(out) > k {
		out = out[:k]
	}
	if err := ix.display(nil, out); err != nil {
		return nil, err
	}
	return out, nil
}
