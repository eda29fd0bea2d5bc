package workers_test

// BenchmarkIngestRound is one round of the image/text ingest comparison
// with the Python pipeline that xmodal replaces (tools/bench_ingest_peer.py
// runs it and the peer in alternating rounds and records the ratios). It
// runs the pipeline as `xmodal run` wires it: the process's image decoder
// (image.decode_mode), thumbnails, PDQ, the model (ONNX Runtime options as
// xmodal's defaults), binary codes, and the embedded index (bbolt, fsync per
// write, near-duplicate clusters as clusters.enabled's default) in a
// temporary folder.
//
// Environment:
//   XMODAL_BENCH_MODEL   model directory (default: the demo model)
//   XMODAL_BENCH_INPUT   a folder of JPEGs (image posts, inline) or a text
//                        file with one post text per line (text posts)
//   XMODAL_BENCH_MODE    fast (default) or exact
//   XMODAL_BENCH_REPEAT  posts = files x repeat (default 1)
//   XMODAL_BENCH_HASH_SIDE image.pdq_min_side (default imageprep.DefaultHashSide)
//   XMODAL_BENCH_CLUSTERS  1 (default, as clusters.enabled and
//                        clusters.dihedral default to true): the index keeps
//                        near-duplicate clusters, linked by PDQ and canonical
//                        dihedral hashes (which image records then get); 0:
//                        none of that (scripts/bench-clusters-ingest.sh
//                        alternates rounds with and without)
//   XMODAL_BENCH_DIHEDRAL  0: clusters link by PDQ hashes only
//                        (clusters.dihedral false; default 1)
//   XMODAL_BENCH_WINDOWS 1: image records get their near-duplicate
//                        windows (encoders/neardup) and the index keeps
//                        them (image.neardup_windows); 0 (default, as
//                        xmodal's default): they do not
//   XMODAL_BENCH_CLUSTER_WINDOWS 1 (with XMODAL_BENCH_WINDOWS=1): the
//                        clusters link by windows too (clusters.windows; the
//                        stored windows carry the content rectangle)
// It prints one line: "RESULT posts=N seconds=S posts_per_s=R
// cpu_ms_per_post=C model_batch=B", C being the process's CPU time (every
// thread, ONNX Runtime's included) over the round per post and B the mean
// inputs per model call.

import (
	"bufio"
	"context"
	"fmt"
	"image"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xmodal/xmodal/encoders"
	"github.com/xmodal/xmodal/encoders/hash"
	"github.com/xmodal/xmodal/encoders/imageprep"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/sink/embedded"
	"github.com/xmodal/xmodal/workers"
)

