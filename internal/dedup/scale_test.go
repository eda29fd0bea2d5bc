//go:build bench

package dedup

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/xmodal/xmodal/internal/clusters"
	"github.com/xmodal/xmodal/internal/hamming"
)

// TestDedupScale is the benchmark of bench/results/dedup.txt: the batch job
// over N synthetic planted-cluster PDQ hashes (clusters of Zipf-distributed
// sizes whose members lie within 8 bits of their centre, a fifth exact
// copies, plus unrelated hashes) at radius 31 on 2 workers, unbounded and with a memory bound,
// interleaved in rounds with the FAISS peer (tools/bench_dedup_peer.py:
// IndexBinaryFlat range search on a sample of the codes, extrapolated, then
// scipy connected components). It checks the peer's pairs against its own,
// and that the incremental clusters (clusters.Store in bbolt, fed the first
// XMODAL_DEDUPBENCH_INCR posts in batches) give the job's partition on them.
// A test gated by an environment variable: it prepares a million hashes once
// and alternates with another process.
//
//	XMODAL_DEDUPBENCH_DIR     data files (required)
//	XMODAL_DEDUPBENCH_N       hashes (default 1,000,000)
//	XMODAL_DEDUPBENCH_ROUNDS  rounds (default 2)
//	XMODAL_DEDUPBENCH_MEMMB   the memory bound of the bounded run (default 64)
//	XMODAL_DEDUPBENCH_INCR    posts fed to the incremental clusters (default 100,000)
//	XMODAL_DEDUPBENCH_PEER    the peer command from the repository root, e.g.
//	                          ".cache/venv/bin/python tools/bench_dedup_peer.py --queries 20000"
func TestDedupScale(t *testing.T) {
	dir := os.Getenv("XMODAL_DEDUPBENCH_DIR")
	if dir == "" {
		t.Skip("set XMODAL_DEDUPBENCH_DIR to run the dedup scale benchmark (docs/clusters.md)")
	}
	env := func(k string, def int) int {
		if v, err := strconv.Atoi(os.Getenv(k)); err == nil {
			return v
		}
		return def
	}
	n, rounds, memMB, incr := env("XMODAL_DEDUPBENCH_N", 1_000_000), env("XMODAL_DEDUPBENCH_ROUNDS", 2), env("XMODAL_DEDUPBENCH_MEMMB", 64), env("XMODAL_DEDUPBENCH_INCR", 100_000)
	const radius = 31
	dir, _ = filepath.Abs(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	items, planted := scaleItems(n)
	codes := make([]byte, 0, 32*n)
	for _, it := range items {
		b := it.Sig.Bytes()
		codes = append(codes, b[:]...)
	}
	if err := os.WriteFile(filepath.Join(dir, "codes.u8"), codes, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("N=%d hashes: %d planted clusters (sizes 2..%d), %d unrelated; radius %d; GOMAXPROCS %d, %s",
		n, planted.clusters, planted.largest, planted.singles, radius, runtime.GOMAXPROCS(0), runtime.Version())
	root, _ := filepath.Abs("../..")
	var goRatios, boundRatios []float64
	var ref *clusters.UnionFind
	for r := 1; r <= rounds; r++ {
		for _, bound := range []int64{0, int64(memMB) << 20} {
			runtime.GC()
			var peak atomic.Uint64
			stop := make(chan struct{})
			go sampleHeap(&peak, stop)
			s := time.Now()
			uf, err := Components(context.Background(), items, Options{Threshold: radius, MaxIndexBytes: bound, Workers: 2})
			took := time.Since(s)
			close(stop)
			if err != nil {
				t.Fatal(err)
			}
			comps := countComponents(uf)
			t.Logf("round %d xmodal dedup (bound %s): %v, peak Go heap %d MB (the %d hashes themselves: %d MB), %d clusters of two or more",
				r, memLabel(bound), took.Round(time.Millisecond), peak.Load()>>20, n, (int64(n)*int64(32+16+24))>>20, comps)
			if ref == nil {
				ref = uf
			} else if !sameComponents(ref, uf) {
				t.Fatal("runs gave different partitions")
			}
			if bound == 0 {
				goRatios = append(goRatios, took.Seconds())
			} else {
				boundRatios = append(boundRatios, took.Seconds())
			}
		}
		if peer := os.Getenv("XMODAL_DEDUPBENCH_PEER"); peer != "" {
			pairs := filepath.Join(dir, "pairs.i32")
			cmd := exec.Command("bash", "-c", peer+" --dir "+dir+" --radius "+strconv.Itoa(radius)+" --pairs "+pairs)
			cmd.Dir = root
			cmd.Stderr = os.Stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("peer: %v", err)
			}
			var res struct {
				Queries      int     `json:"queries"`
				Extrapolated float64 `json:"extrapolated_s"`
			}
			if err := json.Unmarshal(out, &res); err != nil {
				t.Fatalf("peer said %q: %v", out, err)
			}
			t.Logf("round %d FAISS peer: %s", r, out)
			goRatios[len(goRatios)-1] = res.Extrapolated / goRatios[len(goRatios)-1]
			boundRatios[len(boundRatios)-1] = res.Extrapolated / boundRatios[len(boundRatios)-1]
			if r == 1 {
				checkPeerPairs(t, items, pairs, res.Queries, radius)
			}
		}
	}
	if os.Getenv("XMODAL_DEDUPBENCH_PEER") != "" {
		t.Logf("FAISS (extrapolated) / xmodal time: median %s unbounded, %s with a %d MB bound", medianSpread(goRatios), medianSpread(boundRatios), memMB)
	}
	incrementalSame(t, items[:min(incr, n)], radius)
}

func memLabel(b int64) string {
	if b == 0 {
		return "none"
	}
	return fmt.Sprintf("%d MB", b>>20)
}

func medianSpread(xs []float64) string {
	s := slices.Clone(xs)
	slices.Sort(s)
	return fmt.Sprintf("%.1fx (rounds %.1f..%.1f, n=%d)", s[len(s)/2], s[0], s[len(s)-1], len(s))
}

func sampleHeap(peak *atomic.Uint64, stop chan struct{}) {
	var ms runtime.MemStats
	for {
		runtime.ReadMemStats(&ms)
		if ms.HeapInuse > peak.Load() {
			peak.Store(ms.HeapInuse)
		}
		select {
		case <-stop:
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

type plantedStats struct{ clusters, largest, singles int }

// scaleItems plants clusters with Zipf-distributed sizes (2..302, s=1.5)
// covering about half the hashes, a fifth of their members exact copies of
// the centre and the rest within 8 bits of it; the other half are unrelated.
func scaleItems(n int) ([]Item, plantedStats) {
	rng := rand.New(rand.NewPCG(2026, 12))
	z := rand.NewZipf(rand.New(rand.NewPCG(7, 7)), 1.5, 1, 300)
	var st plantedStats
	items := make([]Item, 0, n)
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	rnd := func() hamming.Code { return hamming.Code{rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()} }
	for len(items) < n/2 {
		size := min(int(z.Uint64())+2, n/2-len(items))
		if size < 2 {
			break
		}
		c := rnd()
		for i := range size {
			m := c
			if rng.IntN(5) == 0 { // an exact copy
				items = append(items, Item{Post: fmt.Sprintf("c%07d-%d", st.clusters, i), At: t0 + rng.Int64N(86400e9), Sig: m})
				continue
			}
			for range rng.IntN(9) {
				b := rng.IntN(256)
				m[b/64] ^= 1 << (b % 64)
			}
			items = append(items, Item{Post: fmt.Sprintf("c%07d-%d", st.clusters, i), At: t0 + rng.Int64N(86400e9), Sig: m})
		}
		st.clusters++
		st.largest = max(st.largest, size)
	}
	for len(items) < n {
		items = append(items, Item{Post: fmt.Sprintf("s%07d", st.singles), At: t0 + rng.Int64N(86400e9), Sig: rnd()})
		st.singles++
	}
	rng.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	return items, st
}

func countComponents(uf *clusters.UnionFind) int {
	n := 0
	for i := range uf.Len() {
		if uf.Find(i) == i && uf.Size(i) >= 2 {
			n++
		}
	}
	return n
}

func sameComponents(a, b *clusters.UnionFind) bool {
	ca, cb := a.Components(), b.Components()
	return slices.Equal(ca, cb)
}

// checkPeerPairs compares the peer's pairs for its queries with an exact
// search of the same queries.
func checkPeerPairs(t *testing.T, items []Item, path string, q, radius int) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	peer := map[[2]int32]bool{}
	for i := 0; i+8 <= len(b); i += 8 {
		peer[[2]int32{int32(binary.LittleEndian.Uint32(b[i:])), int32(binary.LittleEndian.Uint32(b[i+4:]))}] = true
	}
	ix, _ := hamming.New(hamming.Options{DeferMaintenance: true})
	ids := make([]uint64, len(items))
	cs := make([]hamming.Code, len(items))
	for i := range items {
		ids[i], cs[i] = uint64(i), items[i].Sig
	}
	ix.AddBatch(ids, cs)
	ix.Build(nil)
	ours := 0
	var buf []hamming.Match
	for i := 0; i < q; i++ {
		buf, _ = ix.Search([]hamming.Code{items[i].Sig}, radius, buf[:0])
		for _, m := range buf {
			ours++
			if !peer[[2]int32{int32(i), int32(m.ID)}] {
				t.Fatalf("query %d: match %d (distance %d) missing from the peer's pairs", i, m.ID, m.Distance)
			}
		}
	}
	if ours != len(peer) {
		t.Fatalf("the peer found %d pairs for its %d queries, xmodal %d", len(peer), q, ours)
	}
	t.Logf("the peer's %d pairs for its %d queries are exactly xmodal's", ours, q)
}

// incrementalSame feeds the posts to the incremental clusters and checks
// that they give the batch job's partition.
func incrementalSame(t *testing.T, items []Item, radius int) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"), 0o644, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(clusters.Init); err != nil {
		t.Fatal(err)
	}
	l, _ := clusters.NewPDQLinker(radius)
	var s *clusters.Store
	if err := db.View(func(tx *bolt.Tx) (err error) { s, err = clusters.Open(tx, clusters.Options{Linker: l}); return }); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for lo := 0; lo < len(items); lo += 5000 {
		batch := items[lo:min(lo+5000, len(items))]
		if err := s.Update(db, func(tx *clusters.Txn) error {
			for _, it := range batch {
				b := it.Sig.Bytes()
				if _, err := tx.Join(it.Post, time.Unix(0, it.At), b[:]); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(start)
	uf, err := Components(context.Background(), items, Options{Threshold: radius, Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if d := Drift(items, uf, s.Partition()); d != 0 {
		t.Fatalf("the incremental clusters group %d of %d posts differently from the batch job", d, len(items))
	}
	t.Logf("incremental clusters (bbolt, batches of 5,000, no fsync): %d posts in %v (%.0f posts/s); same partition as the batch job (drift 0); merges %d",
		len(items), took.Round(time.Millisecond), float64(len(items))/took.Seconds(), s.Stats().Merges)
}
