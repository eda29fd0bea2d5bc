package query

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Cache stores encoded search replies under a key at a generation. The
// generation changes only when a delete is applied (Bump), not on upserts, so
// the hit rate survives live ingest; a takedown makes every older entry
// unreachable at once. Both implementations here are safe for concurrent use.
type Cache interface {
	// Lookup returns the current generation and the value stored under key at
	// that generation (ok false on a miss).
	Lookup(ctx context.Context, key string) (gen uint64, val []byte, ok bool, err error)
	// Store saves val under key at gen, with the cache's TTL.
	Store(ctx context.Context, gen uint64, key string, val []byte) error
	// Bump advances the generation and returns the new one.
	Bump(ctx context.Context) (uint64, error)
	// Kind names the implementation in logs and metrics ("redis", "lru").
	Kind() string
}

// DenyChecker tells whether a post was taken down. domain.Writer implements it.
type DenyChecker interface {
	IsDenied(ctx context.Context, postID string) (bool, error)
}

// batchDenyChecker checks several posts at once (the embedded index: one
// read transaction instead of one per hit).
type batchDenyChecker interface {
	AnyDenied(ctx context.Context, postIDs []string) (bool, error)
}

// ---- Redis ----

// RedisOptions configure the Redis cache.
type RedisOptions struct {
	Addr     string // host:port
	Username string // ACL user (empty: the default user)
	Password string // AUTH password (requirepass)
	DB       int
	// TLS connects with TLS: system roots unless CAFile; CertFile and KeyFile
	// present a client certificate.
	TLS                       bool
	CAFile, CertFile, KeyFile string
	// Prefix of every key (default "xmodal:").
	Prefix string
	// TTL of an entry (default 60s).
	TTL time.Duration
	// Timeout bounds each Redis call (default 50ms): a slow Redis must not slow
	// queries down more than that before they are answered without it.
	Timeout time.Duration
	// RetryAfter is how long the cache is skipped after a Redis error (default 1s).
	RetryAfter time.Duration
}

// RedisCache is the Redis implementation of Cache. The generation lives in
// Redis (PREFIX+"gen") so that every query process sharing the Redis sees the
// same one; entries are PREFIX+"q:"+gen+":"+hash.
type RedisCache struct {
	rdb       *redis.Client
	opt       RedisOptions
	lookup    *redis.Script
	downUntil atomic.Int64 // unix nanos; Redis is skipped until then
	pending   atomic.Bool  // a Bump failed: retry it before trusting any entry
}

// lookupScript reads the generation and the entry at that generation in one
// round trip.
const lookupScript = `
local g = redis.call('GET', KEYS[1]) or '0'
local v = redis.call('GET', ARGV[1] .. g .. ':' .. ARGV[2])
return {g, v}`

// ErrCacheDown is returned while the cache is being skipped after an error.
var ErrCacheDown = errors.New("cache: redis is down (skipped for a moment)")

// NewRedisCache connects lazily (go-redis dials on first use) and checks the
// TLS files now.
func NewRedisCache(opt RedisOptions) (*RedisCache, error) {
	if opt.Addr == "" {
		return nil, errors.New("cache: redis address is empty")
	}
	if opt.Prefix == "" {
		opt.Prefix = "xmodal:"
	}
	if opt.TTL <= 0 {
		opt.TTL = 60 * time.Second
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 50 * time.Millisecond
	}
	if opt.RetryAfter <= 0 {
		opt.RetryAfter = time.Second
	}
	ro := &redis.Options{Addr: opt.Addr, Username: opt.Username, Password: opt.Password, DB: opt.DB,
		DialTimeout: 4 * opt.Timeout, ReadTimeout: opt.Timeout, WriteTimeout: opt.Timeout,
		MaxRetries: -1, PoolSize: 64, DisableIdentity: true}
	if opt.TLS || opt.CAFile != "" || opt.CertFile != "" {
		tc, err := TLSConfig(opt.CAFile, opt.CertFile, opt.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cache: redis tls: %w", err)
		}
		ro.TLSConfig = tc
	}
	return &RedisCache{rdb: redis.NewClient(ro), opt: opt, lookup: redis.NewScript(lookupScript)}, nil
}

// TLSConfig builds a client TLS config: system roots unless caFile, and a
// client certificate when certFile is set.
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
		}
		tc.RootCAs = pool
	}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Client returns the underlying go-redis client.
func (c *RedisCache) Client() *redis.Client { return c.rdb }

// Ping checks the connection and the credentials.
func (c *RedisCache) Ping(ctx context.Context) error { return c.rdb.Ping(ctx).Err() }

// Close closes the connection pool.
func (c *RedisCache) Close() error { return c.rdb.Close() }

// Kind implements Cache.
func (c *RedisCache) Kind() string { return "redis" }

