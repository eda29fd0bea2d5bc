package embedded

import (
	"context"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/internal/clusters"
)

// ClusterOptions turn on near-duplicate clusters kept at ingest
// (docs/clusters.md): every image post whose whole-image PDQ hash has
// quality at least MinQuality joins the cluster of the image posts within
// Threshold bits, in the same transaction that writes its records.
type ClusterOptions struct {
	// Threshold is the link distance in PDQ bits (default 31, the neardup
	// lookup's default).
	Threshold int
	// MinQuality: hashes of lower quality (flat, featureless images, whose
	// hashes collide) join no cluster. Default domain.LowPDQQuality.
	MinQuality int
	// Bucket, Retention and SplitLimit: see clusters.Options.
	Bucket     time.Duration
	Retention  time.Duration
	SplitLimit int
	// Linker replaces the PDQ link relation (Threshold is then only recorded).
	Linker clusters.Linker
	// Dihedral also links an image to mirrored and rotated copies of it:
	// records that carry canonical dihedral hashes (domain.Record.
	// PDQCanonical, one or two) link when any of their hashes (PDQ and
	// canonical) is within Threshold bits of any hash of the other
	// (clusters.PDQLinker). Records written without them link by their PDQ
	// hash alone.
	Dihedral bool
	// Regions also links an image by the PDQ hashes of its content
	// rectangles (domain.Record.PDQRegions: the picture inside a meme's
	// caption band or a screenshot's frame), so that a meme or a screenshot
	// joins its picture's cluster: two images link when any of their hashes
	// (PDQ, canonical, regions) is within Threshold bits of any hash of the
	// other. Records written without them link by their other hashes.
	Regions bool
	// Windows also links an image by its near-duplicate windows
	// (domain.Record.Windows, stored with image.neardup_windows; the
	// relation of encoders/neardup.Linker, on the windows inside the
	// image's content rectangle), so that crops join their picture's
	// cluster: two images link when their PDQ signatures link or their
	// windows do (clusters.Union). Records without windows link by their
	// hashes alone. Each member row then holds the window list too (about
	// 4.5 KB with the scaled windows), and the linker a second copy of the
	// windows in memory.
	Windows bool
	// Text also clusters text-only posts (no image record) whose normalised
	// texts are equal (banks.NormalizeText, as the banks' text signals), so
	// that a copied text can trend as image re-posts do.
	Text bool
}

// Default cluster options.
const (
	DefaultClusterThreshold = 31
)

// WithDefaults returns o with the zero fields set to their defaults.
func (o ClusterOptions) WithDefaults() ClusterOptions {
	if o.Threshold == 0 {
		o.Threshold = DefaultClusterThreshold
	}
	if o.MinQuality == 0 {
		o.MinQuality = domain.LowPDQQuality
	}
	return o
}

// Validate reports a bad option.
func (o *ClusterOptions) Validate() error {
	if o.Threshold < 0 || o.Threshold > domain.MaxPDQDistance {
		return fmt.Errorf("embedded index: cluster threshold %d is outside 0..%d", o.Threshold, domain.MaxPDQDistance)
	}
	if o.MinQuality < 0 || o.MinQuality > 100 {
		return fmt.Errorf("embedded index: cluster min quality %d is outside 0..100", o.MinQuality)
	}
	return nil
}

var keyClusterThreshold = []byte("cluster_threshold")

// clusterFingerprint is what the stored clusters were built with: the
// threshold, ",dihedral" when canonical dihedral hashes link, and ",text"
// when text-only posts are clustered too. A store
// built with another is rebuilt on open.
func (o ClusterOptions) clusterFingerprint() string {
	fp := strconv.Itoa(o.Threshold)
	if o.Dihedral {
		fp += ",dihedral"
	}
	if o.Regions {
		fp += ",regions"
	}
	if o.Windows {
		fp += ",windows"
	}
	if o.Text {
		fp += ",text"
	}
	return fp
}

