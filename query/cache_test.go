package query_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/internal/redisserver"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/sink/embedded"
)

// counter reads one series of a counter vector from reg.
func counter(t testing.TB, reg *prometheus.Registry, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func cacheCount(t testing.TB, reg *prometheus.Registry, result string) float64 {
	return counter(t, reg, "xmodal_query_cache_total", "result", result)
}

// countingEncoder counts text encodings and can be slowed down, broken or
// given a hook to run while it encodes.
type countingEncoder struct {
	query.Encoder
	texts atomic.Int64
	delay time.Duration
	fail  atomic.Bool
	hook  func()
}

func (e *countingEncoder) EmbedTexts(ctx context.Context, texts []string) ([][]float32, error) {
	e.texts.Add(1)
	if e.hook != nil {
		e.hook()
	}
	if e.fail.Load() {
		return nil, errors.New("the model is on fire")
	}
	if e.delay > 0 {
		time.Sleep(e.delay)
	}
	return e.Encoder.EmbedTexts(ctx, texts)
}

func (e *countingEncoder) EmbedImages(ctx context.Context, imgs []image.Image) ([][]float32, error) {
	return e.Encoder.EmbedImages(ctx, imgs)
}

// failingIndex breaks searches on demand (a dependency that is down).
type failingIndex struct {
	domain.Searcher
	fail atomic.Bool
}

func (f *failingIndex) Search(ctx context.Context, q domain.VectorQuery) ([]domain.Hit, error) {
	if f.fail.Load() {
		return nil, errors.New("connection refused")
	}
	return f.Searcher.Search(ctx, q)
}

type cachedStack struct {
	*stack
	reg *prometheus.Registry
	enc *countingEncoder
	rc  *query.RedisCache
}

// newCachedStack starts the stack with cache c (nil: a Redis cache on rs).
func newCachedStack(t *testing.T, cfg query.Config, c query.Cache, rs *redisserver.Server, ttl time.Duration) *cachedStack {
	t.Helper()
	cs := &cachedStack{reg: prometheus.NewRegistry()}
	if c == nil {
		// A generous timeout: a loaded CI machine must not turn hits into bypasses.
		rc, err := query.NewRedisCache(query.RedisOptions{Addr: rs.Addr, TTL: ttl, Timeout: time.Second, RetryAfter: 200 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rc.Close() })
		cs.rc, c = rc, rc
	}
	cs.stack = newStackWith(t, cfg, nil, func(d *query.Deps) {
		cs.enc = &countingEncoder{Encoder: d.Encoder}
		d.Encoder = cs.enc
		d.Cache = c
		d.Registerer = cs.reg
	})
	return cs
}

func (cs *cachedStack) search(t *testing.T, r query.SearchRequest) *query.SearchResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := cs.cl.Search(ctx, &r)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func postIDs(hits []domain.Hit) []string {
	var out []string
	for _, h := range hits {
		out = append(out, h.PostID)
	}
	return out
}

func TestCacheLRUHitMiss(t *testing.T) {
	cs := newCachedStack(t, query.Config{}, query.NewLRUCache(100, time.Minute), nil, 0)
	req := query.SearchRequest{Text: cs.texts[0], Target: "text", K: 3}
	first := cs.search(t, req)
	if first.Cached {
		t.Fatal("first request came from the cache")
	}
	second := cs.search(t, req)
	if !second.Cached || !slices.Equal(postIDs(first.Hits), postIDs(second.Hits)) {
		t.Fatalf("second request: cached=%v hits %v, want cached and %v", second.Cached, postIDs(second.Hits), postIDs(first.Hits))
	}
	// Normalisation: extra whitespace, default plan spelled out, same key.
	spaced := req
	spaced.Text = "  " + cs.texts[0] + "  "
	spaced.Plan = "exact"
	if !cs.search(t, spaced).Cached {
		t.Error("the same request with extra whitespace and plan=exact missed")
	}
	other := req
	other.K = 4
	if cs.search(t, other).Cached {
		t.Error("a request with another k hit the cache")
	}
	if n := cs.enc.texts.Load(); n != 2 {
		t.Errorf("encoded %d texts, want 2 (one per distinct request)", n)
	}
	if hit, miss := cacheCount(t, cs.reg, query.CacheHit), cacheCount(t, cs.reg, query.CacheMiss); hit != 2 || miss != 2 {
		t.Errorf("metrics: %v hits, %v misses; want 2 and 2", hit, miss)
	}
}

func TestCacheRedisHitMissTTL(t *testing.T) {
	rs := testutil.StartRedis(t, redisserver.Options{})
	cs := newCachedStack(t, query.Config{}, nil, rs, 2*time.Second)
	ctx := context.Background()
	req := query.SearchRequest{Text: cs.texts[1], Target: "any", K: 5, Thumbnails: true}
	if cs.search(t, req).Cached {
		t.Fatal("first request came from the cache")
	}
	res := cs.search(t, req)
	if !res.Cached || len(res.Hits) == 0 || res.Hits[0].PostID != "t1" {
		t.Fatalf("second request: cached=%v hits %v", res.Cached, postIDs(res.Hits))
	}
	keys, err := cs.rc.Client().Keys(ctx, "xmodal:q:*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("redis keys %v (%v), want one xmodal:q:* entry", keys, err)
	}
	ttl, _ := cs.rc.Client().PTTL(ctx, keys[0]).Result()
	if ttl <= 0 || ttl > 2*time.Second {
		t.Errorf("entry TTL %v, want (0, 2s]", ttl)
	}
	time.Sleep(2200 * time.Millisecond)
	if cs.search(t, req).Cached {
		t.Error("a request after the TTL came from the cache")
	}
	if !cs.search(t, req).Cached {
		t.Error("the re-stored entry missed")
	}
	if n := cs.enc.texts.Load(); n != 2 {
		t.Errorf("encoded %d times, want 2", n)
	}
}

func TestCacheSingleflight(t *testing.T) {
	rs := testutil.StartRedis(t, redisserver.Options{})
	cs := newCachedStack(t, query.Config{Concurrency: 32}, nil, rs, time.Minute)
	cs.enc.delay = 300 * time.Millisecond
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			_, err := cs.cl.Search(context.Background(), &query.SearchRequest{Text: "identical in-flight request", K: 3})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := cs.enc.texts.Load(); got != 1 {
		t.Errorf("%d identical concurrent requests encoded %d times, want 1", n, got)
	}
	// The others waited for the first (or, on a slow machine, came after it
	// and hit the cache).
	if c, h := cacheCount(t, cs.reg, query.CacheCoalesced), cacheCount(t, cs.reg, query.CacheHit); c+h != n-1 || c == 0 {
		t.Errorf("coalesced %v + hits %v, want %d with some coalesced", c, h, n-1)
	}
}

func TestCacheRedisKilledMidTest(t *testing.T) {
	rs := testutil.StartRedis(t, redisserver.Options{})
	cs := newCachedStack(t, query.Config{}, nil, rs, time.Minute)
	req := query.SearchRequest{Text: cs.texts[2], Target: "text", K: 3}
	cs.search(t, req)
	if !cs.search(t, req).Cached {
		t.Fatal("no hit while Redis is up")
	}
	rs.Kill()
	for i := range 20 {
		start := time.Now()
		res := cs.search(t, query.SearchRequest{Text: fmt.Sprintf("%s %d", cs.texts[2], i%3), Target: "text", K: 3})
		if res.Cached || len(res.Hits) == 0 {
			t.Fatalf("with Redis down: cached=%v hits=%d", res.Cached, len(res.Hits))
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("a query took %v with Redis down", d)
		}
	}
	if b := cacheCount(t, cs.reg, query.CacheBypass); b < 20 {
		t.Errorf("bypass metric %v, want >= 20", b)
	}
	// A takedown while Redis is down; Redis comes back empty (a restart loses
	// its data). The generation lives in the deny-list, not in Redis, so
	// entries are written under the generation after the takedown, and the
	// reply lacks the post.
	if _, err := cs.cl.Delete(context.Background(), &query.DeleteRequest{PostIDs: []string{"t4"}}); err != nil {
		t.Fatal(err)
	}
	if err := rs.Restart(); err != nil {
		t.Fatal(err)
	}
	want := "xmodal:q:" + cs.deny.Generation() + ":"
	var keys []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond) // past RetryAfter
		if res := cs.search(t, req); slices.Contains(postIDs(res.Hits), "t4") {
			t.Fatalf("taken-down t4 served after the Redis restart: %v", postIDs(res.Hits))
		}
		if keys, _ = cs.rc.Client().Keys(context.Background(), "xmodal:q:*").Result(); len(keys) > 0 {
			break
		}
	}
	if len(keys) != 1 || !strings.HasPrefix(keys[0], want) {
		t.Errorf("keys in the restarted Redis %v, want one under %s*", keys, want)
	}
	if !cs.search(t, req).Cached {
		t.Error("no hit after Redis came back")
	}
}

