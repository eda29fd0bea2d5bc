package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/hash"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/internal/clusters"
	"github.com/xmodal/xmodal/internal/replstate"
	"github.com/xmodal/xmodal/sink/embedded"
	"github.com/xmodal/xmodal/sink/milvus"
	"github.com/xmodal/xmodal/sink/sharedclusters"
	"github.com/xmodal/xmodal/sink/sharedwindows"
)

// role is what one process runs.
type role string

const (
	// roleRun is everything in one process on embedded defaults (each outside
	// service swapped in when configured).
	roleRun role = "run"
	// roleIndexer consumes the source, encodes and writes the index.
	roleIndexer role = "indexer"
	// roleServe answers queries over NATS and the HTTP gateway.
	roleServe role = "serve"
)

func (r role) indexes() bool { return r != roleServe }
func (r role) serves() bool  { return r != roleIndexer }

// MilvusConfig configures the Milvus index (sink/milvus). With no address the
// embedded index is used, which only `xmodal run` may open.
type MilvusConfig struct {
	Address     string `yaml:"address" help:"Milvus gRPC host:port; set to index into Milvus instead of the embedded index (required by xmodal indexer and xmodal serve)"`
	Username    string `yaml:"username" help:"Milvus user (authorization enabled)"`
	Password    string `yaml:"password" secret:"true" help:"Milvus password"`
	DBName      string `yaml:"db_name" help:"Milvus database (empty: default)"`
	Collection  string `yaml:"collection" help:"alias of the live collection and prefix of every collection xmodal creates (<collection>_<model version>...)"`
	FollowAlias bool   `yaml:"follow_alias" help:"xmodal serve only: search the collection the alias points to (model upgrades: deploy the new model, then swap the alias); refused when it holds another model's vectors"`
	Layout      string `yaml:"layout" help:"split (one collection per vector kind; tested on Milvus 2.3.5), single (one collection with several vector fields, Milvus >= 2.4; not yet tested against a server) or auto (single where the server supports it)"`
	Consistency string `yaml:"consistency" help:"consistency of searches: Strong, Bounded, Session or Eventually"`
	// WriteConsistency and StaleWindow: how write rounds read versions (docs/milvus.md).
	WriteConsistency string        `yaml:"write_consistency" help:"consistency of a write round's reads of versions and deny rows: Bounded (merged with the indexer's own writes of the last stale_window; Strong for a stale_window after a Kafka assignment) or Strong (every round waits for a time tick)"`
	StaleWindow      time.Duration `yaml:"stale_window" help:"how long an indexer remembers its own writes (a Bounded read may not show them yet); must exceed Milvus's common.gracefulTime (5s)"`
	FenceWindow      time.Duration `yaml:"fence_window" help:"how long an indexer's write rounds read at a fence timestamp (taken from the server once, after a Kafka assignment) instead of Bounded: the previous owner's last writes may be younger than Milvus's common.gracefulTime; 0 turns it off"`
	IndexType        string        `yaml:"index_type" help:"index of the float vectors: FLAT, IVF_FLAT or HNSW"`
	NList            int           `yaml:"nlist" help:"IVF nlist"`
	NProbe           int           `yaml:"nprobe" help:"IVF nprobe of the ann plan (at most nlist)"`
	HNSWM            int           `yaml:"hnsw_m" help:"HNSW M"`
	HNSWEfC          int           `yaml:"hnsw_ef_construction" help:"HNSW efConstruction"`
	EF               int           `yaml:"ef" help:"HNSW ef of the ann plan (raised to k)"`
	ExactEF          int           `yaml:"exact_ef" help:"HNSW ef of the exact plan (HNSW is never exactly exact)"`
	CodeIndex        string        `yaml:"code_index_type" help:"index of the binary codes: BIN_FLAT or BIN_IVF_FLAT"`
	Candidates       int           `yaml:"hybrid_candidates" help:"C of the hybrid plan when a query gives none"`
	Shards           int           `yaml:"shards" help:"shard count of the records collections when xmodal creates them (a cluster with several data nodes spreads writes over more)"`
	Replicas         int           `yaml:"replicas" help:"in-memory replicas a collection is loaded with (0: the server's default; more query nodes serve more queries with more)"`
	BatchSize        int           `yaml:"batch_size" help:"most rows of one upsert call"`
	Linger           time.Duration `yaml:"linger" help:"how long a write round waits for more batches to join it (up to batch_size rows; a full round starts at once): bigger rounds cost the server less per row, and a post is searchable up to this much later"`
	Rounds           int           `yaml:"rounds" help:"write rounds in flight at once (rounds never share a post)"`
	UpsertOnly       bool          `yaml:"upsert_only" help:"upsert every row; by default the rows of a post Milvus holds nothing of are inserted (less server work) after its versions row is written, except for stale_window after a Kafka assignment"`
	DialTimeout      time.Duration `yaml:"dial_timeout" help:"bound on one connection attempt"`
	// StartTimeout bounds the wait for an unreachable Milvus at start.
	StartTimeout    time.Duration `yaml:"start_timeout" help:"how long start-up waits for Milvus to answer before giving up"`
	CallTimeout     time.Duration `yaml:"call_timeout" help:"bound on one RPC attempt"`
	LoadTimeout     time.Duration `yaml:"load_timeout" help:"bound on loading a collection into memory"`
	Retries         int           `yaml:"retries" help:"retries of an RPC that failed with Unavailable or ResourceExhausted (bounded exponential backoff)"`
	RetryBackoff    time.Duration `yaml:"retry_backoff" help:"first backoff between retries"`
	RetryMaxBackoff time.Duration `yaml:"retry_max_backoff" help:"largest backoff between retries"`
}

