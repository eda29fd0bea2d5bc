package sharedclusters

import (
	"context"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/internal/clusters"
	"github.com/xmodal/xmodal/internal/testutil"
)

func openClusters(t *testing.T, url, dir string, cfg Config) *Clusters {
	t.Helper()
	_, js := testutil.ConnectJS(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if cfg.Name == "" {
		cfg.Name = StateName("test", cfg.Fingerprint())
	}
	cfg.Dir = dir
	c, err := Open(ctx, js, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// post is an image post with a PDQ hash.
type post struct {
	id   string
	hash []byte
	at   time.Time
}

func imageChange(p post) domain.Change {
	return domain.Change{PostID: p.id, Records: []domain.Record{{PostID: p.id, Modality: domain.ModalityImage,
		CreatedAt: p.at, PDQ: p.hash, PDQQuality: 100}}}
}

// plantedPosts makes n clusters of copies (a random hash and copies of it
// with up to 8 bits flipped) and singles (random hashes, about 128 bits
// from everything), shuffled.
func plantedPosts(seed uint64, groups, copies, singles int) []post {
	rng := rand.New(rand.NewPCG(seed, 1))
	random := func() []byte {
		h := make([]byte, domain.PDQBytes)
		for i := range h {
			h[i] = byte(rng.UintN(256))
		}
		return h
	}
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var ps []post
	for g := range groups {
		base := random()
		for c := range copies {
			h := slices.Clone(base)
			for range rng.IntN(9) {
				b := rng.IntN(256)
				h[b/8] ^= 1 << (b % 8)
			}
			ps = append(ps, post{fmt.Sprintf("g%d-%d", g, c), h, t0.Add(time.Duration(len(ps)) * time.Second)})
		}
	}
	for s := range singles {
		ps = append(ps, post{fmt.Sprintf("s%d", s), random(), t0.Add(time.Duration(len(ps)) * time.Second)})
	}
	rng.Shuffle(len(ps), func(i, j int) { ps[i], ps[j] = ps[j], ps[i] })
	return ps
}

// components is the partition the link relation gives, by
// testutil.Components (every pair asked): post -> component.
func components(ps []post, threshold int) map[string]int {
	sigs := make(map[string][]byte, len(ps))
	for _, p := range ps {
		sigs[p.id] = p.hash
	}
	return testutil.Components(sigs, func(a, b []byte) bool {
		d := 0
		for k := range a {
			d += bits.OnesCount8(a[k] ^ b[k])
		}
		return d <= threshold
	})
}

func applied(n int) []domain.Outcome {
	outs := make([]domain.Outcome, n)
	for i := range outs {
		outs[i] = domain.Applied
	}
	return outs
}

// Two indexers record their write rounds at once: every process holds the
// same partition, with the same cluster ids, and it is the connected
// components of the link relation (posts of one batch and of the two
// indexers link).
func TestTwoIndexersShareOnePartition(t *testing.T) {
	ns := testutil.StartNATS(t, "")
	dir := t.TempDir()
	// Snapshots are written (by any process) while the indexers write.
	cfg := Config{SnapshotEvery: 4}
	a := openClusters(t, ns.ClientURL(), dir, cfg)
	b := openClusters(t, ns.ClientURL(), dir, cfg)
	reader := openClusters(t, ns.ClientURL(), dir, cfg)
	ps := plantedPosts(1, 40, 6, 200)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w, c := range []*Clusters{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Indexer w writes every other round of 16 posts.
			for lo := 16 * w; lo < len(ps); lo += 32 {
				chunk := ps[lo:min(lo+16, len(ps))]
				changes := make([]domain.Change, len(chunk))
				for i, p := range chunk {
					changes[i] = imageChange(p)
				}
				if err := c.Record(context.Background(), changes, applied(len(changes))); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	late := openClusters(t, ns.ClientURL(), dir, cfg)
	for _, c := range []*Clusters{a, b, reader, late} {
		if err := c.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	want := components(ps, 31)
	pa := a.Partition()
	if err := testutil.SamePartition(pa, want); err != nil {
		t.Fatalf("the clusters are not the link relation's components: %v", err)
	}
	if multi := a.Stats().Multi; multi < 40 {
		t.Fatalf("only %d clusters of copies: the test's data does not exercise merges", multi)
	}
	for name, c := range map[string]*Clusters{"b": b, "reader": reader, "late": late} {
		if pc := c.Partition(); !mapsEqual(pc, pa) {
			t.Fatalf("process %s holds another partition (or other cluster ids) than a", name)
		}
	}
}

func mapsEqual(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// A process that starts later loads the newest snapshot and the actions
// after it, and holds the same partition; sizes, representatives and
// trending counts come with it.
func TestLateProcessRestoresSnapshot(t *testing.T) {
	ns := testutil.StartNATS(t, "")
	dir := t.TempDir()
	cfg := Config{SnapshotEvery: 1000}
	a := openClusters(t, ns.ClientURL(), dir, cfg)
	ps := plantedPosts(2, 10, 4, 30)
	for lo := 0; lo < len(ps); lo += 7 {
		chunk := ps[lo:min(lo+7, len(ps))]
		changes := make([]domain.Change, len(chunk))
		for i, p := range chunk {
			changes[i] = imageChange(p)
		}
		if err := a.Record(context.Background(), changes, applied(len(changes))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.f.SnapshotNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	// One more round after the snapshot: a leave.
	gone := ps[0].id
	if err := a.Leave(context.Background(), []string{gone}); err != nil {
		t.Fatal(err)
	}
	late := openClusters(t, ns.ClientURL(), t.TempDir(), cfg)
	if err := late.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := late.Replication(); st.Snapshot == 0 {
		t.Fatalf("the late process restored no snapshot: %+v", st)
	}
	if !mapsEqual(late.Partition(), a.Partition()) {
		t.Fatal("the late process holds another partition")
	}
	if late.ClusterOf(gone) != 0 {
		t.Fatalf("%s left after the snapshot but is still in a cluster", gone)
	}
	for post, id := range a.Partition() {
		ia, _ := a.Get(id)
		il, ok := late.Get(id)
		if !ok || il.Size != ia.Size || il.Rep != ia.Rep || il.First != ia.First || !slices.Equal(il.Counts, ia.Counts) {
			t.Fatalf("cluster %d of %s: late %+v, a %+v", id, post, il, ia)
		}
	}
}

// Outcomes decide the actions: a stale or denied change does nothing, a
// deletion leaves, a version without a usable image leaves, a text-only
// post joins a text cluster only with text clusters on.
func TestRecordFollowsOutcomes(t *testing.T) {
	ns := testutil.StartNATS(t, "")
	for _, text := range []bool{false, true} {
		t.Run(fmt.Sprintf("text=%v", text), func(t *testing.T) {
			c := openClusters(t, ns.ClientURL(), t.TempDir(), Config{SnapshotEvery: -1, Signer: clusters.Signer{Text: text}})
			ps := plantedPosts(3, 1, 3, 0) // three copies of one picture
			ctx := context.Background()
			var changes []domain.Change
			for _, p := range ps {
				changes = append(changes, imageChange(p))
			}
			textPost := func(id string) domain.Change {
				return domain.Change{PostID: id, Records: []domain.Record{{PostID: id, Modality: domain.ModalityText, Text: "Buy NOW!!", CreatedAt: ps[0].at}}}
			}
			changes = append(changes, textPost("t1"), textPost("t2"))
			if err := c.Record(ctx, changes, applied(len(changes))); err != nil {
				t.Fatal(err)
			}
			id := c.ClusterOf(ps[0].id)
			if in, _ := c.Get(id); id == 0 || in.Size != 3 {
				t.Fatalf("three copies: cluster %d of size %d, want one of 3", id, in.Size)
			}
			if got := c.ClusterOf("t1") != 0 && c.ClusterOf("t1") == c.ClusterOf("t2"); got != text {
				t.Fatalf("text posts clustered together: %v, want %v", got, text)
			}
			// Stale and denied versions change nothing, even without an image.
			noImage := domain.Change{PostID: ps[1].id, Records: []domain.Record{{PostID: ps[1].id, Modality: domain.ModalityText, Text: "x"}}}
			if err := c.Record(ctx, []domain.Change{noImage, noImage}, []domain.Outcome{domain.Stale, domain.Denied}); err != nil {
				t.Fatal(err)
			}
			if c.ClusterOf(ps[1].id) != id {
				t.Fatal("a stale or denied change moved a post")
			}
			// An applied version without an image leaves; a deletion leaves.
			del := domain.Change{PostID: ps[2].id, Delete: true}
			if err := c.Record(ctx, []domain.Change{noImage, del}, []domain.Outcome{domain.Applied, domain.Deleted}); err != nil {
				t.Fatal(err)
			}
			if c.ClusterOf(ps[1].id) == id || c.ClusterOf(ps[2].id) != 0 {
				t.Fatal("a version without an image, or a deleted post, is still in its cluster")
			}
			// With text clusters the text-only version joins a text cluster.
			if got := c.ClusterOf(ps[1].id) != 0; got != text {
				t.Fatalf("the text-only version is clustered: %v, want %v", got, text)
			}
			if in, _ := c.Get(c.ClusterOf(ps[0].id)); in.Size != 1 {
				t.Fatalf("the cluster has %d members after two left, want 1", in.Size)
			}
			if err := c.Record(ctx, changes[:1], nil); err == nil {
				t.Fatal("outcomes that do not match the changes were accepted")
			}
		})
	}
}

// A cluster whose only link leaves splits, in every process.
func TestLeaveSplitsEverywhere(t *testing.T) {
	ns := testutil.StartNATS(t, "")
	a := openClusters(t, ns.ClientURL(), t.TempDir(), Config{SnapshotEvery: -1})
	b := openClusters(t, ns.ClientURL(), t.TempDir(), Config{SnapshotEvery: -1})
	// A ~ B ~ C with A and C 40 bits apart: B is the only link.
	h := func(flip int) []byte {
		x := make([]byte, domain.PDQBytes)
		for i := range x {
			x[i] = byte(i * 37)
		}
		for i := range flip {
			x[i/8] ^= 1 << (i % 8)
		}
		return x
	}
	t0 := time.Unix(1e9, 0)
	ps := []post{{"A", h(0), t0}, {"C", h(40), t0.Add(time.Second)}, {"B", h(20), t0.Add(2 * time.Second)}}
	for _, p := range ps {
		if err := a.Record(context.Background(), []domain.Change{imageChange(p)}, applied(1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b.ClusterOf("A") == 0 || b.ClusterOf("A") != b.ClusterOf("C") {
		t.Fatal("B did not merge A's and C's clusters")
	}
	if err := b.Leave(context.Background(), []string{"B"}); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Clusters{a, b} {
		if c.ClusterOf("A") == c.ClusterOf("C") || c.ClusterOf("B") != 0 {
			t.Fatalf("after B left: A in %d, C in %d, B in %d; want A and C apart", c.ClusterOf("A"), c.ClusterOf("C"), c.ClusterOf("B"))
		}
	}
}

func TestStateName(t *testing.T) {
	tests := []struct{ coll, fp, want string }{
		{"xmodal", "t31d", "clusters-xmodal-t31d"},
		{"my_coll", "t20drx", "clusters-my_coll-t20drx"},
	}
	for _, tc := range tests {
		if got := StateName(tc.coll, tc.fp); got != tc.want {
			t.Errorf("StateName(%q, %q) = %q, want %q", tc.coll, tc.fp, got, tc.want)
		}
	}
	long := StateName("a.very.long.name/with odd characters and more than sixty-four of them", "t31")
	if len(long) > 64 || long == StateName("another", "t31") {
		t.Errorf("StateName of an odd collection = %q", long)
	}
	c := Config{Threshold: 20, Signer: clusters.Signer{Dihedral: true, Regions: true, Text: true, MinQuality: 70}}
	if fp := c.Fingerprint(); fp != "t20drxq70" {
		t.Errorf("Fingerprint = %q", fp)
	}
	c.Signer.Windows = true
	if fp := c.Fingerprint(); fp != "t20drwxq70" {
		t.Errorf("Fingerprint with windows = %q", fp)
	}
}

// A rebuild's progress is part of the replicated state: unseeded until a
// rebuild's last joins are marked, unseeded again by a reset (an
// interrupted rebuild), in every process, snapshots included.
func TestSeededMarks(t *testing.T) {
	ns := testutil.StartNATS(t, "")
	ctx := context.Background()
	a := openClusters(t, ns.ClientURL(), t.TempDir(), Config{SnapshotEvery: 1000})
	if a.Seeded() {
		t.Fatal("a new stream is seeded")
	}
	ps := plantedPosts(4, 2, 3, 2)
	var changes []domain.Change
	for _, p := range ps {
		changes = append(changes, imageChange(p))
	}
	id, err := a.Reset(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Record(ctx, changes, applied(len(changes))); err != nil {
		t.Fatal(err)
	}
	if a.Seeded() {
		t.Fatal("seeded before the rebuild was marked done")
	}
	// The done mark of an older rebuild does not seed: another reset came
	// after it.
	latest, err := a.Reset(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.MarkSeeded(ctx, id); err != nil || a.Seeded() {
		t.Fatalf("an older rebuild's mark seeded the clusters (%v)", err)
	}
	if err := a.Record(ctx, changes, applied(len(changes))); err != nil {
		t.Fatal(err)
	}
	if err := a.MarkSeeded(ctx, latest); err != nil {
		t.Fatal(err)
	}
	if !a.Seeded() || a.Stats().Members != len(ps) {
		t.Fatalf("after the mark: seeded %v, %d members", a.Seeded(), a.Stats().Members)
	}
	if _, err := a.f.SnapshotNow(ctx); err != nil {
		t.Fatal(err)
	}
	late := openClusters(t, ns.ClientURL(), t.TempDir(), Config{SnapshotEvery: 1000})
	if err := late.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if !late.Seeded() || late.Stats().Members != len(ps) {
		t.Fatalf("a process restored from the snapshot: seeded %v, %d members", late.Seeded(), late.Stats().Members)
	}
	if _, err := late.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if a.Seeded() || a.Stats().Members != 0 {
		t.Fatalf("after another process's reset: seeded %v, %d members", a.Seeded(), a.Stats().Members)
	}
}