func TestTakedownInvalidation(t *testing.T) {
	rs := testutil.StartRedis(t, redisserver.Options{})
	cs := newCachedStack(t, query.Config{}, nil, rs, time.Minute)
	ctx := context.Background()
	req := query.SearchRequest{Text: cs.texts[3], Target: "text", K: 5}
	res := cs.search(t, req)
	if res.Hits[0].PostID != "t3" || !cs.search(t, req).Cached {
		t.Fatalf("setup: %v", postIDs(res.Hits))
	}
	// 1. Admin delete: the generation moves, the next answer is fresh and lacks t3.
	del, err := cs.cl.Delete(ctx, &query.DeleteRequest{PostIDs: []string{"t3"}})
	if err != nil || del.Count != 1 || del.Deleted[0] != "t3" {
		t.Fatalf("delete: %+v %v", del, err)
	}
	res = cs.search(t, req)
	if res.Cached || slices.Contains(postIDs(res.Hits), "t3") {
		t.Fatalf("after the takedown: cached=%v hits %v", res.Cached, postIDs(res.Hits))
	}
	// 2. A takedown recorded by another process (a moderator on another
	// replica, a tombstone on an indexer): after it, no reply holds the post,
	// and none computed before it is served from the cache.
	req2 := query.SearchRequest{Text: cs.texts[0], Target: "text", K: 5}
	cs.search(t, req2)
	if !cs.search(t, req2).Cached {
		t.Fatal("no hit for req2")
	}
	other := openDenyList(t, cs.nc.ConnectedUrl())
	if err := other.Deny(ctx, []domain.Takedown{{PostID: "t0", Source: "admin"}}); err != nil {
		t.Fatal(err)
	}
	res = cs.search(t, req2)
	if res.Cached || slices.Contains(postIDs(res.Hits), "t0") {
		t.Fatalf("t0 taken down elsewhere but served: cached=%v hits %v", res.Cached, postIDs(res.Hits))
	}
	// 3. Upserts do not move the generation: the cache survives live ingest.
	req3 := query.SearchRequest{Text: cs.texts[1], Target: "text", K: 5}
	cs.search(t, req3)
	before := cs.deny.Generation()
	v, _ := cs.model.EmbedTexts(ctx, []string{"a brand new post"})
	if _, err := cs.ix.Apply(ctx, []domain.Change{{PostID: "n1", Records: []domain.Record{{PK: "n1#text", PostID: "n1",
		Modality: domain.ModalityText, Vector: v[0]}}}}); err != nil {
		t.Fatal(err)
	}
	if !cs.search(t, req3).Cached || cs.deny.Generation() != before {
		t.Errorf("an upsert moved the generation %s → %s or dropped the cache", before, cs.deny.Generation())
	}
}

