package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/xmodal/xmodal/encoders/imageprep"
	"github.com/xmodal/xmodal/ingest"
	kafkasrc "github.com/xmodal/xmodal/ingest/kafka"
	"github.com/xmodal/xmodal/internal/clusters"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/sink/embedded"
	"github.com/xmodal/xmodal/workers"
)

// Config is the whole configuration of the binary. Each leaf has a key (the YAML
// path joined with dots), an env name (XMODAL_ + the key in upper case with _ for
// . and -), and a flag (--the-key-with-dashes). Precedence: defaults < YAML file
// < env < flags.
type Config struct {
	DataDir string `yaml:"data_dir" help:"folder for the embedded index, JetStream and other state"`
	Model   string `yaml:"model" help:"model directory (manifest + ONNX files); empty uses the bundled demo model"`
	ORT     struct {
		Lib            string `yaml:"lib" help:"path of libonnxruntime.so (default: XMODAL_ORT_LIB or .cache/ort/*/ from scripts/ort-setup.sh)"`
		IntraOpThreads int    `yaml:"intra_op_threads" help:"ONNX Runtime threads inside one operator (0: ORT default)"`
		InterOpThreads int    `yaml:"inter_op_threads" help:"ONNX Runtime threads across operators (0: ORT default)"`
		Provider       string `yaml:"provider" help:"execution provider: cpu, cuda or tensorrt"`
		Sessions       int    `yaml:"sessions" help:"ONNX Runtime sessions per tower, each with its own thread pools (intra_op_threads each); concurrent model calls are spread over them"`
	} `yaml:"ort"`
	NATS struct {
		Listen   string `yaml:"listen" help:"address of the embedded NATS server"`
		URL      string `yaml:"url" help:"an outside NATS server to use instead of the embedded one (also what the client commands connect to)"`
		User     string `yaml:"user" help:"NATS user name"`
		Password string `yaml:"password" secret:"true" help:"NATS password"`
		// InboxPrefix: docs/security.md, client.InboxPrefix.
		InboxPrefix string `yaml:"inbox_prefix" help:"subject prefix of this connection's reply inboxes (empty: _INBOX_<nats.user> when a user is set, else _INBOX); deploy/nats lets each user subscribe to its own prefix only"`
		// Security (docs/security.md).
		ServerConfig string `yaml:"server_config" help:"nats-server config file for the embedded server (users, nkeys, permissions, tls); see docs/security.md"`
		NkeySeedFile string `yaml:"nkey_seed_file" help:"file holding this client's NATS nkey seed (SU...) to authenticate with"`
		TLSCAFile    string `yaml:"tls_ca_file" help:"PEM CAs that sign the NATS server's certificate (enables TLS to NATS)"`
		TLSCertFile  string `yaml:"tls_cert_file" help:"client certificate for NATS mutual TLS"`
		TLSKeyFile   string `yaml:"tls_key_file" help:"client key for NATS mutual TLS"`
	} `yaml:"nats"`
	Ingest struct {
		BatchSize        int           `yaml:"batch_size" help:"most posts per source fetch and per sink write"`
		FetchWait        time.Duration `yaml:"fetch_wait" help:"longest wait for a source fetch to fill"`
		EncodeBatch      int           `yaml:"encode_batch" help:"most inputs of one modality per model call (dynamic batching)"`
		EncodeWait       time.Duration `yaml:"encode_wait" help:"longest the first input of a model batch waits for others before a free encoder takes it (a batch no encoder takes at once keeps growing to encode_batch)"`
		Encoders         int           `yaml:"encoders" help:"model calls run at once (pair with ort.sessions)"`
		Writers          int           `yaml:"writers" help:"index writes in flight at once (0: auto, 1 with the embedded index, whose writes are serial, and with Milvus enough to fill a write round, milvus.batch_size / batch_size (at least 8 and 2 × milvus.rounds), whose writer coalesces the writes that wait into rounds (more writes waiting make bigger rounds, and the server's work per row falls with the round's size); auto with Milvus also raises ingest.max_inflight to at least 4 × writers × batch_size (2,048 by default), so that the writes in flight do not starve the encoders: each post in flight holds its message, inline images included: ingest.max_inflight_mb bounds their bytes)"`
		MaxInFlight      int           `yaml:"max_inflight" help:"most posts between fetch and acknowledgement; at the limit fetching pauses (backpressure from a slow encoder or sink)"`
		MaxInFlightMB    int           `yaml:"max_inflight_mb" help:"most megabytes of messages between fetch and acknowledgement (0: no bound); at the limit fetching pauses (a fetch may pass it by up to batch_size messages). Each post in flight is kept whole until acknowledged (inline images included), so with large images this bounds the memory that max_inflight would not"`
		MediaConcurrency int           `yaml:"media_concurrency" help:"media workers: image fetch, decode, thumbnail, PDQ and model preprocessing, in parallel with encoding"`
		MaxAttempts      int           `yaml:"max_attempts" help:"deliveries of one post before it is dead-lettered as poison"`
		AckWait          time.Duration `yaml:"ack_wait" help:"how long an unacknowledged post waits before redelivery (after a crash); posts in flight are kept alive"`
		AllowPrivate     []string      `yaml:"allow_private" help:"CIDRs or host names image URLs may resolve to despite the SSRF guard (tests, private CDNs)"`
	} `yaml:"ingest"`
	Image struct {
		DecodeMode         string `yaml:"decode_mode" help:"fast: JPEGs are reduced in libjpeg-turbo's IDCT (1/2, 1/4, 1/8) to what the model, the thumbnail and PDQ need, as Pillow's Image.draft does; exact: every image at full size (model inputs identical to CLIPImageProcessor on Pillow's full decode). Ingest and queries use the same mode; records name it"`
		DecodeMemoryMB     int    `yaml:"decode_memory_mb" help:"bound on the memory of the image decodes in flight, across media workers and queries (MiB): a decode waits for room; one image needing more than all of it is refused (dead letter, or 413)"`
		KeepMD5            bool   `yaml:"keep_md5" help:"compute every image file's MD5 at ingest and keep it with the record (16 bytes; embedded index only), so that md5 entries added to a bank later are swept through the posts already indexed (HMA's photo_md5 lists); off by default: an MD5 costs about 1.5 ms of CPU per MB of image file. Without it an image's MD5 is computed, and kept, only while an enabled bank holds md5 entries"`
		NearDupWindows     bool   `yaml:"neardup_windows" help:"index each image's near-duplicate windows (hashes of squares anchored on pairs of blobs, docs/neardup.md) so that xmodal.v1.neardup finds crops that whole-image PDQ misses. The embedded index stores them with the record; a Milvus deployment (whose rows keep whole-image PDQ) in JetStream, where every serving process keeps a copy in memory to search (sink/sharedwindows; an indexer that does not serve keeps the file, about 5 KB an image on disk, but builds no tables), so its serving processes need the heap below too. Off by default because of its cost: about 2-2.5 ms of CPU per image at ingest (1.1-1.6 ms before the cleaned hash; with that, small photos with the demo model lost a quarter of their throughput: bench/results/ingest-peer-windows-on.txt, neardup-index-cost-cleaned.txt), up to 3.3 KB of store and about 10.5 KB of heap per image record (64 windows since 2026-12-05; 2.7 and 8.9 KB with 48); it also stores each image's area hash, which finds downscaled copies whose PDQ hash moved, and its cleaned hash, which finds watermarked copies"`
		NearDupWholeBand   int    `yaml:"neardup_whole_band" help:"with neardup_windows: the reach in bits of the pixel-verified whole-image match, which finds copies whose whole-image PDQ hash moved beyond 31 bits (a watermark across the picture, JPEG 30 of a small photo, a brightened dark photo) when the query laid over the whole original agrees with its stored patch; 0 takes the default (56), -1 turns it off. At a million images it adds about 3-4 ms to a lookup at the median and finds 1.4 % more of the benchmark's re-posts; 48 costs about half of that for most of the gain (docs/neardup.md)"`
		NearDupExactLookup bool   `yaml:"neardup_exact_lookup" help:"with neardup_windows: make the lookup's two approximate multi-index searches exact: the window search's first stage (by default the indexed windows within 24 bits of a query window that agree with it exactly on one 25-bit chunk, 26 times fewer probes than the exact search within 19 bits) and the pixel-verified whole-image band (by default each chunk probed within 2 bits instead of 4). The whole-image search within 31 bits (plain PDQ) is exact either way. At a million images the default lookup's CPU p99 was 4.3-4.5 ms against 20.1-21.7 exact, and it found more of the benchmark's re-posts (0.9715 against 0.9687); the 10k eval's recall was the same or higher (docs/neardup.md)"`
		NearDupSeedWindows int    `yaml:"neardup_seed_windows" help:"with neardup_windows: how many of a query's windows per plane (the best ranked) seed the window search; 0 seeds every one. Fewer make lookups in a large index faster and find fewer re-posts: at a million images 48 cut the lookup's CPU p99 from 20.6 to 6.8-10.1 ms and its finds from 0.9003 to 0.8946 (bench/results/neardup-lookup-1m-seedwin48.txt); in xmodal eval neardup at 1,000 originals, recall@1 of two-edit re-posts fell from 0.918 to 0.896 (generated) and 0.783 to 0.768 (real). Since queries also search at 0.9 of the working size (light crops; a third more windows), 48 at a million images found 0.9658 against 0.9687 with every window seeding and 0.9373 before those planes, at a CPU p50 of 11.2 ms against 18.6 and 14.2 (one interleaved sitting; docs/neardup.md)"`
		PDQMinSide         int    `yaml:"pdq_min_side" help:"fast mode: PDQ hashes a JPEG decode reduced in the IDCT to no fewer than this many pixels on the shorter side (or the full image), decoding once at that scale when the model needs fewer, and hashes it as the full-size image it stands for (the full image's filter geometry, pdq.Grid): within 10 bits of the full-resolution hash on the benchmark photos at 500 (1/4 of a 3000x2000 photo); 375 and 250 (1/8) stray up to 22 bits on fine textures. 0 hashes the model's decode (cheapest; up to 22 bits off)"`
	} `yaml:"image"`
	Kafka struct {
		Brokers        []string      `yaml:"brokers" help:"Kafka bootstrap brokers (host:port,...); set to ingest from Kafka instead of the embedded JetStream stream"`
		Topic          string        `yaml:"topic" help:"topic of posts (key = post id, null value = tombstone)"`
		Group          string        `yaml:"group" help:"consumer group id"`
		DLQTopic       string        `yaml:"dlq_topic" help:"dead-letter topic (default <topic>.dlq)"`
		EventsTopic    string        `yaml:"events_topic" help:"topic of the match events (moderation banks), keyed by post id with the event id in the Xmodal-Event-Id header; created when missing (default <topic>.match-events)"`
		SASLMechanism  string        `yaml:"sasl_mechanism" help:"SASL mechanism: plain, scram-sha-256 or scram-sha-512 (empty: none)"`
		SASLUser       string        `yaml:"sasl_user" help:"SASL user"`
		SASLPassword   string        `yaml:"sasl_password" secret:"true" help:"SASL password"`
		TLS            bool          `yaml:"tls" help:"connect with TLS (system roots unless tls_ca_file)"`
		TLSCAFile      string        `yaml:"tls_ca_file" help:"PEM file of the CAs that sign the brokers' certificates"`
		TLSCertFile    string        `yaml:"tls_cert_file" help:"client certificate for mutual TLS"`
		TLSKeyFile     string        `yaml:"tls_key_file" help:"client key for mutual TLS"`
		SessionTimeout time.Duration `yaml:"session_timeout" help:"consumer group session timeout (at least 6s)"`
		CommitInterval time.Duration `yaml:"commit_interval" help:"how often acknowledged offsets are committed"`
	} `yaml:"kafka"`
	Banks struct {
		Calibration       string  `yaml:"calibration" help:"JSON file of the model's noise floors written by 'xmodal bank calibrate': a bank's embedding thresholds below them are refused; without it embedding thresholds are refused"`
		MatchRegions      bool    `yaml:"match_regions" help:"at ingest, match each image post's content rectangles (the picture inside a meme's caption band, a screenshot's frame, borders) and its cleaned hash (a watermark suppressed) against the banks' PDQ entries too, as xmodal.v1.match does for a lookup, so that memes, screenshots and watermarked copies of banked images make match events (region: content or cleaned), at ingest and, on the embedded index, in retro sweeps of the posts indexed before an entry; costs about 2 ms of CPU an image for the region hashes, which clusters.regions computes anyway; while an enabled bank holds entries added with crops (their windows), each image post's windows are matched too, as a lookup's are, so that crops of those images make events (region: window), at about 18 ms more CPU an image (the query's hashes and their search; measured with the demo model: bench/results/banks-crops-ingest.txt) and 0.2-0.9 MB of memory an image between its hashing and its write (docs/moderation.md)"`
		WindowBlockPixels float64 `yaml:"window_block_pixels" help:"least pixel value (the pixel check's correlation of the post with the banked image over the part it shows, 1 for an exact crop) at which a crop found by windows at ingest takes the post down in a bank whose action is block; below it the event is recorded with action review (0: 0.9)"`
	} `yaml:"banks"`
	Query struct {
		Timeout     time.Duration `yaml:"timeout" help:"per-request deadline"`
		Concurrency int           `yaml:"concurrency" help:"requests handled at once; more get 429"`
		Cache       bool          `yaml:"cache" help:"cache search replies (Redis when redis.addr is set, else an in-process LRU)"`
		CacheTTL    time.Duration `yaml:"cache_ttl" help:"how long a cached search reply lives"`
		CacheSize   int           `yaml:"cache_size" help:"entries of the in-process LRU (used when no redis.addr)"`
	} `yaml:"query"`
	Redis struct {
		Addr        string        `yaml:"addr" help:"Redis host:port for the query cache (empty: in-process LRU)"`
		Username    string        `yaml:"username" help:"Redis ACL user (empty: default user)"`
		Password    string        `yaml:"password" secret:"true" help:"Redis password (AUTH / requirepass)"`
		DB          int           `yaml:"db" help:"Redis database number"`
		TLS         bool          `yaml:"tls" help:"connect to Redis with TLS (system roots unless tls_ca_file)"`
		TLSCAFile   string        `yaml:"tls_ca_file" help:"PEM CAs that sign Redis's certificate"`
		TLSCertFile string        `yaml:"tls_cert_file" help:"client certificate for Redis mutual TLS"`
		TLSKeyFile  string        `yaml:"tls_key_file" help:"client key for Redis mutual TLS"`
		Timeout     time.Duration `yaml:"timeout" help:"bound on each Redis call; past it the query is answered without the cache"`
	} `yaml:"redis"`
	HTTP struct {
		Listen     string `yaml:"listen" help:"address for the search page, the JSON gateway (/v1/...), /metrics, /healthz and /readyz (empty disables)"`
		AdminToken string `yaml:"admin_token" secret:"true" help:"bearer token required by /v1/admin/... (empty: admin operations over HTTP are off)"`
		PostURL    string `yaml:"post_url" help:"link to a post on its platform, {id} replaced by the post id (e.g. https://social.example/p/{id}); the search page links each result to it (empty: no link)"`
		// Deadlines of one HTTP request (query.HTTPConfig).
		HeaderTimeout time.Duration `yaml:"header_timeout" help:"longest a client may take to send a request's line and headers; then the connection closes"`
		BodyTimeout   time.Duration `yaml:"body_timeout" help:"longest a client may take to send a request body after its headers; then the reply is 408 and the connection closes"`
	} `yaml:"http"`
	Log struct {
		Level  string `yaml:"level" help:"debug, info, warn or error"`
		Format string `yaml:"format" help:"text or json"`
	} `yaml:"log"`
	Clusters struct {
		Enabled    bool          `yaml:"enabled" help:"keep near-duplicate clusters of image posts at ingest (docs/clusters.md): in the embedded index, or, on Milvus, in a copy every process of the deployment keeps, replicated through JetStream (stream XMODAL_STATE_CLUSTERS-<collection>-<options>)"`
		Threshold  int           `yaml:"threshold" help:"two images link when their whole-image PDQ hashes differ in at most this many bits (1..256); a change rebuilds the clusters on start"`
		Bucket     time.Duration `yaml:"bucket" help:"granularity of the per-window member counts that trending reads (trending windows are whole buckets)"`
		Retention  time.Duration `yaml:"retention" help:"per-window counts older than this before a cluster's newest member are dropped (the longest trending window is half of it)"`
		SplitLimit int           `yaml:"split_limit" help:"a takedown recomputes its cluster's components (a split where it was the only link) up to this many members; larger clusters stay whole until xmodal dedup --apply"`
		Dihedral   bool          `yaml:"dihedral" help:"also link mirrored and rotated copies of an image, by the canonical one of its eight dihedral PDQ hashes (computed from the same DCT; 32 bytes a record in memory and store); records indexed without it link by their PDQ hash alone; a change rebuilds the clusters on start"`
		Regions    bool          `yaml:"regions" help:"also link an image by the PDQ hashes of its content rectangles (the picture inside a meme's caption band, a screenshot's frame or letterbox bars), so that memes and screenshots join their picture's cluster; a screenshot (picture under half of it) then links by its picture alone, or not at all when its picture is too flat to hash; and by the cleaned hash of its picture (bright thin overlays such as a watermark suppressed), so that watermarked copies join too. On the re-post benchmark it raises the share of re-posts clustered with their original from 0.665 to 0.800 (single edits) and 0.141 to 0.537 (two edits) at precision 0.9999 (with windows on too, since 2026-12-04: 0.998 single edits, above the lookup's 0.992, at precision 1.0000; docs/clusters.md); it costs about 2 ms of CPU a 640 x 480 image and 32-224 bytes a record; records indexed without it link by their other hashes; a change rebuilds the clusters on start"`
		Windows    bool          `yaml:"windows" help:"also link an image by its near-duplicate windows (needs image.neardup_windows), so that crops join their picture's cluster: two images link when a window of one lies within 19 bits of a window of the other and the window check (placement, pixels) accepts the pair, using only windows inside each image's content rectangle (caption lettering and app chrome look alike in every meme) and also the windows of each image drawn at 0.75 of the working size (so that a crop and its picture meet) and of its content rectangle drawn at the working size (so that a screenshot and its picture meet). On the re-post benchmark, with regions on too, it raises the share of re-posts clustered with their original from 0.800 to 0.981 (single edits) and 0.537 to 0.966 (two edits) at pairwise precision 0.998 (docs/clusters.md); it costs about 2.6 ms of CPU a post at ingest besides image.neardup_windows' own (throughput 0.56 of that with the demo model), about 2-4 KB more of stored windows and 4.5 KB a member row, and a second copy of the windows in memory; a change rebuilds the clusters on start. On Milvus the shared clusters' signatures carry the windows (about 4.5 KB a post in their stream), and a rebuild from the Milvus rows reads them from the deployment's shared windows"`
		Text       bool          `yaml:"text" help:"also cluster text-only posts whose normalised texts are equal (copied texts trend too); a change rebuilds the clusters on start"`
	} `yaml:"clusters"`
	// Milvus and roles: roles.go.
	Milvus        MilvusConfig  `yaml:"milvus"`
	ShutdownGrace time.Duration `yaml:"shutdown_grace" help:"on SIGTERM, how long the posts in flight may take to finish (then the rest are abandoned, unacknowledged) and HTTP requests to drain; keep Kubernetes' terminationGracePeriodSeconds above it"`
}