func (c *RedisCache) up() error {
	if time.Now().UnixNano() < c.downUntil.Load() {
		return ErrCacheDown
	}
	return nil
}

func (c *RedisCache) fail(err error) error {
	if err != nil && !errors.Is(err, redis.Nil) && !errors.Is(err, context.Canceled) {
		c.downUntil.Store(time.Now().Add(c.opt.RetryAfter).UnixNano())
	}
	return err
}

func (c *RedisCache) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.opt.Timeout)
}

// Lookup implements Cache.
func (c *RedisCache) Lookup(ctx context.Context, key string) (uint64, []byte, bool, error) {
	if err := c.up(); err != nil {
		return 0, nil, false, err
	}
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	if c.pending.Load() {
		// A delete happened while Redis was unreachable: advance the shared
		// generation before serving anything from it.
		if err := c.rdb.Incr(ctx, c.opt.Prefix+"gen").Err(); err != nil {
			return 0, nil, false, c.fail(err)
		}
		c.pending.Store(false)
	}
	res, err := c.lookup.Run(ctx, c.rdb, []string{c.opt.Prefix + "gen"}, c.opt.Prefix+"q:", key).Slice()
	if err != nil {
		return 0, nil, false, c.fail(err)
	}
	if len(res) == 0 {
		return 0, nil, false, errors.New("cache: empty reply from the lookup script")
	}
	gs, _ := res[0].(string)
	gen, err := strconv.ParseUint(gs, 10, 64)
	if err != nil {
		return 0, nil, false, fmt.Errorf("cache: generation %q: %w", gs, err)
	}
	if len(res) < 2 || res[1] == nil {
		return gen, nil, false, nil
	}
	v, _ := res[1].(string)
	return gen, []byte(v), true, nil
}

// Store implements Cache.
func (c *RedisCache) Store(ctx context.Context, gen uint64, key string, val []byte) error {
	if err := c.up(); err != nil {
		return err
	}
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	return c.fail(c.rdb.Set(ctx, c.opt.Prefix+"q:"+strconv.FormatUint(gen, 10)+":"+key, val, c.opt.TTL).Err())
}

// Bump implements Cache. When Redis cannot be reached the bump is remembered
// and made before the next lookup.
func (c *RedisCache) Bump(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 4*c.opt.Timeout)
	defer cancel()
	g, err := c.rdb.Incr(ctx, c.opt.Prefix+"gen").Uint64()
	if err != nil {
		c.pending.Store(true)
		return 0, c.fail(err)
	}
	c.pending.Store(false)
	return g, nil
}

// ---- in-process LRU ----

// LRUCache is the in-process cache used when no Redis is configured.
type LRUCache struct {
	gen atomic.Uint64
	lru *expirable.LRU[string, []byte]
}

// NewLRUCache holds at most size entries for ttl each.
func NewLRUCache(size int, ttl time.Duration) *LRUCache {
	if size <= 0 {
		size = 10000
	}
	if ttl <= 0 {
		ttl = 60 * time.Second
	}
	return &LRUCache{lru: expirable.NewLRU[string, []byte](size, nil, ttl)}
}

// Kind implements Cache.
func (c *LRUCache) Kind() string { return "lru" }

// Lookup implements Cache.
func (c *LRUCache) Lookup(_ context.Context, key string) (uint64, []byte, bool, error) {
	g := c.gen.Load()
	v, ok := c.lru.Get(strconv.FormatUint(g, 10) + ":" + key)
	return g, v, ok, nil
}

// Store implements Cache.
func (c *LRUCache) Store(_ context.Context, gen uint64, key string, val []byte) error {
	if gen != c.gen.Load() {
		return nil // a delete came in meanwhile: the entry would never be read
	}
	c.lru.Add(strconv.FormatUint(gen, 10)+":"+key, val)
	return nil
}

// Bump implements Cache; older entries are dropped at once.
func (c *LRUCache) Bump(context.Context) (uint64, error) {
	g := c.gen.Add(1)
	c.lru.Purge()
	return g, nil
}

// Len returns the number of entries.
func (c *LRUCache) Len() int { return c.lru.Len() }

// ---- the service side ----

// cacheState is the service's cache bookkeeping.
type cacheState struct {
	gen     atomic.Uint64 // in-process generation: deletes seen by this process
	metrics *prometheus.CounterVec
	genG    prometheus.Gauge
	sfMu    sync.Mutex
	sf      map[string]*flight
	eps     sync.Map // endpoint name → handler, for the HTTP gateway
}

// flight is one search in progress that identical requests wait for.
type flight struct {
	done chan struct{}
	res  *SearchResponse
	err  error
}

// Cache results counted in xmodal_query_cache_total.
const (
	CacheHit       = "hit"
	CacheMiss      = "miss"
	CacheBypass    = "bypass"    // the cache could not be read (Redis down): answered without it
	CacheDenied    = "denied"    // a cached reply held a taken-down post: recomputed
	CacheCoalesced = "coalesced" // waited for an identical request in flight
	CacheStoreErr  = "store_error"
)

