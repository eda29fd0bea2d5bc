package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/xmodal/xmodal/internal/dedup"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
	"github.com/xmodal/xmodal/sink/milvus"
)

func dedupCmd() *cobra.Command {
	var (
		threshold, maxMem, minSize int
		since, until               string
		resume, status, cancelID   string
		noFollow, asJSON, rebuild  bool
		onMilvus                   bool
		modelVersion, outDir       string
		poll                       time.Duration
	)
	c := &cobra.Command{
		Use:   "dedup [--threshold BITS] [--since WHEN] [--until WHEN]",
		Short: "Group the index's image posts into near-duplicate clusters (batch job, admin)",
		Long: `Starts the batch near-duplicate job in the serving process (xmodal.v1.admin.dedup;
the embedded index's xmodal run) and follows its progress: connected components
of the image posts whose whole-image PDQ hashes differ in at most --threshold
bits, over the whole index or a time window. The job writes, in a folder under
the server's data_dir/dedup: clusters.jsonl (one cluster per line: cluster,
representative, size, first_seen, last_seen, members), summary.json (clusters by
size, the largest ones) and report.html (the largest clusters with thumbnails).
A job survives the server's crash or restart as a checkpoint: --resume ID
continues it. Over the whole index at the threshold of the incremental
clusters (clusters.threshold), the summary counts the posts the two group
differently (drift; 0 expected). Needs publish permission on
xmodal.v1.admin.> (docs/security.md). See docs/clusters.md.

With --milvus the job runs in this process against milvus.address instead
(Milvus deployments keep no incremental clusters, so their serving processes
run no jobs): it reads the image records of the collection the alias
milvus.collection points to (or of --model-version), writes its folder under
--out, and resumes from there with --resume.`,
		Example: `  xmodal dedup
  xmodal dedup --threshold 24 --since 24h --max-memory-mb 256
  xmodal dedup --resume dedup-20261202T093753Z-cbb8c9
  xmodal dedup --status dedup-20261202T093753Z-cbb8c9 --json
  xmodal dedup --milvus --milvus-address milvus:19530 --out /jobs/dedup --since 24h`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if onMilvus {
				if status != "" || cancelID != "" || noFollow || rebuild {
					return errors.New("--status, --cancel, --no-follow and --rebuild ask a serving process; with --milvus the job runs in this process (stop it with Ctrl-C, continue it with --resume)")
				}
				return dedupOnMilvus(cmd, milvusDedup{threshold: threshold, maxMem: maxMem, minSize: minSize, since: since, until: until,
					resume: resume, model: modelVersion, out: outDir, asJSON: asJSON, poll: poll})
			}
			if cmd.Flags().Changed("model-version") || cmd.Flags().Changed("out") {
				return errors.New("--model-version and --out go with --milvus (the embedded index's job writes under the server's data_dir)")
			}
			req := query.DedupRequest{MaxMemoryMB: maxMem, MinSize: minSize, Resume: resume, Rebuild: rebuild}
			switch {
			case status != "":
				req = query.DedupRequest{Action: "status", ID: status}
			case cancelID != "":
				req = query.DedupRequest{Action: "cancel", ID: cancelID}
			default:
				if cmd.Flags().Changed("threshold") {
					req.Threshold = &threshold
				}
				now := time.Now()
				var err error
				if req.Since, err = parseWhen(since, now); err != nil {
					return fmt.Errorf("--since: %w", err)
				}
				if req.Until, err = parseWhen(until, now); err != nil {
					return fmt.Errorf("--until: %w", err)
				}
			}
			cl, closeFn, err := clientConn(cmd)
			if err != nil {
				return err
			}
			defer closeFn()
			st, err := dedupCall(cmd.Context(), cl, req)
			if err != nil {
				return err
			}
			if req.Action == "" && !asJSON {
				fmt.Fprintf(cmd.ErrOrStderr(), "dedup job %s started (threshold %d bits); outputs in %s on the server\n", st.ID, st.Request.Threshold, st.Dir)
			}
			if req.Action == "" && !noFollow {
				if st, err = followDedup(cmd.Context(), cl, st, poll, cmd.ErrOrStderr()); err != nil {
					return err
				}
			}
			return printDedup(cmd.OutOrStdout(), st, asJSON, "on the server")
		},
	}
	f := c.Flags()
	f.IntVar(&threshold, "threshold", query.DefaultNearDupDistance, "link distance in PDQ bits (0..256)")
	f.StringVar(&since, "since", "", "only posts created at or after: RFC 3339, a date (2026-11-01), or a duration ago (24h)")
	f.StringVar(&until, "until", "", "only posts created before: RFC 3339, a date, or a duration ago")
	f.IntVar(&maxMem, "max-memory-mb", 0, "bound on the search index's memory in MiB (0: unbounded); a smaller bound searches in more passes")
	f.IntVar(&minSize, "min-size", 2, "smallest cluster written to clusters.jsonl")
	f.StringVar(&resume, "resume", "", "continue an interrupted job from its checkpoint (its id)")
	f.StringVar(&status, "status", "", "print a job's status (its id) and exit")
	f.StringVar(&cancelID, "cancel", "", "cancel a running job (its id); --resume continues it later")
	f.BoolVar(&rebuild, "rebuild", false, "over the whole index at clusters.threshold: when the incremental clusters drifted from the job's partition, rebuild them (ingest goes on)")
	f.BoolVar(&noFollow, "no-follow", false, "start the job and exit without following it")
	f.BoolVar(&asJSON, "json", false, "print the job's status as JSON")
	f.DurationVar(&poll, "poll", 500*time.Millisecond, "how often to ask for progress")
	f.BoolVar(&onMilvus, "milvus", false, "run the job in this process against milvus.address (Milvus deployments)")
	f.StringVar(&modelVersion, "model-version", "", "with --milvus: the model version whose collections to read (default: the one the alias milvus.collection points to)")
	f.StringVar(&outDir, "out", "", "with --milvus: the folder the job's folder is written under (default: data_dir/dedup)")
	return c
}

