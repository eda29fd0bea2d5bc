package main

// Validation of the configuration: every check names the key it refuses
// (configErr), for the whole file and for each role.

import (
	"fmt"
	"math"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/imageprep"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/sink/milvus"
)

// configErr is the error of a bad value: "config KEY: what is wrong".
func configErr(key, format string, args ...any) error {
	return fmt.Errorf("config %s: %s", key, fmt.Sprintf(format, args...))
}

// bothOrNeither refuses a pair of keys that only work together (a
// certificate and its key, a user and its password) when one is set alone.
func bothOrNeither(keyA, a, keyB, b string) error {
	if (a == "") != (b == "") {
		return configErr(keyA, "set both %s and %s, or neither", keyA, keyB)
	}
	return nil
}

// Validate checks values, naming the key of the first bad one.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return configErr("data_dir", "must not be empty")
	}
	if !slices.Contains([]string{"cpu", "cuda", "tensorrt"}, c.ORT.Provider) {
		return configErr("ort.provider", "%q is not cpu, cuda or tensorrt", c.ORT.Provider)
	}
	if c.ORT.IntraOpThreads < 0 || c.ORT.InterOpThreads < 0 {
		return configErr("ort.intra_op_threads", "thread counts must not be negative")
	}
	if c.ORT.Sessions < 1 || c.ORT.Sessions > 64 {
		return configErr("ort.sessions", "%d is not in 1..64", c.ORT.Sessions)
	}
	if p, err := c.inboxPrefix(); err != nil {
		return err
	} else if p != "" && (strings.ContainsAny(p, "*> \t\r\n") || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".") || strings.Contains(p, "..")) {
		return configErr("nats.inbox_prefix", "%q is not a subject without wildcards", p)
	}
	if _, _, err := net.SplitHostPort(c.NATS.Listen); err != nil {
		return configErr("nats.listen", "%v", err)
	}
	if c.Banks.WindowBlockPixels < 0 || math.IsNaN(c.Banks.WindowBlockPixels) {
		return configErr("banks.window_block_pixels", "%v is negative (0 takes 0.9; over 1 never takes a post down by windows alone)", c.Banks.WindowBlockPixels)
	}
	if c.Ingest.BatchSize < 1 || c.Ingest.BatchSize > 4096 {
		return configErr("ingest.batch_size", "%d is not in 1..4096", c.Ingest.BatchSize)
	}
	if c.Ingest.FetchWait <= 0 {
		return configErr("ingest.fetch_wait", "must be positive")
	}
	if c.Ingest.EncodeBatch < 1 || c.Ingest.EncodeBatch > 1024 {
		return configErr("ingest.encode_batch", "%d is not in 1..1024", c.Ingest.EncodeBatch)
	}
	if c.Ingest.EncodeWait <= 0 || c.Ingest.EncodeWait > 10*time.Second {
		return configErr("ingest.encode_wait", "%v is not in (0, 10s]", c.Ingest.EncodeWait)
	}
	if c.Ingest.Encoders < 1 || c.Ingest.Encoders > 64 {
		return configErr("ingest.encoders", "%d is not in 1..64", c.Ingest.Encoders)
	}
	if c.Ingest.MaxInFlightMB < 0 || c.Ingest.MaxInFlightMB > 1<<20 {
		return configErr("ingest.max_inflight_mb", "%d is not in 0..1048576", c.Ingest.MaxInFlightMB)
	}
	if c.Ingest.Writers < 0 || c.Ingest.Writers > 64 {
		return configErr("ingest.writers", "%d is not in 0..64", c.Ingest.Writers)
	}
	if c.Ingest.MaxInFlight < c.Ingest.BatchSize || c.Ingest.MaxInFlight > 1<<20 {
		return configErr("ingest.max_inflight", "%d is not in ingest.batch_size (%d)..1048576", c.Ingest.MaxInFlight, c.Ingest.BatchSize)
	}
	if c.Ingest.MediaConcurrency < 1 || c.Ingest.MediaConcurrency > 1024 {
		return configErr("ingest.media_concurrency", "%d is not in 1..1024", c.Ingest.MediaConcurrency)
	}
	if c.Ingest.AckWait < time.Second {
		return configErr("ingest.ack_wait", "must be at least 1s")
	}
	if c.Ingest.MaxAttempts < 1 {
		return configErr("ingest.max_attempts", "must be at least 1")
	}
	for _, a := range c.Ingest.AllowPrivate {
		if _, _, err := net.ParseCIDR(a); err != nil && strings.ContainsAny(a, "/") {
			return configErr("ingest.allow_private", "%q is not a CIDR: %v", a, err)
		}
	}
	if _, err := imageprep.ParseMode(c.Image.DecodeMode); err != nil {
		return configErr("image.decode_mode", "%q is not fast or exact", c.Image.DecodeMode)
	}
	if c.Image.NearDupSeedWindows < 0 || c.Image.NearDupSeedWindows > 1000 {
		return configErr("image.neardup_seed_windows", "%d is not in 0..1000", c.Image.NearDupSeedWindows)
	}
	if b := c.Image.NearDupWholeBand; b != 0 && b != -1 && (b <= neardup.WholeDistance || b > domain.MaxPDQDistance) {
		return configErr("image.neardup_whole_band", "%d is not 0 (the default, %d), -1 (off) or in %d..%d", b, neardup.WholeBandDistance, neardup.WholeDistance+1, domain.MaxPDQDistance)
	}
	if c.Image.PDQMinSide < 0 || c.Image.PDQMinSide > 100_000 {
		return configErr("image.pdq_min_side", "%d is not in 0..100000", c.Image.PDQMinSide)
	}
	if c.Image.DecodeMemoryMB < 64 || c.Image.DecodeMemoryMB > 1<<20 {
		return configErr("image.decode_memory_mb", "%d is not in 64..1048576", c.Image.DecodeMemoryMB)
	}
	if len(c.Kafka.Brokers) > 0 {
		for _, b := range c.Kafka.Brokers {
			if _, _, err := net.SplitHostPort(b); err != nil {
				return configErr("kafka.brokers", "%q: %v", b, err)
			}
		}
		if c.Kafka.Topic == "" {
			return configErr("kafka.topic", "must not be empty")
		}
		if c.Kafka.Group == "" {
			return configErr("kafka.group", "must not be empty")
		}
		if !slices.Contains([]string{"", "plain", "scram-sha-256", "scram-sha-512"}, c.Kafka.SASLMechanism) {
			return configErr("kafka.sasl_mechanism", "%q is not plain, scram-sha-256 or scram-sha-512", c.Kafka.SASLMechanism)
		}
		if c.Kafka.SessionTimeout < 6*time.Second {
			return configErr("kafka.session_timeout", "%s is under the brokers' 6s minimum", c.Kafka.SessionTimeout)
		}
		if c.Kafka.CommitInterval <= 0 {
			return configErr("kafka.commit_interval", "must be positive")
		}
	}
	if c.Clusters.Threshold < 1 || c.Clusters.Threshold > 256 {
		return configErr("clusters.threshold", "%d is outside 1..256", c.Clusters.Threshold)
	}
	if c.Clusters.Bucket <= 0 || c.Clusters.Retention < c.Clusters.Bucket {
		return configErr("clusters.bucket", "must be positive and at most clusters.retention (%v, %v)", c.Clusters.Bucket, c.Clusters.Retention)
	}
	if c.Clusters.Enabled && c.Clusters.Windows && !c.Image.NearDupWindows {
		return configErr("clusters.windows", "links by near-duplicate windows, which image.neardup_windows stores: turn that on too")
	}
	if c.Clusters.SplitLimit < 1 {
		return configErr("clusters.split_limit", "must be positive, got %d", c.Clusters.SplitLimit)
	}
	if c.Query.Timeout <= 0 {
		return configErr("query.timeout", "must be positive")
	}
	if c.Query.Concurrency < 1 {
		return configErr("query.concurrency", "must be at least 1")
	}
	if err := c.validateCache(); err != nil {
		return err
	}
	if err := c.validateMilvus(); err != nil {
		return err
	}
	if c.HTTP.HeaderTimeout <= 0 {
		return configErr("http.header_timeout", "must be positive")
	}
	if c.HTTP.BodyTimeout <= 0 {
		return configErr("http.body_timeout", "must be positive")
	}
	if c.HTTP.Listen != "" {
		if _, _, err := net.SplitHostPort(c.HTTP.Listen); err != nil {
			return configErr("http.listen", "%v", err)
		}
	}
	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		return configErr("log.level", "%q is not debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		return configErr("log.format", "%q is not text or json", c.Log.Format)
	}
	return nil
}

