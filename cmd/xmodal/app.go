package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders"
	"github.com/xmodal/xmodal/encoders/imageprep"
	"github.com/xmodal/xmodal/ingest"
	kafkasrc "github.com/xmodal/xmodal/ingest/kafka"
	"github.com/xmodal/xmodal/ingest/media"
	"github.com/xmodal/xmodal/internal/bankstore"
	"github.com/xmodal/xmodal/internal/dedup"
	"github.com/xmodal/xmodal/internal/denylist"
	"github.com/xmodal/xmodal/internal/fsprobe"
	"github.com/xmodal/xmodal/internal/natsserver"
	"github.com/xmodal/xmodal/internal/replstate"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/sink/embedded"
	"github.com/xmodal/xmodal/sink/matching"
	"github.com/xmodal/xmodal/sink/milvus"
	"github.com/xmodal/xmodal/sink/sharedclusters"
	"github.com/xmodal/xmodal/sink/sharedwindows"
	"github.com/xmodal/xmodal/workers"
)

// app is everything one role (roles.go: run, indexer, serve) starts, in one process.
type app struct {
	role  role
	cfg   *Config
	log   *slog.Logger
	reg   *prometheus.Registry
	ns    *server.Server
	nc    *nats.Conn
	model *encoders.Model
	ix    domain.Index
	// milvus is ix when it is Milvus; indexDesc says which index it is.
	milvus    *milvus.Index
	indexDesc string
	probeMu   sync.Mutex
	probeAt   time.Time
	probeErr  error
	src       *ingest.JetStream
	kafka     *kafkasrc.Source
	pipe      *workers.Pipeline
	svc       *query.Service
	deny      *denylist.List
	banks     *bankstore.Store
	// clusters are the near-duplicate clusters of a Milvus deployment,
	// shared by its processes (the embedded index keeps its own).
	clusters *sharedclusters.Clusters
	// windows are the near-duplicate windows of a Milvus deployment
	// (image.neardup_windows), shared by its processes.
	windows *sharedwindows.Windows
	// stopSeed stops the background rebuild of the shared clusters;
	// seedDone is closed when it is over.
	stopSeed context.CancelFunc
	seedDone <-chan struct{}
	events   *matching.EventStream
	// evOut is where match events go (events, and kafkaEvents when set).
	evOut       matching.Publisher
	kafkaEvents *kafkasrc.TopicWriter
	memory      *matching.Memory // what each post matched last
	// stopSweeps stops the retro sweeps' worker; sweepsDone is closed once
	// it has written its last checkpoint.
	stopSweeps context.CancelFunc
	sweepsDone <-chan struct{}
	fetch      *media.Fetcher
	http       *http.Server
	httpAddr   string // the address http.listen resolved to
	ready      atomic.Bool
	cache      query.Cache
	dedup      *dedup.Manager // the batch near-duplicate job (embedded index, serving roles)

	// ncClosed is closed when nc is (its drain is over).
	ncClosed chan struct{}
	// httpErr receives the HTTP server's failure (not its shutdown).
	httpErr chan error
}

// bundledModelDirs are tried in order when no model is configured.
var bundledModelDirs = []string{"testdata/models/demo", "testdata/models/parity"}

