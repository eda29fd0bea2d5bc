package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/spf13/cobra"

	"github.com/xmodal/xmodal/encoders"
	"github.com/xmodal/xmodal/encoders/imageprep"
	"github.com/xmodal/xmodal/ingest"
	filesrc "github.com/xmodal/xmodal/ingest/file"
	kafkasrc "github.com/xmodal/xmodal/ingest/kafka"
	"github.com/xmodal/xmodal/ingest/media"
	"github.com/xmodal/xmodal/internal/denylist"
	"github.com/xmodal/xmodal/internal/fsprobe"
	"github.com/xmodal/xmodal/internal/natsserver"
	"github.com/xmodal/xmodal/sink/embedded"
	"github.com/xmodal/xmodal/workers"
)

// kafkaMaxMessageBytes is the largest line `--to kafka` sends: the broker's
// default message.max.bytes (1048588) less room for the record batch overhead.
const kafkaMaxMessageBytes = 1_000_000

func ingestCmd() *cobra.Command {
	var o backfillOptions
	c := &cobra.Command{
		Use:   "ingest --from FILE.jsonl|DIR --to nats|kafka|direct",
		Short: "Backfill posts from JSON Lines files into a running xmodal, Kafka, or straight into the embedded index (resumable)",
		Long: `Reads posts, one JSON object per line in the post format of docs/post-format.md,
from a file or from every *.jsonl and *.ndjson file under a directory (in path
order), and sends them on. A line's "image_file" (a local image, relative to the
file) is read here and sent inline as image.data; {"id":"X","delete":true} is a
tombstone.

  --to nats     publishes each line to the JetStream ingest stream of a running
                'xmodal run' (nats.url, or the embedded server at nats.listen),
                keyed by post id, each confirmed by the server; the running
                instance indexes them. Use this while 'xmodal run' holds data_dir.
  --to kafka    produces each line to kafka.topic (kafka.brokers, SASL/TLS from the
                config) with key = post id (the Java client's murmur2 partitioner,
                so a post's versions share a partition with live producers) and
                acks=all; a running 'xmodal run' with Kafka indexes them.
  --to direct   runs them through the indexing pipeline into the embedded index
                under data_dir, without a broker. 'xmodal run' must not be running
                on that data_dir (it holds the index: use --to nats then). Dead
                letters go to --dlq (JSON Lines).

Lines are sent as they are: bad posts are dead-lettered by the indexer with their
reason (see 'xmodal dlq ls'), deny-listed posts stay out. A line whose image_file
cannot be read is dead-lettered here, at stage "file", in the target's dead
letters (the stream XMODAL_DLQ, the topic <topic>.dlq, or --dlq). A progress line
(posts/s, ETA) goes to stderr.

The run is resumable: a checkpoint file (--checkpoint, default under
data_dir/backfill/) records the files and the lines completed (confirmed by the
NATS server, produced with acks=all, or durably indexed or dead-lettered); a
rerun with the same --from and --to continues after them. An interrupted run
repeats at most its last batch (upserts are idempotent). --restart ignores the
checkpoint.`,
		Example: `  xmodal ingest --from posts.jsonl --to nats
  xmodal ingest --from posts.jsonl --to direct
  xmodal ingest --from archive/ --to kafka --kafka-brokers 127.0.0.1:9092 --kafka-topic posts`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd.Flags(), os.LookupEnv)
			if err != nil {
				return err
			}
			log := newLogger(cfg, os.Stderr)
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			return runBackfill(ctx, cfg, o, log, os.Stderr)
		},
	}
	f := c.Flags()
	f.StringVar(&o.From, "from", "", "a JSON Lines file, or a directory of *.jsonl / *.ndjson files (required)")
	f.StringVar(&o.To, "to", "", "nats, kafka or direct (required)")
	_ = c.MarkFlagRequired("from")
	_ = c.MarkFlagRequired("to")
	f.StringVar(&o.Checkpoint, "checkpoint", "", "checkpoint file (default data_dir/backfill/<from>-<to>-<hash>.json)")
	f.BoolVar(&o.Restart, "restart", false, "ignore an existing checkpoint and start from the first line")
	f.StringVar(&o.DLQ, "dlq", "", "--to direct: dead-letter file, JSON Lines (default data_dir/backfill-dlq.jsonl)")
	f.IntVar(&o.Batch, "batch", 0, "lines per publish round (--to nats and kafka, default 500) or per pipeline batch (--to direct, default ingest.batch_size)")
	f.DurationVar(&o.ProgressEvery, "progress-interval", 0, "how often the progress line is printed (default 500ms on a terminal, 5s otherwise)")
	return c
}

