//go:build unix

package pdq_test

import (
	"bytes"
	"context"
	"image"
	"image/jpeg"
	"os"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/image/draw"

	"github.com/xmodal/xmodal/encoders/imageprep"
	"github.com/xmodal/xmodal/encoders/pdq"
)

var (
	largeOnce sync.Once
	largeJPEG []byte
)

// largePhoto is the bridge photo upscaled to 3000x2000 and re-encoded at q90
// (4:2:0), as tools/bench_photos.py makes its large photos.
func largePhoto(b testing.TB) []byte {
	largeOnce.Do(func() {
		src, err := os.ReadFile("../../testdata/pdq/images/bridge-mods/aaa-orig.jpg")
		if err != nil {
			b.Fatal(err)
		}
		orig, _, err := imageprep.Decode(src, imageprep.Limits{})
		if err != nil {
			b.Fatal(err)
		}
		ob := orig.Bounds()
		ch := ob.Dx() * 2 / 3
		crop := image.Rect(ob.Min.X, ob.Min.Y+(ob.Dy()-ch)/2, ob.Max.X, ob.Min.Y+(ob.Dy()-ch)/2+ch)
		big := image.NewRGBA(image.Rect(0, 0, 3000, 2000))
		draw.CatmullRom.Scale(big, big.Bounds(), orig, crop, draw.Src, nil)
		var buf bytes.Buffer
		if err := jpeg.Encode(&buf, big, &jpeg.Options{Quality: 90}); err != nil {
			b.Fatal(err)
		}
		largeJPEG = buf.Bytes()
	})
	return largeJPEG
}

func processCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e6
}

// stage runs f b.N times and reports the process's CPU milliseconds per
// call besides the wall time (the machine these run on is shared).
func stage(b *testing.B, name string, f func()) {
	b.Run(name, func(b *testing.B) {
		c0 := processCPU()
		for b.Loop() {
			f()
		}
		b.ReportMetric((processCPU()-c0)/float64(b.N), "cpu-ms/op")
	})
}

// BenchmarkLargeStages times each stage of what xmodal run does with a
// 3000x2000 q90 JPEG in fast mode for the demo model (64 px, squash): the
// decode (model image and hash input), the PDQ hash of the hash input with
// its dihedral variants, the model's preprocessing and the thumbnail.
func BenchmarkLargeStages(b *testing.B) {
	data := largePhoto(b)
	spec := imageprep.Spec{Size: 64, Mean: imageprep.CLIPSpec().Mean, Std: imageprep.CLIPSpec().Std, Resize: imageprep.ResizeSquash}
	need := imageprep.Need{Draft: 64, LongSide: 128, Hash: imageprep.DefaultHashSide}
	fast, _ := imageprep.NewDecoder(imageprep.DecoderOptions{Need: need})
	modelOnly, _ := imageprep.NewDecoder(imageprep.DecoderOptions{Need: imageprep.Need{Draft: 64, LongSide: 128}})
	ctx := context.Background()
	decode := func(d *imageprep.Decoder) func() {
		return func() {
			dec, err := d.Decode(ctx, data)
			if err != nil {
				b.Fatal(err)
			}
			dec.Release()
		}
	}
	stage(b, "decode-model-only", decode(modelOnly))
	stage(b, "decode-fast", decode(fast))
	dec, err := fast.Decode(ctx, data)
	if err != nil {
		b.Fatal(err)
	}
	defer dec.Release()
	hashIn := image.Image(dec.Image)
	if dec.HashImage != nil {
		hashIn = dec.HashImage
	}
	b.Logf("model image %v, hash input %v (%T)", dec.Image.Bounds(), hashIn.Bounds(), hashIn)
	hs := pdq.Hasher{MaxSide: -1}
	stage(b, "pdq-dihedral", func() { hs.Dihedral(hashIn) })
	dst := make([]float32, spec.TensorLen())
	stage(b, "preprocess", func() { imageprep.Preprocess(dec.Image, spec, dst) })
	stage(b, "thumbnail", func() {
		if _, err := imageprep.Thumbnail(dec.Image, 128, 75); err != nil {
			b.Fatal(err)
		}
	})
}
