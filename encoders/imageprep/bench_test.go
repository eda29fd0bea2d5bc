package imageprep

import (
	"image"
	"testing"
)

// Real photos of different shapes and codecs.
var benchPhotos = []struct{ name, path string }{
	{"bridge-1600x1004-jpeg420", "testdata/pdq/images/bridge-mods/aaa-orig.jpg"},
	{"bridge-1004x1600-jpeg444-progressive", "testdata/pdq/images/dih/bridge-2-rotate-90.jpg"},
	{"labelme-256x256-jpeg420", "testdata/pdq/images/labelme-subset/q0746.jpg"},
	{"misc-1432x812-png-rgba", "testdata/pdq/images/misc/c.png"},
	{"rose-400x301-webp", "testdata/images/go/yellow_rose.lossy.webp"},
}

func perSecond(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "images/s")
}

func BenchmarkDecode(b *testing.B) {
	for _, p := range benchPhotos {
		data := readFile(b, p.path)
		b.Run(p.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := Decode(data, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
			perSecond(b)
		})
	}
}

func decodedPhotos(b *testing.B) []image.Image {
	var imgs []image.Image
	for _, p := range benchPhotos {
		img, _, err := Decode(readFile(b, p.path), Limits{})
		if err != nil {
			b.Fatal(err)
		}
		imgs = append(imgs, img)
	}
	return imgs
}

// BenchmarkResizeCrop: colour conversion to RGB, Pillow-exact bicubic
// resize and centre crop to 224x224 (uint8).
func BenchmarkResizeCrop(b *testing.B) {
	imgs := decodedPhotos(b)
	s := CLIPSpec()
	for i, p := range benchPhotos {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resizeCrop(imgs[i], s)
			}
			perSecond(b)
		})
	}
}

// BenchmarkNormalize: 224x224 uint8 RGB to the normalised CHW float32
// tensor.
func BenchmarkNormalize(b *testing.B) {
	imgs := decodedPhotos(b)
	s := CLIPSpec()
	rgb := resizeCrop(imgs[0], s)
	dst := make([]float32, s.TensorLen())
	b.ReportAllocs()
	for b.Loop() {
		normalize(rgb, s, dst)
	}
	perSecond(b)
}

// BenchmarkPreprocess: resize, crop and normalise together (decode excluded).
func BenchmarkPreprocess(b *testing.B) {
	imgs := decodedPhotos(b)
	s := CLIPSpec()
	dst := make([]float32, s.TensorLen())
	for i, p := range benchPhotos {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Preprocess(imgs[i], s, dst)
			}
			perSecond(b)
		})
	}
}

func BenchmarkThumbnail(b *testing.B) {
	img := decodedPhotos(b)[0]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Thumbnail(img, 256, 80); err != nil {
			b.Fatal(err)
		}
	}
	perSecond(b)
}

// BenchmarkReduceBox: the box reduction that makes the model's image of a
// 3000x2000 photo from its 1/2-scale decode (1500x1000, by 4).
func BenchmarkReduceBox(b *testing.B) {
	src := NewRGBImage(1500, 1000)
	for i := range src.Pix {
		src.Pix[i] = byte(i * 7)
	}
	b.ReportAllocs()
	for b.Loop() {
		reduceBox(rgbSource{src}, 4)
	}
}