// openClusters opens (or starts) the cluster store. A store kept at another
// threshold is rebuilt from the records after they load (rebuildClusters).
func (ix *Index) openClusters(o ClusterOptions) (rebuild bool, err error) {
	o = o.WithDefaults()
	if err := o.Validate(); err != nil {
		return false, err
	}
	ix.clOpt = o
	l := o.Linker
	if l == nil {
		if l, err = clusters.NewPDQLinker(o.Threshold); err != nil {
			return false, err
		}
		if o.Windows {
			l = clusters.Union{A: l, B: neardup.NewLinker()}
		}
	} else {
		ix.clOpt.Windows = false // a replaced relation takes plain PDQ signatures
	}
	if o.Text {
		l = clusters.Either{Image: l, Text: clusters.NewExactLinker()}
	}
	thr := []byte(o.clusterFingerprint())
	err = ix.db.Update(func(tx *bolt.Tx) error {
		if err := clusters.Init(tx); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyClusterThreshold); v == nil || string(v) != string(thr) {
			rebuild = true
			if v != nil {
				ix.log.Info("embedded index: cluster threshold or text clusters changed: rebuilding the clusters", "was", string(v), "now", string(thr))
			}
			if err := clusters.Drop(tx); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("embedded index: clusters: %w", err)
	}
	err = ix.db.View(func(tx *bolt.Tx) error {
		ix.cl, err = clusters.Open(tx, clusters.Options{Linker: l, Bucket: o.Bucket, Retention: o.Retention, SplitLimit: o.SplitLimit})
		return err
	})
	if err != nil {
		return false, fmt.Errorf("embedded index: clusters: %w", err)
	}
	return rebuild, nil
}

// signer signs records as the options say (internal/clusters.Signer).
func (o *ClusterOptions) signer() clusters.Signer {
	return clusters.Signer{MinQuality: o.MinQuality, Dihedral: o.Dihedral, Regions: o.Regions, Windows: o.Windows, Text: o.Text}
}

// clusterSig is the signature a record joins a cluster with (nil: none).
func (ix *Index) clusterSig(r *domain.Record) []byte { return ix.clOpt.signer().Record(r) }

// textSig is the signature a text-only post joins a text cluster with (nil:
// text clusters are off, or the text normalises to nothing).
func (ix *Index) textSig(text string) []byte { return ix.clOpt.signer().TextOnly(text) }

// clusterItem is a post to join a cluster with its signature.
type clusterItem struct {
	post string
	at   time.Time
	sig  []byte
}

// textClusterItems returns the text-only posts (a text record, no image
// record) with their text signatures, reading the texts from the store
// (memory holds no texts). Callers hold mu (or own the index).
func (ix *Index) textClusterItems(tx *bolt.Tx) ([]clusterItem, error) {
	if !ix.clOpt.Text {
		return nil, nil
	}
	var items []clusterItem
	recs := tx.Bucket(bucketRecords)
	for _, r := range ix.segs[segIndex(domain.ModalityText)].recs {
		if _, ok := ix.slotOf[domain.PrimaryKey(r.PostID, domain.ModalityImage)]; ok {
			continue
		}
		v := recs.Get([]byte(r.PK))
		if v == nil {
			continue
		}
		m, err := readMeta(v)
		if err != nil {
			return nil, err
		}
		if sig := ix.textSig(m.Text); sig != nil {
			items = append(items, clusterItem{r.PostID, r.CreatedAt, sig})
		}
	}
	return items, nil
}

// rebuildClusters joins every image record to the (empty) store, in
// batches of transactions, then records the threshold (a crash midway
// rebuilds again on the next open).
func (ix *Index) rebuildClusters(ctx context.Context) error {
	start := time.Now()
	var items []clusterItem
	s := ix.segs[segIndex(domain.ModalityImage)]
	if ix.clOpt.Windows {
		// The windows are in the store only (memory keeps them in the
		// window index): the signature of each record as stored.
		if err := ix.db.View(func(tx *bolt.Tx) error {
			recs := tx.Bucket(bucketRecords)
			for pos, r := range s.recs {
				if s.pdq == nil || s.pdqQ[pos] < int8(ix.clOpt.MinQuality) {
					continue
				}
				sig, at, err := ix.storedSig(recs, r.PostID, domain.ModalityImage)
				if err != nil {
					return err
				}
				if sig != nil {
					items = append(items, clusterItem{r.PostID, at, sig})
				}
			}
			return nil
		}); err != nil {
			return err
		}
	} else {
		for pos, r := range s.recs {
			if s.pdq == nil || s.pdqQ[pos] < int8(ix.clOpt.MinQuality) {
				continue
			}
			sig := ix.clOpt.signer().Image(unpackCode(s.pdq[4*pos:4*pos+4], domain.PDQBytes), s.canonicalBytes(pos), r.PDQRegions, r.PDQFramed, nil)
			if sig == nil {
				continue // a framed image with no picture to hash joins none
			}
			items = append(items, clusterItem{r.PostID, r.CreatedAt, sig})
		}
	}
	if err := ix.db.View(func(tx *bolt.Tx) error {
		ts, err := ix.textClusterItems(tx)
		items = append(items, ts...)
		return err
	}); err != nil {
		return err
	}
	const batch = 4096
	for len(items) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(batch, len(items))
		if err := ix.cl.Update(ix.db, func(t *clusters.Txn) error {
			for _, it := range items[:n] {
				if _, err := t.Join(it.post, it.at, it.sig); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
		items = items[n:]
	}
	err := ix.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyClusterThreshold, []byte(ix.clOpt.clusterFingerprint()))
	})
	ix.setClusters(nil)
	st := ix.cl.Stats()
	ix.log.Info("embedded index: clusters built", "members", st.Members, "clusters", st.Clusters, "largest", st.Largest,
		"took", time.Since(start).Round(time.Millisecond))
	return err
}