type backfillOptions struct {
	From, To, Checkpoint, DLQ string
	Restart                   bool
	Batch                     int
	ProgressEvery             time.Duration
}

// backfillTarget is where a backfill sends its lines. It is opened (and
// checked: a reachable server, an existing topic, an unlocked data_dir)
// before the input is read, so that a backfill that cannot run leaves no
// checkpoint behind.
type backfillTarget interface {
	// desc names the target in checkpoints and messages.
	desc() string
	// maxLine is the largest message it takes.
	maxLine() int
	// deadLetter receives the lines refused on this side (an image_file that
	// cannot be read, say).
	deadLetter() ingest.DeadLetter
	// keyedOnly says a line without a valid post id cannot be sent (it is
	// dead-lettered here instead).
	keyedOnly() bool
	run(ctx context.Context, o backfillOptions, src *filesrc.Source) error
	// summary adds the target's own counts to the final line.
	summary() string
	close()
}

// runBackfill runs one backfill to the end of its input (or until ctx ends).
func runBackfill(ctx context.Context, cfg *Config, o backfillOptions, log *slog.Logger, stderr io.Writer) error {
	if o.From == "" {
		return errors.New("ingest: --from is required (a .jsonl file or a directory)")
	}
	if o.To != "kafka" && o.To != "direct" && o.To != "nats" {
		return fmt.Errorf("ingest: --to %q: want nats, kafka or direct", o.To)
	}
	if o.Batch < 0 {
		return fmt.Errorf("ingest: --batch %d must be positive", o.Batch)
	}
	if o.To == "kafka" && len(cfg.Kafka.Brokers) == 0 {
		return errors.New("ingest --to kafka: no brokers configured (kafka.brokers, --kafka-brokers or XMODAL_KAFKA_BROKERS)")
	}
	in, err := filesrc.ListInput(o.From)
	if err != nil {
		return err
	}
	var tgt backfillTarget
	switch o.To {
	case "kafka":
		tgt, err = openKafkaTarget(ctx, cfg, log)
	case "nats":
		tgt, err = openNATSTarget(ctx, cfg)
	case "direct":
		tgt, err = openDirectTarget(ctx, cfg, &o, log)
	}
	if err != nil {
		return err // nothing was read or written
	}
	defer tgt.close()
	target := tgt.desc()
	if o.Checkpoint == "" {
		o.Checkpoint = filesrc.DefaultCheckpoint(cfg.DataDir, in.Root(), o.To, target)
	}
	src, err := filesrc.Open(in, o.Checkpoint, target, o.Restart, tgt.maxLine())
	if err != nil {
		return err
	}
	src.DeadLetter, src.KeyedOnly = tgt.deadLetter(), tgt.keyedOnly()
	defer src.Close()
	if src.Checkpoint().Complete {
		fmt.Fprintf(stderr, "ingest: %s was ingested completely into %s (%d lines); nothing to do (--restart ingests it again; checkpoint %s)\n",
			in.Root(), target, src.Checkpoint().Lines, o.Checkpoint)
		return nil
	}
	if src.Checkpoint().File != "" || len(src.Checkpoint().Done) > 0 {
		fmt.Fprintf(stderr, "ingest: resuming %s after %d lines (%s line %d); checkpoint %s\n",
			in.Root(), src.Checkpoint().Lines, src.Checkpoint().File, src.Checkpoint().Line, o.Checkpoint)
	}
	prog := newProgress(stderr, o.ProgressEvery, src)
	prog.start()
	err = tgt.run(ctx, o, src)
	prog.stop()
	if err == nil {
		err = src.Finish()
	} else if src.HandedOut() {
		if cerr := src.Save(); cerr != nil {
			log.Warn("saving the checkpoint failed", "err", cerr)
		}
	}
	el := time.Since(prog.t0)
	summary := fmt.Sprintf("%d lines in %s (%.0f posts/s) from %s to %s", prog.posts(), el.Round(time.Millisecond),
		float64(prog.posts())/max(el.Seconds(), 1e-9), in.Root(), target)
	if n := src.Rejected(); n > 0 {
		summary += fmt.Sprintf("; %d refused here (unreadable image_file or no post id) and dead-lettered", n)
	}
	summary += tgt.summary()
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "ingest: interrupted after %s; rerun the same command to continue (checkpoint %s)\n", summary, o.Checkpoint)
			return errors.New("ingest: interrupted")
		}
		if !src.HandedOut() {
			return err // nothing was sent; no checkpoint to speak of
		}
		fmt.Fprintf(stderr, "ingest: stopped after %s; rerun to continue after the last completed line (checkpoint %s)\n", summary, o.Checkpoint)
		return err
	}
	fmt.Fprintf(stderr, "ingest: done: %s; checkpoint %s\n", summary, o.Checkpoint)
	if o.To != "direct" {
		fmt.Fprintln(stderr, "ingest: the running indexer reports what it could not index in its dead letters: xmodal dlq ls")
	}
	return nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// ---- --to kafka ----

