package matching

import (
	"context"
	"image"
	"path/filepath"
	"testing"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/internal/testutil"
)

func loadPhoto(t *testing.T, name string) image.Image {
	t.Helper()
	root, err := testutil.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return testutil.DecodeImage(t, filepath.Join(root, "testdata/neardup/photos", name))
}

// crop75 is the central 75 % of each side of img, offset a little.
func crop75(img image.Image) image.Image {
	b := img.Bounds()
	x0, y0 := b.Dx()/10, b.Dy()/8
	cw, ch := b.Dx()*3/4, b.Dy()*3/4
	out := image.NewRGBA(image.Rect(0, 0, cw, ch))
	for y := range ch {
		for x := range cw {
			out.Set(x, y, img.At(b.Min.X+x0+x, b.Min.Y+y0+y))
		}
	}
	return out
}

// Crops at ingest (banks.match_regions with entries that carry windows):
// a 75 % crop of a banked photo, whose whole-image hashes match nothing,
// makes an event with region window, the part shown, the agreeing windows
// and the pixel value, once its record carries its near-duplicate query.
// Without the query, or without MatchRegions, it makes none; another photo
// with a query makes none. In a block bank, the crop takes the post down;
// with a pixel bar above any pixel value the event is recorded with action
// review and the post is written.
func TestMatchWindowsAtIngest(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	nh := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	ph := pdq.Hasher{MaxSide: -1}
	entryOf := func(img image.Image) banks.Entry {
		t.Helper()
		sig, err := nh.Signatures(img)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := ph.Hash(img)
		b := img.Bounds()
		return banks.Entry{Type: banks.SignalPDQ, Value: h.String(), Windows: neardup.AppendWindows(nil, b.Dx(), b.Dy(), sig)}
	}
	coffee, chelsea, rocket := loadPhoto(t, "coffee.jpg"), loadPhoto(t, "chelsea.jpg"), loadPhoto(t, "rocket.jpg")
	f.bank(t, "crops", banks.ActionReview, entryOf(coffee))
	f.bank(t, "takedowns", banks.ActionBlock, entryOf(chelsea))
	if !f.banks.State().HasWindows() {
		t.Fatal("HasWindows is false with two banks of entries with windows")
	}
	imagePost := func(id string, seq uint64, img image.Image, query bool) domain.Change {
		t.Helper()
		h, _ := ph.Hash(img)
		c := post(id, seq, h, "")
		c.Records = c.Records[:1]
		if query {
			q, err := nh.Query(img)
			if err != nil {
				t.Fatal(err)
			}
			c.Records[0].NearDupQuery = q
		}
		return c
	}
	withRegions := func(pixels float64) *Writer {
		d := f.deps
		d.MatchRegions, d.WindowBlockPixels = true, pixels
		w, err := New(d)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	apply := func(w *Writer, cs ...domain.Change) {
		t.Helper()
		if _, err := w.Apply(ctx, cs); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing without the query, nor with it but without MatchRegions.
	apply(withRegions(0), imagePost("no-query", 1, crop75(coffee), false))
	apply(f.w, imagePost("no-regions", 1, crop75(coffee), true))
	if evs := f.events(t); len(evs) != 0 {
		t.Fatalf("events without the query or without regions (the crop's hashes match?): %+v", evs)
	}
	apply(withRegions(0), imagePost("crop", 1, crop75(coffee), true), imagePost("other", 1, rocket, true),
		imagePost("crop-block", 1, crop75(chelsea), true))
	apply(withRegions(1.01), imagePost("crop-held", 1, crop75(chelsea), true))
	got := map[string]Event{}
	for _, e := range f.events(t) {
		got[e.PostID] = e
	}
	if len(got) != 3 {
		t.Fatalf("events of %d posts, want crop, crop-block and crop-held: %+v", len(got), got)
	}
	for id, want := range map[string]struct {
		bank   string
		action banks.Action
	}{"crop": {"crops", banks.ActionReview}, "crop-block": {"takedowns", banks.ActionBlock}, "crop-held": {"takedowns", banks.ActionReview}} {
		e, ok := got[id]
		if !ok {
			t.Errorf("%s: no event", id)
			continue
		}
		if e.Bank != want.bank || e.Action != want.action || e.Region != "window" || e.Shown == nil || e.Windows < 2 ||
			e.Pixels < DefaultWindowBlockPixels || e.Pixels > 1 || e.Distance == nil || *e.Distance > neardup.WindowDistance {
			t.Errorf("%s: event %+v (shown %v), want bank %s, action %s, region window", id, e, e.Shown, want.bank, want.action)
			continue
		}
		// The central 75 %: the part shown starts about a tenth in.
		if s := e.Shown; s[0] < 0.05 || s[0] > 0.15 || s[2]-s[0] < 0.7 || s[2]-s[0] > 0.8 {
			t.Errorf("%s: shown %v, want about [0.1 0.125 0.85 0.875]", id, *s)
		}
	}
	denied := map[string]bool{}
	for _, id := range []string{"crop", "crop-block", "crop-held"} {
		denied[id] = f.deny.Denied(id)
	}
	if denied["crop"] || !denied["crop-block"] || denied["crop-held"] {
		t.Errorf("taken down: %v, want crop-block alone", denied)
	}
}

// Found (the crops sweep): a photo banked with its windows after a 75 %
// crop of it was indexed; the photo's parts search finds the crop, and
// Found makes its event (source sweep, version 0, region window, the part
// of the photo the crop shows, its windows and pixel value) and adds the
// match to the record, so a second Found makes none (known). Another
// photo's post gets none. With a pixel bar above any pixel value, a block
// bank's event has action review.
func TestSweepFoundCrops(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	nh := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	ph := pdq.Hasher{MaxSide: -1}
	imagePost := func(id string, img image.Image) domain.Change {
		t.Helper()
		h, _ := ph.Hash(img)
		c := post(id, 1, h, "")
		c.Records = c.Records[:1]
		sig, err := nh.Signatures(img)
		if err != nil {
			t.Fatal(err)
		}
		b := img.Bounds()
		c.Records[0].Windows = neardup.AppendWindows(nil, b.Dx(), b.Dy(), sig)
		return c
	}
	coffee, rocket := loadPhoto(t, "coffee.jpg"), loadPhoto(t, "rocket.jpg")
	if _, err := f.ix.Apply(ctx, []domain.Change{imagePost("crop", crop75(coffee)), imagePost("other", rocket)}); err != nil {
		t.Fatal(err)
	}
	h, _ := ph.Hash(coffee)
	sig, err := nh.Signatures(coffee)
	if err != nil {
		t.Fatal(err)
	}
	b := coffee.Bounds()
	entry := banks.Entry{Type: banks.SignalPDQ, Value: h.String(), Windows: neardup.AppendWindows(nil, b.Dx(), b.Dy(), sig)}
	f.bank(t, "late", banks.ActionBlock, entry)
	info, _ := f.banks.State().Bank("late")
	page, _, _ := f.banks.State().Entries("late", 0, 10)
	q, err := nh.PartsQuery(coffee)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := OpenEvents(ctx, f.js, StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	sw, err := NewSweeper(ctx, SweeperConfig{Index: f.ix, Records: f.ix, Recorder: f.ix, Events: ev, WindowBlockPixels: 1.01})
	if err != nil {
		t.Fatal(err)
	}
	found := func() (int, int) {
		t.Helper()
		hits, err := f.ix.NearDupWindows(ctx, q, domain.WindowSearch{Parts: true})
		if err != nil {
			t.Fatal(err)
		}
		n, known, err := sw.Found(ctx, info, page[0], hits, b.Dx(), b.Dy())
		if err != nil {
			t.Fatal(err)
		}
		return n, known
	}
	if n, known := found(); n != 1 || known != 0 {
		t.Fatalf("found %d, known %d; want the crop", n, known)
	}
	evs := f.events(t)
	if len(evs) != 1 {
		t.Fatalf("events %+v, want the crop's", evs)
	}
	e := evs[0]
	if e.PostID != "crop" || e.Source != SourceSweep || e.Version != 0 || e.ID != EventID("crop", 0, page[0].ID) || e.Bank != "late" ||
		e.Region != "window" || e.Action != banks.ActionReview || e.Shown == nil || e.Windows < 2 || e.Pixels < 0.9 || e.Pixels > 1 {
		t.Fatalf("event %+v, want the crop's sweep event, action review", e)
	}
	if s := e.Shown; s[0] < 0.05 || s[0] > 0.15 || s[1] < 0.075 || s[1] > 0.175 || s[2]-s[0] < 0.7 || s[2]-s[0] > 0.8 {
		t.Errorf("shown %v, want about [0.1 0.125 0.85 0.875]", *s)
	}
	if n, known := found(); n != 0 || known != 1 {
		t.Errorf("again: found %d, known %d; want the crop known", n, known)
	}
	if evs := f.events(t); len(evs) != 1 {
		t.Errorf("%d events after the second Found, want 1", len(evs))
	}
	if _, _, err := sw.Found(ctx, info, page[0], nil, 0, 10); err == nil {
		t.Error("Found with a zero width: no error")
	}
}
