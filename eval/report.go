package eval

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

var dirNames = map[string]string{TqI: "text→image (TqI)", IqT: "image→text (IqT)"}

func f3(x float64) string {
	if math.IsNaN(x) {
		return "-"
	}
	return fmt.Sprintf("%.3f", x)
}

// WriteTable prints the report as readable tables.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	if r.Model != "" {
		fmt.Fprintf(&b, "model     %s (dim %d), plan %s\n", r.Model, r.Dim, r.Plan)
	} else {
		fmt.Fprintf(&b, "embeddings dim %d, plan %s\n", r.Dim, r.Plan)
	}
	fmt.Fprintf(&b, "queries   %s: %d images, %d captions\n", r.Queries.Name, r.Queries.Images, r.Queries.Texts)
	if r.Database != nil {
		fmt.Fprintf(&b, "database  %s: %d images, %d captions\n", r.Database.Name, r.Database.Images, r.Database.Texts)
	}
	if r.Hash != nil {
		fmt.Fprintf(&b, "R@K and MAP below rank by the exact plan (the reference); plan %s's own table follows them\n", r.Plan)
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
	head := "Recall@K\tobjects\tqueries\t"
	for _, k := range r.Ks {
		head += fmt.Sprintf("R@%d\t", k)
	}
	fmt.Fprintln(tw, head)
	last := ""
	for _, row := range r.Recall {
		if row.Direction != last {
			fmt.Fprintf(tw, "%s\t\t\t%s\n", dirNames[row.Direction], strings.Repeat("\t", len(r.Ks)))
			last = row.Direction
		}
		obj := "all"
		if row.Objects > 0 {
			obj = fmt.Sprint(row.Objects)
		}
		line := fmt.Sprintf("  %s\t%s\t%d\t", row.Match, obj, row.Queries)
		for _, x := range row.R {
			line += f3(x) + "\t"
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
	if len(r.MAP) > 0 {
		b.WriteString("\n")
		tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "MAP (relevant: shares a label)\tK\tqueries\tgallery\tMAP\trandom\tlift\t")
		for _, m := range r.MAP {
			k := "ALL"
			if m.K > 0 {
				k = fmt.Sprint(m.K)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t\n", dirNames[m.Direction], k, m.Queries, m.Gallery,
				f3(m.MAP), f3(m.Random), fmt.Sprintf("%+.3f", m.MAP-m.Random))
		}
		tw.Flush()
	}
	if r.Hash != nil {
		r.Hash.writeTable(&b)
	}
	b.WriteString("\n")
	b.WriteString("strict: the paired item (Flickr30K protocol); ceiling: best expected strict score when\n")
	b.WriteString("identically described twins cannot be told apart; semantic: any item with the query's scene.\n")
	for _, n := range r.Notes {
		b.WriteString("note: " + n + "\n")
	}
	t := r.Timing
	fmt.Fprintf(&b, "timing: encode %.1fs, recall %.2fs (%.0f TqI queries/s), MAP %.2fs, %d workers",
		t.EncodeSeconds, t.RecallSeconds, t.TqIQueriesPerSecond, t.MAPSeconds, t.Workers)
	if r.Hash != nil {
		fmt.Fprintf(&b, "; plan %s %.2fs (coder fits included)", r.Plan, t.HashSeconds)
	}
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// Find returns the recall row for a direction, match rule and object count.
func (r *Report) Find(dir, match string, objects int) (RecallRow, bool) {
	for _, row := range r.Recall {
		if row.Direction == dir && row.Match == match && row.Objects == objects {
			return row, true
		}
	}
	return RecallRow{}, false
}

// FindMAP returns the MAP row for a direction and K (0 = ALL).
func (r *Report) FindMAP(dir string, k int) (MAPRow, bool) {
	for _, m := range r.MAP {
		if m.Direction == dir && m.K == k {
			return m, true
		}
	}
	return MAPRow{}, false
}

// At is R@K for the cut-off k (NaN when k is not one of the report's Ks).
func (r *Report) At(row RecallRow, k int) float64 {
	for i, kk := range r.Ks {
		if kk == k {
			return row.R[i]
		}
	}
	return math.NaN()
}

// writeTable prints the coders and the hash or hybrid table.
func (h *HashReport) writeTable(b *strings.Builder) {
	b.WriteString("\n")
	if h.FitSet != "" {
		fmt.Fprintf(b, "binary codes: %s\n", h.FitSet)
	}
	for _, c := range h.Coders {
		fmt.Fprintf(b, "  %s", c.ID)
		if c.FitSeconds > 0 {
			fmt.Fprintf(b, ": fitted in %.1fs on %d images + %d texts, quantisation loss %.3f", c.FitSeconds, c.Samples["image"], c.Samples["text"], c.Loss)
		}
		b.WriteString("\n")
	}
	if len(h.MAP) > 0 {
		b.WriteString("\n")
		tw := tabwriter.NewWriter(b, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "Hash MAP (Hamming ranking)\tbits\tK\tqueries\tgallery\thash MAP\texact MAP\thash/exact\t")
		last := ""
		for _, m := range h.MAP {
			if m.Direction != last {
				fmt.Fprintf(tw, "%s\t\t\t\t\t\t\t\t\n", dirNames[m.Direction])
				last = m.Direction
			}
			k := "ALL"
			if m.K > 0 {
				k = fmt.Sprint(m.K)
			}
			ratio := "-"
			if m.Exact > 0 {
				ratio = fmt.Sprintf("%.3f", m.MAP/m.Exact)
			}
			fmt.Fprintf(tw, "\t%d\t%s\t%d\t%d\t%s\t%s\t%s\t\n", m.Bits, k, m.Queries, m.Gallery, f3(m.MAP), f3(m.Exact), ratio)
		}
		tw.Flush()
		b.WriteString("Hamming ranking: distance ascending, ties by the lower gallery index (as the exact plan).\n")
	}
	if len(h.Hybrid) > 0 {
		b.WriteString("\n")
		cpu := h.Hybrid[0].ExactCPUMicros > 0
		tw := tabwriter.NewWriter(b, 0, 4, 2, ' ', tabwriter.AlignRight)
		head := fmt.Sprintf("Hybrid vs exact (embedded index)\tbits\tasked\tC\tC/N\tqueries\tgallery\trecall@%d\t", h.K)
		if cpu {
			head += "hybrid cpu µs/q\texact cpu µs/q\tspeedup\t"
		}
		head += "hybrid wall µs/q\texact wall µs/q\tspeedup (wall)\t"
		fmt.Fprintln(tw, head)
		last := ""
		for _, x := range h.Hybrid {
			if x.Direction != last {
				fmt.Fprintln(tw, dirNames[x.Direction]+strings.Repeat("\t", strings.Count(head, "\t")))
				last = x.Direction
			}
			line := fmt.Sprintf("\t%d\t%s\t%d\t%s\t%d\t%d\t%s\t", x.Bits, x.Candidates, x.C, pct(x.C, x.Gallery), x.Queries, x.Gallery, f3(x.Recall))
			if cpu {
				line += fmt.Sprintf("%.1f\t%.1f\t%.1fx\t", x.HybridCPUMicros, x.ExactCPUMicros, x.Speedup)
			}
			line += fmt.Sprintf("%.1f\t%.1f\t%.1fx\t", x.HybridMicros, x.ExactMicros, x.WallSpeedup)
			fmt.Fprintln(tw, line)
		}
		tw.Flush()
		fmt.Fprintf(b, "recall@%d: mean share of the exact top %d that hybrid (Hamming top C, re-ranked by cosine) returns;\n", h.K, h.K)
		fmt.Fprintf(b, "C: as asked (a count or a share of the gallery N), at least %d and at most N;\n", h.K)
		b.WriteString("time per query on one goroutine, each query through exact then every C, the query's code included in\n")
		b.WriteString("hybrid's; cpu: the process's user+system time (steadier than wall on a shared machine).\n")
	}
}

// pct formats c/n as a percentage with enough digits for small shares.
func pct(c, n int) string {
	p := 100 * float64(c) / float64(n)
	switch {
	case p >= 10:
		return fmt.Sprintf("%.0f%%", p)
	case p >= 1:
		return fmt.Sprintf("%.1f%%", p)
	}
	return fmt.Sprintf("%.2f%%", p)
}
