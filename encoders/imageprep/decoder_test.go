package imageprep

import (
	"bytes"
	"context"
	"errors"
	"image"
	"image/jpeg"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// bigJPEG encodes a w x h greyscale gradient (cheap to encode, big to decode).
func bigJPEG(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewGray(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		row := img.Pix[y*img.Stride : y*img.Stride+w]
		for x := range row {
			row[x] = uint8((x ^ y) + x/7)
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 80}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestNeedScale(t *testing.T) {
	tests := []struct {
		need Need
		w, h int
		want int
	}{
		{Need{Draft: 224}, 3000, 2000, 8},              // Pillow: min(13, 8) = 8
		{Need{Draft: 224}, 1600, 1004, 4},              // min(7, 4) = 4
		{Need{Draft: 224}, 500, 375, 1},                // min(2, 1) = 1
		{Need{Draft: 224}, 500, 448, 2},                // min(2, 2) = 2
		{Need{Draft: 64}, 500, 375, 4},                 // min(7, 5) = 4
		{Need{Draft: 64, LongSide: 128}, 500, 375, 2},  // 125 < 128 at 1/4
		{Need{Draft: 64, ShortSide: 100}, 500, 375, 2}, // 94 < 100 at 1/4
		{Need{Draft: 224, LongSide: 128, ShortSide: 160}, 3000, 2000, 8},
		{Need{Draft: 224, LongSide: 128, ShortSide: 256}, 3000, 2000, 4},
		{Need{}, 3000, 2000, 8}, // nothing needed: the smallest
		{Need{Draft: 10000}, 3000, 2000, 1},
	}
	for _, tt := range tests {
		if got := tt.need.Scale(tt.w, tt.h); got != tt.want {
			t.Errorf("%+v.Scale(%d, %d) = %d, want %d", tt.need, tt.w, tt.h, got, tt.want)
		}
	}
}

// The pixel cap holds in the fast path: a JPEG declaring more pixels than
// the cap is refused in either mode; one under it is decoded at the reduced
// scale without ever holding the full-size image (the budget's high-water
// mark and Go's allocations stay far below full size; libjpeg's own memory
// is bounded by the same estimate through max_memory_to_use).
func TestFastDecodeNeverFullSize(t *testing.T) {
	const w, h = 4000, 3000
	data := bigJPEG(t, w, h)
	ctx := context.Background()
	for _, mode := range []Mode{ModeFast, ModeExact} {
		d, err := NewDecoder(DecoderOptions{Mode: mode, Limits: Limits{MaxPixels: w*h - 1}, Need: Need{Draft: 224}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.Decode(ctx, data); !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: %dx%d over a %d pixel cap: %v, want ErrTooLarge", mode, w, h, w*h-1, err)
		}
	}
	full := int64(3 * w * h)
	budget := NewBudget(full / 8)
	fast, err := NewDecoder(DecoderOptions{Mode: ModeFast, Need: Need{Draft: 224, LongSide: 128}, Budget: budget})
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	dec, err := fast.Decode(ctx, data)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if dec.Scale != 8 || dec.Image.Bounds() != image.Rect(0, 0, w/8, h/8) || dec.Width != w || dec.Height != h {
		t.Fatalf("fast decode: 1/%d, %v of %dx%d; want 1/8, %dx%d of %dx%d", dec.Scale, dec.Image.Bounds(), dec.Width, dec.Height, w/8, h/8, w, h)
	}
	if alloc := int64(after.TotalAlloc - before.TotalAlloc); alloc > full/16 {
		t.Errorf("fast decode allocated %d bytes in Go; full size is %d", alloc, full)
	}
	if hw := budget.HighWater(); hw > full/16 || hw < int64(len(dec.Image.Pix)) {
		t.Errorf("budget high-water mark %d; want between the decoded %d and %d", hw, len(dec.Image.Pix), full/16)
	}
	dec.Release()
	if budget.InUse() != 0 {
		t.Errorf("%d bytes still reserved after Release", budget.InUse())
	}
	// Exact mode needs the full size: more than this budget holds.
	exact, err := NewDecoder(DecoderOptions{Mode: ModeExact, Budget: budget})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := exact.Decode(ctx, data); !errors.Is(err, ErrTooLarge) {
		t.Errorf("exact decode over the budget: %v, want ErrTooLarge", err)
	}
}

// The decoder takes a context: an ended one stops it before any work, and
// a deadline stops a large decode part way through.
func TestDecodeHonoursContext(t *testing.T) {
	data := bigJPEG(t, 4000, 3000)
	d, err := NewDecoder(DecoderOptions{Mode: ModeExact})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := d.Decode(ctx, data); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v, want context.Canceled", err)
	}
	start := time.Now()
	full, err := d.Decode(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	full.Release()
	ctx, cancel = context.WithTimeout(context.Background(), took/10)
	defer cancel()
	start = time.Now()
	_, err = d.Decode(ctx, data)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline of %v on a %v decode: %v, want DeadlineExceeded", took/10, took, err)
	}
	t.Logf("full decode %v; with a deadline of %v it stopped after %v", took, took/10, time.Since(start))

	// Progressive: libjpeg reads every scan in jpeg_start_decompress; the
	// progress monitor stops it there too.
	prog, err := os.ReadFile(filepath.Join(repoRoot, "testdata/pdq/images/dih/bridge-2-rotate-90.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	jd, err := openJPEG(context.Background(), prog, maxJPEGScans)
	if err != nil {
		t.Fatal(err)
	}
	defer jd.close()
	if !jd.hdr.progressive {
		t.Fatal("test file is not progressive")
	}
	cctx, ccancel := context.WithCancel(context.Background())
	jd2, err := openJPEG(cctx, prog, maxJPEGScans)
	if err != nil {
		t.Fatal(err)
	}
	defer jd2.close()
	ccancel() // sets libjpeg's flag: the first progress callback stops it
	if _, err := jd2.decode(context.Background(), 1, 0, false); !errors.Is(jpegError(cctx, "x", err), context.Canceled) {
		t.Errorf("progressive decode after cancel: %v, want context.Canceled", err)
	}
}

// libjpeg's own allocations are bounded: a progressive file whose
// coefficient buffer does not fit is refused, and the estimate the Decoder
// passes is enough for every real file in the goldens.
func TestJPEGWorkingMemoryBound(t *testing.T) {
	prog, err := os.ReadFile(filepath.Join(repoRoot, "testdata/pdq/images/dih/bridge-3-rotate-180.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	jd, err := openJPEG(context.Background(), prog, maxJPEGScans)
	if err != nil {
		t.Fatal(err)
	}
	defer jd.close()
	if !jd.hdr.multiscan {
		t.Fatal("test file is not multi-scan")
	}
	_, err = jd.decode(context.Background(), 8, jd.hdr.blocks*128/4, false)
	if !errors.Is(jpegError(context.Background(), "x", err), ErrTooLarge) {
		t.Errorf("decode with a quarter of the coefficient buffer: %v, want ErrTooLarge", err)
	}

	budget := NewBudget(1 << 30)
	m := loadManifest(t)
	for _, e := range m.Entries {
		data, err := os.ReadFile(filepath.Join(repoRoot, e.Source))
		if err != nil {
			t.Fatal(err)
		}
		for _, mode := range []Mode{ModeExact, ModeFast} {
			d, _ := NewDecoder(DecoderOptions{Mode: mode, Need: Need{Draft: 64}, Budget: budget})
			dec, err := d.Decode(context.Background(), data)
			if err != nil {
				t.Errorf("%s (%s) with a budget: %v", e.Name, mode, err)
				continue
			}
			dec.Release()
		}
	}
}

// Concurrent decodes share the budget: they wait for each other, the
// reserved total never exceeds the limit, and everything is returned.
func TestBudgetBoundsConcurrentDecodes(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "testdata/pdq/images/bridge-mods/aaa-orig.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	one := int64(3*1600*1004) + (2 << 20)
	budget := NewBudget(one * 5 / 2) // two at a time
	d, err := NewDecoder(DecoderOptions{Mode: ModeExact, Budget: budget})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dec, err := d.Decode(context.Background(), data)
			if err != nil {
				errs <- err
				return
			}
			time.Sleep(5 * time.Millisecond) // hold it while others wait
			dec.Release()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if hw := budget.HighWater(); hw > budget.Limit() || hw < one {
		t.Errorf("high-water mark %d, limit %d, one decode about %d", hw, budget.Limit(), one)
	}
	if budget.InUse() != 0 {
		t.Errorf("%d bytes still reserved", budget.InUse())
	}
	// Waiting for the budget honours the context.
	hold, err := budget.reserve(context.Background(), budget.Limit(), "test")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := d.Decode(ctx, data); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("decode while the budget is held: %v, want DeadlineExceeded", err)
	}
	hold.release()
}

// png16 encodes a w x h 16-bit RGB gradient (what a pixel bomb under the cap
// looks like: small to send, 8 bytes a pixel to decode).
func png16(t testing.TB, w, h int) []byte {
	t.Helper()
	img := image.NewNRGBA64(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			o := img.PixOffset(x, y)
			v := uint16(x * 65535 / w)
			img.Pix[o], img.Pix[o+1] = byte(v>>8), byte(v)
			img.Pix[o+2], img.Pix[o+3] = byte(y), byte(x)
			img.Pix[o+6], img.Pix[o+7] = 0xff, 0xff
		}
	}
	return encodePNG(t, img)
}

// A Go codec takes no context: the Decoder stops waiting for it at the
// deadline, and the abandoned decode keeps its share of the budget until it
// ends, so the budget's high-water mark never exceeds its limit.
func TestDecodeDeadlineWithGoCodec(t *testing.T) {
	data := png16(t, 2000, 1500)
	budget := NewBudget(64 << 20)
	d, err := NewDecoder(DecoderOptions{Mode: ModeExact, Budget: budget})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	full, err := d.Decode(context.Background(), data)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	full.Release()
	ctx, cancel := context.WithTimeout(context.Background(), took/10)
	defer cancel()
	start = time.Now()
	if _, err := d.Decode(ctx, data); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline %v on a %v decode: %v", took/10, took, err)
	}
	if late := time.Since(start) - took/10; late > took/2 {
		t.Errorf("returned %v after the deadline (a full decode takes %v)", late, took)
	}
	if budget.InUse() == 0 {
		t.Log("the abandoned decode had already finished")
	}
	deadline := time.Now().Add(30 * time.Second)
	for budget.InUse() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := budget.InUse(); n != 0 {
		t.Errorf("%d bytes still reserved after the abandoned decode ended", n)
	}
	if hw := budget.HighWater(); hw > budget.Limit() {
		t.Errorf("high-water mark %d over the limit %d", hw, budget.Limit())
	}
}

// Released pixel buffers are recycled (pixpool.go): decodes into recycled
// buffers give the same pixels as into fresh ones, whatever the earlier
// image left in them.
func TestRecycledBuffersDecodeTheSame(t *testing.T) {
	a, b := bigJPEG(t, 700, 500), bigJPEG(t, 640, 512)
	d, err := NewDecoder(DecoderOptions{Mode: ModeFast, Need: Need{Draft: 64, LongSide: 128, Hash: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	first := map[int][]byte{}
	for round := range 3 {
		for i, data := range [][]byte{a, b} {
			dec, err := d.Decode(context.Background(), data)
			if err != nil {
				t.Fatal(err)
			}
			got := append(append([]byte{}, dec.Image.Pix...), dec.HashImage.Pix...)
			if round == 0 {
				first[i] = got
			} else if !bytes.Equal(got, first[i]) {
				t.Fatalf("round %d, image %d: pixels differ from the first decode", round, i)
			}
			// Scribble over the buffers before giving them back.
			for j := range dec.HashImage.Pix {
				dec.HashImage.Pix[j] = 0x5a
			}
			dec.Release()
		}
	}
}

// TestBoxReducedModelImage: for greyscale, 4:4:4 and 4:2:0 JPEGs whose
// model image needs a smaller scale than the hash's input, the JPEG is
// decoded once: HashImage is exactly libjpeg's decode at the hash's scale,
// and Image, its box reduction, stays within a few levels of libjpeg's own
// decode at the model's scale (on average within half a level on photos).
// Other layouts (4:2:2, 4:4:0, 4:1:1, CMYK) are decoded twice, and Image is
// libjpeg's scaled decode exactly.
func TestBoxReducedModelImage(t *testing.T) {
	files := []struct {
		path    string
		boxable bool
		mean    float64 // bound on the mean |difference| of the box-reduced image
	}{
		{"testdata/pdq/images/bridge-mods/aaa-orig.jpg", true, 0.6},   // 4:2:0 photo, 1600x1004
		{"testdata/pdq/images/dih/bridge-2-rotate-90.jpg", true, 0.6}, // 4:4:4 progressive photo
		{"testdata/images/generated/orient-6.jpg", true, 0.6},         // 4:2:0, EXIF orientation 6
		{"testdata/images/go/video-001.q50.444.jpeg", true, 1},        // 4:4:4, q50, saturated edges
		{"testdata/images/go/video-005.gray.jpeg", true, 0.6},         // greyscale
		{"testdata/images/go/video-001.q50.422.jpeg", false, 0},
		{"testdata/images/go/video-001.q50.440.jpeg", false, 0},
		{"testdata/images/go/video-001.q50.411.jpeg", false, 0},
		{"testdata/images/go/video-001.cmyk.jpeg", false, 0},
	}
	needs := []Need{
		{Draft: 16, Hash: 50}, // 150x103: model 1/4, hash 1/2
		{Draft: 8, Hash: 100}, // model 1/8, hash full size
		{Draft: 64, LongSide: 128, Hash: 1000},
	}
	ctx := context.Background()
	reduced := 0
	for _, f := range files {
		data := readFile(t, f.path)
		jd, err := openJPEG(ctx, data, maxJPEGScans)
		if err != nil {
			t.Fatal(err)
		}
		if jd.hdr.boxable != f.boxable {
			t.Errorf("%s: boxable %v, want %v", f.path, jd.hdr.boxable, f.boxable)
		}
		jd.close()
		orientation := jpegOrientation(data)
		direct := func(scale int) *RGBImage {
			jd, err := openJPEG(ctx, data, maxJPEGScans)
			if err != nil {
				t.Fatal(err)
			}
			defer jd.close()
			img, err := jd.decode(ctx, scale, 0, false)
			if err != nil {
				t.Fatal(err)
			}
			return orientRGB(img, orientation)
		}
		for _, n := range needs {
			d, err := NewDecoder(DecoderOptions{Need: n})
			if err != nil {
				t.Fatal(err)
			}
			dec, err := d.Decode(ctx, data)
			if err != nil {
				t.Fatalf("%s: %v", f.path, err)
			}
			if dec.HashImage == nil {
				dec.Release()
				continue
			}
			hash, model := direct(dec.HashScale), direct(dec.Scale)
			if !bytes.Equal(dec.HashImage.Pix, hash.Pix) || dec.HashImage.Rect != hash.Rect {
				t.Errorf("%s %+v: the hash input is not libjpeg's decode at 1/%d", f.path, n, dec.HashScale)
			}
			if k := dec.Scale / dec.HashScale; f.boxable && orientation <= 1 {
				// The reduction done row group by row group during the
				// decode is reduceBox of the whole decode.
				if want := reduceBox(rgbSource{hash}, k); !bytes.Equal(dec.Image.Pix, want.Pix) {
					t.Errorf("%s %+v: the model image is not the hash input reduced by %d", f.path, n, k)
				}
			}
			if dec.Image.Rect != model.Rect {
				t.Fatalf("%s %+v: model image %v, libjpeg's 1/%d decode %v", f.path, n, dec.Image.Rect, dec.Scale, model.Rect)
			}
			maxDiff, sum := 0, 0
			for i, v := range dec.Image.Pix {
				dv := int(v) - int(model.Pix[i])
				if dv < 0 {
					dv = -dv
				}
				sum += dv
				maxDiff = max(maxDiff, dv)
			}
			mean := float64(sum) / float64(len(model.Pix))
			// What the model sees: CLIP's 224 px tensors of both images.
			spec := CLIPSpec()
			spec.Size, spec.CropSize = min(224, model.Rect.Dx(), model.Rect.Dy()), 0
			ta := Preprocess(dec.Image, spec, make([]float32, spec.TensorLen()))
			tb := Preprocess(model, spec, make([]float32, spec.TensorLen()))
			var tmax, tsum float64
			for i := range ta {
				dv := math.Abs(float64(ta[i] - tb[i]))
				tsum += dv
				tmax = max(tmax, dv)
			}
			dec.Release()
			if !f.boxable {
				if maxDiff != 0 {
					t.Errorf("%s %+v: the model image differs from libjpeg's 1/%d decode (max %d)", f.path, n, dec.Scale, maxDiff)
				}
				continue
			}
			reduced++
			t.Logf("%s %+v: 1/%d box-reduced by %d vs libjpeg 1/%d: mean |diff| %.3f, max %d; %d px tensor: mean |diff| %.4f, max %.4f",
				f.path, n, dec.HashScale, dec.Scale/dec.HashScale, dec.Scale, mean, maxDiff, spec.Size, tsum/float64(len(ta)), tmax)
			if mean > f.mean || maxDiff > 48 {
				t.Errorf("%s %+v: mean |diff| %.3f, max %d: too far from libjpeg's scaled decode", f.path, n, mean, maxDiff)
			}
		}
	}
	if reduced < 7 {
		t.Errorf("only %d decodes took the box-reduction path", reduced)
	}
}

// TestJPEGGrid: under every EXIF orientation, each pixel of the upright
// reduced image stands for the block of the upright full image that holds
// the full pixels of the stored block it was decoded from.
func TestJPEGGrid(t *testing.T) {
	for _, sz := range []struct{ w, h, s int }{{1003, 757, 4}, {1600, 1000, 8}, {801, 603, 2}, {17, 9, 8}} {
		sw, sh := scaledSize(sz.w, sz.h, sz.s)
		for o := 1; o <= 8; o++ {
			g := jpegGrid(sz.s, sz.w, sz.h, sw, sh, o)
			uw, uh := uprightW(sw, sh, o), uprightH(sw, sh, o)
			if g.Scale != sz.s || g.FullW != uprightW(sz.w, sz.h, o) || g.FullH != uprightH(sz.w, sz.h, o) {
				t.Fatalf("%dx%d o%d: grid %+v", sz.w, sz.h, o, g)
			}
			for _, fp := range [][2]int{{0, 0}, {g.FullW - 1, 0}, {0, g.FullH - 1}, {g.FullW - 1, g.FullH - 1}, {g.FullW / 2, g.FullH / 3}, {5, g.FullH - 2}} {
				X, Y := fp[0], fp[1]
				ux, uy := (X-g.OffX)/g.Scale, (Y-g.OffY)/g.Scale // the upright reduced pixel claimed
				if ux < 0 || ux >= uw || uy < 0 || uy >= uh {
					t.Fatalf("%dx%d o%d: full (%d,%d) outside the reduced image (%d,%d)", sz.w, sz.h, o, X, Y, ux, uy)
				}
				SX, SY := orientSource(o, sz.w, sz.h, X, Y) // the stored full pixel
				rx, ry := orientSource(o, sw, sh, ux, uy)   // the stored reduced pixel
				if SX/sz.s != rx || SY/sz.s != ry {
					t.Errorf("%dx%d o%d: full (%d,%d) is stored block (%d,%d), grid says (%d,%d)", sz.w, sz.h, o, X, Y, SX/sz.s, SY/sz.s, rx, ry)
				}
			}
		}
	}
	if g := jpegGrid(1, 100, 100, 100, 100, 6); g.Scale != 0 {
		t.Errorf("a full-size decode has grid %+v", g)
	}
}
