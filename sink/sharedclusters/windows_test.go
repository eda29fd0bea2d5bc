package sharedclusters

import (
	"context"
	"fmt"
	"image"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
	"github.com/xmodal/xmodal/internal/clusters"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/internal/vecmath"
	"github.com/xmodal/xmodal/sink/embedded"
)

// With Signer.Windows (clusters.windows on Milvus), crops of the committed
// photos, which whole-image PDQ does not link, join their photo's cluster
// through the windows their records carry from ingest: the same partition
// the embedded index's clusters.windows makes of the same records, with no
// two photos merged; without it no crop joins.
func TestWindowLinksAsTheEmbeddedIndex(t *testing.T) {
	ctx := context.Background()
	root := testutil.MustRepoRoot(t)
	photos := []string{"astronaut", "chelsea", "coffee", "rocket"}
	edits := [][]reposts.Kind{{reposts.Crop90}, {reposts.Crop75}, {reposts.Crop90, reposts.Caption}}
	h := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	hs := pdq.Hasher{MaxSide: -1}
	rng := rand.New(rand.NewPCG(3, 3))
	const dim = 8
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	post := func(id string, img image.Image, at time.Time) domain.Change {
		v, cs, q := hs.HashCanonical(img)
		ws, content, err := h.WindowsIn(img)
		if err != nil {
			t.Fatal(err)
		}
		b := img.Bounds()
		return domain.Change{PostID: id, Seq: 1, Records: []domain.Record{{
			PK: domain.PrimaryKey(id, domain.ModalityImage), PostID: id, Modality: domain.ModalityImage, CreatedAt: at,
			ModelVersion: "test@1", Vector: vecmath.RandomUnit(rng, dim),
			PDQ: v[:], PDQQuality: q, PDQCanonical: pdq.AppendHashes(nil, cs),
			Windows: neardup.AppendWindowsIn(nil, b.Dx(), b.Dy(), ws, content),
		}}}
	}
	var changes []domain.Change
	group := map[string]string{}
	for i, name := range photos {
		img := testutil.DecodeImage(t, filepath.Join(root, "testdata", "neardup", "photos", name+".jpg"))
		changes = append(changes, post(name, img, t0.Add(time.Duration(10*i)*time.Minute)))
		group[name] = name
		for j, k := range edits {
			rp, err := reposts.Apply(img, k, rand.New(rand.NewPCG(uint64(i), uint64(j))))
			if err != nil {
				t.Fatal(err)
			}
			id := fmt.Sprintf("%s-%s", name, reposts.Name(k))
			changes = append(changes, post(id, rp.Image, t0.Add(time.Duration(10*i+j+1)*time.Minute)))
			group[id] = name
		}
	}

	emb, err := embedded.Open(ctx, embedded.Options{Path: filepath.Join(t.TempDir(), "e.db"), Dim: dim, ModelVersion: "test@1",
		Clusters: &embedded.ClusterOptions{Dihedral: true, Windows: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	if _, err := emb.Apply(ctx, changes); err != nil {
		t.Fatal(err)
	}
	want, _, _ := emb.ClusterPartition()

	ns := testutil.StartNATS(t, "")
	joined := func(windows bool) (map[string]uint64, int) {
		t.Helper()
		c := openClusters(t, ns.ClientURL(), t.TempDir(), Config{SnapshotEvery: -1, Signer: clusters.Signer{Dihedral: true, Windows: windows}})
		if err := c.Record(ctx, changes, applied(len(changes))); err != nil {
			t.Fatal(err)
		}
		part := c.Partition()
		owner := map[uint64]string{}
		n := 0
		for id, g := range group {
			cl := part[id]
			if prev, ok := owner[cl]; cl != 0 && ok && prev != g {
				t.Fatalf("windows %v: %s and a post of %s share cluster %d", windows, id, prev, cl)
			}
			owner[cl] = g
			if id != g && cl != 0 && cl == part[g] {
				n++
			}
		}
		return part, n
	}
	got, n := joined(true)
	t.Logf("with window links, %d of %d crops joined their photo", n, len(photos)*len(edits))
	if n < len(photos)*len(edits)/3 {
		t.Errorf("with window links only %d of %d crops joined their photo", n, len(photos)*len(edits))
	}
	if err := testutil.SamePartition(got, want); err != nil {
		t.Fatalf("the shared clusters with window links are not the embedded index's: %v", err)
	}
	if _, n := joined(false); n != 0 {
		t.Errorf("without window links %d crops joined their photo", n)
	}
}
