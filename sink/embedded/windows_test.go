package embedded

import (
	"context"
	"errors"
	"image"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
	"github.com/xmodal/xmodal/internal/testutil"
)

const ndPhotos = "../../testdata/neardup/photos"

func ndPhoto(t *testing.T, name string) image.Image {
	t.Helper()
	return testutil.DecodeImage(t, filepath.Join(ndPhotos, name))
}

// imageRec is an image record of post with img's PDQ hash and windows, as
// the pipeline makes one.
func imageRec(t *testing.T, post string, seed uint64, img image.Image) domain.Record {
	t.Helper()
	sig, err := neardup.NewHasher(neardup.Options{PDQMaxSide: -1}).Signatures(img)
	if err != nil {
		t.Fatal(err)
	}
	r := rec(post, domain.ModalityImage, seed)
	r.PDQ, r.PDQQuality = sig[0].Hash[:], sig[0].Quality
	r.Windows = neardup.AppendWindows(nil, img.Bounds().Dx(), img.Bounds().Dy(), sig)
	return r
}

func waitWindows(t *testing.T, ix *Index) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ix.WindowsReady() {
		if time.Now().After(deadline) {
			t.Fatal("window tables not built within 30 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// windowPosts searches by windows, retrying until the asynchronous table
// writes have landed when want is not empty.
func windowPosts(t *testing.T, ix *Index, q *neardup.Query, f domain.Filter, want int) []domain.NearDupHit {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		hs, err := ix.NearDupWindows(context.Background(), q, domain.WindowSearch{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		if len(hs) >= want || time.Now().After(deadline) {
			return hs
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A crop of an indexed photo, which whole-image PDQ misses, is found by
// the record's windows; replacing or deleting the post takes its windows
// out at once; the windows survive a reopen; filters apply.
func TestNearDupWindows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ix.db")
	ix, err := Open(context.Background(), Options{Path: path, Dim: testDim, ModelVersion: "test@1"})
	if err != nil {
		t.Fatal(err)
	}
	astro, coffee := ndPhoto(t, "astronaut.jpg"), ndPhoto(t, "coffee.jpg")
	mustApply(t, ix,
		domain.Change{PostID: "a", Seq: 1, Records: []domain.Record{imageRec(t, "a", 1, astro)}},
		domain.Change{PostID: "c", Seq: 1, Records: []domain.Record{imageRec(t, "c", 2, coffee)}})
	waitWindows(t, ix)

	h := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	rp, err := reposts.Apply(astro, []reposts.Kind{reposts.Crop75}, rand.New(rand.NewPCG(4, 11)))
	if err != nil {
		t.Fatal(err)
	}
	q, err := h.Query(rp.Image)
	if err != nil {
		t.Fatal(err)
	}
	// Plain PDQ does not find the crop.
	if whole, err := plainNearDup(ix, rp.Image); err != nil || len(whole) != 0 {
		t.Fatalf("whole-image near-dup of a 75%% crop: %v, %v (the test needs a crop PDQ misses)", whole, err)
	}
	hs := windowPosts(t, ix, q, domain.Filter{}, 1)
	if len(hs) != 1 || hs[0].PostID != "a" || hs[0].Windows == nil || hs[0].Windows.Windows < 2 {
		t.Fatalf("window matches %+v, want post a by two or more windows", hs)
	}
	sh, W, H := rp.Shown, float32(astro.Bounds().Dx()), float32(astro.Bounds().Dy())
	want := [4]float32{float32(sh.Min.X) / W, float32(sh.Min.Y) / H, float32(sh.Max.X) / W, float32(sh.Max.Y) / H}
	for i := range want {
		if d := hs[0].Windows.Shown[i] - want[i]; d > 0.05 || d < -0.05 {
			t.Errorf("shown %v, want %v", hs[0].Windows.Shown, want)
			break
		}
	}
	if hs[0].Text != "text of a" || hs[0].Distance == nil {
		t.Errorf("hit not filled from the store: %+v", hs[0].Hit)
	}
	if got := windowPosts(t, ix, q, domain.Filter{Authors: []string{"a-c"}}, 0); len(got) != 0 {
		t.Errorf("author filter a-c still found %+v", got)
	}

	// Reopened: the windows come back from the store.
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	ix = openTest(t, path)
	waitWindows(t, ix)
	if got := windowPosts(t, ix, q, domain.Filter{}, 1); len(got) != 1 || got[0].PostID != "a" {
		t.Fatalf("after reopen: %+v", got)
	}

	// Post a's newer version is the coffee photo: the astronaut crop no
	// longer finds it, with no wait.
	mustApply(t, ix, domain.Change{PostID: "a", Seq: 2, Records: []domain.Record{imageRec(t, "a", 3, coffee)}})
	if got, err := ix.NearDupWindows(context.Background(), q, domain.WindowSearch{}); err != nil || len(got) != 0 {
		t.Errorf("after replacing post a: %+v, %v", got, err)
	}
	mustApply(t, ix, domain.Change{PostID: "a", Seq: 3, Records: []domain.Record{imageRec(t, "a", 3, astro)}})
	if got := windowPosts(t, ix, q, domain.Filter{}, 1); len(got) != 1 {
		t.Fatalf("astronaut back in post a: %+v", got)
	}
	mustApply(t, ix, domain.Change{PostID: "a", Delete: true, Deny: true})
	if got, err := ix.NearDupWindows(context.Background(), q, domain.WindowSearch{}); err != nil || len(got) != 0 {
		t.Errorf("after deleting post a: %+v, %v", got, err)
	}
}

func TestNearDupWindowsRefusesBadQueries(t *testing.T) {
	ix := openTest(t, filepath.Join(t.TempDir(), "ix.db"))
	waitWindows(t, ix)
	if _, err := ix.NearDupWindows(context.Background(), nil, domain.WindowSearch{}); !errors.Is(err, domain.ErrInvalidQuery) {
		t.Errorf("nil query: %v", err)
	}
	if _, err := ix.NearDupWindows(context.Background(), &neardup.Query{}, domain.WindowSearch{K: -1}); !errors.Is(err, domain.ErrInvalidQuery) {
		t.Errorf("negative k: %v", err)
	}
	// A record whose stored windows are garbage is kept, found by PDQ only.
	r := rec("g", domain.ModalityImage, 1)
	r.Windows = []byte{1, 2, 3}
	mustApply(t, ix, domain.Change{PostID: "g", Seq: 1, Records: []domain.Record{r}})
	if n, _ := ix.Count(context.Background()); n[domain.ModalityImage] != 1 {
		t.Errorf("record with bad windows not kept: %v", n)
	}
}

// A brightened copy of a dark photo moves its whole-image hash beyond
// PDQ's threshold: NearDup misses it, and NearDupWindows finds it through
// the pixel-verified band (a whole-image match marked Whole, with the
// pixel check's figures); the other photo is not matched. The band is
// searched with the query's window hashes left out: since the indexed
// images store their middle's windows too, two of those meet this copy,
// which the full query finds by them.
func TestNearDupWholeBand(t *testing.T) {
	clock, coffee := ndPhoto(t, "clock.jpg"), ndPhoto(t, "coffee.jpg")
	open := func(band int) *Index {
		ix, err := Open(context.Background(), Options{Path: filepath.Join(t.TempDir(), "ix.db"), Dim: testDim, ModelVersion: "test@1", NearDupWholeBand: band})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ix.Close() })
		mustApply(t, ix,
			domain.Change{PostID: "k", Seq: 1, Records: []domain.Record{imageRec(t, "k", 1, clock)}},
			domain.Change{PostID: "c", Seq: 1, Records: []domain.Record{imageRec(t, "c", 2, coffee)}})
		waitWindows(t, ix)
		for deadline := time.Now().Add(10 * time.Second); ix.WindowImages() < 2; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%d images in the window tables, want 2", ix.WindowImages())
			}
		}
		return ix
	}
	ix, off := open(0), open(-1)
	rp, err := reposts.Apply(clock, []reposts.Kind{reposts.Bright}, rand.New(rand.NewPCG(0, 5)))
	if err != nil {
		t.Fatal(err)
	}
	full, err := neardup.NewHasher(neardup.Options{PDQMaxSide: -1}).Query(rp.Image)
	if err != nil {
		t.Fatal(err)
	}
	if whole, err := plainNearDup(ix, rp.Image); err != nil || len(whole) != 0 {
		t.Fatalf("whole-image near-dup of the brightened clock: %v, %v (the test needs a copy PDQ misses)", whole, err)
	}
	if hs := windowPosts(t, ix, full, domain.Filter{}, 1); len(hs) != 1 || hs[0].PostID != "k" {
		t.Fatalf("matches of the full query %+v, want post k", hs)
	}
	q := *full
	q.Hashes = slices.DeleteFunc(slices.Clone(full.Hashes), func(h neardup.QueryHash) bool { return h.Kind == neardup.Window })
	hs := windowPosts(t, ix, &q, domain.Filter{}, 1)
	if len(hs) != 1 || hs[0].PostID != "k" || hs[0].Windows == nil {
		t.Fatalf("matches %+v, want post k", hs)
	}
	w := hs[0].Windows
	if !w.Whole || w.Windows != 0 || *hs[0].Distance <= neardup.WholeDistance || *hs[0].Distance > neardup.WholeBandDistance ||
		w.Pixels < neardup.MinPixelCorr || w.PixelDetail < neardup.MinPixelDetail || w.Transform != "original" {
		t.Errorf("evidence %+v at distance %d, want a pixel-verified whole-image match in the band", *w, *hs[0].Distance)
	}
	// NearDupWholeBand -1 (image.neardup_whole_band) turns the band off.
	if got, err := off.NearDupWindows(context.Background(), &q, domain.WindowSearch{}); err != nil || len(got) != 0 {
		t.Errorf("band off: %+v, %v; want nothing", got, err)
	}
}

// plainNearDup is the whole-image lookup of img: its eight dihedral PDQ
// hashes within PDQ's threshold (neardup.WholeDistance, 31).
func plainNearDup(ix *Index, img image.Image) ([]domain.NearDupHit, error) {
	vs, _ := (&pdq.Hasher{MaxSide: -1}).Dihedral(img)
	var hashes [][]byte
	for i := range vs {
		hashes = append(hashes, vs[i][:])
	}
	return ix.NearDup(context.Background(), domain.NearDupQuery{Hashes: hashes, MaxDistance: neardup.WholeDistance})
}

// A downscale of a textured photo whose PDQ hash moved past the threshold,
// and which no window finds, is found by its area hash (neardup.Area),
// stored in the record's window list; a record stored without one (windows
// of an earlier format) is not.
func TestNearDupAreaHash(t *testing.T) {
	// A 256-pixel photo of the ThreatExchange set: at 25 % its PDQ hash
	// lies 70 bits away.
	photo := testutil.DecodeImage(t, "../../testdata/pdq/images/labelme-subset/q0122.jpg")
	coffee := ndPhoto(t, "coffee.jpg")
	ix, err := Open(context.Background(), Options{Path: filepath.Join(t.TempDir(), "ix.db"), Dim: testDim, ModelVersion: "test@1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	old := imageRec(t, "old", 3, photo)
	_, _, sig, err := neardup.ParseWindows(old.Windows)
	if err != nil {
		t.Fatal(err)
	}
	var noArea []neardup.RegionHash
	for _, r := range sig {
		if r.Kind != neardup.Area {
			noArea = append(noArea, r)
		}
	}
	old.Windows = neardup.AppendWindows(nil, photo.Bounds().Dx(), photo.Bounds().Dy(), noArea)
	mustApply(t, ix,
		domain.Change{PostID: "b", Seq: 1, Records: []domain.Record{imageRec(t, "b", 1, photo)}},
		domain.Change{PostID: "c", Seq: 1, Records: []domain.Record{imageRec(t, "c", 2, coffee)}},
		domain.Change{PostID: "old", Seq: 1, Records: []domain.Record{old}})
	waitWindows(t, ix)
	rp, err := reposts.Apply(photo, []reposts.Kind{reposts.Down25}, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if whole, err := plainNearDup(ix, rp.Image); err != nil || len(whole) != 0 {
		t.Fatalf("whole-image near-dup of the photo at 25 %%: %v, %v (the test needs a copy PDQ misses)", whole, err)
	}
	q, err := neardup.NewHasher(neardup.Options{PDQMaxSide: -1}).Query(rp.Image)
	if err != nil {
		t.Fatal(err)
	}
	hs := windowPosts(t, ix, q, domain.Filter{}, 1)
	var area []string
	for _, h := range hs {
		if h.Windows != nil && h.Windows.Area {
			area = append(area, h.PostID)
			if *h.Distance > neardup.WholeDistance || h.Windows.Windows != 0 || h.Windows.Transform != "original" {
				t.Errorf("area match %+v at distance %d, want no windows, transform original, within %d bits", *h.Windows, *h.Distance, neardup.WholeDistance)
			}
		}
	}
	if len(area) != 1 || area[0] != "b" {
		t.Errorf("area matches %v (all matches %+v), want post b alone (post old has no area hash)", area, hs)
	}
}
