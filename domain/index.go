package domain

import (
	"context"
	"time"
)

// Filter narrows a search. Empty fields do not filter.
type Filter struct {
	Authors []string  `json:"authors,omitempty"`
	Since   time.Time `json:"since,omitzero"`
	Until   time.Time `json:"until,omitzero"`
	// Labels matches a record that carries at least one of these labels.
	Labels []string `json:"labels,omitempty"`
}

// Empty reports whether f filters nothing.
func (f *Filter) Empty() bool {
	return len(f.Authors) == 0 && f.Since.IsZero() && f.Until.IsZero() && len(f.Labels) == 0
}

// Match reports whether r passes the filter.
func (f *Filter) Match(r *Record) bool {
	if len(f.Authors) > 0 && !contains(f.Authors, r.Author) {
		return false
	}
	if !f.Since.IsZero() && r.CreatedAt.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !r.CreatedAt.Before(f.Until) {
		return false
	}
	if len(f.Labels) > 0 {
		ok := false
		for _, l := range r.Labels {
			if contains(f.Labels, l) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// Plan names how an index answers a vector query (see docs/ARCHITECTURE.md).
type Plan string

// The query plans.
const (
	PlanExact  Plan = "exact"
	PlanANN    Plan = "ann"
	PlanHash   Plan = "hash"
	PlanHybrid Plan = "hybrid"
)

// VectorQuery asks an index for the k records nearest to Vector (cosine; the
// vector is L2-normalised by the caller) among one modality.
type VectorQuery struct {
	Vector   []float32
	Code     []byte // binary code of the query, for the hash and hybrid plans
	Modality Modality
	K        int
	Filter   Filter
	Plan     Plan
	// Candidates is C for the hybrid plan (0: the index's default).
	Candidates int
}

// Change is one post-level write: an upsert of all of a post's records, or a delete.
type Change struct {
	PostID string
	// Seq orders versions of one post (a Kafka offset or a JetStream sequence); a
	// change older than what the index holds is ignored. 0 means "always apply".
	Seq uint64
	// Records replace every record the post had (a modality missing here is removed).
	Records []Record
	// Delete removes the post's records; Deny also records the id in the deny-list
	// so that no later version or redelivery brings it back.
	Delete bool
	Deny   bool
}

// Outcome says what Apply did with one change.
type Outcome string

// Outcomes of a change.
const (
	Applied Outcome = "applied"
	Stale   Outcome = "stale"  // an equal or newer version is already indexed
	Denied  Outcome = "denied" // the post id is on the deny-list
	Deleted Outcome = "deleted"
)

// Writer applies changes durably: when Apply returns nil, every change is on
// stable storage (or acknowledged by the remote store) and may be acked upstream.
type Writer interface {
	Apply(ctx context.Context, changes []Change) ([]Outcome, error)
	IsDenied(ctx context.Context, postID string) (bool, error)
}

// Searcher answers vector queries and fetches records by primary key.
type Searcher interface {
	Search(ctx context.Context, q VectorQuery) ([]Hit, error)
	Get(ctx context.Context, pks []string) ([]Record, error)
	Count(ctx context.Context) (map[Modality]int, error)
}

// Index is a backend: the embedded index or Milvus.
type Index interface {
	Writer
	Searcher
	Close() error
}
