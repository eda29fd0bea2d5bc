package query

import (
	"context"
	"errors"
	"time"

	"github.com/xmodal/xmodal/domain"
)

// ClusterRequest is the body of xmodal.v1.cluster: a page of a near-duplicate
// cluster's members, newest first, and its representative (the earliest
// member). Give the cluster's id or a member's post id.
type ClusterRequest struct {
	ID     uint64 `json:"id,omitempty"`
	PostID string `json:"post_id,omitempty"`
	// Limit is the page size, 1..MaxK (absent: DefaultGetLimit); Cursor the
	// previous page's next_cursor.
	Limit      int    `json:"limit,omitempty"`
	Cursor     string `json:"cursor,omitempty"`
	Thumbnails bool   `json:"thumbnails,omitempty"`
}

// ClusterResponse is the reply of xmodal.v1.cluster. Members are the
// members' image records as hits; taken-down posts are left out.
type ClusterResponse struct {
	Cluster    domain.ClusterSummary `json:"cluster"`
	Members    []domain.Hit          `json:"members"`
	NextCursor string                `json:"next_cursor,omitempty"`
}

// TrendingRequest is the body of xmodal.v1.trending: the clusters that grew
// most in the window ending now against the window before.
type TrendingRequest struct {
	// Window is a Go duration ("1h", "15m"); default 1h, at most 30 days.
	Window string `json:"window,omitempty"`
	// Now ends the window (default: the server's clock).
	Now time.Time `json:"now,omitzero"`
	// Smoothing is the pseudo-count of the score (default 10; see docs/clusters.md).
	Smoothing *float64 `json:"smoothing,omitempty"`
	// MinCount is the fewest members a cluster must gain in the window (default 3).
	MinCount int `json:"min_count,omitempty"`
	// K is the number of clusters (default 10, at most MaxK).
	K          int  `json:"k,omitempty"`
	Thumbnails bool `json:"thumbnails,omitempty"`
}

// TrendingResponse is the reply of xmodal.v1.trending.
type TrendingResponse struct {
	Window   string                   `json:"window"`
	Now      time.Time                `json:"now"`
	Clusters []domain.TrendingCluster `json:"clusters"`
	TookMS   float64                  `json:"took_ms"`
}

// TrendingSearch restricts a search to the members of the top trending
// clusters (the search request's trending field).
type TrendingSearch struct {
	Window string `json:"window,omitempty"` // default 1h
	// Top is how many trending clusters the hits may come from (default 100).
	Top int `json:"top,omitempty"`
}

// Limits of the cluster endpoints.
const (
	DefaultTrendingWindow = time.Hour
	MaxTrendingWindow     = 30 * 24 * time.Hour
	DefaultTrendingTop    = 100
)

// CodeNotImplemented answers a request the deployment cannot serve (clusters
// turned off, a batch job asked of a Milvus deployment's server).
const CodeNotImplemented = 501

// ParseCluster decodes and validates a cluster request.
func ParseCluster(data []byte) (*ClusterRequest, error) {
	var w struct {
		ClusterRequest
		Limit *int `json:"limit"`
	}
	if err := decodeStrict(data, &w); err != nil {
		return nil, err
	}
	r := w.ClusterRequest
	r.Limit = orDefault(w.Limit, DefaultGetLimit)
	if (r.ID == 0) == (r.PostID == "") {
		return nil, errorf(CodeBadRequest, "give one of id and post_id")
	}
	if r.Limit < 1 || r.Limit > MaxK {
		return nil, errorf(CodeBadRequest, "limit %d: want 1..%d", r.Limit, MaxK)
	}
	return &r, nil
}

