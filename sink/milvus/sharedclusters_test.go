package milvus_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/sink/conformance"
	"github.com/xmodal/xmodal/sink/embedded"
	"github.com/xmodal/xmodal/sink/milvus"
	"github.com/xmodal/xmodal/sink/sharedclusters"
)

// withCopies is the conformance dataset, its images given random PDQ
// hashes (about 128 bits apart), plus three copies (a few bits flipped,
// later) of each of its first five images.
func withCopies(n int) []domain.Change {
	chs := conformance.Dataset(n, 5)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range chs {
		for j := range chs[i].Records {
			if r := &chs[i].Records[j]; r.Modality == domain.ModalityImage {
				r.PDQ, r.PDQQuality = make([]byte, domain.PDQBytes), 100
				for k := range r.PDQ {
					r.PDQ[k] = byte(rng.UintN(256))
				}
			}
		}
	}
	var firsts []domain.Record
	for i := range chs {
		for _, r := range chs[i].Records {
			if r.Modality == domain.ModalityImage && len(r.PDQ) == domain.PDQBytes && r.PDQQuality >= domain.LowPDQQuality && len(firsts) < 5 {
				firsts = append(firsts, r)
			}
		}
	}
	for f, first := range firsts {
		for k := range 3 {
			ch := domain.Change{PostID: fmt.Sprintf("copy-%d-%d", f, k), Seq: 1}
			r := first
			r.PostID, r.PK = ch.PostID, domain.PrimaryKey(ch.PostID, domain.ModalityImage)
			r.Author = "reposter"
			r.PDQ = slices.Clone(first.PDQ)
			r.PDQ[k] ^= 0x0f
			r.CreatedAt = first.CreatedAt.Add(time.Duration(k+1) * time.Hour)
			ch.Records = []domain.Record{r}
			chs = append(chs, ch)
		}
	}
	return chs
}

