package workers_test

import (
	"context"
	"image"
	"image/color"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/workers"
)

// TestMediaStageOneDecode: the media stage decodes each image once and makes
// the thumbnail, the model input and the PDQ hash from it, hashing the
// decoder's separate hash input when it gives one; the image and fused
// records name the decode mode; every decode's memory is released.
func TestMediaStageOneDecode(t *testing.T) {
	e := newEnv(t)
	e.publish(t, "a", post("a", "a red square", pngBytes(color.RGBA{200, 10, 10, 255})))
	e.publish(t, "b", post("b", "", pngBytes(color.RGBA{10, 200, 10, 255})))

	var mu sync.Mutex
	decodes, releases := 0, 0
	hashed := map[image.Image]bool{}
	thumbed := map[image.Image]bool{}
	hashIn := image.NewGray(image.Rect(0, 0, 7, 5)) // distinguishable by its size
	dec := func(ctx context.Context, b []byte) (workers.Decoded, error) {
		d, err := decode(ctx, b)
		if err != nil {
			return d, err
		}
		mu.Lock()
		decodes++
		mu.Unlock()
		inner := d.Release
		d.Release = func() {
			mu.Lock()
			releases++
			mu.Unlock()
			inner()
		}
		d.HashInput, d.Mode = hashIn, "fast-test"
		return d, nil
	}
	p, err := workers.New(workers.Config{FetchWait: 20 * time.Millisecond}, workers.Deps{Source: e.src, DeadLetter: e.src, Sink: e.ix, Deny: e.deny,
		Embedder: e.model, Decode: dec,
		Thumbnail: func(img image.Image) []byte {
			mu.Lock()
			thumbed[img] = true
			mu.Unlock()
			return []byte{0xff, 0xd8, byte(img.Bounds().Dx())}
		},
		Hasher: workers.Hasher{PDQ: func(img image.Image) ([]byte, int) {
			mu.Lock()
			hashed[img] = true
			mu.Unlock()
			h := make([]byte, domain.PDQBytes)
			h[0], h[1] = byte(img.Bounds().Dx()), byte(img.Bounds().Dy())
			return h, 90
		}}})
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, p, func() bool { return e.count(domain.ModalityImage) == 2 && e.allAcked(t) })

	recs, err := e.ix.Get(context.Background(), []string{"a#image", "a#fused", "a#text", "b#image"})
	if err != nil || len(recs) != 4 {
		t.Fatalf("records %d, %v", len(recs), err)
	}
	for _, r := range recs {
		want := "fast-test"
		if r.Modality == domain.ModalityText {
			want = ""
		}
		if r.Preprocess != want {
			t.Errorf("%s: preprocess %q, want %q", r.PK, r.Preprocess, want)
		}
		if r.Modality == domain.ModalityImage && (r.PDQ[0] != 7 || r.PDQ[1] != 5) {
			t.Errorf("%s: PDQ of a %dx%d image, want the 7x5 hash input", r.PK, r.PDQ[0], r.PDQ[1])
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if decodes != 2 || releases != 2 {
		t.Errorf("%d decodes, %d releases; want 2 and 2", decodes, releases)
	}
	if len(hashed) != 1 || !hashed[hashIn] {
		t.Errorf("PDQ hashed %d images, want only the decoder's hash input", len(hashed))
	}
	if len(thumbed) != 2 || thumbed[hashIn] {
		t.Errorf("thumbnails of %d images (hash input among them: %v), want the 2 decoded images", len(thumbed), thumbed[hashIn])
	}
}

// With Hasher.PDQRegions the media stage gives image records the hashes of
// their content rectangles from the PDQ hash's input: alone it gives the
// image's own hashes too; beside PDQVariants (banks matched at ingest) it
// is asked for the regions only, and the hash comes from the variants.
func TestMediaStageRegionHashes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		variants bool
	}{{"regions", false}, {"regions beside variants", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.publish(t, "a", post("a", "", pngBytes(color.RGBA{200, 10, 10, 255})))
			var mu sync.Mutex
			var wholes []bool
			hash := func(b byte) []byte { h := make([]byte, domain.PDQBytes); h[0] = b; return h }
			hs := workers.Hasher{PDQRegions: func(img image.Image, whole bool) workers.RegionHashes {
				mu.Lock()
				wholes = append(wholes, whole)
				mu.Unlock()
				rh := workers.RegionHashes{Regions: append(hash(2), hash(3)...), Framed: true}
				if whole {
					rh.PDQ, rh.Quality = hash(1), 80
				}
				return rh
			}}
			if tc.variants {
				hs.PDQVariants = func(img image.Image) ([][]byte, []int, int) {
					return [][]byte{hash(9), hash(10)}, nil, 70
				}
			}
			p, err := workers.New(workers.Config{FetchWait: 20 * time.Millisecond}, workers.Deps{Source: e.src, DeadLetter: e.src, Sink: e.ix, Deny: e.deny,
				Embedder: e.model, Decode: decode, Thumbnail: func(image.Image) []byte { return nil }, Hasher: hs})
			if err != nil {
				t.Fatal(err)
			}
			runUntil(t, p, func() bool { return e.count(domain.ModalityImage) == 1 && e.allAcked(t) })
			recs, err := e.ix.Get(context.Background(), []string{"a#image"})
			if err != nil || len(recs) != 1 {
				t.Fatalf("records %d, %v", len(recs), err)
			}
			r := recs[0]
			wantPDQ, wantWhole := byte(1), true
			if tc.variants {
				wantPDQ, wantWhole = 9, false
			}
			if len(r.PDQ) != domain.PDQBytes || r.PDQ[0] != wantPDQ || len(r.PDQRegions) != 2*domain.PDQBytes || r.PDQRegions[0] != 2 || !r.PDQFramed {
				t.Errorf("record: PDQ %x, regions %x, framed %v; want PDQ %d..., regions 2... 3..., framed", r.PDQ, r.PDQRegions, r.PDQFramed, wantPDQ)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(wholes) != 1 || wholes[0] != wantWhole {
				t.Errorf("PDQRegions called with whole %v, want one call with %v", wholes, wantWhole)
			}
		})
	}
}