// A reply computed while a takedown came in is answered without the post but
// never stored: a later request must not get a reply from before the takedown.
func TestReplyComputedAcrossATakedownIsNotStored(t *testing.T) {
	cs := newCachedStack(t, query.Config{}, query.NewLRUCache(100, time.Minute), nil, 0)
	ctx := context.Background()
	other := openDenyList(t, cs.nc.ConnectedUrl())
	cs.enc.hook = func() {
		// Runs inside the request, after it synced the deny-list and looked
		// up the cache, while the query is being encoded.
		if err := other.Deny(ctx, []domain.Takedown{{PostID: "t2", Source: "admin"}}); err != nil {
			t.Error(err)
		}
		if err := cs.deny.Sync(ctx); err != nil {
			t.Error(err)
		}
	}
	req := query.SearchRequest{Text: cs.texts[2], Target: "text", K: 5}
	res := cs.search(t, req)
	cs.enc.hook = nil
	if slices.Contains(postIDs(res.Hits), "t2") {
		t.Fatalf("the reply holds t2, taken down while it was computed: %v", postIDs(res.Hits))
	}
	if n := cacheCount(t, cs.reg, query.CacheMoved); n != 1 {
		t.Errorf("moved metric %v, want 1", n)
	}
	if cs.search(t, req).Cached {
		t.Error("a reply computed across a takedown was stored")
	}
}

