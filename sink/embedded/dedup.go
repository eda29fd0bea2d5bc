package embedded

import (
	"context"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/internal/clusters"
	"github.com/xmodal/xmodal/internal/dedup"
	mih "github.com/xmodal/xmodal/internal/hamming"
)

// DedupItems lists the image posts created in [since, until) (zero:
// unbounded) whose PDQ hash may join a cluster (quality at least the
// clusters' MinQuality), with their canonical dihedral and content-region
// hashes where the clusters link by them (or, without incremental
// clusters, where records carry them), sorted by post id: the batch job's input (implements
// dedup.Source).
func (ix *Index) DedupItems(ctx context.Context, since, until time.Time) ([]dedup.Item, error) {
	o := ix.clOpt
	if ix.cl == nil {
		o = ClusterOptions{MinQuality: domain.LowPDQQuality, Dihedral: true, Regions: true}
	}
	po := o // the PDQ part; the windows are read from the store below
	po.Windows = false
	ix.mu.RLock()
	s := ix.segs[segIndex(domain.ModalityImage)]
	out := make([]dedup.Item, 0, s.len())
	if s.pdq != nil {
		for pos, r := range s.recs {
			if pos%65536 == 0 && ctx.Err() != nil {
				ix.mu.RUnlock()
				return nil, ctx.Err()
			}
			if s.pdqQ[pos] < 0 || int(s.pdqQ[pos]) < o.MinQuality {
				continue
			}
			if (!since.IsZero() && r.CreatedAt.Before(since)) || (!until.IsZero() && !r.CreatedAt.Before(until)) {
				continue
			}
			// The hashes of the signature the incremental clusters join with
			// (the first is the node, the others link as extra nodes).
			sig := po.signer().Image(unpackCode(s.pdq[4*pos:4*pos+4], domain.PDQBytes), s.canonicalBytes(pos), r.PDQRegions, r.PDQFramed, nil)
			if sig == nil {
				continue // a framed image with no picture to hash joins none
			}
			it := dedup.Item{Post: r.PostID, At: r.CreatedAt.UnixNano()}
			for k := 0; k+domain.PDQBytes <= len(sig); k += domain.PDQBytes {
				c, err := mih.FromBytes(sig[k : k+domain.PDQBytes])
				if err != nil {
					ix.mu.RUnlock()
					return nil, err
				}
				if k == 0 {
					it.Sig = c
				} else {
					it.Regions = append(it.Regions, c)
				}
			}
			out = append(out, it)
		}
	}
	ix.mu.RUnlock()
	if o.Windows {
		// Memory keeps no window lists outside the window index: read each
		// record's from the store (outside mu; a record replaced meanwhile
		// gives its new windows).
		if err := ix.db.View(func(tx *bolt.Tx) error {
			recs := tx.Bucket(bucketRecords)
			for i := range out {
				if i%4096 == 0 && ctx.Err() != nil {
					return ctx.Err()
				}
				v := recs.Get([]byte(domain.PrimaryKey(out[i].Post, domain.ModalityImage)))
				if v == nil {
					continue
				}
				r, _, err := decodeStored(v)
				if err != nil {
					return err
				}
				out[i].Windows = r.Windows
			}
			return nil
		}); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(out, func(a, b dedup.Item) int { return strings.Compare(a.Post, b.Post) })
	return out, nil
}

// DedupWindowLinker returns an empty linker of the window relation when the
// clusters link by windows (ClusterOptions.Windows), nil otherwise
// (implements dedup.WindowSource).
func (ix *Index) DedupWindowLinker() clusters.Linker {
	if ix.cl == nil || !ix.clOpt.Windows {
		return nil
	}
	return neardup.NewLinker()
}

// Thumbnails returns the thumbnails of the posts that have one.
func (ix *Index) Thumbnails(ctx context.Context, posts []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(posts))
	err := ix.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketThumbs)
		for _, p := range posts {
			if err := ctx.Err(); err != nil {
				return err
			}
			if t := b.Get([]byte(p)); t != nil {
				out[p] = append([]byte(nil), t...)
			}
		}
		return nil
	})
	return out, err
}

// ClusterPartition returns the incremental clusters and their threshold.
func (ix *Index) ClusterPartition() (map[string]uint64, int, bool) {
	if ix.cl == nil || ix.clOpt.Linker != nil {
		return nil, 0, false
	}
	return ix.cl.Partition(), ix.clOpt.Threshold, true
}

var (
	_ dedup.Source       = (*Index)(nil)
	_ dedup.WindowSource = (*Index)(nil)
)