// setClusters writes the cluster ids of the changed posts (nil: every
// record) into memory; callers hold mu for writing (or own the index).
func (ix *Index) setClusters(changed map[string]uint64) {
	if changed == nil {
		for _, s := range ix.segs {
			for _, r := range s.recs {
				r.Cluster = ix.cl.ClusterOf(r.PostID)
			}
		}
		return
	}
	for post, cid := range changed {
		for _, m := range domain.Modalities {
			if l, ok := ix.slotOf[domain.PrimaryKey(post, m)]; ok {
				ix.segs[l.seg].recs[l.pos].Cluster = cid
			}
		}
	}
}

// clusterChange applies one change's effect on the clusters in t.
func (ix *Index) clusterChange(t *clusters.Txn, ch *domain.Change, out domain.Outcome) error {
	if a, ok := ix.clOpt.signer().Action(ch, out); ok {
		return t.Do(a)
	}
	return nil
}

// Clustered reports whether the index keeps clusters.
func (ix *Index) Clustered() bool { return ix.cl != nil }

// ClusterStats returns the cluster store's statistics.
func (ix *Index) ClusterStats() (clusters.Stats, bool) {
	if ix.cl == nil {
		return clusters.Stats{}, false
	}
	return ix.cl.Stats(), true
}

// ErrNoClusters is returned by the cluster reads of an index without clusters.
var ErrNoClusters = fmt.Errorf("embedded index: clusters are off: %w", domain.ErrUnsupported)

// clusterRefs fills the hits' cluster references.
func (ix *Index) clusterRefs(hits []domain.Hit) {
	if ix.cl == nil {
		return
	}
	for i := range hits {
		ix.clusterRef(&hits[i])
	}
}

func (ix *Index) clusterRef(h *domain.Hit) {
	if ix.cl == nil {
		return
	}
	if in, ok := ix.cl.Lookup(h.PostID); ok {
		h.Cluster = &domain.ClusterRef{ID: in.ID, Size: in.Size, FirstSeen: in.FirstSeen()}
	}
}

