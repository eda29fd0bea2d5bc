package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
)

// clientConn connects a query client to the running instance.
func clientConn(cmd *cobra.Command) (*client.Client, func(), error) {
	_, nc, err := dialNATS(cmd)
	if err != nil {
		return nil, nil, err
	}
	return client.New(nc), func() { nc.Close() }, nil
}

// callOnce connects to the query service, makes one call (or a few that
// share the deadline) bounded by timeout, and closes the connection.
func callOnce[R any](cmd *cobra.Command, timeout time.Duration, call func(context.Context, *client.Client) (R, error)) (R, error) {
	cl, closeFn, err := clientConn(cmd)
	if err != nil {
		var zero R
		return zero, err
	}
	defer closeFn()
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	return call(ctx, cl)
}

// filterFlags are the search filters of query and neardup.
type filterFlags struct {
	authors, labels []string
	since, until    string
}

func (f *filterFlags) register(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.authors, "author", nil, "only posts by this author (repeatable: any of them)")
	fs.StringArrayVar(&f.labels, "label", nil, "only posts carrying this label (repeatable: any of them)")
	fs.StringVar(&f.since, "since", "", "only posts created at or after: RFC 3339, a date (2026-11-01), or a duration ago (24h)")
	fs.StringVar(&f.until, "until", "", "only posts created before: RFC 3339, a date, or a duration ago")
}

// read is the filter and the query image (the file at imagePath, if any).
func (f *filterFlags) read(imagePath string) (domain.Filter, []byte, error) {
	flt, err := f.filter(time.Now())
	if err != nil || imagePath == "" {
		return flt, nil, err
	}
	img, err := os.ReadFile(imagePath)
	return flt, img, err
}

func (f *filterFlags) filter(now time.Time) (domain.Filter, error) {
	out := domain.Filter{Authors: f.authors, Labels: f.labels}
	var err error
	if out.Since, err = parseWhen(f.since, now); err != nil {
		return out, fmt.Errorf("--since: %w", err)
	}
	if out.Until, err = parseWhen(f.until, now); err != nil {
		return out, fmt.Errorf("--until: %w", err)
	}
	return out, nil
}

// parseWhen reads a point in time: RFC 3339, a date (UTC midnight), or a
// duration meaning that long before now. "" is the zero time.
func parseWhen(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(strings.TrimPrefix(s, "-")); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not RFC 3339 (2026-11-01T12:00:00Z), a date (2026-11-01) or a duration ago (24h)", s)
}