// clone is a copy of c that can be changed without changing c (no leaf
// shares memory that a change writes).
func (c *Config) clone() *Config {
	cp := *c
	return &cp
}

// DefaultConfig returns the embedded defaults: the packages' own
// (their WithDefaults) where a key configures a package.
func DefaultConfig() *Config {
	c := &Config{DataDir: "xmodal-data"}
	c.ORT.Provider = "cpu"
	c.NATS.Listen = "127.0.0.1:4333"
	w := workers.Config{}.WithDefaults()
	c.Ingest.BatchSize = w.BatchSize
	c.Ingest.FetchWait = w.FetchWait
	c.Ingest.EncodeBatch = w.EncodeBatch
	c.Ingest.EncodeWait = w.EncodeWait
	c.Ingest.Encoders = w.Encoders
	c.Ingest.MaxInFlight = w.MaxInFlight
	c.Ingest.MaxInFlightMB = DefaultMaxInFlightMB
	c.Ingest.MediaConcurrency = w.MediaConcurrency
	c.ORT.Sessions = 1
	c.Ingest.MaxAttempts = w.MaxAttempts
	c.Ingest.AckWait = ingest.JetStreamConfig{}.WithDefaults().AckWait
	c.Image.DecodeMode = "fast"
	c.Image.DecodeMemoryMB = 1024
	c.Image.PDQMinSide = imageprep.DefaultHashSide
	c.Kafka.Topic = "posts"
	c.Kafka.Group = "xmodal-indexer"
	k := kafkasrc.Config{}.WithDefaults()
	c.Kafka.SessionTimeout = k.SessionTimeout
	c.Kafka.CommitInterval = k.CommitInterval
	q, h := query.Config{}.WithDefaults(), query.HTTPConfig{}.WithDefaults()
	c.Query.Timeout = q.Timeout
	c.HTTP.HeaderTimeout = h.ReadHeaderTimeout
	c.HTTP.BodyTimeout = h.BodyTimeout
	c.Query.Concurrency = q.Concurrency
	c.Query.Cache = true
	c.Query.CacheTTL = query.RedisOptions{}.WithDefaults().TTL
	c.Query.CacheSize = 10000
	c.Redis.Timeout = query.RedisOptions{}.WithDefaults().Timeout
	c.HTTP.Listen = "127.0.0.1:9464"
	c.Log.Level = "info"
	c.Log.Format = "text"
	c.Clusters.Enabled = true
	c.Clusters.Threshold = embedded.DefaultClusterThreshold
	c.Clusters.Dihedral = true
	c.Clusters.Bucket = clusters.DefaultBucket
	c.Clusters.Retention = clusters.DefaultRetention
	c.Clusters.SplitLimit = clusters.DefaultSplitLimit
	defaultMilvus(&c.Milvus)
	c.ShutdownGrace = 20 * time.Second
	return c
}