// milvusDedup is a batch job run here against Milvus (xmodal dedup --milvus).
type milvusDedup struct {
	threshold, maxMem, minSize       int
	since, until, resume, model, out string
	asJSON                           bool
	poll                             time.Duration
}

func dedupOnMilvus(cmd *cobra.Command, o milvusDedup) error {
	cfg, err := loadConfig(cmd.Flags(), os.LookupEnv)
	if err != nil {
		return err
	}
	if cfg.Milvus.Address == "" {
		return errors.New("--milvus: config milvus.address is required (the Milvus that holds the collections)")
	}
	now := time.Now()
	req := dedup.Request{Threshold: o.threshold, MaxMemoryMB: o.maxMem, MinSize: o.minSize, Resume: o.resume}
	if req.Since, err = parseWhen(o.since, now); err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	if req.Until, err = parseWhen(o.until, now); err != nil {
		return fmt.Errorf("--until: %w", err)
	}
	if o.out == "" {
		o.out = filepath.Join(cfg.DataDir, "dedup")
	}
	log := newLogger(cfg, cmd.ErrOrStderr())
	ix, err := milvus.OpenExisting(cmd.Context(), cfg.milvusOptions(roleServe, 0, o.model, 0, log))
	if err != nil {
		if errors.Is(err, milvus.ErrUnreachable) {
			return fmt.Errorf("config milvus.address: %w", err)
		}
		return err
	}
	defer ix.Close()
	m, err := dedup.NewManager(ix, o.out, log, prometheus.NewRegistry())
	if err != nil {
		return err
	}
	defer m.Close()
	st, err := m.Start(req)
	if err != nil {
		return err
	}
	w := cmd.ErrOrStderr()
	if !o.asJSON {
		fmt.Fprintf(w, "dedup job %s started on Milvus (threshold %d bits); outputs in %s\n", st.ID, st.Request.Threshold, st.Dir)
	}
	start := time.Now()
	for st.State == dedup.StateRunning {
		select {
		case <-cmd.Context().Done():
			_ = m.Cancel(st.ID)
			fmt.Fprintf(w, "\nstopped; resume with: xmodal dedup --milvus --out %s --resume %s\n", o.out, st.ID)
			return cmd.Context().Err()
		case <-time.After(o.poll):
		}
		if st, err = m.Status(st.ID); err != nil {
			return err
		}
		if !o.asJSON {
			fmt.Fprint(w, "\r"+progressBar(st, time.Since(start)))
		}
	}
	if !o.asJSON {
		fmt.Fprintln(w)
	}
	return printDedup(cmd.OutOrStdout(), st, o.asJSON, "here")
}

