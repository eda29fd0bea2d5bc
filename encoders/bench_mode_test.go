package encoders

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/xmodal/xmodal/encoders/imageprep"
)

// BenchmarkFastVsExact measures what fast decoding changes in the model's
// input and output against exact decoding, on the photo set of
// tools/bench_photos.py (.cache/bench-photos or XMODAL_BENCH_PHOTOS): per
// model and set, the share of photos decoded at a reduced scale, the mean
// and largest absolute difference of the normalised input tensors, and the
// cosine similarity between the two embeddings (mean and lowest). It
// prints a table; b.N is ignored.
func BenchmarkFastVsExact(b *testing.B) {
	dir := os.Getenv("XMODAL_BENCH_PHOTOS")
	if dir == "" {
		dir = filepath.Join("..", ".cache", "bench-photos")
	}
	fmt.Printf("%-8s %-7s %5s %8s %9s %8s %9s %9s\n", "model", "set", "n", "reduced", "mean|d|", "max|d|", "cos mean", "cos min")
	for _, model := range []string{"demo", "parity"} {
		m := loadModel(b, filepath.Join("..", "testdata", "models", model), Options{})
		// As xmodal run decodes: thumbnails of 128 px, PDQ's default side.
		need := imageprep.Need{Draft: m.ImageSpec().Size, LongSide: 128, Hash: imageprep.DefaultHashSide}
		fast, _ := imageprep.NewDecoder(imageprep.DecoderOptions{Mode: imageprep.ModeFast, Need: need})
		exact, _ := imageprep.NewDecoder(imageprep.DecoderOptions{Mode: imageprep.ModeExact})
		for _, set := range []string{"normal", "large"} {
			files, _ := filepath.Glob(filepath.Join(dir, set, "*.jpg"))
			if len(files) == 0 {
				b.Fatalf("no photos under %s (run tools/bench_photos.py)", filepath.Join(dir, set))
			}
			sort.Strings(files)
			n := m.ImageTensorLen()
			var sum, maxd float64
			var cosSum float64
			cosMin := 1.0
			reduced := 0
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					b.Fatal(err)
				}
				ta, tb := make([]float32, n), make([]float32, n)
				df, err := fast.Decode(context.Background(), data)
				if err != nil {
					b.Fatal(err)
				}
				if df.Scale > 1 {
					reduced++
				}
				m.PreprocessImage(df.Image, ta)
				df.Release()
				de, err := exact.Decode(context.Background(), data)
				if err != nil {
					b.Fatal(err)
				}
				m.PreprocessImage(de.Image, tb)
				de.Release()
				for i := range ta {
					d := math.Abs(float64(ta[i] - tb[i]))
					sum += d
					maxd = max(maxd, d)
				}
				v, err := m.EmbedPixels(context.Background(), append(ta, tb...), 2)
				if err != nil {
					b.Fatal(err)
				}
				var c float64
				for i := range v[0] {
					c += float64(v[0][i]) * float64(v[1][i])
				}
				cosSum += c
				cosMin = min(cosMin, c)
			}
			k := len(files)
			fmt.Printf("%-8s %-7s %5d %7.0f%% %9.4f %8.3f %9.5f %9.5f\n", model, set, k, 100*float64(reduced)/float64(k),
				sum/float64(k*n), maxd, cosSum/float64(k), cosMin)
		}
	}
}
