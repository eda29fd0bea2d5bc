package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/spf13/cobra"

	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/ingest/postfile"
)

// deadLetter is one dead letter, from either backend.
type deadLetter struct {
	ID      string // JetStream: the stream sequence; Kafka: partition:offset
	Key     string
	Value   []byte // the original message (nil: a tombstone)
	Headers map[string]string
	// kafka position
	part int
	off  int64
}

func (d *deadLetter) header(k string) string { return d.Headers[k] }

// deadLetters is a dead-letter store: the JetStream stream XMODAL_DLQ, or
// the Kafka topic <topic>.dlq.
type deadLetters interface {
	describe() string
	// list calls fn with each dead letter still pending, oldest first.
	list(ctx context.Context, fn func(*deadLetter) error) error
	get(ctx context.Context, id string) (*deadLetter, error)
	// republish sends a message to the ingest stream or topic.
	republish(ctx context.Context, key string, value []byte) error
	// remove drops dead letters that were replayed or purged.
	remove(ctx context.Context, ds []*deadLetter) error
	close()
}

func dlqCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "dlq",
		Short: "List, show, replay and purge dead letters (JetStream XMODAL_DLQ, or Kafka <topic>.dlq)",
		Long: `Every post the indexer cannot index goes to a dead-letter store with the reason
and the stage it failed at (decode, fetch, image, encode, poison; "file" for a
backfill line whose image_file could not be read): the JetStream stream
XMODAL_DLQ of a running xmodal, or with kafka.brokers set the Kafka topic
kafka.dlq_topic (<topic>.dlq).

  ls       lists them: id, when, stage, post id, reason
  show     prints some in full: headers and the original message
  replay   sends them to the ingest stream (or topic) again, after you fixed
           the cause (allowed a private host with ingest.allow_private, put the
           missing image file in place, ...), and removes them from the
           dead letters; a line of a post file is resolved again (image_file
           read) relative to the file it came from
  purge    removes them without replaying

On Kafka a topic keeps its records until retention: xmodal keeps its place in
the consumer group "<dlq topic>.xmodal-dlq", and replay and purge move it, on
each partition, past the letters they handled (a handled letter stays listed
while an older one on its partition is still pending; --all handles them all).`,
	}
	c.AddCommand(dlqLsCmd(), dlqShowCmd(), dlqReplayCmd(), dlqPurgeCmd())
	return c
}