func dedupCall(ctx context.Context, cl *client.Client, req query.DedupRequest) (dedup.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var st dedup.Status
	err := cl.Call(ctx, "admin.dedup", &req, &st)
	var qe *query.Error
	if errors.As(err, &qe) && qe.Code == query.CodeNotImplemented {
		return st, fmt.Errorf("%w (the batch job runs in the embedded index's serving process, xmodal run; against Milvus, run it here with --milvus)", err)
	}
	return st, err
}

// followDedup polls the job and draws a progress bar until it ends.
func followDedup(ctx context.Context, cl *client.Client, st dedup.Status, poll time.Duration, w io.Writer) (dedup.Status, error) {
	start := time.Now()
	for st.State == dedup.StateRunning {
		select {
		case <-ctx.Done():
			fmt.Fprintf(w, "\nstopped following; the job goes on: xmodal dedup --status %s\n", st.ID)
			return st, ctx.Err()
		case <-time.After(poll):
		}
		next, err := dedupCall(ctx, cl, query.DedupRequest{Action: "status", ID: st.ID})
		if err != nil {
			return st, err
		}
		st = next
		fmt.Fprint(w, "\r"+progressBar(st, time.Since(start)))
	}
	fmt.Fprintln(w)
	return st, nil
}

func progressBar(st dedup.Status, elapsed time.Duration) string {
	frac := 0.0
	if st.Total > 0 {
		frac = float64(st.Done) / float64(st.Total)
	}
	const width = 30
	n := int(frac * width)
	eta := ""
	if frac > 0.01 && frac < 1 {
		eta = fmt.Sprintf(", eta %v", (time.Duration(float64(elapsed)/frac) - elapsed).Round(time.Second))
	}
	phase := st.Phase
	if phase == "" {
		phase = st.State
	}
	return fmt.Sprintf("[%s%s] %5.1f%% %s %d/%d searches%s   ", strings.Repeat("#", n), strings.Repeat(" ", width-n), 100*frac, phase, st.Done, st.Total, eta)
}

// printDedup prints a job's status; where says where its outputs are.
func printDedup(w io.Writer, st dedup.Status, asJSON bool, where string) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Fprintf(w, "job %s: %s", st.ID, st.State)
	if st.Error != "" {
		fmt.Fprintf(w, " (%s)", st.Error)
	}
	fmt.Fprintln(w)
	if s := st.Summary; s != nil {
		fmt.Fprintf(w, "%d image posts, threshold %d bits: %d clusters of two or more holding %d posts (%.1f s)\n",
			s.Posts, s.Threshold, s.Clusters, s.Clustered, s.TookSec)
		for _, b := range s.BySize {
			r := fmt.Sprintf("%d-%d", b.Lo, b.Hi)
			if b.Hi == 0 {
				r = fmt.Sprintf("%d+", b.Lo)
			} else if b.Lo == b.Hi {
				r = fmt.Sprint(b.Lo)
			}
			fmt.Fprintf(w, "  size %-9s %d clusters\n", r, b.N)
		}
		if s.Drift >= 0 {
			fmt.Fprintf(w, "posts grouped differently by the incremental clusters: %d\n", s.Drift)
		}
		if s.DriftAfter != nil {
			fmt.Fprintf(w, "rebuilt the incremental clusters (%d posts rejoined); grouped differently now: %d\n", s.Rebuilt, *s.DriftAfter)
		}
		fmt.Fprintf(w, "outputs (%s): %s/{clusters.jsonl,summary.json,report.html}\n", where, st.Dir)
	} else if st.State == dedup.StateRunning {
		fmt.Fprintln(w, progressBar(st, time.Since(st.Started)))
	}
	if st.State == dedup.StateFailed {
		return fmt.Errorf("dedup job %s failed: %s", st.ID, st.Error)
	}
	return nil
}
