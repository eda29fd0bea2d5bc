package winindex

import (
	"errors"
	"image"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
	"github.com/xmodal/xmodal/internal/testutil"
)

func stored(t *testing.T, img image.Image) ([]byte, pdq.Hash, int) {
	t.Helper()
	ws, err := neardup.NewHasher(neardup.Options{PDQMaxSide: -1}).Windows(img)
	if err != nil {
		t.Fatal(err)
	}
	h, q := (&pdq.Hasher{MaxSide: -1}).Hash(img)
	b := img.Bounds()
	return neardup.AppendWindows(nil, b.Dx(), b.Dy(), ws), h, q
}

func settle(t *testing.T, x *Index) {
	t.Helper()
	x.Poke()
	for deadline := time.Now().Add(30 * time.Second); !x.Ready() || x.Pending() > 0; time.Sleep(2 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the tables did not settle within 30 s")
		}
	}
}

func hitPKs(hs []Hit) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = h.PK
	}
	return out
}

// Windows loaded before Start and put after it answer by primary key; a
// record put again answers with its new windows only, a deleted one not
// at all, and a hit's id stops being Current once its record changed; a
// window list that does not parse is an error and leaves no windows.
func TestPutSearchReplaceDelete(t *testing.T) {
	dir := filepath.Join(testutil.MustRepoRoot(t), "testdata", "neardup", "photos")
	astro := testutil.DecodeImage(t, filepath.Join(dir, "astronaut.jpg"))
	coffee := testutil.DecodeImage(t, filepath.Join(dir, "coffee.jpg"))
	crop := func(img image.Image, seed uint64) *neardup.Query {
		rp, err := reposts.Apply(img, []reposts.Kind{reposts.Crop75}, rand.New(rand.NewPCG(seed, 11)))
		if err != nil {
			t.Fatal(err)
		}
		q, err := neardup.NewHasher(neardup.Options{PDQMaxSide: -1}).Query(rp.Image)
		if err != nil {
			t.Fatal(err)
		}
		return q
	}
	qa, qc := crop(astro, 4), crop(coffee, 5)
	wa, ha, qua := stored(t, astro)
	wc, hc, quc := stored(t, coffee)

	x := New(neardup.IndexOptions{})
	t.Cleanup(x.Stop)
	if err := x.Put("a", wa, ha[:], qua); err != nil {
		t.Fatal(err)
	}
	x.Start(nil)
	if err := x.Put("c", wc, hc[:], quc); err != nil {
		t.Fatal(err)
	}
	settle(t, x)
	if x.Len() != 2 || !x.Has("a") || !x.Has("c") {
		t.Fatalf("%d images", x.Len())
	}
	ha1 := x.Search(qa, false)
	if got := hitPKs(ha1); len(got) != 1 || got[0] != "a" || ha1[0].Match.Windows < 2 {
		t.Fatalf("astronaut's crop found %v", ha1)
	}
	if got := hitPKs(x.Search(qc, false)); len(got) != 1 || got[0] != "c" {
		t.Fatalf("coffee's crop found %v", got)
	}
	// "a" now holds coffee's windows: the old hit is no longer current.
	if err := x.Put("a", wc, hc[:], quc); err != nil {
		t.Fatal(err)
	}
	if x.Current("a", ha1[0].ID) {
		t.Fatal("a hit of replaced windows is still current")
	}
	settle(t, x)
	if got := hitPKs(x.Search(qa, false)); len(got) != 0 {
		t.Fatalf("astronaut's crop found %v after its windows were replaced", got)
	}
	if got := hitPKs(x.Search(qc, false)); len(got) != 2 {
		t.Fatalf("coffee's crop found %v; want both records", got)
	}
	x.Delete("c")
	if err := x.Put("a", []byte{99, 0, 1}, nil, 0); !errors.Is(err, neardup.ErrBadWindows) {
		t.Fatalf("bad windows: %v, want ErrBadWindows", err)
	}
	settle(t, x)
	if x.Len() != 0 || x.Has("a") || x.Has("c") {
		t.Fatalf("%d images after a deletion and a bad put", x.Len())
	}
	if got := hitPKs(x.Search(qc, false)); len(got) != 0 {
		t.Fatalf("coffee's crop found %v", got)
	}
}