// MaxClusterPage bounds a page of cluster members.
const MaxClusterPage = clusters.MaxPage

// Cluster returns a page of a cluster's members (their image records,
// newest first) and its representative.
func (ix *Index) Cluster(ctx context.Context, q domain.ClusterQuery) (domain.ClusterPage, error) {
	if ix.cl == nil {
		return domain.ClusterPage{}, ErrNoClusters
	}
	if err := ctx.Err(); err != nil {
		return domain.ClusterPage{}, err
	}
	id, cursor, err := ix.cl.PageQuery(q)
	if err != nil {
		return domain.ClusterPage{}, err
	}
	var pg clusters.Page
	err = ix.db.View(func(tx *bolt.Tx) error {
		var err error
		pg, err = ix.cl.Members(tx, id, q.Limit, cursor)
		return err
	})
	if err != nil {
		return domain.ClusterPage{}, clusters.PageError(err, id, q.Cursor)
	}
	out := domain.ClusterPage{Cluster: ix.summary(&pg.Info)}
	for _, m := range pg.Members {
		if h, ok := ix.memberHit(m.Post); ok {
			out.Members = append(out.Members, h)
		}
	}
	if pg.Next != nil {
		out.Next = hex.EncodeToString(pg.Next)
	}
	all := out.Members
	if r := out.Cluster.Representative; r != nil {
		all = append(all, *r)
	}
	if err := ix.display(all, nil); err != nil {
		return domain.ClusterPage{}, err
	}
	if r := out.Cluster.Representative; r != nil {
		h := all[len(all)-1]
		out.Cluster.Representative = &h
		out.Members = all[: len(all)-1 : len(all)-1]
	}
	return out, nil
}

// memberHit is a cluster member's record as a hit (without display
// fields): its image record, or the text record of a text-only post in a
// text cluster.
func (ix *Index) memberHit(post string) (domain.Hit, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	l, ok := ix.slotOf[domain.PrimaryKey(post, domain.ModalityImage)]
	if !ok && ix.clOpt.Text {
		l, ok = ix.slotOf[domain.PrimaryKey(post, domain.ModalityText)]
	}
	if !ok {
		return domain.Hit{}, false
	}
	return domain.HitFromRecord(ix.segs[l.seg].recs[l.pos], 1), true
}

// summary is a cluster's row with its representative's hit.
func (ix *Index) summary(in *clusters.Info) domain.ClusterSummary {
	s := domain.ClusterSummary{ID: in.ID, Size: in.Size, FirstSeen: in.FirstSeen(), LastSeen: in.LastSeen()}
	if h, ok := ix.memberHit(in.Rep); ok {
		s.Representative = &h
	}
	return s
}

// Trending returns the clusters that grew most in the window (see
// clusters.Store.Trending), with their representatives.
func (ix *Index) Trending(ctx context.Context, q domain.TrendingQuery) ([]domain.TrendingCluster, error) {
	if ix.cl == nil {
		return nil, ErrNoClusters
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tr, err := ix.cl.Trending(clusters.TrendingQuery{Now: q.Now, Window: q.Window, Smoothing: q.Smoothing, MinCount: q.MinCount, K: q.K})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", domain.ErrInvalidQuery, err)
	}
	out := make([]domain.TrendingCluster, len(tr))
	reps := make([]domain.Hit, 0, len(tr))
	for i := range tr {
		out[i] = domain.TrendingCluster{ClusterSummary: ix.summary(&tr[i].Info), Current: tr[i].Current, Previous: tr[i].Previous, Score: tr[i].Score}
		if out[i].Representative != nil {
			reps = append(reps, *out[i].Representative)
		}
	}
	if err := ix.display(reps, nil); err != nil {
		return nil, err
	}
	j := 0
	for i := range out {
		if out[i].Representative != nil {
			h := reps[j]
			out[i].Representative = &h
			j++
		}
	}
	return out, nil
}

var _ domain.ClusterIndex = (*Index)(nil)

