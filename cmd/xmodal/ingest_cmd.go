package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
	"github.com/spf13/cobra"

	"github.com/xmodal/xmodal/encoders"
	"github.com/xmodal/xmodal/encoders/imageprep"
	"github.com/xmodal/xmodal/ingest"
	kafkasrc "github.com/xmodal/xmodal/ingest/kafka"
	"github.com/xmodal/xmodal/ingest/media"
	"github.com/xmodal/xmodal/ingest/postfile"
	"github.com/xmodal/xmodal/internal/denylist"
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
	run(ctx context.Context, o backfillOptions, src *fileSource) error
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
	in, err := listInput(o.From)
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
		o.Checkpoint = defaultCheckpoint(cfg.DataDir, in.root, o.To, target)
	}
	src, err := openFileSource(in, o.Checkpoint, target, o.Restart, tgt.maxLine())
	if err != nil {
		return err
	}
	src.dlq, src.keyedOnly = tgt.deadLetter(), tgt.keyedOnly()
	defer src.closeFile()
	if src.cp.Complete {
		fmt.Fprintf(stderr, "ingest: %s was ingested completely into %s (%d lines); nothing to do (--restart ingests it again; checkpoint %s)\n",
			in.root, target, src.cp.Lines, o.Checkpoint)
		return nil
	}
	if src.cp.File != "" || len(src.cp.Done) > 0 {
		fmt.Fprintf(stderr, "ingest: resuming %s after %d lines (%s line %d); checkpoint %s\n",
			in.root, src.cp.Lines, src.cp.File, src.cp.Line, o.Checkpoint)
	}
	prog := newProgress(stderr, o.ProgressEvery, src)
	prog.start()
	err = tgt.run(ctx, o, src)
	prog.stop()
	if err == nil {
		err = src.finish()
	} else if src.handedOut() {
		if cerr := src.save(); cerr != nil {
			log.Warn("saving the checkpoint failed", "err", cerr)
		}
	}
	el := time.Since(prog.t0)
	summary := fmt.Sprintf("%d lines in %s (%.0f posts/s) from %s to %s", prog.posts(), el.Round(time.Millisecond),
		float64(prog.posts())/max(el.Seconds(), 1e-9), in.root, target)
	if n := src.rejected.Load(); n > 0 {
		summary += fmt.Sprintf("; %d refused here (unreadable image_file or no post id) and dead-lettered", n)
	}
	summary += tgt.summary()
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "ingest: interrupted after %s; rerun the same command to continue (checkpoint %s)\n", summary, o.Checkpoint)
			return errors.New("ingest: interrupted")
		}
		if !src.handedOut() {
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

// ---- input ----

// input is the list of files to read: one file, or the JSON Lines files under a
// directory, by relative path.
type input struct {
	root  string   // absolute
	dir   bool     // root is a directory
	files []string // relative to root (the base name for a file), sorted
	sizes map[string]int64
}

func (in *input) path(name string) string {
	if in.dir {
		return filepath.Join(in.root, name)
	}
	return in.root
}

func listInput(from string) (*input, error) {
	root := absPath(from)
	st, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("ingest --from: %w", err)
	}
	in := &input{root: root, sizes: map[string]int64{}}
	if !st.IsDir() {
		in.files = []string{filepath.Base(root)}
		in.sizes[in.files[0]] = st.Size()
		return in, nil
	}
	in.dir = true
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !(strings.HasSuffix(d.Name(), ".jsonl") || strings.HasSuffix(d.Name(), ".ndjson")) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		in.files = append(in.files, rel)
		in.sizes[rel] = info.Size()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ingest --from %s: %w", from, err)
	}
	if len(in.files) == 0 {
		return nil, fmt.Errorf("ingest --from %s: no *.jsonl or *.ndjson files in the directory", from)
	}
	slices.Sort(in.files)
	return in, nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

func defaultCheckpoint(dataDir, root, to, target string) string {
	h := sha256.Sum256([]byte(root + "\x00" + target))
	base := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, filepath.Base(root))
	return filepath.Join(dataDir, "backfill", fmt.Sprintf("%s-%s-%s.json", base, to, hex.EncodeToString(h[:4])))
}

