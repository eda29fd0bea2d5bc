package encoders

import (
	"context"
	"fmt"
	"image"
	"runtime"
	"sync"

	"github.com/xmodal/xmodal/encoders/imageprep"
)

// prep holds what turns raw inputs into tensors: the image preprocessing
// spec and the tokenizer.
type prep struct {
	spec imageprep.Spec
}

func newPrep(dir string, man Manifest) (*prep, error) {
	im := man.Image
	p := &prep{spec: imageprep.Spec{Size: im.Size, Mean: im.Mean, Std: im.Std, Resize: im.Resize, CropSize: im.CropSize()}}
	if err := p.spec.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// ImageSpec is the preprocessing the image tower expects, from the manifest.
func (m *Model) ImageSpec() imageprep.Spec { return m.prep.spec }

// EmbedImages preprocesses decoded images (imageprep.Preprocess with
// ImageSpec, spread over GOMAXPROCS goroutines) and embeds them in one batch.
// The caller bounds the batch size.
func (m *Model) EmbedImages(ctx context.Context, imgs []image.Image) ([][]float32, error) {
	for i, img := range imgs {
		if img == nil {
			return nil, fmt.Errorf("encoders: image %d is nil", i)
		}
	}
	if len(imgs) == 0 {
		return [][]float32{}, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	spec := m.prep.spec
	per := spec.TensorLen()
	pixels := make([]float32, len(imgs)*per)
	workers := min(len(imgs), runtime.GOMAXPROCS(0))
	var (
		wg   sync.WaitGroup
		next = make(chan int)
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				imageprep.Preprocess(imgs[i], spec, pixels[i*per:(i+1)*per])
			}
		}()
	}
	var cerr error
	for i := range imgs {
		if cerr = ctx.Err(); cerr != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if cerr != nil {
		return nil, cerr
	}
	return m.EmbedPixels(ctx, pixels, len(imgs))
}
