package milvus

import (
	"context"
	"errors"
	"fmt"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/neardup"
)

// ErrWindowsBuilding is returned by NearDupWindows while the window tables
// of Options.Windows are being built (after a start or a snapshot reload).
var ErrWindowsBuilding = errors.New("milvus index: the near-duplicate window tables are still being built")

// maxWindowHits bounds the records a window search reads from Milvus.
const maxWindowHits = 1000

// WindowsReady reports whether window searches are answered (always, with
// no Options.Windows: they find nothing).
func (ix *Index) WindowsReady() bool { return ix.opt.Windows == nil || ix.opt.Windows.Ready() }

// WindowImages is the number of images whose windows Options.Windows
// holds (0 without it).
func (ix *Index) WindowImages() int {
	if ix.opt.Windows == nil {
		return 0
	}
	return ix.opt.Windows.Len()
}

// StoredWindows returns the stored window list of the image record pk
// from Options.Windows (false: none, or no Options.Windows).
func (ix *Index) StoredWindows(pk string) ([]byte, bool) {
	if ix.opt.Windows == nil {
		return nil, false
	}
	return ix.opt.Windows.Stored(pk)
}

// NearDupWindows returns the image records whose near-duplicate windows
// (kept in Options.Windows, not in Milvus) match q's, or whose area or
// cleaned hash matches, best first, at most s.K (0: all), passing
// s.Filter, as the embedded index's NearDupWindows: the window search runs
// on the local copy, and the hits' records are read from Milvus (a record
// Milvus no longer holds is dropped).
func (ix *Index) NearDupWindows(ctx context.Context, q *neardup.Query, s domain.WindowSearch) ([]domain.NearDupHit, error) {
	if q == nil {
		return nil, fmt.Errorf("%w: no query", domain.ErrInvalidQuery)
	}
	if s.K < 0 {
		return nil, fmt.Errorf("%w: k must not be negative, got %d", domain.ErrInvalidQuery, s.K)
	}
	if s.Filter.HasClusters() {
		return nil, errNoClusters
	}
	if err := ix.checkMatchFilter(s.Filter); err != nil {
		return nil, err
	}
	w := ix.opt.Windows
	if w == nil {
		return nil, nil
	}
	if !w.Ready() {
		return nil, ErrWindowsBuilding
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	hits, err := w.Search(q, s.Parts)
	if err != nil {
		return nil, err
	}
	if len(hits) > maxWindowHits {
		hits = hits[:maxWindowHits]
	}
	if len(hits) == 0 {
		return nil, nil
	}
	pks := make([]string, len(hits))
	for i := range hits {
		pks[i] = hits[i].PK
	}
	rows, err := ix.fetch(ctx, pks, append([]string{fPK}, ix.displayFields()...), ix.cl)
	if err != nil {
		return nil, err
	}
	var out []domain.NearDupHit
	for i := range hits {
		h := &hits[i]
		f := rows[h.PK]
		if f == nil || !w.Current(h) {
			continue // gone from Milvus, or replaced since the search
		}
		r, j := f()
		rec := r.record(j)
		if !s.Filter.Empty() && !s.Filter.Match(&rec) {
			continue
		}
		out = append(out, h.NearDupHit(&rec))
		if s.K > 0 && len(out) == s.K {
			break
		}
	}
	return out, nil
}
