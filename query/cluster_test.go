package query_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/internal/vecmath"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
	"github.com/xmodal/xmodal/sink/embedded"
)

// clusterStack indexes three planted clusters of image posts: "burst" (40
// posts in the last hour), "steady" (60 an hour for two hours) and "old"
// (5 posts a day ago), plus unrelated singletons.
func clusterStack(t *testing.T) (*client.Client, *embedded.Index, time.Time) {
	t.Helper()
	nc, model, deny := startNATSAndModel(t)
	ix, err := embedded.Open(context.Background(), embedded.Options{Path: filepath.Join(t.TempDir(), "ix.db"), Dim: model.Dim(),
		Clusters: &embedded.ClusterOptions{Threshold: 12}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(1, 2))
	hash := func() []byte {
		b := make([]byte, 32)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	near := func(h []byte) []byte {
		o := append([]byte(nil), h...)
		for range 3 {
			b := rng.IntN(256)
			o[b/8] ^= 1 << (b % 8)
		}
		return o
	}
	var chs []domain.Change
	add := func(id string, at time.Time, h []byte) {
		v := vecmath.RandomUnit(rng, model.Dim())
		chs = append(chs, domain.Change{PostID: id, Records: []domain.Record{{PK: domain.PrimaryKey(id, domain.ModalityImage), PostID: id,
			Modality: domain.ModalityImage, CreatedAt: at, Vector: v, PDQ: h, PDQQuality: 100, Thumbnail: []byte("jpeg-" + id)}}})
	}
	burst, steady, old := hash(), hash(), hash()
	for i := range 40 {
		add(fmt.Sprintf("burst%02d", i), now.Add(-time.Duration(i)*time.Minute), near(burst))
	}
	for i := range 120 {
		add(fmt.Sprintf("steady%03d", i), now.Add(-time.Duration(i)*time.Minute), near(steady))
	}
	for i := range 5 {
		add(fmt.Sprintf("old%d", i), now.Add(-24*time.Hour-time.Duration(i)*time.Minute), near(old))
	}
	for i := range 20 {
		add(fmt.Sprintf("single%d", i), now.Add(-time.Duration(i)*time.Minute), hash())
	}
	if _, err := ix.Apply(context.Background(), chs); err != nil {
		t.Fatal(err)
	}
	svc, err := query.New(query.Config{Now: func() time.Time { return now }}, query.Deps{Index: ix, Encoder: model, Decode: decodeQuery, Deny: deny})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(nc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	return client.New(nc), ix, now
}

func TestClusterEndpoint(t *testing.T) {
	cl, _, now := clusterStack(t)
	ctx := context.Background()
	res, err := cl.Cluster(ctx, &query.ClusterRequest{PostID: "old3", Limit: 2, Thumbnails: true})
	if err != nil {
		t.Fatal(err)
	}
	c := res.Cluster
	if c.Size != 5 || c.Representative == nil || c.Representative.PostID != "old4" || string(c.Representative.Thumbnail) != "jpeg-old4" ||
		!c.FirstSeen.Equal(now.Add(-24*time.Hour-4*time.Minute)) {
		t.Fatalf("cluster %+v (representative %+v): want 5 members, representative old4 (the earliest) with its thumbnail", c, c.Representative)
	}
	var got []string
	for {
		for _, h := range res.Members {
			if h.Cluster == nil || h.Cluster.ID != c.ID || h.Cluster.Size != 5 {
				t.Fatalf("member %s cluster %+v", h.PostID, h.Cluster)
			}
			got = append(got, h.PostID)
		}
		if res.NextCursor == "" {
			break
		}
		if res, err = cl.Cluster(ctx, &query.ClusterRequest{ID: c.ID, Limit: 2, Cursor: res.NextCursor}); err != nil {
			t.Fatal(err)
		}
		if len(res.Members) > 0 && res.Members[0].Thumbnail != nil {
			t.Fatal("a thumbnail without thumbnails: true")
		}
	}
	if strings.Join(got, ",") != "old0,old1,old2,old3,old4" {
		t.Fatalf("members %v, want newest first", got)
	}
	for _, tc := range []struct {
		body string
		code int
		want string
	}{
		{`{}`, 400, "one of id and post_id"},
		{`{"id":1,"post_id":"x"}`, 400, "one of id and post_id"},
		{`{"id":999}`, 404, "cluster 999"},
		{`{"post_id":"nobody"}`, 404, "in no cluster"},
		{`{"id":1,"limit":0}`, 400, "limit"},
		{`{"id":1,"cursor":"zz"}`, 400, "cursor"},
	} {
		err := cl.Raw(ctx, "cluster", []byte(tc.body), nil)
		var e *query.Error
		if !errors.As(err, &e) || e.Code != tc.code || !strings.Contains(e.Message, tc.want) {
			t.Errorf("%s: %v, want %d %q", tc.body, err, tc.code, tc.want)
		}
	}
}

func TestTrendingEndpoint(t *testing.T) {
	cl, _, _ := clusterStack(t)
	ctx := context.Background()
	res, err := cl.Trending(ctx, &query.TrendingRequest{Window: "1h", Thumbnails: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Clusters) == 0 || res.Clusters[0].Representative == nil || !strings.HasPrefix(res.Clusters[0].Representative.PostID, "burst") {
		t.Fatalf("trending %+v: want the burst cluster first", res.Clusters)
	}
	if top := res.Clusters[0]; top.Current != 40 || top.Previous != 0 || string(top.Representative.Thumbnail) != "jpeg-burst39" {
		t.Fatalf("top %+v: want 40 now, 0 before, the earliest member's thumbnail", top)
	}
	for _, c := range res.Clusters {
		if c.Size == 120 {
			t.Fatalf("the steady cluster trends: %+v", c)
		}
	}
	for _, tc := range []struct {
		body string
		want string
	}{
		{`{"window":"1s"}`, "window"},
		{`{"window":"soon"}`, "window"},
		{`{"k":-1}`, "k"},
		{`{"smoothing":-1}`, "smoothing"},
	} {
		err := cl.Raw(ctx, "trending", []byte(tc.body), nil)
		var e *query.Error
		if !errors.As(err, &e) || e.Code != 400 || !strings.Contains(e.Message, tc.want) {
			t.Errorf("%s: %v, want 400 %q", tc.body, err, tc.want)
		}
	}
}

func TestSearchClusterFilterAndTrending(t *testing.T) {
	cl, ix, _ := clusterStack(t)
	ctx := context.Background()
	oldID := ix.ClusterOfPost("old0")
	vec := make(query.Vector, ix.Dim())
	vec[0] = 1
	res, err := cl.Search(ctx, &query.SearchRequest{Vector: vec, K: 50, Filter: domain.Filter{Cluster: oldID}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Hits) != 5 {
		t.Fatalf("%d hits with the cluster filter, want the cluster's 5", len(res.Hits))
	}
	for _, h := range res.Hits {
		if h.Cluster == nil || h.Cluster.ID != oldID || !strings.HasPrefix(h.PostID, "old") {
			t.Fatalf("hit %s in cluster %+v", h.PostID, h.Cluster)
		}
	}
	res, err = cl.Search(ctx, &query.SearchRequest{Vector: vec, K: 100, Trending: &query.TrendingSearch{Window: "1h", Top: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Hits) != 40 {
		t.Fatalf("%d hits from the top trending cluster, want its 40", len(res.Hits))
	}
	for _, h := range res.Hits {
		if !strings.HasPrefix(h.PostID, "burst") {
			t.Fatalf("trending search returned %s", h.PostID)
		}
	}
	// In a one-minute window no cluster gains the 3 members it takes to
	// trend: no hits.
	res, err = cl.Search(ctx, &query.SearchRequest{Vector: vec, K: 10, Trending: &query.TrendingSearch{Window: "1m"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Hits) != 0 {
		t.Fatalf("%d hits with nothing trending, want 0", len(res.Hits))
	}
}

func FuzzParseCluster(f *testing.F) {
	for _, s := range []string{`{"id":3}`, `{"post_id":"p"}`, `{"id":1,"limit":1000,"cursor":"00ff"}`, `{}`, `{"id":-1}`, `{"id":1,"post_id":"x"}`, `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := query.ParseCluster(b)
		if err != nil {
			if c := query.AsError(err).Code; c != 400 && c != 413 {
				t.Fatalf("code %d for a bad request", c)
			}
			return
		}
		if (r.ID == 0) == (r.PostID == "") || r.Limit < 1 || r.Limit > query.MaxK {
			t.Fatalf("accepted %+v", r)
		}
	})
}

func FuzzParseTrending(f *testing.F) {
	for _, s := range []string{`{}`, `{"window":"1h","k":5}`, `{"window":"1s"}`, `{"smoothing":0}`, `{"min_count":-1}`, `{"now":"2026-12-01T00:00:00Z"}`, ``, `{"window":"720h1m"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, w, err := query.ParseTrending(b)
		if err != nil {
			if c := query.AsError(err).Code; c != 400 && c != 413 {
				t.Fatalf("code %d for a bad request", c)
			}
			return
		}
		if w < time.Minute || w > query.MaxTrendingWindow || r.K < 0 || r.K > query.MaxK || r.MinCount < 0 {
			t.Fatalf("accepted %+v (window %v)", r, w)
		}
	})
}
