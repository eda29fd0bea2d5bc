package query

import (
	"context"
	"slices"

	"github.com/xmodal/xmodal/domain"
)

// InvalidatingWriter wraps the index writer that ingest uses so that every
// applied delete (a Kafka or JetStream tombstone) advances the cache
// generation through OnDelete (Service.Invalidate), once per Apply call.
// Upserts leave the generation alone: the hit rate survives live ingest.
type InvalidatingWriter struct {
	domain.Writer
	// OnDelete is called after an Apply that returned a Deleted outcome; nil: nothing.
	OnDelete func(context.Context) uint64
}

// Apply implements domain.Writer.
func (w *InvalidatingWriter) Apply(ctx context.Context, changes []domain.Change) ([]domain.Outcome, error) {
	out, err := w.Writer.Apply(ctx, changes)
	if w.OnDelete != nil && (slices.Contains(out, domain.Deleted) || (err != nil && hasDelete(changes))) {
		// On an error some deletes may have landed (a remote store): invalidate anyway.
		w.OnDelete(context.WithoutCancel(ctx))
	}
	return out, err
}

func hasDelete(chs []domain.Change) bool {
	for _, c := range chs {
		if c.Delete {
			return true
		}
	}
	return false
}
