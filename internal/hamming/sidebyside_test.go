//go:build linux

package hamming

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xmodal/xmodal/internal/testutil"
)

// TestHammingSideBySide is the benchmark of bench/results/hamming.txt
// (docs/moderation.md): a PDQ bank of N entries (uniform random codes plus
// seeded clusters of near-duplicates), Q image lookups of 8 dihedral
// variants each at radius 31, against the linear scan and, interleaved in
// the same run, FAISS's binary multi-hash index (tools/bench_hamming_peer.py).
// It is a test gated by an environment variable rather than a testing.B
// benchmark because it prepares 10 million entries once, checks exactness
// on every query and alternates rounds with another process.
//
//	XMODAL_HAMMINGBENCH_DIR     data files and results (required)
//	XMODAL_HAMMINGBENCH_N       entries (default 10,000,000)
//	XMODAL_HAMMINGBENCH_Q       lookups (default 2,000)
//	XMODAL_HAMMINGBENCH_R       radius (default 31)
//	XMODAL_HAMMINGBENCH_CHUNKS  chunkings to compare, the first one measured
//	                            against the peers (default "0,8,16,32": 0 is
//	                            the automatic choice)
//	XMODAL_HAMMINGBENCH_ROUNDS  interleaved rounds (default 3)
//	XMODAL_HAMMINGBENCH_PEER    the peer command, run from the repository
//	                            root (for example ".cache/venv/bin/python
//	                            tools/bench_hamming_peer.py --mh-q 300");
//	                            empty: no peer
//
// Building uses 2 threads (the load target is for 2 cores); lookups one
// (GOMAXPROCS=1).
func TestHammingSideBySide(t *testing.T) {
	dir := os.Getenv("XMODAL_HAMMINGBENCH_DIR")
	if dir == "" {
		t.Skip("set XMODAL_HAMMINGBENCH_DIR to run the side-by-side Hamming benchmark (docs/moderation.md)")
	}
	dir, err := filepath.Abs(dir)
	must(t, err)
	must(t, os.MkdirAll(dir, 0o755))
	n := testutil.EnvInt(t, "XMODAL_HAMMINGBENCH_N", 10_000_000)
	nq := testutil.EnvInt(t, "XMODAL_HAMMINGBENCH_Q", 2000)
	r := testutil.EnvInt(t, "XMODAL_HAMMINGBENCH_R", 31)
	rounds := testutil.EnvInt(t, "XMODAL_HAMMINGBENCH_ROUNDS", 3)
	var chunkings []int
	for _, s := range strings.Split(envStr("XMODAL_HAMMINGBENCH_CHUNKS", "0,8,16,32"), ",") {
		m, err := strconv.Atoi(strings.TrimSpace(s))
		must(t, err)
		chunkings = append(chunkings, m)
	}
	logf := func(format string, a ...any) {
		fmt.Printf("[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
	}
	logf("N=%d entries, Q=%d lookups of 8 variants, r=%d, %s, GOMAXPROCS 2 to build and 1 to search", n, nq, r, runtime.Version())

	codes, queries, kinds := benchData(t, dir, n, nq, logf)

	// Truth: the linear scan of every lookup, on two threads.
	prev := runtime.GOMAXPROCS(2)
	defer runtime.GOMAXPROCS(prev)
	t0 := time.Now()
	truth := make([][]Match, nq)
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < nq; i += 2 {
				truth[i], _ = Linear(codes, queries[i], r, nil)
			}
		}()
	}
	wg.Wait()
	logf("linear-scan truth for %d lookups in %s (2 threads)", nq, time.Since(t0).Round(time.Millisecond))
	describeTruth(truth, kinds, r, logf)

	// Each chunking: build on 2 threads, memory, exactness, one timed pass.
	type built struct {
		m  int
		ix *Index
	}
	var main built
	for i, m := range chunkings {
		runtime.GOMAXPROCS(2)
		ix, buildTime, heap := buildBench(t, codes, m, logf)
		st := ix.Stats()
		raw := float64(n) * 40
		var segChunks int
		if len(st.Segments) > 0 {
			segChunks = st.Segments[0].Chunks
		}
		logf("m=%d (chunks %d): built in %s on 2 threads; heap %.0f MB = %.2fx the raw entries (%.1f B/entry; arrays %.1f B/entry + id table %.1f B/entry)",
			m, segChunks, buildTime.Round(time.Millisecond), float64(heap)/1e6, float64(heap)/raw, float64(heap)/float64(n),
			float64(st.Bytes)/float64(n), float64(st.MapBytes)/float64(n))
		runtime.GOMAXPROCS(1)
		lat, cpu, bad := timeLookups(ix, queries, r, truth)
		if bad > 0 {
			t.Errorf("m=%d: %d of %d lookups differ from the linear scan", m, bad, nq)
		}
		logf("m=%d: exact on %d/%d lookups; %s; CPU %.3f ms/lookup", m, nq-bad, nq, lat, cpu)
		if i == 0 {
			main = built{m, ix}
		} else {
			ix = nil
			runtime.GC()
		}
	}

	// Interleaved rounds on one thread: this index, the linear scan (a
	// subset of the lookups: each takes ~100 ms), and the peer.
	runtime.GOMAXPROCS(1)
	linQ := min(nq, 30)
	var peer *peerProc
	if cmd := os.Getenv("XMODAL_HAMMINGBENCH_PEER"); cmd != "" {
		peer = startPeer(t, cmd, dir, r, linQ, logf)
		defer peer.close()
	}
	var ratiosLin, ratiosFaiss, ratiosFlat []float64
	for round := 1; round <= rounds; round++ {
		lat, cpu, bad := timeLookups(main.ix, queries, r, truth)
		if bad > 0 {
			t.Errorf("round %d: %d lookups differ from the linear scan", round, bad)
		}
		logf("round %d xmodal m=%d: %s; CPU %.3f ms/lookup", round, main.m, lat, cpu)
		c0 := cpuTime()
		w0 := time.Now()
		for i := range linQ {
			if _, err := Linear(codes, queries[i], r, nil); err != nil {
				t.Fatal(err)
			}
		}
		linWall := float64(time.Since(w0).Microseconds()) / 1000 / float64(linQ)
		linCPU := float64((cpuTime() - c0).Microseconds()) / 1000 / float64(linQ)
		logf("round %d linear scan (Go, %d lookups): %.2f ms/lookup wall, CPU %.2f ms", round, linQ, linWall, linCPU)
		ratiosLin = append(ratiosLin, linCPU/cpu)
		if peer != nil {
			res := peer.round(t, round)
			logf("round %d FAISS IndexBinaryMultiHash(256, 16, 16) nflip=1 (%s lookups): p50 %.3f ms, p99 %.3f ms, max %.3f ms, mean %.3f ms; CPU %.3f ms/lookup",
				round, res.MH.Lookups, res.MH.P50, res.MH.P99, res.MH.Max, res.MH.Mean, res.MH.CPU)
			logf("round %d FAISS IndexBinaryFlat (%d lookups): %.2f ms/lookup wall, CPU %.2f ms", round, linQ, res.Flat.Mean, res.Flat.CPU)
			ratiosFaiss = append(ratiosFaiss, res.MH.CPU/cpu)
			ratiosFlat = append(ratiosFlat, res.Flat.CPU/cpu)
		}
	}
	logf("linear scan (Go) / xmodal CPU per lookup: median %s", spread(ratiosLin))
	if peer != nil {
		logf("FAISS multi-hash / xmodal CPU per lookup: median %s", spread(ratiosFaiss))
		logf("FAISS flat (linear) / xmodal CPU per lookup: median %s", spread(ratiosFlat))
		recall, extra := peer.recall(t, dir, truth)
		logf("FAISS multi-hash against the linear-scan truth (its lookups): recall %.4f, %d matches not in the truth; xmodal: recall 1, 0 extra on all %d lookups (checked above)", recall, extra, nq)
		logf("peer: %s", peer.ready)
	}
}

