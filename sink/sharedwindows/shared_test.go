package sharedwindows

import (
	"context"
	"errors"
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
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/internal/winindex"
)

func openWindows(t *testing.T, url string, cfg Config) *Windows {
	t.Helper()
	_, js := testutil.ConnectJS(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if cfg.Name == "" {
		cfg.Name = StateName("test")
	}
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	w, err := Open(ctx, js, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(w.Close)
	return w
}

// photo is a committed photo with its stored windows and PDQ hash.
type photo struct {
	name    string
	img     image.Image
	windows []byte
	hash    pdq.Hash
	quality int
}

func loadPhotos(t *testing.T, names ...string) []photo {
	t.Helper()
	root := testutil.MustRepoRoot(t)
	h := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	var out []photo
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(root, "testdata", "neardup", "photos", name+".jpg"))
		if err != nil {
			t.Fatal(err)
		}
		img, _, err := pdq.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		ws, err := h.Windows(img)
		if err != nil || len(ws) == 0 {
			t.Fatalf("%s: %d windows, %v", name, len(ws), err)
		}
		hash, q := (&pdq.Hasher{MaxSide: -1}).Hash(img)
		bd := img.Bounds()
		out = append(out, photo{name: name, img: img, windows: neardup.AppendWindows(nil, bd.Dx(), bd.Dy(), ws), hash: hash, quality: q})
	}
	return out
}

func (p *photo) change(seq uint64) domain.Change {
	return domain.Change{PostID: p.name, Seq: seq, Records: []domain.Record{
		{PK: domain.PrimaryKey(p.name, domain.ModalityText), PostID: p.name, Modality: domain.ModalityText, Text: "a photo"},
		{PK: domain.PrimaryKey(p.name, domain.ModalityImage), PostID: p.name, Modality: domain.ModalityImage,
			PDQ: p.hash[:], PDQQuality: p.quality, Windows: p.windows},
	}}
}

