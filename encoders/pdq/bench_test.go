package pdq

import (
	"image"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// benchFiles are the ThreatExchange test images: 20 photos of 1600x1004
// (or 1004x1600), the rest 34..1432 px. Set PDQ_BENCH_DIR to time another
// directory of JPEG/PNG files.
func benchFiles(b *testing.B) [][]byte {
	b.Helper()
	var paths []string
	if dir := os.Getenv("PDQ_BENCH_DIR"); dir != "" {
		for _, ext := range []string{"*.jpg", "*.jpeg", "*.png"} {
			m, _ := filepath.Glob(filepath.Join(dir, ext))
			paths = append(paths, m...)
		}
	} else {
		m, err := filepath.Glob(filepath.Join(vectorsDir, "images", "*", "*"))
		if err != nil {
			b.Fatal(err)
		}
		paths = m
	}
	slices.Sort(paths)
	if len(paths) == 0 {
		b.Fatal("no benchmark images")
	}
	files := make([][]byte, len(paths))
	for i, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		files[i] = data
	}
	return files
}

// reportRate reports images per second of wall time and per second of
// process CPU time since cpu0 (steadier on a shared machine); each
// iteration handles one image.
func reportRate(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "images/s")
	if cpu := cpuTime() - cpu0; cpu > 0 && cpu0 > 0 {
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "cpu-images/s")
	}
}

// BenchmarkHash times hashing already decoded images. default: as
// FromImage (images over 512 px shrunk first); fullres: no shrink (the
// work the pdqhash wheel does); dihedral: all eight hashes.
func BenchmarkHash(b *testing.B) {
	files := benchFiles(b)
	for _, bc := range []struct {
		name     string
		maxSide  int
		dihedral bool
	}{
		{"default", 0, false},
		{"fullres", -1, false},
		{"dihedral", 0, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			imgs := make([]image.Image, len(files))
			for i, f := range files {
				img, _, err := Decode(f)
				if err != nil {
					b.Fatal(err)
				}
				imgs[i] = img
			}
			hs := &Hasher{MaxSide: bc.maxSide}
			i := 0
			cpu0 := cpuTime()
			for b.Loop() {
				img := imgs[i%len(imgs)]
				if bc.dihedral {
					hs.Dihedral(img)
				} else {
					hs.Hash(img)
				}
				i++
			}
			reportRate(b, cpu0)
		})
	}
}

// BenchmarkDecodeHash times decoding plus hashing, from the encoded bytes.
func BenchmarkDecodeHash(b *testing.B) {
	files := benchFiles(b)
	for _, bc := range []struct {
		name    string
		maxSide int
	}{
		{"default", 0},
		{"fullres", -1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			hs := &Hasher{MaxSide: bc.maxSide}
			i := 0
			cpu0 := cpuTime()
			for b.Loop() {
				img, _, err := Decode(files[i%len(files)])
				if err != nil {
					b.Fatal(err)
				}
				hs.Hash(img)
				i++
			}
			reportRate(b, cpu0)
		})
	}
}

// BenchmarkDecode times decoding alone, to split the cost above.
func BenchmarkDecode(b *testing.B) {
	files := benchFiles(b)
	i := 0
	cpu0 := cpuTime()
	for b.Loop() {
		if _, _, err := Decode(files[i%len(files)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	reportRate(b, cpu0)
}