// capture is a domain.Writer that keeps each record's near-duplicate query
// by primary key, then writes the changes.
type capture struct {
	domain.Writer
	mu sync.Mutex
	q  map[string]any
}

func (c *capture) Apply(ctx context.Context, cs []domain.Change) ([]domain.Outcome, error) {
	c.mu.Lock()
	for _, ch := range cs {
		for _, r := range ch.Records {
			c.q[r.PK] = r.NearDupQuery
		}
	}
	c.mu.Unlock()
	return c.Writer.Apply(ctx, cs)
}

// With Hasher.NearDupQuery the media stage gives the image record the
// query it returns, computed from the decoder's hash input (as PDQ is);
// the text and fused records carry none, and none is carried while the
// hook returns nil.
func TestMediaStageNearDupQuery(t *testing.T) {
	e := newEnv(t)
	e.publish(t, "a", post("a", "a red square", pngBytes(color.RGBA{200, 10, 10, 255})))
	e.publish(t, "b", post("b", "", pngBytes(color.RGBA{10, 200, 10, 255})))
	hashIn := image.NewGray(image.Rect(0, 0, 7, 5))
	dec := func(ctx context.Context, b []byte) (workers.Decoded, error) {
		d, err := decode(ctx, b)
		d.HashInput = hashIn
		return d, err
	}
	type query struct{ w, h int }
	var calls atomic.Int32
	sink := &capture{Writer: e.ix, q: map[string]any{}}
	p, err := workers.New(workers.Config{FetchWait: 20 * time.Millisecond}, workers.Deps{Source: e.src, DeadLetter: e.src, Sink: sink, Deny: e.deny,
		Embedder: e.model, Decode: dec, Thumbnail: func(image.Image) []byte { return nil },
		Hasher: workers.Hasher{NearDupQuery: func(img image.Image) any {
			if calls.Add(1) > 1 {
				return nil // no bank with windows any more
			}
			return &query{img.Bounds().Dx(), img.Bounds().Dy()}
		}}})
	if err != nil {
		t.Fatal(err)
	}
	runUntil(t, p, func() bool { return e.count(domain.ModalityImage) == 2 && e.allAcked(t) })
	sink.mu.Lock()
	defer sink.mu.Unlock()
	var with []string
	for pk, q := range sink.q {
		if q == nil {
			continue
		}
		with = append(with, pk)
		if got, ok := q.(*query); !ok || *got != (query{7, 5}) {
			t.Errorf("%s: query %+v, want one of the 7x5 hash input", pk, q)
		}
	}
	if len(with) != 1 || (with[0] != "a#image" && with[0] != "b#image") || calls.Load() != 2 {
		t.Errorf("records with a query %v after %d calls, want one image record of two calls", with, calls.Load())
	}
	if len(sink.q) != 4 {
		t.Errorf("%d records written, want a's three and b's image", len(sink.q))
	}
}