// leaf is one configurable value.
type leaf struct {
	key    string
	help   string
	secret bool // a password or token: `config print` redacts it
	v      reflect.Value
}

func (l leaf) env() string {
	return "XMODAL_" + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(l.key))
}

func (l leaf) flag() string { return strings.NewReplacer(".", "-", "_", "-").Replace(l.key) }

func leaves(c *Config) []leaf {
	var out []leaf
	var walk func(v reflect.Value, prefix string)
	walk = func(v reflect.Value, prefix string) {
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			key := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if prefix != "" {
				key = prefix + "." + key
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
				walk(v.Field(i), key)
				continue
			}
			out = append(out, leaf{key: key, help: f.Tag.Get("help"), secret: f.Tag.Get("secret") == "true", v: v.Field(i)})
		}
	}
	walk(reflect.ValueOf(c).Elem(), "")
	return out
}

// set parses s into the leaf's value.
func (l leaf) set(s string) error {
	switch l.v.Interface().(type) {
	case string:
		l.v.SetString(s)
	case int:
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		l.v.SetInt(int64(n))
	case float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return fmt.Errorf("%q is not a number", s)
		}
		l.v.SetFloat(f)
	case bool:
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		l.v.SetBool(b)
	case time.Duration:
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("%q is not a duration (e.g. 250ms, 5s)", s)
		}
		l.v.SetInt(int64(d))
	case []string:
		var xs []string
		for _, x := range strings.Split(s, ",") {
			if x = strings.TrimSpace(x); x != "" {
				xs = append(xs, x)
			}
		}
		l.v.Set(reflect.ValueOf(xs))
	default:
		return fmt.Errorf("unsupported type %s", l.v.Type())
	}
	return nil
}

