package neardup

import (
	"image"
	"path/filepath"
	"runtime"
	"testing"
	"time"
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
// by photo (each iteration runs both on one photo), timed by the thread's
// CPU clock; it reports each one's mean per photo and their ratio.
func BenchmarkWindowsGoVsC(b *testing.B) {
	if !haveFast {
		b.Skip("C kernels not built in")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	imgs := committedPhotos(b)
	fast := NewHasher(Options{})
	ref := NewHasher(Options{})
	ref.goKernels = true
	var tGo, tC time.Duration
	n := 0
	for b.Loop() {
		img := imgs[n%len(imgs)]
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
}