// DefaultMilvusLinger is milvus.linger's default for xmodal's roles (the
// sink's own is 0): with the writers ingest.writers' auto gives a Milvus
// indexer, a round waits up to this long to fill milvus.batch_size rows.
// On the indexer benchmark (docs/milvus.md) rounds grew from about 80 posts
// to 430 and the server's CPU per post fell by about a third.
const DefaultMilvusLinger = 100 * time.Millisecond

// defaultMilvus sets the defaults, which are sink/milvus's own (but the
// layout and the linger).
func defaultMilvus(m *MilvusConfig) {
	d := milvus.Options{}.WithDefaults()
	m.Collection = d.Collection
	m.Layout = milvus.LayoutSplit // the layout tested against a real server (Milvus 2.3.5); single is opt-in
	m.Consistency = d.Consistency
	m.WriteConsistency, m.StaleWindow, m.FenceWindow = d.WriteConsistency, d.StaleWindow, d.FenceWindow
	m.IndexType = d.FloatIndex
	m.NList, m.NProbe = d.NList, d.NProbe
	m.HNSWM, m.HNSWEfC, m.EF, m.ExactEF = d.HNSWM, d.HNSWEfC, d.EF, d.ExactEF
	m.CodeIndex = d.CodeIndex
	m.Candidates = d.Candidates
	m.Shards = d.Shards
	m.BatchSize = d.BatchSize
	m.Linger = DefaultMilvusLinger
	m.Rounds = d.Rounds
	m.DialTimeout, m.StartTimeout = d.DialTimeout, d.StartTimeout
	m.CallTimeout, m.LoadTimeout = d.CallTimeout, d.LoadTimeout
	m.Retries, m.RetryBackoff, m.RetryMaxBackoff = d.Retries, d.RetryBackoff, d.RetryMaxBackoff
}