func (l leaf) String() string {
	switch x := l.v.Interface().(type) {
	case []string:
		return strings.Join(x, ",")
	default:
		return fmt.Sprint(x)
	}
}

// leafFlag is the typed flag of one leaf: it parses with the leaf's own rules
// into a value of its own (the flag layer), applied by loadConfig after the
// file and the environment. A list flag appends when repeated (--x a --x b,
// or --x a,b); a bool flag alone means true (--kafka-tls).
type leafFlag struct {
	l       leaf
	changed bool
}

func (f *leafFlag) String() string { return f.l.String() }

func (f *leafFlag) Set(s string) error {
	prev, isList := f.l.v.Interface().([]string)
	if err := f.l.set(s); err != nil {
		return fmt.Errorf("%w (config %s)", err, f.l.key)
	}
	if isList && f.changed {
		f.l.v.Set(reflect.ValueOf(append(slices.Clone(prev), f.l.v.Interface().([]string)...)))
	}
	f.changed = true
	return nil
}

// Type is the value's name in the help (--ingest-batch-size int).
func (f *leafFlag) Type() string {
	switch f.l.v.Interface().(type) {
	case int:
		return "int"
	case float64:
		return "float"
	case bool:
		return "bool"
	case time.Duration:
		return "duration"
	case []string:
		return "strings"
	default:
		return "string"
	}
}