func parseWindow(s string) (time.Duration, error) {
	if s == "" {
		return DefaultTrendingWindow, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Minute || d > MaxTrendingWindow {
		return 0, errorf(CodeBadRequest, "window %q: want a duration from 1m to %v (for example \"1h\")", s, MaxTrendingWindow)
	}
	return d, nil
}

// ParseTrending decodes and validates a trending request.
func ParseTrending(data []byte) (*TrendingRequest, time.Duration, error) {
	var r TrendingRequest
	if len(data) == 0 {
		data = []byte("{}")
	}
	if err := decodeStrict(data, &r); err != nil {
		return nil, 0, err
	}
	w, err := parseWindow(r.Window)
	if err != nil {
		return nil, 0, err
	}
	if r.K < 0 || r.K > MaxK {
		return nil, 0, errorf(CodeBadRequest, "k %d: want 1..%d", r.K, MaxK)
	}
	if r.MinCount < 0 {
		return nil, 0, errorf(CodeBadRequest, "min_count %d must be positive", r.MinCount)
	}
	if r.Smoothing != nil && !(*r.Smoothing >= 0 && *r.Smoothing <= 1e9) {
		return nil, 0, errorf(CodeBadRequest, "smoothing %v: want 0..1e9", *r.Smoothing)
	}
	return &r, w, nil
}

func (t *TrendingSearch) validate() error {
	if t == nil {
		return nil
	}
	if _, err := parseWindow(t.Window); err != nil {
		return err
	}
	if t.Top < 0 || t.Top > MaxK {
		return errorf(CodeBadRequest, "trending.top %d: want 1..%d", t.Top, MaxK)
	}
	return nil
}

func (s *Service) clusterIndex() (domain.ClusterIndex, error) {
	ci, ok := s.d.Index.(domain.ClusterIndex)
	if !ok {
		return nil, errorf(CodeNotImplemented, "this deployment keeps no near-duplicate clusters (clusters.enabled is off; docs/clusters.md)")
	}
	return ci, nil
}

func clusterErr(err error) error {
	switch {
	case errors.Is(err, domain.ErrNotFound):
		return errorf(CodeNotFound, "%v", err)
	case errors.Is(err, domain.ErrUnsupported):
		return errorf(CodeNotImplemented, "%v", err)
	}
	return indexErr(err)
}

func (s *Service) now() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now()
	}
	return time.Now()
}

func (s *Service) cluster(ctx context.Context, data []byte) (any, error) {
	r, err := ParseCluster(data)
	if err != nil {
		return nil, err
	}
	ci, err := s.clusterIndex()
	if err != nil {
		return nil, err
	}
	if err := s.syncDeny(ctx); err != nil {
		return nil, err
	}
	pg, err := ci.Cluster(ctx, domain.ClusterQuery{ID: r.ID, PostID: r.PostID, Limit: r.Limit, Cursor: r.Cursor})
	if err != nil {
		return nil, clusterErr(err)
	}
	res := &ClusterResponse{Cluster: pg.Cluster, Members: make([]domain.Hit, 0, len(pg.Members)), NextCursor: pg.Next}
	for _, h := range pg.Members {
		if s.d.Deny.Denied(h.PostID) {
			continue
		}
		if !r.Thumbnails {
			h.Thumbnail = nil
		}
		res.Members = append(res.Members, h)
	}
	s.scrubRep(&res.Cluster, r.Thumbnails)
	return res, nil
}

// scrubRep drops a taken-down representative and, unless asked for, its thumbnail.
func (s *Service) scrubRep(c *domain.ClusterSummary, thumbs bool) {
	if c.Representative == nil {
		return
	}
	if s.d.Deny.Denied(c.Representative.PostID) {
		c.Representative = nil
		return
	}
	if !thumbs {
		c.Representative.Thumbnail = nil
	}
}

func (s *Service) trending(ctx context.Context, data []byte) (any, error) {
	start := time.Now()
	r, w, err := ParseTrending(data)
	if err != nil {
		return nil, err
	}
	ci, err := s.clusterIndex()
	if err != nil {
		return nil, err
	}
	if err := s.syncDeny(ctx); err != nil {
		return nil, err
	}
	now := r.Now
	if now.IsZero() {
		now = s.now()
	}
	q := domain.TrendingQuery{Now: now, Window: w, MinCount: r.MinCount, K: r.K}
	if r.Smoothing != nil {
		q.Smoothing = *r.Smoothing
		if q.Smoothing == 0 {
			q.Smoothing = 1e-9 // 0 means the default below the index
		}
	}
	tr, err := ci.Trending(ctx, q)
	if err != nil {
		return nil, clusterErr(err)
	}
	for i := range tr {
		s.scrubRep(&tr[i].ClusterSummary, r.Thumbnails)
	}
	return &TrendingResponse{Window: w.String(), Now: now.UTC(), Clusters: tr,
		TookMS: float64(time.Since(start).Microseconds()) / 1000}, nil
}

// trendingFilter restricts f to the members of the top trending clusters;
// false when none trends.
func (s *Service) trendingFilter(ctx context.Context, t *TrendingSearch, f *domain.Filter) (bool, error) {
	ci, err := s.clusterIndex()
	if err != nil {
		return false, err
	}
	w, _ := parseWindow(t.Window) // validated
	top := t.Top
	if top == 0 {
		top = DefaultTrendingTop
	}
	tr, err := ci.Trending(ctx, domain.TrendingQuery{Now: s.now(), Window: w, K: top})
	if err != nil {
		return false, clusterErr(err)
	}
	if len(tr) == 0 {
		return false, nil
	}
	ids := make([]uint64, len(tr))
	for i := range tr {
		ids[i] = tr[i].ID
	}
	if f.Cluster != 0 {
		for _, id := range ids {
			if id == f.Cluster {
				return true, nil
			}
		}
		return false, nil
	}
	f.Clusters = ids
	return true, nil
}
