package sharedclusters

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/internal/clusters"
	"github.com/xmodal/xmodal/sink/milvus"
)

// MaxFilterPosts bounds the members a cluster filter may name: a Milvus
// filter lists them (post_id in [...]).
const MaxFilterPosts = 16384

// MaxClusterPage bounds a page of cluster members (as the embedded index).
const MaxClusterPage = clusters.MaxPage

// Index is a Milvus index with shared clusters: every write round that
// lands appends its cluster actions, and replies join the clusters from
// the local copy. It implements domain.ClusterIndex; the Milvus index's
// other methods are its own.
type Index struct {
	*milvus.Index
	cl *Clusters
}

// Wrap returns ix with the shared clusters cl.
func Wrap(ix *milvus.Index, cl *Clusters) *Index { return &Index{Index: ix, cl: cl} }

// Clusters returns the shared clusters.
func (ix *Index) Clusters() *Clusters { return ix.cl }

var _ domain.ClusterIndex = (*Index)(nil)

// Apply writes the changes to Milvus, then appends their cluster actions.
// When the append fails the round fails: the caller retries it, and the
// retried round (the same versions re-apply) appends them again.
func (ix *Index) Apply(ctx context.Context, changes []domain.Change) ([]domain.Outcome, error) {
	outs, err := ix.Index.Apply(ctx, changes)
	if err != nil {
		return outs, err
	}
	if err := ix.cl.Record(ctx, changes, outs); err != nil {
		return nil, err
	}
	return outs, nil
}

// DeleteAuthor removes an author's posts (milvus.Index.DeleteAuthor) and
// takes them out of their clusters.
func (ix *Index) DeleteAuthor(ctx context.Context, author string, deny bool) ([]string, error) {
	removed, err := ix.Index.DeleteAuthor(ctx, author, deny)
	if len(removed) > 0 {
		if lerr := ix.cl.Leave(ctx, removed); lerr != nil {
			return removed, errors.Join(err, lerr)
		}
	}
	return removed, err
}

// ErrFilterTooLarge refuses a cluster filter whose clusters have more
// members than a Milvus filter may list.
var ErrFilterTooLarge = fmt.Errorf("%w: the clusters have more than %d members, more than a Milvus filter lists (filter a smaller cluster, or use the embedded index)", domain.ErrInvalidQuery, MaxFilterPosts)

// postFilter turns f's cluster filter into a filter on the members' post
// ids; false when the clusters have no member (nothing can match).
func (ix *Index) postFilter(f *domain.Filter) (bool, error) {
	if !f.HasClusters() {
		return true, nil
	}
	ids := f.Clusters
	if f.Cluster != 0 {
		ids = []uint64{f.Cluster}
		if len(f.Clusters) > 0 && !contains(f.Clusters, f.Cluster) {
			return false, nil
		}
	}
	posts, all, err := ix.cl.MemberPosts(ids, MaxFilterPosts)
	if err != nil {
		return false, err
	}
	if !all {
		return false, ErrFilterTooLarge
	}
	if len(f.Posts) > 0 {
		keep := posts[:0]
		for _, p := range posts {
			if contains(f.Posts, p) {
				keep = append(keep, p)
			}
		}
		posts = keep
	}
	f.Cluster, f.Clusters, f.Posts = 0, nil, posts
	return len(posts) > 0, nil
}

func contains[T comparable](xs []T, x T) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// Search answers a vector query (milvus.Index.Search), filtering by
// cluster through the members' post ids, and joins the hits' clusters.
func (ix *Index) Search(ctx context.Context, q domain.VectorQuery) ([]domain.Hit, error) {
	ok, err := ix.postFilter(&q.Filter)
	if err != nil || !ok {
		return nil, err
	}
	hits, err := ix.Index.Search(ctx, q)
	ix.refs(hits)
	return hits, err
}

// NearDup answers a near-duplicate lookup (milvus.Index.NearDup), as Search.
func (ix *Index) NearDup(ctx context.Context, q domain.NearDupQuery) ([]domain.NearDupHit, error) {
	ok, err := ix.postFilter(&q.Filter)
	if err != nil || !ok {
		return nil, err
	}
	hits, err := ix.Index.NearDup(ctx, q)
	for i := range hits {
		ix.ref(&hits[i].Hit)
	}
	return hits, err
}

