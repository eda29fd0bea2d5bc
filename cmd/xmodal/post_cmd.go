package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/ingest/postfile"
	"github.com/xmodal/xmodal/internal/denylist"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
)

// dialNATS loads the configuration and connects to the running instance's
// NATS server (nats.url, or the embedded one at nats.listen).
func dialNATS(cmd *cobra.Command) (*Config, *nats.Conn, error) {
	cfg, err := loadConfig(cmd.Flags(), os.LookupEnv)
	if err != nil {
		return nil, nil, err
	}
	nc, err := connectNATS(cfg, natsURL(cfg))
	if err != nil {
		return nil, nil, fmt.Errorf("%w (is 'xmodal run' running? --nats-url or --nats-listen names it)", err)
	}
	return cfg, nc, nil
}

func postCmd() *cobra.Command {
	var wait time.Duration
	var verbose bool
	c := &cobra.Command{
		Use:   "post FILE...",
		Short: "Publish posts (JSON Lines in the post format; - for stdin) to a running xmodal and report what became of them",
		Long: `Publishes each line of the files as one post to the JetStream ingest stream of a
running xmodal (nats.url, or the embedded server at nats.listen), keyed by its
id, then waits for the indexer and reports what happened to each: indexed (with
its modalities), dead-lettered (with the stage and reason), deleted
(a tombstone), or denied (the id is on the deny-list).

The lines are in the post format of docs/post-format.md. "image_file" names a
local image (relative to the file holding the line, or absolute): it is read
here and sent inline as image.data. A line {"id":"X","delete":true} publishes a
tombstone that deletes post X and deny-lists it.

A line that cannot be sent (no post id, an image_file that cannot be read, over
the server's max_payload) is reported with its line number and skipped; the
others are sent as they are, and the indexer dead-letters bad posts with their
reason ('xmodal dlq ls' lists them). The exit status is 1 when a line could not
be sent; dead letters are reported, not errors. --wait 0 publishes and exits,
printing how to check later.`,
		Example: `  xmodal post testdata/demo/posts.jsonl
  xmodal post --wait 0 today.jsonl
  cat posts.jsonl | xmodal post -`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, nc, err := dialNATS(cmd)
			if err != nil {
				return err
			}
			defer nc.Close()
			return runPost(cmd.Context(), nc, args, wait, verbose, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	c.Flags().DurationVar(&wait, "wait", 2*time.Minute, "how long to wait for the outcomes (0: publish and exit)")
	c.Flags().BoolVarP(&verbose, "verbose", "v", false, "list every post's outcome, not only the problems")
	return c
}

// sentPost is one line that went out.
type sentPost struct {
	file string
	line int
	key  string
	seq  uint64 // stream sequence
	del  bool   // a tombstone
	// outcome, once known
	outcome string
	detail  string
}

func (p *sentPost) where() string { return fmt.Sprintf("%s line %d", p.file, p.line) }

// postOutcomes are the outcome names, in report order.
var postOutcomes = []string{"indexed", "dead-lettered", "partly indexed", "deleted", "denied", "replaced", "not processed"}

func runPost(ctx context.Context, nc *nats.Conn, files []string, wait time.Duration, verbose bool, stdout, stderr io.Writer) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := js.Stream(ctx, postsStream); err != nil {
		return fmt.Errorf("post: the ingest stream %s at %s: %w (is 'xmodal run' running there, ingesting from JetStream?)",
			postsStream, nc.ConnectedUrlRedacted(), err)
	}
	// Dead letters written from now on are this run's candidates.
	dlqFrom := uint64(0)
	if st, err := js.Stream(ctx, dlqStream); err == nil {
		if info, err := st.Info(ctx); err == nil {
			dlqFrom = info.State.LastSeq
		}
	}
	maxLine := int(nc.MaxPayload()) - 4096
	var sent []*sentPost
	unsent := 0
	for _, path := range files {
		bad, err := publishFile(ctx, js, path, maxLine, &sent, stderr)
		unsent += bad
		if err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "published %d posts", len(sent))
	if unsent > 0 {
		fmt.Fprintf(stdout, "; %d lines not sent (reasons above)", unsent)
	}
	fmt.Fprintln(stdout)
	var errUnsent error
	if unsent > 0 {
		errUnsent = fmt.Errorf("post: %d lines could not be sent", unsent)
	}
	if len(sent) == 0 {
		return errUnsent
	}
	if wait <= 0 {
		printHowToCheck(stdout, sent)
		return errUnsent
	}
	fmt.Fprintf(stdout, "waiting up to %s for the indexer (--wait)...\n", wait)
	done, err := waitProcessed(ctx, js, sent[len(sent)-1].seq, wait)
	if err != nil {
		return err
	}
	if err := classifyOutcomes(ctx, nc, js, sent, dlqFrom, done); err != nil {
		return err
	}
	printOutcomes(stdout, sent, verbose)
	if !done {
		fmt.Fprintf(stdout, "the indexer had not processed every post after %s (is it running? 'xmodal run' logs its progress)\n", wait)
		printHowToCheck(stdout, sent)
	}
	return errUnsent
}

// publishFile sends a file's lines, reporting the ones it cannot send.
func publishFile(ctx context.Context, js jetstream.JetStream, path string, maxLine int, sent *[]*sentPost, stderr io.Writer) (bad int, err error) {
	var r io.Reader = os.Stdin
	dir, name, source := ".", "stdin", ""
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return 0, fmt.Errorf("post: %w", err)
		}
		defer f.Close()
		// The source file's absolute path travels with each message, so that
		// a dead letter can be replayed from anywhere (its image_file is
		// relative to the file).
		r, dir, name, source = f, filepath.Dir(path), path, absPath(path)
	}
	report := func(line int, why string) {
		bad++
		fmt.Fprintf(stderr, "%s line %d: not sent: %s\n", name, line, why)
	}
	err = eachLine(r, ingest.MaxMessageBytes, func(line int, b []byte, tooLong bool) error {
		if tooLong {
			report(line, fmt.Sprintf("over %d bytes", ingest.MaxMessageBytes))
			return nil
		}
		if len(bytes.TrimSpace(b)) == 0 {
			return nil
		}
		m, err := postfile.Resolve(b, dir)
		if err != nil {
			report(line, err.Error())
			return nil
		}
		if len(m.Value) > maxLine {
			report(line, fmt.Sprintf("the post is %d bytes (image inline), over the server's max_payload less headers (%d): serve the image and give image.url",
				len(m.Value), maxLine))
			return nil
		}
		msg := nats.NewMsg(postsSubject)
		msg.Header.Set(ingest.HeaderKey, m.Key)
		if source != "" {
			msg.Header.Set("Xmodal-Source-File", source)
			msg.Header.Set("Xmodal-Source-Line", strconv.Itoa(line))
		}
		msg.Data = m.Value
		ack, err := js.PublishMsg(ctx, msg)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			report(line, err.Error())
			return nil
		}
		*sent = append(*sent, &sentPost{file: name, line: line, key: m.Key, seq: ack.Sequence, del: m.Tombstone})
		return nil
	})
	if err != nil {
		return bad, fmt.Errorf("post: %s: %w", name, err)
	}
	return bad, nil
}

