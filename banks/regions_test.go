package banks

import (
	"context"
	"errors"
	"image"
	"math/rand/v2"
	"path/filepath"
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
	root, err := testutil.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	load := func(name string) image.Image {
		return testutil.DecodeImage(t, filepath.Join(root, "testdata/neardup/photos", name))
	}
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
