package workers_test

import (
	"context"
	"image"
	"image/color"
	"sync"
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