// NearDupWindows answers a window search (milvus.Index.NearDupWindows:
// the deployment's shared windows), as Search.
func (ix *Index) NearDupWindows(ctx context.Context, q *neardup.Query, s domain.WindowSearch) ([]domain.NearDupHit, error) {
	ok, err := ix.postFilter(&s.Filter)
	if err != nil || !ok {
		return nil, err
	}
	hits, err := ix.Index.NearDupWindows(ctx, q, s)
	for i := range hits {
		ix.ref(&hits[i].Hit)
	}
	return hits, err
}

// Get fetches records (milvus.Index.Get) with their clusters.
func (ix *Index) Get(ctx context.Context, pks []string) ([]domain.Record, error) {
	recs, err := ix.Index.Get(ctx, pks)
	for i := range recs {
		recs[i].Cluster = ix.cl.ClusterOf(recs[i].PostID)
	}
	return recs, err
}

// ClusterPartition implements dedup.Source: the shared clusters' partition,
// which the batch job compares with its own (drift), when they link by the
// same hashes: the job reads the whole-image PDQ hashes Milvus keeps, so
// clusters that also link by mirrored or content-rectangle hashes
// (clusters.dihedral, clusters.regions) are not comparable.
func (ix *Index) ClusterPartition() (map[string]uint64, int, bool) {
	if ix.cl.signer.Dihedral || ix.cl.signer.Regions {
		return nil, 0, false
	}
	return ix.cl.Partition(), ix.cl.threshold, true
}

// RebuildClusters empties the shared clusters and joins every image record
// of the collection again (implements dedup.Rebuilder; xmodal milvus
// rebuild-clusters): after clusters are turned on over a collection that
// holds posts, or when they drifted. The reset comes first, then the
// records are read (Strong), so a write round that lands meanwhile is
// either read or joins after the reset itself; posts that joined so are
// left as they are. Milvus rows keep only the whole-image PDQ hash: the
// posts rejoined here link by it (their canonical dihedral and region
// hashes are not stored) and, with Signer.Windows, by the windows the
// deployment's shared windows hold for them (milvus.Index.StoredWindows),
// until they are written again; text-only posts are not rejoined. It
// returns the posts rejoined.
func (ix *Index) RebuildClusters(ctx context.Context) (int, error) {
	id, err := ix.cl.Reset(ctx)
	if err != nil {
		return 0, err
	}
	items, err := ix.Index.DedupItems(ctx, time.Time{}, time.Time{})
	if err != nil {
		return 0, err
	}
	if err := ix.cl.Sync(ctx); err != nil {
		return 0, err
	}
	acts := make([]clusters.Action, 0, len(items))
	for _, it := range items {
		if ix.cl.ClusterOf(it.Post) != 0 {
			continue // written since the reset
		}
		h := it.Sig.Bytes()
		var ws []byte
		if ix.cl.signer.Windows {
			ws, _ = ix.Index.StoredWindows(domain.PrimaryKey(it.Post, domain.ModalityImage))
		}
		acts = append(acts, clusters.Action{Post: it.Post, At: time.Unix(0, it.At).UTC(), Sig: ix.cl.signer.Image(h[:], nil, nil, false, ws)})
	}
	if err := ix.cl.Join(ctx, acts); err != nil {
		return 0, err
	}
	return len(acts), ix.cl.MarkSeeded(ctx, id)
}

// SeedIfNeeded rebuilds the clusters from the Milvus rows (RebuildClusters)
// when no rebuild has finished on their stream: a deployment that turns
// clusters on over posts it holds, a change of the clusters' options (a
// new stream), or a rebuild a crash interrupted. An indexer runs it at
// start, beside ingest; two at once are harmless (each reset comes before
// its reads, and joins are idempotent). It returns the posts rejoined and
// whether it ran.
func (ix *Index) SeedIfNeeded(ctx context.Context) (int, bool, error) {
	if err := ix.cl.Sync(ctx); err != nil {
		return 0, false, err
	}
	if ix.cl.Seeded() {
		return 0, false, nil
	}
	n, err := ix.RebuildClusters(ctx)
	return n, true, err
}

