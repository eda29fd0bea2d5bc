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
	b.WriteString("\n")
	b.WriteString("strict: the paired item (Flickr30K protocol); ceiling: best expected strict score when\n")
	b.WriteString("identically described twins cannot be told apart; semantic: any item with the query's scene.\n")
	for _, n := range r.Notes {
		b.WriteString("note: " + n + "\n")
	}
	t := r.Timing
	fmt.Fprintf(&b, "timing: encode %.1fs, recall %.2fs (%.0f TqI queries/s), MAP %.2fs, %d workers\n",
		t.EncodeSeconds, t.RecallSeconds, t.TqIQueriesPerSecond, t.MAPSeconds, t.Workers)
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