func (s *Service) initCache() error {
	s.cs.metrics = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xmodal_query_cache_total",
		Help: "Search cache outcomes: hit, miss, bypass (cache unreachable, answered without it), denied (cached reply held a taken-down post), coalesced (waited for an identical request), store_error.",
	}, []string{"result"})
	s.cs.genG = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "xmodal_query_cache_generation", Help: "Deletes applied through this process (the in-process cache generation).",
	})
	s.cs.sf = map[string]*flight{}
	for _, r := range []string{CacheHit, CacheMiss, CacheBypass, CacheDenied, CacheCoalesced, CacheStoreErr} {
		s.cs.metrics.WithLabelValues(r)
	}
	if s.d.Registerer != nil {
		for _, c := range []prometheus.Collector{s.cs.metrics, s.cs.genG} {
			if err := s.d.Registerer.Register(c); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Service) count(result string) { s.cs.metrics.WithLabelValues(result).Inc() }

// Invalidate advances the cache generation: call it after a delete or a
// takedown was applied to the index. It never fails: when Redis is down the
// bump is retried before the next cache read, and cached hits are filtered
// through the deny-list meanwhile. It returns the in-process generation.
func (s *Service) Invalidate(ctx context.Context) uint64 {
	g := s.cs.gen.Add(1)
	s.cs.genG.Set(float64(g))
	if s.d.Cache != nil {
		if _, err := s.d.Cache.Bump(ctx); err != nil {
			s.d.Logger.Warn("cache: generation bump failed; retried before the next read", "cache", s.d.Cache.Kind(), "err", err)
		}
	}
	return g
}

// CacheKey is the cache key of a parsed request: a hash of the normalised
// request, the model version and the image decode mode (an image query's
// vector depends on it). Exported for tests and tools.
func (s *Service) CacheKey(r *SearchRequest) string {
	n := *r
	n.Text = strings.Join(strings.Fields(n.Text), " ") // the CLIP tokenizer collapses whitespace
	// The vector goes into the hash as the bits of its normalised floats
	// (formatting them as JSON text cost more than the rest of a cached search).
	var vec []float32
	if len(n.Vector) > 0 {
		vec = normalize(n.Vector)
		n.Vector = nil
	}
	if n.Plan == "" {
		n.Plan = "exact"
	}
	var img [32]byte
	if len(n.Image) > 0 {
		img = sha256.Sum256(n.Image)
		n.Image = nil
	}
	n.Filter.Authors = sortedSet(n.Filter.Authors)
	n.Filter.Labels = sortedSet(n.Filter.Labels)
	n.Filter.Since = n.Filter.Since.UTC()
	n.Filter.Until = n.Filter.Until.UTC()
	if n.Recency != nil && n.Recency.Weight == 0 {
		n.Recency = nil
	}
	b, _ := json.Marshal(&n)
	h := sha256.New()
	h.Write([]byte(s.d.Encoder.Version()))
	h.Write([]byte{0})
	h.Write([]byte(s.d.DecodeMode))
	h.Write([]byte{0})
	h.Write(b)
	h.Write(img[:])
	if len(vec) > 0 {
		buf := make([]byte, 0, 4*len(vec))
		for _, x := range vec {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(x))
		}
		h.Write(buf)
	}
	return hex.EncodeToString(h.Sum(nil)[:20])
}

func sortedSet(xs []string) []string {
	if len(xs) == 0 {
		return nil
	}
	out := slices.Clone(xs)
	slices.Sort(out)
	return slices.Compact(out)
}

// cachedSearch answers r from the cache when it can, else through compute,
// coalescing identical requests in flight and storing the reply.
func (s *Service) cachedSearch(ctx context.Context, r *SearchRequest, start time.Time,
	compute func(context.Context) (*SearchResponse, error)) (*SearchResponse, error) {
	c := s.d.Cache
	if c == nil {
		return compute(ctx)
	}
	key := s.CacheKey(r)
	gen, val, ok, err := c.Lookup(ctx, key)
	if err != nil {
		s.count(CacheBypass)
		if !errors.Is(err, ErrCacheDown) {
			s.d.Logger.Warn("cache: lookup failed; answering without the cache", "cache", c.Kind(), "err", err)
		}
		return s.coalesce(ctx, "bypass:"+key, compute)
	}
	if ok {
		var res SearchResponse
		if err := json.Unmarshal(val, &res); err == nil {
			denied, derr := s.anyDenied(ctx, &res)
			switch {
			case derr != nil:
				return nil, indexErr(derr)
			case denied:
				s.count(CacheDenied)
			default:
				s.count(CacheHit)
				res.Cached = true
				res.TookMS = tookMS(start)
				return &res, nil
			}
		}
	} else {
		s.count(CacheMiss)
	}
	fkey := strconv.FormatUint(gen, 10) + ":" + key
	return s.coalesce(ctx, fkey, func(ctx context.Context) (*SearchResponse, error) {
		res, err := compute(ctx)
		if err != nil {
			return nil, err
		}
		b, err := json.Marshal(res)
		if err == nil {
			err = c.Store(ctx, gen, key, b)
		}
		if err != nil {
			s.count(CacheStoreErr)
		}
		return res, nil
	})
}