// openDeadLetters opens the store the configuration names.
func openDeadLetters(cmd *cobra.Command) (deadLetters, error) {
	cfg, err := loadConfig(cmd.Flags(), os.LookupEnv)
	if err != nil {
		return nil, err
	}
	if len(cfg.Kafka.Brokers) > 0 {
		return openKafkaDLQ(cmd.Context(), cfg)
	}
	nc, err := connectNATS(cfg, natsURL(cfg))
	if err != nil {
		return nil, fmt.Errorf("%w (is 'xmodal run' running? --nats-url or --nats-listen names it)", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	st, err := js.Stream(cmd.Context(), dlqStream)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("the dead-letter stream %s at %s: %w (is 'xmodal run' running there?)", dlqStream, nc.ConnectedUrlRedacted(), err)
	}
	return &jsDLQ{nc: nc, js: js, st: st}, nil
}

// dlqRun is a command's RunE that opens the dead letters for run and closes
// them after it.
func dlqRun(run func(cmd *cobra.Command, dl deadLetters, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		dl, err := openDeadLetters(cmd)
		if err != nil {
			return err
		}
		defer dl.close()
		return run(cmd, dl, args)
	}
}

// dlqFilter selects dead letters.
type dlqFilter struct {
	stage, key string
}

func (f dlqFilter) match(d *deadLetter) bool {
	return (f.stage == "" || d.header(ingest.HeaderStage) == f.stage) && (f.key == "" || d.Key == f.key)
}

func dlqLsCmd() *cobra.Command {
	var f dlqFilter
	var limit int
	var asJSON bool
	c := &cobra.Command{
		Use:   "ls",
		Short: "List dead letters: id, failed at, stage, post id, reason",
		Args:  cobra.NoArgs,
		RunE: dlqRun(func(cmd *cobra.Command, dl deadLetters, _ []string) error {
			out := cmd.OutOrStdout()
			var rows []*deadLetter
			total := 0
			err := dl.list(cmd.Context(), func(d *deadLetter) error {
				if f.match(d) {
					total++
					if limit <= 0 || len(rows) < limit {
						rows = append(rows, d)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(out, dlqJSON(rows))
			}
			fmt.Fprintf(out, "%d dead letters in %s\n", total, dl.describe())
			if total == 0 {
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "id\tfailed_at\tstage\tpost\treason")
			for _, d := range rows {
				at := d.header(ingest.HeaderFailed)
				if t, err := time.Parse(time.RFC3339Nano, at); err == nil {
					at = t.UTC().Format("2006-01-02 15:04:05Z")
				}
				key := d.Key
				if key == "" {
					key = "(no id)"
				} else if len(key) > 40 {
					key = key[:40] + "…"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.ID, at, d.header(ingest.HeaderStage), key, oneLine(d.header(ingest.HeaderReason), 120))
			}
			tw.Flush()
			if total > len(rows) {
				fmt.Fprintf(out, "... %d more (--limit)\n", total-len(rows))
			}
			fmt.Fprintln(out, "xmodal dlq show ID prints one in full; xmodal dlq replay ID... (or --all) sends them again once the cause is fixed")
			return nil
		}),
	}
	c.Flags().StringVar(&f.stage, "stage", "", "only this stage (decode, fetch, image, encode, poison, file)")
	c.Flags().StringVar(&f.key, "post", "", "only this post id")
	c.Flags().IntVar(&limit, "limit", 100, "most rows printed (0: all)")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// dlqView is a dead letter as JSON.
type dlqView struct {
	ID        string            `json:"id"`
	Key       string            `json:"key"`
	Stage     string            `json:"stage"`
	Reason    string            `json:"reason"`
	Origin    string            `json:"origin"`
	FailedAt  string            `json:"failed_at"`
	Tombstone bool              `json:"tombstone,omitempty"`
	Headers   map[string]string `json:"headers"`
	Value     json.RawMessage   `json:"value,omitempty"`
	Raw       string            `json:"raw,omitempty"` // when the value is not JSON
}

func dlqJSON(ds []*deadLetter) []dlqView {
	out := make([]dlqView, len(ds))
	for i, d := range ds {
		out[i] = dlqView{ID: d.ID, Key: d.Key, Stage: d.header(ingest.HeaderStage), Reason: d.header(ingest.HeaderReason),
			Origin: d.header(ingest.HeaderOrigin), FailedAt: d.header(ingest.HeaderFailed), Tombstone: len(d.Value) == 0, Headers: d.Headers}
	}
	return out
}

func dlqShowCmd() *cobra.Command {
	var raw bool
	c := &cobra.Command{
		Use:   "show ID...",
		Short: "Print dead letters in full: headers and the original message",
		Args:  cobra.MinimumNArgs(1),
		RunE: dlqRun(func(cmd *cobra.Command, dl deadLetters, args []string) error {
			out := cmd.OutOrStdout()
			for _, id := range args {
				d, err := dl.get(cmd.Context(), id)
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "dead letter %s of %s\n", d.ID, dl.describe())
				for _, k := range slices.Sorted(maps.Keys(d.Headers)) {
					fmt.Fprintf(out, "  %s: %s\n", k, d.Headers[k])
				}
				switch {
				case len(d.Value) == 0:
					fmt.Fprintln(out, "  (a tombstone: no value)")
				case raw:
					fmt.Fprintf(out, "%s\n", d.Value)
				default:
					fmt.Fprintf(out, "%s\n", elideImageData(d.Value))
				}
			}
			return nil
		}),
	}
	c.Flags().BoolVar(&raw, "raw", false, "print the message as it is (inline image data included)")
	return c
}

// elideImageData indents a JSON message and shortens inline image bytes.
func elideImageData(b []byte) []byte {
	var v map[string]any
	if json.Unmarshal(b, &v) != nil {
		if len(b) > 2000 {
			return append(append([]byte(nil), b[:2000]...), "… (not JSON; --raw prints it all)"...)
		}
		return b
	}
	if im, ok := v["image"].(map[string]any); ok {
		if d, ok := im["data"].(string); ok && len(d) > 80 {
			im["data"] = fmt.Sprintf("%s… (%d base64 characters; --raw prints them)", d[:40], len(d))
		}
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetIndent("  ", "  ")
	enc.SetEscapeHTML(false)
	enc.Encode(v)
	return append([]byte("  "), bytes.TrimRight(out.Bytes(), "\n")...)
}

// selectDeadLetters resolves ids, or every dead letter matching f with all.
func selectDeadLetters(ctx context.Context, dl deadLetters, ids []string, all bool, f dlqFilter) ([]*deadLetter, error) {
	if all == (len(ids) > 0) {
		return nil, errors.New("name the dead letters (ids from 'xmodal dlq ls') or give --all")
	}
	var out []*deadLetter
	if all {
		err := dl.list(ctx, func(d *deadLetter) error {
			if f.match(d) {
				out = append(out, d)
			}
			return nil
		})
		return out, err
	}
	for _, id := range ids {
		d, err := dl.get(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// dlqSelectCmd is a command that acts on dead letters (replay, purge): the
// ones named by id, or with --all every one, narrowed by --stage and --post.
func dlqSelectCmd(use, short string, act func(cmd *cobra.Command, dl deadLetters, ds []*deadLetter) error) *cobra.Command {
	var all bool
	var f dlqFilter
	c := &cobra.Command{
		Use:   use,
		Short: short,
		RunE: dlqRun(func(cmd *cobra.Command, dl deadLetters, args []string) error {
			ds, err := selectDeadLetters(cmd.Context(), dl, args, all, f)
			if err != nil {
				return err
			}
			return act(cmd, dl, ds)
		}),
	}
	c.Flags().BoolVar(&all, "all", false, "every dead letter (narrowed by --stage and --post)")
	c.Flags().StringVar(&f.stage, "stage", "", "with --all: only this stage")
	c.Flags().StringVar(&f.key, "post", "", "with --all: only this post id")
	return c
}

func dlqReplayCmd() *cobra.Command {
	return dlqSelectCmd("replay ID... | --all", "Send dead letters to the ingest stream again (after fixing the cause) and remove them",
		func(cmd *cobra.Command, dl deadLetters, ds []*deadLetter) error {
			out := cmd.OutOrStdout()
			var done []*deadLetter
			skipped := 0
			for _, d := range ds {
				key, value, err := replayMessage(d)
				if err != nil {
					skipped++
					fmt.Fprintf(out, "%s: not replayed: %v\n", d.ID, err)
					continue
				}
				if err := dl.republish(cmd.Context(), key, value); err != nil {
					return fmt.Errorf("replay %s: %w (%d replayed before it)", d.ID, err, len(done))
				}
				done = append(done, d)
			}
			if err := dl.remove(cmd.Context(), done); err != nil {
				return fmt.Errorf("replayed %d, but removing them from the dead letters failed: %w", len(done), err)
			}
			fmt.Fprintf(out, "replayed %d dead letters into the ingest stream", len(done))
			if skipped > 0 {
				fmt.Fprintf(out, "; %d left (reasons above)", skipped)
			}
			fmt.Fprintln(out, "\nthose that fail again come back as new dead letters: xmodal dlq ls")
			if skipped > 0 {
				return fmt.Errorf("%d dead letters could not be replayed", skipped)
			}
			return nil
		})
}

// replayMessage is what a dead letter replays as: its key and original value;
// a line of a post file is resolved again relative to the file it came from
// (image_file read now).
func replayMessage(d *deadLetter) (string, []byte, error) {
	if file := d.header("Xmodal-Source-File"); file != "" && len(d.Value) > 0 {
		m, err := postfile.Resolve(d.Value, filepath.Dir(file))
		if err != nil {
			return "", nil, err
		}
		return m.Key, m.Value, nil
	}
	if why := ingest.ValidID(d.Key); why != "" {
		return "", nil, fmt.Errorf("the message has no valid post id (%s): it cannot be keyed; fix and send it yourself", why)
	}
	return d.Key, d.Value, nil
}

func dlqPurgeCmd() *cobra.Command {
	return dlqSelectCmd("purge ID... | --all", "Remove dead letters without replaying them",
		func(cmd *cobra.Command, dl deadLetters, ds []*deadLetter) error {
			if err := dl.remove(cmd.Context(), ds); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "purged %d dead letters\n", len(ds))
			return nil
		})
}

// ---- JetStream ----

type jsDLQ struct {
	nc *nats.Conn
	js jetstream.JetStream
	st jetstream.Stream
}

func (j *jsDLQ) describe() string {
	return fmt.Sprintf("JetStream stream %s at %s", dlqStream, j.nc.ConnectedUrlRedacted())
}
func (j *jsDLQ) close() { j.nc.Close() }

func (j *jsDLQ) letter(m *jetstream.RawStreamMsg) *deadLetter {
	d := &deadLetter{ID: strconv.FormatUint(m.Sequence, 10), Key: m.Header.Get(ingest.HeaderKey), Value: m.Data, Headers: map[string]string{}}
	for k, v := range m.Header {
		if len(v) > 0 && k != nats.MsgIdHdr {
			d.Headers[k] = v[0]
		}
	}
	return d
}

func (j *jsDLQ) list(ctx context.Context, fn func(*deadLetter) error) error {
	info, err := j.st.Info(ctx)
	if err != nil {
		return err
	}
	for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := j.st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("dead letter %d: %w", seq, err)
		}
		if err := fn(j.letter(m)); err != nil {
			return err
		}
	}
	return nil
}

func (j *jsDLQ) get(ctx context.Context, id string) (*deadLetter, error) {
	seq, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("%q is not a dead letter id (a stream sequence, as 'xmodal dlq ls' prints)", id)
	}
	m, err := j.st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("no dead letter %d (replayed or purged already?)", seq)
	}
	if err != nil {
		return nil, err
	}
	return j.letter(m), nil
}

func (j *jsDLQ) republish(ctx context.Context, key string, value []byte) error {
	return ingest.Publish(ctx, j.js, postsSubject, key, value)
}

func (j *jsDLQ) remove(ctx context.Context, ds []*deadLetter) error {
	for _, d := range ds {
		seq, _ := strconv.ParseUint(d.ID, 10, 64)
		if err := j.st.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("removing dead letter %d: %w", seq, err)
		}
	}
	return nil
}

// ---- Kafka ----

type kafkaDLQ struct {
	cfg   *Config
	topic string // the dead-letter topic
	group string // the consumer group that keeps dlq's place
	tr    *kafkago.Transport
	cl    *kafkago.Client
	w     *kafkago.Writer
	ends  map[int]int64 // high watermarks when listed
}

func openKafkaDLQ(ctx context.Context, cfg *Config) (*kafkaDLQ, error) {
	kc, conn, err := kafkaConnect(cfg, "xmodal-ingest")
	if err != nil {
		return nil, err
	}
	tr := conn.Transport
	k := &kafkaDLQ{cfg: cfg, topic: kc.DLQTopic, tr: tr,
		cl: &kafkago.Client{Addr: kafkago.TCP(cfg.Kafka.Brokers...), Transport: tr, Timeout: 20 * time.Second}}
	k.group = k.topic + ".xmodal-dlq"
	k.w = &kafkago.Writer{Addr: kafkago.TCP(cfg.Kafka.Brokers...), Topic: cfg.Kafka.Topic, Transport: tr,
		Balancer: &kafkago.Murmur2Balancer{}, RequiredAcks: kafkago.RequireAll, MaxAttempts: 10, BatchTimeout: time.Millisecond, WriteTimeout: 30 * time.Second}
	return k, nil
}

func (k *kafkaDLQ) describe() string {
	return fmt.Sprintf("Kafka topic %s at %s", k.topic, strings.Join(k.cfg.Kafka.Brokers, ","))
}

func (k *kafkaDLQ) close() {
	k.w.Close()
	k.tr.CloseIdleConnections()
}

// partitions returns the topic's partitions with their first and end offsets.
func (k *kafkaDLQ) partitions(ctx context.Context) (map[int][2]int64, error) {
	md, err := k.cl.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{k.topic}})
	if err != nil {
		return nil, fmt.Errorf("kafka %v: %w", k.cfg.Kafka.Brokers, err)
	}
	var reqs []kafkago.OffsetRequest
	for _, t := range md.Topics {
		if t.Name != k.topic {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("kafka dead-letter topic %s: %w (no dead letters yet?)", k.topic, t.Error)
		}
		for _, p := range t.Partitions {
			reqs = append(reqs, kafkago.FirstOffsetOf(p.ID), kafkago.LastOffsetOf(p.ID))
		}
	}
	if len(reqs) == 0 {
		return map[int][2]int64{}, nil
	}
	lo, err := k.cl.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{k.topic: reqs}})
	if err != nil {
		return nil, err
	}
	out := map[int][2]int64{}
	for _, p := range lo.Topics[k.topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("kafka dead-letter topic %s partition %d: %w", k.topic, p.Partition, p.Error)
		}
		out[p.Partition] = [2]int64{p.FirstOffset, p.LastOffset}
	}
	return out, nil
}

