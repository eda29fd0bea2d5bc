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

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/internal/vecmath"
)

// Cache stores encoded search replies under a key at a generation. The
// generation is the deny-list's position (DenyList.Generation): it moves with
// every takedown anywhere in the deployment, not with upserts, so the hit rate
// survives live ingest and a takedown makes every older entry unreachable at
// once. Because the generation lives in the replicated deny-list, a cache
// that loses its data (a Redis restart) loses entries, never takedowns. Both
// implementations here are safe for concurrent use.
type Cache interface {
	// Get returns the value stored under key at gen (ok false on a miss).
	Get(ctx context.Context, gen, key string) (val []byte, ok bool, err error)
	// Set saves val under key at gen, with the cache's TTL.
	Set(ctx context.Context, gen, key string, val []byte) error
	// Kind names the implementation in logs and metrics ("redis", "lru").
	Kind() string
}

// DenyList is the replicated deny-list the service filters every reply
// through (internal/denylist implements it).
type DenyList interface {
	domain.DenyList
	// Generation names the list's position; it changes with every takedown.
	Generation() string
	// Seq is the position as a number (the stream sequence).
	Seq() uint64
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
	// Near is how many entries this process keeps in memory in front of
	// Redis (default 512; negative: none). An entry read from or written to
	// Redis is kept until the moment its Redis key expires, under its
	// generation (a newer generation empties it), so a hot reply is answered
	// without a Redis round trip and is never older than the TTL allows.
	Near int
	// NearMaxBytes: a larger entry is not kept in memory (default 128 KiB).
	NearMaxBytes int
}

// RedisCache is the Redis implementation of Cache: entries are
// PREFIX+"q:"+generation+":"+hash, shared by every query process on the Redis.
type RedisCache struct {
	rdb       *redis.Client
	opt       RedisOptions
	downUntil atomic.Int64 // unix nanos; Redis is skipped until then
	near      *nearCache   // nil: none
}

// ErrCacheDown is returned while the cache is being skipped after an error.
var ErrCacheDown = errors.New("cache: redis is down (skipped for a moment)")

// ErrCacheAuth is returned by RedisCache.Ping when Redis refused the
// credentials (NOAUTH, WRONGPASS): a configuration error, not an outage.
var ErrCacheAuth = errors.New("cache: redis refused the credentials")

// WithDefaults returns o with the zero (or negative) fields set to their
// defaults.
func (o RedisOptions) WithDefaults() RedisOptions {
	if o.Prefix == "" {
		o.Prefix = "xmodal:"
	}
	o.TTL = positiveOr(o.TTL, 60*time.Second)
	o.Timeout = positiveOr(o.Timeout, 50*time.Millisecond)
	o.RetryAfter = positiveOr(o.RetryAfter, time.Second)
	if o.Near == 0 {
		o.Near = 512
	}
	o.NearMaxBytes = positiveOr(o.NearMaxBytes, 128<<10)
	return o
}

// NewRedisCache connects lazily (go-redis dials on first use) and checks the
// TLS files now.
func NewRedisCache(opt RedisOptions) (*RedisCache, error) {
	if opt.Addr == "" {
		return nil, errors.New("cache: redis address is empty")
	}
	opt = opt.WithDefaults()
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
	c := &RedisCache{rdb: redis.NewClient(ro), opt: opt}
	if opt.Near > 0 {
		c.near = newNearCache(opt.Near, opt.TTL)
	}
	return c, nil
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
// Ping checks the connection; bad credentials come back wrapped in
// ErrCacheAuth (classified by the Redis client's typed errors).
func (c *RedisCache) Ping(ctx context.Context) error {
	err := c.rdb.Ping(ctx).Err()
	if redis.IsAuthError(err) {
		return fmt.Errorf("%w: %w", ErrCacheAuth, err)
	}
	return err
}

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

func (c *RedisCache) key(gen, key string) string { return c.opt.Prefix + "q:" + gen + ":" + key }

// Get implements Cache: from memory when the entry is there (Near), else
// from Redis, with the time its key has left (one round trip: GET and PTTL
// pipelined), which bounds how long the entry is kept in memory.
func (c *RedisCache) Get(ctx context.Context, gen, key string) ([]byte, bool, error) {
	if c.near != nil {
		if v, ok := c.near.get(gen, key); ok {
			return v, true, nil
		}
	}
	if err := c.up(); err != nil {
		return nil, false, err
	}
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	k := c.key(gen, key)
	if c.near == nil {
		v, err := c.rdb.Get(ctx, k).Bytes()
		if errors.Is(err, redis.Nil) {
			return nil, false, nil
		}
		if err != nil {
			return nil, false, c.fail(err)
		}
		return v, true, nil
	}
	var get *redis.StringCmd
	var ttl *redis.DurationCmd
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		get, ttl = p.Get(ctx, k), p.PTTL(ctx, k)
		return nil
	})
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, c.fail(err)
	}
	v, err := get.Bytes()
	if err != nil {
		return nil, false, c.fail(err)
	}
	if d := ttl.Val(); d > 0 && len(v) <= c.opt.NearMaxBytes {
		c.near.set(gen, key, v, time.Now().Add(d))
	}
	return v, true, nil
}