// milvusOptions maps the milvus.* keys onto sink/milvus's options.
func (c *Config) milvusOptions(r role, dim int, version string, codeBits int, log *slog.Logger) milvus.Options {
	m := c.Milvus
	return milvus.Options{Address: m.Address, Username: m.Username, Password: m.Password, DBName: m.DBName,
		Collection: m.Collection, Dim: dim, ModelVersion: version, CodeBits: codeBits,
		FollowAlias: r == roleServe && m.FollowAlias, Layout: m.Layout,
		FloatIndex: m.IndexType, NList: m.NList, NProbe: m.NProbe, HNSWM: m.HNSWM, HNSWEfC: m.HNSWEfC, EF: m.EF, ExactEF: m.ExactEF,
		CodeIndex: m.CodeIndex, Candidates: m.Candidates, Shards: m.Shards, Replicas: m.Replicas, Consistency: m.Consistency,
		WriteConsistency: m.WriteConsistency, StaleWindow: m.StaleWindow, FenceWindow: fenceWindow(m.FenceWindow), BatchSize: m.BatchSize, Linger: m.Linger, Rounds: m.Rounds, UpsertOnly: m.UpsertOnly,
		DialTimeout: m.DialTimeout, StartTimeout: m.StartTimeout, CallTimeout: m.CallTimeout, LoadTimeout: m.LoadTimeout,
		Retries: m.Retries, RetryBackoff: m.RetryBackoff, RetryMaxBackoff: m.RetryMaxBackoff, Logger: log}
}

// fenceWindow maps milvus.fence_window (0: off) to sink/milvus's option (negative: off).
func fenceWindow(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// openIndex opens the index the configuration names: Milvus when milvus.address
// is set, else the embedded index under data_dir. It returns the writer ingest
// uses (for Milvus, one that sets each record's binary code first: the embedded
// index codes records itself).
func (a *app) openIndex(ctx context.Context, coder *hash.Coder) (domain.Writer, error) {
	cfg := a.cfg
	if cfg.Milvus.Address == "" {
		path := filepath.Join(cfg.DataDir, "index.db")
		ix, err := embedded.Open(ctx, embedded.Options{Path: path, Dim: a.model.Dim(),
			ModelVersion: a.model.Version(), Logger: a.log, Coder: indexCoder(coder), Clusters: cfg.clusterOptions(),
			NearDupSeedWindows: cfg.Image.NearDupSeedWindows, NearDupExactLookup: cfg.Image.NearDupExactLookup, NearDupWholeBand: cfg.Image.NearDupWholeBand})
		if err != nil {
			return nil, err
		}
		a.ix = ix
		a.indexDesc = "embedded " + path
		return ix, nil
	}
	bits := -1
	if coder != nil {
		bits = coder.Bits()
	}
	var err error
	mo := cfg.milvusOptions(a.role, a.model.Dim(), a.model.Version(), bits, a.log)
	if coder != nil {
		mo.Coder = coder // records are coded by the index, as the embedded index does
	}
	if cfg.Image.NearDupWindows {
		if a.windows, err = a.openSharedWindows(ctx); err != nil {
			return nil, err
		}
		mo.Windows = a.windows
	}
	ix, err := milvus.Open(ctx, mo)
	if err != nil {
		if a.windows != nil {
			a.windows.Close()
			a.windows = nil
		}
		return nil, milvusOpenError(err, a.model.Version(), a.model.Dim(), bits)
	}
	a.ix = ix
	a.milvus = ix
	a.indexDesc = fmt.Sprintf("milvus %s (server %s, collection %s, layout %s)", cfg.Milvus.Address, ix.ServerVersion(), ix.Collection(), ix.Layout())
	if !cfg.Clusters.Enabled {
		return ix, nil
	}
	if a.clusters, err = a.openSharedClusters(ctx); err != nil {
		return nil, err
	}
	w := sharedclusters.Wrap(ix, a.clusters)
	a.ix = w
	if a.role.indexes() {
		a.seedClusters(w)
	}
	return w, nil
}

// seedClusters rebuilds the shared clusters from the Milvus rows in the
// background when no rebuild has finished on their stream (clusters turned
// on over posts Milvus holds, new clusters options, an interrupted rebuild;
// sharedclusters.Index.SeedIfNeeded); ingest goes on meanwhile. Close stops
// it; the next start runs it again.
func (a *app) seedClusters(w *sharedclusters.Index) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	a.stopSeed, a.seedDone = cancel, done
	go func() {
		defer close(done)
		start := time.Now()
		n, ran, err := w.SeedIfNeeded(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			a.log.Error("near-duplicate clusters: rebuilding from Milvus failed; the next start tries again (or run xmodal milvus rebuild-clusters)", "err", err)
		case err == nil && ran:
			st := w.Clusters().Stats()
			a.log.Info("near-duplicate clusters rebuilt from the Milvus rows", "posts", n, "clusters_of_two_or_more", st.Multi,
				"largest", st.Largest, "took", time.Since(start).Round(time.Millisecond))
		}
	}()
}

