package milvus

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/sink/conformance"
)

// These tests stop the shared test server and start it again on the same data.

// reopen opens the index again after a server restart (the server may take a while
// to load its collections).
func reopen(t *testing.T, opt Options) *Index {
	t.Helper()
	opt.StartTimeout = 2 * time.Minute
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ix, err := Open(context.Background(), opt)
		if err == nil {
			return ix
		}
		if time.Now().After(deadline) {
			t.Fatalf("reopening after the restart: %v", err)
		}
		t.Logf("reopening after the restart: %v (retrying)", err)
		time.Sleep(2 * time.Second)
	}
}

func posts(from, n int, seed uint64) []domain.Change {
	r := rand.New(rand.NewPCG(seed, uint64(from)))
	out := make([]domain.Change, n)
	for i := range out {
		id := fmt.Sprintf("r%05d", from+i)
		out[i] = domain.Change{PostID: id, Seq: 1, Records: []domain.Record{
			conformance.Record(id, domain.ModalityText, conformance.Unit(r), "a", time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), nil),
			conformance.Record(id, domain.ModalityImage, conformance.Unit(r), "a", time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), nil),
		}}
	}
	return out
}

// checkAll checks that exactly the posts [0, n) are present, each once, with both
// records, and that the deny-listed ones are denied.
func checkAll(t *testing.T, ix *Index, n int, denied []string) {
	t.Helper()
	ctx := context.Background()
	// The server loads collections after a restart and answers "not loaded" meanwhile.
	testutil.Eventually(t, 3*time.Minute, func() error {
		c, err := ix.Count(ctx)
		if err != nil {
			return fmt.Errorf("count after the restart: %w", err)
		}
		if c[domain.ModalityText] != n || c[domain.ModalityImage] != n || len(c) != 2 {
			return fmt.Errorf("count %v, want %d texts and %d images (each post once)", c, n, n)
		}
		return nil
	})
	pks := make([]string, 0, 2*n)
	for i := range n {
		id := fmt.Sprintf("r%05d", i)
		pks = append(pks, domain.PrimaryKey(id, domain.ModalityText), domain.PrimaryKey(id, domain.ModalityImage))
	}
	recs, err := ix.Get(ctx, pks)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(pks) {
		t.Fatalf("Get found %d of %d acknowledged records", len(recs), len(pks))
	}
	for _, id := range denied {
		if d, err := ix.IsDenied(ctx, id); err != nil || !d {
			t.Fatalf("IsDenied(%s) = %v, %v after the restart; want true", id, d, err)
		}
	}
}

// TestAcknowledgedWritesSurviveSIGKILL probes the test server: writes that Apply
// acknowledged must be there after the server is killed with SIGKILL and started
// again on the same data (Milvus acknowledges once the write is in its WAL —
// RocksMQ on local disk for this standalone server; see docs/milvus.md).
func TestAcknowledgedWritesSurviveSIGKILL(t *testing.T) {
	opt := testOptions(t, conformance.Dim)
	ix := openTest(t, opt)
	const n = 150
	for from := 0; from < n; from += 50 {
		mustApply(t, ix, posts(from, 50, 1)...)
	}
	extra := posts(n, 1, 1)
	mustApply(t, ix, extra...)
	mustApply(t, ix, domain.Change{PostID: extra[0].PostID, Delete: true, Deny: true})
	ix.Close()

	server.halt(t, "kill")
	server.start(t)

	ix2 := reopen(t, opt)
	defer ix2.Close()
	checkAll(t, ix2, n, []string{extra[0].PostID})
	if out := mustApply(t, ix2, extra[0]); out[0] != domain.Denied {
		t.Fatalf("the deny-list did not survive SIGKILL: re-indexing gave %q", out[0])
	}
	t.Logf("all %d acknowledged posts, the delete and the deny-list entry survived SIGKILL", n)
}

// TestRestartMidIngest stops Milvus while a writer ingests and starts it again on
// the same data: writes pause (Apply returns errors after its bounded retries, and
// the writer redelivers, as the pipeline does), nothing acknowledged is lost, and
// afterwards every post is present once.
func TestRestartMidIngest(t *testing.T) {
	opt := testOptions(t, conformance.Dim)
	opt.Retries = 3
	opt.RetryMaxBackoff = time.Second
	opt.CallTimeout = 10 * time.Second
	ix := openTest(t, opt)
	const batches, size = 40, 10
	var acked, failures atomic.Int64
	var longest atomic.Int64
	done := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(5 * time.Minute)
		for b := range batches {
			chs := posts(b*size, size, 2)
			start := time.Now()
			for {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				_, err := ix.Apply(ctx, chs)
				cancel()
				if err == nil {
					break
				}
				failures.Add(1)
				if time.Now().After(deadline) {
					done <- fmt.Errorf("batch %d never acknowledged: %v", b, err)
					return
				}
				time.Sleep(500 * time.Millisecond) // the pipeline's redelivery
			}
			if d := time.Since(start); int64(d) > longest.Load() {
				longest.Store(int64(d))
			}
			acked.Add(1)
			time.Sleep(50 * time.Millisecond)
		}
		done <- nil
	}()
	for acked.Load() < 5 {
		time.Sleep(50 * time.Millisecond)
	}
	before := acked.Load()
	server.halt(t, "stop")
	down := time.Now()
	time.Sleep(3 * time.Second)
	during := acked.Load()
	server.start(t)
	t.Logf("Milvus down for %v; batches acked before %d, while down %d", time.Since(down).Round(time.Second), before, during-before)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if during > before+1 { // at most the one in flight when the stop began
		t.Errorf("%d batches were acknowledged while Milvus was down", during-before)
	}
	t.Logf("failed Apply calls during the outage: %d; longest wait for one batch: %v", failures.Load(), time.Duration(longest.Load()).Round(time.Millisecond))
	if failures.Load() == 0 && time.Duration(longest.Load()) < 3*time.Second {
		t.Error("ingestion did not pause while Milvus was down")
	}
	checkAll(t, ix, batches*size, nil)
}
