package neardup

import (
	"image"
	"image/color"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/xmodal/xmodal/eval/reposts"
)

func committedPhotos(b testing.TB) []image.Image {
	paths, _ := filepath.Glob(filepath.Join(photoDir, "*.jpg"))
	if len(paths) == 0 {
		b.Fatal("no committed photos")
	}
	var imgs []image.Image
	for _, p := range paths {
		imgs = append(imgs, loadPhoto(b, filepath.Base(p)))
	}
	return imgs
}

// BenchmarkWindows times Hasher.Windows over the committed photos, one
// photo an iteration (ns/op is per image).
func BenchmarkWindows(b *testing.B) {
	imgs := committedPhotos(b)
	h := NewHasher(Options{})
	i := 0
	for b.Loop() {
		if _, err := h.Windows(imgs[i%len(imgs)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkWindowsGoVsC times Hasher.Windows over the committed photos
// with the Go code (go) and the C kernels (c), the two interleaved photo
// by photo (each iteration runs both on one photo, alternating which goes
// first), timed by the thread's CPU clock; it reports each one's mean per
// photo and their ratio. The photos are given as Go's JPEG decoder gives
// them (ycbcr) and as packed RGB rows (rgb, as the media pipeline decodes
// them).
func BenchmarkWindowsGoVsC(b *testing.B) {
	if !haveFast {
		b.Skip("C kernels not built in")
	}
	photos := committedPhotos(b)
	var rgb []image.Image
	for _, img := range photos {
		rgb = append(rgb, toPackedRGB(img))
	}
	for _, bc := range []struct {
		name string
		imgs []image.Image
	}{{"ycbcr", photos}, {"rgb", rgb}} {
		b.Run(bc.name, func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			fast := NewHasher(Options{})
			ref := NewHasher(Options{})
			ref.goKernels = true
			var tGo, tC time.Duration
			n := 0
			for b.Loop() {
				img := bc.imgs[n%len(bc.imgs)]
				for k := range 2 {
					h := fast
					if (n+k)%2 == 0 {
						h = ref
					}
					t0 := threadCPU()
					if _, err := h.Windows(img); err != nil {
						b.Fatal(err)
					}
					if h == ref {
						tGo += threadCPU() - t0
					} else {
						tC += threadCPU() - t0
					}
				}
				n++
			}
			b.ReportMetric(float64(tGo.Nanoseconds())/float64(n), "go-ns/image")
			b.ReportMetric(float64(tC.Nanoseconds())/float64(n), "c-ns/image")
			b.ReportMetric(float64(tGo)/float64(max(tC, 1)), "go/c")
		})
	}
}

// packedRGB is an image of packed 8-bit RGB rows (pdq.RGBRower), as
// encoders/imageprep's RGBImage.
type packedRGB struct {
	w, h   int
	stride int
	pix    []byte
}

func (m *packedRGB) ColorModel() color.Model { return color.RGBAModel }
func (m *packedRGB) Bounds() image.Rectangle { return image.Rect(0, 0, m.w, m.h) }
func (m *packedRGB) At(x, y int) color.Color {
	p := m.pix[y*m.stride+3*x:]
	return color.RGBA{p[0], p[1], p[2], 0xff}
}
func (m *packedRGB) RowRGB(y int) []byte { return m.pix[y*m.stride : y*m.stride+3*m.w] }

func toPackedRGB(img image.Image) *packedRGB {
	b := img.Bounds()
	m := &packedRGB{w: b.Dx(), h: b.Dy(), stride: 3*b.Dx() + 5}
	m.pix = make([]byte, m.stride*m.h)
	for y := range m.h {
		for x := range m.w {
			r, g, bl, _ := img.At(b.Min.X+x, b.Min.Y+y).RGBA()
			copy(m.pix[y*m.stride+3*x:], []byte{byte(r >> 8), byte(g >> 8), byte(bl >> 8)})
		}
	}
	return m
}

// BenchmarkWindowsInVsWindows: what clusters.windows adds to ingest's
// window hashing. Hasher.WindowsIn (the content cut, the scaled plane and,
// for an image with a content rectangle, the rectangle's plane) against
// Hasher.Windows, interleaved image by image (alternating which goes
// first), timed by the thread's CPU clock, over the committed photos
// (photos) and screenshots of them (screenshots: a content rectangle
// each), as packed RGB rows as the media pipeline decodes them.
func BenchmarkWindowsInVsWindows(b *testing.B) {
	photos := committedPhotos(b)
	var shots []image.Image
	for i, img := range photos {
		rp, err := reposts.Apply(img, []reposts.Kind{reposts.Screenshot}, rand.New(rand.NewPCG(uint64(i), 3)))
		if err != nil {
			b.Fatal(err)
		}
		shots = append(shots, toPackedRGB(rp.Image))
		photos[i] = toPackedRGB(img)
	}
	for _, bc := range []struct {
		name string
		imgs []image.Image
	}{{"photos", photos}, {"screenshots", shots}} {
		b.Run(bc.name, func(b *testing.B) {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			h := NewHasher(Options{})
			var tW, tIn time.Duration
			n := 0
			for b.Loop() {
				img := bc.imgs[n%len(bc.imgs)]
				for k := range 2 {
					t0 := threadCPU()
					if (n+k)%2 == 0 {
						if _, err := h.Windows(img); err != nil {
							b.Fatal(err)
						}
						tW += threadCPU() - t0
					} else {
						if _, _, err := h.WindowsIn(img); err != nil {
							b.Fatal(err)
						}
						tIn += threadCPU() - t0
					}
				}
				n++
			}
			b.ReportMetric(float64(tW.Nanoseconds())/float64(n), "windows-ns/image")
			b.ReportMetric(float64(tIn.Nanoseconds())/float64(n), "windowsin-ns/image")
			b.ReportMetric(float64(tIn)/float64(max(tW, 1)), "in/windows")
		})
	}
}