// benchData reads or generates the entries and lookups: N codes, 90%
// uniform and 10% in clusters of 2 to 200 near-duplicates (within 24 bits
// of their centre); Q lookups of 8 dihedral-like variants each, of four
// kinds (see lookupKinds). Files (PDQ byte order, 32 bytes a code):
// entries.u8, queries.u8 (8 codes per lookup), kinds.txt.
func benchData(t *testing.T, dir string, n, nq int, logf func(string, ...any)) ([]Code, [][]Code, []string) {
	meta := fmt.Sprintf("n=%d q=%d seed=17 v2\n", n, nq)
	ep, qp, kp, mp := filepath.Join(dir, "entries.u8"), filepath.Join(dir, "queries.u8"), filepath.Join(dir, "kinds.txt"), filepath.Join(dir, "meta.txt")
	if b, err := os.ReadFile(mp); err == nil && string(b) == meta {
		codes := readCodes(t, ep, n)
		flat := readCodes(t, qp, nq*8)
		queries := make([][]Code, nq)
		for i := range queries {
			queries[i] = flat[8*i : 8*i+8]
		}
		kb, err := os.ReadFile(kp)
		must(t, err)
		logf("read %d entries and %d lookups from %s", n, nq, dir)
		return codes, queries, strings.Fields(string(kb))
	}
	t0 := time.Now()
	rng := rand.New(rand.NewPCG(17, 17))
	codes := make([]Code, 0, n)
	nClustered := n / 10
	var clusterMembers []int
	for len(codes) < nClustered {
		centre := randomCode(rng)
		size := min(2+int(rng.ExpFloat64()*40), 200, nClustered-len(codes))
		for range size {
			clusterMembers = append(clusterMembers, len(codes))
			codes = append(codes, flip(rng, centre, rng.IntN(25)))
		}
	}
	for len(codes) < n {
		codes = append(codes, randomCode(rng))
	}
	queries := make([][]Code, nq)
	kinds := make([]string, nq)
	for i := range queries {
		var v [8]Code
		switch k := i % 10; {
		case k < 4: // boundary: one variant 29..33 bits from an entry
			kinds[i] = "boundary"
			v = dihedralApprox(flip(rng, codes[rng.IntN(n)], 29+rng.IntN(5)))
		case k < 6: // near a cluster: 0..20 bits from a member
			kinds[i] = "cluster"
			v = dihedralApprox(flip(rng, codes[clusterMembers[rng.IntN(len(clusterMembers))]], rng.IntN(21)))
		case k < 7: // a rotated copy: the near variant is not the first
			kinds[i] = "rotated"
			v = dihedralApprox(flip(rng, codes[rng.IntN(n)], rng.IntN(32)))
			j := 1 + rng.IntN(7)
			v[0], v[j] = v[j], v[0]
		default: // unrelated
			kinds[i] = "random"
			v = dihedralApprox(randomCode(rng))
		}
		queries[i] = v[:]
	}
	writeCodes(t, ep, codes)
	var flat []Code
	for _, q := range queries {
		flat = append(flat, q...)
	}
	writeCodes(t, qp, flat)
	must(t, os.WriteFile(kp, []byte(strings.Join(kinds, "\n")+"\n"), 0o644))
	must(t, os.WriteFile(mp, []byte(meta), 0o644))
	logf("generated %d entries (%d in clusters) and %d lookups in %s", n, nClustered, nq, time.Since(t0).Round(time.Millisecond))
	return codes, queries, kinds
}

