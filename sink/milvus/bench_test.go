//go:build bench

package milvus

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/milvus-io/milvus/client/v2/milvusclient"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/sink/embedded"
)

// TestBenchMilvus measures upsert rows/s by batch size and search latency per plan
// at XMODAL_BENCH_RECORDS records (default 100,000), Milvus and the embedded index
// side by side on the same data. It is a measurement harness, not a test: it is
// built only with the bench tag (scripts/bench-record.sh milvus-100k go test
// -tags bench -count=1 -run TestBenchMilvus -v -timeout 60m ./sink/milvus/).
func TestBenchMilvus(t *testing.T) {
	n := testutil.EnvInt(t, "XMODAL_BENCH_RECORDS", 100_000)
	const dim, codeBits, nq, k = 512, 64, 200, 10
	ctx := context.Background()
	opt := testOptions(t, dim)
	opt.Consistency = "Bounded"
	opt.NList, opt.NProbe = 128, 16
	opt.CodeBits = codeBits
	ix := openTest(t, opt)
	emb, err := embedded.Open(ctx, embedded.Options{Path: filepath.Join(t.TempDir(), "e.db"), Dim: dim, ModelVersion: "test@1"})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()

	// Clustered data (a few hundred centres), as embeddings are, with SimHash codes.
	r := rand.New(rand.NewPCG(42, 1))
	planes := make([][]float32, codeBits)
	for i := range planes {
		planes[i] = randVec(r, dim, nil, 0)
	}
	centres := make([][]float32, 300)
	for i := range centres {
		centres[i] = randVec(r, dim, nil, 0)
	}
	mods := []domain.Modality{domain.ModalityText, domain.ModalityImage}
	mk := func(i int) domain.Change {
		id := fmt.Sprintf("b%07d", i)
		m := mods[i%2]
		v := randVec(r, dim, centres[r.IntN(len(centres))], 0.6)
		rec := domain.Record{PK: domain.PrimaryKey(id, m), PostID: id, Modality: m, Author: "a" + strconv.Itoa(i%50),
			CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second), ModelVersion: "test@1",
			Text: "post " + id, Vector: v, Code: simhash(v, planes)}
		return domain.Change{PostID: id, Seq: 1, Records: []domain.Record{rec}}
	}

	fmt.Printf("Milvus %s (layout %s, float index %s nlist %d, code index %s), dim %d, %d-bit codes; embedded index beside it\n",
		ix.ServerVersion(), ix.Layout(), ix.opt.FloatIndex, ix.opt.NList, ix.opt.CodeIndex, dim, codeBits)
	fmt.Printf("\nupsert (one Apply call of B posts at a time, one writer, each acknowledged before the next)\n")
	fmt.Printf("%-8s %8s %12s %14s %14s\n", "batch", "posts", "milvus rows/s", "milvus ms/call", "embedded rows/s")
	next := 0
	for _, b := range []struct{ size, calls int }{{1, 30}, {64, 20}, {512, 10}} {
		var chs [][]domain.Change
		for range b.calls {
			var batch []domain.Change
			for range b.size {
				batch = append(batch, mk(next))
				next++
			}
			chs = append(chs, batch)
		}
		start := time.Now()
		for _, c := range chs {
			if _, err := ix.Apply(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		mt := time.Since(start)
		start = time.Now()
		for _, c := range chs {
			if _, err := emb.Apply(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		et := time.Since(start)
		rows := float64(b.size * b.calls)
		fmt.Printf("%-8d %8d %12.0f %14.1f %14.0f\n", b.size, b.size*b.calls, rows/mt.Seconds(),
			float64(mt.Milliseconds())/float64(b.calls), rows/et.Seconds())
	}

	// Fill up to n records, in rounds of 512 posts with 4 writers (Apply calls are
	// coalesced into shared rounds).
	start := time.Now()
	fill := max(n-next, 0)
	const writers = 4
	errs := make(chan error, writers)
	work := make(chan []domain.Change, writers)
	for range writers {
		go func() {
			var err error
			for c := range work {
				if err == nil {
					_, err = ix.Apply(ctx, c)
				}
			}
			errs <- err
		}()
	}
	for next < n {
		var batch []domain.Change
		for range min(512, n-next) {
			batch = append(batch, mk(next))
			next++
		}
		if _, err := emb.Apply(ctx, batch); err != nil {
			t.Fatal(err)
		}
		work <- batch
	}
	close(work)
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	ingest := time.Since(start)
	fmt.Printf("\nfill to %d records: %d posts (512 per call, 4 concurrent writers, embedded alongside) in %v: %.0f rows/s into Milvus and embedded together\n",
		n, fill, ingest.Round(time.Second), float64(fill)/ingest.Seconds())

	// Seal and index everything, so that the ann plan searches IVF lists.
	start = time.Now()
	for _, coll := range []string{ix.l.records.name, ix.l.code.name} {
		task, err := ix.c.Flush(ctx, milvusclient.NewFlushOption(coll))
		if err != nil {
			t.Fatal(err)
		}
		if err := task.Await(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for field, coll := range map[string]string{fVector: ix.l.records.name, fCode: ix.l.code.name} {
		for {
			d, err := ix.c.DescribeIndex(ctx, milvusclient.NewDescribeIndexOption(coll, field))
			if err != nil {
				t.Fatal(err)
			}
			if d.IndexedRows >= d.TotalRows && d.PendingIndexRows == 0 {
				break
			}
			time.Sleep(time.Second)
		}
	}
	fmt.Printf("flush + index build: %v\n", time.Since(start).Round(time.Second))
	n = next
	if c, err := ix.Count(ctx); err != nil || c[domain.ModalityText]+c[domain.ModalityImage] != n {
		// Bounded consistency: wait for the last writes to be visible.
		time.Sleep(6 * time.Second)
		if c, err = ix.Count(ctx); err != nil || c[domain.ModalityText]+c[domain.ModalityImage] != n {
			t.Fatalf("count %v %v, want %d", c, err, n)
		}
	}

	queries := make([]domain.VectorQuery, nq)
	for i := range queries {
		v := randVec(r, dim, centres[r.IntN(len(centres))], 0.6)
		queries[i] = domain.VectorQuery{Vector: v, Code: simhash(v, planes), K: k, Modality: mods[i%2]}
	}
	type plan struct {
		name string
		p    domain.Plan
		c    int
	}
	plans := []plan{{"exact", domain.PlanExact, 0}, {"ann", domain.PlanANN, 0}, {"hash", domain.PlanHash, 0}, {"hybrid C=256", domain.PlanHybrid, 256}, {"hybrid C=1000", domain.PlanHybrid, 1000}}
	truth := make([][]domain.Hit, nq)
	for i, q := range queries {
		q.Plan = domain.PlanExact
		if truth[i], err = emb.Search(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Printf("\nsearch at %d records, k=%d, %d queries (half text, half image; one modality each), one client, Milvus consistency Bounded\n", n, k, nq)
	fmt.Printf("%-14s %10s %10s %12s %10s %10s %12s\n", "plan", "milvus p50", "milvus p99", "milvus R@10", "embed p50", "embed p99", "embed R@10")
	for _, p := range plans {
		var lm, le []time.Duration
		var rm, re float64
		for i, q := range queries {
			q.Plan, q.Candidates = p.p, p.c
			s := time.Now()
			hm, err := ix.Search(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			lm = append(lm, time.Since(s))
			s = time.Now()
			he, err := emb.Search(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			le = append(le, time.Since(s))
			rm += recallOf(hm, truth[i])
			re += recallOf(he, truth[i])
		}
		fmt.Printf("%-14s %10s %10s %12.3f %10s %10s %12.3f\n", p.name, pct(lm, 50), pct(lm, 99), rm/nq, pct(le, 50), pct(le, 99), re/nq)
	}
	st := ix.Stats()
	fmt.Printf("\nmilvus writer: %d rounds, %d rows, %d retried calls\n", st.Rounds, st.Rows, st.Retries)
}

func pct(d []time.Duration, p int) string {
	s := slices.Clone(d)
	slices.Sort(s)
	i := min(len(s)-1, (len(s)*p+99)/100-1)
	return fmt.Sprintf("%.2fms", float64(s[max(i, 0)].Microseconds())/1000)
}
