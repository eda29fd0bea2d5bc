package embedded

import (
	"context"
	"slices"
)

// PostIDsByAuthor lists the ids of the indexed posts by author (sorted), at
// most limit of them (limit <= 0: all). The admin delete by author uses it.
func (ix *Index) PostIDsByAuthor(ctx context.Context, author string, limit int) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ix.mu.RLock()
	seen := map[string]bool{}
	for _, sg := range ix.segs {
		if sg == nil {
			continue
		}
		for i, r := range sg.recs {
			if i%16384 == 0 && ctx.Err() != nil {
				ix.mu.RUnlock()
				return nil, ctx.Err()
			}
			if r != nil && r.Author == author {
				seen[r.PostID] = true
			}
		}
	}
	ix.mu.RUnlock()
	out := make([]string, 0, len(seen))
	for id := range seen {
		out = append(out, id)
	}
	slices.Sort(out)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