// sharedClustersConfig is the shared clusters' configuration of a Milvus
// deployment (clusters.*; docs/clusters.md, "Milvus").
func (c *Config) sharedClustersConfig(log *slog.Logger) sharedclusters.Config {
	k := c.Clusters
	sc := sharedclusters.Config{Dir: filepath.Join(c.DataDir, "clusters"), Threshold: k.Threshold,
		Signer: clusters.Signer{Dihedral: k.Dihedral, Regions: k.Regions, Windows: k.Windows, Text: k.Text},
		Bucket: k.Bucket, Retention: k.Retention, SplitLimit: k.SplitLimit, Logger: log}
	sc.Name = sharedclusters.StateName(c.Milvus.Collection, sc.Fingerprint())
	return sc
}

// openSharedClusters loads the deployment's clusters from JetStream (every
// role holds a copy: the indexers append their write rounds' joins, the
// servers answer cluster, trending and search requests) and follows them.
func (a *app) openSharedClusters(ctx context.Context) (*sharedclusters.Clusters, error) {
	js, err := jetstream.New(a.nc)
	if err != nil {
		return nil, err
	}
	sc := a.cfg.sharedClustersConfig(a.log)
	cl, err := sharedclusters.Open(ctx, js, sc)
	if errors.Is(err, replstate.ErrNoJetStream) {
		return nil, fmt.Errorf("nats.url: %w: a Milvus deployment keeps its near-duplicate clusters in JetStream (or set clusters.enabled: false)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("clusters: %w", err)
	}
	st := cl.Stats()
	a.log.Info("near-duplicate clusters loaded", "state", sc.Name, "members", st.Members, "clusters", st.Clusters, "seq", cl.Seq())
	return cl, nil
}

// openSharedWindows loads the near-duplicate windows of a Milvus
// deployment from JetStream (image.neardup_windows; sink/sharedwindows):
// the indexers append each write round's windows, and every serving
// process keeps a copy to search (an indexer that does not serve keeps
// its file, which a rebuild of the clusters reads, but builds no tables).
func (a *app) openSharedWindows(ctx context.Context) (*sharedwindows.Windows, error) {
	js, err := jetstream.New(a.nc)
	if err != nil {
		return nil, err
	}
	cfg := a.cfg
	name := sharedwindows.StateName(cfg.Milvus.Collection)
	w, err := sharedwindows.Open(ctx, js, sharedwindows.Config{Name: name, Dir: filepath.Join(cfg.DataDir, "windows"),
		NoTables: !a.role.serves(), Logger: a.log,
		Index: neardup.IndexOptions{SeedWindows: cfg.Image.NearDupSeedWindows, ExactLookup: cfg.Image.NearDupExactLookup, WholeBand: cfg.Image.NearDupWholeBand}})
	if errors.Is(err, replstate.ErrNoJetStream) {
		return nil, fmt.Errorf("nats.url: %w: a Milvus deployment keeps its near-duplicate windows in JetStream (or set image.neardup_windows: false)", err)
	}
	if err != nil {
		return nil, fmt.Errorf("image.neardup_windows: %w", err)
	}
	a.log.Info("near-duplicate windows loaded", "state", name, "seq", w.Seq(), "tables", a.role.serves())
	return w, nil
}

// milvusOpenError names the configuration key behind a failed milvus.Open, by
// the error's type.
func milvusOpenError(err error, model string, dim, bits int) error {
	var se *milvus.SchemaError
	var ae *milvus.AliasError
	switch {
	case errors.As(err, &se):
		return fmt.Errorf("config model / milvus.collection: model %q (dimension %d, %d-bit codes) does not match the Milvus collection: %w",
			model, dim, max(bits, 0), err)
	case errors.Is(err, milvus.ErrUnreachable):
		return fmt.Errorf("config milvus.address: %w", err)
	case errors.As(err, &ae) && ae.NotAlias:
		return fmt.Errorf("config milvus.collection: %w", err)
	case errors.As(err, &ae):
		return fmt.Errorf("config milvus.follow_alias / model: %w", err)
	}
	return err
}

// version is set at link time (scripts/build.sh: -ldflags "-X main.version=...").
var version = "dev"

// registerRoleMetrics exports xmodal_build_info, xmodal_ready and, for the
// JetStream source, xmodal_jetstream_pending (Kafka's lag is xmodal_kafka_lag).
func (a *app) registerRoleMetrics() {
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "xmodal_build_info",
		Help: "Always 1: the build version, the role, the model version and the index of this process."},
		[]string{"version", "goversion", "role", "model", "index"})
	index := "embedded"
	if a.milvus != nil {
		index = "milvus"
	}
	info.WithLabelValues(version, runtime.Version(), string(a.role), a.model.Version(), index).Set(1)
	a.reg.MustRegister(info)
	a.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "xmodal_ready",
		Help: "1 when /readyz answers 200: running, and every dependency (NATS, index, source) usable."},
		func() float64 {
			if !a.ready.Load() {
				return 0
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			for _, c := range a.checks() {
				if _, err := c.fn(ctx); err != nil {
					return 0
				}
			}
			return 1
		}))
	if a.milvus != nil {
		st := a.milvus.Stats
		for _, c := range []struct {
			name, help string
			v          func() float64
		}{
			{"xmodal_milvus_write_rounds_total", "Milvus write rounds (concurrent Apply calls coalesced).", func() float64 { return float64(st().Rounds) }},
			{"xmodal_milvus_write_rounds_strong_total", "Milvus write rounds that read past Bounded: at the fence timestamp after a Kafka assignment, or Strong with milvus.write_consistency Strong.", func() float64 { return float64(st().StrongRounds) }},
			{"xmodal_milvus_rows_written_total", "Record rows written to Milvus.", func() float64 { return float64(st().Rows) }},
			{"xmodal_milvus_posts_inserted_total", "Posts new to Milvus whose rows were inserted rather than upserted (milvus.upsert_only false).", func() float64 { return float64(st().InsertedPosts) }},
			{"xmodal_milvus_rpc_retries_total", "Milvus calls retried after Unavailable or ResourceExhausted.", func() float64 { return float64(st().Retries) }},
			{"xmodal_milvus_round_read_seconds_total", "Time write rounds spent reading versions, deny rows and records present.", func() float64 { return st().ReadTime.Seconds() }},
			{"xmodal_milvus_round_write_seconds_total", "Time write rounds spent writing.", func() float64 { return st().WriteTime.Seconds() }},
		} {
			a.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help}, c.v))
		}
	}
	if a.src != nil && a.nc != nil {
		js, err := jetstream.New(a.nc)
		if err != nil {
			return
		}
		a.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "xmodal_jetstream_pending",
			Help: "JetStream ingest consumer: messages not yet acknowledged (undelivered + in flight); NaN when the server does not answer."},
			func() float64 {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				c, err := js.Consumer(ctx, "XMODAL_POSTS", "indexer")
				if err != nil {
					return math.NaN()
				}
				ci, err := c.Info(ctx)
				if err != nil {
					return math.NaN()
				}
				return float64(ci.NumPending) + float64(ci.NumAckPending)
			}))
	}
}

