package neardupeval

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

// WriteText prints the report as tables: recall@1 per edit and source for
// both methods side by side, false positives, cost.
func (r *Report) WriteText(w io.Writer) {
	nd, pl := r.Methods[0], r.Methods[1]
	srcs := map[string]bool{}
	for s := range nd.Recall {
		srcs[s] = true
	}
	var names []string
	for s := range srcs {
		names = append(names, s)
	}
	sort.Slice(names, func(i, j int) bool {
		return srcOrder(names[i]) < srcOrder(names[j]) || srcOrder(names[i]) == srcOrder(names[j]) && names[i] < names[j]
	})
	fmt.Fprintf(w, "originals indexed: %v; re-post queries: %d; distractor queries: %d\n", r.Originals, r.Queries, r.Distractors)
	if len(r.Featureless) > 0 {
		sort.Strings(r.Featureless)
		fmt.Fprintf(w, "real originals with PDQ quality under 50 (featureless; PDQ's rule is not to match them): %s; recall is also given without them\n", strings.Join(r.Featureless, ", "))
	}
	fmt.Fprintln(w)
	for _, s := range names {
		fmt.Fprintf(w, "recall@1, %s originals\n", s)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "edit\tqueries\t%s\t%s\t\n", nd.Name, pl.Name)
		kinds := r.Kinds
		if _, ok := nd.Recall[s][kinds[0]]; !ok || s != srcReal && s != srcGen && s != srcRealFeatured {
			kinds = nil
			for k := range nd.Recall[s] {
				kinds = append(kinds, k)
			}
			sort.Strings(kinds)
		}
		var singles, combos [2]Count
		for _, k := range kinds {
			a, b := nd.Recall[s][k], pl.Recall[s][k]
			if a == nil {
				continue
			}
			fmt.Fprintf(tw, "%s\t%d\t%.3f\t%.3f\t\n", k, a.Total, a.Rate(), b.Rate())
			agg := &singles
			if strings.Contains(k, "+") {
				agg = &combos
			}
			agg[0].Hits += a.Hits
			agg[0].Total += a.Total
			agg[1].Hits += b.Hits
			agg[1].Total += b.Total
		}
		if singles[0].Total > 0 {
			fmt.Fprintf(tw, "all single edits\t%d\t%.3f\t%.3f\t\n", singles[0].Total, singles[0].Rate(), singles[1].Rate())
		}
		if combos[0].Total > 0 {
			fmt.Fprintf(tw, "all two-edit combos\t%d\t%.3f\t%.3f\t\n", combos[0].Total, combos[0].Rate(), combos[1].Rate())
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "false positives (queries returning any image other than their original; distractors: any image)")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "queries of\tqueries\t%s\t%s\t\n", nd.Name, pl.Name)
	var fs []string
	for s := range nd.FalsePositives {
		fs = append(fs, s)
	}
	sort.Slice(fs, func(i, j int) bool {
		return srcOrder(fs[i]) < srcOrder(fs[j]) || srcOrder(fs[i]) == srcOrder(fs[j]) && fs[i] < fs[j]
	})
	for _, s := range fs {
		a, b := nd.FalsePositives[s], pl.FalsePositives[s]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t\n", s, a.Total, a.Hits, b.Hits)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "cost\t%s\t%s\t\n", nd.Name, pl.Name)
	fmt.Fprintf(tw, "bytes per image\t%.0f\t%.0f\t\n", nd.BytesPerImage, pl.BytesPerImage)
	fmt.Fprintf(tw, "index hashing, ms per image (mean)\t%.2f\t%.2f\t\n", nd.IndexMS, pl.IndexMS)
	fmt.Fprintf(tw, "query hashing+search, ms (mean)\t%.2f\t%.2f\t\n", nd.QueryMS, pl.QueryMS)
	fmt.Fprintf(tw, "query hashing+search, ms (p99)\t%.2f\t%.2f\t\n", nd.QueryP99MS, pl.QueryP99MS)
	fmt.Fprintf(tw, "search only, ms (p99)\t%.2f\t%.2f\t\n", nd.SearchP99MS, pl.SearchP99MS)
	tw.Flush()
	fmt.Fprintf(w, "index-time hashing, neardup / plain PDQ on the same decoded pixels: %.2fx (total), %.2fx (median per image)\n", r.IndexRatioTotal, r.IndexRatioMedian)
	fmt.Fprintf(w, "elapsed %s\n", r.Elapsed.Round(1e6))
}

func srcOrder(s string) int {
	switch s {
	case srcReal:
		return 0
	case srcRealFeatured:
		return 1
	case srcGen:
		return 2
	case srcDist:
		return 4
	case srcRealDist:
		return 5
	}
	return 3
}
