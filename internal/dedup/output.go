package dedup

import (
	"bufio"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"slices"
	"time"

	"github.com/xmodal/xmodal/internal/clusters"
)

// Cluster is a line of the job's JSON Lines output.
type Cluster struct {
	ID             int       `json:"cluster"`
	Representative string    `json:"representative"` // the earliest member (ties: smallest post id)
	Size           int       `json:"size"`
	FirstSeen      time.Time `json:"first_seen"`
	LastSeen       time.Time `json:"last_seen"`
	Members        []string  `json:"members"` // oldest first
}

// Group turns the components into clusters of at least minSize members,
// largest first (ties: earliest first seen, then representative); ids
// number them from 1 in that order.
func Group(items []Item, uf *clusters.UnionFind, minSize int) []Cluster {
	byRoot := map[int][]int{}
	for i := range items {
		if uf.Size(i) < max(minSize, 1) {
			continue // (Size also counts canonical hashes: a second filter follows)
		}
		r := uf.Find(i)
		byRoot[r] = append(byRoot[r], i)
	}
	out := make([]Cluster, 0, len(byRoot))
	for _, idx := range byRoot {
		if len(idx) < minSize {
			continue
		}
		slices.SortFunc(idx, func(a, b int) int {
			return cmp.Or(cmp.Compare(items[a].At, items[b].At), cmp.Compare(items[a].Post, items[b].Post))
		})
		c := Cluster{Representative: items[idx[0]].Post, Size: len(idx), FirstSeen: time.Unix(0, items[idx[0]].At).UTC(),
			LastSeen: time.Unix(0, items[idx[len(idx)-1]].At).UTC(), Members: make([]string, len(idx))}
		for i, j := range idx {
			c.Members[i] = items[j].Post
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Cluster) int {
		return cmp.Or(cmp.Compare(b.Size, a.Size), a.FirstSeen.Compare(b.FirstSeen), cmp.Compare(a.Representative, b.Representative))
	})
	for i := range out {
		out[i].ID = i + 1
	}
	return out
}

// WriteJSONL writes one cluster per line.
func WriteJSONL(w io.Writer, cs []Cluster) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	enc := json.NewEncoder(bw)
	for i := range cs {
		if err := enc.Encode(&cs[i]); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Summary describes a job's result.
type Summary struct {
	Threshold  int       `json:"threshold"`
	Since      time.Time `json:"since,omitzero"`
	Until      time.Time `json:"until,omitzero"`
	Posts      int       `json:"posts"`     // image posts searched
	Clustered  int       `json:"clustered"` // posts in a cluster of two or more
	Clusters   int       `json:"clusters"`  // clusters of two or more
	BySize     []SizeBin `json:"clusters_by_size"`
	Largest    []Cluster `json:"largest"` // the largest (members cut to 20)
	TookSec    float64   `json:"took_s"`
	Searches   int64     `json:"searches"`
	IndexBytes int64     `json:"index_bytes_bound,omitempty"`
	// Drift, for a whole-index job at the index's threshold: posts whose
	// incremental cluster groups them differently from this job (-1: not compared).
	Drift int `json:"drift"`
	// Rebuilt counts the posts rejoined when the job rebuilt the incremental
	// clusters (Request.Rebuild), DriftAfter the drift after it.
	Rebuilt    int  `json:"rebuilt,omitempty"`
	DriftAfter *int `json:"drift_after,omitempty"`
}

// SizeBin counts clusters of sizes Lo..Hi (Hi 0: no upper bound).
type SizeBin struct {
	Lo, Hi int
	N      int
}

// MarshalJSON writes a bin as {"sizes":"2","clusters":N}.
func (b SizeBin) MarshalJSON() ([]byte, error) {
	r := fmt.Sprintf("%d-%d", b.Lo, b.Hi)
	switch {
	case b.Hi == 0:
		r = fmt.Sprintf("%d+", b.Lo)
	case b.Lo == b.Hi:
		r = fmt.Sprint(b.Lo)
	}
	return json.Marshal(struct {
		Sizes    string `json:"sizes"`
		Clusters int    `json:"clusters"`
	}{r, b.N})
}

// Summarise counts the clusters (of two or more) by size and keeps the top largest.
func Summarise(cs []Cluster, top int) (bins []SizeBin, clustered int, largest []Cluster) {
	bins = []SizeBin{{2, 2, 0}, {3, 5, 0}, {6, 10, 0}, {11, 100, 0}, {101, 1000, 0}, {1001, 0, 0}}
	for _, c := range cs {
		if c.Size < 2 {
			continue
		}
		clustered += c.Size
		for i := range bins {
			if c.Size >= bins[i].Lo && (bins[i].Hi == 0 || c.Size <= bins[i].Hi) {
				bins[i].N++
				break
			}
		}
	}
	for _, c := range cs[:min(top, len(cs))] {
		if c.Size < 2 {
			break
		}
		c.Members = c.Members[:min(20, len(c.Members))]
		largest = append(largest, c)
	}
	return bins, clustered, largest
}

var reportTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"thumb": func(m map[string][]byte, post string) template.URL {
		b := m[post]
		if len(b) == 0 {
			return ""
		}
		return template.URL("data:image/jpeg;base64," + base64.StdEncoding.EncodeToString(b))
	},
}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>xmodal dedup report</title>
<style>
body{font:14px system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:right}
.cl{border:1px solid #ddd;border-radius:6px;padding:.6em;margin:.8em 0}
.cl img{height:96px;margin:2px;border-radius:3px;filter:blur(6px)}.cl img:hover{filter:none}
.meta{color:#666}
</style></head><body>
<h1>Near-duplicate clusters</h1>
<p>{{.S.Posts}} image posts at threshold {{.S.Threshold}} bits{{if not .S.Since.IsZero}}, from {{.S.Since}}{{end}}{{if not .S.Until.IsZero}} until {{.S.Until}}{{end}}:
{{.S.Clusters}} clusters of two or more holding {{.S.Clustered}} posts; {{printf "%.1f" .S.TookSec}} s.
{{if ge .S.Drift 0}}Posts grouped differently by the incremental clusters: {{.S.Drift}}.{{end}}</p>
<table><tr><th>cluster size</th><th>clusters</th></tr>
{{range .S.BySize}}<tr><td>{{if eq .Hi 0}}{{.Lo}}+{{else if eq .Lo .Hi}}{{.Lo}}{{else}}{{.Lo}}–{{.Hi}}{{end}}</td><td>{{.N}}</td></tr>{{end}}
</table>
<h2>Largest clusters</h2>
<p class="meta">Pictures are blurred until pointed at.</p>
{{range .S.Largest}}<div class="cl"><b>#{{.ID}}</b> — {{.Size}} posts, first seen {{.FirstSeen.Format "2006-01-02 15:04"}}, last seen {{.LastSeen.Format "2006-01-02 15:04"}}; representative <code>{{.Representative}}</code><br>
{{range .Members}}{{with thumb $.T .}}<img src="{{.}}" alt="">{{end}}{{end}}
<div class="meta">{{range $i, $m := .Members}}{{if $i}}, {{end}}{{$m}}{{end}}</div></div>
{{end}}</body></html>
`))

// WriteHTML writes the report: the summary and the largest clusters with
// their members' thumbnails (post id -> JPEG).
func WriteHTML(w io.Writer, s *Summary, thumbs map[string][]byte) error {
	return reportTmpl.Execute(w, struct {
		S *Summary
		T map[string][]byte
	}{s, thumbs})
}
