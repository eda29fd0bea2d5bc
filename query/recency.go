package query

import (
	"context"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/xmodal/xmodal/domain"
)

// Recency is the optional boost of recent posts for trending searches:
//
//	boosted = score + weight · 0.5^(age / half_life)
//
// where age = max(0, now − created_at) in hours. A post created now gains weight,
// one half_life old gains weight/2, and so on. Cosine scores lie in [−1, 1], so a
// weight of 0.05–0.2 reorders near ties without burying relevance. The index is
// asked for more candidates than k (max(4k, 100), at most 1000) so that recent
// posts just below the plain top k can rise into it; the reply's scores are the
// boosted ones.
type Recency struct {
	HalfLifeHours float64 `json:"half_life_hours"`
	Weight        float64 `json:"weight"`
}

// Limits of the recency boost.
const (
	MaxRecencyWeight   = 10
	MaxRecencyHalfLife = 24 * 365 * 100
)

func (r *Recency) validate() error {
	if r == nil {
		return nil
	}
	if !(r.HalfLifeHours > 0 && r.HalfLifeHours <= MaxRecencyHalfLife) {
		return errorf(CodeBadRequest, "recency.half_life_hours must be in (0, %d], got %v", MaxRecencyHalfLife, r.HalfLifeHours)
	}
	if !(r.Weight >= 0 && r.Weight <= MaxRecencyWeight) {
		return errorf(CodeBadRequest, "recency.weight must be in [0, %d], got %v", MaxRecencyWeight, r.Weight)
	}
	return nil
}

// recencyCandidates is how many hits to ask the index for before boosting.
func recencyCandidates(k int) int { return min(MaxK, max(4*k, 100)) }

// searchOne asks the index for one modality's list, applying the recency boost
// when the request has one.
func (s *Service) searchOne(ctx context.Context, q domain.VectorQuery, r *SearchRequest) ([]domain.Hit, error) {
	if r.Recency == nil || r.Recency.Weight == 0 {
		return s.d.Index.Search(ctx, q)
	}
	k := q.K
	q.K = recencyCandidates(k)
	hits, err := s.d.Index.Search(ctx, q)
	if err != nil {
		return nil, err
	}
	now := time.Now
	if s.cfg.Now != nil {
		now = s.cfg.Now
	}
	return BoostRecent(hits, *r.Recency, now(), k), nil
}

// BoostRecent applies the recency formula to hits, re-sorts them (boosted score,
// then primary key) and keeps the first k.
func BoostRecent(hits []domain.Hit, rc Recency, now time.Time, k int) []domain.Hit {
	for i := range hits {
		age := max(0, now.Sub(hits[i].CreatedAt).Hours())
		if hits[i].CreatedAt.IsZero() {
			age = math.Inf(1)
		}
		hits[i].Score += float32(rc.Weight * math.Exp2(-age/rc.HalfLifeHours))
	}
	slices.SortStableFunc(hits, func(a, b domain.Hit) int {
		if a.Score != b.Score {
			if a.Score > b.Score {
				return -1
			}
			return 1
		}
		return strings.Compare(a.PK, b.PK)
	})
	if len(hits) > k {
		hits = hits[:k]
	}
	return hits
}