// dihedralApprox returns 8 codes standing for an image's dihedral
// variants: c and 7 codes obtained by moving PDQ's 16x16 coefficient bits
// as a rotation or mirror moves the coefficients (transposed, and flipped
// where a mirror negates them). Real variants come from the DCT; these
// have the same role in a lookup (8 codes far from each other).
func dihedralApprox(c Code) [8]Code {
	ops := [8][3]bool{{}, {true, false, true}, {false, true, true}, {true, true, false}, {false, true, false}, {false, false, true}, {true, false, false}, {true, true, true}}
	b := c.Bytes()
	bit := func(k int) bool { return b[31-k>>3]>>(k&7)&1 == 1 }
	var out [8]Code
	for i, op := range ops {
		var nb [32]byte
		for row := range 16 {
			for col := range 16 {
				sr, sc := row, col
				if op[0] {
					sr, sc = col, row
				}
				v := bit(sr*16 + sc)
				if (op[1] && row%2 == 0) != (op[2] && col%2 == 0) {
					v = !v
				}
				if v {
					k := row*16 + col
					nb[31-k>>3] |= 1 << (k & 7)
				}
			}
		}
		out[i], _ = FromBytes(nb[:])
	}
	return out
}

func describeTruth(truth [][]Match, kinds []string, r int, logf func(string, ...any)) {
	type agg struct{ lookups, withMatch, matches, atBoundary int }
	by := map[string]*agg{}
	for i, ms := range truth {
		a := by[kinds[i]]
		if a == nil {
			a = &agg{}
			by[kinds[i]] = a
		}
		a.lookups++
		if len(ms) > 0 {
			a.withMatch++
		}
		a.matches += len(ms)
		for _, m := range ms {
			if m.Distance >= r-2 {
				a.atBoundary++
			}
		}
	}
	for _, k := range []string{"boundary", "cluster", "rotated", "random"} {
		if a := by[k]; a != nil {
			logf("  %-8s lookups %4d: %4d with a match, %6d matches, %4d at distance %d..%d", k, a.lookups, a.withMatch, a.matches, a.atBoundary, r-2, r)
		}
	}
}

