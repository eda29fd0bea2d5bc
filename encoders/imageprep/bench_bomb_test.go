package imageprep

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"context"
	"fmt"
	"image/png"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// bombPNG16 writes a w x h 16-bit RGB PNG, a horizontal gradient whose rows
// repeat (filter Up: zero rows), so it compresses to a few hundred
// kilobytes; row by row (no image in memory).
func bombPNG16(w, h int) []byte {
	var z bytes.Buffer
	zw, _ := zlib.NewWriterLevel(&z, zlib.BestCompression)
	row := make([]byte, 1+6*w)
	for x := 0; x < w; x++ {
		v := uint16(x * 65535 / w)
		o := 1 + 6*x
		row[o], row[o+1], row[o+2], row[o+3], row[o+4], row[o+5] = byte(v>>8), byte(v), byte(v), byte(v>>8), 0x80, 0
	}
	zw.Write(row) // filter None
	up := make([]byte, 1+6*w)
	up[0] = 2 // filter Up: the same row again
	for y := 1; y < h; y++ {
		zw.Write(up)
	}
	zw.Close()
	ihdr := []byte{byte(w >> 24), byte(w >> 16), byte(w >> 8), byte(w), byte(h >> 24), byte(h >> 16), byte(h >> 8), byte(h), 16, 2, 0, 0, 0}
	out := append([]byte("\x89PNG\r\n\x1a\n"), pngChunk("IHDR", ihdr)...)
	out = append(out, pngChunk("IDAT", z.Bytes())...)
	return append(out, pngChunk("IEND", nil)...)
}

func vmHWM() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n << 10
		}
	}
	return 0
}

// resetHWM resets the peak RSS (Linux: /proc/self/clear_refs, 5).
func resetHWM() { os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// BenchmarkPixelBombRSS: eight concurrent decodes of a 6300x6300 16-bit PNG
// (just under the 40 Mpixel cap; a few hundred KB on the wire; side
// XMODAL_BENCH_BOMB_SIDE), as eight
// searches or posts would start them: the peak RSS growth through the
// Decoder (default 1 GiB budget, 16-bit rows converted as they are
// inflated), against image/png plus an RGB conversion without a budget (what
// decoding did before). It prints a table; b.N is ignored.
func BenchmarkPixelBombRSS(b *testing.B) {
	side, n := 6300, 8
	if v, err := strconv.Atoi(os.Getenv("XMODAL_BENCH_BOMB_SIDE")); err == nil && v > 0 {
		side = v
	}
	data := bombPNG16(side, side)
	run := func(name string, decode func() (func(), error)) {
		runtime.GC()
		debug.FreeOSMemory()
		base := vmHWM()
		resetHWM()
		base = min(base, vmHWM())
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				release, err := decode()
				if err != nil {
					errs <- err
					return
				}
				time.Sleep(50 * time.Millisecond) // the consumers' time with the pixels
				release()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		fmt.Printf("%-44s peak RSS growth %7.0f MB, %d decodes in %v\n", name, float64(vmHWM()-base)/1e6, n, time.Since(start).Round(time.Millisecond))
	}
	fmt.Printf("\n%d concurrent decodes of a %dx%d 16-bit PNG (%d KB)\n", n, side, side, len(data)>>10)
	budget := NewBudget(1 << 30)
	d, _ := NewDecoder(DecoderOptions{Mode: ModeExact, Budget: budget})
	run("Decoder (1 GiB budget, rows converted)", func() (func(), error) {
		dec, err := d.Decode(context.Background(), data)
		if err != nil {
			return nil, err
		}
		return dec.Release, nil
	})
	fmt.Printf("  budget high-water %d MB of %d MB\n", budget.HighWater()>>20, budget.Limit()>>20)
	run("image/png + RGB conversion, no budget", func() (func(), error) {
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		rgb := toRGB(img, nil)
		return func() { runtime.KeepAlive(rgb); runtime.KeepAlive(img) }, nil
	})
}