// ---- checkpoint ----

// checkpoint records how far a backfill got. Lines are counted from 1; a position
// (File, Line) means "every line of File up to Line is done".
type checkpoint struct {
	V        int      `json:"v"`
	From     string   `json:"from"`
	To       string   `json:"to"`
	Done     []string `json:"done,omitempty"` // files completed
	File     string   `json:"file,omitempty"` // the file in progress
	Line     int64    `json:"line"`           // its lines completed
	Offset   int64    `json:"offset"`         // its bytes completed
	Lines    int64    `json:"lines"`          // non-blank lines completed in all
	Complete bool     `json:"complete,omitempty"`
	// Tries are the stretches that earlier runs handed to the pipeline beyond the
	// checkpoint and never completed (a crash): a line's attempt is 1 + the tries
	// that hold it, so a post that kills the process is dead-lettered as poison
	// after ingest.max_attempts runs instead of stopping every rerun.
	Tries   []span    `json:"tries,omitempty"`
	Updated time.Time `json:"updated"`
}

type pos struct {
	File string `json:"file"`
	Line int64  `json:"line"`
}

// span is a stretch of lines of one file.
type span struct {
	From pos `json:"from"`
	To   pos `json:"to"`
}

func (s span) holds(p pos) bool {
	return p.File == s.From.File && s.From.Line <= p.Line && p.Line <= s.To.Line
}

// writeFileAtomic writes b to path through a synced temporary file and a rename.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".checkpoint-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// ---- the file source ----

// fileSource reads the input's lines as messages (ingest.Source). A message's ack
// marks its line done; the checkpoint advances over the longest prefix of done
// lines and is saved on each Fetch (so with the previous batch's acks) and at the
// end.
type fileSource struct {
	in      *input
	cpPath  string
	maxLine int

	mu    sync.Mutex
	cp    checkpoint
	queue []*lineRef // handed out, in input order; popped when done
	cur   []span     // what this run handed out, one span per file
	prior []span     // earlier runs' tries beyond the checkpoint

	// reading
	fi      int // index in in.files of the open file
	f       *os.File
	br      *bufio.Reader
	line    int64 // lines read from the open file
	off     int64 // bytes read from the open file
	eof     bool  // every file read
	pending []*ingest.Message
	// signalEnd: Fetch returns ingest.ErrExhausted at the end (for a
	// pipeline's Run), rather than no messages.
	signalEnd bool

	doneBytes atomic.Int64 // bytes of the input completed (for progress)
	doneLines atomic.Int64 // lines completed by this run
	total     int64

	// dlq receives the lines refused here (an image_file that cannot be
	// read; with keyedOnly, a line without a valid post id); nil passes them
	// on as they are, for the indexer to dead-letter.
	dlq       ingest.DeadLetter
	keyedOnly bool
	rejected  atomic.Int64
	fetched   atomic.Bool // a Fetch handed something out or refused a line
}

type lineRef struct {
	p     pos
	end   int64 // offset after the line
	last  bool  // the file's end marker: done when reached, marks the file done
	blank bool  // an empty line: nothing to send
	done  bool
}

