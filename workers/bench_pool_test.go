package workers_test

// Benchmarks of the batching encoder pool (issue 6). They print tables; run
//
//	go test -run '^$' -bench 'Pool' -benchtime 1x -timeout 60m ./workers/
//
// XMODAL_BENCH_MODEL names the large model (default: the full-size random
// ViT-B/32 that `tools/build_parity_model.py --full` writes under .cache/);
// XMODAL_BENCH_STALL the sink stall of BenchmarkPoolStalledSink (default 60s).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders"
	"github.com/xmodal/xmodal/encoders/hash"
	"github.com/xmodal/xmodal/encoders/imageprep"
	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/ingest/media"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/sink/embedded"
	"github.com/xmodal/xmodal/workers"
)

// ---- inputs ----

// benchJPEG is a photo-like 640×480 JPEG (gradients, blobs, noise), the size
// class of a feed image, so that decoding costs what it costs in production.
func benchJPEG(seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	img := image.NewRGBA(image.Rect(0, 0, 640, 480))
	c0 := [3]float64{r.Float64() * 255, r.Float64() * 255, r.Float64() * 255}
	c1 := [3]float64{r.Float64() * 255, r.Float64() * 255, r.Float64() * 255}
	type blob struct{ x, y, rad float64 }
	blobs := make([]blob, 6)
	for i := range blobs {
		blobs[i] = blob{r.Float64() * 640, r.Float64() * 480, 20 + r.Float64()*80}
	}
	for y := range 480 {
		for x := range 640 {
			t := float64(x+y) / 1120
			var px [3]float64
			for k := range 3 {
				px[k] = c0[k]*(1-t) + c1[k]*t + r.NormFloat64()*12
			}
			for _, b := range blobs {
				if dx, dy := float64(x)-b.x, float64(y)-b.y; dx*dx+dy*dy < b.rad*b.rad {
					px[0], px[1] = 255-px[0], 255-px[1]
				}
			}
			i := img.PixOffset(x, y)
			for k := range 3 {
				img.Pix[i+k] = uint8(max(0, min(255, px[k])))
			}
			img.Pix[i+3] = 255
		}
	}
	var buf bytes.Buffer
	jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85})
	return buf.Bytes()
}

func benchJPEGs(n int) [][]byte {
	out := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() { out[i] = benchJPEG(uint64(i)) })
	}
	wg.Wait()
	return out
}

// imageServer serves the images at /i/<n>.jpg on 127.0.0.1.
func imageServer(b *testing.B, imgs [][]byte) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/i/"), ".jpg"))
		if err != nil || n < 0 || n >= len(imgs) {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "image/jpeg")
		w.Write(imgs[n])
	}))
	b.Cleanup(srv.Close)
	return srv
}

func benchPost(id string, text string, img []byte, url string) []byte {
	p := domain.Post{Schema: 1, ID: id, Author: "bench", Text: text, CreatedAt: time.Now().UTC().Add(-time.Minute).Truncate(time.Second)}
	switch {
	case url != "":
		p.Image = &domain.ImageRef{URL: url}
	case img != nil:
		p.Image = &domain.ImageRef{Data: img, MIME: "image/jpeg"}
	}
	v, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return v
}

// ---- an in-memory source ----

// memSource hands out n messages made by gen (n < 0: without end). With
// arrival set, message i becomes available at arrival(i) (an open-loop load);
// otherwise all are available at once. It records when each was handed out
// and acknowledged.
type memSource struct {
	n       int
	gen     func(i int) []byte
	arrival func(i int) time.Time

	mu      sync.Mutex
	next    int
	out     []time.Time // handed out (or arrived, for open-loop)
	acked   []time.Time
	ackN    atomic.Int64
	allDone chan struct{}
}

func newMemSource(n int, gen func(int) []byte) *memSource {
	s := &memSource{n: n, gen: gen, allDone: make(chan struct{})}
	if n > 0 {
		s.out, s.acked = make([]time.Time, n), make([]time.Time, n)
	}
	return s
}