// cropQuery is the query of a 75 % crop of img (seeded), which whole-image
// PDQ misses.
func cropQuery(t *testing.T, img image.Image, seed uint64) *neardup.Query {
	t.Helper()
	rp, err := reposts.Apply(img, []reposts.Kind{reposts.Crop75}, rand.New(rand.NewPCG(seed, 11)))
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := (&pdq.Hasher{MaxSide: -1}).Hash(img)
	if h, _ := (&pdq.Hasher{MaxSide: -1}).Hash(rp.Image); pdq.Distance(h, orig) <= 31 {
		t.Fatalf("the crop is within PDQ's bound of the original (%d bits): the test shows nothing", pdq.Distance(h, orig))
	}
	q, err := neardup.NewHasher(neardup.Options{PDQMaxSide: -1}).Query(rp.Image)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// search waits until w's tables are built, reflect every change applied
// and hold want images (-1: any number), then searches q.
func search(t *testing.T, w *Windows, q *neardup.Query, want int) []winindex.Hit {
	t.Helper()
	if err := w.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !w.Ready() || w.Pending() > 0 || (want >= 0 && w.Len() != want) {
		if time.Now().After(deadline) {
			t.Fatalf("ready %v with %d images after 30 s; want %d", w.Ready(), w.Len(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	hits, err := w.Search(q, false)
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

func pks(hits []winindex.Hit) []string {
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.PK
	}
	return out
}

func applied(n int) []domain.Outcome {
	out := make([]domain.Outcome, n)
	for i := range out {
		out[i] = domain.Applied
	}
	return out
}

// An indexer that builds no tables appends the windows of its write rounds
// (and keeps them in its file: Stored);
// a serving process finds a crop of a posted photo by them (what whole-
// image PDQ misses), with the same hits as a window index loaded with the
// same windows directly (the embedded index's tables); a process that
// starts later restores the snapshot and the rounds after it, a deletion
// among them.
func TestServerFindsCropsAnIndexerRecorded(t *testing.T) {
	ns := testutil.StartNATS(t, "")
	photos := loadPhotos(t, "astronaut", "coffee", "chelsea")
	indexer := openWindows(t, ns.ClientURL(), Config{NoTables: true})
	server := openWindows(t, ns.ClientURL(), Config{SnapshotEvery: -1})
	var changes []domain.Change
	for i := range photos {
		changes = append(changes, photos[i].change(1))
	}
	if err := indexer.Record(context.Background(), changes, applied(len(changes))); err != nil {
		t.Fatal(err)
	}
	if indexer.Ready() || indexer.Len() != 0 {
		t.Errorf("the process without tables holds some: ready %v, %d images", indexer.Ready(), indexer.Len())
	}
	if _, err := indexer.Search(cropQuery(t, photos[0].img, 4), false); !errors.Is(err, ErrNotReady) {
		t.Errorf("Search on the process without tables: %v, want ErrNotReady", err)
	}
	for _, p := range photos {
		pk := domain.PrimaryKey(p.name, domain.ModalityImage)
		if got, ok := indexer.Stored(pk); !ok || !slices.Equal(got, p.windows) {
			t.Errorf("Stored(%s) on the indexer: %d bytes, %v; want its %d bytes", pk, len(got), ok, len(p.windows))
		}
	}
	if _, ok := indexer.Stored("nothing:image"); ok {
		t.Error("Stored of an unknown record found something")
	}

	direct := winindex.New(neardup.IndexOptions{})
	for _, p := range photos {
		if err := direct.Put(domain.PrimaryKey(p.name, domain.ModalityImage), p.windows, p.hash[:], p.quality); err != nil {
			t.Fatal(err)
		}
	}
	direct.Start(nil)
	t.Cleanup(direct.Stop)
	for !direct.Ready() {
		time.Sleep(5 * time.Millisecond)
	}
	found := 0
	for i, p := range photos {
		q := cropQuery(t, p.img, uint64(4+i))
		hits := search(t, server, q, 3)
		want := direct.Search(q, false)
		if !slices.Equal(pks(hits), pks(want)) {
			t.Fatalf("%s: the shared copy found %v, the window index loaded directly %v", p.name, pks(hits), pks(want))
		}
		for j := range hits {
			if hits[j].Distance != want[j].Distance || hits[j].Match != want[j].Match {
				t.Fatalf("%s: hit %d: %+v, directly %+v", p.name, j, hits[j], want[j])
			}
		}
		if len(hits) > 0 && hits[0].PK == domain.PrimaryKey(p.name, domain.ModalityImage) {
			found++
		}
		for _, h := range hits[min(1, len(hits)):] {
			t.Errorf("%s: another photo found too: %s", p.name, h.PK)
		}
	}
	if found < 2 {
		t.Fatalf("crops of %d of 3 photos found by their windows; want at least 2", found)
	}

	// A snapshot, then astronaut deleted: a late process holds the other two.
	if _, err := server.f.SnapshotNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := indexer.Record(context.Background(), []domain.Change{{PostID: "astronaut", Delete: true}}, []domain.Outcome{domain.Deleted}); err != nil {
		t.Fatal(err)
	}
	late := openWindows(t, ns.ClientURL(), Config{SnapshotEvery: -1})
	if st := late.Replication(); st.Snapshot == 0 {
		t.Fatalf("the late process restored no snapshot: %+v", st)
	}
	for _, w := range []*Windows{server, late} {
		if hits := search(t, w, cropQuery(t, photos[0].img, 4), 2); len(hits) != 0 {
			t.Errorf("the deleted photo's crop found %v", pks(hits))
		}
	}
	if hits := search(t, late, cropQuery(t, photos[1].img, 5), 2); len(hits) == 0 || hits[0].PK != domain.PrimaryKey("coffee", domain.ModalityImage) {
		t.Errorf("the late process: coffee's crop found %v", pks(hits))
	}
}

// Outcomes decide what is appended: a stale or denied change nothing, an
// applied version without windows (or without an image) deletes them, a
// put older than the copy's version is skipped; a window list that does
// not parse refuses the round.
func TestRecordFollowsOutcomes(t *testing.T) {
	ns := testutil.StartNATS(t, "")
	photos := loadPhotos(t, "astronaut", "coffee")
	w := openWindows(t, ns.ClientURL(), Config{SnapshotEvery: -1})
	ctx := context.Background()
	astro, coffee := &photos[0], &photos[1]
	pk := domain.PrimaryKey("p", domain.ModalityImage)
	as := func(p *photo, seq uint64) domain.Change {
		ch := p.change(seq)
		ch.PostID = "p"
		for i := range ch.Records {
			ch.Records[i].PostID = "p"
			ch.Records[i].PK = domain.PrimaryKey("p", ch.Records[i].Modality)
		}
		return ch
	}
	finds := func(p *photo, seed uint64) bool {
		hits := search(t, w, cropQuery(t, p.img, seed), -1)
		return len(hits) > 0 && hits[0].PK == pk
	}
	mustRecord := func(ch domain.Change, out domain.Outcome) {
		t.Helper()
		if err := w.Record(ctx, []domain.Change{ch}, []domain.Outcome{out}); err != nil {
			t.Fatal(err)
		}
		if err := w.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	mustRecord(as(astro, 5), domain.Applied)
	if !finds(astro, 4) {
		t.Fatal("version 5 (astronaut) is not found by its crop")
	}
	mustRecord(as(coffee, 3), domain.Applied) // older than the copy's
	if !finds(astro, 4) || finds(coffee, 5) {
		t.Fatal("an older version replaced the newer one")
	}
	mustRecord(as(coffee, 6), domain.Stale)
	mustRecord(as(coffee, 6), domain.Denied)
	if !finds(astro, 4) || finds(coffee, 5) {
		t.Fatal("a stale or denied change was appended")
	}
	mustRecord(as(coffee, 6), domain.Applied)
	if finds(astro, 4) || !finds(coffee, 5) {
		t.Fatal("version 6 (coffee) did not replace version 5")
	}
	noWindows := as(coffee, 7)
	noWindows.Records[1].Windows = nil
	mustRecord(noWindows, domain.Applied)
	if w.Len() != 0 || finds(coffee, 5) {
		t.Fatalf("a version without windows left %d images", w.Len())
	}
	mustRecord(as(astro, 8), domain.Applied)
	textOnly := as(astro, 9)
	textOnly.Records = textOnly.Records[:1]
	mustRecord(textOnly, domain.Applied)
	if w.Len() != 0 {
		t.Fatalf("a text-only version left %d images", w.Len())
	}
	bad := as(astro, 10)
	bad.Records[1].Windows = []byte{99, 1, 2}
	if err := w.Record(ctx, []domain.Change{bad}, []domain.Outcome{domain.Applied}); !errors.Is(err, ErrBadWindows) {
		t.Fatalf("windows that do not parse: %v, want ErrBadWindows", err)
	}
	if err := w.Record(ctx, []domain.Change{bad}, nil); err == nil {
		t.Fatal("a round with no outcomes was accepted")
	}
}

func TestStateName(t *testing.T) {
	for _, c := range []string{"xmodal", "posts_v2"} {
		if got := StateName(c); got != "windows-"+c {
			t.Errorf("StateName(%q) = %q", c, got)
		}
	}
	long := StateName(string(make([]byte, 80)))
	if len(long) > 64 || long == StateName("other") {
		t.Errorf("a long name maps to %q", long)
	}
}
