package milvus_test

import (
	"context"
	"image"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
	"github.com/xmodal/xmodal/internal/clusters"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/sink/conformance"
	"github.com/xmodal/xmodal/sink/embedded"
	"github.com/xmodal/xmodal/sink/milvus"
	"github.com/xmodal/xmodal/sink/sharedclusters"
	"github.com/xmodal/xmodal/sink/sharedwindows"
)

// windowIndex is what the query service needs of an index to search
// windows (query.windowSearcher).
type windowIndex interface {
	NearDupWindows(ctx context.Context, q *neardup.Query, s domain.WindowSearch) ([]domain.NearDupHit, error)
	WindowsReady() bool
	WindowImages() int
}

var (
	_ windowIndex = (*milvus.Index)(nil)
	_ windowIndex = (*sharedclusters.Index)(nil)
)

// TestSharedWindowsOnMilvus: an indexer's Milvus index appends the windows
// of its write rounds to the deployment's shared windows, and a serving
// process's Milvus index finds a crop of a posted photo by them (whole-
// image PDQ in Milvus misses it): the same posts the embedded index finds
// on the same records, with the record's fields from Milvus; the filter
// applies; a deletion through the indexer takes the photo out.
func TestSharedWindowsOnMilvus(t *testing.T) {
	ctx := context.Background()
	ns := testutil.StartNATS(t, "")
	open := func(noTables bool) *sharedwindows.Windows {
		_, js := testutil.ConnectJS(t, ns.ClientURL())
		w, err := sharedwindows.Open(ctx, js, sharedwindows.Config{Name: "windows-test", Dir: t.TempDir(), NoTables: noTables, SnapshotEvery: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Close)
		return w
	}
	ix, opt := milvus.OpenTestIndexWith(t, conformance.Dim, func(o *milvus.Options) { o.Windows = open(true) })
	served := open(false)
	opt.Windows = served
	srv := milvus.OpenTestIndexOn(t, opt)
	emb, err := embedded.Open(ctx, embedded.Options{Path: filepath.Join(t.TempDir(), "e.db"), Dim: conformance.Dim, ModelVersion: "test@1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })

	root := testutil.MustRepoRoot(t)
	h := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	names := []string{"astronaut", "coffee", "chelsea"}
	imgs := map[string]image.Image{}
	var chs []domain.Change
	rng := rand.New(rand.NewPCG(5, 5))
	for i, name := range names {
		b, err := os.ReadFile(filepath.Join(root, "testdata", "neardup", "photos", name+".jpg"))
		if err != nil {
			t.Fatal(err)
		}
		img, _, err := pdq.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		imgs[name] = img
		ws, err := h.Windows(img)
		if err != nil {
			t.Fatal(err)
		}
		at := time.Date(2026, 11, 1+i, 10, 0, 0, 0, time.UTC)
		r := conformance.Record(name, domain.ModalityImage, conformance.Unit(rng), "author-"+name, at, []string{"photo"})
		hash, q := (&pdq.Hasher{MaxSide: -1}).Hash(img)
		r.PDQ, r.PDQQuality = hash[:], q
		bd := img.Bounds()
		r.Windows = neardup.AppendWindows(nil, bd.Dx(), bd.Dy(), ws)
		chs = append(chs, domain.Change{PostID: name, Seq: 1, Records: []domain.Record{r}})
	}
	if _, err := ix.Apply(ctx, chs); err != nil {
		t.Fatal(err)
	}
	if _, err := emb.Apply(ctx, chs); err != nil {
		t.Fatal(err)
	}
	settle := func(want int) {
		t.Helper()
		if err := served.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(30 * time.Second); !srv.WindowsReady() || served.Pending() > 0 || srv.WindowImages() != want || !emb.WindowsReady(); {
			if time.Now().After(deadline) {
				t.Fatalf("the served copy holds %d images (want %d), ready %v", srv.WindowImages(), want, srv.WindowsReady())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	settle(3)
	if ix.WindowImages() != 0 || srv.WindowImages() != 3 {
		t.Fatalf("window images: indexer %d (builds no tables), server %d", ix.WindowImages(), srv.WindowImages())
	}

	crops := map[string]*neardup.Query{}
	found := 0
	for i, name := range names {
		rp, err := reposts.Apply(imgs[name], []reposts.Kind{reposts.Crop75}, rand.New(rand.NewPCG(uint64(4+i), 11)))
		if err != nil {
			t.Fatal(err)
		}
		crop, _ := (&pdq.Hasher{MaxSide: -1}).Hash(rp.Image)
		whole, err := srv.NearDup(ctx, domain.NearDupQuery{Hashes: [][]byte{crop[:]}, MaxDistance: 31, K: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(whole) != 0 {
			t.Fatalf("%s: whole-image PDQ in Milvus finds its crop (%s): the test shows nothing", name, whole[0].PostID)
		}
		q, err := h.Query(rp.Image)
		if err != nil {
			t.Fatal(err)
		}
		crops[name] = q
		got, err := srv.NearDupWindows(ctx, q, domain.WindowSearch{K: 10})
		if err != nil {
			t.Fatal(err)
		}
		want, err := emb.NearDupWindows(ctx, q, domain.WindowSearch{K: 10})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.EqualFunc(got, want, func(a, b domain.NearDupHit) bool {
			return a.PK == b.PK && *a.Distance == *b.Distance && *a.Windows == *b.Windows && a.Score == b.Score
		}) {
			t.Fatalf("%s: Milvus with shared windows found %v, the embedded index %v", name, postIDs(got), postIDs(want))
		}
		if len(got) == 0 {
			continue
		}
		g := got[0]
		if g.PostID != name || g.Windows.Windows < 2 || g.Author != "author-"+name || len(g.Thumbnail) == 0 || g.MediaURL == "" {
			t.Fatalf("%s: hit %+v (windows %+v)", name, g.Hit, g.Windows)
		}
		found++
	}
	if found < 2 {
		t.Fatalf("%d of 3 crops found by windows on Milvus; want at least 2", found)
	}

	var hit string
	for _, name := range names {
		if got, _ := srv.NearDupWindows(ctx, crops[name], domain.WindowSearch{K: 10}); len(got) > 0 {
			hit = name
			break
		}
	}
	got, err := srv.NearDupWindows(ctx, crops[hit], domain.WindowSearch{K: 10, Filter: domain.Filter{Authors: []string{"someone-else"}}})
	if err != nil || len(got) != 0 {
		t.Fatalf("filtered on another author: %v, %v", err, postIDs(got))
	}
	got, err = srv.NearDupWindows(ctx, crops[hit], domain.WindowSearch{K: 10, Filter: domain.Filter{Authors: []string{"author-" + hit}}})
	if err != nil || len(got) != 1 {
		t.Fatalf("filtered on its author: %v, %v", err, postIDs(got))
	}

	if _, err := ix.Apply(ctx, []domain.Change{{PostID: hit, Delete: true}}); err != nil {
		t.Fatal(err)
	}
	settle(2)
	if got, err := srv.NearDupWindows(ctx, crops[hit], domain.WindowSearch{K: 10}); err != nil || len(got) != 0 {
		t.Fatalf("after %s's deletion: %v, %v", hit, err, postIDs(got))
	}
}

func postIDs(hs []domain.NearDupHit) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.PostID
	}
	return out
}

// With clusters.windows on Milvus, crops join their photo's shared
// cluster through the windows their records carry at ingest, and a
// rebuild of the clusters from the Milvus rows (which keep no windows)
// signs each post with the windows the deployment's shared windows hold
// for it, so it gives the same partition again; an indexer that builds no
// window tables keeps them for it.
func TestSharedClustersRebuildWithWindows(t *testing.T) {
	ctx := context.Background()
	ns := testutil.StartNATS(t, "")
	_, js := testutil.ConnectJS(t, ns.ClientURL())
	win, err := sharedwindows.Open(ctx, js, sharedwindows.Config{Name: "windows-rebuild", Dir: t.TempDir(), NoTables: true, SnapshotEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(win.Close)
	ix, _ := milvus.OpenTestIndexWith(t, conformance.Dim, func(o *milvus.Options) { o.Windows = win })
	open := func(name string) *sharedclusters.Clusters {
		cl, err := sharedclusters.Open(ctx, js, sharedclusters.Config{Name: name, Dir: t.TempDir(), SnapshotEvery: -1,
			Signer: clusters.Signer{Windows: true}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	cl := open("clusters-rebuild-a")
	w := sharedclusters.Wrap(ix, cl)

	root := testutil.MustRepoRoot(t)
	h := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	rng := rand.New(rand.NewPCG(6, 6))
	edits := [][]reposts.Kind{{reposts.Crop90}, {reposts.Crop75}}
	group := map[string]string{}
	var chs []domain.Change
	t0 := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	post := func(id string, img image.Image, at time.Time) {
		ws, content, err := h.WindowsIn(img)
		if err != nil {
			t.Fatal(err)
		}
		r := conformance.Record(id, domain.ModalityImage, conformance.Unit(rng), "author", at, nil)
		hash, q := (&pdq.Hasher{MaxSide: -1}).Hash(img)
		r.PDQ, r.PDQQuality = hash[:], q
		b := img.Bounds()
		r.Windows = neardup.AppendWindowsIn(nil, b.Dx(), b.Dy(), ws, content)
		chs = append(chs, domain.Change{PostID: id, Seq: 1, Records: []domain.Record{r}})
	}
	for i, name := range []string{"astronaut", "coffee", "chelsea"} {
		img := testutil.DecodeImage(t, filepath.Join(root, "testdata", "neardup", "photos", name+".jpg"))
		post(name, img, t0.Add(time.Duration(10*i)*time.Minute))
		group[name] = name
		for j, k := range edits {
			rp, err := reposts.Apply(img, k, rand.New(rand.NewPCG(uint64(i), uint64(j))))
			if err != nil {
				t.Fatal(err)
			}
			id := name + "-" + reposts.Name(k)
			post(id, rp.Image, t0.Add(time.Duration(10*i+j+1)*time.Minute))
			group[id] = name
		}
	}
	if _, err := w.Apply(ctx, chs); err != nil {
		t.Fatal(err)
	}
	joined := func(part map[string]uint64) int {
		n := 0
		for id, g := range group {
			if id != g && part[id] != 0 && part[id] == part[g] {
				n++
			}
		}
		return n
	}
	first := cl.Partition()
	n := joined(first)
	t.Logf("%d of 6 crops joined their photo", n)
	if n < 2 {
		t.Fatalf("only %d of 6 crops joined their photo's shared cluster by windows", n)
	}
	cl2 := open("clusters-rebuild-b")
	if _, err := sharedclusters.Wrap(ix, cl2).RebuildClusters(ctx); err != nil {
		t.Fatal(err)
	}
	if err := testutil.SamePartition(cl2.Partition(), first); err != nil {
		t.Fatalf("the rebuild from the Milvus rows and the shared windows gave another partition: %v", err)
	}
}