// cursor returns the topic's partitions (see partitions) and where listing
// starts on each: the dlq group's committed offset, else the partition's
// first.
func (k *kafkaDLQ) cursor(ctx context.Context) (map[int][2]int64, map[int]int64, error) {
	parts, err := k.partitions(ctx)
	if err != nil {
		return nil, nil, err
	}
	var ps []int
	for p := range parts {
		ps = append(ps, p)
	}
	var res *kafkago.OffsetFetchResponse
	err = retryCoordinator(ctx, func() error {
		var err error
		if res, err = k.cl.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: k.group, Topics: map[string][]int{k.topic: ps}}); err != nil {
			return err
		}
		if res.Error != nil {
			return res.Error
		}
		for _, p := range res.Topics[k.topic] {
			if p.Error != nil {
				return fmt.Errorf("partition %d: %w", p.Partition, p.Error)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("kafka: the dlq place (group %s): %w", k.group, err)
	}
	out := map[int]int64{}
	for p, r := range parts {
		out[p] = r[0]
	}
	for _, p := range res.Topics[k.topic] {
		if p.CommittedOffset > out[p.Partition] {
			out[p.Partition] = p.CommittedOffset
		}
	}
	return parts, out, nil
}

// retryCoordinator calls fn again, with a growing wait (at most 10 tries,
// about 10 s), while it fails with an error Kafka calls temporary: a group
// whose coordinator is moving or loading (NOT_COORDINATOR,
// COORDINATOR_LOAD_IN_PROGRESS, as a broker answers right after a start).
func retryCoordinator(ctx context.Context, fn func() error) error {
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := fn()
		var ke kafkago.Error
		if err == nil || !errors.As(err, &ke) || !ke.Temporary() || attempt == 10 {
			return err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return fmt.Errorf("%w (while waiting to retry: %v)", ctx.Err(), err)
		}
		wait = min(2*wait, 2*time.Second)
	}
}