func openFileSource(in *input, cpPath, target string, restart bool, maxLine int) (*fileSource, error) {
	s := &fileSource{in: in, cpPath: cpPath, maxLine: maxLine, fi: -1}
	for _, n := range in.files {
		s.total += in.sizes[n]
	}
	s.cp = checkpoint{V: 1, From: in.root, To: target}
	if b, err := os.ReadFile(cpPath); err == nil && !restart {
		var cp checkpoint
		if err := json.Unmarshal(b, &cp); err != nil {
			return nil, fmt.Errorf("ingest: checkpoint %s: %w (--restart ignores it)", cpPath, err)
		}
		if cp.V != 1 {
			return nil, fmt.Errorf("ingest: checkpoint %s has version %d; this build reads 1 (--restart ignores it)", cpPath, cp.V)
		}
		if cp.From != in.root || cp.To != target {
			return nil, fmt.Errorf("ingest: checkpoint %s belongs to a backfill of %s to %s, not of %s to %s (use --checkpoint or --restart)",
				cpPath, cp.From, cp.To, in.root, target)
		}
		s.cp = cp
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("ingest: checkpoint: %w", err)
	}
	s.prior = s.prune(s.cp.Tries)
	done := map[string]bool{}
	var doneBytes int64
	for _, n := range s.cp.Done {
		done[n] = true
		doneBytes += in.sizes[n]
	}
	// Keep the files still to read; the one in progress first, at its offset.
	var rest []string
	for _, n := range in.files {
		if !done[n] && n != s.cp.File {
			rest = append(rest, n)
		}
	}
	if s.cp.File != "" && slices.Contains(in.files, s.cp.File) {
		rest = append([]string{s.cp.File}, rest...)
	}
	in.files = rest
	if s.cp.Complete && len(rest) > 0 {
		s.cp.Complete = false // files were added to the directory since
	}
	if s.cp.File != "" {
		size, ok := in.sizes[s.cp.File]
		if !ok {
			return nil, fmt.Errorf("ingest: checkpoint %s is in %s, which is no longer in %s (--restart to start over)", cpPath, s.cp.File, in.root)
		}
		if size < s.cp.Offset {
			return nil, fmt.Errorf("ingest: %s is %d bytes, shorter than the checkpoint's %d: it changed since (--restart to start over)",
				in.path(s.cp.File), size, s.cp.Offset)
		}
		doneBytes += s.cp.Offset
	}
	s.doneBytes.Store(doneBytes)
	return s, nil
}

// prune drops the tries that end before the checkpoint.
func (s *fileSource) prune(tries []span) []span {
	var out []span
	for _, t := range tries {
		if !s.isDone(t.To) {
			out = append(out, t)
		}
	}
	return out
}

// isDone reports whether the line at p is completed by the checkpoint.
func (s *fileSource) isDone(p pos) bool {
	if slices.Contains(s.cp.Done, p.File) {
		return true
	}
	return p.File == s.cp.File && p.Line <= s.cp.Line
}

func (s *fileSource) attempt(p pos) int {
	n := 1
	for _, t := range s.prior {
		if t.holds(p) {
			n++
		}
	}
	return n
}

func (s *fileSource) closeFile() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// nextFile opens the next file, at the checkpoint's offset when it is the one in progress.
func (s *fileSource) nextFile() error {
	s.closeFile()
	s.fi++
	if s.fi >= len(s.in.files) {
		s.eof = true
		return nil
	}
	name := s.in.files[s.fi]
	f, err := os.Open(s.in.path(name))
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	s.f, s.line, s.off = f, 0, 0
	if name == s.cp.File && s.cp.Offset > 0 {
		if _, err := f.Seek(s.cp.Offset, io.SeekStart); err != nil {
			return fmt.Errorf("ingest: %s: %w", name, err)
		}
		s.line, s.off = s.cp.Line, s.cp.Offset
	}
	s.br = bufio.NewReaderSize(f, 256<<10)
	return nil
}

// readLine returns the next line of the open file without its end of line, or
// io.EOF. A line over maxLine bytes is an error naming it.
func (s *fileSource) readLine() ([]byte, error) {
	var buf []byte
	tooLong := func() error {
		return fmt.Errorf("ingest: %s line %d is over %d bytes (the largest message the target takes); shrink it (an image URL instead of inline data) or remove it",
			s.in.path(s.in.files[s.fi]), s.line, s.maxLine)
	}
	for {
		chunk, err := s.br.ReadSlice('\n')
		s.off += int64(len(chunk))
		if len(buf)+len(chunk) > s.maxLine+2 { // the line and its end of line
			s.line++
			return nil, tooLong()
		}
		buf = append(buf, chunk...)
		switch {
		case err == nil, errors.Is(err, io.EOF) && len(buf) > 0:
			s.line++
			buf = bytes.TrimRight(buf, "\r\n")
			if len(buf) > s.maxLine {
				return nil, tooLong()
			}
			return buf, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return nil, io.EOF
		default:
			return nil, fmt.Errorf("ingest: %s: %w", s.in.path(s.in.files[s.fi]), err)
		}
	}
}