// validateCache checks the query cache, Redis and security keys.
func (c *Config) validateCache() error {
	if c.Query.CacheTTL <= 0 {
		return configErr("query.cache_ttl", "must be positive")
	}
	if c.Query.CacheSize < 1 {
		return configErr("query.cache_size", "must be at least 1")
	}
	if c.Redis.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Redis.Addr); err != nil {
			return configErr("redis.addr", "%v", err)
		}
	}
	if c.Redis.Timeout <= 0 {
		return configErr("redis.timeout", "must be positive")
	}
	if c.Redis.DB < 0 {
		return configErr("redis.db", "must not be negative")
	}
	if err := bothOrNeither("redis.tls_cert_file", c.Redis.TLSCertFile, "redis.tls_key_file", c.Redis.TLSKeyFile); err != nil {
		return err
	}
	if err := bothOrNeither("nats.tls_cert_file", c.NATS.TLSCertFile, "nats.tls_key_file", c.NATS.TLSKeyFile); err != nil {
		return err
	}
	if c.NATS.NkeySeedFile != "" && c.NATS.User != "" {
		return configErr("nats.nkey_seed_file", "use either an nkey or nats.user, not both")
	}
	if t := c.HTTP.AdminToken; t != "" && len(t) < 16 {
		return configErr("http.admin_token", "is %d characters; use at least 16 (e.g. openssl rand -hex 16)", len(t))
	}
	if err := query.CheckPostURL(c.HTTP.PostURL); err != nil {
		return configErr("http.post_url", "%v", err)
	}
	return nil
}