// scope names the configuration sections (the first segment of a key:
// "nats", "ingest", "data_dir") whose flags a command takes: only these, or
// all but except; none: no configuration at all (a command that reads
// none). The zero scope is every section.
type scope struct {
	only, except []string
	none         bool
}

func (s scope) has(key string) bool {
	if s.none {
		return false
	}
	section, _, _ := strings.Cut(key, ".")
	if len(s.only) > 0 && !slices.Contains(s.only, section) {
		return false
	}
	return !slices.Contains(s.except, section)
}

// configFlags registers --config and the typed flag of every leaf in the
// scope on fs. The help prints each default once, from the flag's value.
func configFlags(fs *pflag.FlagSet, sc scope) {
	if sc.none {
		return
	}
	fs.String("config", "", "YAML config file (env XMODAL_CONFIG)")
	for _, l := range leaves(DefaultConfig()) {
		if !sc.has(l.key) {
			continue
		}
		fl := fs.VarPF(&leafFlag{l: l}, l.flag(), "", fmt.Sprintf("%s (env %s)", l.help, l.env()))
		if _, ok := l.v.Interface().(bool); ok {
			fl.NoOptDefVal = "true"
		}
	}
}

// LookupEnv is os.LookupEnv's signature: a variable set to the empty string
// is set (XMODAL_HTTP_LISTEN= turns the HTTP server off).
type lookupEnv func(string) (string, bool)

