//go:build linux && bench

package banks

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/internal/hamming"
)

// TestBanksBench is the benchmark of bench/results/banks.txt
// (docs/moderation.md): loading a snapshot of a 10 million entry PDQ bank
// on 2 cores (time, memory), image lookups against it through
// State.Match, and lookups against a bank of 10,000 written concepts.
// Gated by an environment variable because it builds 10 million entries:
//
//	XMODAL_BANKSBENCH_DIR  where to write the snapshot (required)
//	XMODAL_BANKSBENCH_N    PDQ entries (default 10,000,000)
//	XMODAL_BANKSBENCH_Q    lookups (default 2,000)
//	XMODAL_BANKSBENCH_HEAPPROFILE  where to write a heap profile taken
//	                       after the load (optional)
func TestBanksBench(t *testing.T) {
	dir := os.Getenv("XMODAL_BANKSBENCH_DIR")
	if dir == "" {
		t.Skip("set XMODAL_BANKSBENCH_DIR to run the banks benchmark (docs/moderation.md)")
	}
	n := benchEnv("XMODAL_BANKSBENCH_N", 10_000_000)
	nq := benchEnv("XMODAL_BANKSBENCH_Q", 2000)
	logf := func(format string, a ...any) {
		fmt.Printf("[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(dir, 0o755))
	logf("%d PDQ entries, %d lookups, %s", n, nq, runtime.Version())

	// A snapshot of one bank: 90% uniform random hashes, 10% in clusters
	// of near-duplicates (within 24 bits of their centre).
	rng := rand.New(rand.NewPCG(23, 23))
	path := filepath.Join(dir, "banks.snapshot")
	hashes := make([]pdq.Hash, n)
	{
		t0 := time.Now()
		b := newBankState(Bank{Name: "hma", Enabled: true, Labels: []string{"bench"}}.WithDefaults())
		b.cfg.CreatedAt, b.cfg.UpdatedAt = t0.UTC(), t0.UTC()
		b.metaIndex(meta{tags: []string{"imported"}, source: "bench", addedBy: "bench"})
		b.recs = make([]rec, n)
		// The pdq values are held by the PDQ index (by slot).
		slots := make([]uint64, n)
		codes := make([]hamming.Code, n)
		// Entries are distinct signals (a bank holds a signal once).
		var cluster map[pdq.Hash]bool
		for i := range n {
			if i < n/10 {
				if i%50 == 0 {
					hashes[i] = randomHash(rng)
					cluster = map[pdq.Hash]bool{hashes[i]: true}
				} else {
					for {
						hashes[i] = flipRandom(rng, hashes[i-i%50], 1+rng.IntN(24))
						if !cluster[hashes[i]] {
							break
						}
					}
					cluster[hashes[i]] = true
				}
			} else {
				hashes[i] = randomHash(rng)
			}
			slots[i] = uint64(i)
			codes[i], _ = hamming.FromBytes(hashes[i][:])
			b.recs[i] = rec{addedAt: t0.UnixNano() + int64(i)*1e6, kind: kindPDQ, flags: flagLive}
		}
		b.pdqIndex().AddBatch(slots, codes)
		b.counts[kindPDQ] = n
		s := NewState()
		s.banks["hma"] = b
		f, err := os.Create(path)
		must(err)
		must(s.WriteSnapshot(f))
		must(f.Close())
		st, err := os.Stat(path)
		must(err)
		logf("wrote a snapshot of %d entries: %.0f MB (%.1f bytes/entry) in %s", n, float64(st.Size())/1e6, float64(st.Size())/float64(n), time.Since(t0).Round(time.Millisecond))
	}
	runtime.GC()

	// Load on 2 cores, with progress logged.
	prev := runtime.GOMAXPROCS(2)
	defer runtime.GOMAXPROCS(prev)
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	f, err := os.Open(path)
	must(err)
	t0 := time.Now()
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	s, err := ReadSnapshot(f, ReadOptions{Logger: log})
	must(err)
	load := time.Since(t0)
	f.Close()
	runtime.GC()
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	heap := float64(ms1.HeapInuse) - float64(ms0.HeapInuse)
	logf("loaded %d entries in %s on 2 cores (GOMAXPROCS=2); heap %.0f MB = %.0f bytes/entry (the hashes themselves: 32); process RSS %.0f MB",
		n, load.Round(time.Millisecond), heap/1e6, heap/float64(n), rssMB())
	debug.FreeOSMemory()
	logf("after debug.FreeOSMemory: process RSS %.0f MB (%.0f MB of it in transparent huge pages)", rssMB(), hugeMB())
	if p := os.Getenv("XMODAL_BANKSBENCH_HEAPPROFILE"); p != "" {
		hf, err := os.Create(p)
		must(err)
		must(pprof.WriteHeapProfile(hf))
		must(hf.Close())
	}
	{
		// Writing the loaded state's snapshot (a process does so under the
		// state's read lock: Apply waits meanwhile).
		t0 := time.Now()
		must(s.WriteSnapshot(io.Discard))
		logf("wrote the loaded state's snapshot (to io.Discard) in %s", time.Since(t0).Round(time.Millisecond))
	}

	// Image lookups on one core: 8 codes each, one of them 0..40 bits
	// from an entry (or none, for a quarter).
	runtime.GOMAXPROCS(1)
	queries := make([]Query, nq)
	for i := range queries {
		var v [8]pdq.Hash
		for j := range v {
			v[j] = randomHash(rng)
		}
		if i%4 != 3 {
			v[rng.IntN(8)] = flipRandom(rng, hashes[rng.IntN(n)], rng.IntN(41))
		}
		queries[i] = Query{PDQ: v[:]}
	}
	matched := 0
	for round := 1; round <= 2; round++ {
		wall, cpu := timeMatches(t, s, queries, &matched)
		logf("round %d: image lookup (8 PDQ codes, threshold 31) of a %d-entry bank through State.Match: wall %s; thread CPU %s; %d lookups matched",
			round, n, wall, cpu, matched)
	}

	// A bank of 10,000 written concepts (512 dimensions), image queries.
	const concepts, dim = 10_000, 512
	mustApply(t, s, createOp("concepts", func(b *Bank) { b.Thresholds.Embedding.TextImage = 0.25 }))
	var es []Entry
	for i := range concepts {
		es = append(es, Entry{Type: SignalEmbedding, Modality: "text", Value: fmt.Sprint("concept ", i), Vector: unit(rng, dim), ModelVersion: "m", AddedAt: t0})
		if len(es) == 1000 {
			mustApply(t, s, addOp("concepts", es...))
			es = nil
		}
	}
	eq := make([]Query, nq)
	for i := range eq {
		eq[i] = Query{Vector: unit(rng, dim), Modality: "image", ModelVersion: "m", Banks: []string{"concepts"}}
	}
	for round := 1; round <= 2; round++ {
		wall, cpu := timeMatches(t, s, eq, nil)
		logf("round %d: lookup of a %d-dimension image vector against %d written concepts (exact cosine): wall %s; thread CPU %s", round, dim, concepts, wall, cpu)
	}
}

func timeMatches(t *testing.T, s *State, qs []Query, matched *int) (lat, lat) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	wall := make([]float64, len(qs))
	cpu := make([]float64, len(qs))
	n := 0
	for i, q := range qs {
		w0, c0 := time.Now(), threadCPU()
		ms, err := s.Match(context.Background(), q)
		wall[i], cpu[i] = float64(time.Since(w0).Nanoseconds())/1e6, float64((threadCPU()-c0).Nanoseconds())/1e6
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) > 0 {
			n++
		}
	}
	if matched != nil {
		*matched = n
	}
	return summary(wall), summary(cpu)
}