// Set implements Cache.
func (c *RedisCache) Set(ctx context.Context, gen, key string, val []byte) error {
	if err := c.up(); err != nil {
		return err
	}
	at := time.Now()
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	if err := c.fail(c.rdb.Set(ctx, c.key(gen, key), val, c.opt.TTL).Err()); err != nil {
		return err
	}
	if c.near != nil && len(val) <= c.opt.NearMaxBytes {
		c.near.set(gen, key, val, at.Add(c.opt.TTL))
	}
	return nil
}

// nearCache is the in-memory tier of a RedisCache: entries of one
// generation (a newer one empties it, an older one finds and keeps
// nothing), each until its Redis key's expiry.
type nearCache struct {
	mu  sync.Mutex
	gen string
	lru *expirable.LRU[string, nearEntry]
}

type nearEntry struct {
	val []byte
	exp time.Time
}

func newNearCache(size int, ttl time.Duration) *nearCache {
	return &nearCache{lru: expirable.NewLRU[string, nearEntry](size, nil, ttl)}
}

// at is LRUCache.at: move to gen when it is newer; report whether gen is
// the current generation. Called with mu held.
func (n *nearCache) at(gen string) bool {
	if gen == n.gen {
		return true
	}
	if genLess(n.gen, gen) {
		n.gen = gen
		n.lru.Purge()
		return true
	}
	return false
}

func (n *nearCache) get(gen, key string) ([]byte, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.at(gen) {
		return nil, false
	}
	e, ok := n.lru.Get(key)
	if !ok {
		return nil, false
	}
	if !time.Now().Before(e.exp) {
		n.lru.Remove(key)
		return nil, false
	}
	return e.val, true
}

func (n *nearCache) set(gen, key string, val []byte, exp time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.at(gen) {
		n.lru.Add(key, nearEntry{val: val, exp: exp})
	}
}

// ---- in-process LRU ----

// LRUCache is the in-process cache used when no Redis is configured.
type LRUCache struct {
	mu  sync.Mutex
	gen string // entries are of this generation; another one purges them
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

// at moves the cache to gen, dropping older entries; it reports whether gen
// is the cache's generation (a call with an older one finds nothing).
func (c *LRUCache) at(gen string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen == c.gen {
		return true
	}
	if genLess(c.gen, gen) {
		c.gen = gen
		c.lru.Purge()
		return true
	}
	return false
}

// genLess orders generations "<epoch>.<seq>": by epoch, then by sequence.
func genLess(a, b string) bool {
	ae, as, _ := strings.Cut(a, ".")
	be, bs, _ := strings.Cut(b, ".")
	if ae != be {
		return a == "" || ae < be
	}
	an, _ := strconv.ParseUint(as, 10, 64)
	bn, _ := strconv.ParseUint(bs, 10, 64)
	return an < bn
}

// Get implements Cache.
func (c *LRUCache) Get(_ context.Context, gen, key string) ([]byte, bool, error) {
	if !c.at(gen) {
		return nil, false, nil
	}
	v, ok := c.lru.Get(key)
	return v, ok, nil
}

// Set implements Cache.
func (c *LRUCache) Set(_ context.Context, gen, key string, val []byte) error {
	if c.at(gen) {
		c.lru.Add(key, val)
	}
	return nil
}

// Len returns the number of entries.
func (c *LRUCache) Len() int { return c.lru.Len() }

// ---- the service side ----

// cacheState is the service's cache bookkeeping.
type cacheState struct {
	metrics *prometheus.CounterVec
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
	CacheMoved     = "moved" // a takedown came in while the reply was computed: not stored
)

func (s *Service) initCache() error {
	s.cs.metrics = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "xmodal_query_cache_total",
		Help: "Search cache outcomes: hit, miss, bypass (cache unreachable, answered without it), denied (cached reply held a taken-down post), coalesced (waited for an identical request), store_error, moved (a takedown came in while the reply was computed: not stored).",
	}, []string{"result"})
	s.cs.sf = map[string]*flight{}
	for _, r := range []string{CacheHit, CacheMiss, CacheBypass, CacheDenied, CacheCoalesced, CacheStoreErr, CacheMoved} {
		s.cs.metrics.WithLabelValues(r)
	}
	if s.d.Registerer != nil {
		if err := s.d.Registerer.Register(s.cs.metrics); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) count(result string) { s.cs.metrics.WithLabelValues(result).Inc() }

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
		vec = vecmath.Normalized(n.Vector)
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

