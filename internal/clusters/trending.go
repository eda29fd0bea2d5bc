package clusters

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// TrendingQuery asks for the clusters that grew most in the window ending at
// Now against the window before it.
type TrendingQuery struct {
	Now    time.Time
	Window time.Duration // rounded up to whole buckets
	// Smoothing is the pseudo-count s of the score (default DefaultSmoothing).
	Smoothing float64
	// MinCount is the fewest members a cluster must gain in the window
	// (default DefaultMinCount; at least 1).
	MinCount int
	K        int // default 10
}

// Defaults of a trending query.
const (
	DefaultSmoothing = 10
	DefaultMinCount  = 3
	DefaultTrendingK = 10
)

// Trend is a trending cluster: the members it gained in the window
// (Current) and in the window before (Previous), and its score.
type Trend struct {
	Info
	Current, Previous int
	Score             float64
}

// Score ranks growth: (current - previous) / sqrt(previous + s), the growth
// in standard deviations of a Poisson count with s added to the previous
// window's. A steady cluster scores about 0 however large; the pseudo-count
// keeps a cluster that went from 0 to 2 members (2/sqrt(s)) below one that
// went from 0 to 50 (50/sqrt(s)) or from 1,000 to 1,300 (300/sqrt(1000+s)).
func Score(current, previous int, s float64) float64 {
	return float64(current-previous) / math.Sqrt(float64(previous)+s)
}

// ErrBadTrendingQuery is returned for a query out of range.
var ErrBadTrendingQuery = errors.New("clusters: bad trending query")

// Trending ranks the clusters by Score over the two windows, best first
// (ties: more current members, then the smaller id); only clusters that
// gained at least MinCount members in the window and scored above 0 are
// returned. The windows are whole buckets: the current one ends with the
// bucket holding Now.
func (s *Store) Trending(q TrendingQuery) ([]Trend, error) {
	if q.Smoothing == 0 {
		q.Smoothing = DefaultSmoothing
	}
	if q.MinCount == 0 {
		q.MinCount = DefaultMinCount
	}
	if q.K == 0 {
		q.K = DefaultTrendingK
	}
	if q.Window <= 0 || q.Smoothing < 0 || math.IsNaN(q.Smoothing) || math.IsInf(q.Smoothing, 0) || q.MinCount < 1 || q.K < 0 {
		return nil, fmt.Errorf("%w: window %v, smoothing %v, min count %d, k %d", ErrBadTrendingQuery, q.Window, q.Smoothing, q.MinCount, q.K)
	}
	g := s.opt.Bucket
	w := int64((q.Window + g - 1) / g)
	end := bucketOf(q.Now.UnixNano(), g) // inclusive
	mid := end - w                       // current: (mid, end]
	lo := mid - w                        // previous: (lo, mid]
	oldest := (lo + 1) * int64(g)
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Trend
	for _, in := range s.multi {
		if in.Last < oldest || in.Size < q.MinCount {
			continue
		}
		cur, prev := windowCounts(in.Counts, lo, mid, end)
		if cur < q.MinCount {
			continue
		}
		sc := Score(cur, prev, q.Smoothing)
		if sc <= 0 {
			continue
		}
		out = append(out, Trend{Info: Info{ID: in.ID, Size: in.Size, First: in.First, Last: in.Last, Rep: in.Rep},
			Current: cur, Previous: prev, Score: sc})
	}
	slices.SortFunc(out, func(a, b Trend) int {
		if a.Score != b.Score {
			if a.Score > b.Score {
				return -1
			}
			return 1
		}
		if a.Current != b.Current {
			return b.Current - a.Current
		}
		return cmpU64(a.ID, b.ID)
	})
	return out[:min(len(out), q.K)], nil
}

// windowCounts sums the counts of buckets in (lo, mid] and (mid, end].
func windowCounts(cs []Count, lo, mid, end int64) (cur, prev int) {
	i, _ := slices.BinarySearchFunc(cs, lo+1, func(c Count, b int64) int { return cmpI64(c.Bucket, b) })
	for ; i < len(cs) && cs[i].Bucket <= end; i++ {
		if cs[i].Bucket <= mid {
			prev += int(cs[i].N)
		} else {
			cur += int(cs[i].N)
		}
	}
	return cur, prev
}