// Fetch returns up to n messages (the lines after those handed out) without
// waiting; none when the input is exhausted. It first saves the checkpoint with
// the acks received so far and the lines about to be handed out.
func (s *fileSource) Fetch(ctx context.Context, n int, _ time.Duration) ([]*ingest.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n = max(n, 1)
	out := s.pending
	s.pending = nil
	var refs []*lineRef
	for len(out) < n && !s.eof {
		if s.f == nil {
			if err := s.nextFile(); err != nil {
				return nil, err
			}
			continue
		}
		b, err := s.readLine()
		if errors.Is(err, io.EOF) {
			refs = append(refs, &lineRef{p: pos{s.in.files[s.fi], s.line}, end: s.off, last: true, done: true})
			s.closeFile()
			continue
		}
		if err != nil {
			return nil, err
		}
		p := pos{s.in.files[s.fi], s.line}
		if len(bytes.TrimSpace(b)) == 0 {
			refs = append(refs, &lineRef{p: p, end: s.off, blank: true, done: true})
			continue
		}
		ref := &lineRef{p: p, end: s.off}
		m, rej := s.message(b, ref)
		if rej != nil {
			// Refused here: dead-lettered with the reason before the line
			// counts as done (a crash before the checkpoint repeats the dead
			// letter, which the stream deduplicates by origin and stage).
			if err := s.dlq.Send(ctx, m, rej.stage, rej.reason); err != nil {
				return nil, fmt.Errorf("ingest: %s line %d: dead letter: %w", s.in.path(p.File), p.Line, err)
			}
			ref.done = true
			s.doneLines.Add(1)
			s.rejected.Add(1)
		} else {
			out = append(out, m)
		}
		refs = append(refs, ref)
		s.fetched.Store(true)
	}
	s.mu.Lock()
	s.queue = append(s.queue, refs...)
	for _, r := range refs {
		if r.last || r.blank {
			continue
		}
		if n := len(s.cur); n > 0 && s.cur[n-1].To.File == r.p.File {
			s.cur[n-1].To = r.p
		} else {
			s.cur = append(s.cur, span{r.p, r.p})
		}
	}
	s.advance()
	err := s.saveLocked()
	s.mu.Unlock()
	if err != nil {
		s.pending = out // nothing is handed out before the tries are durable
		return nil, fmt.Errorf("ingest: saving the checkpoint %s: %w", s.cpPath, err)
	}
	if len(out) == 0 && s.signalEnd && s.exhausted() {
		return nil, ingest.ErrExhausted
	}
	return out, nil
}

// refusal is why a line is dead-lettered here rather than sent.
type refusal struct {
	stage  ingest.Stage
	reason string
}

// message wraps one line, resolved as a post file line (postfile.Resolve:
// image_file read from disk and sent inline; {"id":"X","delete":true} is a
// tombstone for X). A line that cannot be sent comes back with its refusal
// when a dead-letter destination is set; otherwise it is sent as it is (with
// the id the line has, if any) and the indexer dead-letters it.
func (s *fileSource) message(line []byte, ref *lineRef) (*ingest.Message, *refusal) {
	path := s.in.path(ref.p.File)
	pm, err := postfile.Resolve(line, filepath.Dir(path))
	var key string
	var value []byte
	var rej *refusal
	switch {
	case err == nil:
		key, value = pm.Key, pm.Value
		if len(value) > s.maxLine {
			rej = &refusal{ingest.StageDecode, fmt.Sprintf("the post is %d bytes with its image inline, over the %d bytes the target takes (serve the image and give image.url)", len(value), s.maxLine)}
		}
	case errors.Is(err, postfile.ErrNoID) && !s.keyedOnly, s.dlq == nil:
		var del bool
		key, del = lineKey(line)
		value = append([]byte(nil), line...)
		if del {
			value = nil
		}
	default:
		var pe *postfile.Error
		stage := ingest.StageDecode
		if errors.As(err, &pe) && pe.Field == postfile.FieldImageFile {
			stage = ingest.StageFile
		}
		key, _ = lineKey(line)
		if ingest.ValidID(key) != "" {
			key = ""
		}
		value = append([]byte(nil), line...)
		rej = &refusal{stage, err.Error()}
	}
	if rej != nil {
		value = append([]byte(nil), line...) // the dead letter keeps the line as written
	}
	m := ingest.NewMessage(key, value, func(context.Context) error {
		s.mu.Lock()
		if !ref.done {
			ref.done = true
			s.doneLines.Add(1)
		}
		s.mu.Unlock()
		return nil
	})
	m.Origin = fmt.Sprintf("file %s line %d", path, ref.p.Line)
	m.Attempt = s.attempt(ref.p)
	m.Headers = map[string]string{"Xmodal-Source-File": path, "Xmodal-Source-Line": fmt.Sprint(ref.p.Line)}
	return m, rej
}

