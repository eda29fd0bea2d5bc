package neardup

import (
	"image"
	"testing"

	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
)

func benchImages() []image.Image {
	var out []image.Image
	for i := range 10 {
		out = append(out, reposts.Photo(i%5, uint64(i), 640, 480))
	}
	return out
}

// BenchmarkIndexHashing times Signatures beside plain PDQ (full
// resolution) on the same decoded pixels, interleaved.
func BenchmarkIndexHashing(b *testing.B) {
	imgs := benchImages()
	b.Run("neardup", func(b *testing.B) {
		h := NewHasher(Options{PDQMaxSide: -1})
		i := 0
		for b.Loop() {
			if _, err := h.Signatures(imgs[i%len(imgs)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("pdq", func(b *testing.B) {
		h := pdq.Hasher{MaxSide: -1}
		i := 0
		for b.Loop() {
			h.Hash(imgs[i%len(imgs)])
			i++
		}
	})
}

func BenchmarkQuery(b *testing.B) {
	imgs := benchImages()
	h := NewHasher(Options{PDQMaxSide: -1})
	i := 0
	for b.Loop() {
		if _, err := h.Query(imgs[i%len(imgs)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