// TestSharedClustersOnMilvus: a Milvus index with shared clusters links
// what the embedded index's incremental clusters link (the same partition
// on the same data); hits, records and near-duplicate hits carry their
// cluster; a cluster filter keeps its members; a takedown of an author
// takes its posts out; a rebuild from the Milvus rows gives the same
// partition again, in another process's copy too.
func TestSharedClustersOnMilvus(t *testing.T) {
	ctx := context.Background()
	ix := milvus.OpenTestIndex(t, conformance.Dim)
	ns := testutil.StartNATS(t, "")
	open := func(name string) *sharedclusters.Clusters {
		_, js := testutil.ConnectJS(t, ns.ClientURL())
		cl, err := sharedclusters.Open(ctx, js, sharedclusters.Config{Name: name, Dir: t.TempDir(), SnapshotEvery: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	cl := open("clusters-test")
	w := sharedclusters.Wrap(ix, cl)
	emb, err := embedded.Open(ctx, embedded.Options{Path: filepath.Join(t.TempDir(), "e.db"), Dim: conformance.Dim, ModelVersion: "test@1",
		Clusters: &embedded.ClusterOptions{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	chs := withCopies(60)
	for lo := 0; lo < len(chs); lo += 16 {
		batch := chs[lo:min(lo+16, len(chs))]
		if _, err := w.Apply(ctx, batch); err != nil {
			t.Fatal(err)
		}
		if _, err := emb.Apply(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	want, _, _ := emb.ClusterPartition()
	got := cl.Partition()
	if err := testutil.SamePartition(got, want); err != nil {
		t.Fatalf("Milvus's shared clusters are not the embedded index's: %v", err)
	}
	id := cl.ClusterOf("copy-0-0")
	info, _ := cl.Get(id)
	if id == 0 || info.Size != 4 {
		t.Fatalf("copy-0-0 is in cluster %d of size %d; want one of 4 (the original and 3 copies)", id, info.Size)
	}

	// The cluster's page, its filter, and the clusters on hits and records.
	pg, err := w.Cluster(ctx, domain.ClusterQuery{ID: id, Limit: 10})
	if err != nil || len(pg.Members) != 4 || pg.Cluster.Representative == nil || pg.Members[0].PostID != "copy-0-2" {
		t.Fatalf("cluster page: %v %+v", err, pg)
	}
	members := map[string]bool{}
	for _, m := range pg.Members {
		members[m.PostID] = true
	}
	if !members[pg.Cluster.Representative.PostID] || pg.Cluster.Representative.PostID == "copy-0-0" {
		t.Fatalf("representative %s is not the original", pg.Cluster.Representative.PostID)
	}
	hits, err := w.Search(ctx, domain.VectorQuery{Vector: conformance.TieVector(9), K: 50, Modality: domain.ModalityImage, Filter: domain.Filter{Cluster: id}})
	if err != nil || len(hits) != 4 {
		t.Fatalf("search filtered by cluster %d: %v, %d hits; want its 4 members", id, err, len(hits))
	}
	for _, h := range hits {
		if !members[h.PostID] || h.Cluster == nil || h.Cluster.ID != id || h.Cluster.Size != 4 {
			t.Fatalf("hit %s (cluster %+v) of the cluster filter", h.PostID, h.Cluster)
		}
	}
	if hits, err := w.Search(ctx, domain.VectorQuery{Vector: conformance.TieVector(9), K: 5, Filter: domain.Filter{Cluster: 1 << 40}}); err != nil || len(hits) != 0 {
		t.Fatalf("search filtered by an unknown cluster: %v, %d hits", err, len(hits))
	}
	recs, err := w.Get(ctx, []string{domain.PrimaryKey("copy-0-1", domain.ModalityImage)})
	if err != nil || len(recs) != 1 || recs[0].Cluster != id {
		t.Fatalf("Get: %v %+v", err, recs)
	}
	var copyHash []byte
	for _, ch := range chs {
		if ch.PostID == "copy-0-1" {
			copyHash = ch.Records[0].PDQ
		}
	}
	nd, err := w.NearDup(ctx, domain.NearDupQuery{Hashes: [][]byte{copyHash}, MaxDistance: 31, K: 10})
	if err != nil || len(nd) < 4 {
		t.Fatalf("near-duplicate lookup: %v, %d hits", err, len(nd))
	}
	for _, h := range nd {
		if members[h.PostID] && (h.Cluster == nil || h.Cluster.ID != id) {
			t.Fatalf("near-duplicate hit %s carries cluster %+v, want %d", h.PostID, h.Cluster, id)
		}
	}

	// A takedown of the reposter's posts takes the copies out.
	removed, err := w.DeleteAuthor(ctx, "reposter", false)
	if err != nil || len(removed) != 15 {
		t.Fatalf("DeleteAuthor: %v, %d posts", err, len(removed))
	}
	if cl.ClusterOf("copy-0-0") != 0 {
		t.Fatal("a deleted copy is still in a cluster")
	}
	if info, _ := cl.Get(cl.ClusterOf(pg.Cluster.Representative.PostID)); info.Size != 1 {
		t.Fatalf("the original's cluster has %d members after its copies were deleted", info.Size)
	}

	// A rebuild from the Milvus rows, into a new state read by another
	// process, gives the embedded index's partition of what is left.
	for _, r := range removed {
		if _, err := emb.Apply(ctx, []domain.Change{{PostID: r, Delete: true}}); err != nil {
			t.Fatal(err)
		}
	}
	fresh := open("clusters-rebuilt")
	n, err := sharedclusters.Wrap(ix, fresh).RebuildClusters(ctx)
	if err != nil || n == 0 {
		t.Fatalf("RebuildClusters: %d, %v", n, err)
	}
	other := open("clusters-rebuilt")
	if err := other.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	want, _, _ = emb.ClusterPartition()
	for name, c := range map[string]*sharedclusters.Clusters{"rebuilt": fresh, "other process": other} {
		if err := testutil.SamePartition(c.Partition(), want); err != nil {
			t.Fatalf("%s: not the embedded index's partition: %v", name, err)
		}
	}

	// An indexer that starts on a stream no rebuild finished on seeds it from
	// the Milvus rows, once.
	seeded := open("clusters-seeded")
	sw := sharedclusters.Wrap(ix, seeded)
	if n, ran, err := sw.SeedIfNeeded(ctx); err != nil || !ran || n == 0 {
		t.Fatalf("SeedIfNeeded on a new stream: %d posts, ran %v, %v", n, ran, err)
	}
	if err := testutil.SamePartition(seeded.Partition(), want); err != nil {
		t.Fatalf("seeded: not the embedded index's partition: %v", err)
	}
	if n, ran, err := sharedclusters.Wrap(ix, open("clusters-seeded")).SeedIfNeeded(ctx); err != nil || ran {
		t.Fatalf("SeedIfNeeded on a seeded stream: %d posts, ran %v, %v", n, ran, err)
	}

	// A write round whose cluster actions cannot be appended fails (the
	// pipeline retries it): the post is in Milvus, its join is not lost.
	fresh.Close()
	late := domain.Change{PostID: "late-copy", Seq: 1, Records: []domain.Record{chs[len(chs)-1].Records[0]}}
	late.Records[0].PostID, late.Records[0].PK = "late-copy", domain.PrimaryKey("late-copy", domain.ModalityImage)
	if _, err := sharedclusters.Wrap(ix, fresh).Apply(ctx, []domain.Change{late}); err == nil {
		t.Fatal("Apply succeeded with the clusters' stream closed")
	}
	if _, err := sharedclusters.Wrap(ix, other).Apply(ctx, []domain.Change{late}); err != nil || other.ClusterOf("late-copy") == 0 {
		t.Fatalf("the retried round: %v, cluster %d", err, other.ClusterOf("late-copy"))
	}
}