func BenchmarkIngestRound(b *testing.B) {
	in := os.Getenv("XMODAL_BENCH_INPUT")
	if in == "" {
		b.Skip("XMODAL_BENCH_INPUT is not set (tools/bench_ingest_peer.py sets it)")
	}
	dir := os.Getenv("XMODAL_BENCH_MODEL")
	if dir == "" {
		dir = filepath.Join("..", "testdata", "models", "demo")
	}
	repeat, _ := strconv.Atoi(os.Getenv("XMODAL_BENCH_REPEAT"))
	repeat = max(repeat, 1)
	hashSide := benchHashSide()
	mode, err := imageprep.ParseMode(os.Getenv("XMODAL_BENCH_MODE"))
	if err != nil {
		b.Fatal(err)
	}
	m := loadBenchModel(b, dir, encoders.Options{})
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	coder, _, err := hash.ForModel(m.Dir(), m.Manifest().Hash, m.Version(), m.Dim())
	if err != nil {
		b.Fatal(err)
	}
	opt := embedded.Options{Path: filepath.Join(b.TempDir(), "index.db"), Dim: m.Dim(), ModelVersion: m.Version(), Logger: quiet}
	if coder != nil {
		opt.Coder = coder
	}
	clustered := os.Getenv("XMODAL_BENCH_CLUSTERS") != "0"
	dihedral := clustered && os.Getenv("XMODAL_BENCH_DIHEDRAL") != "0"
	regions := clustered && os.Getenv("XMODAL_BENCH_REGIONS") == "1" // clusters.regions, off by default
	clusterWindows := clustered && os.Getenv("XMODAL_BENCH_CLUSTER_WINDOWS") == "1"
	if clusterWindows && os.Getenv("XMODAL_BENCH_WINDOWS") != "1" {
		b.Fatal("XMODAL_BENCH_CLUSTER_WINDOWS=1 needs XMODAL_BENCH_WINDOWS=1 (as clusters.windows needs image.neardup_windows)")
	}
	if clustered {
		opt.Clusters = &embedded.ClusterOptions{Dihedral: dihedral, Regions: regions, Windows: clusterWindows}
	}
	ix, err := embedded.Open(context.Background(), opt)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ix.Close() })

	var gen func(id string, i int) []byte
	var n int
	if st, err := os.Stat(in); err == nil && st.IsDir() {
		files, _ := filepath.Glob(filepath.Join(in, "*.jpg"))
		sort.Strings(files)
		if len(files) == 0 {
			b.Fatalf("no JPEGs in %s", in)
		}
		imgs := make([][]byte, len(files))
		for i, f := range files {
			if imgs[i], err = os.ReadFile(f); err != nil {
				b.Fatal(err)
			}
		}
		n = len(imgs) * repeat
		gen = func(id string, i int) []byte { return benchPost(id, "", imgs[i%len(imgs)], "") }
	} else {
		f, err := os.Open(in)
		if err != nil {
			b.Fatal(err)
		}
		var texts []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if t := sc.Text(); t != "" {
				texts = append(texts, t)
			}
		}
		f.Close()
		n = len(texts) * repeat
		gen = func(id string, i int) []byte { return benchPost(id, texts[i%len(texts)], nil, "") }
	}

	dec, err := imageprep.NewDecoder(imageprep.DecoderOptions{Mode: mode,
		Need:   imageprep.Need{Draft: m.ImageSpec().Size, LongSide: 128, Hash: hashSide},
		Budget: imageprep.NewBudget(1 << 30)})
	if err != nil {
		b.Fatal(err)
	}
	hashers := sync.Pool{New: func() any { return &pdq.Hasher{MaxSide: -1} }}
	deps := workers.Deps{Sink: ix, Logger: quiet,
		Decode: func(ctx context.Context, data []byte) (workers.Decoded, error) {
			d, err := dec.Decode(ctx, data)
			if err != nil {
				return workers.Decoded{}, err
			}
			out := workers.Decoded{Image: d.Image, Mode: string(d.Mode), Release: d.Release}
			if d.HashImage != nil {
				out.HashInput = d.HashImage
			}
			return out, nil
		},
		Thumbnail: func(img image.Image) []byte {
			t, err := imageprep.Thumbnail(img, 128, 75)
			if err != nil {
				return nil
			}
			return t
		},
		Hasher: workers.Hasher{PDQ: func(img image.Image) ([]byte, int) {
			hs := hashers.Get().(*pdq.Hasher)
			defer hashers.Put(hs)
			h, q := hs.Hash(img)
			return h[:], q
		}},
	}
	if dihedral { // as cmd/xmodal's ingestCanonical
		deps.Hasher.PDQCanonical = func(img image.Image) ([]byte, []byte, int) {
			hs := hashers.Get().(*pdq.Hasher)
			defer hashers.Put(hs)
			h, cs, q := hs.HashCanonical(img)
			return h[:], pdq.AppendHashes(nil, cs), q
		}
	}
	if regions { // as cmd/xmodal's ingestRegions
		nds := sync.Pool{New: func() any { return neardup.NewHasher(neardup.Options{PDQMaxSide: -1}) }}
		deps.Hasher.PDQRegions = func(img image.Image, _ bool) workers.RegionHashes {
			h := nds.Get().(*neardup.Hasher)
			defer nds.Put(h)
			v, cs, q, rs, framed, err := h.ContentHashes(img, dihedral, neardup.DefaultMinQuality)
			if err != nil {
				hs := hashers.Get().(*pdq.Hasher)
				defer hashers.Put(hs)
				v, cs, q = hs.HashCanonical(img)
			}
			return workers.RegionHashes{PDQ: v[:], Canonical: pdq.AppendHashes(nil, cs), Regions: rs, Framed: framed, Quality: q}
		}
	}
	if os.Getenv("XMODAL_BENCH_WINDOWS") == "1" {
		// As cmd/xmodal's ingestWindows.
		nds := sync.Pool{New: func() any { return neardup.NewHasher(neardup.Options{PDQMaxSide: -1}) }}
		deps.Hasher.Windows = func(img image.Image) []byte {
			h := nds.Get().(*neardup.Hasher)
			defer nds.Put(h)
			if clusterWindows {
				ws, content, err := h.WindowsIn(img)
				if err != nil || len(ws) == 0 {
					return nil
				}
				return neardup.AppendWindowsIn(nil, img.Bounds().Dx(), img.Bounds().Dy(), ws, content)
			}
			ws, err := h.Windows(img)
			if err != nil || len(ws) == 0 {
				return nil
			}
			return neardup.AppendWindows(nil, img.Bounds().Dx(), img.Bounds().Dy(), ws)
		}
	}
	cfg := workers.Config{} // xmodal run's defaults
	// Warm-up: a few posts through the model and the index.
	runPipeline(b, cfg, newMemSource(min(n, 64), func(i int) []byte { return gen(fmt.Sprint("p", i), i) }), m, deps)
	for range b.N {
		// The messages are made before the clock starts, as a source hands
		// over bytes it has received: encoding them is not ingest's work.
		msgs := make([][]byte, n)
		for i := range msgs {
			msgs[i] = gen(fmt.Sprint("p", i), i)
		}
		runtime.GC()
		cpu0 := cpuTime()
		el, reg := runPipeline(b, cfg, newMemSource(n, func(i int) []byte { return msgs[i] }), m, deps)
		cpu := cpuTime() - cpu0
		fmt.Printf("RESULT posts=%d seconds=%.4f posts_per_s=%.2f cpu_ms_per_post=%.3f model_batch=%.1f\n", n, el.Seconds(), float64(n)/el.Seconds(),
			float64(cpu.Microseconds())/1000/float64(n), meanBatch(reg))
	}
}