// registerDenyMetrics exports the replicated deny-list's size, position and
// syncs.
func (a *app) registerDenyMetrics() {
	st := func() replstate.Stats { return a.deny.Stats() }
	a.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "xmodal_denylist_entries", Help: "Post ids on the replicated deny-list (this process's copy)."},
			func() float64 { return float64(a.deny.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "xmodal_denylist_seq", Help: "Stream sequence of the last takedown this process's copy holds."},
			func() float64 { return float64(st().Applied) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "xmodal_denylist_syncs_total", Help: "Deny-list read barriers (one per write round and per reply)."},
			func() float64 { return float64(st().Syncs) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "xmodal_denylist_sync_failures_total", Help: "Deny-list read barriers that failed (the request or write waited or failed closed)."},
			func() float64 { return float64(st().SyncFailures) }),
	)
}

// A readiness check: nil when the dependency is usable, with a short detail.
type check struct {
	name string
	fn   func(ctx context.Context) (string, error)
}

// checks lists what this process depends on.
func (a *app) checks() []check {
	var cs []check
	if a.nc != nil {
		cs = append(cs, check{"nats", func(context.Context) (string, error) {
			if !a.nc.IsConnected() {
				return "", fmt.Errorf("not connected (status %s)", a.nc.Status())
			}
			return a.nc.ConnectedUrlRedacted(), nil
		}})
	}
	if a.ix != nil {
		cs = append(cs, check{"index", a.indexCheck})
	}
	if a.pipe != nil {
		// The index may answer reads while it refuses writes (a full or
		// read-only disk): an indexer whose writes fail is not ready.
		cs = append(cs, check{"index writes", func(context.Context) (string, error) {
			if err := a.pipe.WriteHealth(); err != nil {
				return "", err
			}
			return "succeeding", nil
		}})
	}
	if a.deny != nil {
		cs = append(cs, check{"denylist", func(ctx context.Context) (string, error) {
			if err := a.deny.Sync(ctx); err != nil {
				return "", err
			}
			return fmt.Sprintf("%d takedowns, stream sequence %d", a.deny.Len(), a.deny.Seq()), nil
		}})
	}
	if a.banks != nil {
		cs = append(cs, check{"banks", func(ctx context.Context) (string, error) {
			if err := a.banks.Sync(ctx); err != nil {
				return "", err
			}
			return fmt.Sprintf("%d banks, stream sequence %d", len(a.banks.State().Banks()), a.banks.Seq()), nil
		}})
	}
	if a.clusters != nil {
		cs = append(cs, check{"clusters", func(ctx context.Context) (string, error) {
			if err := a.clusters.Sync(ctx); err != nil {
				return "", err
			}
			st := a.clusters.Stats()
			return fmt.Sprintf("%d members in %d clusters, stream sequence %d", st.Members, st.Clusters, a.clusters.Seq()), nil
		}})
	}
	if a.windows != nil {
		cs = append(cs, check{"windows", func(ctx context.Context) (string, error) {
			if err := a.windows.Sync(ctx); err != nil {
				return "", err
			}
			if !a.role.serves() {
				return fmt.Sprintf("appended only (this process builds no tables), stream sequence %d", a.windows.Seq()), nil
			}
			state := "tables built"
			if !a.windows.Ready() {
				state = "tables building"
			}
			return fmt.Sprintf("%d images, %s, stream sequence %d", a.windows.Len(), state, a.windows.Seq()), nil
		}})
	}
	if a.kafka != nil {
		cs = append(cs, check{"source", func(context.Context) (string, error) {
			parts := a.kafka.Assigned()
			if len(parts) == 0 {
				return "", errors.New("kafka: no partitions assigned (joining the group, rebalancing, or more indexers than partitions)")
			}
			return fmt.Sprintf("kafka topic %s partitions %v", a.cfg.Kafka.Topic, parts), nil
		}})
	} else if a.src != nil {
		cs = append(cs, check{"source", func(context.Context) (string, error) { return "jetstream consumer indexer", nil }})
	}
	return cs
}