// cachedSearch syncs the deny-list, then answers r from the cache when it
// can, else through compute, coalescing identical requests in flight and
// storing the reply. A reply computed before a takedown is never stored after
// it, and a cached reply holding a denied post is recomputed. A cache hit is
// answered with the stored bytes (json.RawMessage), not decoded and encoded
// again.
//
// The cache is read while the deny-list syncs, at the generation from before
// the sync: when the sync moves it (a takedown came in), what was read is
// dropped and the request is a miss at the new generation. Most requests
// thus wait for one round trip, not two.
func (s *Service) cachedSearch(ctx context.Context, r *SearchRequest, start time.Time,
	compute func(context.Context) (*SearchResponse, error)) (any, error) {
	c := s.d.Cache
	if c == nil {
		if err := s.syncDeny(ctx); err != nil {
			return nil, err
		}
		return compute(ctx)
	}
	key := s.CacheKey(r)
	before := s.d.Deny.Generation()
	synced := make(chan error, 1)
	go func() { synced <- s.syncDeny(ctx) }()
	val, ok, err := c.Get(ctx, before, key)
	if serr := <-synced; serr != nil {
		return nil, serr
	}
	gen := s.d.Deny.Generation()
	if gen != before {
		val, ok, err = nil, false, nil // read at a generation the sync left behind
	}
	if err != nil {
		s.count(CacheBypass)
		if !errors.Is(err, ErrCacheDown) {
			s.d.Logger.Warn("cache: lookup failed; answering without the cache", "cache", c.Kind(), "err", err)
		}
		return s.coalesce(ctx, "bypass:"+key, compute)
	}
	if ok {
		if ids, body, err := decodeCached(val); err == nil {
			if !slices.ContainsFunc(ids, s.d.Deny.Denied) {
				s.count(CacheHit)
				return cachedReply(body, tookMS(start)), nil
			}
			s.count(CacheDenied)
		}
	} else {
		s.count(CacheMiss)
	}
	return s.coalesce(ctx, gen+":"+key, func(ctx context.Context) (*SearchResponse, error) {
		res, err := compute(ctx)
		if err != nil {
			return nil, err
		}
		// A takedown synced here while the reply was computed may concern
		// one of its hits: such a reply is answered (filtered) but not stored.
		if s.d.Deny.Generation() != gen {
			s.count(CacheMoved)
			return res, nil
		}
		b, err := encodeCached(res)
		if err == nil {
			err = c.Set(ctx, gen, key, b)
		}
		if err != nil {
			s.count(CacheStoreErr)
		}
		return res, nil
	})
}

// cachedBody is what a cache entry keeps of a reply: all but the time it
// took and whether it came from the cache, which a hit sets anew.
type cachedBody struct {
	Hits  []domain.Hit `json:"hits"`
	Plan  string       `json:"plan"`
	Model string       `json:"model"`
}

// encodeCached lays out a cache entry: the hits' post ids (uvarint count,
// then uvarint length and bytes of each), for the deny-list check of a hit,
// then the reply body as JSON.
func encodeCached(res *SearchResponse) ([]byte, error) {
	body, err := json.Marshal(cachedBody{Hits: res.Hits, Plan: res.Plan, Model: res.Model})
	if err != nil {
		return nil, err
	}
	b := binary.AppendUvarint(nil, uint64(len(res.Hits)))
	for i := range res.Hits {
		b = binary.AppendUvarint(b, uint64(len(res.Hits[i].PostID)))
		b = append(b, res.Hits[i].PostID...)
	}
	return append(b, body...), nil
}

var errBadEntry = errors.New("cache: malformed entry")

func decodeCached(b []byte) (ids []string, body []byte, err error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, nil, errBadEntry
	}
	b = b[k:]
	ids = make([]string, 0, n)
	for range n {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, nil, errBadEntry
		}
		ids = append(ids, string(b[k:k+int(l)]))
		b = b[k+int(l):]
	}
	if len(b) < 2 || b[0] != '{' {
		return nil, nil, errBadEntry
	}
	return ids, b, nil
}

// cachedReply is a stored body with "cached": true and the time this
// request took.
func cachedReply(body []byte, took float64) json.RawMessage {
	out := make([]byte, 0, len(body)+48)
	out = append(out, `{"cached":true,"took_ms":`...)
	out = strconv.AppendFloat(out, took, 'g', -1, 64)
	out = append(out, ',')
	return append(out, body[1:]...)
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