// loadConfig builds the effective config: defaults, the YAML file, the
// environment, then flags that were set.
func loadConfig(fs *pflag.FlagSet, env lookupEnv) (*Config, error) {
	c := DefaultConfig()
	path, _ := env("XMODAL_CONFIG")
	if f := fs.Lookup("config"); f != nil && f.Changed {
		path = f.Value.String()
	}
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config file: %w", err)
		}
		if err := decodeYAML(b, c); err != nil {
			return nil, fmt.Errorf("config file %s: %w", path, err)
		}
	}
	for _, l := range leaves(c) {
		if s, ok := env(l.env()); ok {
			if err := l.set(s); err != nil {
				return nil, fmt.Errorf("config %s (env %s): %w", l.key, l.env(), err)
			}
		}
		if f := fs.Lookup(l.flag()); f != nil && f.Changed {
			lf, ok := f.Value.(*leafFlag)
			if !ok {
				return nil, fmt.Errorf("config %s: flag --%s is not a configuration flag", l.key, l.flag())
			}
			l.v.Set(lf.l.v)
		}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// otherEnv are the XMODAL_* variables that are not configuration keys but are
// read on purpose: by the shipped NATS server configurations (deploy/nats),
// by the tests and benchmarks, and by scripts. unknownEnv warns about any
// other, which is most likely a typo of a key.
var otherEnv = []string{
	"XMODAL_CONFIG",
	"XMODAL_*_PASSWORD", "XMODAL_*_NKEY", "XMODAL_ADMIN_TOKEN", // deploy/nats configurations
	"XMODAL_NATS_CA", "XMODAL_NATS_CERT", "XMODAL_NATS_KEY", // deploy/nats TLS
	"XMODAL_TEST_*", "XMODAL_BENCH_*", "XMODAL_*BENCH_*", "XMODAL_*BENCH", "XMODAL_E2E_*", // tests and benchmarks
	"XMODAL_CLUSTERQUALITY_*", "XMODAL_BANKIMPORT_*", "XMODAL_*_CHILD", // measurement harnesses, crash tests' children
	"XMODAL_UPDATE_DOCS", "XMODAL_SCREENSHOT_DIR", "XMODAL_TOKENIZER_GOLDENS",
	"XMODAL_SYNTH_SAMPLES", "XMODAL_ND_*", "XMODAL_CRASH_AT", "XMODAL_VERSION",
}

// unknownEnv returns the XMODAL_* names in environ (KEY=value lines) that are
// neither a configuration key nor in otherEnv.
func unknownEnv(environ []string) []string {
	known := map[string]bool{}
	for _, l := range leaves(DefaultConfig()) {
		known[l.env()] = true
	}
	var out []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "XMODAL_") || known[k] {
			continue
		}
		if !slices.ContainsFunc(otherEnv, func(pat string) bool { ok, _ := path.Match(pat, k); return ok }) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// decodeYAML decodes strictly: an unknown key refuses to start, naming it.
func decodeYAML(b []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		if kerr := yamlKeyError(b); kerr != nil { // config_keys.go: one line, the dotted key
			return kerr
		}
		if terr := yamlTypeError(b); terr != nil {
			return terr
		}
		return err
	}
	return nil
}

