package deploy

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/milvus-io/milvus/client/v2/entity"
	"github.com/milvus-io/milvus/client/v2/milvusclient"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders"
	"github.com/xmodal/xmodal/internal/denylist"
	"github.com/xmodal/xmodal/internal/natsserver"
	"github.com/xmodal/xmodal/internal/redisserver"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
	"github.com/xmodal/xmodal/sink/milvus"
)

// BenchmarkServeVsDirectMilvus measures search latency on Milvus as a client
// sees it, in interleaved rounds on the same collection:
//   - direct: the Milvus Go client's Search with the vector, k, filter
//     (modality), output fields, search parameters and consistency level the
//     query service uses;
//   - serve: a vector search request over NATS to the query service (deny-list
//     sync, the Milvus search, hit filtering, the reply), each vector new so
//     nothing is cached;
//   - cached: the same request repeated, answered from Redis.
//
// at k = 10 and k = 100 over XMODAL_BENCH_RECORDS (default 20,000) text
// records of the bundled model's dimension.
//
//	go test -run '^$' -bench ServeVsDirectMilvus -benchtime 1x -timeout 60m ./deploy/
func BenchmarkServeVsDirectMilvus(b *testing.B) {
	records := 20000
	if s, err := strconv.Atoi(os.Getenv("XMODAL_BENCH_RECORDS")); err == nil && s > 0 {
		records = s
	}
	const rounds, perRound = 5, 100
	ctx := context.Background()
	model, err := encoders.Load(filepath.Join(testutil.MustRepoRoot(b), "testdata", "models", "demo"), encoders.Options{})
	if err != nil {
		b.Fatalf("the bundled model (needs ONNX Runtime: scripts/ort-setup.sh): %v", err)
	}
	defer model.Close()
	dim := model.Dim()
	addr := startTestMilvus(b)
	ix, err := milvus.Open(ctx, milvus.Options{Address: addr, Collection: "qbench_" + strconv.FormatInt(time.Now().Unix()%100000, 10),
		Dim: dim, ModelVersion: model.Version(), CodeBits: -1, Consistency: "Bounded"})
	if err != nil {
		b.Fatal(err)
	}
	defer ix.Close()
	r := rand.New(rand.NewPCG(3, 4))
	unit := func() []float32 {
		v := make([]float32, dim)
		var s float64
		for i := range v {
			v[i] = float32(r.NormFloat64())
			s += float64(v[i]) * float64(v[i])
		}
		for i := range v {
			v[i] /= float32(math.Sqrt(s))
		}
		return v
	}
	for from := 0; from < records; from += 500 {
		var chs []domain.Change
		for i := from; i < min(from+500, records); i++ {
			id := fmt.Sprintf("q%07d", i)
			chs = append(chs, domain.Change{PostID: id, Records: []domain.Record{{PK: domain.PrimaryKey(id, domain.ModalityText), PostID: id,
				Modality: domain.ModalityText, Author: "u" + strconv.Itoa(i%100), CreatedAt: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
				ModelVersion: model.Version(), Text: "a text post of the benchmark " + id, Vector: unit()}}})
		}
		if _, err := ix.Apply(ctx, chs); err != nil {
			b.Fatal(err)
		}
	}
	ns, err := natsserver.Start(natsserver.Options{Listen: "127.0.0.1:0", StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Shutdown()
	nc, js := connectJS(b, ns.ClientURL())
	deny, err := denylist.Open(ctx, js, denylist.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer deny.Close()
	rs := testutil.StartRedis(b, redisserver.Options{})
	rc, err := query.NewRedisCache(query.RedisOptions{Addr: rs.Addr, TTL: time.Hour, Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	svc, err := query.New(query.Config{Timeout: 30 * time.Second, Concurrency: 64},
		query.Deps{Index: ix, Encoder: model, Decode: func(context.Context, []byte) (query.DecodedImage, error) {
			return query.DecodedImage{}, fmt.Errorf("no images here")
		}, Deny: deny, Cache: rc})
	if err != nil {
		b.Fatal(err)
	}
	if err := svc.Start(nc); err != nil {
		b.Fatal(err)
	}
	defer svc.Stop()
	cl := client.New(nc)
	mc, err := milvusclient.New(ctx, &milvusclient.ClientConfig{Address: addr})
	if err != nil {
		b.Fatal(err)
	}
	defer mc.Close(ctx)
	expr := milvus.FilterExpr(domain.ModalityText, domain.Filter{})
	output := []string{"post_id", "modality", "author", "created_at", "labels", "text", "media_url", "thumbnail"}
	direct := func(v []float32, k int) error {
		_, err := mc.Search(ctx, milvusclient.NewSearchOption(ix.Collection(), k, []entity.Vector{entity.FloatVector(v)}).
			WithANNSField("vector").WithFilter(expr).WithOutputFields(output...).WithConsistencyLevel(entity.ClBounded).
			WithAnnParam(searchParam{"nprobe": 16}))
		return err
	}
	serve := func(v []float32, k int) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		res, err := cl.Search(ctx, &query.SearchRequest{Vector: v, Target: "text", K: k, Plan: "ann"})
		return err == nil && res.Cached, err
	}
	time1 := func(f func() error) time.Duration {
		s := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		return time.Since(s)
	}
	for range b.N {
		for _, k := range []int{10, 100} {
			var dl, sl, hl, syl, rgl []time.Duration
			var ratios []float64
			fixed := unit()
			if _, err := serve(fixed, k); err != nil { // warm the cache
				b.Fatal(err)
			}
			for range rounds {
				var d, s, c, sy, rg []time.Duration
				for range perRound {
					v := unit()
					d = append(d, time1(func() error { return direct(v, k) }))
					s = append(s, time1(func() error { _, err := serve(v, k); return err }))
					c = append(c, time1(func() error {
						hit, err := serve(fixed, k)
						if err == nil && !hit {
							err = fmt.Errorf("a repeated request missed the cache")
						}
						return err
					}))
					// The parts of a cached reply, timed alone: the deny-list's
					// catch-up (a JetStream round trip) and a Redis GET of the
					// entry (which the near cache spares a hot reply).
					sy = append(sy, time1(func() error { return deny.Sync(ctx) }))
					rg = append(rg, time1(func() error { // Redis itself, past the near cache
						key := "xmodal:q:" + deny.Generation() + ":" + svc.CacheKey(&query.SearchRequest{Vector: fixed, Target: "text", K: k, Plan: "ann"})
						return rc.Client().Get(ctx, key).Err()
					}))
				}
				ratios = append(ratios, float64(pct(s, 50))/float64(pct(d, 50)))
				dl, sl, hl = append(dl, d...), append(sl, s...), append(hl, c...)
				syl, rgl = append(syl, sy...), append(rgl, rg...)
			}
			slices.Sort(ratios)
			fmt.Printf("k=%d over %d records (%d rounds x %d): direct Milvus p50 %.2f ms p99 %.2f ms; serve uncached p50 %.2f ms p99 %.2f ms; cached p50 %.3f ms p99 %.3f ms; serve/direct p50 ratio median %.2f (min %.2f, max %.2f)\n",
				k, records, rounds, perRound, ms(pct(dl, 50)), ms(pct(dl, 99)), ms(pct(sl, 50)), ms(pct(sl, 99)), ms(pct(hl, 50)), ms(pct(hl, 99)),
				ratios[len(ratios)/2], ratios[0], ratios[len(ratios)-1])
			fmt.Printf("  parts of a cached reply, timed alone: deny-list sync p50 %.3f ms p99 %.3f ms; Redis GET p50 %.3f ms p99 %.3f ms\n",
				ms(pct(syl, 50)), ms(pct(syl, 99)), ms(pct(rgl, 50)), ms(pct(rgl, 99)))
			b.ReportMetric(ratios[len(ratios)/2], fmt.Sprintf("ratio-p50-k%d", k))
			b.ReportMetric(ms(pct(hl, 99)), fmt.Sprintf("cached-p99-ms-k%d", k))
		}
	}
}

type searchParam map[string]any

func (p searchParam) Params() map[string]any { return p }

func pct(xs []time.Duration, p int) time.Duration {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func connectJS(t testing.TB, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}