// meanBatch is the mean number of inputs per model call of a run.
func meanBatch(reg *prometheus.Registry) float64 {
	mfs, _ := reg.Gather()
	var sum float64
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() != "xmodal_encode_batch_inputs" {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetHistogram().GetSampleSum()
			n += m.GetHistogram().GetSampleCount()
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// BenchmarkIngestStages times, one image at a time on one goroutine, each
// step the media stage runs on XMODAL_BENCH_INPUT's JPEGs (as
// BenchmarkIngestRound wires them): the post's JSON decode, the image
// decode (with the PDQ input's second decode where the mode needs one), the
// thumbnail, PDQ and the model input. Where a post's CPU goes when per-post
// overhead dominates (small photos, a small model).
func BenchmarkIngestStages(b *testing.B) {
	in := os.Getenv("XMODAL_BENCH_INPUT")
	if in == "" {
		b.Skip("XMODAL_BENCH_INPUT is not set (a folder of JPEGs)")
	}
	dir := os.Getenv("XMODAL_BENCH_MODEL")
	if dir == "" {
		dir = filepath.Join("..", "testdata", "models", "demo")
	}
	mode, err := imageprep.ParseMode(os.Getenv("XMODAL_BENCH_MODE"))
	if err != nil {
		b.Fatal(err)
	}
	m := loadBenchModel(b, dir, encoders.Options{})
	files, _ := filepath.Glob(filepath.Join(in, "*.jpg"))
	sort.Strings(files)
	if len(files) == 0 {
		b.Fatalf("no JPEGs in %s", in)
	}
	var posts, imgs [][]byte
	for i, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		imgs = append(imgs, data)
		posts = append(posts, benchPost(fmt.Sprint("p", i), "", data, ""))
	}
	dec, err := imageprep.NewDecoder(imageprep.DecoderOptions{Mode: mode,
		Need: imageprep.Need{Draft: m.ImageSpec().Size, LongSide: 128, Hash: benchHashSide()}})
	if err != nil {
		b.Fatal(err)
	}
	decoded := make([]*imageprep.Decoded, len(imgs))
	for i, data := range imgs {
		if decoded[i], err = dec.Decode(context.Background(), data); err != nil {
			b.Fatal(err)
		}
	}
	perImage := func(b *testing.B, f func(i int)) {
		b.ReportAllocs()
		n := 0
		cpu0 := cpuTime()
		for b.Loop() {
			f(n % len(imgs))
			n++
		}
		// CPU time: steadier than ns/op on a shared machine.
		b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(n), "cpu-us/image")
	}
	now := time.Now()
	b.Run("post", func(b *testing.B) {
		perImage(b, func(i int) {
			if _, err := ingest.DecodePost(posts[i], now); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("decode", func(b *testing.B) {
		perImage(b, func(i int) {
			d, err := dec.Decode(context.Background(), imgs[i])
			if err != nil {
				b.Fatal(err)
			}
			d.Release()
		})
	})
	b.Run("thumbnail", func(b *testing.B) {
		perImage(b, func(i int) {
			if _, err := imageprep.Thumbnail(decoded[i].Image, 128, 75); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("pdq", func(b *testing.B) {
		hs := &pdq.Hasher{MaxSide: -1}
		perImage(b, func(i int) {
			in := image.Image(decoded[i].Image)
			if decoded[i].HashImage != nil {
				in = decoded[i].HashImage
			}
			hs.Hash(in)
		})
	})
	b.Run("preprocess", func(b *testing.B) {
		dst := make([]float32, m.ImageTensorLen())
		perImage(b, func(i int) {
			if err := m.PreprocessImage(decoded[i].Image, dst); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// benchHashSide is XMODAL_BENCH_HASH_SIDE (image.pdq_min_side), default
// imageprep.DefaultHashSide.
func benchHashSide() int {
	if v, err := strconv.Atoi(os.Getenv("XMODAL_BENCH_HASH_SIDE")); err == nil && v >= 0 {
		return v
	}
	return imageprep.DefaultHashSide
}