// printConfig writes the effective config as YAML, secrets redacted (a set
// password prints as "<redacted>", an unset one as "").
func printConfig(w io.Writer, c *Config) error {
	c = c.clone()
	for _, l := range leaves(c) {
		if l.secret && l.v.String() != "" {
			l.v.SetString("<redacted>")
		}
	}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return err
	}
	return enc.Close()
}

// printReference writes a Markdown table of every option.
func printReference(w io.Writer) {
	fmt.Fprintln(w, "| key | env | flag | default | meaning |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, l := range leaves(DefaultConfig()) {
		fmt.Fprintf(w, "| `%s` | `%s` | `--%s` | `%s` | %s |\n", l.key, l.env(), l.flag(), l.String(), l.help)
	}
}

// kafkaConfig is the kafka.* section as ingest/kafka's Config (the consumer's
// settings; producers and the dlq command use its connection part).
func (c *Config) kafkaConfig() kafkasrc.Config {
	k := c.Kafka
	return kafkasrc.Config{Brokers: k.Brokers, Topic: k.Topic, Group: k.Group, DLQTopic: k.DLQTopic,
		SASL:           kafkasrc.SASL{Mechanism: k.SASLMechanism, User: k.SASLUser, Password: k.SASLPassword},
		TLS:            kafkasrc.TLS{Enable: k.TLS, CAFile: k.TLSCAFile, CertFile: k.TLSCertFile, KeyFile: k.TLSKeyFile},
		SessionTimeout: k.SessionTimeout, CommitInterval: k.CommitInterval}
}

// kafkaKeys names the configuration key of each ingest/kafka Config field a
// connection can refuse.
var kafkaKeys = map[string]string{"SASL.Mechanism": "kafka.sasl_mechanism", "SASL.User": "kafka.sasl_user",
	"TLS.CAFile": "kafka.tls_ca_file", "TLS.CertFile": "kafka.tls_cert_file"}

// kafkaConnect builds the connection to kafka.brokers (SASL, TLS) of a client
// named clientID; the returned Config has its defaults applied.
func kafkaConnect(c *Config, clientID string) (kafkasrc.Config, *kafkasrc.Connection, error) {
	kc := c.kafkaConfig()
	kc.ClientID = clientID
	kc = kc.WithDefaults()
	conn, err := kc.Connect()
	var ce *kafkasrc.ConfigError
	if errors.As(err, &ce) && kafkaKeys[ce.Field] != "" {
		return kc, nil, fmt.Errorf("config %s: %s", kafkaKeys[ce.Field], ce.Reason)
	}
	return kc, conn, err
}