// lineKey reads a line's post id (its key; "" when the line has none that can
// be read) and whether it is a tombstone ({"id":"X","delete":true}).
func lineKey(line []byte) (key string, tombstone bool) {
	var head struct {
		ID     any  `json:"id"`
		Delete bool `json:"delete"`
	}
	if json.Unmarshal(line, &head) != nil {
		return "", false
	}
	key, _ = head.ID.(string)
	return key, head.Delete && key != ""
}

// advance pops the done prefix of the queue into the checkpoint. Callers hold mu.
func (s *fileSource) advance() {
	i := 0
	for ; i < len(s.queue) && s.queue[i].done; i++ {
		r := s.queue[i]
		if r.last {
			if !slices.Contains(s.cp.Done, r.p.File) {
				s.cp.Done = append(s.cp.Done, r.p.File)
			}
			s.cp.File, s.cp.Line, s.cp.Offset = "", 0, 0
		} else {
			s.cp.File, s.cp.Line, s.cp.Offset = r.p.File, r.p.Line, r.end
		}
	}
	for _, r := range s.queue[:i] {
		if !r.last && !r.blank {
			s.cp.Lines++
		}
	}
	s.queue = s.queue[i:]
	var doneBytes int64
	for _, n := range s.cp.Done {
		doneBytes += s.in.sizes[n]
	}
	s.doneBytes.Store(doneBytes + s.cp.Offset)
}

// saveLocked writes the checkpoint; callers hold mu.
func (s *fileSource) saveLocked() error {
	tries := s.prune(s.prior)
	for _, t := range s.cur {
		if s.isDone(t.To) {
			continue
		}
		if s.isDone(t.From) { // start the span after the checkpoint
			t.From.Line = s.cp.Line + 1
		}
		tries = append(tries, t)
	}
	s.cp.Tries = tries
	s.cp.Updated = time.Now().UTC()
	b, err := json.MarshalIndent(&s.cp, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(s.cpPath, append(b, '\n'))
}

// save saves the checkpoint with the acks received so far.
func (s *fileSource) save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance()
	return s.saveLocked()
}

// finish marks the backfill complete when every line is done.
func (s *fileSource) finish() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance()
	if s.eof && len(s.queue) == 0 && len(s.pending) == 0 {
		s.cp.Complete = true
		s.prior, s.cur = nil, nil
	}
	return s.saveLocked()
}

// handedOut reports whether this run sent or refused any line (else it
// leaves no checkpoint behind when it fails).
func (s *fileSource) handedOut() bool { return s.fetched.Load() }

// exhausted reports whether every line was handed out.
func (s *fileSource) exhausted() bool { return s.eof && len(s.pending) == 0 }

// ---- --to kafka ----

// kafkaTarget produces to kafka.topic; lines refused here go to its
// dead-letter topic.
type kafkaTarget struct {
	cfg *Config
	log *slog.Logger
	tr  *kafkago.Transport
	w   *kafkago.Writer
	dlq *kafkaDeadLetter
}