func (k *kafkaDLQ) dialer() (*kafkago.Dialer, error) {
	return &kafkago.Dialer{Timeout: 10 * time.Second, DualStack: true, SASLMechanism: k.tr.SASL, TLS: k.tr.TLS}, nil
}

// read calls fn with the records of a partition from offset up to end.
func (k *kafkaDLQ) read(ctx context.Context, part int, from, end int64, fn func(*deadLetter) error) error {
	if from >= end {
		return nil
	}
	d, err := k.dialer()
	if err != nil {
		return err
	}
	r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: k.cfg.Kafka.Brokers, Topic: k.topic, Partition: part, Dialer: d,
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 200 * time.Millisecond})
	defer r.Close()
	if err := r.SetOffset(from); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		m, err := r.FetchMessage(rctx)
		if err != nil {
			return fmt.Errorf("kafka %s partition %d: %w", k.topic, part, err)
		}
		dl := &deadLetter{ID: fmt.Sprintf("%d:%d", part, m.Offset), Key: string(m.Key), Value: m.Value, Headers: map[string]string{}, part: part, off: m.Offset}
		for _, h := range m.Headers {
			dl.Headers[h.Key] = string(h.Value)
		}
		if err := fn(dl); err != nil {
			return err
		}
		if m.Offset+1 >= end {
			return nil
		}
	}
}

