package embedded

import (
	"context"
	"errors"
	"fmt"
	"image"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
	"github.com/xmodal/xmodal/internal/clusters"
	"github.com/xmodal/xmodal/internal/dedup"
	"github.com/xmodal/xmodal/internal/testutil"
)

func openClustered(t *testing.T, path string, thr int) *Index {
	t.Helper()
	ix, err := Open(context.Background(), Options{Path: path, Dim: testDim, ModelVersion: "test@1", Clusters: &ClusterOptions{Threshold: thr}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return ix
}

func randHash(rng *rand.Rand) []byte {
	b := make([]byte, domain.PDQBytes)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func flipBits(h []byte, bits ...int) []byte {
	o := append([]byte(nil), h...)
	for _, b := range bits {
		o[b/8] ^= 1 << (b % 8)
	}
	return o
}

// imagePost is a change of a post with an image record (PDQ hash h) and a
// text record.
func imagePost(post string, at time.Time, h []byte, seed uint64) domain.Change {
	img := rec(post, domain.ModalityImage, seed)
	img.CreatedAt, img.PDQ, img.PDQQuality, img.Thumbnail = at, h, 100, []byte("thumb-"+post)
	txt := rec(post, domain.ModalityText, seed+1)
	txt.CreatedAt = at
	return domain.Change{PostID: post, Records: []domain.Record{img, txt}}
}

func clusterOf(t *testing.T, ix *Index, post string) uint64 {
	t.Helper()
	recs, err := ix.Get(context.Background(), []string{domain.PrimaryKey(post, domain.ModalityImage), domain.PrimaryKey(post, domain.ModalityText)})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) == 0 {
		return 0
	}
	for _, r := range recs {
		if r.Cluster != recs[0].Cluster {
			t.Fatalf("post %s: records in clusters %d and %d", post, recs[0].Cluster, r.Cluster)
		}
	}
	return recs[0].Cluster
}

func TestClustersAtIngest(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ix.db")
	ix := openClustered(t, path, 12)
	rng := rand.New(rand.NewPCG(1, 1))
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	a := randHash(rng)
	far := flipBits(a, span(0, 20)...)
	// One batch: A, its copy B, and C far from both: B links to A in the batch.
	mustApply(t, ix, imagePost("A", t0, a, 1), imagePost("B", t0.Add(time.Minute), flipBits(a, 100, 101), 2), imagePost("C", t0.Add(2*time.Minute), far, 3))
	ca, cb, cc := clusterOf(t, ix, "A"), clusterOf(t, ix, "B"), clusterOf(t, ix, "C")
	if ca == 0 || ca != cb || cc == ca || cc == 0 {
		t.Fatalf("clusters A %d B %d C %d: want A and B together, C apart", ca, cb, cc)
	}
	// D bridges A's cluster and C's: one cluster, the larger id kept.
	mustApply(t, ix, imagePost("D", t0.Add(3*time.Minute), flipBits(a, span(0, 10)...), 4))
	for _, p := range []string{"A", "B", "C", "D"} {
		if got := clusterOf(t, ix, p); got != ca {
			t.Fatalf("post %s in cluster %d, want %d (the merged cluster keeps the larger one's id)", p, got, ca)
		}
	}
	// Search hits carry the cluster; the cluster filter keeps its records.
	hits, err := ix.Search(ctx, domain.VectorQuery{Vector: unit(1), K: 10, Modality: domain.ModalityImage})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hits {
		if h.Cluster == nil || h.Cluster.ID != ca || h.Cluster.Size != 4 || !h.Cluster.FirstSeen.Equal(t0) {
			t.Fatalf("hit %s cluster %+v: want id %d, size 4, first seen %v", h.PK, h.Cluster, ca, t0)
		}
	}
	mustApply(t, ix, imagePost("E", t0, randHash(rng), 5))
	hits, err = ix.Search(ctx, domain.VectorQuery{Vector: unit(5), K: 10, Filter: domain.Filter{Cluster: ca}})
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 8 {
		t.Fatalf("%d hits with the cluster filter, want 8 (4 posts x image, text)", len(hits))
	}
	for _, h := range hits {
		if h.PostID == "E" {
			t.Fatal("the cluster filter let E through")
		}
	}
	// The cluster's members, newest first, a page at a time; representative A.
	pg, err := ix.Cluster(ctx, domain.ClusterQuery{PostID: "B", Limit: 3})
	if err != nil {
		t.Fatal(err)
	}
	if pg.Cluster.Representative == nil || pg.Cluster.Representative.PostID != "A" || string(pg.Cluster.Representative.Thumbnail) != "thumb-A" {
		t.Fatalf("representative %+v, want A with its thumbnail", pg.Cluster.Representative)
	}
	got := ""
	for _, h := range pg.Members {
		got += h.PostID
	}
	pg2, err := ix.Cluster(ctx, domain.ClusterQuery{ID: ca, Limit: 3, Cursor: pg.Next})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range pg2.Members {
		got += h.PostID
	}
	if got != "DCBA" || pg2.Next != "" {
		t.Fatalf("members %s (next %q), want DCBA", got, pg2.Next)
	}
	if _, err := ix.Cluster(ctx, domain.ClusterQuery{ID: 999, Limit: 3}); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("unknown cluster: %v", err)
	}
	// Takedown of D, the only link between {A, B} and {C}: the cluster splits.
	mustApply(t, ix, domain.Change{PostID: "D", Delete: true, Deny: true})
	if clusterOf(t, ix, "A") != ca || clusterOf(t, ix, "B") != ca {
		t.Fatal("A and B left their cluster")
	}
	if c := clusterOf(t, ix, "C"); c == ca || c == 0 {
		t.Fatalf("C in cluster %d after the split, want a new one", c)
	}
	// A new version of B without an image leaves the cluster.
	mustApply(t, ix, domain.Change{PostID: "B", Records: []domain.Record{rec("B", domain.ModalityText, 9)}})
	if c := clusterOf(t, ix, "B"); c != 0 {
		t.Fatalf("B without an image is in cluster %d", c)
	}
	before := ix.cl.Partition()
	if err := ix.db.View(ix.cl.Check); err != nil {
		t.Fatal(err)
	}
	ix.Close()
	ix2 := openClustered(t, path, 12)
	if err := testutil.SamePartition(before, ix2.cl.Partition()); err != nil {
		t.Fatalf("after reopening: %v", err)
	}
	if clusterOf(t, ix2, "A") != ca {
		t.Fatal("A's cluster id changed on reopening")
	}
	ix2.Close()
	// Another threshold rebuilds the clusters from the records.
	ix3 := openClustered(t, path, 30)
	if clusterOf(t, ix3, "C") != clusterOf(t, ix3, "A") {
		t.Fatal("at threshold 30, C (20 bits from A) should join A's cluster")
	}
}

// TestTwoWritersLink: two writers apply near-duplicates of the same images at
// once; the clusters are the components of the link graph, as if the posts
// had come one at a time. Apply's clusters transaction (clusters.Store.Begin)
// runs inside the bbolt write transaction and is published before the next
// one starts, so each writer sees the other's posts.
func TestTwoWritersLink(t *testing.T) {
	ix := openClustered(t, filepath.Join(t.TempDir(), "ix.db"), 12)
	rng := rand.New(rand.NewPCG(2, 2))
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	centres := make([][]byte, 10)
	for i := range centres {
		centres[i] = randHash(rng)
	}
	var all [2][]domain.Change
	sigs := map[string][]byte{}
	for w := range 2 {
		for i := range 200 {
			p := fmt.Sprintf("w%d-%d", w, i)
			h := flipBits(centres[(i+w)%len(centres)], rng.IntN(256), rng.IntN(256), rng.IntN(256))
			sigs[p] = h
			all[w] = append(all[w], imagePost(p, t0.Add(time.Duration(i)*time.Second), h, uint64(i)))
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			chs := all[w]
			for len(chs) > 0 {
				n := min(len(chs), 7)
				if _, err := ix.Apply(context.Background(), chs[:n]); err != nil {
					errs <- err
					return
				}
				chs = chs[n:]
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := testutil.SamePartition(ix.cl.Partition(), components(sigs, 12)); err != nil {
		t.Fatal(err)
	}
	if st := ix.cl.Stats(); st.Clusters != len(centres) {
		t.Fatalf("%d clusters, want %d", st.Clusters, len(centres))
	}
	if err := ix.db.View(ix.cl.Check); err != nil {
		t.Fatal(err)
	}
}

// TestFailedApplyLeavesClusters: an Apply that fails in its transaction
// (a record the store refuses midway) changes no cluster.
func TestFailedApplyLeavesClusters(t *testing.T) {
	ix := openClustered(t, filepath.Join(t.TempDir(), "ix.db"), 12)
	rng := rand.New(rand.NewPCG(3, 3))
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	a := randHash(rng)
	mustApply(t, ix, imagePost("A", t0, a, 1), imagePost("C", t0, flipBits(a, span(0, 20)...), 2))
	before := ix.cl.Partition()
	// Break the bbolt transaction after the clusters changed: a read-only
	// bucket write fails the commit path through a closed transaction.
	err := ix.db.Update(func(tx *bolt.Tx) error {
		ct := ix.cl.Begin(tx)
		if _, err := ct.Join("B", t0, flipBits(a, span(0, 10)...)); err != nil {
			ct.Abort()
			return err
		}
		ct.Abort()
		return errors.New("crash")
	})
	if err == nil {
		t.Fatal("the transaction did not fail")
	}
	if err := testutil.SamePartition(before, ix.cl.Partition()); err != nil {
		t.Fatal(err)
	}
	if err := ix.db.View(ix.cl.Check); err != nil {
		t.Fatal(err)
	}
	// And through Apply: a change whose record has a bad dimension fails the
	// whole batch before anything is written.
	bad := imagePost("B", t0, flipBits(a, span(0, 10)...), 3)
	bad.Records[1].Vector = bad.Records[1].Vector[:3]
	if _, err := ix.Apply(context.Background(), []domain.Change{bad}); err == nil {
		t.Fatal("a bad record was accepted")
	}
	if err := testutil.SamePartition(before, ix.cl.Partition()); err != nil {
		t.Fatal(err)
	}
}

func span(lo, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = lo + i
	}
	return out
}

// TestRebuildClustersAfterDrift: above the split limit a takedown leaves a
// cluster whole; the batch job's partition then differs (drift), and
// RebuildClusters makes the incremental clusters its partition again, with
// fresh ids.
func TestRebuildClustersAfterDrift(t *testing.T) {
	ctx := context.Background()
	ix, err := Open(ctx, Options{Path: filepath.Join(t.TempDir(), "ix.db"), Dim: testDim, Clusters: &ClusterOptions{Threshold: 12, SplitLimit: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	rng := rand.New(rand.NewPCG(4, 4))
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	a := randHash(rng)
	b := flipBits(a, span(0, 10)...)
	c := flipBits(b, span(10, 10)...)
	mustApply(t, ix, imagePost("A", t0, a, 1), imagePost("B", t0, b, 2), imagePost("C", t0, c, 3), imagePost("Z", t0, randHash(rng), 4))
	old := clusterOf(t, ix, "A")
	mustApply(t, ix, domain.Change{PostID: "B", Delete: true, Deny: true})
	if clusterOf(t, ix, "C") != old {
		t.Fatal("the cluster split above the split limit")
	}
	drift := func() int {
		items, err := ix.DedupItems(ctx, time.Time{}, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		uf, err := dedup.Components(ctx, items, dedup.Options{Threshold: 12})
		if err != nil {
			t.Fatal(err)
		}
		part, thr, ok := ix.ClusterPartition()
		if !ok || thr != 12 {
			t.Fatalf("partition: %v %d", ok, thr)
		}
		return dedup.Drift(items, uf, part)
	}
	if d := drift(); d == 0 {
		t.Fatal("no drift after a takedown above the split limit")
	}
	n, err := ix.RebuildClusters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("rejoined %d posts, want 3 (A, C, Z)", n)
	}
	if d := drift(); d != 0 {
		t.Fatalf("drift %d after the rebuild", d)
	}
	ca, cc := clusterOf(t, ix, "A"), clusterOf(t, ix, "C")
	if ca == cc || ca <= old || cc <= old {
		t.Fatalf("after the rebuild A in %d, C in %d (old cluster %d): want two new ids", ca, cc, old)
	}
	if err := ix.db.View(ix.cl.Check); err != nil {
		t.Fatal(err)
	}
}

// textPost is a change of a text-only post.
func textPost(post string, at time.Time, text string, seed uint64) domain.Change {
	r := rec(post, domain.ModalityText, seed)
	r.CreatedAt, r.Text = at, text
	return domain.Change{PostID: post, Records: []domain.Record{r}}
}

// Text clusters (ClusterOptions.Text): text-only posts with the same
// normalised text share a cluster, apart from image clusters; an edit to
// another text leaves, a takedown leaves; the clusters trend, page their
// members and survive a reopen; off, text posts join nothing; turning it on
// rebuilds the clusters with the texts.
func TestTextClusters(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "ix.db")
	open := func(text bool) *Index {
		t.Helper()
		ix, err := Open(ctx, Options{Path: path, Dim: testDim, ModelVersion: "test@1", Clusters: &ClusterOptions{Text: text}})
		if err != nil {
			t.Fatal(err)
		}
		return ix
	}
	t0 := time.Now().UTC().Truncate(time.Minute).Add(-30 * time.Minute)
	rng := rand.New(rand.NewPCG(9, 9))
	// Off: text posts join no cluster.
	ix := open(false)
	mustApply(t, ix, textPost("t1", t0, "Buy followers NOW!!!", 1), textPost("t2", t0.Add(time.Minute), "buy   followers now!!!", 2))
	if c := clusterOf(t, ix, "t1"); c != 0 {
		t.Fatalf("text clusters off: t1 in cluster %d", c)
	}
	ix.Close()

	// On: the reopen rebuilds the clusters with the texts already indexed.
	ix = open(true)
	defer func() { ix.Close() }()
	c1 := clusterOf(t, ix, "t1")
	if c1 == 0 || clusterOf(t, ix, "t2") != c1 {
		t.Fatalf("after turning text clusters on: t1 %d, t2 %d; want one cluster", c1, clusterOf(t, ix, "t2"))
	}
	// Normalisation (case, spacing, full-width letters) links; another text
	// does not; an image post with the same text joins by its image.
	img := imagePost("i1", t0.Add(3*time.Minute), randHash(rng), 5)
	img.Records[1].Text = "Buy followers now!!!"
	mustApply(t, ix, textPost("t3", t0.Add(2*time.Minute), "ＢＵＹ followers now!!!", 3), textPost("u1", t0.Add(2*time.Minute), "a different text", 4), img)
	if c := clusterOf(t, ix, "t3"); c != c1 {
		t.Fatalf("t3 (full-width letters) in cluster %d, want %d", c, c1)
	}
	if cu, ci := clusterOf(t, ix, "u1"), clusterOf(t, ix, "i1"); cu == 0 || cu == c1 || ci == 0 || ci == c1 {
		t.Fatalf("u1 in %d, i1 in %d: want each apart from the text cluster %d", cu, ci, c1)
	}
	// The members page holds the text records; the representative is the earliest.
	pg, err := ix.Cluster(ctx, domain.ClusterQuery{ID: c1, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if pg.Cluster.Size != 3 || len(pg.Members) != 3 || pg.Cluster.Representative == nil || pg.Cluster.Representative.PostID != "t1" ||
		pg.Cluster.Representative.Text != "Buy followers NOW!!!" {
		t.Fatalf("cluster page: %+v", pg)
	}
	// Trending: the text cluster grew in the window, with its representative.
	tr, err := ix.Trending(ctx, domain.TrendingQuery{Now: t0.Add(time.Hour), Window: 2 * time.Hour, K: 10, MinCount: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(tr) == 0 || tr[0].ID != c1 || tr[0].Representative == nil || tr[0].Representative.PostID != "t1" {
		t.Fatalf("trending: %+v, want the text cluster %d first", tr, c1)
	}
	// An edit to another text leaves the cluster; a takedown leaves it.
	mustApply(t, ix, textPost("t2", t0.Add(4*time.Minute), "edited: nothing to sell", 6))
	if c := clusterOf(t, ix, "t2"); c == c1 || c == 0 {
		t.Fatalf("edited t2 in cluster %d", c)
	}
	mustApply(t, ix, domain.Change{PostID: "t3", Delete: true, Deny: true})
	pg, err = ix.Cluster(ctx, domain.ClusterQuery{ID: c1, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if pg.Cluster.Size != 1 {
		t.Fatalf("after an edit and a takedown the cluster has %d members, want 1 (t1)", pg.Cluster.Size)
	}
	// A text that normalises to nothing joins no cluster.
	mustApply(t, ix, textPost("e1", t0, "\u200b\u200b", 7), textPost("e2", t0, "\u200b", 8))
	if c := clusterOf(t, ix, "e1"); c != 0 {
		t.Fatalf("an empty normalised text joined cluster %d", c)
	}
	// A reopen keeps the text clusters (no rebuild needed).
	ix.Close()
	ix = open(true)
	if c := clusterOf(t, ix, "t1"); c != c1 {
		t.Fatalf("after a reopen t1 is in %d, want %d", c, c1)
	}
	mustApply(t, ix, textPost("t4", t0.Add(5*time.Minute), "buy followers now!!!", 9))
	if c := clusterOf(t, ix, "t4"); c != c1 {
		t.Fatalf("after a reopen a new copy joined %d, want %d", c, c1)
	}
	// RebuildClusters (xmodal dedup --rebuild) keeps the text clusters.
	if _, err := ix.RebuildClusters(ctx); err != nil {
		t.Fatal(err)
	}
	if a, b := clusterOf(t, ix, "t1"), clusterOf(t, ix, "t4"); a == 0 || a != b {
		t.Fatalf("after RebuildClusters: t1 %d, t4 %d", a, b)
	}
}

// Either keeps the kinds apart: a text signature never links a PDQ hash,
// whatever its bytes.
func TestEitherLinkerKinds(t *testing.T) {
	p, err := clusters.NewPDQLinker(31)
	if err != nil {
		t.Fatal(err)
	}
	l := clusters.Either{Image: p, Text: clusters.NewExactLinker()}
	ts := clusters.TextSignature("x")
	h := make([]byte, domain.PDQBytes)
	copy(h, ts)
	if err := l.Add(1, ts); err != nil {
		t.Fatal(err)
	}
	if err := l.Add(2, h); err != nil {
		t.Fatal(err)
	}
	if n, _ := l.Neighbours(ts, nil); len(n) != 1 || n[0] != 1 {
		t.Fatalf("neighbours of the text signature: %v", n)
	}
	if ok, _ := l.Linked(ts, h); ok {
		t.Fatal("a text signature linked a PDQ hash")
	}
	l.Remove(1)
	if n, _ := l.Neighbours(ts, nil); len(n) != 0 || l.Len() != 1 {
		t.Fatalf("after remove: %v, len %d", n, l.Len())
	}
}

// components is the reference partition at threshold thr.
func components(sigs map[string][]byte, thr int) map[string]int {
	l, _ := clusters.NewPDQLinker(thr)
	return testutil.Components(sigs, func(a, b []byte) bool { ok, _ := l.Linked(a, b); return ok })
}

// TestClustersLinkMirroredCopies: the eight rotated and flipped copies of
// ThreatExchange's bridge photo, whose PDQ hashes are 100+ bits apart, form
// one cluster when records carry their canonical dihedral hashes and the
// clusters link by them (ClusterOptions.Dihedral); eight clusters without.
// The canonical hashes survive a reopen and a rebuild (turning the option
// off and on again), and the batch job's input carries them, so its
// partition is the incremental one.
func TestClustersLinkMirroredCopies(t *testing.T) {
	ctx := context.Background()
	files, err := filepath.Glob(filepath.Join("..", "..", "testdata", "pdq", "images", "dih", "bridge-*.jpg"))
	if err != nil || len(files) != 8 {
		t.Fatalf("the dih/ reference images: %v (%d files)", err, len(files))
	}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	var changes []domain.Change
	for i, f := range files {
		img := testutil.DecodeImage(t, f)
		var hs pdq.Hasher
		h, cs, q := hs.HashCanonical(img)
		ch := imagePost(fmt.Sprintf("dih%d", i), t0.Add(time.Duration(i)*time.Minute), h[:], uint64(10+i))
		for _, c := range cs {
			ch.Records[0].PDQCanonical = append(ch.Records[0].PDQCanonical, c[:]...)
		}
		ch.Records[0].PDQQuality = q
		changes = append(changes, ch)
	}
	open := func(path string, dihedral bool) *Index {
		ix, err := Open(ctx, Options{Path: path, Dim: testDim, ModelVersion: "test@1", Clusters: &ClusterOptions{Dihedral: dihedral}})
		if err != nil {
			t.Fatal(err)
		}
		return ix
	}
	distinct := func(ix *Index) int {
		seen := map[uint64]bool{}
		for i := range files {
			seen[clusterOf(t, ix, fmt.Sprintf("dih%d", i))] = true
		}
		return len(seen)
	}
	path := filepath.Join(t.TempDir(), "ix.db")
	ix := open(path, true)
	mustApply(t, ix, changes[:3]...)
	for _, ch := range changes[3:] {
		mustApply(t, ix, ch)
	}
	if n := distinct(ix); n != 1 {
		t.Fatalf("with dihedral links: %d clusters, want 1", n)
	}
	batchAgrees(t, ix, 1)
	ix.Close()
	ix = open(path, true)
	if n := distinct(ix); n != 1 {
		t.Fatalf("after reopening: %d clusters, want 1", n)
	}
	ix.Close()
	ix = open(path, false) // a rebuild without dihedral links
	if n := distinct(ix); n != 8 {
		t.Fatalf("without dihedral links: %d clusters, want 8", n)
	}
	ix.Close()
	ix = open(path, true) // and with them again, from the stored records
	defer ix.Close()
	if n := distinct(ix); n != 1 {
		t.Fatalf("rebuilt with dihedral links: %d clusters, want 1", n)
	}
}

// Memes and screenshots of a photo join the photo's cluster by the hashes
// of their content rectangles (ClusterOptions.Regions), whichever arrived
// first; the batch job groups them alike; turning the option off rebuilds
// the clusters without those links, and on again with them.
func TestClustersLinkMemes(t *testing.T) {
	ctx := context.Background()
	photos := []string{"astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg", "coins.jpg"}
	edits := [][]reposts.Kind{{reposts.Caption}, {reposts.Screenshot}}
	h := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	post := func(name string, img image.Image, at time.Time, seed uint64) domain.Change {
		v, cs, q, regions, framed, err := h.ContentHashes(img, true, neardup.DefaultMinQuality)
		if err != nil {
			t.Fatal(err)
		}
		ch := imagePost(name, at, v[:], seed)
		r := &ch.Records[0]
		r.PDQQuality, r.PDQCanonical, r.PDQRegions, r.PDQFramed = q, pdq.AppendHashes(nil, cs), regions, framed
		return ch
	}
	changes, group := editedPhotoPosts(t, photos, edits, t0, post)
	open := func(path string, regions bool) *Index {
		ix, err := Open(ctx, Options{Path: path, Dim: testDim, ModelVersion: "test@1", Clusters: &ClusterOptions{Dihedral: true, Regions: regions}})
		if err != nil {
			t.Fatal(err)
		}
		return ix
	}
	// linked reports whether the clusters are exactly the photos' groups
	// (true) or every copy is apart from its photo (false); anything else
	// fails.
	linked := func(ix *Index, what string) bool {
		t.Helper()
		byPost, byCluster := map[string]uint64{}, map[uint64]string{}
		for id, g := range group {
			c := clusterOf(t, ix, id)
			if c == 0 {
				t.Fatalf("%s: %s is in no cluster", what, id)
			}
			if prev, ok := byCluster[c]; ok && prev != g {
				t.Fatalf("%s: %s and a post of %s share cluster %d", what, id, prev, c)
			}
			byCluster[c], byPost[id] = g, c
		}
		// Each copy against its photo (the photos' clusters are all known
		// now, whatever order the map gave the posts in).
		together, apart, copies := true, true, 0
		for id, g := range group {
			if id == g {
				continue
			}
			copies++
			together = together && byPost[id] == byPost[g]
			apart = apart && byPost[id] != byPost[g]
		}
		if copies == 0 {
			t.Fatalf("%s: no copies to check", what)
		}
		if !together && !apart {
			t.Fatalf("%s: some copies joined their photo, some did not", what)
		}
		return together
	}
	path := filepath.Join(t.TempDir(), "ix.db")
	ix := open(path, true)
	for _, ch := range changes {
		mustApply(t, ix, ch)
	}
	if !linked(ix, "with region links") {
		t.Fatal("with region links, the memes and screenshots are apart from their photos")
	}
	batchAgrees(t, ix, len(photos))
	ix.Close()
	ix = open(path, false) // a rebuild without region links
	if linked(ix, "without region links") {
		t.Fatal("without region links, the memes and screenshots still join their photos")
	}
	ix.Close()
	ix = open(path, true) // and with them again, from the stored records
	defer ix.Close()
	if !linked(ix, "rebuilt with region links") {
		t.Fatal("rebuilt with region links, the memes and screenshots are apart from their photos")
	}
}

// batchAgrees runs the batch job over ix's image posts: it must group them
// as the incremental clusters do (drift 0), in want clusters of two or more
// (any number when want < 0).
func batchAgrees(t *testing.T, ix *Index, want int) {
	t.Helper()
	ctx := context.Background()
	items, err := ix.DedupItems(ctx, time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	uf, err := dedup.Components(ctx, items, dedup.Options{Threshold: DefaultClusterThreshold, Windows: ix.DedupWindowLinker()})
	if err != nil {
		t.Fatal(err)
	}
	part, _, _ := ix.ClusterPartition()
	if d, n := dedup.Drift(items, uf, part), len(dedup.Group(items, uf, 2)); d != 0 || (want >= 0 && n != want) {
		t.Fatalf("the batch job: drift %d, %d clusters; want 0 and %d", d, n, want)
	}
}

// TestClustersLinkCrops: with clusters.windows, crops of a photo (which
// whole-image PDQ does not link) join the photo's cluster through their
// stored windows, whichever arrived first, and no two photos merge; the
// batch job groups them as the incremental clusters do; without the option
// (a rebuild from the stored records) no crop joins, and with it again
// they do.
func TestClustersLinkCrops(t *testing.T) {
	ctx := context.Background()
	photos := []string{"astronaut.jpg", "chelsea.jpg", "coffee.jpg", "rocket.jpg", "coins.jpg", "camera.jpg"}
	edits := [][]reposts.Kind{{reposts.Crop90}, {reposts.Crop75}, {reposts.Crop90, reposts.Caption}}
	h := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	hs := pdq.Hasher{MaxSide: -1}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	post := func(name string, img image.Image, at time.Time, seed uint64) domain.Change {
		v, cs, q := hs.HashCanonical(img)
		ch := imagePost(name, at, v[:], seed)
		r := &ch.Records[0]
		r.PDQQuality, r.PDQCanonical = q, pdq.AppendHashes(nil, cs)
		ws, content, err := h.WindowsIn(img)
		if err != nil {
			t.Fatal(err)
		}
		b := img.Bounds()
		r.Windows = neardup.AppendWindowsIn(nil, b.Dx(), b.Dy(), ws, content)
		return ch
	}
	changes, group := editedPhotoPosts(t, photos, edits, t0, post)
	open := func(path string, windows bool) *Index {
		ix, err := Open(ctx, Options{Path: path, Dim: testDim, ModelVersion: "test@1", Clusters: &ClusterOptions{Dihedral: true, Windows: windows}})
		if err != nil {
			t.Fatal(err)
		}
		return ix
	}
	// joined counts the copies in their photo's cluster; a cluster holding
	// two photos' posts fails.
	joined := func(ix *Index, what string) int {
		t.Helper()
		owner := map[uint64]string{}
		for id, g := range group {
			c := clusterOf(t, ix, id)
			if c == 0 {
				t.Fatalf("%s: %s is in no cluster", what, id)
			}
			if prev, ok := owner[c]; ok && prev != g {
				t.Fatalf("%s: %s and a post of %s share cluster %d", what, id, prev, c)
			}
			owner[c] = g
		}
		n := 0
		for id, g := range group {
			if id != g && clusterOf(t, ix, id) == clusterOf(t, ix, g) {
				n++
			}
		}
		return n
	}
	path := filepath.Join(t.TempDir(), "ix.db")
	ix := open(path, true)
	for _, ch := range changes {
		mustApply(t, ix, ch)
	}
	with := joined(ix, "with window links")
	t.Logf("with window links, %d of %d crops joined their photo", with, len(photos)*len(edits))
	if with < len(photos)*len(edits)/3 {
		t.Errorf("with window links only %d of %d crops joined their photo", with, len(photos)*len(edits))
	}
	batchAgrees(t, ix, -1)
	ix.Close()
	ix = open(path, false) // a rebuild without window links
	if n := joined(ix, "without window links"); n != 0 {
		t.Errorf("without window links %d crops joined their photo", n)
	}
	ix.Close()
	ix = open(path, true) // with them again, from the stored records
	defer ix.Close()
	if n := joined(ix, "rebuilt with window links"); n != with {
		t.Errorf("rebuilt with window links, %d crops joined their photo, want %d", n, with)
	}
	batchAgrees(t, ix, -1)
}

// editedPhotoPosts makes the posts of the committed photos and their
// edited copies (each edit list applied once, seeded by photo and edit),
// made by post, the original first for even photos and last for odd ones;
// group maps each post id to its photo.
func editedPhotoPosts(t *testing.T, photos []string, edits [][]reposts.Kind, t0 time.Time,
	post func(name string, img image.Image, at time.Time, seed uint64) domain.Change) (changes []domain.Change, group map[string]string) {
	t.Helper()
	group = map[string]string{}
	for i, name := range photos {
		img := ndPhoto(t, name)
		var copies []domain.Change
		for j, k := range edits {
			rp, err := reposts.Apply(img, k, rand.New(rand.NewPCG(uint64(i), uint64(j))))
			if err != nil {
				t.Fatal(err)
			}
			id := fmt.Sprintf("%s-%s", name, reposts.Name(k))
			copies = append(copies, post(id, rp.Image, t0.Add(time.Duration(10*i+j+1)*time.Minute), uint64(100*i+10*j)))
			group[id] = name
		}
		orig := post(name, img, t0.Add(time.Duration(10*i)*time.Minute), uint64(100*i+50))
		group[name] = name
		if i%2 == 0 { // the original first
			changes = append(append(changes, orig), copies...)
		} else { // the copies first
			changes = append(append(changes, copies...), orig)
		}
	}
	return changes, group
}

// A screenshot whose picture is too flat to hash (its content rectangle's
// PDQ quality under the floor) is framed with no regions: its whole-image
// hash is the app's frame, so it joins no cluster, and another such
// screenshot whose frame hashes within the threshold is not linked to it
// (they were, by their frames, before). The floor here is
// domain.LowPDQQuality, ingest's until 2026-12-04, which a dark picture
// misses; ingest's floor is now neardup.DefaultMinQuality, which only
// nearly plain pictures miss, and the rule is the same.
func TestFramedFlatPictureJoinsNone(t *testing.T) {
	ctx := context.Background()
	h := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	// A dark generated landscape in a phone frame.
	rp, err := reposts.Apply(reposts.Photo(0, 10, 640, 480), []reposts.Kind{reposts.Screenshot}, rand.New(rand.NewPCG(4, 4)))
	if err != nil {
		t.Fatal(err)
	}
	v, cs, q, regions, framed, err := h.ContentHashes(rp.Image, true, domain.LowPDQQuality)
	if err != nil {
		t.Fatal(err)
	}
	if !framed || len(regions) != 0 || q < domain.LowPDQQuality {
		t.Fatalf("framed %v, %d region bytes, quality %d; want a framed screenshot whose picture has no hash to keep", framed, len(regions), q)
	}
	// Another screenshot in the same app: its frame hashes 10 bits away.
	other := v
	for _, b := range []int{3, 40, 77, 90, 121, 150, 170, 200, 222, 250} {
		other[b/8] ^= 1 << (b % 8)
	}
	ix, err := Open(ctx, Options{Path: filepath.Join(t.TempDir(), "ix.db"), Dim: testDim, ModelVersion: "test@1",
		Clusters: &ClusterOptions{Dihedral: true, Regions: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for i, hv := range []pdq.Hash{v, other} {
		ch := imagePost(fmt.Sprintf("s%d", i), t0.Add(time.Duration(i)*time.Minute), hv[:], uint64(i))
		r := &ch.Records[0]
		r.PDQQuality, r.PDQCanonical, r.PDQRegions, r.PDQFramed = q, pdq.AppendHashes(nil, cs), regions, framed
		mustApply(t, ix, ch)
	}
	for _, id := range []string{"s0", "s1"} {
		if c := clusterOf(t, ix, id); c != 0 {
			t.Errorf("%s is in cluster %d, want none", id, c)
		}
	}
	batchAgrees(t, ix, 0)
}

// A dark picture (PDQ quality under domain.LowPDQQuality) shown inside an
// app's frame and the same picture under a caption band: the screenshot
// links by its picture's hash, which ingest's floor
// (neardup.DefaultMinQuality) keeps, and joins the meme's cluster; under
// the record's floor the picture's hash is dropped and it joins none.
func TestClustersLinkDarkScreenshots(t *testing.T) {
	ctx := context.Background()
	h := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	pic := reposts.Photo(0, 10, 640, 480)
	if _, q := (&pdq.Hasher{MaxSide: -1}).Hash(pic); q >= domain.LowPDQQuality {
		t.Fatalf("the picture's PDQ quality is %d; the test needs a dark one", q)
	}
	shot, err := reposts.Apply(pic, []reposts.Kind{reposts.Screenshot}, rand.New(rand.NewPCG(4, 4)))
	if err != nil {
		t.Fatal(err)
	}
	meme, err := reposts.Apply(pic, []reposts.Kind{reposts.Caption}, rand.New(rand.NewPCG(5, 5)))
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		floor int
		same  bool
	}{{neardup.DefaultMinQuality, true}, {domain.LowPDQQuality, false}} {
		ix, err := Open(ctx, Options{Path: filepath.Join(t.TempDir(), "ix.db"), Dim: testDim, ModelVersion: "test@1",
			Clusters: &ClusterOptions{Dihedral: true, Regions: true}})
		if err != nil {
			t.Fatal(err)
		}
		for i, img := range []image.Image{meme.Image, shot.Image} {
			v, cs, q, regions, framed, err := h.ContentHashes(img, true, c.floor)
			if err != nil {
				t.Fatal(err)
			}
			if i == 1 && !framed {
				t.Fatal("the screenshot is not framed")
			}
			ch := imagePost(fmt.Sprintf("p%d", i), t0.Add(time.Duration(i)*time.Minute), v[:], uint64(i))
			r := &ch.Records[0]
			r.PDQQuality, r.PDQCanonical, r.PDQRegions, r.PDQFramed = q, pdq.AppendHashes(nil, cs), regions, framed
			mustApply(t, ix, ch)
		}
		a, b := clusterOf(t, ix, "p0"), clusterOf(t, ix, "p1")
		if (a != 0 && a == b) != c.same {
			t.Errorf("floor %d: meme in cluster %d, screenshot in %d; want together %v", c.floor, a, b, c.same)
		}
		batchAgrees(t, ix, -1)
		ix.Close()
	}
}

// A watermark across a picture can move its whole-image hash past the
// threshold; with ClusterOptions.Regions the copy joins the picture's
// cluster by their cleaned hashes (encoders/neardup: the watermark's thin
// bright strokes suppressed), without it the two stay apart.
func TestClustersLinkWatermarks(t *testing.T) {
	ctx := context.Background()
	h := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	// The first picture whose watermark moves its whole-image hash past
	// the threshold, both hashes and both cleaned hashes of quality that
	// clusters take (smooth pictures' often are not).
	type hashed struct {
		v      pdq.Hash
		cs     []pdq.Hash
		q      int
		rs     []byte
		framed bool
	}
	hash := func(img image.Image) hashed {
		v, cs, q, rs, framed, err := h.ContentHashes(img, true, neardup.DefaultMinQuality)
		if err != nil {
			t.Fatal(err)
		}
		return hashed{v, cs, q, rs, framed}
	}
	var pair []hashed
	for i := range 80 {
		img := reposts.Photo(i%len(reposts.Families), uint64(1000+i), 640, 480)
		rp, err := reposts.Apply(img, []reposts.Kind{reposts.Watermark}, rand.New(rand.NewPCG(uint64(i), 9)))
		if err != nil {
			t.Fatal(err)
		}
		a, b := hash(img), hash(rp.Image)
		if pdq.Distance(a.v, b.v) > DefaultClusterThreshold && min(a.q, b.q) >= domain.LowPDQQuality && len(a.rs) > 0 && len(b.rs) > 0 {
			pair = []hashed{a, b}
			break
		}
	}
	if pair == nil {
		t.Fatal("no watermark of the 80 pictures moved the whole-image hash of a picture clusters take; the test needs one")
	}
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, regions := range []bool{true, false} {
		ix, err := Open(ctx, Options{Path: filepath.Join(t.TempDir(), "ix.db"), Dim: testDim, ModelVersion: "test@1",
			Clusters: &ClusterOptions{Dihedral: true, Regions: regions}})
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range pair {
			ch := imagePost(fmt.Sprintf("w%d", i), t0.Add(time.Duration(i)*time.Minute), x.v[:], uint64(i))
			r := &ch.Records[0]
			r.PDQQuality, r.PDQCanonical, r.PDQRegions, r.PDQFramed = x.q, pdq.AppendHashes(nil, x.cs), x.rs, x.framed
			mustApply(t, ix, ch)
		}
		a, b := clusterOf(t, ix, "w0"), clusterOf(t, ix, "w1")
		if together := a != 0 && a == b; together != regions {
			t.Errorf("regions %v: the picture in cluster %d, the watermarked copy in %d", regions, a, b)
		}
		if regions {
			batchAgrees(t, ix, 1)
		}
		ix.Close()
	}
}
