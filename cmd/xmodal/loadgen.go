package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders"
	"github.com/xmodal/xmodal/encoders/hash"
	"github.com/xmodal/xmodal/internal/natsserver"
	"github.com/xmodal/xmodal/internal/redisserver"
	"github.com/xmodal/xmodal/internal/vecmath"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
	"github.com/xmodal/xmodal/sink/embedded"
)

// loadgenOpts bound a load run: every cell stops after Duration or Requests,
// whichever comes first, and all traffic stays on 127.0.0.1.
type loadgenOpts struct {
	Records     int
	K           int
	Concurrency []int
	Modes       []string
	Duration    time.Duration
	Requests    int
	Texts       int
	Bits        int
	Seed        uint64
	Candidates  int
	CPUProfile  string
}

func loadgenCmd() *cobra.Command {
	o := loadgenOpts{}
	var conc, modes string
	c := &cobra.Command{
		Use:   "loadgen",
		Short: "Measure query latency and throughput over NATS on loopback (self-contained, bounded)",
		Long: `Starts an embedded NATS server, an embedded index in a temporary folder filled
with --records random unit vectors (image records, binary codes from a SimHash
coder), the model, and the query service; then, for each mode and each
concurrency, sends vector search requests through the Go client until
--duration or --requests, whichever comes first, and prints p50/p99 latency
and throughput. Modes:
  cached-lru    the same 64 requests over and over, answered by the in-process LRU
  cached-redis  the same, answered by Redis (starts Debian's redis-server on 127.0.0.1)
  exact         a fresh random vector per request, no cache: brute-force cosine
  hybrid        a fresh random vector per request, no cache: Hamming top-C, exact re-rank
Text encoding (the model's text tower, one text at a time) is timed separately.`,
		Example: `  xmodal loadgen --records 100000 --duration 5s
  scripts/bench-record.sh query-100k go run ./cmd/xmodal loadgen --records 100000`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd.Flags(), os.LookupEnv)
			if err != nil {
				return err
			}
			for _, s := range strings.Split(conc, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil || n < 1 || n > 1024 {
					return fmt.Errorf("--concurrency %q: want numbers in 1..1024", s)
				}
				o.Concurrency = append(o.Concurrency, n)
			}
			o.Modes = strings.Split(modes, ",")
			for _, m := range o.Modes {
				if !slices.Contains([]string{"cached-lru", "cached-redis", "exact", "hybrid"}, m) {
					return fmt.Errorf("--modes: unknown mode %q", m)
				}
			}
			if o.Records < 1 || o.Records > 10_000_000 || o.Duration <= 0 || o.Duration > 10*time.Minute || o.Requests < 1 {
				return fmt.Errorf("--records 1..10M, --duration up to 10m and --requests >= 1")
			}
			if o.Candidates < 0 || o.Candidates > query.MaxCandidates {
				return fmt.Errorf("--candidates %d: want 0 (the index default) to %d", o.Candidates, query.MaxCandidates)
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			return runLoadgen(ctx, cfg, o, cmd.OutOrStdout())
		},
	}
	f := c.Flags()
	f.IntVar(&o.Records, "records", 100000, "records in the index")
	f.IntVarP(&o.K, "k", "k", 10, "hits per request")
	f.StringVar(&conc, "concurrency", "1,8,64", "client concurrencies to measure")
	f.StringVar(&modes, "modes", "cached-lru,cached-redis,exact,hybrid", "modes to measure (see above)")
	f.DurationVar(&o.Duration, "duration", 5*time.Second, "longest run of one cell")
	f.IntVar(&o.Requests, "requests", 20000, "most requests of one cell")
	f.IntVar(&o.Texts, "texts", 200, "texts to encode for the text encoding timing (0: skip)")
	f.IntVar(&o.Bits, "bits", 64, "bits of the SimHash codes (hybrid plan)")
	f.Uint64Var(&o.Seed, "seed", 1, "random seed of the records and queries")
	f.IntVar(&o.Candidates, "candidates", 0, "C of the hybrid plan, sent with each hybrid request (0: the index default, embedded.DefaultCandidates of --records)")
	f.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the measured cells (not the loading) to this file")
	return c
}