func (k *kafkaDLQ) list(ctx context.Context, fn func(*deadLetter) error) error {
	parts, from, err := k.cursor(ctx)
	if err != nil {
		return err
	}
	k.ends = map[int]int64{}
	for _, p := range slices.Sorted(maps.Keys(parts)) {
		k.ends[p] = parts[p][1]
		if err := k.read(ctx, p, from[p], parts[p][1], fn); err != nil {
			return err
		}
	}
	return nil
}

func (k *kafkaDLQ) get(ctx context.Context, id string) (*deadLetter, error) {
	var part int
	var off int64
	if _, err := fmt.Sscanf(id, "%d:%d", &part, &off); err != nil {
		return nil, fmt.Errorf("%q is not a dead letter id (partition:offset, as 'xmodal dlq ls' prints)", id)
	}
	parts, err := k.partitions(ctx)
	if err != nil {
		return nil, err
	}
	r, ok := parts[part]
	if !ok || off < r[0] || off >= r[1] {
		return nil, fmt.Errorf("no dead letter %s in %s", id, k.topic)
	}
	var got *deadLetter
	err = k.read(ctx, part, off, off+1, func(d *deadLetter) error { got = d; return nil })
	return got, err
}

func (k *kafkaDLQ) republish(ctx context.Context, key string, value []byte) error {
	return k.w.WriteMessages(ctx, kafkago.Message{Key: []byte(key), Value: value})
}