func buildBench(t *testing.T, codes []Code, m int, logf func(string, ...any)) (*Index, time.Duration, uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.HeapInuse
	t0 := time.Now()
	ix, err := New(Options{Chunks: m, DeferMaintenance: true, Workers: 2})
	must(t, err)
	ix.Reserve(len(codes))
	ids := make([]uint64, 0, 1<<16)
	for lo := 0; lo < len(codes); lo += 1 << 16 {
		hi := min(lo+1<<16, len(codes))
		ids = ids[:0]
		for i := lo; i < hi; i++ {
			ids = append(ids, uint64(i))
		}
		ix.AddBatch(ids, codes[lo:hi])
	}
	logf("m=%d: %d entries added in %s; building the tables", m, len(codes), time.Since(t0).Round(time.Millisecond))
	last := time.Now()
	ix.Build(func(done, total int) {
		if done == total || time.Since(last) > 5*time.Second {
			logf("m=%d: built %d/%d tables (%s)", m, done, total, time.Since(t0).Round(time.Millisecond))
			last = time.Now()
		}
	})
	d := time.Since(t0)
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ix, d, ms.HeapInuse - before
}

// timeLookups runs every lookup once, checking it against the truth, and
// returns the latency summaries (wall clock, and the CPU time of the
// thread: what the core spent on the lookup, whatever else the shared
// machine ran meanwhile), the mean CPU time of the process per lookup (ms)
// and the number of lookups whose result differs.
func timeLookups(ix *Index, queries [][]Code, r int, truth [][]Match) (lookupTimes, float64, int) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	lat := make([]time.Duration, len(queries))
	tcpu := make([]time.Duration, len(queries))
	bad := 0
	var dst []Match
	c0 := cpuTime()
	for i, q := range queries {
		t0, tc0 := time.Now(), threadCPU()
		dst, _ = ix.Search(q, r, dst[:0])
		lat[i], tcpu[i] = time.Since(t0), threadCPU()-tc0
		if !slices.Equal(dst, truth[i]) {
			bad++
		}
	}
	cpu := float64((cpuTime() - c0).Microseconds()) / 1000 / float64(len(queries))
	return lookupTimes{summarise(lat), summarise(tcpu)}, cpu, bad
}

type lookupTimes struct{ Wall, CPU latency }

func (l lookupTimes) String() string {
	return fmt.Sprintf("wall %s; thread CPU %s", l.Wall, l.CPU)
}

type latency struct{ P50, P99, Max, Mean float64 }

func (l latency) String() string {
	return fmt.Sprintf("p50 %.3f ms, p99 %.3f ms, max %.3f ms, mean %.3f ms", l.P50, l.P99, l.Max, l.Mean)
}

// threadCPU is the CPU time of the calling thread.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

func summarise(d []time.Duration) latency {
	ms := make([]float64, len(d))
	sum := 0.0
	for i, x := range d {
		ms[i] = float64(x.Nanoseconds()) / 1e6
		sum += ms[i]
	}
	slices.Sort(ms)
	q := func(p float64) float64 { return ms[min(len(ms)-1, int(math.Ceil(p*float64(len(ms))))-1)] }
	return latency{P50: q(0.5), P99: q(0.99), Max: ms[len(ms)-1], Mean: sum / float64(len(ms))}
}