// Read-your-takedown across replicas: a post taken down through one replica is
// not returned by another, even when that replica's index still shows it (a
// store that is a moment behind, as Milvus at Bounded consistency).
func TestTakedownOnOneReplicaHoldsOnAnother(t *testing.T) {
	a := newStack(t, query.Config{Name: "xmodal-a"}, nil)
	// Replica b: its own process state (deny-list follower, cache, index that
	// has not seen the delete yet) on the same NATS server.
	deny := openDenyList(t, a.nc.ConnectedUrl())
	b, err := query.New(query.Config{Name: "xmodal-b"}, query.Deps{Index: a.ix, Encoder: a.model, Decode: decodeQuery, Deny: deny,
		Cache: query.NewLRUCache(100, time.Minute), Writer: noDeletes{a.ix}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(a.nc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Stop() })
	ctx := context.Background()
	req := []byte(`{"text":"` + a.texts[3] + `","target":"text","k":5}`)
	call := func() []string {
		t.Helper()
		res, err := b.Call(ctx, "search", req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(res) // a *SearchResponse, or a cached reply's bytes
		var sr query.SearchResponse
		if err := json.Unmarshal(b, &sr); err != nil {
			t.Fatal(err)
		}
		return postIDs(sr.Hits)
	}
	if ids := call(); !slices.Contains(ids, "t3") {
		t.Fatalf("setup: %v", ids)
	}
	call() // cached on b
	// Taken down through a, whose writer is a separate index (b's keeps the post).
	other, err := embedded.Open(ctx, embedded.Options{Path: filepath.Join(t.TempDir(), "ix.db"), Dim: a.model.Dim()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	svcA, err := query.New(query.Config{Name: "xmodal-a2"}, query.Deps{Index: a.ix, Encoder: a.model, Decode: decodeQuery, Deny: a.deny, Writer: other})
	if err != nil {
		t.Fatal(err)
	}
	if err := svcA.Start(a.nc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svcA.Stop() })
	if _, err := svcA.Call(ctx, "admin.delete", []byte(`{"post_ids":["t3"],"reason":"test"}`)); err != nil {
		t.Fatal(err)
	}
	if ids := call(); slices.Contains(ids, "t3") {
		t.Fatalf("replica b returned t3 after it was taken down on a: %v", ids)
	}
	got, err := b.Call(ctx, "get", []byte(`{"post_ids":["t3","t2"]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got.(*query.GetResponse).Records {
		if r.PostID == "t3" {
			t.Fatal("get on replica b returned the taken-down post")
		}
	}
}

// noDeletes is an index writer that refuses writes (a replica that only reads).
type noDeletes struct{ domain.Writer }

func (noDeletes) Apply(context.Context, []domain.Change) ([]domain.Outcome, error) {
	return nil, errors.New("read-only replica")
}

func TestAdminDelete(t *testing.T) {
	cs := newCachedStack(t, query.Config{}, query.NewLRUCache(100, time.Minute), nil, 0)
	ctx := context.Background()
	res, err := cs.cl.Delete(ctx, &query.DeleteRequest{Authors: []string{"user1"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Deleted, []string{"t1", "t3"}) || res.Generation != cs.deny.Seq() || res.Generation == 0 {
		t.Fatalf("delete by author: %+v", res)
	}
	if _, err := cs.cl.Get(ctx, &query.GetRequest{PostIDs: []string{"t1", "t3"}}); query.AsError(err).Code != 404 {
		t.Errorf("get after delete: %v, want 404", err)
	}
	// Deny-listed: a later version of the post is refused.
	out, err := cs.ix.Apply(ctx, []domain.Change{{PostID: "t1", Seq: 99, Records: []domain.Record{{PK: "t1#text", PostID: "t1",
		Modality: domain.ModalityText, Vector: make([]float32, cs.model.Dim())}}}})
	if err != nil || out[0] != domain.Denied {
		t.Errorf("re-upsert of a taken-down post: %v %v, want denied", out, err)
	}
	// A post id not indexed yet is deny-listed all the same.
	if res, err := cs.cl.Delete(ctx, &query.DeleteRequest{PostIDs: []string{"future"}}); err != nil || res.Count != 1 {
		t.Fatalf("delete of an unknown id: %+v %v", res, err)
	}
	if d, _ := cs.ix.IsDenied(ctx, "future"); !d {
		t.Error("unknown id not deny-listed")
	}
	for _, tc := range []struct {
		body string
		code int
	}{
		{`{}`, 400},
		{`{"post_ids":"t1"}`, 400},
		{`{"ids":["t1"]}`, 400},
		{`{"post_ids":["a#text"]}`, 400},
		{`{"post_ids":[""]}`, 400},
		{`{"authors":["nobody"]}`, 404},
		{`{"post_ids":[` + repeatJSON(`"x"`, query.MaxDeleteIDs+1) + `]}`, 413},
		{`not json`, 400},
	} {
		err := cs.cl.Raw(ctx, "admin.delete", []byte(tc.body), nil)
		if e := query.AsError(err); err == nil || e.Code != tc.code {
			t.Errorf("delete %s: %v, want %d", trunc(tc.body), err, tc.code)
		}
	}
}

func repeatJSON(item string, n int) string {
	b := make([]byte, 0, n*(len(item)+1))
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, item...)
	}
	return string(b)
}

func trunc(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// TestErrorCodes500And503 reaches the codes TestErrorCodes cannot: the model
// failing (500) and the index down (503).
func TestErrorCodes500And503(t *testing.T) {
	var fi *failingIndex
	var enc *countingEncoder
	s := newStackWith(t, query.Config{}, nil, func(d *query.Deps) {
		fi = &failingIndex{Searcher: d.Index}
		enc = &countingEncoder{Encoder: d.Encoder}
		d.Index, d.Encoder = fi, enc
	})
	ctx := context.Background()
	enc.fail.Store(true)
	if err := s.cl.Raw(ctx, "search", []byte(`{"text":"x"}`), nil); query.AsError(err).Code != 500 {
		t.Errorf("model failure: %v, want 500", err)
	}
	enc.fail.Store(false)
	fi.fail.Store(true)
	if err := s.cl.Raw(ctx, "search", []byte(`{"text":"x"}`), nil); query.AsError(err).Code != 503 {
		t.Errorf("index down: %v, want 503", err)
	}
}

func TestRecencyBoost(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	hits := []domain.Hit{
		{PK: "old#text", Score: 0.80, CreatedAt: now.Add(-240 * time.Hour)},
		{PK: "new#text", Score: 0.75, CreatedAt: now.Add(-1 * time.Hour)},
		{PK: "mid#text", Score: 0.78, CreatedAt: now.Add(-24 * time.Hour)},
	}
	got := query.BoostRecent(slices.Clone(hits), query.Recency{HalfLifeHours: 24, Weight: 0.1}, now, 2)
	if len(got) != 2 || got[0].PK != "new#text" || got[1].PK != "mid#text" {
		t.Fatalf("boosted order %v", got)
	}
	// new: 0.75 + 0.1·2^(−1/24)
	if want := 0.75 + 0.1*0.971532; got[0].Score < float32(want-1e-4) || got[0].Score > float32(want+1e-4) {
		t.Errorf("boosted score %v, want %v", got[0].Score, want)
	}
	// Through the service: a strong boost puts the newest sample post first.
	s := newStack(t, query.Config{Now: func() time.Time { return time.Date(2026, 1, 6, 0, 0, 0, 0, time.UTC) }}, nil)
	res, err := s.cl.Search(context.Background(), &query.SearchRequest{Text: s.texts[0], Target: "text", K: 5,
		Recency: &query.Recency{HalfLifeHours: 12, Weight: 5}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Hits[0].PostID != "t4" { // created 2026-01-05, the newest
		t.Errorf("with a strong recency boost: %v", postIDs(res.Hits))
	}
	for _, body := range []string{`{"text":"x","recency":{"half_life_hours":0,"weight":1}}`,
		`{"text":"x","recency":{"half_life_hours":5,"weight":-1}}`, `{"text":"x","recency":{"half_life_hours":"5h"}}`} {
		if err := s.cl.Raw(context.Background(), "search", []byte(body), nil); query.AsError(err).Code != 400 {
			t.Errorf("%s: %v, want 400", body, err)
		}
	}
}

func FuzzParseDelete(f *testing.F) {
	for _, s := range []string{`{"post_ids":["a","b"]}`, `{"authors":["x"]}`, `{}`, `{"post_ids":[1]}`, `[`, `{"post_ids":["a#b"]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := query.ParseDelete(b)
		if err != nil {
			if query.AsError(err).Code != 400 && query.AsError(err).Code != 413 {
				t.Fatalf("code %d for a bad request", query.AsError(err).Code)
			}
			return
		}
		if len(r.PostIDs)+len(r.Authors) == 0 || len(r.PostIDs) > query.MaxDeleteIDs {
			t.Fatalf("accepted %+v", r)
		}
	})
}

// A cache hit is the stored reply with "cached": true and the hit's own time:
// every other field as the first answer had it.
func TestCachedReplyIsTheStoredReply(t *testing.T) {
	cs := newCachedStack(t, query.Config{}, query.NewLRUCache(100, time.Minute), nil, 0)
	req := query.SearchRequest{Text: cs.texts[1], Target: "any", K: 4}
	first := cs.search(t, req)
	second := cs.search(t, req)
	if first.Cached || !second.Cached || second.TookMS <= 0 {
		t.Fatalf("cached %v then %v (took %v ms)", first.Cached, second.Cached, second.TookMS)
	}
	first.Cached, first.TookMS, second.Cached, second.TookMS = false, 0, false, 0
	a, _ := json.Marshal(first)
	b, _ := json.Marshal(second)
	if string(a) != string(b) {
		t.Fatalf("a cache hit differs from the reply it stored:\n%s\n%s", a, b)
	}
}

// A hot reply is answered from the process's memory (RedisOptions.Near), not
// with a Redis round trip per hit; a takedown still makes it unreachable at
// once (TestTakedownInvalidation), and it expires with its Redis key
// (TestCacheRedisHitMissTTL).
func TestNearCacheSparesRedis(t *testing.T) {
	rs := testutil.StartRedis(t, redisserver.Options{})
	cs := newCachedStack(t, query.Config{}, nil, rs, time.Minute)
	ctx := context.Background()
	gets := func() int {
		t.Helper()
		info, err := cs.rc.Client().Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_get:calls="); ok {
				n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
				return n
			}
		}
		return 0
	}
	req := query.SearchRequest{Text: cs.texts[1], Target: "text", K: 3}
	cs.search(t, req)
	before := gets()
	for i := range 5 {
		if !cs.search(t, req).Cached {
			t.Fatalf("repeat %d missed the cache", i)
		}
	}
	if n := gets() - before; n != 0 {
		t.Errorf("5 hits of one reply made %d Redis GETs, want 0 (answered from memory)", n)
	}
}