type lat struct{ p50, p99, max, mean float64 }

func (l lat) String() string {
	return fmt.Sprintf("p50 %.3f ms, p99 %.3f ms, max %.3f ms, mean %.3f ms", l.p50, l.p99, l.max, l.mean)
}

func summary(ms []float64) lat {
	s := slices.Clone(ms)
	slices.Sort(s)
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	q := func(p float64) float64 { return s[min(len(s)-1, int(math.Ceil(p*float64(len(s))))-1)] }
	return lat{q(0.5), q(0.99), s[len(s)-1], sum / float64(len(s))}
}

func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

func rssMB() float64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, res int64
	fmt.Sscan(string(b), &size, &res)
	return float64(res*int64(os.Getpagesize())) / 1e6
}

// hugeMB is the process's anonymous memory in transparent huge pages.
func hugeMB() float64 {
	b, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "AnonHugePages:"); ok {
			var kb float64
			fmt.Sscan(rest, &kb)
			return kb / 1e3
		}
	}
	return 0
}

func benchEnv(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// BenchmarkMatchConcepts is a lookup of an image vector against 10,000
// written concepts (512 dimensions); TestBanksBench reports its
// percentiles.
func BenchmarkMatchConcepts(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 5))
	s := NewState()
	mustApply(b, s, createOp("c", func(bk *Bank) { bk.Thresholds.Embedding.TextImage = 0.25 }))
	var es []Entry
	for i := range 10_000 {
		es = append(es, Entry{Type: SignalEmbedding, Modality: "text", Value: fmt.Sprint("concept ", i), Vector: unit(rng, 512), ModelVersion: "m", AddedAt: t0})
	}
	mustApply(b, s, addOp("c", es...))
	q := Query{Vector: unit(rng, 512), Modality: "image", ModelVersion: "m"}
	for b.Loop() {
		if _, err := s.Match(context.Background(), q); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMatchBatchConcepts is a write batch's lookups: 32 vectors (image
// and text) against 10,000 written concepts of 512 dimensions, one Match
// per query (loop) against one MatchAll (batch). ns/op is per batch.
func BenchmarkMatchBatchConcepts(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 5))
	s := NewState()
	mustApply(b, s, createOp("c", func(bk *Bank) { bk.Thresholds.Embedding.TextImage, bk.Thresholds.Embedding.TextText = 0.25, 0.25 }))
	var es []Entry
	for i := range 10_000 {
		es = append(es, Entry{Type: SignalEmbedding, Modality: "text", Value: fmt.Sprint("concept ", i), Vector: unit(rng, 512), ModelVersion: "m", AddedAt: t0})
	}
	mustApply(b, s, addOp("c", es...))
	qs := make([]Query, 32)
	for i := range qs {
		qs[i] = Query{Vector: unit(rng, 512), Modality: []string{"image", "text"}[i%2], ModelVersion: "m"}
	}
	b.Run("loop", func(b *testing.B) {
		for b.Loop() {
			for _, q := range qs {
				if _, err := s.Match(context.Background(), q); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("batch", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.MatchAll(context.Background(), qs); err != nil {
				b.Fatal(err)
			}
		}
	})
}