func queryCmd() *cobra.Command {
	var text, imagePath, imageURL, target, plan string
	var k, candidates int
	var recency time.Duration
	var recencyWeight float64
	var asJSON bool
	var ff filterFlags
	c := &cobra.Command{
		Use:   "query",
		Short: "Search a running xmodal by text or image (file or URL), with filters, and print the hits",
		Long: `Sends one xmodal.v1.search request and prints the hits: score, modality, post,
author, created_at, labels and text. --target any (the default) searches the
image, text and fused records and merges the three lists by rank (every list's
first hit, then every second hit, ...), not by raw score: same-modality scores
run higher than cross-modal ones. The filters narrow the posts searched.`,
		Example: `  xmodal query --text "two red stars" --target image
  xmodal query --image photo.jpg --target text -k 5
  xmodal query --image-url https://cdn.example.com/p/1.jpg --author lena --since 24h
  xmodal query --text "a blue square" --label blue --since 2026-11-01 --until 2026-11-02 --plan hybrid
  xmodal query --text "a green triangle" --recency 24h --recency-weight 0.1`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := query.SearchRequest{Text: text, ImageURL: imageURL, Target: target, K: k, Plan: plan, Candidates: candidates}
			var err error
			if req.Filter, req.Image, err = ff.read(imagePath); err != nil {
				return err
			}
			if recency > 0 {
				req.Recency = &query.Recency{HalfLifeHours: recency.Hours(), Weight: recencyWeight}
			}
			res, err := callOnce(cmd, 30*time.Second, func(ctx context.Context, cl *client.Client) (*query.SearchResponse, error) {
				return cl.Search(ctx, &req)
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, res)
			}
			fmt.Fprintf(out, "%d hits, plan %s, %.1f ms, model %s", len(res.Hits), res.Plan, res.TookMS, res.Model)
			if res.Cached {
				fmt.Fprint(out, ", cached")
			}
			fmt.Fprintln(out)
			if req.Target == "" || req.Target == "any" {
				fmt.Fprintln(out, "target any: the image, text and fused lists merged by rank (all first hits, then all second hits, ...), not by raw score")
			}
			if req.Recency != nil {
				fmt.Fprintf(out, "scores include the recency boost (half-life %s, weight %g)\n", recency, recencyWeight)
			}
			printHits(out, res.Hits)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&text, "text", "", "query text")
	f.StringVar(&imagePath, "image", "", "query image file")
	f.StringVar(&imageURL, "image-url", "", "query image URL (fetched by the server behind its SSRF guard)")
	f.StringVar(&target, "target", "any", "modality of the results: image, text, fused or any")
	f.StringVar(&plan, "plan", "", "exact, ann, hash or hybrid (default: the server's, exact)")
	f.IntVar(&candidates, "candidates", 0, "plan hybrid: records re-ranked by cosine after the Hamming pass (0: the index's default)")
	f.IntVarP(&k, "k", "k", 10, "number of hits")
	f.DurationVar(&recency, "recency", 0, "boost recent posts with this half-life (e.g. 24h; 0: off)")
	f.Float64Var(&recencyWeight, "recency-weight", 0.1, "weight of the recency boost (cosine scores lie in [-1, 1])")
	f.BoolVar(&asJSON, "json", false, "print the raw JSON response")
	ff.register(f)
	return c
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// timeCol formats created_at for tables.
func timeCol(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04Z")
}

func labelsCol(ls []string) string {
	if len(ls) == 0 {
		return "-"
	}
	return strings.Join(ls, ",")
}

func printHits(w io.Writer, hits []domain.Hit) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  #\tscore\tmodality\tpost\tauthor\tcreated_at\tlabels\ttext")
	for i, h := range hits {
		text := strings.ReplaceAll(domain.TruncateText(h.Text, 60), "\n", " ")
		fmt.Fprintf(tw, "  %d\t%.4f\t%s\t%s\t%s\t%s\t%s\t%s\n", i+1, h.Score, h.Modality, h.PostID, h.Author, timeCol(h.CreatedAt), labelsCol(h.Labels), text)
	}
	tw.Flush()
}