func (s *memSource) Fetch(ctx context.Context, max int, wait time.Duration) ([]*ingest.Message, error) {
	deadline := time.Now().Add(wait)
	for {
		s.mu.Lock()
		if s.n >= 0 && s.next >= s.n {
			s.mu.Unlock()
			return nil, ingest.ErrExhausted
		}
		var msgs []*ingest.Message
		now := time.Now()
		for len(msgs) < max && (s.n < 0 || s.next < s.n) {
			i := s.next
			if s.arrival != nil && s.arrival(i).After(now) {
				break
			}
			s.next++
			if s.out != nil {
				s.out[i] = now
				if s.arrival != nil {
					s.out[i] = s.arrival(i)
				}
			}
			m := ingest.NewMessage(fmt.Sprint("p", i), s.gen(i), func(context.Context) error {
				if s.acked != nil {
					s.acked[i] = time.Now()
				}
				if s.ackN.Add(1) == int64(s.n) {
					close(s.allDone)
				}
				return nil
			})
			m.Seq = uint64(i + 1)
			m.Origin = fmt.Sprint("mem ", i)
			msgs = append(msgs, m)
		}
		s.mu.Unlock()
		if len(msgs) > 0 || time.Now().After(deadline) {
			return msgs, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Microsecond):
		}
	}
}

func (s *memSource) handedOut() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next
}

// latencies are handed-out (or arrival) to acknowledgement times.
func (s *memSource) latencies() []time.Duration {
	var out []time.Duration
	for i := range s.acked {
		if !s.acked[i].IsZero() {
			out = append(out, s.acked[i].Sub(s.out[i]))
		}
	}
	slices.Sort(out)
	return out
}

func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(math.Ceil(q*float64(len(d))))-1)]
}

// nullSink accepts every change at once (the sink is not what is measured),
// or holds them while stalled.
type nullSink struct {
	changes atomic.Int64
	stall   chan struct{} // non-nil: Apply waits until it is closed
	entered atomic.Int64
}

