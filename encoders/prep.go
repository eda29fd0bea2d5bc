package encoders

import (
	"context"
	"fmt"
	"image"
	"runtime"
	"sync"

	"path/filepath"

	"github.com/xmodal/xmodal/encoders/imageprep"
	"github.com/xmodal/xmodal/encoders/tokenizer"
)

// prep holds what turns raw inputs into tensors: the image preprocessing
// spec and the tokenizer.
type prep struct {
	spec imageprep.Spec
	tok  *tokenizer.Tokenizer // safe for concurrent use
}

func newPrep(dir string, man Manifest) (*prep, error) {
	im := man.Image
	p := &prep{spec: imageprep.Spec{Size: im.Size, Mean: im.Mean, Std: im.Std, Resize: im.Resize, CropSize: im.CropSize()}}
	if err := p.spec.Validate(); err != nil {
		return nil, err
	}
	var err error
	if v := man.Text.Tokenizer.Vocab; v != "" {
		p.tok, err = tokenizer.NewFromFile(filepath.Join(dir, v))
	} else {
		p.tok, err = tokenizer.New()
	}
	if err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	return p, nil
}

// ImageSpec is the preprocessing the image tower expects, from the manifest.
func (m *Model) ImageSpec() imageprep.Spec { return m.prep.spec }

// ImageTensorLen is the number of float32 values one preprocessed image
// takes (3×S×S), the stride of EmbedPixels' input.
func (m *Model) ImageTensorLen() int { return m.prep.spec.TensorLen() }

// PreprocessImage writes img's model input (resized, cropped, normalised,
// CHW) into dst, which must hold ImageTensorLen values. It is what
// EmbedImages does before the model call, exposed so that a pipeline can
// preprocess on other goroutines while the model runs.
func (m *Model) PreprocessImage(img image.Image, dst []float32) error {
	if img == nil {
		return fmt.Errorf("encoders: image is nil")
	}
	if n := m.prep.spec.TensorLen(); len(dst) != n {
		return fmt.Errorf("encoders: preprocessing into %d values; one image takes %d", len(dst), n)
	}
	imageprep.Preprocess(img, m.prep.spec, dst)
	return nil
}

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

// EmbedTexts tokenizes texts with the CLIP BPE tokenizer (open_clip's
// SimpleTokenizer, truncating to the context length with EOT kept) and
// embeds them in one batch. When the text graph's sequence axis is dynamic,
// padding columns that no text in the batch uses are dropped first: CLIP's
// causal attention and end-of-text pooling make the result the same, and
// short captions cost a fraction of the full context.
func (m *Model) EmbedTexts(ctx context.Context, texts []string) ([][]float32, error) {
	if len(texts) == 0 {
		return [][]float32{}, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cl := m.man.Text.Tokenizer.ContextLength
	ids, mask := m.prep.tok.Batch(texts, cl)
	if m.text.dynamicSeq {
		ids, mask = trimPadding(ids, mask, len(texts), cl)
	}
	return m.EmbedTokens(ctx, ids, mask, len(texts))
}

// trimPadding drops the trailing columns where every row's mask is 0.
func trimPadding(ids, mask []int64, n, l int) ([]int64, []int64) {
	used := 1
	for i := range n {
		row := mask[i*l : (i+1)*l]
		for j := l - 1; j >= used; j-- {
			if row[j] != 0 {
				used = j + 1
				break
			}
		}
	}
	if used == l {
		return ids, mask
	}
	tids, tmask := make([]int64, n*used), make([]int64, n*used)
	for i := range n {
		copy(tids[i*used:(i+1)*used], ids[i*l:i*l+used])
		copy(tmask[i*used:(i+1)*used], mask[i*l:i*l+used])
	}
	return tids, tmask
}