// kafkaTarget produces to kafka.topic; lines refused here go to its
// dead-letter topic.
type kafkaTarget struct {
	cfg  *Config
	log  *slog.Logger
	conn *kafkasrc.Connection
	w    *kafkago.Writer
	dlq  *kafkasrc.DeadLetterWriter
}

func openKafkaTarget(ctx context.Context, cfg *Config, log *slog.Logger) (*kafkaTarget, error) {
	kc, conn, err := kafkaConnect(cfg, "xmodal-ingest")
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := kafkasrc.Probe(pctx, kc, conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("ingest: %w", err)
	}
	return &kafkaTarget{cfg: cfg, log: log, conn: conn, w: kafkasrc.NewProducer(kc, conn, kc.Topic, log),
		dlq: kafkasrc.NewDeadLetterWriter(kc, conn)}, nil
}

func (t *kafkaTarget) desc() string {
	return fmt.Sprintf("kafka topic %s at %s", t.cfg.Kafka.Topic, strings.Join(t.cfg.Kafka.Brokers, ","))
}
func (t *kafkaTarget) maxLine() int                  { return kafkaMaxMessageBytes }
func (t *kafkaTarget) deadLetter() ingest.DeadLetter { return t.dlq }
func (t *kafkaTarget) keyedOnly() bool               { return false }
func (t *kafkaTarget) summary() string               { return "" }
func (t *kafkaTarget) close() {
	t.w.Close()
	t.dlq.Close()
	t.conn.Close()
}

func (t *kafkaTarget) run(ctx context.Context, o backfillOptions, src *filesrc.Source) error {
	return sendLines(ctx, o, src, crashPoint(t.log), func(msgs []*ingest.Message) error {
		out := make([]kafkago.Message, len(msgs))
		for i, m := range msgs {
			out[i] = kafkago.Message{Value: m.Value}
			if m.Key != "" {
				out[i].Key = []byte(m.Key)
			}
		}
		if err := t.w.WriteMessages(ctx, out...); err != nil {
			return fmt.Errorf("ingest: producing to %s: %w", t.cfg.Kafka.Topic, err)
		}
		return nil
	})
}

// sendLines hands the source's lines to send in batches of --batch (500 by
// default) until the input is exhausted; a batch is acknowledged (its lines
// done) only after send returned, and one send could not take stays with the
// source for the checkpoint.
func sendLines(ctx context.Context, o backfillOptions, src *filesrc.Source, crash func(string), send func([]*ingest.Message) error) error {
	batch := o.Batch
	if batch == 0 {
		batch = 500
	}
	for {
		msgs, err := src.Fetch(ctx, batch, 0)
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			if src.Exhausted() {
				return nil
			}
			continue
		}
		if err := send(msgs); err != nil {
			src.Requeue(msgs)
			return err
		}
		crash("ingest-after-produce")
		for _, m := range msgs {
			if err := m.Ack(ctx); err != nil {
				return fmt.Errorf("ingest: %s: marking the line done: %w", m.Origin, err)
			}
		}
	}
}

