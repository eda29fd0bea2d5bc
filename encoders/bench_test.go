package encoders

import (
	"context"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"testing"

	"github.com/xmodal/xmodal/encoders/imageprep"
)

// Benchmarks run on the committed parity model and, when built, the
// full-size random-weight ViT-B/32 (same compute as a real CLIP ViT-B/32).
// They report items/s; the ns/op is per batch.
//
//	go test ./encoders -run '^$' -bench . -benchtime 3x

var benchBatches = []int{1, 8, 32}

func benchModels(b *testing.B) []struct{ name, dir string } {
	ms := []struct{ name, dir string }{{"parity", parityDir}}
	if _, err := os.Stat(fullModelDir); err == nil {
		ms = append(ms, struct{ name, dir string }{"full", fullModelDir})
	} else {
		b.Logf("full-size model absent (%s): run .cache/venv/bin/python tools/build_parity_model.py --full; benchmarking the parity model only", fullModelDir)
	}
	return ms
}

func reportItems(b *testing.B, batch int) {
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "items/s")
}

// BenchmarkEmbedImages: decoded photos → Preprocess → image tower.
func BenchmarkEmbedImages(b *testing.B) {
	g := loadGoldens(b, parityDir)
	photos := decodeGoldenImages(b, g)
	for _, mm := range benchModels(b) {
		m := loadModel(b, mm.dir, Options{})
		for _, n := range benchBatches {
			imgs := make([]image.Image, n)
			for i := range imgs {
				imgs[i] = photos[i%len(photos)]
			}
			b.Run(fmt.Sprintf("%s/batch=%d", mm.name, n), func(b *testing.B) {
				ctx := context.Background()
				if _, err := m.EmbedImages(ctx, imgs); err != nil { // warm-up
					b.Fatal(err)
				}
				for b.Loop() {
					if _, err := m.EmbedImages(ctx, imgs); err != nil {
						b.Fatal(err)
					}
				}
				reportItems(b, n)
			})
		}
	}
}

// BenchmarkEmbedTexts: strings → tokenizer → text tower.
func BenchmarkEmbedTexts(b *testing.B) {
	g := loadGoldens(b, parityDir)
	for _, mm := range benchModels(b) {
		m := loadModel(b, mm.dir, Options{})
		for _, n := range benchBatches {
			texts := make([]string, n)
			for i := range texts {
				texts[i] = g.Texts[i%len(g.Texts)]
			}
			b.Run(fmt.Sprintf("%s/batch=%d", mm.name, n), func(b *testing.B) {
				benchTexts(b, m, texts)
				reportItems(b, n)
			})
		}
	}
}

// BenchmarkPreprocess: imageprep.Preprocess per golden photo (the CPU cost
// EmbedImages adds to the tower).
func BenchmarkPreprocess(b *testing.B) {
	g := loadGoldens(b, parityDir)
	photos := decodeGoldenImages(b, g)
	spec := imageprep.CLIPSpec()
	dst := make([]float32, spec.TensorLen())
	for i, img := range photos {
		b.Run(fmt.Sprintf("%s_%dx%d", filepath.Base(g.Images[i]), img.Bounds().Dx(), img.Bounds().Dy()), func(b *testing.B) {
			for b.Loop() {
				imageprep.Preprocess(img, spec, dst)
			}
			reportItems(b, 1)
		})
	}
}

// BenchmarkEmbedPixels: the image tower alone, on preprocessed tensors.
func BenchmarkEmbedPixels(b *testing.B) {
	g := loadGoldens(b, parityDir)
	per := len(g.Pixels) / len(g.Images)
	for _, mm := range benchModels(b) {
		m := loadModel(b, mm.dir, Options{})
		for _, n := range benchBatches {
			px := make([]float32, 0, n*per)
			for i := range n {
				j := i % len(g.Images)
				px = append(px, g.Pixels[j*per:(j+1)*per]...)
			}
			b.Run(fmt.Sprintf("%s/batch=%d", mm.name, n), func(b *testing.B) {
				ctx := context.Background()
				if _, err := m.EmbedPixels(ctx, px, n); err != nil { // warm-up
					b.Fatal(err)
				}
				for b.Loop() {
					if _, err := m.EmbedPixels(ctx, px, n); err != nil {
						b.Fatal(err)
					}
				}
				reportItems(b, n)
			})
		}
	}
}

// BenchmarkEmbedTokens: the text tower alone, on token ids.
func BenchmarkEmbedTokens(b *testing.B) {
	g := loadGoldens(b, parityDir)
	for _, mm := range benchModels(b) {
		m := loadModel(b, mm.dir, Options{})
		for _, n := range benchBatches {
			var ids, mask []int64
			for i := range n {
				j := i % len(g.Texts)
				ids = append(ids, g.InputIDs[j]...)
				mask = append(mask, g.AttentionMask[j]...)
			}
			b.Run(fmt.Sprintf("%s/batch=%d", mm.name, n), func(b *testing.B) {
				ctx := context.Background()
				if _, err := m.EmbedTokens(ctx, ids, mask, n); err != nil { // warm-up
					b.Fatal(err)
				}
				for b.Loop() {
					if _, err := m.EmbedTokens(ctx, ids, mask, n); err != nil {
						b.Fatal(err)
					}
				}
				reportItems(b, n)
			})
		}
	}
}
