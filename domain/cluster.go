package domain

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned for an unknown cluster (or other named item).
var ErrNotFound = errors.New("not found")

// ErrUnsupported is returned by an index asked for what it does not keep
// (clusters on an index without them).
var ErrUnsupported = errors.New("not supported by this index")

// ClusterSummary describes a near-duplicate cluster: its size, the creation
// times of its earliest and newest members, and its representative (the
// earliest member's image record as a hit).
type ClusterSummary struct {
	ID             uint64    `json:"id"`
	Size           int       `json:"size"`
	FirstSeen      time.Time `json:"first_seen"`
	LastSeen       time.Time `json:"last_seen"`
	Representative *Hit      `json:"representative,omitempty"`
}

// ClusterQuery asks for a page of a cluster's members, newest first: the
// cluster by id, or the cluster of a post.
type ClusterQuery struct {
	ID     uint64
	PostID string
	Limit  int
	// Cursor is a previous page's Next ("": the first page).
	Cursor string
}

// ClusterPage is a page of a cluster's members (their image records as hits).
type ClusterPage struct {
	Cluster ClusterSummary
	Members []Hit
	Next    string
}

// TrendingQuery asks for the clusters that grew most in the Window ending at
// Now against the window before (see internal/clusters.Score).
type TrendingQuery struct {
	Now       time.Time
	Window    time.Duration
	Smoothing float64
	MinCount  int
	K         int
}

// TrendingCluster is a cluster with its growth.
type TrendingCluster struct {
	ClusterSummary
	Current  int     `json:"current"`
	Previous int     `json:"previous"`
	Score    float64 `json:"score"`
}

// ClusterIndex is an index that keeps near-duplicate clusters.
type ClusterIndex interface {
	Cluster(ctx context.Context, q ClusterQuery) (ClusterPage, error)
	Trending(ctx context.Context, q TrendingQuery) ([]TrendingCluster, error)
}