// ClusterOfPost returns the cluster of a post (0: none).
func (ix *Index) ClusterOfPost(post string) uint64 {
	if ix.cl == nil {
		return 0
	}
	return ix.cl.ClusterOf(post)
}

// ClusterCollector returns the Prometheus collector of the index's clusters
// (nil when clusters are off).
func (ix *Index) ClusterCollector() *clusters.Collector {
	if ix.cl == nil {
		return nil
	}
	return clusters.NewCollector(ix.cl)
}

// RebuildClusters drops the incremental clusters and rebuilds them from the
// image records, and the text-only posts' texts when text clusters are on
// (after they drifted: clusters above the split limit after
// takedowns, say), in transactions of 4,096 posts. Ingest goes on meanwhile:
// a post written during the rebuild joins as usual, and each post is rejoined
// with the hash its record holds when its batch runs. Replies show no
// cluster for posts not rejoined yet. It returns the posts rejoined.
func (ix *Index) RebuildClusters(ctx context.Context) (int, error) {
	if ix.cl == nil {
		return 0, ErrNoClusters
	}
	items, err := ix.DedupItems(ctx, time.Time{}, time.Time{})
	if err != nil {
		return 0, err
	}
	var texts []clusterItem
	ix.mu.RLock()
	err = ix.db.View(func(tx *bolt.Tx) error {
		texts, err = ix.textClusterItems(tx)
		return err
	})
	ix.mu.RUnlock()
	if err != nil {
		return 0, err
	}
	// The image posts, then the text-only posts, each rejoined with what its
	// record holds when its batch runs.
	type rejoin struct {
		post string
		m    domain.Modality
	}
	todo := make([]rejoin, 0, len(items)+len(texts))
	for _, it := range items {
		todo = append(todo, rejoin{it.Post, domain.ModalityImage})
	}
	for _, it := range texts {
		todo = append(todo, rejoin{it.post, domain.ModalityText})
	}
	n := 0
	for lo := 0; lo == 0 || lo < len(todo); lo += 4096 {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		batch := todo[lo:min(lo+4096, len(todo))]
		var changed map[string]uint64
		err := ix.cl.Update(ix.db, func(t *clusters.Txn) error {
			if lo == 0 {
				if err := t.Reset(); err != nil {
					return err
				}
			}
			recs := t.Tx().Bucket(bucketRecords)
			for _, it := range batch {
				sig, at, err := ix.storedSig(recs, it.post, it.m)
				if err != nil {
					return err
				}
				if sig == nil {
					continue
				}
				if _, err := t.Join(it.post, at, sig); err != nil {
					return err
				}
				n++
			}
			changed = t.Changed()
			return nil
		})
		if err != nil {
			return n, fmt.Errorf("embedded index: rebuild clusters: %w", err)
		}
		ix.mu.Lock()
		ix.setClusters(changed)
		ix.mu.Unlock()
	}
	return n, nil
}

// storedSig is the cluster signature of a post's record of modality m as the
// store holds it now, and the post's time: an image record's PDQ hash, or a
// text-only post's text signature; nil when the record is gone (deleted
// since), the post has an image now (a text record), or it joins nothing.
func (ix *Index) storedSig(recs *bolt.Bucket, post string, m domain.Modality) ([]byte, time.Time, error) {
	v := recs.Get([]byte(domain.PrimaryKey(post, m)))
	if v == nil || (m == domain.ModalityText && recs.Get([]byte(domain.PrimaryKey(post, domain.ModalityImage))) != nil) {
		return nil, time.Time{}, nil
	}
	r, _, err := decodeStored(v)
	if err != nil {
		return nil, time.Time{}, err
	}
	if m == domain.ModalityImage {
		return ix.clusterSig(r), r.CreatedAt, nil
	}
	meta, err := readMeta(v)
	if err != nil {
		return nil, time.Time{}, err
	}
	return ix.textSig(meta.Text), r.CreatedAt, nil
}