// ---- --to nats ----

// natsTarget publishes to the JetStream ingest stream of a running xmodal;
// lines refused here go to its dead-letter stream.
type natsTarget struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	url string
	dlq *natsDeadLetter
}

// Names of the JetStream ingest stream and dead-letter stream (ingest's
// defaults, which xmodal run uses).
const (
	postsStream  = "XMODAL_POSTS"
	postsSubject = "xmodal.posts"
	dlqStream    = "XMODAL_DLQ"
	dlqSubject   = "xmodal.dlq"
)

// natsURL is nats.url, or the embedded server's address (nats.listen).
func natsURL(cfg *Config) string {
	if cfg.NATS.URL != "" {
		return cfg.NATS.URL
	}
	return "nats://" + cfg.NATS.Listen
}

func openNATSTarget(ctx context.Context, cfg *Config) (*natsTarget, error) {
	url := natsURL(cfg)
	nc, err := connectNATS(cfg, url)
	if err != nil {
		return nil, fmt.Errorf("ingest --to nats: %w (is 'xmodal run' running? --nats-url or --nats-listen names it)", err)
	}
	js, err := jetstream.New(nc)
	if err == nil {
		_, err = js.Stream(ctx, postsStream)
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("ingest --to nats: the JetStream stream %s at %s: %w (is 'xmodal run' running there, ingesting from JetStream?)", postsStream, nc.ConnectedUrlRedacted(), err)
	}
	return &natsTarget{nc: nc, js: js, url: nc.ConnectedUrlRedacted(), dlq: &natsDeadLetter{js: js}}, nil
}

func (t *natsTarget) desc() string { return fmt.Sprintf("nats stream %s at %s", postsStream, t.url) }

// maxLine leaves room for the headers under the server's max_payload.
func (t *natsTarget) maxLine() int                  { return int(t.nc.MaxPayload()) - 4096 }
func (t *natsTarget) deadLetter() ingest.DeadLetter { return t.dlq }
func (t *natsTarget) keyedOnly() bool               { return true }
func (t *natsTarget) summary() string               { return "" }
func (t *natsTarget) close()                        { t.nc.Close() }