func neardupCmd() *cobra.Command {
	var imagePath, imageURL, pdqHex string
	var k, maxDist, minQuality int
	var asJSON, windows, parts bool
	var ff filterFlags
	c := &cobra.Command{
		Use:   "neardup",
		Short: "Find near-duplicate images (PDQ) of an image file, an image URL or a PDQ hash",
		Long: `Sends one xmodal.v1.neardup request. The distance of a match is the number of
the 256 PDQ bits that differ between the two hashes: 0 is the same picture,
up to about 31 (PDQ's usual threshold, the default --max-distance) a resized,
recompressed or lightly edited copy; unrelated pictures differ by about 128.
An image query also matches its rotations and mirror images (the transform
column says which matched), and the picture inside a caption band, an app's or
a browser's frame (by: region). On the embedded index an image query also
searches the indexed images' windows, which find crops (by: N windows, and how
much of the original the query shows); --windows=false skips them. With
--parts it also finds the indexed images that show a part of the query image
(by: part, and where in the query: the posts that cut a known picture). A query
hash of quality below 50 comes from a flat or featureless picture: its matches
are unreliable, and a warning says so.`,
		Example: `  xmodal neardup --image photo.jpg
  xmodal neardup --image known.jpg --parts
  xmodal neardup --pdq f8f8e0e0... --max-distance 20 --author lena`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req := query.NearDupRequest{ImageURL: imageURL, PDQ: pdqHex, K: k, MinQuality: minQuality, Parts: parts}
			if cmd.Flags().Changed("max-distance") {
				req.MaxDistance = &maxDist
			}
			if cmd.Flags().Changed("windows") {
				req.Windows = &windows
			}
			var err error
			if req.Filter, req.Image, err = ff.read(imagePath); err != nil {
				return err
			}
			res, err := callOnce(cmd, 30*time.Second, func(ctx context.Context, cl *client.Client) (*query.NearDupResponse, error) {
				return cl.NearDup(ctx, &req)
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, res)
			}
			fmt.Fprintf(out, "query PDQ %s", res.PDQ)
			if res.Quality != nil {
				fmt.Fprintf(out, " (quality %d)", *res.Quality)
			}
			fmt.Fprintf(out, "; %d matches within distance %d of 256 bits, %.1f ms", len(res.Matches), res.MaxDistance, res.TookMS)
			switch res.Windows {
			case query.WindowsSearched:
				fmt.Fprint(out, "; crops searched by windows")
			case query.WindowsBuilding:
				fmt.Fprint(out, "; crops not searched (the server is still building its window tables)")
			}
			fmt.Fprintln(out)
			if res.Quality != nil && *res.Quality < domain.LowPDQQuality {
				fmt.Fprintf(out, "warning: the query's PDQ quality %d is below %d (a flat or featureless picture): its matches are unreliable\n", *res.Quality, domain.LowPDQQuality)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  #\tby\tdistance\ttransform\tpost\tauthor\tcreated_at\tlabels\ttext")
			for i, m := range res.Matches {
				d := "-"
				if m.Distance != nil {
					d = fmt.Sprint(*m.Distance)
				}
				text := strings.ReplaceAll(domain.TruncateText(m.Text, 50), "\n", " ")
				by := m.Kind
				switch {
				case m.Kind == "window" && len(m.Shown) == 4:
					by = fmt.Sprintf("%d of %d windows, shows %.0f%% x %.0f%%", m.Windows, m.Visible, 100*(m.Shown[2]-m.Shown[0]), 100*(m.Shown[3]-m.Shown[1]))
				case m.Kind == "part" && len(m.Region) == 4:
					by = fmt.Sprintf("part: %d windows, at %d,%d-%d,%d of the query", m.Windows, m.Region[0], m.Region[1], m.Region[2], m.Region[3])
				}
				fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", i+1, by, d, m.Transform, m.PostID, m.Author, timeCol(m.CreatedAt), labelsCol(m.Labels), text)
			}
			tw.Flush()
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&imagePath, "image", "", "query image file")
	f.StringVar(&imageURL, "image-url", "", "query image URL (fetched by the server)")
	f.StringVar(&pdqHex, "pdq", "", "query PDQ hash, 64 hex characters")
	f.IntVar(&maxDist, "max-distance", query.DefaultNearDupDistance, "largest Hamming distance of a match (0..256)")
	f.IntVarP(&k, "k", "k", 0, "most matches (0: the server's default)")
	f.IntVar(&minQuality, "min-quality", 0, "skip indexed images whose PDQ quality is lower (0..100)")
	f.BoolVar(&windows, "windows", true, "also search the indexed images' windows (crops; image.neardup_windows)")
	f.BoolVar(&parts, "parts", false, "also find the indexed images that show a part of the query image (its crops; image.neardup_windows)")
	f.BoolVar(&asJSON, "json", false, "print the raw JSON response")
	ff.register(f)
	return c
}

func getCmd() *cobra.Command {
	var pks []string
	var asJSON, thumbs bool
	c := &cobra.Command{
		Use:   "get POST_ID...",
		Short: "Print the indexed records of posts (xmodal.v1.get)",
		Long: `Prints every record (one per modality) of the named posts: modality, author,
created_at, labels, model version, PDQ hash (hex, as neardup --pdq takes it) and
quality, media URL and text. --pk names records by primary key (post id#modality) instead. A post
that is not indexed (never was, dead-lettered, or taken down) is reported.`,
		Example: `  xmodal get post-demo-000001
  xmodal get --json post-demo-000001 post-demo-000002`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && len(pks) == 0 {
				return fmt.Errorf("name at least one post id (or --pk)")
			}
			recs, err := callOnce(cmd, 30*time.Second, func(ctx context.Context, cl *client.Client) ([]query.Record, error) {
				req := &query.GetRequest{PostIDs: args, PKs: pks, Thumbnails: thumbs}
				var recs []query.Record
				for {
					res, err := cl.Get(ctx, req)
					var qe *query.Error
					if errors.As(err, &qe) && qe.Code == query.CodeNotFound {
						return recs, nil
					}
					if err != nil {
						return nil, err
					}
					recs = append(recs, res.Records...)
					if res.NextCursor == "" {
						return recs, nil
					}
					req.Cursor = res.NextCursor
				}
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return printJSON(out, recs)
			}
			found := map[string]bool{}
			for _, r := range recs {
				found[r.PostID] = true
				fmt.Fprintf(out, "%s\n  author %s, created_at %s, labels %s, model %s\n", r.PK, r.Author, timeCol(r.CreatedAt), labelsCol(r.Labels), r.ModelVersion)
				if r.PDQ != "" {
					fmt.Fprintf(out, "  pdq %s (quality %d)\n", r.PDQ, r.PDQQuality)
				}
				if r.MediaURL != "" {
					fmt.Fprintf(out, "  media %s\n", r.MediaURL)
				}
				if r.Text != "" {
					fmt.Fprintf(out, "  text %s\n", strings.ReplaceAll(domain.TruncateText(r.Text, 200), "\n", " "))
				}
			}
			missing := 0
			for _, id := range args {
				if !found[id] {
					missing++
					fmt.Fprintf(out, "%s: not indexed (not yet, dead-lettered, or taken down: see xmodal dlq ls)\n", ingest.QuoteID(id))
				}
			}
			if len(recs) == 0 && missing == 0 {
				fmt.Fprintln(out, "no such records")
			}
			return nil
		},
	}
	c.Flags().StringArrayVar(&pks, "pk", nil, "a record's primary key (post id#modality); repeatable")
	c.Flags().BoolVar(&asJSON, "json", false, "print the records as JSON")
	c.Flags().BoolVar(&thumbs, "thumbnails", false, "with --json: include the thumbnails (base64 JPEG)")
	return c
}

func deleteCmd() *cobra.Command {
	var authors []string
	var reason string
	c := &cobra.Command{
		Use:   "delete POST_ID... --reason TEXT",
		Short: "Take posts down (admin): delete them and deny-list their ids, with a reason",
		Long: `Sends xmodal.v1.admin.delete: every named post (and with --author, every post
of that author) is deleted from the index and its id put on the replicated
deny-list, so no redelivery or backfill brings it back. The reason is recorded
with the takedown (deny-list entry and the service's audit log line
"audit: takedown"). The connection's NATS user needs publish permission on
xmodal.v1.admin.> (docs/security.md).`,
		Example: `  xmodal delete post-demo-000003 --reason "spam (ticket 4411)"
  xmodal delete --author spambot --reason "coordinated spam"`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && len(authors) == 0 {
				return fmt.Errorf("name the post ids to take down (or --author)")
			}
			if strings.TrimSpace(reason) == "" {
				return fmt.Errorf("--reason is required: it is recorded with the takedown")
			}
			res, err := callOnce(cmd, time.Minute, func(ctx context.Context, cl *client.Client) (*query.DeleteResponse, error) {
				return cl.Delete(ctx, &query.DeleteRequest{PostIDs: args, Authors: authors, Reason: reason})
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "took down %d posts (deny-list position %d): %s\nreason: %s\n",
				res.Count, res.Generation, strings.Join(res.Deleted, " "), reason)
			if len(res.AlreadyDenied) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "already taken down before (a retry completes them): %s\n", strings.Join(res.AlreadyDenied, " "))
			}
			return nil
		},
	}
	c.Flags().StringArrayVar(&authors, "author", nil, "take down every post of this author (repeatable)")
	c.Flags().StringVar(&reason, "reason", "", "why (required; recorded with the takedown)")
	_ = c.MarkFlagRequired("reason")
	return c
}
