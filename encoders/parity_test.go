package encoders

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/xmodal/xmodal/internal/vecmath"
)

const (
	tensorParityMin = 0.9999 // ORT on the golden tensors vs PyTorch
	controlMax      = 0.9    // mean cosine between different inputs must stay below
)

// TestGoldenTensors: ORT through Go, fed the exact tensors PyTorch saw,
// reproduces PyTorch's embeddings.
func TestGoldenTensors(t *testing.T) {
	g := loadGoldens(t, parityDir)
	m := loadModel(t, parityDir, Options{})
	ctx := context.Background()
	if m.Dim() != g.Dim {
		t.Fatalf("Dim() = %d, goldens say %d", m.Dim(), g.Dim)
	}

	img, err := m.EmbedPixels(ctx, g.Pixels, len(g.Images))
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range img {
		c := vecmath.Cosine(e, g.ImageEmbeds[i])
		t.Logf("image %-48s cos %.7f", g.Images[i], c)
		if c < tensorParityMin {
			t.Errorf("image %s: cosine %.7f < %.4f", g.Images[i], c, tensorParityMin)
		}
		if n := norm(e); math.Abs(n-1) > 1e-5 {
			t.Errorf("image %d: norm %.7f, want 1", i, n)
		}
	}

	txt, err := m.EmbedTokens(ctx, flatten(g.InputIDs), flatten(g.AttentionMask), len(g.Texts))
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range txt {
		c := vecmath.Cosine(e, g.TextEmbeds[i])
		t.Logf("text %-40.40q cos %.7f", g.Texts[i], c)
		if c < tensorParityMin {
			t.Errorf("text %q: cosine %.7f < %.4f", g.Texts[i], c, tensorParityMin)
		}
	}

	// CLIP's causal attention and EOT pooling make the mask irrelevant: a nil
	// mask (all ones) gives the same embeddings.
	txt2, err := m.EmbedTokens(ctx, flatten(g.InputIDs), nil, len(g.Texts))
	if err != nil {
		t.Fatal(err)
	}
	for i := range txt2 {
		if c := vecmath.Cosine(txt2[i], txt[i]); c < tensorParityMin {
			t.Errorf("text %d with nil mask: cosine %.7f", i, c)
		}
	}
}

// TestControl: embeddings of different golden inputs are far apart, so the
// parity thresholds above could fail.
func TestControl(t *testing.T) {
	g := loadGoldens(t, parityDir)
	m := loadModel(t, parityDir, Options{})
	ctx := context.Background()
	img, err := m.EmbedPixels(ctx, g.Pixels, len(g.Images))
	if err != nil {
		t.Fatal(err)
	}
	txt, err := m.EmbedTokens(ctx, flatten(g.InputIDs), flatten(g.AttentionMask), len(g.Texts))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		a, b [][]float32
	}{
		{"image ort vs golden", img, g.ImageEmbeds},
		{"image golden vs golden", g.ImageEmbeds, g.ImageEmbeds},
		{"text ort vs golden", txt, g.TextEmbeds},
		{"text golden vs golden", g.TextEmbeds, g.TextEmbeds},
	} {
		mean := meanOffDiagonal(c.a, c.b)
		t.Logf("%s: mean off-diagonal cosine %.4f", c.name, mean)
		if mean >= controlMax {
			t.Errorf("%s: mean cosine between different inputs %.4f >= %.2f: the parity check cannot fail", c.name, mean, controlMax)
		}
	}
}

// TestBatchIndependence: an item's embedding does not depend on its batch.
func TestBatchIndependence(t *testing.T) {
	g := loadGoldens(t, parityDir)
	m := loadModel(t, parityDir, Options{IntraOpThreads: 1})
	ctx := context.Background()
	all, err := m.EmbedPixels(ctx, g.Pixels, len(g.Images))
	if err != nil {
		t.Fatal(err)
	}
	per := len(g.Pixels) / len(g.Images)
	for i := range g.Images {
		one, err := m.EmbedPixels(ctx, g.Pixels[i*per:(i+1)*per], 1)
		if err != nil {
			t.Fatal(err)
		}
		if c := vecmath.Cosine(one[0], all[i]); c < 0.99999 {
			t.Errorf("image %d alone vs in batch: cosine %.7f", i, c)
		}
	}
	ids := flatten(g.InputIDs)
	allT, err := m.EmbedTokens(ctx, ids, nil, len(g.Texts))
	if err != nil {
		t.Fatal(err)
	}
	l := len(ids) / len(g.Texts)
	for i := range g.Texts {
		one, err := m.EmbedTokens(ctx, ids[i*l:(i+1)*l], nil, 1)
		if err != nil {
			t.Fatal(err)
		}
		if c := vecmath.Cosine(one[0], allT[i]); c < 0.99999 {
			t.Errorf("text %d alone vs in batch: cosine %.7f", i, c)
		}
	}
}

// TestConcurrentRuns: one Model serves concurrent callers (run with -race),
// with one session per tower or several (Options.Sessions).
func TestConcurrentRuns(t *testing.T) {
	for _, sessions := range []int{1, 3} {
		t.Run(fmt.Sprintf("sessions=%d", sessions), func(t *testing.T) {
			testConcurrentRuns(t, Options{IntraOpThreads: 1, Sessions: sessions})
		})
	}
}

func testConcurrentRuns(t *testing.T, opt Options) {
	g := loadGoldens(t, parityDir)
	m := loadModel(t, parityDir, opt)
	if got := len(m.image.sess); got != max(opt.Sessions, 1) {
		t.Fatalf("image tower has %d sessions, want %d", got, max(opt.Sessions, 1))
	}
	ctx := context.Background()
	per := len(g.Pixels) / len(g.Images)
	ids := flatten(g.InputIDs)
	l := len(ids) / len(g.Texts)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for r := 0; r < 4; r++ {
				i := (w + r) % len(g.Images)
				e, err := m.EmbedPixels(ctx, g.Pixels[i*per:(i+1)*per], 1)
				if err != nil {
					errs <- err
					return
				}
				if c := vecmath.Cosine(e[0], g.ImageEmbeds[i]); c < tensorParityMin {
					errs <- fmt.Errorf("worker %d image %d: cosine %.6f", w, i, c)
				}
				j := (w + r) % len(g.Texts)
				te, err := m.EmbedTokens(ctx, ids[j*l:(j+1)*l], nil, 1)
				if err != nil {
					errs <- err
					return
				}
				if c := vecmath.Cosine(te[0], g.TextEmbeds[j]); c < tensorParityMin {
					errs <- fmt.Errorf("worker %d text %d: cosine %.6f", w, j, c)
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}