func (t *natsTarget) run(ctx context.Context, o backfillOptions, src *filesrc.Source) error {
	return sendLines(ctx, o, src, crashPoint(slog.Default()), func(msgs []*ingest.Message) error {
		// Published asynchronously and confirmed together: the lines are done
		// once the server has stored every one of them.
		futs := make([]jetstream.PubAckFuture, len(msgs))
		for i, m := range msgs {
			pm := nats.NewMsg(postsSubject)
			for k, v := range m.Headers {
				pm.Header.Set(k, v)
			}
			pm.Header.Set(ingest.HeaderKey, m.Key)
			pm.Data = m.Value
			var err error
			if futs[i], err = t.js.PublishMsgAsync(pm); err != nil {
				return fmt.Errorf("ingest: publishing %s: %w", ingest.QuoteID(m.Key), err)
			}
		}
		for i, f := range futs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return fmt.Errorf("ingest: publishing %s to %s: %w", ingest.QuoteID(msgs[i].Key), postsStream, err)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
}

// natsDeadLetter publishes dead letters to the JetStream dead-letter stream.
type natsDeadLetter struct{ js jetstream.JetStream }

func (d *natsDeadLetter) Send(ctx context.Context, m *ingest.Message, stage ingest.Stage, reason string) error {
	return ingest.PublishDeadLetter(ctx, d.js, dlqSubject, m, stage, reason)
}

// ---- --to direct ----

// directTarget runs the indexing pipeline into the embedded index under
// data_dir; dead letters go to a JSON Lines file.
type directTarget struct {
	cfg     *Config
	log     *slog.Logger
	model   *encoders.Model
	ix      *embedded.Index
	deny    *denylist.List
	fetch   *media.Fetcher
	dec     *imageprep.Decoder
	dlq     *filesrc.DeadLetterFile
	dlqPath string
	closers []func()
}

// openDirectTarget opens the index first: while 'xmodal run' holds data_dir
// the backfill stops here, before it reads or writes anything.
func openDirectTarget(ctx context.Context, cfg *Config, o *backfillOptions, log *slog.Logger) (_ *directTarget, err error) {
	t := &directTarget{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			t.close()
		}
	}()
	if err := fsprobe.Writable(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	if t.model, err = loadModel(cfg, log); err != nil {
		return nil, err
	}
	t.closers = append(t.closers, func() { t.model.Close() })
	// The index and the pipeline are built as `xmodal run` builds them (app.go):
	// the model's binary coder on the index, PDQ hashes of images.
	coder, err := modelCoder(t.model, log)
	if err != nil {
		return nil, err
	}
	t.ix, err = embedded.Open(ctx, embedded.Options{Path: filepath.Join(cfg.DataDir, "index.db"), Dim: t.model.Dim(),
		ModelVersion: t.model.Version(), Logger: log, Coder: indexCoder(coder), NearDupSeedWindows: cfg.Image.NearDupSeedWindows, NearDupExactLookup: cfg.Image.NearDupExactLookup, NearDupWholeBand: cfg.Image.NearDupWholeBand})
	if err != nil {
		if errors.Is(err, embedded.ErrLocked) {
			return nil, fmt.Errorf("ingest --to direct: data_dir %s is in use (is 'xmodal run' running on it?): "+
				"backfill into the running instance with --to nats, or stop it first; nothing was read or written", absPath(cfg.DataDir))
		}
		return nil, err
	}
	t.closers = append(t.closers, func() { t.ix.Close() })
	// The deny-list lives in the data dir's JetStream store (xmodal run's):
	// a private embedded server on a free loopback port reads it, so the
	// backfill honours every takedown made through the running instance.
	deny, closeDeny, err := localDenyList(ctx, cfg, t.ix, log)
	if err != nil {
		return nil, err
	}
	t.deny = deny
	t.closers = append(t.closers, closeDeny)
	if t.fetch, err = media.New(mediaConfig(cfg, nil, log)); err != nil {
		return nil, fmt.Errorf("config ingest.allow_private: %w", err)
	}
	t.closers = append(t.closers, func() { t.fetch.Close() })
	if t.dec, err = imageDecoder(cfg, t.model); err != nil {
		return nil, err
	}
	if o.DLQ == "" {
		o.DLQ = filepath.Join(cfg.DataDir, "backfill-dlq.jsonl")
	}
	t.dlqPath = o.DLQ
	if t.dlq, err = filesrc.OpenDeadLetterFile(o.DLQ); err != nil {
		return nil, err
	}
	t.closers = append(t.closers, func() { t.dlq.Close() })
	return t, nil
}

func (t *directTarget) desc() string                  { return "direct " + absPath(t.cfg.DataDir) }
func (t *directTarget) maxLine() int                  { return ingest.MaxMessageBytes }
func (t *directTarget) deadLetter() ingest.DeadLetter { return t.dlq }
func (t *directTarget) keyedOnly() bool               { return false }
func (t *directTarget) summary() string {
	return fmt.Sprintf("; %d dead-lettered to %s", t.dlq.Count(), t.dlqPath)
}

func (t *directTarget) close() {
	for i := len(t.closers) - 1; i >= 0; i-- {
		t.closers[i]()
	}
	t.closers = nil
}

func (t *directTarget) run(ctx context.Context, o backfillOptions, src *filesrc.Source) error {
	pipe, err := newPipeline(t.cfg, workers.Deps{Source: src, DeadLetter: t.dlq, Sink: t.ix, Deny: t.deny, Embedder: t.model,
		Decode: ingestDecode(t.dec), Fetcher: t.fetch, Logger: t.log}, pipelineOptions{batch: cmp.Or(o.Batch, t.cfg.Ingest.BatchSize)})
	if err != nil {
		return err
	}
	src.SignalEnd = true
	return pipe.Run(ctx)
}

// mediaConfig is the media fetcher's configuration from ingest.*: refusals
// of a private address name ingest.allow_private.
func mediaConfig(cfg *Config, reg prometheus.Registerer, log *slog.Logger) media.Config {
	return media.Config{AllowPrivate: cfg.Ingest.AllowPrivate, AllowOption: "ingest.allow_private (env XMODAL_INGEST_ALLOW_PRIVATE, flag --ingest-allow-private)",
		Metrics: reg, Logger: log}
}

// localDenyList opens the deny-list of the data dir through a private
// embedded NATS server on its JetStream store.
func localDenyList(ctx context.Context, cfg *Config, ix *embedded.Index, log *slog.Logger) (*denylist.List, func(), error) {
	ns, err := natsserver.Start(natsserver.Options{Listen: "127.0.0.1:0", StoreDir: filepath.Join(cfg.DataDir, "jetstream")})
	if err != nil {
		return nil, nil, fmt.Errorf("deny-list: %w", err)
	}
	stop := func() { ns.Shutdown(); ns.WaitForShutdown() }
	nc, err := nats.Connect(ns.ClientURL(), nats.Name("xmodal-ingest"))
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("deny-list: %w", err)
	}
	js, err := jetstream.New(nc)
	if err == nil {
		var l *denylist.List
		if l, err = denylist.Open(ctx, js, denylist.Config{Logger: log}); err == nil {
			if _, err = l.Seed(ctx, ix); err == nil {
				return l, func() { l.Close(); nc.Close(); stop() }, nil
			}
			l.Close()
		}
	}
	nc.Close()
	stop()
	return nil, nil, fmt.Errorf("deny-list: %w", err)
}

// ---- progress ----

// progress prints "N posts, P% of SIZE, R posts/s, ETA T" to stderr: rewritten in
// place on a terminal, one line per interval otherwise.
type progress struct {
	w      io.Writer
	tty    bool
	every  time.Duration
	src    *filesrc.Source
	t0     time.Time
	bytes0 int64
	done   chan struct{}
	wg     sync.WaitGroup
	last   int
}

func newProgress(w io.Writer, every time.Duration, src *filesrc.Source) *progress {
	p := &progress{w: w, src: src, done: make(chan struct{})}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	p.every = every
	if p.every <= 0 {
		p.every = 5 * time.Second
		if p.tty {
			p.every = 500 * time.Millisecond
		}
	}
	return p
}

func (p *progress) posts() int64 { return p.src.DoneLines() }

func (p *progress) start() {
	p.t0 = time.Now()
	p.bytes0 = p.src.DoneBytes()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(p.every)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				if p.tty && p.last > 0 {
					fmt.Fprint(p.w, "\r"+strings.Repeat(" ", p.last)+"\r")
				}
				return
			case <-t.C:
				p.print()
			}
		}
	}()
}

func (p *progress) stop() {
	close(p.done)
	p.wg.Wait()
}

func (p *progress) line() string {
	el := time.Since(p.t0).Seconds()
	done, total := p.src.DoneBytes(), p.src.Total()
	rate := float64(p.posts()) / max(el, 1e-9)
	brate := float64(done-p.bytes0) / max(el, 1e-9)
	eta := "?"
	if brate > 0 {
		eta = time.Duration(float64(total-done) / brate * float64(time.Second)).Round(time.Second).String()
	}
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	return fmt.Sprintf("ingest: %d posts, %.1f%% of %s, %.0f posts/s, ETA %s", p.posts(), pct, humanBytes(total), rate, eta)
}

func (p *progress) print() {
	s := p.line()
	if p.tty {
		pad := max(p.last-len(s), 0)
		fmt.Fprint(p.w, "\r"+s+strings.Repeat(" ", pad))
		p.last = len(s)
		return
	}
	fmt.Fprintln(p.w, s)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

var (
	_ ingest.Source     = (*filesrc.Source)(nil)
	_ ingest.DeadLetter = (*filesrc.DeadLetterFile)(nil)
)
