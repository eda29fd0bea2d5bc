// Command xmodal indexes multimodal social-media posts and answers cross-modal
// lookups. `xmodal --help` lists the subcommands.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/ingest/postfile"
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
	root.AddCommand(runCmd(), indexerCmd(), serveCmd(), demoCmd(), queryCmd(), neardupCmd(), getCmd(), deleteCmd(), bankCmd(), eventsCmd(), postCmd(), dlqCmd(), configCmd(), genCmd(), evalCmd(), hashCmd(), loadgenCmd(), ingestCmd(), milvusCmd(), dedupCmd())
	for _, c := range root.Commands() {
		if c.Name() != "help" && c.Name() != "completion" {
			configFlags(c.PersistentFlags(), commandScopes[c.Name()])
		}
	}
	root.PersistentPreRun = func(cmd *cobra.Command, _ []string) {
		for _, k := range unknownEnv(os.Environ()) {
			fmt.Fprintf(cmd.ErrOrStderr(), "warning: %s is not a configuration variable and is ignored (the variables: xmodal config reference)\n", k)
		}
	}
	return root
}

// commandScopes are the configuration sections whose flags each command takes
// (the environment and the file may still set any key). A command not listed
// takes them all: the roles, the demo and `config`, which validate the whole.
var commandScopes = map[string]scope{
	"indexer": {except: []string{"query", "redis"}},
	"serve":   {except: []string{"kafka"}},
	"ingest":  {except: []string{"query", "redis", "http"}},
	"query":   {only: []string{"nats", "log"}},
	"neardup": {only: []string{"nats", "log"}},
	"get":     {only: []string{"nats", "log"}},
	"delete":  {only: []string{"nats", "log"}},
	"post":    {only: []string{"nats", "log"}},
	"dlq":     {only: []string{"nats", "kafka", "log"}},
	"eval":    {only: []string{"model", "ort", "image", "log"}},
	"hash":    {except: []string{"kafka", "query", "redis", "http", "ingest"}},
	"gen":     {none: true},
	// bank calibrate loads the model; the other bank commands are clients.
	"bank":   {only: []string{"nats", "log", "model", "ort", "image"}},
	"events": {only: []string{"nats", "log"}},
	"dedup":  {only: []string{"nats", "log"}},
	"milvus": {only: []string{"milvus", "model", "ort", "log"}},
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// loadPosts reads a post file (ingest/postfile: the post format, images by
// image_file relative to the file) and fails on its first bad line.
func loadPosts(path string) ([]domain.Post, error) {
	posts, bad, err := postfile.Load(path, time.Now())
	if err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		more := ""
		if len(bad) > 1 {
			more = fmt.Sprintf(" (and %d more bad lines)", len(bad)-1)
		}
		return nil, fmt.Errorf("%w%s", bad[0], more)
	}
	return posts, nil
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
			cfg, err := loadConfig(cmd.Flags(), os.LookupEnv)
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
			posts, err := loadPosts(postsPath)
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
			if u := a.pageURL(); u != "" {
				fmt.Fprintf(out, "\nSearch page: %s\n", u)
			}
			if cfg.Model == "" {
				fmt.Fprintln(out, `
The bundled model (testdata/models/demo) was trained here on generated pictures
of coloured shapes with captions (xmodal gen): ask it about shapes, colours and
positions. It knows nothing else; for real posts run a real CLIP model
(docs/use-real-clip.md).`)
			}
			fmt.Fprintf(out, `
Query it yourself while this runs:
  bin/xmodal query --text "a small green triangle top left" --target image
  bin/xmodal query --image testdata/demo/images/demo-000000.jpg --target text
  bin/xmodal query --text "a red star" --author lena --since 2026-11-01T06:00:00Z
  bin/xmodal neardup --image testdata/demo/images/demo-000000.jpg
  bin/xmodal post testdata/demo/posts.jsonl        # post your own: docs/post-format.md
  bin/xmodal dlq ls                                # what could not be indexed, and why
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

func configCmd() *cobra.Command {
	c := &cobra.Command{Use: "config", Short: "Show the configuration"}
	c.AddCommand(&cobra.Command{
		Use:   "print",
		Short: "Print the effective configuration (defaults < file < env < flags) as YAML",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd.Flags(), os.LookupEnv)
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