func runLoadgen(ctx context.Context, cfg *Config, o loadgenOpts, out io.Writer) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir, err := os.MkdirTemp("", "xmodal-loadgen-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	mdir, err := findModel(cfg.Model)
	if err != nil {
		return err
	}
	model, err := encoders.Load(mdir, encoders.Options{LibPath: cfg.ORT.Lib, IntraOpThreads: cfg.ORT.IntraOpThreads,
		InterOpThreads: cfg.ORT.InterOpThreads, Provider: cfg.ORT.Provider, Logger: log})
	if err != nil {
		return err
	}
	defer model.Close()
	dec, err := imageDecoder(cfg, model)
	if err != nil {
		return err
	}
	dim := model.Dim()
	coder, err := hash.NewSimHash(model.Version(), dim, o.Bits, o.Seed)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "model %s (dim %d), %d image records, k=%d, SimHash %d bits, GOMAXPROCS %d, %s\n",
		model.Version(), dim, o.Records, o.K, o.Bits, runtime.GOMAXPROCS(0), runtime.Version())
	if slices.Contains(o.Modes, "hybrid") {
		if o.Candidates > 0 {
			fmt.Fprintf(out, "hybrid: C = %d candidates re-ranked (--candidates, %.2f%% of the records)\n", o.Candidates, 100*float64(o.Candidates)/float64(o.Records))
		} else {
			c := embedded.DefaultCandidates(o.Records)
			fmt.Fprintf(out, "hybrid: C = %d candidates re-ranked (the index default, DefaultCandidates(%d); %.2f%% of the records)\n",
				c, o.Records, 100*float64(c)/float64(o.Records))
		}
	}

	// Text encoding, one text per call, as a query does.
	if o.Texts > 0 {
		var lat []time.Duration
		for i := range o.Texts {
			start := time.Now()
			if _, err := model.EmbedTexts(ctx, []string{fmt.Sprintf("query number %d: a red star next to a blue circle at sunset", i)}); err != nil {
				return err
			}
			lat = append(lat, time.Since(start))
		}
		p50, p99 := percentiles(lat)
		fmt.Fprintf(out, "text encoding (%d texts, one per call): p50 %.3f ms, p99 %.3f ms\n", o.Texts, ms(p50), ms(p99))
	}

	// The index.
	start := time.Now()
	ix, err := embedded.Open(ctx, embedded.Options{Path: dir + "/index.db", Dim: dim, ModelVersion: model.Version(), Logger: log, Coder: coder})
	if err != nil {
		return err
	}
	defer ix.Close()
	r := rand.New(rand.NewPCG(o.Seed, 7))
	const batch = 5000
	for i := 0; i < o.Records; i += batch {
		chs := make([]domain.Change, 0, batch)
		for j := i; j < min(i+batch, o.Records); j++ {
			id := "p" + strconv.Itoa(j)
			chs = append(chs, domain.Change{PostID: id, Records: []domain.Record{{PK: domain.PrimaryKey(id, domain.ModalityImage),
				PostID: id, Modality: domain.ModalityImage, Author: "a" + strconv.Itoa(j%1000),
				CreatedAt: time.Unix(1.7e9+int64(j), 0).UTC(), Vector: vecmath.RandomUnit(r, dim), Text: "record " + id}}})
		}
		if _, err := ix.Apply(ctx, chs); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "loaded %d records in %s\n", o.Records, time.Since(start).Round(time.Millisecond))

	ns, err := natsserver.Start(natsserver.Options{Listen: "127.0.0.1:0"})
	if err != nil {
		return err
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	cl := client.New(nc)

	var rs *redisserver.Server
	defer func() {
		if rs != nil {
			rs.Close()
		}
	}()
	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\tconcurrency\trequests\terrors\tp50 ms\tp99 ms\treq/s\tcached\t")
	for _, mode := range o.Modes {
		var cache query.Cache
		plan := "exact"
		switch mode {
		case "cached-lru":
			cache = query.NewLRUCache(10000, time.Hour)
		case "cached-redis":
			if rs == nil {
				if rs, err = redisserver.Start(redisserver.Options{}); err != nil {
					return err
				}
			}
			rc, err := query.NewRedisCache(query.RedisOptions{Addr: rs.Addr, TTL: time.Hour, Prefix: "xmodal-loadgen:"})
			if err != nil {
				return err
			}
			defer rc.Close()
			cache = rc
		case "hybrid":
			plan = "hybrid"
		}
		svc, err := query.New(query.Config{Timeout: 30 * time.Second, Concurrency: 256},
			query.Deps{Index: ix, Encoder: model, Decode: queryDecode(dec), DecodeMode: string(dec.Mode()), Logger: log, Cache: cache, Coder: coder})
		if err != nil {
			return err
		}
		if err := svc.Start(nc); err != nil {
			return err
		}
		nc.Flush()
		qr := rand.New(rand.NewPCG(o.Seed, 99))
		fixed := make([][]float32, 64)
		for i := range fixed {
			fixed[i] = vecmath.RandomUnit(qr, dim)
		}
		var mu sync.Mutex
		next := func(i int) []float32 {
			if strings.HasPrefix(mode, "cached") {
				return fixed[i%len(fixed)]
			}
			mu.Lock()
			defer mu.Unlock()
			return vecmath.RandomUnit(qr, dim)
		}
		if strings.HasPrefix(mode, "cached") { // warm the cache
			for i := range fixed {
				if _, err := cl.Search(ctx, &query.SearchRequest{Vector: fixed[i], Target: "image", K: o.K, Plan: plan}); err != nil {
					return fmt.Errorf("%s warm-up: %w", mode, err)
				}
			}
		}
		for _, c := range o.Concurrency {
			res := runCell(ctx, cl, o, c, plan, next)
			p50, p99 := percentiles(res.lat)
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.3f\t%.3f\t%.0f\t%d\t\n", mode, c, len(res.lat), res.errs, ms(p50), ms(p99),
				float64(len(res.lat))/res.wall.Seconds(), res.cached)
			if res.firstErr != nil {
				fmt.Fprintf(tw, "\t\t\t\t\t\t\tfirst error: %v\t\n", res.firstErr)
			}
			if ctx.Err() != nil {
				break
			}
		}
		svc.Stop()
		time.Sleep(200 * time.Millisecond) // requests the clients gave up on finish
	}
	return tw.Flush()
}