func (s *nullSink) Apply(ctx context.Context, chs []domain.Change) ([]domain.Outcome, error) {
	s.entered.Add(1)
	if s.stall != nil {
		select {
		case <-s.stall:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	s.changes.Add(int64(len(chs)))
	out := make([]domain.Outcome, len(chs))
	for i := range out {
		out[i] = domain.Applied
	}
	return out, nil
}

func (s *nullSink) IsDenied(context.Context, string) (bool, error) { return false, nil }

type failDLQ struct {
	n    atomic.Int64
	last atomic.Value // string: the last stage and reason
}

func (d *failDLQ) Send(_ context.Context, m *ingest.Message, stage ingest.Stage, reason string) error {
	d.n.Add(1)
	d.last.Store(string(stage) + ": " + reason)
	return nil
}

func benchDecode(b []byte) (image.Image, error) {
	img, _, err := imageprep.Decode(b, imageprep.DefaultLimits())
	return img, err
}

// benchDecodeFunc is benchDecode as the pipeline's decoder (full size, as
// these benchmarks were first recorded).
func benchDecodeFunc(_ context.Context, b []byte) (workers.Decoded, error) {
	img, err := benchDecode(b)
	return workers.Decoded{Image: img}, err
}

func loadBenchModel(b *testing.B, dir string, opt encoders.Options) *encoders.Model {
	b.Helper()
	m, err := encoders.Load(dir, opt)
	if err != nil {
		if errors.Is(err, encoders.ErrORTNotFound) {
			testutil.Unavailable(b, "ONNX Runtime library", "%v", err)
		}
		b.Fatalf("load %s: %v", dir, err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

func benchModelDir(b *testing.B) string {
	dir := os.Getenv("XMODAL_BENCH_MODEL")
	if dir == "" {
		dir = filepath.Join("..", ".cache", "models", "clip-vit-b32-random")
	}
	if _, err := os.Stat(filepath.Join(dir, "onnx", "vision_model.onnx")); err != nil {
		if _, err2 := os.Stat(filepath.Join(dir, "model.json")); err2 != nil {
			b.Skipf("no large model at %s (build it: .cache/venv/bin/python tools/build_parity_model.py --full, or set XMODAL_BENCH_MODEL)", dir)
		}
	}
	return dir
}

// stageTotals reads xmodal_stage_seconds' sums and counts from reg.
func stageTotals(reg *prometheus.Registry) map[string][2]float64 {
	out := map[string][2]float64{}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var lbl string
			for _, l := range m.GetLabel() {
				if l.GetName() == "stage" || l.GetName() == "modality" {
					lbl = l.GetValue()
				}
			}
			if h := m.GetHistogram(); h != nil && lbl != "" {
				out[mf.GetName()+"/"+lbl] = [2]float64{h.GetSampleSum(), float64(h.GetSampleCount())}
			}
		}
	}
	return out
}

// runPipeline runs cfg over src until it is exhausted and everything is
// acknowledged; it returns the wall time.
func runPipeline(b *testing.B, cfg workers.Config, src *memSource, emb workers.Embedder, deps workers.Deps) (time.Duration, *prometheus.Registry) {
	b.Helper()
	reg := prometheus.NewRegistry()
	deps.Source, deps.Embedder, deps.Registerer = src, emb, reg
	if deps.Sink == nil {
		deps.Sink = &nullSink{}
	}
	if deps.DeadLetter == nil {
		deps.DeadLetter = &failDLQ{}
	}
	if deps.Decode == nil {
		deps.Decode = benchDecodeFunc
	}
	if deps.Deny == nil {
		deps.Deny = newDenyList(b)
	}
	p, err := workers.New(cfg, deps)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := p.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	if dl := deps.DeadLetter.(*failDLQ).n.Load(); dl > 0 {
		b.Fatalf("%d posts dead-lettered in a benchmark (last: %v)", dl, deps.DeadLetter.(*failDLQ).last.Load())
	}
	return el, reg
}

// benchSink is the sink of the efficiency benchmark: a null sink, or with
// XMODAL_BENCH_SINK=embedded a fresh embedded index (bbolt, fsync per
// write, the model's binary codes), as `xmodal run` writes.
func benchSink(b *testing.B, m *encoders.Model) domain.Writer {
	b.Helper()
	if os.Getenv("XMODAL_BENCH_SINK") != "embedded" {
		return nil
	}
	coder, _, err := hash.ForModel(m.Dir(), m.Manifest().Hash, m.Version(), m.Dim())
	if err != nil {
		b.Fatal(err)
	}
	opt := embedded.Options{Path: filepath.Join(b.TempDir(), "index.db"), Dim: m.Dim(), ModelVersion: m.Version(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if coder != nil {
		opt.Coder = coder
	}
	ix, err := embedded.Open(context.Background(), opt)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ix.Close() })
	return ix
}

// ---- batching efficiency ----

// rawImagesPerSec times the model alone on preprocessed tensors, in batches
// of batch, over n images.
func rawImagesPerSec(b *testing.B, m *encoders.Model, tensors [][]float32, batch int) float64 {
	b.Helper()
	per := m.ImageTensorLen()
	ctx := context.Background()
	buf := make([]float32, 0, batch*per)
	start := time.Now()
	for i := 0; i < len(tensors); i += batch {
		j := min(i+batch, len(tensors))
		buf = buf[:0]
		for _, t := range tensors[i:j] {
			buf = append(buf, t...)
		}
		if _, err := m.EmbedPixels(ctx, buf, j-i); err != nil {
			b.Fatal(err)
		}
	}
	return float64(len(tensors)) / time.Since(start).Seconds()
}

// rawParallel times `sessions` goroutines each running batches of batch
// over their share of the tensors (a model loaded with that many sessions).
func rawParallel(b *testing.B, m *encoders.Model, tensors [][]float32, batch, sessions int) float64 {
	b.Helper()
	var wg sync.WaitGroup
	start := time.Now()
	for w := range sessions {
		wg.Go(func() {
			var mine [][]float32
			for i := w * batch; i < len(tensors); i += sessions * batch {
				mine = append(mine, tensors[i:min(i+batch, len(tensors))]...)
			}
			rawImagesPerSec(b, m, mine, batch)
		})
	}
	wg.Wait()
	return float64(len(tensors)) / time.Since(start).Seconds()
}

// BenchmarkPoolEfficiency: images/s through fetch (a local HTTP server) +
// decode + preprocess + the pool + encode, over images/s of a raw ORT session
// (one session, ORT's default threads) on the same images already
// preprocessed, at the same batch size; for the full-size ViT-B/32 (the model
// dominates) and the small demo model (the overhead dominates), with where
// the pipeline's time goes. The pipeline runs in two layouts: one session
// with ORT's default threads (the raw session's layout), and one session per
// core with one thread each and as many encoder calls at once.
func BenchmarkPoolEfficiency(b *testing.B) {
	type modelCase struct {
		name, dir string
		n         int
	}
	cases := []modelCase{{"vit-b32", "", 192}, {"demo", filepath.Join("..", "testdata", "models", "demo"), 1024}}
	for _, mc := range cases {
		b.Run(mc.name, func(b *testing.B) {
			if mc.dir == "" {
				mc.dir = benchModelDir(b)
			}
			const batch = 32
			cores := runtime.GOMAXPROCS(0)
			m := loadBenchModel(b, mc.dir, encoders.Options{})
			mPer := loadBenchModel(b, mc.dir, encoders.Options{Sessions: cores, IntraOpThreads: 1})
			jpgs := benchJPEGs(min(mc.n, 256))
			srv := imageServer(b, jpgs)
			fetch, err := media.New(media.Config{AllowPrivate: []string{"127.0.0.1/32"}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { fetch.Close() })
			// The raw session's input: the same images, decoded and
			// preprocessed before the clock starts.
			tensors := make([][]float32, mc.n)
			for i := range tensors {
				img, err := benchDecode(jpgs[i%len(jpgs)])
				if err != nil {
					b.Fatal(err)
				}
				tensors[i] = make([]float32, m.ImageTensorLen())
				m.PreprocessImage(img, tensors[i])
			}
			rawImagesPerSec(b, m, tensors[:batch], batch) // warm-up
			rawParallel(b, mPer, tensors[:cores*batch], batch, cores)
			layouts := []struct {
				name     string
				m        *encoders.Model
				encoders int
			}{
				{"1 session x default threads", m, 1},
				{fmt.Sprintf("%d sessions x 1 thread", cores), mPer, cores},
			}
			rounds := 3
			if v, err := strconv.Atoi(os.Getenv("XMODAL_BENCH_ROUNDS")); err == nil && v > 0 {
				rounds = v
			}
			for range b.N {
				fmt.Printf("\n%s (%s), %d images 640x480 JPEG by URL, batch %d, GOMAXPROCS %d, %d rounds:\n", mc.name, m.Version(), mc.n, batch, cores, rounds)
				// Raw and pipeline runs alternate, and each pipeline run is
				// compared with the mean of the raw runs just before and just
				// after it, so that a change in the machine's load between
				// runs shows and mostly cancels; the median round is reported.
				raws := []float64{rawImagesPerSec(b, m, tensors, batch)}
				effs := make([][]float64, len(layouts))
				var rawPer []float64
				var lastRegs []*prometheus.Registry
				var lastEls []time.Duration
				var lastPipes []float64
				for r := range rounds {
					var pipes []float64
					var regs []*prometheus.Registry
					var els []time.Duration
					for _, l := range layouts {
						src := newMemSource(mc.n, func(i int) []byte {
							return benchPost(fmt.Sprint("p", i), "", nil, fmt.Sprintf("%s/i/%d.jpg", srv.URL, i%len(jpgs)))
						})
						el, reg := runPipeline(b, workers.Config{BatchSize: batch, EncodeBatch: batch, Encoders: l.encoders, FetchWait: time.Millisecond},
							src, l.m, workers.Deps{Fetcher: fetch, Sink: benchSink(b, l.m)})
						pipes = append(pipes, float64(mc.n)/el.Seconds())
						regs, els = append(regs, reg), append(els, el)
					}
					rawPer = append(rawPer, rawParallel(b, mPer, tensors, batch, cores))
					raws = append(raws, rawImagesPerSec(b, m, tensors, batch))
					raw := (raws[r] + raws[r+1]) / 2
					fmt.Printf("  round %d: raw session %.1f -> %.1f images/s;", r+1, raws[r], raws[r+1])
					for i, l := range layouts {
						effs[i] = append(effs[i], pipes[i]/raw)
						fmt.Printf(" pipeline (%s) %.1f images/s = %.3f;", l.name, pipes[i], pipes[i]/raw)
					}
					fmt.Printf(" raw %d sessions x 1 thread %.1f images/s\n", cores, rawPer[r])
					lastRegs, lastEls, lastPipes = regs, els, pipes
				}
				median := func(xs []float64) float64 {
					ys := slices.Clone(xs)
					slices.Sort(ys)
					return ys[len(ys)/2]
				}
				fmt.Printf("  raw ORT session (1 session, default threads) on preprocessed tensors: median %.1f images/s over %d runs\n", median(raws), len(raws))
				fmt.Printf("  raw, %d sessions x 1 thread in parallel: median %.1f images/s\n", cores, median(rawPer))
				best := 0.0
				for i, l := range layouts {
					e := median(effs[i])
					best = max(best, e)
					fmt.Printf("  batching efficiency, pipeline %s: median %.3f (rounds %v)\n", l.name, e, effs[i])
				}
				for i, l := range layouts {
					st := stageTotals(lastRegs[i])
					fmt.Printf("  last round, pipeline %s, %.1f images/s; where its time goes (sums over calls; stages overlap, so a sum can exceed the %.2fs wall):\n",
						l.name, lastPipes[i], lastEls[i].Seconds())
					for _, k := range []string{"xmodal_stage_seconds/fetch", "xmodal_stage_seconds/decode", "xmodal_stage_seconds/preprocess",
						"xmodal_stage_seconds/encode_image", "xmodal_stage_seconds/sink", "xmodal_encode_queue_seconds/image"} {
						v := st[k]
						if v[1] == 0 {
							continue
						}
						fmt.Printf("      %-36s %8.2fs in %5.0f calls, %9.3f ms/call\n", k, v[0], v[1], 1000*v[0]/v[1])
					}
					if v := st["xmodal_encode_batch_inputs/image"]; v[1] > 0 {
						fmt.Printf("      mean model batch: %.1f images\n", v[0]/v[1])
					}
				}
				b.ReportMetric(best, "efficiency")
			}
		})
	}
}

// ---- throughput vs batch size and max-wait ----

func mixedPost(jpgs [][]byte) func(int) []byte {
	return func(i int) []byte {
		id := fmt.Sprint("p", i)
		text := fmt.Sprintf("post %d about #topic%d with @user%d and a few more words", i, i%17, i%11)
		switch i % 3 {
		case 0:
			return benchPost(id, text, nil, "")
		case 1:
			return benchPost(id, "", jpgs[i%len(jpgs)], "")
		default:
			return benchPost(id, text, jpgs[i%len(jpgs)], "")
		}
	}
}

// BenchmarkPoolBatchSize: posts/s of the demo model on a backlog for model
// batches of 1 to 64: text-only posts (the model call dominates) and mixed
// posts (a third text, a third image, a third both; 640x480 JPEGs inline,
// where image decoding dominates).
func BenchmarkPoolBatchSize(b *testing.B) {
	m := loadBenchModel(b, filepath.Join("..", "testdata", "models", "demo"), encoders.Options{})
	jpgs := benchJPEGs(64)
	mixed := mixedPost(jpgs)
	workloads := []struct {
		name string
		n    int
		gen  func(int) []byte
	}{
		{"text", 8192, func(i int) []byte {
			return benchPost(fmt.Sprint("p", i), fmt.Sprintf("post %d about #topic%d with @user%d and a few more words", i, i%17, i%11), nil, "")
		}},
		{"mixed", 1536, mixed},
	}
	for range b.N {
		for _, w := range workloads {
			fmt.Printf("\ndemo model, %d %s posts, backlog; GOMAXPROCS %d\n", w.n, w.name, runtime.GOMAXPROCS(0))
			fmt.Printf("%12s %10s %10s %14s %14s %12s\n", "encode_batch", "posts/s", "inputs/s", "mean text bat", "mean img bat", "p99 queue ms")
			for _, bs := range []int{1, 4, 16, 32, 64} {
				src := newMemSource(w.n, w.gen)
				el, reg := runPipeline(b, workers.Config{BatchSize: 64, EncodeBatch: bs, MaxInFlight: 256, FetchWait: time.Millisecond},
					src, m, workers.Deps{})
				st := stageTotals(reg)
				tb, ib := st["xmodal_encode_batch_inputs/text"], st["xmodal_encode_batch_inputs/image"]
				inputs := tb[0] + ib[0]
				fmt.Printf("%12d %10.1f %10.1f %14.1f %14.1f %12.1f\n", bs, float64(w.n)/el.Seconds(), inputs/el.Seconds(),
					tb[0]/max(tb[1], 1), ib[0]/max(ib[1], 1), 1000*histQuantile(reg, "xmodal_encode_queue_seconds", 0.99))
			}
		}
	}
}

// histQuantile estimates a quantile of a histogram (all label values merged)
// by linear interpolation in its buckets.
func histQuantile(reg *prometheus.Registry, name string, q float64) float64 {
	mfs, _ := reg.Gather()
	var bounds []float64
	counts := map[float64]uint64{}
	var total uint64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			total += h.GetSampleCount()
			for _, bk := range h.GetBucket() {
				if _, ok := counts[bk.GetUpperBound()]; !ok {
					bounds = append(bounds, bk.GetUpperBound())
				}
				counts[bk.GetUpperBound()] += bk.GetCumulativeCount()
			}
		}
	}
	if total == 0 {
		return 0
	}
	slices.Sort(bounds)
	rank := q * float64(total)
	prevB, prevC := 0.0, 0.0
	for _, ub := range bounds {
		c := float64(counts[ub])
		if c >= rank {
			return prevB + (ub-prevB)*(rank-prevC)/max(c-prevC, 1)
		}
		prevB, prevC = ub, c
	}
	return bounds[len(bounds)-1]
}

// BenchmarkPoolMaxWait: an open-loop load (posts arrive at a fixed rate, half
// what the backlog run sustains) through the demo model for several
// encode_wait values: throughput, end-to-end latency (arrival to
// acknowledgement) and model batch sizes. The latency batching adds is the
// queue time before the model call.
func BenchmarkPoolMaxWait(b *testing.B) {
	m := loadBenchModel(b, filepath.Join("..", "testdata", "models", "demo"), encoders.Options{})
	jpgs := benchJPEGs(64)
	// Capacity first, on a backlog at the default settings.
	const probe = 768
	src := newMemSource(probe, mixedPost(jpgs))
	el, _ := runPipeline(b, workers.Config{BatchSize: 64, MaxInFlight: 256, FetchWait: time.Millisecond}, src, m, workers.Deps{})
	capacity := float64(probe) / el.Seconds()
	rate := capacity / 2
	dur := 8 * time.Second
	n := int(rate * dur.Seconds())
	fmt.Printf("\ndemo model, mixed posts; backlog capacity %.1f posts/s; open loop at %.1f posts/s for %v (%d posts); GOMAXPROCS %d\n",
		capacity, rate, dur, n, runtime.GOMAXPROCS(0))
	fmt.Printf("%12s %10s %10s %10s %14s %14s %14s\n", "encode_wait", "posts/s", "p50 ms", "p99 ms", "p99 queue ms", "mean text bat", "mean img bat")
	for range b.N {
		for _, w := range []time.Duration{time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond} {
			src := newMemSource(n, mixedPost(jpgs))
			t0 := time.Now().Add(20 * time.Millisecond)
			src.arrival = func(i int) time.Time { return t0.Add(time.Duration(float64(i) / rate * float64(time.Second))) }
			el, reg := runPipeline(b, workers.Config{BatchSize: 64, EncodeWait: w, MaxInFlight: 256, FetchWait: time.Millisecond},
				src, m, workers.Deps{})
			lat := src.latencies()
			st := stageTotals(reg)
			tb, ib := st["xmodal_encode_batch_inputs/text"], st["xmodal_encode_batch_inputs/image"]
			fmt.Printf("%12v %10.1f %10.1f %10.1f %14.2f %14.1f %14.1f\n", w, float64(n)/el.Seconds(),
				ms(pct(lat, 0.5)), ms(pct(lat, 0.99)), 1000*histQuantile(reg, "xmodal_encode_queue_seconds", 0.99),
				tb[0]/max(tb[1], 1), ib[0]/max(ib[1], 1))
		}
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ---- memory with the sink stalled ----

func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// BenchmarkPoolStalledSink: an endless supply of image posts (inline 640x480
// JPEGs) while the sink stalls for XMODAL_BENCH_STALL (default 60s): how many
// posts the pipeline takes in and how far its resident memory grows, then
// how fast it drains once the sink returns.
func BenchmarkPoolStalledSink(b *testing.B) {
	stall := 60 * time.Second
	if v := os.Getenv("XMODAL_BENCH_STALL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("XMODAL_BENCH_STALL: %v", err)
		}
		stall = d
	}
	m := loadBenchModel(b, filepath.Join("..", "testdata", "models", "demo"), encoders.Options{})
	jpgs := benchJPEGs(64)
	for range b.N {
		for _, inflight := range []int{128, 1024} {
			src := newMemSource(-1, func(i int) []byte {
				return benchPost(fmt.Sprint("p", i), fmt.Sprint("caption ", i), jpgs[i%len(jpgs)], "")
			})
			sink := &nullSink{stall: make(chan struct{})}
			reg := prometheus.NewRegistry()
			p, err := workers.New(workers.Config{BatchSize: 32, MaxInFlight: inflight, FetchWait: time.Millisecond},
				workers.Deps{Source: src, DeadLetter: &failDLQ{}, Sink: sink, Deny: newDenyList(b), Embedder: m, Decode: benchDecodeFunc, Registerer: reg})
			if err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			base := rssBytes()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- p.Run(ctx) }()
			var peak atomic.Int64
			stopSampling := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				t := time.NewTicker(50 * time.Millisecond)
				defer t.Stop()
				for {
					select {
					case <-stopSampling:
						return
					case <-t.C:
						if r := rssBytes(); r > peak.Load() {
							peak.Store(r)
						}
					}
				}
			})
			time.Sleep(stall)
			taken := src.handedOut()
			close(sink.stall)
			before := src.ackN.Load()
			time.Sleep(3 * time.Second)
			drained := src.ackN.Load() - before
			close(stopSampling)
			wg.Wait()
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				b.Fatal(err)
			}
			fmt.Printf("\nsink stalled %v under an endless image load (max_inflight %d): %d posts taken from the source; RSS %.0f MiB before, peak %.0f MiB (+%.0f MiB); %d posts acknowledged in the 3 s after the sink returned\n",
				stall, inflight, taken, float64(base)/(1<<20), float64(peak.Load())/(1<<20), float64(peak.Load()-base)/(1<<20), drained)
			b.ReportMetric(float64(peak.Load()-base)/(1<<20), "MiB-growth")
		}
	}
}
