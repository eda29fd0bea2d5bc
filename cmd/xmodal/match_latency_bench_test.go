//go:build bench

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/internal/vecmath"
	"github.com/xmodal/xmodal/sink/matching"
)

// loadBenchBanks gives a's bank store a review bank "hashes" of nPDQ random
// PDQ hashes and a bank "concepts" of nConcepts random written concepts of
// the model (thresholds high enough that random vectors never match), the
// banks of #18's targets. XMODAL_BANKS_DIHEDRAL sets the PDQ bank's
// pdq_dihedral (default: the bank default, fast).
func loadBenchBanks(t *testing.T, a *app, nPDQ, nConcepts int) {
	t.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(18, 1))
	do := func(op banks.Op) {
		if _, err := a.banks.Do(ctx, op); err != nil {
			t.Fatal(err)
		}
	}
	at := time.Now().UTC()
	do(banks.Op{Version: banks.OpVersion, Kind: banks.OpCreateBank, Bank: "hashes", At: at, Actor: "bench",
		Config: &banks.Bank{Name: "hashes", Enabled: true, Action: banks.ActionReview, PDQDihedral: banks.DihedralMode(os.Getenv("XMODAL_BANKS_DIHEDRAL"))}})
	cb := &banks.Bank{Name: "concepts", Enabled: true, Action: banks.ActionReview}
	cb.Thresholds.Embedding.TextImage, cb.Thresholds.Embedding.TextText = 0.95, 0.95
	do(banks.Op{Version: banks.OpVersion, Kind: banks.OpCreateBank, Bank: "concepts", At: at, Actor: "bench", Config: cb})
	for _, part := range []struct {
		bank string
		n    int
		make func(i int) banks.Entry
	}{
		{"hashes", nPDQ, func(int) banks.Entry {
			var h [32]byte
			for j := range h {
				h[j] = byte(rng.Uint32())
			}
			return banks.Entry{Type: banks.SignalPDQ, Value: fmt.Sprintf("%x", h[:]), AddedAt: at}
		}},
		{"concepts", nConcepts, func(i int) banks.Entry {
			return banks.Entry{Type: banks.SignalEmbedding, Modality: "text", Value: fmt.Sprintf("concept %d", i),
				Vector: vecmath.RandomUnit(rng, a.model.Dim()), ModelVersion: a.model.Version(), AddedAt: at}
		}},
	} {
		b := &banks.OpBatcher{Bank: part.bank, Actor: "bench", At: at}
		for i := range part.n {
			op, err := b.Add(part.make(i))
			if err != nil {
				t.Fatal(err)
			}
			if op != nil {
				do(*op)
			}
		}
		if op := b.Flush(); op != nil {
			do(*op)
		}
	}
}

// startBenchApp starts `xmodal run` on the demo model in this process, with
// its embedded NATS on a free port and no HTTP, data in dir, and the
// configuration changed by each of opts; it runs until the test ends.
func startBenchApp(t *testing.T, dir string, opts ...func(*Config)) *app {
	t.Helper()
	ctx := context.Background()
	cfg := DefaultConfig()
	cfg.DataDir = dir
	cfg.NATS.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = ""
	cfg.Model = filepath.Join(testutil.MustRepoRoot(t), "testdata", "models", "demo")
	for _, o := range opts {
		o(cfg)
	}
	a, err := startApp(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		a.Close()
	})
	return a
}

// benchEnvInt is the integer in the environment variable k, or def.
func benchEnvInt(k string, def int) int {
	var v int
	if _, err := fmt.Sscan(os.Getenv(k), &v); err == nil {
		return v
	}
	return def
}