func openKafkaTarget(ctx context.Context, cfg *Config, log *slog.Logger) (*kafkaTarget, error) {
	k := cfg.Kafka
	tr, err := kafkaTransport(cfg)
	if err != nil {
		return nil, err
	}
	if err := checkKafkaTopic(ctx, cfg, tr); err != nil {
		tr.CloseIdleConnections()
		return nil, err
	}
	w := &kafkago.Writer{Addr: kafkago.TCP(k.Brokers...), Topic: k.Topic, Transport: tr,
		Balancer:     &kafkago.Murmur2Balancer{}, // the Java client's default partitioner
		RequiredAcks: kafkago.RequireAll, MaxAttempts: 10, WriteBackoffMin: 100 * time.Millisecond, WriteBackoffMax: 2 * time.Second,
		// BatchSize 100: measured with kafka-go v0.4.51, a call of 500 messages
		// takes ~6 ms, against ~300 ms with BatchSize 1<<20. A partition's
		// batches are written in order, one at a time.
		BatchSize: 100, BatchBytes: 1 << 20, BatchTimeout: time.Millisecond, WriteTimeout: 30 * time.Second,
		ErrorLogger: kafkago.LoggerFunc(func(f string, a ...any) { log.Debug("kafka writer: " + fmt.Sprintf(f, a...)) })}
	return &kafkaTarget{cfg: cfg, log: log, tr: tr, w: w, dlq: newKafkaDeadLetter(cfg, tr)}, nil
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
	t.dlq.w.Close()
	t.tr.CloseIdleConnections()
}

func (t *kafkaTarget) run(ctx context.Context, o backfillOptions, src *fileSource) error {
	crash := crashPoint(t.log) // crash-test builds only
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
			if src.exhausted() {
				return nil
			}
			continue
		}
		out := make([]kafkago.Message, len(msgs))
		for i, m := range msgs {
			out[i] = kafkago.Message{Value: m.Value}
			if m.Key != "" {
				out[i].Key = []byte(m.Key)
			}
		}
		if err := t.w.WriteMessages(ctx, out...); err != nil {
			src.pending = msgs
			return fmt.Errorf("ingest: producing to %s: %w", t.cfg.Kafka.Topic, err)
		}
		crash("ingest-after-produce")
		for _, m := range msgs {
			m.Ack(ctx)
		}
	}
}

// kafkaDeadLetter writes dead letters to the Kafka dead-letter topic with the
// headers the indexer's own dead letters carry (ingest/kafka).
type kafkaDeadLetter struct {
	topic string
	w     *kafkago.Writer
}

// kafkaDLQTopic is kafka.dlq_topic, or <topic>.dlq.
func kafkaDLQTopic(cfg *Config) string {
	if cfg.Kafka.DLQTopic != "" {
		return cfg.Kafka.DLQTopic
	}
	return cfg.Kafka.Topic + ".dlq"
}

func newKafkaDeadLetter(cfg *Config, tr *kafkago.Transport) *kafkaDeadLetter {
	topic := kafkaDLQTopic(cfg)
	return &kafkaDeadLetter{topic: topic, w: &kafkago.Writer{Addr: kafkago.TCP(cfg.Kafka.Brokers...), Topic: topic, Transport: tr,
		Balancer: &kafkago.Hash{}, RequiredAcks: kafkago.RequireAll, MaxAttempts: 10, BatchTimeout: time.Millisecond,
		WriteTimeout: 30 * time.Second, AllowAutoTopicCreation: true}}
}

func (d *kafkaDeadLetter) Send(ctx context.Context, m *ingest.Message, stage ingest.Stage, reason string) error {
	out := kafkago.Message{Value: m.Value, Headers: kafkasrc.DeadLetterHeaders(m, stage, reason, time.Now())}
	if m.Key != "" {
		out.Key = []byte(m.Key)
	}
	if err := d.w.WriteMessages(ctx, out); err != nil {
		return fmt.Errorf("kafka dead-letter topic %s: %w", d.topic, err)
	}
	return nil
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

func (t *natsTarget) run(ctx context.Context, o backfillOptions, src *fileSource) error {
	crash := crashPoint(slog.Default()) // crash-test builds only
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
			if src.exhausted() {
				return nil
			}
			continue
		}
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
			if futs[i], err = t.js.PublishMsgAsync(pm); err != nil {
				src.pending = msgs
				return fmt.Errorf("ingest: publishing %s: %w", ingest.QuoteID(m.Key), err)
			}
		}
		for i, f := range futs {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				src.pending = msgs
				return fmt.Errorf("ingest: publishing %s to %s: %w", ingest.QuoteID(msgs[i].Key), postsStream, err)
			case <-ctx.Done():
				src.pending = msgs
				return ctx.Err()
			}
		}
		crash("ingest-after-produce")
		for _, m := range msgs {
			m.Ack(ctx)
		}
	}
}