// remove moves the dlq group's place past the dead letters, on each
// partition as far as every letter below it is among them (Kafka deletes
// nothing one by one; a letter left behind keeps the place before it).
func (k *kafkaDLQ) remove(ctx context.Context, ds []*deadLetter) error {
	if len(ds) == 0 {
		return nil
	}
	_, from, err := k.cursor(ctx)
	if err != nil {
		return err
	}
	gone := map[int]map[int64]bool{}
	for _, d := range ds {
		if gone[d.part] == nil {
			gone[d.part] = map[int64]bool{}
		}
		gone[d.part][d.off] = true
	}
	commits := map[string][]kafkago.OffsetCommit{}
	kept := 0
	for p, offs := range gone {
		next := from[p]
		for offs[next] {
			next++
		}
		for o := range offs {
			if o >= next {
				kept++
			}
		}
		if next > from[p] {
			commits[k.topic] = append(commits[k.topic], kafkago.OffsetCommit{Partition: p, Offset: next})
		}
	}
	if len(commits) > 0 {
		err := retryCoordinator(ctx, func() error {
			res, err := k.cl.OffsetCommit(ctx, &kafkago.OffsetCommitRequest{GroupID: k.group, GenerationID: -1, Topics: commits})
			if err != nil {
				return err
			}
			for _, ps := range res.Topics {
				for _, p := range ps {
					if p.Error != nil {
						return fmt.Errorf("partition %d: %w", p.Partition, p.Error)
					}
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("kafka: moving the dlq place (group %s): %w", k.group, err)
		}
	}
	if kept > 0 {
		fmt.Fprintf(os.Stderr, "dlq: %d handled dead letters stay listed: older ones before them on their partition were not handled (Kafka keeps records until retention)\n", kept)
	}
	return nil
}