// TestMatchEventLatency is the benchmark of bench/results/match-latency.txt
// (#18's target: ingest-to-event latency p99 <= 1 s at the default encode
// batching). One `xmodal run` in this process on the demo model with its
// embedded NATS, default configuration, the banks of #18's throughput
// target (1 million random PDQ hashes, 10,000 written concepts) plus a
// review bank "known" holding three demo photos (added with `xmodal bank
// add --image`) and a few texts. An open-loop publisher sends a mix of text
// and image posts at a fixed rate; some are copies of the known photos or
// texts. The latency of a matching post runs from its scheduled send time
// (so a publisher that falls behind does not hide queueing) to the first
// of its match events arriving at a core NATS subscriber of
// xmodal.events.v1.match.>, i.e. after the event is durable in JetStream.
// Built with -tags bench:
//
//	XMODAL_MATCHLATENCY=1            run it
//	XMODAL_MATCHLATENCY_RATES        posts/s, comma-separated (default 200,500)
//	XMODAL_MATCHLATENCY_SECONDS      seconds per rate (default 20)
//	XMODAL_MATCHLATENCY_PDQ          random PDQ entries (default 1,000,000)
//	XMODAL_MATCHLATENCY_CONCEPTS     random concepts (default 10,000)
func TestMatchEventLatency(t *testing.T) {
	if os.Getenv("XMODAL_MATCHLATENCY") != "1" {
		t.Skip("set XMODAL_MATCHLATENCY=1 to run the ingest-to-event latency benchmark")
	}
	requireORT(t)
	rates := []int{200, 500}
	if s := os.Getenv("XMODAL_MATCHLATENCY_RATES"); s != "" {
		rates = nil
		for _, f := range strings.Split(s, ",") {
			var r int
			if _, err := fmt.Sscan(f, &r); err != nil || r <= 0 {
				t.Fatalf("XMODAL_MATCHLATENCY_RATES: %q", s)
			}
			rates = append(rates, r)
		}
	}
	seconds := benchEnvInt("XMODAL_MATCHLATENCY_SECONDS", 20)
	nPDQ, nConcepts := benchEnvInt("XMODAL_MATCHLATENCY_PDQ", 1_000_000), benchEnvInt("XMODAL_MATCHLATENCY_CONCEPTS", 10_000)
	root := testutil.MustRepoRoot(t)
	ctx := context.Background()

	a := startBenchApp(t, t.TempDir())
	url := a.ns.ClientURL()
	start := time.Now()
	loadBenchBanks(t, a, nPDQ, nConcepts)
	imgs, err := filepath.Glob(filepath.Join(root, "testdata", "demo", "images", "*.jpg"))
	if err != nil || len(imgs) < 6 {
		t.Fatalf("demo images: %d, %v", len(imgs), err)
	}
	slices.Sort(imgs)
	knownTexts := []string{"Buy followers now", "free crypto giveaway click here", "known scam text number three"}
	args := []string{"add", "known"}
	for _, f := range imgs[:3] {
		args = append(args, "--image", f)
	}
	for _, s := range knownTexts {
		args = append(args, "--text", s)
	}
	mustBank(t, url, "create", "known", "--action", "review")
	mustBank(t, url, args...)
	t.Logf("banks loaded in %v: %d random PDQ entries, %d concepts, 3 known photos and %d known texts", time.Since(start).Round(time.Millisecond),
		nPDQ, nConcepts, len(knownTexts))
	pics := make([][]byte, len(imgs))
	for i, f := range imgs {
		if pics[i], err = os.ReadFile(f); err != nil {
			t.Fatal(err)
		}
	}

	// Events, as a consumer sees them.
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	seen := map[string]time.Time{}
	sub, err := nc.Subscribe(matching.SubjectPrefix+".>", func(m *nats.Msg) {
		at := time.Now()
		var e matching.Event
		if json.Unmarshal(m.Data, &e) != nil {
			return
		}
		mu.Lock()
		if _, ok := seen[e.PostID]; !ok {
			seen[e.PostID] = at
		}
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(a.nc)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(18, 2))
	created := time.Now().UTC().Add(-time.Hour).Format(time.RFC3339)
	for ri, rate := range rates {
		n := rate * seconds
		sched := map[string]time.Time{}
		interval := time.Second / time.Duration(rate)
		t0 := time.Now().Add(50 * time.Millisecond)
		images := 0
		for i := range n {
			id := fmt.Sprintf("r%d-%06d", ri, i)
			p := map[string]any{"schema": 1, "id": id, "created_at": created}
			match := rng.IntN(20) == 0 // 5 % of posts copy known content
			if rng.IntN(5) == 0 {      // 20 % image posts
				images++
				k := 3 + rng.IntN(len(pics)-3)
				if match {
					k = rng.IntN(3)
				}
				p["image"] = map[string]any{"data": pics[k], "mime": "image/jpeg"}
				p["text"] = fmt.Sprintf("photo %d", i)
			} else if match {
				p["text"] = knownTexts[rng.IntN(len(knownTexts))] + "!"
			} else {
				p["text"] = fmt.Sprintf("post %d of round %d about topic %d and the weather", i, ri, i%97)
			}
			body, _ := json.Marshal(p)
			at := t0.Add(time.Duration(i) * interval)
			if d := time.Until(at); d > 0 {
				time.Sleep(d)
			}
			if match {
				sched[id] = at
			}
			if err := ingest.Publish(ctx, js, "xmodal.posts", id, body); err != nil {
				t.Fatal(err)
			}
		}
		sent := time.Since(t0)
		// Every matching post's event, or a deadline.
		testutil.CheckFor(t, 2*time.Minute, 20*time.Millisecond, func() error {
			mu.Lock()
			defer mu.Unlock()
			missing := 0
			for id := range sched {
				if _, ok := seen[id]; !ok {
					missing++
				}
			}
			if missing > 0 {
				return fmt.Errorf("%d of %d matching posts have no event yet", missing, len(sched))
			}
			return nil
		})
		var lat []float64
		mu.Lock()
		for id, at := range sched {
			lat = append(lat, seen[id].Sub(at).Seconds()*1000)
		}
		mu.Unlock()
		slices.Sort(lat)
		q := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
		t.Logf("rate %d posts/s (%d posts, %d images, sent in %v): %d matching posts, ingest-to-event latency p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms",
			rate, n, images, sent.Round(time.Millisecond), len(lat), q(0.5), q(0.9), q(0.99), lat[len(lat)-1])
	}
}

// ingestTime publishes msgs (id, post) to a's stream and waits, up to
// limit, for its consumer to have nothing pending (every post indexed and
// acknowledged); it returns the time taken.
func ingestTime(t *testing.T, a *app, msgs [][2][]byte, limit time.Duration) time.Duration {
	t.Helper()
	ctx := context.Background()
	js, err := jetstream.New(a.nc)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	for _, m := range msgs {
		if err := ingest.Publish(ctx, js, "xmodal.posts", string(m[0]), m[1]); err != nil {
			t.Fatal(err)
		}
	}
	testutil.CheckFor(t, limit, 20*time.Millisecond, func() error {
		cons, err := js.Consumer(ctx, "XMODAL_POSTS", "indexer")
		if err != nil {
			return err
		}
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Errorf("%d pending, %d unacknowledged", info.NumPending, info.NumAckPending)
		}
		return nil
	})
	return time.Since(t0)
}
