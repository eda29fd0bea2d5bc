package query_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/internal/vecmath"
	"github.com/xmodal/xmodal/query"
)

// BenchmarkQueryLatency measures request-reply latency through NATS at 10k
// records (text encoding included), reporting p50 and p99.
func BenchmarkQueryLatency(b *testing.B) {
	s := newStack(b, query.Config{}, nil)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(1, 2))
	const n = 10000
	var chs []domain.Change
	for i := range n {
		id := fmt.Sprintf("r%05d", i)
		m := domain.Modalities[i%3]
		v := vecmath.RandomUnit(r, s.model.Dim())
		chs = append(chs, domain.Change{PostID: id, Records: []domain.Record{{PK: domain.PrimaryKey(id, m), PostID: id,
			Modality: m, Vector: v, Text: "record " + id, CreatedAt: time.Unix(int64(i), 0)}}})
	}
	if _, err := s.ix.Apply(ctx, chs); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  query.SearchRequest
	}{
		{"text-to-image-k10", query.SearchRequest{Text: "a red star next to a blue circle", Target: "image", K: 10}},
		{"text-to-any-k10", query.SearchRequest{Text: "a red star next to a blue circle", K: 10}},
		{"vector-to-image-k100", query.SearchRequest{Vector: chs[0].Records[0].Vector, Target: "image", K: 100}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			var lat []time.Duration
			for b.Loop() {
				start := time.Now()
				if _, err := s.cl.Search(ctx, &tc.req); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
