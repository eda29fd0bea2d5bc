package banks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"

	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
	"github.com/xmodal/xmodal/internal/testutil"
)

// A meme (caption band) and a screenshot of a banked photo match its PDQ
// entry through a content rectangle, which Match with the whole image's
// hashes misses; the photo itself matches as a whole; a watermarked copy
// of a generated picture matches by its cleaned hash; another photo
// matches nothing.
func TestMatchRegions(t *testing.T) {
	load := func(name string) image.Image { return loadPhoto(t, name) }
	photo := load("coffee.jpg")
	ph := pdq.Hasher{MaxSide: -1}
	h, _ := ph.Hash(photo)
	s := NewState()
	mustApply(t, s, createOp("memes", nil))
	mustApply(t, s, addOp("memes", Entry{Type: SignalPDQ, Value: h.String()}))
	nh := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	for i, tc := range []struct {
		name   string
		kinds  []reposts.Kind
		region string
	}{
		{"photo", nil, "whole"},
		{"caption", []reposts.Kind{reposts.Caption}, "content"},
		{"screenshot", []reposts.Kind{reposts.Screenshot}, "content"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := photo
			if tc.kinds != nil {
				rp, err := reposts.Apply(img, tc.kinds, rand.New(rand.NewPCG(uint64(i), 3)))
				if err != nil {
					t.Fatal(err)
				}
				img = rp.Image
			}
			q, err := nh.QueryRects(img)
			if err != nil {
				t.Fatal(err)
			}
			ms, err := s.MatchRegions(context.Background(), q, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != 1 || ms[0].Signal != h.String() || ms[0].Region != tc.region || *ms[0].Distance > 31 {
				t.Fatalf("got %+v, want coffee by its %s", ms, tc.region)
			}
			if tc.region == "content" {
				if whole := mustMatch(t, s, Query{PDQ: hashesOf(q, 0)}); len(whole) != 0 {
					t.Errorf("the whole image's hashes matched too (the test shows nothing): %+v", whole)
				}
				r := ms[0].Rect
				if r == [4]int{0, 0, img.Bounds().Dx(), img.Bounds().Dy()} {
					t.Errorf("content match reports the whole image %v", r)
				}
			}
		})
	}
	// A watermark across a smooth generated landscape moves its PDQ hash
	// 42 bits; the query's cleaned hash lies 16 bits from the entry.
	pic := reposts.Photo(0, 1000, 640, 480)
	ph0, _ := ph.Hash(pic)
	mustApply(t, s, addOp("memes", Entry{Type: SignalPDQ, Value: ph0.String()}))
	rp, err := reposts.Apply(pic, []reposts.Kind{reposts.Watermark}, rand.New(rand.NewPCG(0, 9)))
	if err != nil {
		t.Fatal(err)
	}
	wq, err := nh.QueryRects(rp.Image)
	if err != nil {
		t.Fatal(err)
	}
	if whole := mustMatch(t, s, Query{PDQ: hashesOf(wq, 0)}); len(whole) != 0 {
		t.Errorf("watermark: the whole image's plain hashes matched (the test shows nothing): %+v", whole)
	}
	ms, err := s.MatchRegions(context.Background(), wq, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Signal != ph0.String() || ms[0].Region != "whole" || !ms[0].Cleaned || *ms[0].Distance > 31 {
		t.Errorf("watermark: got %+v, want the picture by its cleaned hash", ms)
	}
	other, err := nh.QueryRects(load("chelsea.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	if ms, err := s.MatchRegions(context.Background(), other, nil); err != nil || len(ms) != 0 {
		t.Errorf("another photo: %+v, %v", ms, err)
	}
	if _, err := s.MatchRegions(context.Background(), &neardup.Query{}, nil); !errors.Is(err, ErrInvalidQuery) {
		t.Errorf("empty query: %v, want ErrInvalidQuery", err)
	}
}

// loadPhoto decodes one of the committed photos of testdata/neardup/photos.
func loadPhoto(t testing.TB, name string) image.Image {
	t.Helper()
	root, err := testutil.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return testutil.DecodeImage(t, filepath.Join(root, "testdata/neardup/photos", name))
}

// hashesOf is the plain whole-image hashes of region ri of q.
func hashesOf(q *neardup.Query, ri int) []pdq.Hash {
	var hs []pdq.Hash
	for _, h := range q.Hashes {
		if h.Kind == neardup.Whole && h.Rect == ri && !h.Cleaned {
			hs = append(hs, h.Hash)
		}
	}
	return hs
}

// windowsEntry is the pdq entry of img with its stored windows.
func windowsEntry(t testing.TB, img image.Image) Entry {
	t.Helper()
	nh := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	sig, err := nh.Signatures(img)
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	return Entry{Type: SignalPDQ, Value: sig[0].Hash.String(), Windows: neardup.AppendWindows(nil, b.Dx(), b.Dy(), sig)}
}

// A crop of a banked photo matches the entry that carries the photo's
// windows, region "window", with the part shown and the transform; the
// same hash banked without windows (a hash list's) is not matched by the
// crop. A disabled or removed entry, another photo and a query without
// windows match nothing; the windows survive a snapshot and re-adding the
// hash without them.
func TestMatchRegionsWindows(t *testing.T) {
	load := func(name string) image.Image { return loadPhoto(t, name) }
	photo := load("coffee.jpg")
	e := windowsEntry(t, photo)
	s := NewState()
	mustApply(t, s, createOp("crops", nil))
	mustApply(t, s, createOp("hashes", nil))
	mustApply(t, s, addOp("crops", e))
	mustApply(t, s, addOp("hashes", Entry{Type: SignalPDQ, Value: e.Value}))
	if bi, _ := s.Bank("crops"); bi.Windows != 1 {
		t.Fatalf("bank info: %d entries with windows, want 1", bi.Windows)
	}
	if bi, _ := s.Bank("hashes"); bi.Windows != 0 {
		t.Fatalf("hash bank info: %d entries with windows, want 0", bi.Windows)
	}
	// The central 75 % of each side, mirrored.
	b := photo.Bounds()
	x0, y0 := b.Dx()/10, b.Dy()/8
	cw, ch := b.Dx()*3/4, b.Dy()*3/4
	crop := image.NewRGBA(image.Rect(0, 0, cw, ch))
	for y := range ch {
		for x := range cw {
			crop.Set(cw-1-x, y, photo.At(b.Min.X+x0+x, b.Min.Y+y0+y))
		}
	}
	nh := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	q, err := nh.Query(crop)
	if err != nil {
		t.Fatal(err)
	}
	if whole := mustMatch(t, s, Query{PDQ: hashesOf(q, 0)}); len(whole) != 0 {
		t.Fatalf("the crop's whole-image hashes matched (the test shows nothing): %+v", whole)
	}
	ctx := context.Background()
	check := func(s *State, what string) {
		t.Helper()
		ms, err := s.MatchRegions(ctx, q, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != 1 || ms[0].Bank != "crops" || ms[0].Signal != e.Value || ms[0].Region != "window" || ms[0].Shown == nil || ms[0].Windows < 2 {
			t.Fatalf("%s: got %+v, want coffee in bank crops by its windows", what, ms)
		}
		m := ms[0]
		want := [4]float32{float32(x0) / float32(b.Dx()), float32(y0) / float32(b.Dy()), float32(x0+cw) / float32(b.Dx()), float32(y0+ch) / float32(b.Dy())}
		for i := range want {
			if d := m.Shown[i] - want[i]; d < -0.05 || d > 0.05 {
				t.Errorf("%s: shown %v, want about %v", what, *m.Shown, want)
				break
			}
		}
		if m.Rect != [4]int{0, 0, cw, ch} || m.Transform != "flipy" || *m.Distance > neardup.WindowDistance {
			t.Errorf("%s: rect %v transform %s distance %d", what, m.Rect, m.Transform, *m.Distance)
		}
		// Named banks: the hash bank alone has nothing to find it by.
		if ms, err := s.MatchRegions(ctx, q, []string{"hashes"}); err != nil || len(ms) != 0 {
			t.Errorf("%s: bank hashes: %+v, %v", what, ms, err)
		}
	}
	check(s, "added")
	// The windows are the entry's: listed with it, kept by a snapshot and
	// by the hash added again without them.
	id := EntryID(SignalPDQ, "", e.Value)
	got, ok, err := s.Entry("crops", id)
	if err != nil || !ok || !bytes.Equal(got.Windows, e.Windows) {
		t.Fatalf("entry: %v %v, windows %d bytes, want %d", ok, err, len(got.Windows), len(e.Windows))
	}
	l, err := ReadSnapshot(bytes.NewReader(snapshotBytes(t, s)), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	check(l, "snapshot")
	mustApply(t, s, addOp("crops", Entry{Type: SignalPDQ, Value: e.Value, Note: "again"}))
	check(s, "re-added")
	// Neither a query without windows nor another photo finds it.
	rects, err := nh.QueryRects(crop)
	if err != nil {
		t.Fatal(err)
	}
	if ms, err := s.MatchRegions(ctx, rects, nil); err != nil || len(ms) != 0 {
		t.Errorf("query without windows: %+v, %v", ms, err)
	}
	other, err := nh.Query(load("chelsea.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	if ms, err := s.MatchRegions(ctx, other, nil); err != nil || len(ms) != 0 {
		t.Errorf("another photo: %+v, %v", ms, err)
	}
	// Disabled, then removed: nothing.
	disabled := true
	set := op(OpSetEntries, "crops")
	set.IDs, set.Disabled = []string{id}, &disabled
	mustApply(t, s, set)
	if ms, err := s.MatchRegions(ctx, q, nil); err != nil || len(ms) != 0 {
		t.Errorf("disabled: %+v, %v", ms, err)
	}
	rm := op(OpRemoveEntries, "crops")
	rm.IDs = []string{id}
	mustApply(t, s, rm)
	if ms, err := s.MatchRegions(ctx, q, nil); err != nil || len(ms) != 0 {
		t.Errorf("removed: %+v, %v", ms, err)
	}
	if bi, _ := s.Bank("crops"); bi.Windows != 0 {
		t.Errorf("removed: %d entries with windows", bi.Windows)
	}
}

// Windows are for pdq entries, and must parse.
func TestEntryWindowsRefused(t *testing.T) {
	img := reposts.Photo(1, 1000, 320, 240)
	good := windowsEntry(t, img)
	for _, tc := range []struct {
		name string
		e    Entry
	}{
		{"md5", Entry{Type: SignalMD5, Value: md5A, Windows: good.Windows}},
		{"garbage", Entry{Type: SignalPDQ, Value: good.Value, Windows: []byte("not windows")}},
		{"truncated", Entry{Type: SignalPDQ, Value: good.Value, Windows: good.Windows[:len(good.Windows)-7]}},
		{"too long", Entry{Type: SignalPDQ, Value: good.Value, Windows: make([]byte, MaxWindowsBytes+1)}},
	} {
		tc.e.AddedAt = t0
		if err := tc.e.Normalize(); !errors.Is(err, ErrInvalidEntry) {
			t.Errorf("%s: %v, want ErrInvalidEntry", tc.name, err)
		}
	}
	good.AddedAt = t0
	if err := good.Normalize(); err != nil {
		t.Errorf("good windows: %v", err)
	}
}

// TestConcurrentWindowsMatchAndApply runs window lookups while entries
// with windows are added, disabled and removed (run it with -race): every
// lookup succeeds and finds nothing but the cropped picture's entry.
func TestConcurrentWindowsMatchAndApply(t *testing.T) {
	pic := reposts.Photo(0, 77, 480, 360)
	target := windowsEntry(t, pic)
	crop := image.NewRGBA(image.Rect(0, 0, 360, 270))
	draw.Draw(crop, crop.Bounds(), pic, image.Pt(60, 45), draw.Src)
	q, err := neardup.NewHasher(neardup.Options{PDQMaxSide: -1}).Query(crop)
	if err != nil {
		t.Fatal(err)
	}
	var others []Entry
	for i := range 24 {
		others = append(others, windowsEntry(t, reposts.Photo(i%len(reposts.Families), uint64(1000+i), 320, 240)))
	}
	s := NewState()
	mustApply(t, s, createOp("b", nil))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errc := make(chan error, 2)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ms, err := s.MatchRegions(context.Background(), q, nil)
				if err != nil {
					errc <- err
					return
				}
				for _, m := range ms {
					if m.Signal != target.Value {
						errc <- fmt.Errorf("matched another entry: %+v", m)
						return
					}
				}
			}
		}()
	}
	id := EntryID(SignalPDQ, "", target.Value)
	mustApply(t, s, addOp("b", target))
	for i, e := range others {
		mustApply(t, s, addOp("b", e))
		if i%3 == 0 {
			rm := op(OpRemoveEntries, "b")
			rm.IDs = []string{EntryID(SignalPDQ, "", e.Value)}
			mustApply(t, s, rm)
		}
		set := op(OpSetEntries, "b")
		disabled := i%2 == 0
		set.IDs, set.Disabled = []string{id}, &disabled
		mustApply(t, s, set)
	}
	close(stop)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	ms, err := s.MatchRegions(context.Background(), q, nil)
	if err != nil || len(ms) != 1 || ms[0].Region != "window" {
		t.Fatalf("after the writes: %+v, %v; want the picture by its windows", ms, err)
	}
	if bi, _ := s.Bank("b"); bi.Windows != 1+16 {
		t.Fatalf("%d entries with windows, want 17", bi.Windows)
	}
}

// An entry with windows also meets a watermarked copy by its own cleaned
// hash, or by windows, where the PDQ hash alone misses it: generated
// picture 2's watermarked copy lies beyond the threshold of its PDQ hash
// (found by the cleaned hash), and picture 5's beyond every hash of it
// (found by windows; picture 7, this test's first until the query's
// lettering line, is now found by windows too).
func TestMatchRegionsWindowsWatermark(t *testing.T) {
	nh := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	for _, tc := range []struct {
		seed    uint64
		region  string
		cleaned bool
	}{{2, "whole", true}, {5, "window", false}} {
		pic := reposts.Photo(int(tc.seed)%len(reposts.Families), 2000+tc.seed, 640, 480)
		e := windowsEntry(t, pic)
		s := NewState()
		mustApply(t, s, createOp("hashes", nil))
		mustApply(t, s, createOp("windows", nil))
		mustApply(t, s, addOp("hashes", Entry{Type: SignalPDQ, Value: e.Value}))
		mustApply(t, s, addOp("windows", e))
		rp, err := reposts.Apply(pic, []reposts.Kind{reposts.Watermark}, rand.New(rand.NewPCG(0, 9)))
		if err != nil {
			t.Fatal(err)
		}
		q, err := nh.Query(rp.Image)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := s.MatchRegions(context.Background(), q, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != 1 || ms[0].Bank != "windows" || ms[0].Region != tc.region || ms[0].Cleaned != tc.cleaned {
			t.Errorf("picture %d: %+v, want it in bank windows by region %s (cleaned %v) only", tc.seed, ms, tc.region, tc.cleaned)
		}
	}
}
