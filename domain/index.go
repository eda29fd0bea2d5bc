package domain

import (
	"context"
	"slices"
	"time"
)

// Filter narrows a search. Empty fields do not filter.
type Filter struct {
	Authors []string  `json:"authors,omitempty"`
	Since   time.Time `json:"since,omitzero"`
	Until   time.Time `json:"until,omitzero"`
	// Labels matches a record that carries at least one of these labels.
	Labels []string `json:"labels,omitempty"`
	// Cluster keeps the records of one near-duplicate cluster; Clusters the
	// records of any of these clusters (trending search uses it); see
	// docs/clusters.md.
	Cluster  uint64   `json:"cluster,omitempty"`
	Clusters []uint64 `json:"clusters,omitempty"`
	// MatchedBanks keeps the records of posts that matched at least one of
	// these moderation banks at ingest (Record.Matches; embedded index only).
	MatchedBanks []string `json:"matched_banks,omitempty"`
	// Posts keeps the records of these posts: an index that keeps its
	// clusters outside its records (the shared clusters of a Milvus
	// deployment) turns a cluster filter into its members' post ids. Not
	// part of a request.
	Posts []string `json:"-"`
}

// HasClusters reports whether f filters by cluster.
func (f *Filter) HasClusters() bool { return f.Cluster != 0 || len(f.Clusters) > 0 }

// Empty reports whether f filters nothing.
func (f *Filter) Empty() bool {
	return len(f.Authors) == 0 && f.Since.IsZero() && f.Until.IsZero() && len(f.Labels) == 0 && !f.HasClusters() && len(f.MatchedBanks) == 0 && len(f.Posts) == 0
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
	if len(f.Posts) > 0 && !contains(f.Posts, r.PostID) {
		return false
	}
	if f.Cluster != 0 && r.Cluster != f.Cluster {
		return false
	}
	if len(f.Clusters) > 0 && !slices.Contains(f.Clusters, r.Cluster) {
		return false
	}
	if len(f.MatchedBanks) > 0 && !slices.ContainsFunc(r.Matches, func(m RecordMatch) bool { return contains(f.MatchedBanks, m.Bank) }) {
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

// MatchKeeper is an index whose records keep the bank entries their posts
// matched at ingest (Record.Matches, on hits) and whose searches filter by
// them (Filter.MatchedBanks): the embedded index.
type MatchKeeper interface {
	KeepsMatches() bool
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
	// Received is when the source handed the post's message to the
	// pipeline (zero when unknown): stages after the write measure their
	// latency from it (ingest to match event).
	Received time.Time
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

// Takedown is one entry of the deny-list: a post id that no version,
// redelivery or backfill may bring back, with who took it down and why.
type Takedown struct {
	PostID string    `json:"id"`
	At     time.Time `json:"at"`
	// Source says what took it down: "admin", "tombstone", "bank:<name>", "seed"
	// (copied from an index's own deny rows).
	Source string `json:"source,omitempty"`
	By     string `json:"by,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// DenyList is the deny-list every process of a deployment shares: a
// replicated in-memory set (internal/denylist). Denied is a local lookup; Sync
// brings the local copy up to every takedown recorded before the call and
// fails (fail closed) when it cannot; Deny records takedowns and returns once
// they are durable and visible to every process that syncs.
type DenyList interface {
	Denied(postID string) bool
	Sync(ctx context.Context) error
	Deny(ctx context.Context, t []Takedown) error
}

// PostState is what an index knows of one post when it decides a change.
type PostState struct {
	Exists bool   // a version of the post is indexed
	Seq    uint64 // its version (0: unordered)
	Denied bool   // the post id is on the deny-list
}

// Decide is the one rule every index applies to a change (see Change): deletes
// win and may deny-list the id; a denied id is never indexed again; a change
// older than the indexed version is stale (Seq 0 always applies; the same
// Seq re-applies, so a redelivery is harmless). It returns the outcome and the
// post's state after the change; newDeny says the deny-list gains the id.
func Decide(st PostState, ch *Change) (out Outcome, next PostState, newDeny bool) {
	switch {
	case ch.Delete:
		next = PostState{Denied: st.Denied || ch.Deny}
		return Deleted, next, ch.Deny && !st.Denied
	case st.Denied:
		return Denied, st, false
	case ch.Seq != 0 && st.Exists && st.Seq != 0 && ch.Seq < st.Seq:
		return Stale, st, false
	default:
		return Applied, PostState{Exists: true, Seq: ch.Seq}, false
	}
}

// RecordScanner visits the records of an index in primary-key order,
// starting after the key after ("": from the first), until fn returns an
// error (returned) or the records end. The embedded index implements it;
// a retro sweep of text, URL and embedding bank entries reads it. fn may
// write to the index (the scanner holds no transaction while it runs).
type RecordScanner interface {
	ScanRecords(ctx context.Context, after string, fn func(r *Record) error) error
}

// PostMatches are bank matches to add to a post's records.
type PostMatches struct {
	PostID  string
	Matches []RecordMatch
}

// MatchRecorder adds bank matches to the records of posts already written
// (a retro sweep's matches), so that hits carry them and the matched_banks
// filter finds the posts. A match already on a record (same bank and entry)
// is not added again; posts no longer indexed are skipped.
type MatchRecorder interface {
	AddMatches(ctx context.Context, posts []PostMatches) error
}