func (ix *Index) refs(hits []domain.Hit) {
	for i := range hits {
		ix.ref(&hits[i])
	}
}

func (ix *Index) ref(h *domain.Hit) {
	if in, ok := ix.cl.Lookup(h.PostID); ok {
		h.Cluster = &domain.ClusterRef{ID: in.ID, Size: in.Size, FirstSeen: in.FirstSeen()}
	}
}

// Cluster returns a page of a cluster's members (newest first) and its
// representative, after a Sync: the page reflects every write round that
// finished before the request.
func (ix *Index) Cluster(ctx context.Context, q domain.ClusterQuery) (domain.ClusterPage, error) {
	if err := ix.cl.Sync(ctx); err != nil {
		return domain.ClusterPage{}, err
	}
	id, cursor, err := ix.cl.st.store().PageQuery(q)
	if err != nil {
		return domain.ClusterPage{}, err
	}
	pg, err := ix.cl.Members(id, q.Limit, cursor)
	if err != nil {
		return domain.ClusterPage{}, clusters.PageError(err, id, q.Cursor)
	}
	posts := make([]string, 0, len(pg.Members)+1)
	for _, m := range pg.Members {
		posts = append(posts, m.Post)
	}
	posts = append(posts, pg.Info.Rep)
	hits, err := ix.memberHits(ctx, posts)
	if err != nil {
		return domain.ClusterPage{}, err
	}
	out := domain.ClusterPage{Cluster: summary(&pg.Info, hits)}
	for _, m := range pg.Members {
		if h, ok := hits[m.Post]; ok {
			out.Members = append(out.Members, h)
		}
	}
	if pg.Next != nil {
		out.Next = hex.EncodeToString(pg.Next)
	}
	return out, nil
}

func summary(in *clusters.Info, hits map[string]domain.Hit) domain.ClusterSummary {
	s := domain.ClusterSummary{ID: in.ID, Size: in.Size, FirstSeen: in.FirstSeen(), LastSeen: in.LastSeen()}
	if h, ok := hits[in.Rep]; ok {
		s.Representative = &h
	}
	return s
}

// memberHits fetches the members' records as hits: each post's image
// record, or the text record of a text-only post (text clusters).
func (ix *Index) memberHits(ctx context.Context, posts []string) (map[string]domain.Hit, error) {
	pks := make([]string, 0, 2*len(posts))
	for _, p := range posts {
		if p == "" {
			continue
		}
		pks = append(pks, domain.PrimaryKey(p, domain.ModalityImage))
		if ix.cl.signer.Text {
			pks = append(pks, domain.PrimaryKey(p, domain.ModalityText))
		}
	}
	recs, err := ix.Index.Get(ctx, pks)
	if err != nil {
		return nil, err
	}
	out := make(map[string]domain.Hit, len(posts))
	for i := range recs {
		r := &recs[i]
		if _, ok := out[r.PostID]; ok && r.Modality != domain.ModalityImage {
			continue
		}
		h := domain.HitFromRecord(r, 1)
		ix.ref(&h)
		out[r.PostID] = h
	}
	return out, nil
}

// Trending returns the clusters that grew most in the window (see
// clusters.Store.Trending), with their representatives.
func (ix *Index) Trending(ctx context.Context, q domain.TrendingQuery) ([]domain.TrendingCluster, error) {
	if err := ix.cl.Sync(ctx); err != nil {
		return nil, err
	}
	tr, err := ix.cl.Trending(clusters.TrendingQuery{Now: q.Now, Window: q.Window, Smoothing: q.Smoothing, MinCount: q.MinCount, K: q.K})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", domain.ErrInvalidQuery, err)
	}
	reps := make([]string, len(tr))
	for i := range tr {
		reps[i] = tr[i].Info.Rep
	}
	hits, err := ix.memberHits(ctx, reps)
	if err != nil {
		return nil, err
	}
	out := make([]domain.TrendingCluster, len(tr))
	for i := range tr {
		out[i] = domain.TrendingCluster{ClusterSummary: summary(&tr[i].Info, hits), Current: tr[i].Current, Previous: tr[i].Previous, Score: tr[i].Score}
	}
	return out, nil
}