// indexCheck asks Milvus for a count, at most every 5 s (probes are frequent).
func (a *app) indexCheck(ctx context.Context) (string, error) {
	if a.milvus == nil {
		return a.indexDesc, nil
	}
	a.probeMu.Lock()
	defer a.probeMu.Unlock()
	if time.Since(a.probeAt) < 5*time.Second {
		return a.indexDesc, a.probeErr
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err := a.milvus.Count(ctx)
	a.probeAt, a.probeErr = time.Now(), err
	return a.indexDesc, err
}

// readyz answers 200 when the process runs and every dependency is usable, else
// 503; the body has one line per check.
func (a *app) readyz(w http.ResponseWriter, r *http.Request) {
	var b strings.Builder
	ok := a.ready.Load()
	if ok {
		fmt.Fprintf(&b, "role %s: running\n", a.role)
	} else {
		fmt.Fprintf(&b, "role %s: starting or stopping\n", a.role)
	}
	for _, c := range a.checks() {
		detail, err := c.fn(r.Context())
		if err != nil {
			ok = false
			fmt.Fprintf(&b, "%s: FAIL %v\n", c.name, err)
			continue
		}
		fmt.Fprintf(&b, "%s: ok %s\n", c.name, detail)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprint(w, b.String())
}

// Run works until ctx ends: an indexing role indexes, a serving role serves.
//
// Shutdown (ctx ends, e.g. SIGTERM): readiness turns false, nothing more is
// fetched, and the posts in flight (at most ingest.max_inflight) may finish for
// shutdown_grace; past it, the rest are abandoned unacknowledged (redelivered to
// the next indexer). Acks follow the
// sink, so nothing that is not in the index is acknowledged or committed. The
// caller then closes the app: the Kafka source commits the acknowledged offsets
// and leaves the group, NATS is drained, the index is closed.
func (a *app) Run(ctx context.Context) (err error) {
	a.ready.Store(true)
	defer a.ready.Store(false)
	// A failed HTTP server (its listener broke) stops the process with its error.
	ctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	if a.httpErr != nil {
		go func() {
			select {
			case err := <-a.httpErr:
				a.log.Error("http server failed; stopping", "err", err)
				fail(err)
			case <-ctx.Done():
			}
		}()
	}
	defer func() {
		if cause := context.Cause(ctx); err == nil && cause != nil && !errors.Is(cause, context.Canceled) {
			err = cause
		}
	}()
	if a.pipe == nil {
		<-ctx.Done()
		a.log.Info("stopping")
		return nil
	}
	work, abandon := context.WithCancel(context.WithoutCancel(ctx))
	defer abandon()
	var timer *time.Timer
	var mu sync.Mutex
	stopTimer := context.AfterFunc(ctx, func() {
		a.ready.Store(false)
		a.log.Info("stopping: nothing more is fetched; the posts in flight may finish", "grace", a.cfg.ShutdownGrace)
		mu.Lock()
		timer = time.AfterFunc(a.cfg.ShutdownGrace, func() {
			a.log.Warn("shutdown grace over: abandoning the posts still in flight (they are redelivered)", "grace", a.cfg.ShutdownGrace)
			abandon()
		})
		mu.Unlock()
	})
	defer func() {
		stopTimer()
		mu.Lock()
		if timer != nil {
			timer.Stop()
		}
		mu.Unlock()
	}()
	err = a.pipe.RunUntil(ctx, work)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// roleCmd is `xmodal run`, `xmodal indexer` or `xmodal serve`.
func roleCmd(r role, short, long string) *cobra.Command {
	var check bool
	c := &cobra.Command{
		Use:   string(r),
		Short: short,
		Long:  long,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd.Flags(), os.LookupEnv)
			if err != nil {
				return err
			}
			if err := cfg.validateRole(r); err != nil {
				return err
			}
			if check {
				fmt.Fprintf(cmd.OutOrStdout(), "configuration ok for xmodal %s\n", r)
				return nil
			}
			log := newLogger(cfg, os.Stderr).With("role", string(r))
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			a, err := startRole(ctx, cfg, log, r)
			if err != nil {
				return err
			}
			defer a.Close()
			natsURL := ""
			if a.nc != nil {
				natsURL = a.nc.ConnectedUrlRedacted()
			}
			log.Info("xmodal running", "nats", natsURL, "index", a.indexDesc, "http", cfg.HTTP.Listen)
			if u := a.pageURL(); u != "" {
				log.Info("search page: "+u, "url", u)
			}
			return a.Run(ctx)
		},
	}
	c.Flags().BoolVar(&check, "check", false, "validate the configuration for this role (keys, values, the services it needs) and exit; nothing is started")
	return c
}

func runCmd() *cobra.Command {
	return roleCmd(roleRun, "Run ingest, indexing and the query service in one process (embedded defaults)",
		`Starts an embedded NATS server (JetStream stream XMODAL_POSTS on subject
xmodal.posts, dead letters on XMODAL_DLQ / xmodal.dlq), loads the model, opens the
embedded index under data_dir, indexes posts as they arrive and serves
xmodal.v1.search, get, stats and neardup, and the HTTP gateway. Naming an outside
service swaps it in: nats.url, kafka.brokers (ingest from Kafka), milvus.address
(index into Milvus), redis.addr (query cache).

Stops on SIGINT/SIGTERM: nothing more is fetched, the posts in flight may finish
for shutdown_grace, and nothing is acknowledged that is not in the index.`)
}

func indexerCmd() *cobra.Command {
	return roleCmd(roleIndexer, "Run the indexer role: source → encoders → Milvus (scales on consumer lag)",
		`Consumes posts from Kafka (kafka.brokers) or from the JetStream stream of an
outside NATS server (nats.url), encodes them and writes them to Milvus
(milvus.address, required: the embedded index belongs to one process). Serves
/metrics, /healthz and /readyz on http.listen; ready when the index answers and
the source is assigned (Kafka: this member owns partitions).

Stops on SIGINT/SIGTERM: nothing more is fetched, the posts in flight may finish
for shutdown_grace (else they are abandoned and redelivered), acknowledged offsets
are committed, and the consumer group is left. Nothing that is not in Milvus is
ever committed.`)
}

func serveCmd() *cobra.Command {
	return roleCmd(roleServe, "Run the query role: NATS query service + HTTP gateway over Milvus (scales on request rate)",
		`Answers xmodal.v1.search, get, stats, neardup and admin.delete over an outside
NATS server (nats.url, required) and the HTTP gateway and search page on
http.listen, from Milvus (milvus.address, required), with the query cache (Redis
when redis.addr is set). Serves /metrics, /healthz and /readyz; ready when NATS
is connected and Milvus answers. With milvus.follow_alias it searches the
collection the alias points to (model upgrades).`)
}

// clusterOptions are the embedded index's cluster options (nil: off).
func (c *Config) clusterOptions() *embedded.ClusterOptions {
	if !c.Clusters.Enabled {
		return nil
	}
	k := c.Clusters
	return &embedded.ClusterOptions{Threshold: k.Threshold, Bucket: k.Bucket, Retention: k.Retention, SplitLimit: k.SplitLimit, Text: k.Text, Dihedral: k.Dihedral, Regions: k.Regions, Windows: k.Windows}
}