// natsDeadLetter publishes dead letters to the JetStream dead-letter stream.
type natsDeadLetter struct{ js jetstream.JetStream }

func (d *natsDeadLetter) Send(ctx context.Context, m *ingest.Message, stage ingest.Stage, reason string) error {
	return ingest.PublishDeadLetter(ctx, d.js, dlqSubject, m, stage, reason)
}

// kafkaTransport builds a kafka-go transport from the kafka.* settings (SASL, TLS).
func kafkaTransport(cfg *Config) (*kafkago.Transport, error) {
	k := cfg.Kafka
	var mech sasl.Mechanism
	var err error
	switch strings.ToLower(k.SASLMechanism) {
	case "":
	case "plain":
		mech = plain.Mechanism{Username: k.SASLUser, Password: k.SASLPassword}
	case "scram-sha-256":
		mech, err = scram.Mechanism(scram.SHA256, k.SASLUser, k.SASLPassword)
	case "scram-sha-512":
		mech, err = scram.Mechanism(scram.SHA512, k.SASLUser, k.SASLPassword)
	default:
		err = fmt.Errorf("%q is not plain, scram-sha-256 or scram-sha-512", k.SASLMechanism)
	}
	if err != nil {
		return nil, fmt.Errorf("config kafka.sasl_mechanism: %w", err)
	}
	var tc *tls.Config
	if k.TLS || k.TLSCAFile != "" || k.TLSCertFile != "" {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
		if k.TLSCAFile != "" {
			pem, err := os.ReadFile(k.TLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("config kafka.tls_ca_file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("config kafka.tls_ca_file: %s holds no PEM certificate", k.TLSCAFile)
			}
		}
		if k.TLSCertFile != "" || k.TLSKeyFile != "" {
			cert, err := tls.LoadX509KeyPair(k.TLSCertFile, k.TLSKeyFile)
			if err != nil {
				return nil, fmt.Errorf("config kafka.tls_cert_file: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
	}
	return &kafkago.Transport{ClientID: "xmodal-ingest", DialTimeout: 10 * time.Second, SASL: mech, TLS: tc, MetadataTTL: 10 * time.Second}, nil
}

// checkKafkaTopic fails clearly when the brokers do not answer, refuse the
// credentials, or do not have the topic (it is not auto-created: its partition
// count matters).
func checkKafkaTopic(ctx context.Context, cfg *Config, tr *kafkago.Transport) error {
	k := cfg.Kafka
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cl := &kafkago.Client{Addr: kafkago.TCP(k.Brokers...), Transport: tr, Timeout: 20 * time.Second}
	md, err := cl.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{k.Topic}})
	if err != nil {
		if errors.Is(err, kafkago.SASLAuthenticationFailed) {
			return fmt.Errorf("ingest: kafka SASL %s authentication as %q failed: %w", k.SASLMechanism, k.SASLUser, err)
		}
		return fmt.Errorf("ingest: kafka brokers %v: %w", k.Brokers, err)
	}
	for _, t := range md.Topics {
		if t.Name == k.Topic {
			if t.Error != nil {
				return fmt.Errorf("ingest: kafka topic %q: %w (create it first, with the partitions you want)", k.Topic, t.Error)
			}
			return nil
		}
	}
	return fmt.Errorf("ingest: kafka topic %q does not exist (create it first, with the partitions you want)", k.Topic)
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
	dlq     *fileDeadLetter
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
	dir, err := findModel(cfg.Model)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	if t.model, err = encoders.Load(dir, modelOptions(cfg, log)); err != nil {
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
		ModelVersion: t.model.Version(), Logger: log, Coder: indexCoder(coder)})
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
	if t.dlq, err = openFileDeadLetter(o.DLQ); err != nil {
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
	return fmt.Sprintf("; %d dead-lettered to %s", t.dlq.count.Load(), t.dlqPath)
}

func (t *directTarget) close() {
	for i := len(t.closers) - 1; i >= 0; i-- {
		t.closers[i]()
	}
	t.closers = nil
}

func (t *directTarget) run(ctx context.Context, o backfillOptions, src *fileSource) error {
	cfg := t.cfg
	batch := o.Batch
	if batch == 0 {
		batch = cfg.Ingest.BatchSize
	}
	pc := pipelineConfig(cfg)
	pc.BatchSize, pc.MaxInFlight = batch, max(batch, cfg.Ingest.MaxInFlight)
	deps := workers.Deps{Source: src, DeadLetter: t.dlq, Sink: t.ix, Deny: t.deny, Embedder: t.model, Decode: ingestDecode(t.dec),
		Fetcher: t.fetch, Thumbnail: thumbnail, Hasher: ingestHasher(), Logger: t.log}
	crashPoints(&deps, t.log) // crash tests only (build tag crashtest)
	pipe, err := workers.New(pc, deps)
	if err != nil {
		return err
	}
	src.signalEnd = true
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

// fileDeadLetter appends dead letters to a JSON Lines file, synced before Send
// returns (ingest.DeadLetter).
type fileDeadLetter struct {
	mu    sync.Mutex
	f     *os.File
	count atomic.Int64
}

// deadLetterLine is one line of the dead-letter file.
type deadLetterLine struct {
	Key         string            `json:"key"`
	Value       *string           `json:"value,omitempty"`        // the original line, when it is UTF-8
	ValueBase64 []byte            `json:"value_base64,omitempty"` // otherwise
	Tombstone   bool              `json:"tombstone,omitempty"`
	Stage       ingest.Stage      `json:"stage"`
	Reason      string            `json:"reason"`
	Origin      string            `json:"origin"`
	Attempt     int               `json:"attempt"`
	FailedAt    time.Time         `json:"failed_at"`
	Headers     map[string]string `json:"headers,omitempty"`
}

func openFileDeadLetter(path string) (*fileDeadLetter, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("ingest --dlq: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("ingest --dlq: %w", err)
	}
	return &fileDeadLetter{f: f}, nil
}

func (d *fileDeadLetter) Send(_ context.Context, m *ingest.Message, stage ingest.Stage, reason string) error {
	l := deadLetterLine{Key: m.Key, Tombstone: m.Tombstone, Stage: stage, Reason: reason, Origin: m.Origin,
		Attempt: m.Attempt, FailedAt: time.Now().UTC(), Headers: m.Headers}
	if utf8.Valid(m.Value) {
		if !m.Tombstone {
			v := string(m.Value)
			l.Value = &v
		}
	} else {
		l.ValueBase64 = m.Value
	}
	b, err := json.Marshal(&l)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("dead-letter file: %w", err)
	}
	if err := d.f.Sync(); err != nil {
		return fmt.Errorf("dead-letter file: %w", err)
	}
	d.count.Add(1)
	return nil
}

func (d *fileDeadLetter) Close() error { return d.f.Close() }

// ---- progress ----

// progress prints "N posts, P% of SIZE, R posts/s, ETA T" to stderr: rewritten in
// place on a terminal, one line per interval otherwise.
type progress struct {
	w      io.Writer
	tty    bool
	every  time.Duration
	src    *fileSource
	t0     time.Time
	bytes0 int64
	done   chan struct{}
	wg     sync.WaitGroup
	last   int
}

func newProgress(w io.Writer, every time.Duration, src *fileSource) *progress {
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

func (p *progress) posts() int64 { return p.src.doneLines.Load() }

func (p *progress) start() {
	p.t0 = time.Now()
	p.bytes0 = p.src.doneBytes.Load()
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
	done, total := p.src.doneBytes.Load(), p.src.total
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
	_ ingest.Source     = (*fileSource)(nil)
	_ ingest.DeadLetter = (*fileDeadLetter)(nil)
)