// eachLine calls fn with every line of r (without its end of line), numbered
// from 1; a line over max bytes is passed as tooLong (and not kept), so a
// caller can report it and go on.
func eachLine(r io.Reader, max int, fn func(line int, b []byte, tooLong bool) error) error {
	br := bufio.NewReaderSize(r, 256<<10)
	line := 0
	var buf []byte
	long := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !long {
			if len(buf)+len(chunk) > max+2 {
				long, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err != nil && !errors.Is(err, io.EOF):
			return err
		}
		if len(chunk) > 0 || long || len(buf) > 0 {
			line++
			b := bytes.TrimRight(buf, "\r\n")
			if ferr := fn(line, b, long || len(b) > max); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		buf, long = buf[:0], false
	}
}

// waitProcessed waits until the indexer's consumer has acknowledged every
// message up to seq (each is then indexed, dead-lettered or skipped), or
// until wait passes; it reports which.
func waitProcessed(ctx context.Context, js jetstream.JetStream, seq uint64, wait time.Duration) (bool, error) {
	start := time.Now()
	deadline := start.Add(wait)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		cons, err := js.Consumer(cctx, postsStream, "indexer")
		var info *jetstream.ConsumerInfo
		if err == nil {
			info, err = cons.Info(cctx)
		}
		cancel()
		if err == nil && info.AckFloor.Stream >= seq {
			return true, nil
		}
		if errors.Is(err, jetstream.ErrConsumerNotFound) && time.Since(start) > 5*time.Second {
			return false, fmt.Errorf("post: no indexer reads the stream %s (its consumer \"indexer\" does not exist): "+
				"is xmodal run ingesting from Kafka? Then backfill with 'xmodal ingest --to kafka'", postsStream)
		}
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// classifyOutcomes reads what became of the sent posts: the dead letters
// written since the run began (matched by their origin, the stream sequence
// of the message), the records in the index (xmodal.v1.get), and for the rest
// the deny-list.
func classifyOutcomes(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, sent []*sentPost, dlqFrom uint64, done bool) error {
	bySeq := make(map[uint64]*sentPost, len(sent))
	last := map[string]*sentPost{} // the newest line of each id
	for _, p := range sent {
		bySeq[p.seq] = p
		if q := last[p.key]; q == nil || q.seq < p.seq {
			last[p.key] = p
		}
	}
	// Dead letters.
	dead := map[*sentPost][]string{}
	if st, err := js.Stream(ctx, dlqStream); err == nil {
		info, err := st.Info(ctx)
		if err == nil {
			for seq := dlqFrom + 1; seq <= info.State.LastSeq; seq++ {
				m, err := st.GetMsg(ctx, seq)
				if err != nil {
					if errors.Is(err, jetstream.ErrMsgNotFound) {
						continue
					}
					return fmt.Errorf("post: reading the dead letters: %w", err)
				}
				var s uint64
				if _, err := fmt.Sscanf(m.Header.Get(ingest.HeaderOrigin), "stream "+postsStream+" seq %d", &s); err != nil {
					continue
				}
				if p := bySeq[s]; p != nil {
					dead[p] = append(dead[p], fmt.Sprintf("at %s: %s", m.Header.Get(ingest.HeaderStage), m.Header.Get(ingest.HeaderReason)))
				}
			}
		}
	}
	// Records.
	var ids []string
	for id, p := range last {
		if !p.del {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	cl := client.New(nc)
	mods, err := indexedModalities(ctx, cl, ids)
	if err != nil {
		return err
	}
	// An index may show a write a moment after the ack (Milvus reads at
	// Bounded consistency by default): the processed posts it does not
	// show yet are asked for again for a while.
	for deadline := time.Now().Add(recheckIndexed); done && time.Now().Before(deadline); {
		var missing []string
		for _, id := range ids {
			if len(mods[id]) == 0 && len(dead[last[id]]) == 0 {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
		more, err := indexedModalities(ctx, cl, missing)
		if err != nil {
			return err
		}
		maps.Copy(mods, more)
	}
	// The rest: taken down, or not processed yet.
	var deny *denylist.List
	for _, p := range sent {
		switch {
		case last[p.key] != p:
			p.outcome, p.detail = "replaced", "a later line has the same id"
		case p.del:
			p.outcome, p.detail = "deleted", "tombstone: deleted and deny-listed"
		case len(mods[p.key]) > 0 && len(dead[p]) > 0:
			p.outcome, p.detail = "partly indexed", modList(mods[p.key])+"; dead-lettered "+strings.Join(dead[p], "; ")
		case len(mods[p.key]) > 0:
			p.outcome, p.detail = "indexed", modList(mods[p.key])
		case len(dead[p]) > 0:
			p.outcome, p.detail = "dead-lettered", strings.Join(dead[p], "; ")
		default:
			if deny == nil {
				d, err := denylist.Open(ctx, js, denylist.Config{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
				if err != nil {
					return fmt.Errorf("post: reading the deny-list: %w", err)
				}
				defer d.Close()
				if err := d.Sync(ctx); err != nil {
					return fmt.Errorf("post: reading the deny-list: %w", err)
				}
				deny = d
			}
			switch {
			case deny.Denied(p.key):
				p.outcome, p.detail = "denied", "the id is on the deny-list (taken down); it is never indexed again"
			case done:
				p.outcome, p.detail = "not processed", "processed, yet neither indexed nor dead-lettered (a newer version from elsewhere replaced it?)"
			default:
				p.outcome, p.detail = "not processed", "not processed yet"
			}
		}
	}
	return nil
}

// recheckIndexed is how long `post --wait` asks the index again for the
// processed posts it does not show.
const recheckIndexed = 10 * time.Second

// indexedModalities asks the index (xmodal.v1.get) which records of the
// posts ids it holds.
func indexedModalities(ctx context.Context, cl *client.Client, ids []string) (map[string][]domain.Modality, error) {
	mods := map[string][]domain.Modality{}
	for lo := 0; lo < len(ids); lo += query.MaxK / 3 {
		req := &query.GetRequest{PostIDs: ids[lo:min(lo+query.MaxK/3, len(ids))], Limit: query.MaxK}
		for {
			gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			res, err := cl.Get(gctx, req)
			cancel()
			var qe *query.Error
			if errors.As(err, &qe) && qe.Code == query.CodeNotFound {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("post: asking the index (xmodal.v1.get): %w", err)
			}
			for _, r := range res.Records {
				mods[r.PostID] = append(mods[r.PostID], r.Modality)
			}
			if res.NextCursor == "" {
				break
			}
			req.Cursor = res.NextCursor
		}
	}
	return mods, nil
}

func modList(ms []domain.Modality) string {
	s := make([]string, len(ms))
	for i, m := range ms {
		s[i] = string(m)
	}
	slices.Sort(s)
	return strings.Join(slices.Compact(s), ", ")
}

// maxProblems bounds the per-post lines printed without --verbose.
const maxProblems = 20

func printOutcomes(w io.Writer, sent []*sentPost, verbose bool) {
	count := map[string]int{}
	for _, p := range sent {
		count[p.outcome]++
	}
	var parts []string
	for _, o := range postOutcomes {
		if count[o] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", count[o], o))
		}
	}
	fmt.Fprintf(w, "outcomes of %d posts: %s\n", len(sent), strings.Join(parts, ", "))
	shown := 0
	for _, p := range sent {
		problem := p.outcome != "indexed" && p.outcome != "deleted" && p.outcome != "replaced"
		if !verbose && !problem {
			continue
		}
		if !verbose && shown == maxProblems {
			fmt.Fprintf(w, "  ... and more (--verbose lists every post; 'xmodal dlq ls' lists the dead letters)\n")
			break
		}
		shown++
		fmt.Fprintf(w, "  %s (post %s): %s: %s\n", p.where(), ingest.QuoteID(p.key), p.outcome, p.detail)
	}
	if count["dead-lettered"]+count["partly indexed"] > 0 {
		fmt.Fprintln(w, "fix the cause, then replay the dead letters: xmodal dlq ls; xmodal dlq replay --all")
	}
}

func printHowToCheck(w io.Writer, sent []*sentPost) {
	fmt.Fprintf(w, `check later:
  xmodal get %s          # its records, once indexed
  xmodal dlq ls                      # dead letters, with their reasons
`, sent[0].key)
}