// coalesce runs fn once for concurrent calls with the same key (singleflight);
// the others wait for its reply or their own context.
func (s *Service) coalesce(ctx context.Context, key string, fn func(context.Context) (*SearchResponse, error)) (*SearchResponse, error) {
	s.cs.sfMu.Lock()
	if f, ok := s.cs.sf[key]; ok {
		s.cs.sfMu.Unlock()
		s.count(CacheCoalesced)
		select {
		case <-f.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if f.err != nil {
			return nil, f.err
		}
		cp := *f.res
		return &cp, nil
	}
	f := &flight{done: make(chan struct{})}
	s.cs.sf[key] = f
	s.cs.sfMu.Unlock()
	defer func() {
		s.cs.sfMu.Lock()
		delete(s.cs.sf, key)
		s.cs.sfMu.Unlock()
		close(f.done)
	}()
	f.res, f.err = fn(ctx)
	if f.err != nil {
		return nil, f.err
	}
	cp := *f.res
	return &cp, nil
}

// anyDenied reports whether a cached reply holds a taken-down post (a takedown
// made while Redis was down, or by a process that could not bump the generation).
func (s *Service) anyDenied(ctx context.Context, res *SearchResponse) (bool, error) {
	dc := s.d.Denied
	if dc == nil {
		if w := s.writer(); w != nil {
			dc = w
		}
	}
	if dc == nil {
		return false, nil
	}
	if b, ok := dc.(batchDenyChecker); ok {
		ids := make([]string, 0, len(res.Hits))
		for _, h := range res.Hits {
			ids = append(ids, h.PostID)
		}
		return b.AnyDenied(ctx, ids)
	}
	seen := map[string]bool{}
	for _, h := range res.Hits {
		if seen[h.PostID] {
			continue
		}
		seen[h.PostID] = true
		d, err := dc.IsDenied(ctx, h.PostID)
		if err != nil {
			return false, err
		}
		if d {
			return true, nil
		}
	}
	return false, nil
}

func tookMS(start time.Time) float64 { return float64(time.Since(start).Microseconds()) / 1000 }

// ---- endpoints shared with the HTTP gateway ----

// register records an endpoint's handler so the HTTP gateway can call it.
func (s *Service) register(name string, h func(context.Context, []byte) (any, error)) {
	s.cs.eps.Store(name, h)
}

// Call runs one endpoint in-process, as a NATS request to it would (same
// concurrency bound, deadline, metrics and errors). Endpoint names are the
// subject suffixes: search, get, stats, admin.delete, and those others add.
func (s *Service) Call(ctx context.Context, endpoint string, data []byte) (any, error) {
	h, ok := s.cs.eps.Load(endpoint)
	if !ok {
		return nil, errorf(CodeNotFound, "unknown endpoint %q", endpoint)
	}
	select {
	case s.sem <- struct{}{}:
	default:
		err := errorf(CodeTooManyRequest, "too many requests in flight (%d); retry later", s.cfg.Concurrency)
		s.reqs.WithLabelValues(endpoint, "429").Inc()
		return nil, err
	}
	defer func() { <-s.sem }()
	return s.run(ctx, endpoint, h.(func(context.Context, []byte) (any, error)), data)
}

// Endpoints lists the registered endpoint names.
func (s *Service) Endpoints() []string {
	var out []string
	s.cs.eps.Range(func(k, _ any) bool { out = append(out, k.(string)); return true })
	slices.Sort(out)
	return out
}

// run applies the deadline and records the metrics of one request.
func (s *Service) run(parent context.Context, name string, h func(context.Context, []byte) (any, error), data []byte) (any, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(parent, s.cfg.Timeout)
	defer cancel()
	res, err := h(ctx, data)
	s.lat.WithLabelValues(name).Observe(time.Since(start).Seconds())
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = errorf(CodeTimeout, "request took longer than %s", s.cfg.Timeout)
		}
		e := AsError(err)
		s.reqs.WithLabelValues(name, strconv.Itoa(e.Code)).Inc()
		if e.Code >= 500 {
			s.d.Logger.Warn("query failed", "endpoint", name, "code", e.Code, "err", e.Message)
		}
		return nil, e
	}
	s.reqs.WithLabelValues(name, "200").Inc()
	return res, nil
}
