package query_test

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/png"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/xmodal/xmodal/encoders/imageprep"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
	"github.com/xmodal/xmodal/sink/embedded"
)

// TestExpensiveImagesKeepDeadlineAndBudget: eight concurrent searches by
// 16-bit PNGs (8 bytes a pixel to decode) on a service whose decode budget
// holds about one of them at a time: every reply, an answer or a 504, comes
// by the deadline plus a margin, and the budget's high-water mark never
// exceeds its limit (decodes wait for room; one that outlives its request
// keeps its share until it ends).
func TestExpensiveImagesKeepDeadlineAndBudget(t *testing.T) {
	nc, model, deny := startNATSAndModel(t)
	ix, err := embedded.Open(context.Background(), embedded.Options{Path: filepath.Join(t.TempDir(), "ix.db"), Dim: model.Dim()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })

	const w, h = 2400, 1800
	src := image.NewNRGBA64(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			o := src.PixOffset(x, y)
			src.Pix[o], src.Pix[o+1], src.Pix[o+2], src.Pix[o+3] = byte(x), byte(y), byte(x+y), byte(x^y)
			src.Pix[o+6], src.Pix[o+7] = 0xff, 0xff
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, src); err != nil {
		t.Fatal(err)
	}
	one := int64(w * h * (8 + 3)) // the 16-bit image and its RGB conversion
	budget := imageprep.NewBudget(one * 3 / 2)
	dec, err := imageprep.NewDecoder(imageprep.DecoderOptions{Mode: imageprep.ModeExact, Budget: budget})
	if err != nil {
		t.Fatal(err)
	}
	timeout := 1500 * time.Millisecond
	svc, err := query.New(query.Config{Timeout: timeout}, query.Deps{Index: ix, Encoder: model, Deny: deny, DecodeMode: "exact",
		Decode: func(ctx context.Context, b []byte) (query.DecodedImage, error) {
			d, err := dec.Decode(ctx, b)
			if errors.Is(err, imageprep.ErrTooLarge) {
				return query.DecodedImage{}, &query.Error{Code: query.CodeTooLarge, Message: err.Error()}
			}
			if err != nil {
				return query.DecodedImage{}, err
			}
			return query.DecodedImage{Image: d.Image, Release: d.Release}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(nc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	cl := client.New(nc)

	const margin = time.Second
	var wg sync.WaitGroup
	type outcome struct {
		took time.Duration
		err  error
	}
	out := make([]outcome, 8)
	for i := range out {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 4*timeout)
			defer cancel()
			start := time.Now()
			_, err := cl.Search(ctx, &query.SearchRequest{Image: buf.Bytes(), Target: "image", K: 3})
			out[i] = outcome{time.Since(start), err}
		}()
	}
	wg.Wait()
	answered, timedOut := 0, 0
	for i, o := range out {
		var qe *query.Error
		switch {
		case o.err == nil:
			answered++
		case errors.As(o.err, &qe) && qe.Code == query.CodeTimeout:
			timedOut++
		default:
			t.Errorf("request %d: %v", i, o.err)
		}
		if o.took > timeout+margin {
			t.Errorf("request %d answered after %v; the deadline is %v", i, o.took, timeout)
		}
	}
	t.Logf("%d answered, %d timed out; budget high-water %d of %d bytes", answered, timedOut, budget.HighWater(), budget.Limit())
	if hw := budget.HighWater(); hw > budget.Limit() || hw < one {
		t.Errorf("budget high-water mark %d; limit %d, one decode %d", hw, budget.Limit(), one)
	}
	if timedOut == 0 {
		t.Log("no request timed out: the machine decoded all eight within the deadline")
	}
}