type cellResult struct {
	lat      []time.Duration
	errs     int
	cached   int
	wall     time.Duration
	firstErr error
}

func runCell(ctx context.Context, cl *client.Client, o loadgenOpts, conc int, plan string, next func(int) []float32) cellResult {
	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	var issued atomic.Int64
	var mu sync.Mutex
	var res cellResult
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			var lat []time.Duration
			errs, cached := 0, 0
			var first error
			for ctx.Err() == nil {
				i := int(issued.Add(1))
				if i > o.Requests {
					break
				}
				req := &query.SearchRequest{Vector: next(i), Target: "image", K: o.K, Plan: plan}
				if plan == "hybrid" {
					req.Candidates = o.Candidates
				}
				t0 := time.Now()
				r, err := cl.Search(ctx, req)
				if err != nil {
					if ctx.Err() != nil {
						break
					}
					errs++
					if first == nil {
						first = err
					}
					continue
				}
				lat = append(lat, time.Since(t0))
				if r.Cached {
					cached++
				}
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.errs += errs
			res.cached += cached
			if res.firstErr == nil {
				res.firstErr = first
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	res.wall = time.Since(start)
	return res
}

func percentiles(lat []time.Duration) (p50, p99 time.Duration) {
	if len(lat) == 0 {
		return 0, 0
	}
	slices.Sort(lat)
	return lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
