// Command xmodal indexes multimodal social-media posts and answers cross-modal
// lookups. `xmodal --help` lists the subcommands.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
)

func main() {
	// The signal handler is installed before anything else, so that a SIGTERM
	// that arrives while the process is still starting (an orchestrator
	// scaling down, a test stopping a run that had nothing left to do) shuts
	// it down gracefully instead of killing it mid-way.
	ctx, stop := signalContext()
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "xmodal:", err)
		os.Exit(1)
	}
}

func newLogger(cfg *Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "xmodal",
		Short: "Cross-modal (text/image) indexing and search for social-media feeds",
		Long: `xmodal consumes posts (text, image or both), encodes them with a CLIP-style
dual-tower model on ONNX Runtime, indexes vectors, and answers text→image,
image→text, image→image and near-duplicate lookups over NATS.

With no flags every outside service has an in-process stand-in: an embedded
NATS server with JetStream, an embedded crash-safe index, the bundled model.
Configuration: flags > XMODAL_* env > YAML file (--config) > defaults;
see 'xmodal config reference'.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	configFlags(root.PersistentFlags())
	root.AddCommand(runCmd(), indexerCmd(), serveCmd(), demoCmd(), queryCmd(), postCmd(), configCmd(), genCmd(), evalCmd(), hashCmd(), loadgenCmd(), ingestCmd())
	return root
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// demoPost is a line of testdata/demo/posts.jsonl: a post whose image is a file
// next to it, inlined when published.
type demoPost struct {
	ID        string   `json:"id"`
	Author    string   `json:"author"`
	Text      string   `json:"text"`
	ImageFile string   `json:"image_file"`
	Labels    []string `json:"labels"`
}

func loadDemoPosts(path string, now time.Time) ([]domain.Post, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []domain.Post
	for i, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var d demoPost
		if err := json.Unmarshal(line, &d); err != nil {
			return nil, fmt.Errorf("%s line %d: %w", path, i+1, err)
		}
		p := domain.Post{Schema: domain.SchemaVersion, ID: d.ID, Author: d.Author, Text: d.Text, Labels: d.Labels,
			CreatedAt: now.Add(-time.Duration(len(out)) * time.Minute).UTC().Truncate(time.Second)}
		if d.ImageFile != "" {
			img, err := os.ReadFile(filepath.Join(filepath.Dir(path), d.ImageFile))
			if err != nil {
				return nil, fmt.Errorf("%s line %d: %w", path, i+1, err)
			}
			p.Image = &domain.ImageRef{Data: img, MIME: "image/jpeg"}
		}
		out = append(out, p)
	}
	return out, nil
}

func findDemoPosts() (string, error) {
	for _, dir := range []string{".", ".."} {
		p := filepath.Join(dir, "testdata", "demo", "posts.jsonl")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(filepath.Dir(exe)), "testdata", "demo", "posts.jsonl")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("testdata/demo/posts.jsonl not found: run the demo from the repository root")
}

func demoCmd() *cobra.Command {
	var once bool
	var postsPath string
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run xmodal on embedded defaults, publish the sample posts, show queries",
		Long: `Starts everything 'xmodal run' starts, publishes the sample posts from
testdata/demo/ into the ingest stream, waits until they are indexed, runs a few
sample queries, prints how to query, and keeps serving until Ctrl-C (--once exits).`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd.Flags(), os.Getenv)
			if err != nil {
				return err
			}
			log := newLogger(cfg, os.Stderr)
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			if postsPath == "" {
				if postsPath, err = findDemoPosts(); err != nil {
					return err
				}
			}
			posts, err := loadDemoPosts(postsPath, time.Now())
			if err != nil {
				return err
			}
			a, err := startApp(ctx, cfg, log)
			if err != nil {
				return err
			}
			defer a.Close()
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx) }()

			js, err := jetstream.New(a.nc)
			if err != nil {
				return err
			}
			for _, p := range posts {
				b, _ := json.Marshal(p)
				if err := ingest.Publish(ctx, js, "xmodal.posts", p.ID, b); err != nil {
					return err
				}
			}
			fmt.Printf("published %d sample posts from %s\n", len(posts), postsPath)
			cl := client.New(a.nc)
			if err := waitIndexed(ctx, cl, posts); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			for _, q := range []query.SearchRequest{
				{Text: posts[0].Text, Target: "text", K: 3},
				{Text: "two red stars", Target: "image", K: 3},
				{Image: posts[0].Image.Data, Target: "image", K: 3},
			} {
				res, err := cl.Search(ctx, &q)
				if err != nil {
					return err
				}
				desc := "text " + fmt.Sprintf("%q", q.Text)
				if q.Image != nil {
					desc = "image of " + posts[0].ID
				}
				fmt.Fprintf(out, "\nquery by %s → %s (%.1f ms):\n", desc, q.Target, res.TookMS)
				printHits(out, res.Hits)
			}
			url := a.nc.ConnectedUrl()
			fmt.Fprintf(out, `
Query it yourself while this runs:
  bin/xmodal query --text "a small green triangle top left" --target image
  bin/xmodal query --image testdata/demo/images/demo-000000.jpg --target text
  nats --server %s req xmodal.v1.search '{"text":"two red stars","target":"image","k":5}'
  curl -s http://%s/metrics | grep xmodal_
`, url, cfg.HTTP.Listen)
			if once {
				cancel()
				<-done
				return nil
			}
			fmt.Fprintln(out, "Serving; Ctrl-C stops.")
			return <-done
		},
	}
	c.Flags().BoolVar(&once, "once", false, "exit after the sample queries")
	c.Flags().StringVar(&postsPath, "posts", "", "sample posts file (default testdata/demo/posts.jsonl)")
	return c
}

// waitIndexed polls until every post has at least one record, or 2 minutes pass.
func waitIndexed(ctx context.Context, cl *client.Client, posts []domain.Post) error {
	ids := make([]string, len(posts))
	for i, p := range posts {
		ids[i] = p.ID
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		res, err := cl.Get(ctx, &query.GetRequest{PostIDs: ids})
		have := map[string]bool{}
		if err == nil {
			for _, r := range res.Records {
				have[r.PostID] = true
			}
		}
		if len(have) == len(ids) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d sample posts indexed after 2 minutes (see the log and the XMODAL_DLQ stream)", len(have), len(ids))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func printHits(w io.Writer, hits []domain.Hit) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  #\tscore\tmodality\tpost\tauthor\ttext")
	for i, h := range hits {
		text := strings.ReplaceAll(domain.TruncateText(h.Text, 60), "\n", " ")
		fmt.Fprintf(tw, "  %d\t%.4f\t%s\t%s\t%s\t%s\n", i+1, h.Score, h.Modality, h.PostID, h.Author, text)
	}
	tw.Flush()
}

func clientConn(cmd *cobra.Command) (*client.Client, func(), error) {
	cfg, err := loadConfig(cmd.Flags(), os.Getenv)
	if err != nil {
		return nil, nil, err
	}
	url := cfg.NATS.URL
	if url == "" {
		url = "nats://" + cfg.NATS.Listen
	}
	nc, err := connectNATS(cfg, url)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (is 'xmodal run' running?)", err)
	}
	return client.New(nc), func() { nc.Close() }, nil
}

func queryCmd() *cobra.Command {
	var text, imagePath, target, plan string
	var k int
	var asJSON bool
	c := &cobra.Command{
		Use:   "query",
		Short: "Search a running xmodal by text or image and print the hits",
		Example: `  xmodal query --text "two red stars" --target image
  xmodal query --image photo.jpg --target text -k 5`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, closeFn, err := clientConn(cmd)
			if err != nil {
				return err
			}
			defer closeFn()
			req := query.SearchRequest{Text: text, Target: target, K: k, Plan: plan}
			if imagePath != "" {
				if req.Image, err = os.ReadFile(imagePath); err != nil {
					return err
				}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			res, err := cl.Search(ctx, &req)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d hits, plan %s, %.1f ms, model %s\n", len(res.Hits), res.Plan, res.TookMS, res.Model)
			printHits(cmd.OutOrStdout(), res.Hits)
			return nil
		},
	}
	c.Flags().StringVar(&text, "text", "", "query text")
	c.Flags().StringVar(&imagePath, "image", "", "query image file")
	c.Flags().StringVar(&target, "target", "any", "modality of the results: image, text, fused or any")
	c.Flags().StringVar(&plan, "plan", "", "exact, ann, hash or hybrid")
	c.Flags().IntVarP(&k, "k", "k", 10, "number of hits")
	c.Flags().BoolVar(&asJSON, "json", false, "print the raw JSON response")
	return c
}

func postCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "post FILE...",
		Short: "Publish posts (JSON Lines, one post per line; - for stdin) to the ingest stream",
		Long: `Publishes each line as one post to the JetStream ingest stream of a running
xmodal, keyed by its id. A line {"id":"X","delete":true} publishes a tombstone that
deletes post X and deny-lists it. Lines are sent as they are: bad posts are
dead-lettered by the indexer with their reason.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd.Flags(), os.Getenv)
			if err != nil {
				return err
			}
			url := cfg.NATS.URL
			if url == "" {
				url = "nats://" + cfg.NATS.Listen
			}
			nc, err := connectNATS(cfg, url)
			if err != nil {
				return fmt.Errorf("%w (is 'xmodal run' running?)", err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			n := 0
			for _, path := range args {
				var r io.Reader = os.Stdin
				if path != "-" {
					f, err := os.Open(path)
					if err != nil {
						return err
					}
					defer f.Close()
					r = f
				}
				sc := bufio.NewScanner(r)
				sc.Buffer(make([]byte, 1<<20), ingest.MaxMessageBytes)
				line := 0
				for sc.Scan() {
					line++
					b := bytes.TrimSpace(sc.Bytes())
					if len(b) == 0 {
						continue
					}
					var head struct {
						ID     string `json:"id"`
						Delete bool   `json:"delete"`
					}
					if err := json.Unmarshal(b, &head); err != nil || head.ID == "" {
						return fmt.Errorf("%s line %d: no post id (the key): %v", path, line, err)
					}
					value := append([]byte(nil), b...)
					if head.Delete {
						value = nil
					}
					if err := ingest.Publish(cmd.Context(), js, "xmodal.posts", head.ID, value); err != nil {
						return fmt.Errorf("%s line %d: %w", path, line, err)
					}
					n++
				}
				if err := sc.Err(); err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "published %d messages\n", n)
			return nil
		},
	}
}

func configCmd() *cobra.Command {
	c := &cobra.Command{Use: "config", Short: "Show the configuration"}
	c.AddCommand(&cobra.Command{
		Use:   "print",
		Short: "Print the effective configuration (defaults < file < env < flags) as YAML",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd.Flags(), os.Getenv)
			if err != nil {
				return err
			}
			return printConfig(cmd.OutOrStdout(), cfg)
		},
	}, &cobra.Command{
		Use:   "reference",
		Short: "Print every option with its env name, flag and default (Markdown)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			printReference(cmd.OutOrStdout())
			return nil
		},
	})
	return c
}