// spread formats the median of ratios with their range.
func spread(x []float64) string {
	if len(x) == 0 {
		return "n/a"
	}
	s := slices.Clone(x)
	slices.Sort(s)
	return fmt.Sprintf("%.1fx (rounds: %.1f..%.1f, n=%d)", s[len(s)/2], s[0], s[len(s)-1], len(s))
}

// peerProc is tools/bench_hamming_peer.py, driven over stdin/stdout.
type peerProc struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Scanner
	ready string
}

type peerRound struct {
	MH struct {
		P50, P99, Max, Mean, CPU float64
		Lookups                  json.Number
	}
	Flat struct{ Mean, CPU float64 }
}

func startPeer(t *testing.T, command, dir string, r, linQ int, logf func(string, ...any)) *peerProc {
	args := append(strings.Fields(command), "--dir", dir, "--radius", strconv.Itoa(r), "--flat-q", strconv.Itoa(linQ))
	cmd := exec.Command(args[0], args[1:]...)
	root, err := testutil.RepoRoot()
	must(t, err)
	cmd.Dir = root // the command is relative to the repository root
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	must(t, err)
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	p := &peerProc{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	p.out.Buffer(nil, 1<<24)
	logf("peer started: %s", strings.Join(args, " "))
	p.ready = p.line(t)
	logf("peer ready: %s", p.ready)
	return p
}

func (p *peerProc) line(t *testing.T) string {
	if !p.out.Scan() {
		t.Fatalf("the peer exited: %v", p.out.Err())
	}
	return p.out.Text()
}

func (p *peerProc) round(t *testing.T, k int) peerRound {
	_, err := fmt.Fprintf(p.in, "round %d\n", k)
	must(t, err)
	var res peerRound
	must(t, json.Unmarshal([]byte(p.line(t)), &res))
	return res
}

// recall asks the peer for its results and compares them with the truth.
func (p *peerProc) recall(t *testing.T, dir string, truth [][]Match) (float64, int) {
	path := filepath.Join(dir, "faiss-results.jsonl")
	_, err := fmt.Fprintf(p.in, "results %s\n", path)
	must(t, err)
	p.line(t)
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<26)
	found, total, extra := 0, 0, 0
	i := 0
	for sc.Scan() {
		var row struct {
			IDs   []uint64 `json:"ids"`
			Dists []int    `json:"dists"`
		}
		must(t, json.Unmarshal(sc.Bytes(), &row))
		got := map[uint64]int{}
		for j, id := range row.IDs {
			if d, ok := got[id]; !ok || row.Dists[j] < d {
				got[id] = row.Dists[j]
			}
		}
		for _, m := range truth[i] {
			total++
			if d, ok := got[m.ID]; ok && d == m.Distance {
				found++
			}
			delete(got, m.ID)
		}
		extra += len(got)
		i++
	}
	must(t, sc.Err())
	if i == 0 || i > len(truth) {
		t.Fatalf("peer results: %d lookups, want 1..%d", i, len(truth))
	}
	if total == 0 {
		return 1, extra
	}
	return float64(found) / float64(total), extra
}

func (p *peerProc) close() {
	fmt.Fprintln(p.in, "quit")
	p.in.Close()
	p.cmd.Wait()
}

func readCodes(t *testing.T, path string, n int) []Code {
	b, err := os.ReadFile(path)
	must(t, err)
	if len(b) != 32*n {
		t.Fatalf("%s: %d bytes, want %d", path, len(b), 32*n)
	}
	out := make([]Code, n)
	for i := range out {
		out[i], _ = FromBytes(b[32*i : 32*i+32])
	}
	return out
}

func writeCodes(t *testing.T, path string, codes []Code) {
	f, err := os.Create(path)
	must(t, err)
	w := bufio.NewWriterSize(f, 1<<20)
	for _, c := range codes {
		b := c.Bytes()
		_, err := w.Write(b[:])
		must(t, err)
	}
	must(t, w.Flush())
	must(t, f.Close())
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func envStr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// cpuTime is the CPU time (user + system) of the process: steadier than
// wall time on a shared machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