var milvusCollection = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,47}$`)

// validateMilvus checks the milvus.* keys and shutdown_grace.
func (c *Config) validateMilvus() error {
	if c.ShutdownGrace <= 0 {
		return configErr("shutdown_grace", "must be positive")
	}
	m := c.Milvus
	if m.Address != "" {
		if _, _, err := net.SplitHostPort(m.Address); err != nil {
			return configErr("milvus.address", "%q is not host:port (Milvus's gRPC port, usually 19530): %v", m.Address, err)
		}
	}
	if !milvusCollection.MatchString(m.Collection) {
		return configErr("milvus.collection", "%q: want a letter or _ then letters, digits or _ (at most 48: model versions are appended)", m.Collection)
	}
	if !slices.Contains([]string{milvus.LayoutAuto, milvus.LayoutSingle, milvus.LayoutSplit}, m.Layout) {
		return configErr("milvus.layout", "%q is not auto, single or split", m.Layout)
	}
	if !slices.Contains([]string{"strong", "bounded", "session", "eventually"}, strings.ToLower(m.Consistency)) {
		return configErr("milvus.consistency", "%q is not Strong, Bounded, Session or Eventually", m.Consistency)
	}
	if m.WriteConsistency != "Bounded" && m.WriteConsistency != "Strong" {
		return configErr("milvus.write_consistency", "%q is not Bounded or Strong", m.WriteConsistency)
	}
	if m.FenceWindow < 0 {
		return configErr("milvus.fence_window", "must not be negative")
	}
	if m.StaleWindow < 5*time.Second {
		return configErr("milvus.stale_window", "%s must be at least 5s (Milvus's default common.gracefulTime)", m.StaleWindow)
	}
	if !slices.Contains([]string{milvus.IndexFlat, milvus.IndexIVFFlat, milvus.IndexHNSW}, strings.ToUpper(m.IndexType)) {
		return configErr("milvus.index_type", "%q is not FLAT, IVF_FLAT or HNSW", m.IndexType)
	}
	if !slices.Contains([]string{milvus.IndexBinFlat, milvus.IndexBinIVFFlat}, strings.ToUpper(m.CodeIndex)) {
		return configErr("milvus.code_index_type", "%q is not BIN_FLAT or BIN_IVF_FLAT", m.CodeIndex)
	}
	for _, p := range []struct {
		key string
		v   int
	}{{"milvus.nlist", m.NList}, {"milvus.nprobe", m.NProbe}, {"milvus.hnsw_m", m.HNSWM}, {"milvus.hnsw_ef_construction", m.HNSWEfC},
		{"milvus.ef", m.EF}, {"milvus.exact_ef", m.ExactEF}, {"milvus.hybrid_candidates", m.Candidates}, {"milvus.batch_size", m.BatchSize},
		{"milvus.retries", m.Retries}, {"milvus.shards", m.Shards}, {"milvus.rounds", m.Rounds}} {
		if p.v < 1 {
			return configErr(p.key, "%d must be at least 1", p.v)
		}
	}
	if m.NProbe > m.NList {
		return configErr("milvus.nprobe", "%d exceeds milvus.nlist %d", m.NProbe, m.NList)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"milvus.dial_timeout", m.DialTimeout}, {"milvus.start_timeout", m.StartTimeout}, {"milvus.call_timeout", m.CallTimeout},
		{"milvus.load_timeout", m.LoadTimeout}, {"milvus.retry_backoff", m.RetryBackoff}, {"milvus.retry_max_backoff", m.RetryMaxBackoff}} {
		if d.v <= 0 {
			return configErr(d.key, "must be positive")
		}
	}
	if m.Replicas < 0 {
		return configErr("milvus.replicas", "%d must not be negative", m.Replicas)
	}
	if m.Linger < 0 {
		return configErr("milvus.linger", "must not be negative")
	}
	if m.StartTimeout < m.DialTimeout {
		return configErr("milvus.start_timeout", "%s is shorter than milvus.dial_timeout %s", m.StartTimeout, m.DialTimeout)
	}
	if err := bothOrNeither("milvus.username", m.Username, "milvus.password", m.Password); err != nil {
		return err
	}
	return nil
}

// validateRole checks that the configuration gives role the services it needs
// and nothing that contradicts it. The message names the key to set.
func (c *Config) validateRole(r role) error {
	if r != roleRun {
		if c.Milvus.Address == "" {
			return configErr("milvus.address", "xmodal %s needs Milvus: the embedded index belongs to one process (xmodal run); set milvus.address (env XMODAL_MILVUS_ADDRESS, flag --milvus-address)", r)
		}
		if c.HTTP.Listen == "" {
			return configErr("http.listen", "xmodal %s serves /metrics, /healthz and /readyz there; it must not be empty", r)
		}
		if c.NATS.ServerConfig != "" {
			return configErr("nats.server_config", "configures the embedded NATS server, which only xmodal run starts; xmodal %s connects to nats.url", r)
		}
	}
	switch r {
	case roleIndexer:
		if c.NATS.URL == "" {
			return configErr("nats.url", "xmodal indexer needs an outside NATS server with JetStream: the deny-list every process shares lives there (and, without kafka.brokers, the ingest stream); the embedded NATS server belongs to xmodal run")
		}
		if c.Milvus.FollowAlias {
			return configErr("milvus.follow_alias", "an indexer writes its own model's collection; follow_alias is for xmodal serve")
		}
	case roleServe:
		if c.NATS.URL == "" {
			return configErr("nats.url", "xmodal serve answers queries over NATS and needs an outside NATS server (the embedded one belongs to xmodal run)")
		}
	case roleRun:
		if c.Milvus.FollowAlias {
			return configErr("milvus.follow_alias", "xmodal run indexes and writes its own model's collection; follow_alias is for xmodal serve")
		}
	}
	return nil
}