// findModel resolves the model directory: the configured one, else the bundled
// model next to the working directory or the executable.
func findModel(cfg string) (string, error) {
	if cfg != "" {
		return cfg, nil
	}
	var roots []string
	if wd, err := os.Getwd(); err == nil {
		roots = append(roots, wd)
	}
	if exe, err := os.Executable(); err == nil {
		d := filepath.Dir(exe)
		roots = append(roots, d, filepath.Dir(d))
	}
	for _, r := range roots {
		for _, m := range bundledModelDirs {
			p := filepath.Join(r, m)
			if _, err := os.Stat(filepath.Join(p, "model.json")); err == nil {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("no model configured and no bundled model found under %v (set --model or XMODAL_MODEL)", bundledModelDirs)
}

// loadModel loads the configured model (model, or the bundled one: findModel)
// with the ort.* settings; every command that encodes loads it here.
func loadModel(cfg *Config, log *slog.Logger) (*encoders.Model, error) {
	dir, err := findModel(cfg.Model)
	if err != nil {
		return nil, err
	}
	return encoders.Load(dir, modelOptions(cfg, log))
}

// bundledModelNote says what the bundled model knows, at start and in the demo.
const bundledModelNote = "no model configured: using the bundled demo model, trained here on generated pictures of coloured shapes " +
	"(docs/eval.md); it knows nothing else and returns confident nonsense for real photos. For real posts run a real CLIP " +
	"(--model DIR; docs/use-real-clip.md)"

// pageURL is the search page's address ("" when this process serves none).
func (a *app) pageURL() string {
	if a.httpAddr == "" || a.svc == nil {
		return ""
	}
	return "http://" + a.httpAddr + "/"
}

// thumbSide is the longer side of the thumbnails records carry.
const thumbSide = 128

// imageDecoder is the one image decoder of a process (image.decode_mode,
// one decode-memory budget shared by the media workers and the query
// service), sized for the model's input, the thumbnails and PDQ.
func imageDecoder(cfg *Config, model *encoders.Model) (*imageprep.Decoder, error) {
	o, err := imageDecoderOptions(cfg, model)
	if err != nil {
		return nil, err
	}
	o.Budget = imageprep.NewBudget(int64(cfg.Image.DecodeMemoryMB) << 20)
	return imageprep.NewDecoder(o)
}

// imageDecoderOptions are the decoder's options from image.*, without the
// budget.
func imageDecoderOptions(cfg *Config, model *encoders.Model) (imageprep.DecoderOptions, error) {
	mode, err := imageprep.ParseMode(cfg.Image.DecodeMode)
	if err != nil {
		return imageprep.DecoderOptions{}, fmt.Errorf("config image.decode_mode: %w", err)
	}
	return imageprep.DecoderOptions{
		Limits: imageprep.DefaultLimits(),
		Mode:   mode,
		Need:   imageprep.Need{Draft: model.ImageSpec().Size, LongSide: thumbSide, Hash: cfg.Image.PDQMinSide},
	}, nil
}

// ingestDecode adapts the decoder to the media stage.
func ingestDecode(d *imageprep.Decoder) workers.DecodeFunc {
	return func(ctx context.Context, b []byte) (workers.Decoded, error) {
		dec, err := d.Decode(ctx, b)
		if err != nil {
			return workers.Decoded{}, err
		}
		out := workers.Decoded{Image: dec.Image, Mode: string(dec.Mode), Release: dec.Release}
		if dec.HashImage != nil {
			out.HashInput = dec.HashImage
		}
		return out, nil
	}
}

// queryDecode adapts the decoder to the query service: an image over the
// limits or the decode budget is a 413.
func queryDecode(d *imageprep.Decoder) query.DecodeFunc {
	return func(ctx context.Context, b []byte) (query.DecodedImage, error) {
		dec, err := d.Decode(ctx, b)
		if errors.Is(err, imageprep.ErrTooLarge) {
			return query.DecodedImage{}, &query.Error{Code: query.CodeTooLarge, Message: err.Error()}
		}
		if err != nil {
			return query.DecodedImage{}, err
		}
		out := query.DecodedImage{Image: dec.Image, Release: dec.Release}
		if dec.HashImage != nil {
			out.HashInput = dec.HashImage
		}
		return out, nil
	}
}

func thumbnail(img image.Image) []byte {
	b, err := imageprep.Thumbnail(img, thumbSide, 75)
	if err != nil {
		return nil
	}
	return b
}

// startApp starts what `xmodal run` starts.
func startApp(ctx context.Context, cfg *Config, log *slog.Logger) (*app, error) {
	return startRole(ctx, cfg, log, roleRun)
}

// startRole starts the NATS server (run only) and connection, the model, the
// index, and, as the role asks, the pipeline and the query service. Close undoes it.
func startRole(ctx context.Context, cfg *Config, log *slog.Logger, r role) (a *app, err error) {
	a = &app{role: r, cfg: cfg, log: log, reg: prometheus.NewRegistry()}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Every error path returns (nil, err): close what was started through a copy
	// of the pointer, not the named result (nil by then).
	started := a
	defer func() {
		if err != nil {
			started.Close()
		}
	}()
	url := cfg.NATS.URL
	// A role that keeps state in data_dir (the embedded NATS server's
	// JetStream store, the embedded index) checks at once that it can write
	// there, so that a read-only or full disk is named before anything starts.
	if (url == "" && r == roleRun) || cfg.Milvus.Address == "" {
		if err := fsprobe.Writable(cfg.DataDir); err != nil {
			return nil, fmt.Errorf("data_dir: %w", err)
		}
	} else if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	if url == "" && r == roleRun {
		a.ns, err = natsserver.Start(natsserver.Options{Listen: cfg.NATS.Listen, StoreDir: filepath.Join(cfg.DataDir, "jetstream"),
			User: cfg.NATS.User, Password: cfg.NATS.Password, ConfigFile: cfg.NATS.ServerConfig})
		if err != nil {
			return nil, err
		}
		url = a.ns.ClientURL()
		log.Info("embedded NATS server started", "url", url)
	}
	// Every role needs NATS: the deny-list is replicated through JetStream.
	if a.nc, err = connectNATS(cfg, url); err != nil {
		return nil, err
	}
	// The handler closes its own channel, not a.ncClosed: a start that fails
	// returns a nil *app while the connection's close is still being handled.
	ncClosed := make(chan struct{})
	a.ncClosed = ncClosed
	a.nc.SetClosedHandler(func(*nats.Conn) { close(ncClosed) })
	if a.model, err = loadModel(cfg, log); err != nil {
		return nil, err
	}
	dir := a.model.Dir()
	log.Info("model loaded", "dir", dir, "version", a.model.Version(), "dim", a.model.Dim())
	if cfg.Model == "" {
		log.Info(bundledModelNote, "dir", dir)
	}
	coder, err := modelCoder(a.model, log)
	if err != nil {
		return nil, err
	}
	writer, err := a.openIndex(ctx, coder)
	if err != nil {
		return nil, err
	}
	if err := a.openDenyList(ctx); err != nil {
		return nil, err
	}
	if err := a.openBanks(ctx); err != nil {
		return nil, err
	}
	dec, err := imageDecoder(cfg, a.model)
	if err != nil {
		return nil, err
	}
	a.fetch, err = media.New(mediaConfig(cfg, a.reg, log))
	if err != nil {
		return nil, fmt.Errorf("config ingest.allow_private: %w", err)
	}
	if a.cache, err = newQueryCache(ctx, cfg); err != nil {
		return nil, err
	}
	if r.indexes() {
		if err := a.startPipeline(ctx, writer, ingestDecode(dec)); err != nil {
			return nil, err
		}
	}
	cal, err := loadCalibration(cfg.Banks.Calibration, a.model.Version())
	if err != nil {
		return nil, err
	}
	var sweeps query.Sweeper
	var events query.MatchEvents
	if r.serves() {
		if sweeps, err = a.sweeper(ctx); err != nil {
			return nil, err
		}
		if a.banks != nil {
			if a.events, err = a.openEvents(ctx); err != nil {
				return nil, err
			}
			events = a.events
		}
		var runner query.DedupRunner
		if e, ok := a.ix.(*embedded.Index); ok {
			if a.dedup, err = dedup.NewManager(e, filepath.Join(cfg.DataDir, "dedup"), log, a.reg); err != nil {
				return nil, err
			}
			runner = a.dedup
		}
		a.svc, err = query.New(query.Config{Timeout: cfg.Query.Timeout, Concurrency: cfg.Query.Concurrency},
			query.Deps{Index: a.ix, Writer: writer, Encoder: a.model, Decode: queryDecode(dec), DecodeMode: string(dec.Mode()), Fetcher: a.fetch, Logger: log,
				Registerer: a.reg, Cache: a.cache, Coder: queryCoder(coder), Deny: a.deny, Banks: a.banks, Calibration: cal, Sweeper: sweeps, Events: events, Dedup: runner})
		if err != nil {
			return nil, err
		}
		if err := a.svc.Start(a.nc); err != nil {
			return nil, err
		}
	}
	a.registerRoleMetrics() // roles.go
	a.reg.MustRegister(newIndexRecordsCollector(a.ix))
	if g := newWindowImagesGauge(a.ix); g != nil && cfg.Image.NearDupWindows {
		a.reg.MustRegister(g)
	}
	if e, ok := a.ix.(*embedded.Index); ok && e.Clustered() {
		a.reg.MustRegister(e.ClusterCollector())
	}
	if a.clusters != nil {
		a.reg.MustRegister(a.clusters.Collector())
	}
	if cfg.HTTP.Listen != "" {
		if err := a.startHTTP(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// startPipeline opens the source (Kafka, else the JetStream stream) and builds
// the indexing pipeline over sink.
func (a *app) startPipeline(ctx context.Context, sink domain.Writer, decode workers.DecodeFunc) (err error) {
	cfg, log := a.cfg, a.log
	var src ingest.Source
	var dlq ingest.DeadLetter
	if len(cfg.Kafka.Brokers) > 0 {
		k := cfg.Kafka
		kc := cfg.kafkaConfig()
		kc.Logger, kc.Registerer, kc.OnAssign = log, a.reg, a.fenceIndex
		a.kafka, err = kafkasrc.New(ctx, kc)
		if err != nil {
			return err
		}
		src, dlq = a.kafka, a.kafka
		log.Info("ingesting from Kafka", "brokers", k.Brokers, "topic", k.Topic, "group", k.Group)
	} else {
		a.src, err = ingest.NewJetStream(ctx, a.nc, ingest.JetStreamConfig{AckWait: cfg.Ingest.AckWait})
		if err != nil {
			return err
		}
		src, dlq = a.src, a.src
	}
	if a.banks != nil {
		if sink, err = a.matchingSink(ctx, sink); err != nil {
			return err
		}
	}
	po := pipelineOptions{milvus: a.milvus != nil}
	keep := cfg.Image.KeepMD5 && a.milvus == nil // kept for sweeps (image.keep_md5)
	if keep {
		po.md5 = func() bool { return true }
	}
	if a.banks != nil {
		// An image's MD5 while a bank can match it (or always, to keep).
		po.md5 = func() bool { return keep || a.banks.State().HasEnabled(banks.SignalMD5) }
		po.banks = true
		po.crops = func() bool { return a.banks.State().HasWindows() }
	}
	a.pipe, err = newPipeline(cfg, workers.Deps{Source: src, DeadLetter: dlq, Sink: sink, Deny: a.deny, Embedder: a.model,
		Decode: decode, Fetcher: a.fetch, Logger: log, Registerer: a.reg}, po)
	return err
}

// pipelineOptions are what a role changes in the ingest.* configuration.
type pipelineOptions struct {
	milvus bool        // the sink is Milvus: more writers, whose writes it coalesces
	batch  int         // ingest --batch: the fetch batch (and at least as many in flight); 0 keeps ingest.batch_size
	md5    func() bool // images get their file's MD5 while it reports true (banks with md5 entries)
	banks  bool        // posts are matched against the banks: images get their eight dihedral PDQ hashes
	crops  func() bool // with banks.match_regions, images get their near-duplicate query while it reports true (banks with windows)
}

// windows reports whether image records get their near-duplicate windows:
// image.neardup_windows (the embedded index stores them with the record; a
// Milvus deployment in its shared windows, sink/sharedwindows).
func (o pipelineOptions) windows(cfg *Config) bool { return cfg.Image.NearDupWindows }

// newPipeline builds the indexing pipeline of `run`, `indexer` and
// `ingest --to direct`: d's source, dead letters, sink, deny-list, model,
// decoder and fetcher, the thumbnails and PDQ hashes every record gets, the
// ingest.* configuration, and the crash points of crash-test builds.
func newPipeline(cfg *Config, d workers.Deps, o pipelineOptions) (*workers.Pipeline, error) {
	d.Thumbnail, d.Hasher = thumbnail, ingestHasher()
	d.Hasher.MD5 = o.md5
	if o.banks {
		d.Hasher.PDQVariants = ingestVariants()
	}
	// Milvus keeps neither in its rows: the shared clusters sign with them.
	if co := cfg.clusterOptions(); co != nil && co.Dihedral {
		d.Hasher.PDQCanonical = ingestCanonical()
	}
	// The region hashes: clusters link by them, and the banks match them
	// (banks.match_regions).
	if co := cfg.clusterOptions(); (co != nil && co.Regions) || (o.banks && cfg.Banks.MatchRegions) {
		d.Hasher.PDQRegions = ingestRegions(co != nil && co.Dihedral)
	}
	// A lookup's windows, while a bank holds entries with windows: the
	// matcher finds crops of their images (banks.match_regions).
	if o.banks && cfg.Banks.MatchRegions && o.crops != nil {
		d.Hasher.NearDupQuery = ingestQuery(o.crops)
	}
	if o.windows(cfg) {
		co := cfg.clusterOptions()
		d.Hasher.Windows = ingestWindows(co != nil && co.Windows)
	}
	crashPoints(&d, d.Logger) // crash tests only (build tag crashtest); nothing otherwise
	pc := pipelineConfig(cfg)
	if o.batch > 0 {
		pc.BatchSize, pc.MaxInFlight = o.batch, max(o.batch, cfg.Ingest.MaxInFlight)
	}
	if pc.Writers == 0 && o.milvus {
		// Writes that wait while a round runs are coalesced into the next one
		// (milvus.linger lets a round wait for them): enough writers to fill
		// a round of milvus.batch_size rows, since the server's work per row
		// falls with the round's size, and enough posts in flight to keep
		// them busy while the encoders work on the next ones.
		pc.Writers = max(8, 2*cfg.Milvus.Rounds, (cfg.Milvus.BatchSize+pc.BatchSize-1)/pc.BatchSize)
		pc.MaxInFlight = max(pc.MaxInFlight, 4*pc.Writers*pc.BatchSize)
	}
	return workers.New(pc, d)
}

// loadCalibration reads banks.calibration (nil when not set); it must be
// the current model's.
func loadCalibration(path, model string) (*banks.Calibration, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config banks.calibration: %w", err)
	}
	var c banks.Calibration
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("config banks.calibration: %s: %w", path, err)
	}
	if c.ModelVersion != model {
		return nil, fmt.Errorf("config banks.calibration: %s calibrates model %q, this process runs %q: run 'xmodal bank calibrate' for it", path, c.ModelVersion, model)
	}
	if len(c.Floors) == 0 {
		return nil, fmt.Errorf("config banks.calibration: %s has no floors", path)
	}
	return &c, nil
}

// matchingSink wraps the index writer so that every post is matched against
// the moderation banks, with durable match events (sink/matching). The
// events' duplicate window covers every redelivery of a post: ack wait ×
// max attempts, at least 10 minutes.
func (a *app) matchingSink(ctx context.Context, next domain.Writer) (domain.Writer, error) {
	evs, err := a.eventPublisher(ctx) // events_kafka.go
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(a.nc)
	if err != nil {
		return nil, err
	}
	if a.memory, err = matching.OpenMemory(ctx, js, matching.MemoryConfig{}); err != nil {
		return nil, err
	}
	evs = crashEvents(evs, a.log) // crash tests only (build tag crashtest); evs otherwise
	return matching.New(matching.Deps{Next: next, Banks: a.banks, Events: evs, Deny: a.deny, Memory: a.memory,
		MatchRegions: a.cfg.Banks.MatchRegions, WindowBlockPixels: a.cfg.Banks.WindowBlockPixels, Logger: a.log, Registerer: a.reg})
}

// openEvents opens the match events stream once (the matcher at ingest and
// the retro sweeps publish to it).
func (a *app) openEvents(ctx context.Context) (*matching.EventStream, error) {
	if a.events != nil {
		return a.events, nil
	}
	js, err := jetstream.New(a.nc)
	if err != nil {
		return nil, err
	}
	dup := max(10*time.Minute, a.cfg.Ingest.AckWait*time.Duration(a.cfg.Ingest.MaxAttempts+1))
	a.events, err = matching.OpenEvents(ctx, js, matching.StreamConfig{Duplicates: dup})
	return a.events, err
}

// sweeper runs the retro sweeps of a serving process whose index answers
// near-duplicate searches (nil otherwise).
func (a *app) sweeper(ctx context.Context) (query.Sweeper, error) {
	nd, ok := a.ix.(domain.NearDupSearcher)
	if !ok || a.banks == nil {
		return nil, nil
	}
	evs, err := a.eventPublisher(ctx)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.stopSweeps = cancel
	scfg := matching.SweeperConfig{Index: crashSweeps(nd, a.log), Events: evs, WindowBlockPixels: a.cfg.Banks.WindowBlockPixels,
		Dir: filepath.Join(a.cfg.DataDir, "sweeps"), Logger: a.log, Registerer: a.reg}
	scfg.Records, _ = a.ix.(domain.RecordScanner)  // embedded and Milvus: text, URL and embedding entries are swept too
	scfg.Recorder, _ = a.ix.(domain.MatchRecorder) // and the matches reach the records (embedded)
	// PDQ entries by the records' region hashes too, as ingest matches
	// them; Milvus rows keep no region hashes, so a scan would find none.
	scfg.Regions = a.cfg.Banks.MatchRegions && a.milvus == nil
	sw, err := matching.NewSweeper(sctx, scfg)
	if err != nil {
		cancel()
		return nil, err
	}
	a.sweepsDone = sw.Done()
	return sw, nil
}

// fenceIndex tells a Milvus index that its writer may take over posts another
// indexer wrote a moment ago (a Kafka assignment).
func (a *app) fenceIndex([]int) {
	if a.milvus != nil {
		a.milvus.Fence()
	}
}

// openDenyList loads the replicated deny-list from JetStream and, when the
// list is new, copies the takedowns the index already holds into it.
func (a *app) openDenyList(ctx context.Context) error {
	js, err := jetstream.New(a.nc)
	if err != nil {
		return err
	}
	a.deny, err = denylist.Open(ctx, js, denylist.Config{Logger: a.log})
	if errors.Is(err, replstate.ErrNoJetStream) {
		return fmt.Errorf("nats.url: %w: xmodal keeps its deny-list in JetStream", err)
	}
	if err != nil {
		return fmt.Errorf("deny-list: %w", err)
	}
	if l, ok := a.ix.(denylist.Lister); ok {
		n, err := a.deny.Seed(ctx, l)
		if err != nil {
			return fmt.Errorf("deny-list: seeding from the index: %w", err)
		}
		if n > 0 {
			a.log.Info("deny-list seeded from the index's takedowns", "posts", n)
		}
	}
	a.registerDenyMetrics()
	return nil
}

// openBanks loads the moderation banks from JetStream (every role holds
// them: the query service answers lookups, the indexer will match posts)
// and follows them.
func (a *app) openBanks(ctx context.Context) error {
	js, err := jetstream.New(a.nc)
	if err != nil {
		return err
	}
	a.banks, err = bankstore.Open(ctx, js, bankstore.Config{Logger: a.log})
	if errors.Is(err, replstate.ErrNoJetStream) {
		return fmt.Errorf("nats.url: %w: xmodal keeps its moderation banks in JetStream", err)
	}
	if err != nil {
		return fmt.Errorf("banks: %w", err)
	}
	info := a.banks.State().Banks()
	n := 0
	for _, b := range info {
		n += b.Entries
	}
	a.log.Info("moderation banks loaded", "banks", len(info), "entries", n, "seq", a.banks.Seq())
	return a.banks.Register(a.reg)
}

// modelOptions are the encoder options from ort.*, the same for every command
// that loads a model.
func modelOptions(cfg *Config, log *slog.Logger) encoders.Options {
	o := cfg.ORT
	return encoders.Options{LibPath: o.Lib, IntraOpThreads: o.IntraOpThreads, InterOpThreads: o.InterOpThreads,
		Provider: o.Provider, Sessions: o.Sessions, Logger: log}
}

// pipelineConfig is the workers configuration from ingest.*.
func pipelineConfig(cfg *Config) workers.Config {
	in := cfg.Ingest
	return workers.Config{BatchSize: in.BatchSize, FetchWait: in.FetchWait, MaxAttempts: in.MaxAttempts,
		MediaConcurrency: in.MediaConcurrency, EncodeBatch: in.EncodeBatch, EncodeWait: in.EncodeWait,
		Encoders: in.Encoders, Writers: in.Writers, MaxInFlight: in.MaxInFlight, MaxInFlightBytes: int64(in.MaxInFlightMB) << 20,
		KeepAlive: in.AckWait / 3}
}

// DefaultMaxInFlightMB is ingest.max_inflight_mb's default: far above what
// text posts hold at any max_inflight (2,048 posts of a few kilobytes), it
// bounds a feed of large inline images (about 500 posts of 500 KB).
const DefaultMaxInFlightMB = 256

func connectNATS(cfg *Config, url string) (*nats.Conn, error) {
	opts := []nats.Option{nats.Name("xmodal"), nats.MaxReconnects(-1), nats.ReconnectWait(500 * time.Millisecond)}
	if cfg.NATS.User != "" {
		opts = append(opts, nats.UserInfo(cfg.NATS.User, cfg.NATS.Password))
	}
	if p, err := cfg.inboxPrefix(); err != nil {
		return nil, err
	} else if p != "" {
		opts = append(opts, nats.CustomInboxPrefix(p))
	}
	sec, err := natsSecurityOptions(cfg)
	if err != nil {
		return nil, err
	}
	opts = append(opts, sec...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	return nc, nil
}

func (a *app) startHTTP() error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", a.readyz) // roles.go
	a.mountGateway(mux)
	ln, err := net.Listen("tcp", a.cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http.listen %s: %w", a.cfg.HTTP.Listen, err)
	}
	a.http, err = query.NewHTTPServer(mux, a.httpConfig())
	if err != nil {
		ln.Close()
		return err
	}
	a.httpAddr = ln.Addr().String()
	a.httpErr = make(chan error, 1)
	go func() {
		if err := a.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			a.httpErr <- fmt.Errorf("http server on %s: %w", a.httpAddr, err)
		}
	}()
	a.log.Info("metrics and health", "url", "http://"+a.httpAddr+"/metrics")
	return nil
}

// httpConfig is the HTTP server's deadlines from the configuration.
func (a *app) httpConfig() query.HTTPConfig {
	return query.HTTPConfig{ReadHeaderTimeout: a.cfg.HTTP.HeaderTimeout, BodyTimeout: a.cfg.HTTP.BodyTimeout, RequestTimeout: a.cfg.Query.Timeout}
}

// Close stops everything in reverse order.
//
// The order matters: first no request is taken any more and those in flight
// end (the HTTP server's handlers, then the query service's, whose contexts
// are cancelled when the grace is over); then the sources commit and close,
// NATS drains (awaited); only then are the index and the model closed, so that
// no handler uses a closed resource.
func (a *app) Close() {
	grace := min(a.cfg.ShutdownGrace, 10*time.Second)
	if a.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		if err := a.http.Shutdown(ctx); err != nil {
			a.log.Warn("http server: requests still running after the grace; closing their connections", "err", err)
			a.http.Close()
		}
		cancel()
	}
	if a.svc != nil {
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		if err := a.svc.Shutdown(ctx); err != nil {
			a.log.Warn("query service shutdown", "err", err)
		}
		cancel()
	}
	if a.dedup != nil {
		a.dedup.Close() // a running job stops; its checkpoint lets it resume
	}
	if a.stopSweeps != nil {
		a.stopSweeps()
		if a.sweepsDone != nil {
			select {
			case <-a.sweepsDone: // the checkpoint is written: the data dir is ours to close
			case <-time.After(grace):
				a.log.Warn("retro sweeps did not stop in time; the next start resumes from the last checkpoint")
			}
		}
	}
	if a.kafka != nil {
		// Commits what is safe (every acked offset below the first unacked one).
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := a.kafka.Close(ctx); err != nil {
			a.log.Warn("kafka close", "err", err)
		}
		cancel()
	}
	if a.kafkaEvents != nil {
		a.kafkaEvents.Close()
	}
	if a.memory != nil {
		a.memory.Close()
	}
	if a.deny != nil {
		a.deny.Close()
	}
	if a.stopSeed != nil {
		a.stopSeed()
		<-a.seedDone
	}
	if a.clusters != nil {
		a.clusters.Close()
	}
	if a.windows != nil {
		a.windows.Close()
	}
	if a.banks != nil {
		a.banks.Close()
	}
	if a.nc != nil {
		if err := a.nc.Drain(); err != nil {
			a.nc.Close()
		}
		select {
		case <-a.ncClosed:
		case <-time.After(grace):
			a.log.Warn("NATS drain not over after the grace; closing the connection")
			a.nc.Close()
			<-a.ncClosed
		}
	}
	if a.ix != nil {
		a.ix.Close()
	}
	if a.model != nil {
		a.model.Close()
	}
	if a.fetch != nil {
		a.fetch.Close()
	}
	if a.ns != nil {
		a.ns.Shutdown()
		a.ns.WaitForShutdown()
	}
}
