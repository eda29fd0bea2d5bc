//go:build bench

package embedded

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/hash"
	"github.com/xmodal/xmodal/internal/testutil"
)

// The side-by-side benchmark of docs/hashing.md (tools/bench_faiss.py runs
// it, then FAISS on the same files). It is a measurement harness behind the
// `bench` build tag (go test -tags bench), not a test and not a testing.B
// benchmark, because it prepares data once,
// measures several things on it, and writes their results for the FAISS
// side to compare:
//
//	XMODAL_HASHBENCH_DIR  where to write the data files and go.json (required)
//	XMODAL_HASHBENCH_N    database size (default 1,000,000)
//	XMODAL_HASHBENCH_Q    queries (default 100)
//
// Run it with GOMAXPROCS=1 (one thread). Data: clustered synthetic vectors
// (synthClustered) in 512 dimensions, the database of modality image, the
// queries of modality text (another modality offset), coded by ITQ fitted on
// a sample of both; 64- and 256-bit codes.
func TestHashBenchSideBySide(t *testing.T) {
	dir := os.Getenv("XMODAL_HASHBENCH_DIR")
	if dir == "" {
		t.Fatal("set XMODAL_HASHBENCH_DIR to run the side-by-side hash benchmark (tools/bench_faiss.py does)")
	}
	dir, err := filepath.Abs(dir)
	must(t, err)
	must(t, os.MkdirAll(dir, 0o755))
	n := testutil.EnvInt(t, "XMODAL_HASHBENCH_N", 1_000_000)
	nq := testutil.EnvInt(t, "XMODAL_HASHBENCH_Q", 100)
	const dim = 512
	res := map[string]any{"n": n, "q": nq, "dim": dim, "go": runtime.Version()}
	logf := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, a...))
	}

	phase := os.Getenv("XMODAL_HASHBENCH_PHASE") // prepare, measure, or both ("")
	if phase != "measure" {
		prepareHashBench(t, dir, n, nq, dim, logf)
		if phase == "prepare" {
			return
		}
	}
	db, err := readF32(filepath.Join(dir, "db.f32"), n*dim)
	must(t, err)
	qs, err := readF32(filepath.Join(dir, "q.f32"), nq*dim)
	must(t, err)
	codes, qcodes := map[int][]byte{}, map[int][]byte{}
	for _, bits := range []int{64, 256} {
		codes[bits], err = readBytes(filepath.Join(dir, fmt.Sprintf("db%d.u8", bits)), n*bits/8)
		must(t, err)
		qcodes[bits], err = readBytes(filepath.Join(dir, fmt.Sprintf("q%d.u8", bits)), nq*bits/8)
		must(t, err)
	}
	logf("read the data files from %s", dir)

	// Data are ready: measure on one thread. Every time is reported as wall
	// and CPU (user+sys of the process) milliseconds, each the best of its
	// rounds: the machine is shared, and CPU time is the steadier of the two.
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	res["gomaxprocs"] = 1
	res["kernels"] = "pure Go (math/bits, unrolled)"
	if hasAVX512 {
		res["kernels"] = "AVX-512 assembly (VPOPCNTQ Hamming, FMA dot); pure Go elsewhere"
	}
	ctx := context.Background()
	ix, err := Open(ctx, Options{Path: filepath.Join(t.TempDir(), "ix.db"), Dim: dim})
	must(t, err)
	defer ix.Close()
	ix.benchLoad(domain.ModalityImage, db, codes[64], 64)
	runtime.GC()
	qv := func(i int) []float32 { return qs[i*dim : (i+1)*dim] }
	search := func(ix *Index, q domain.VectorQuery) []domain.Hit {
		hits, err := ix.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return hits
	}

	// Hamming scan, top-100: every query one at a time, and batches of 100.
	ham := map[string]any{}
	for _, bits := range []int{64, 256} {
		ix.benchCodes(domain.ModalityImage, codes[bits], bits)
		runtime.GC()
		nb := bits / 8
		hq := func(i int) domain.VectorQuery {
			return domain.VectorQuery{Vector: qv(i), Code: qcodes[bits][i*nb : (i+1)*nb], Modality: domain.ModalityImage, K: 100, Plan: domain.PlanHash}
		}
		single := timeRounds(3, float64(nq), func() {
			for i := range nq {
				search(ix, hq(i))
			}
		})
		batch := timeRounds(3, 1, func() {
			for i := range min(100, nq) {
				search(ix, hq(i))
			}
		})
		var dists [][]int
		for i := range min(5, nq) {
			var d []int
			for _, h := range search(ix, hq(i)) {
				d = append(d, *h.Distance)
			}
			dists = append(dists, d)
		}
		ham[strconv.Itoa(bits)] = map[string]any{"single": single, "batch100": batch, "distances": dists}
		logf("hamming %d bits: %s per query, %s per batch of 100", bits, single, batch)
	}
	res["hamming"] = ham
	ix.benchCodes(domain.ModalityImage, codes[64], 64)
	runtime.GC()

	// Float exact, top-10: 10 single queries (best of 2 rounds); every query
	// once (the ground truth of the hybrid plan), timed as batches of 100.
	eq := func(i int) domain.VectorQuery {
		return domain.VectorQuery{Vector: qv(i), Modality: domain.ModalityImage, K: 10}
	}
	ns := min(10, nq)
	single := timeRounds(2, float64(ns), func() {
		for i := range ns {
			search(ix, eq(i))
		}
	})
	truth := make([][]domain.Hit, nq)
	batch := timeRounds(1, float64(nq)/100, func() {
		for i := range nq {
			truth[i] = search(ix, eq(i))
		}
	})
	var top [][]float32
	for i := range min(5, nq) {
		var sc []float32
		for _, h := range truth[i] {
			sc = append(sc, h.Score)
		}
		top = append(top, sc)
	}
	res["exact"] = map[string]any{"single": single, "batch100": batch, "scores": top}
	logf("exact: %s per query, %s per batch of 100", single, batch)

	// Hybrid with 64-bit codes, K=10, at N and at 100k (the first 100k records).
	hybrid := map[string]any{}
	sizes := []int{n}
	if n > 100_000 {
		sizes = []int{100_000, n}
	}
	for _, size := range sizes {
		hx, tr, exact := ix, truth, single
		if size != n {
			hx, err = Open(ctx, Options{Path: filepath.Join(t.TempDir(), "ix100k.db"), Dim: dim})
			must(t, err)
			defer hx.Close()
			hx.benchLoad(domain.ModalityImage, db[:size*dim], codes[64][:size*8], 64)
			tr = make([][]domain.Hit, nq)
			exact = timeRounds(1, float64(nq), func() {
				for i := range nq {
					tr[i] = search(hx, eq(i))
				}
			})
		}
		var rowsOut []map[string]any
		for _, frac := range []float64{0.001, 0.005, 0.01} {
			c := int(math.Round(frac * float64(size)))
			hits := make([][]domain.Hit, nq)
			el := timeRounds(2, float64(nq), func() {
				for i := range nq {
					hits[i] = search(hx, domain.VectorQuery{Vector: qv(i), Code: qcodes[64][i*8 : (i+1)*8], Modality: domain.ModalityImage,
						K: 10, Plan: domain.PlanHybrid, Candidates: c})
				}
			})
			found, total := 0, 0
			for i := range nq {
				want := map[string]bool{}
				for _, h := range tr[i] {
					want[h.PK] = true
				}
				for _, h := range hits[i] {
					if want[h.PK] {
						found++
					}
				}
				total += len(tr[i])
			}
			recall := float64(found) / float64(total)
			rowsOut = append(rowsOut, map[string]any{"fraction": frac, "c": c, "recall10": recall, "hybrid": el, "exact": exact})
			logf("hybrid N=%d C=%d (%.1f%%): recall@10 %.3f, %s vs exact %s (%.0fx wall, %.0fx cpu)", size, c, 100*frac, recall, el, exact,
				exact.Wall/el.Wall, exact.CPU/el.CPU)
		}
		hybrid[strconv.Itoa(size)] = rowsOut
	}
	res["hybrid"] = hybrid
	if os.Getenv("XMODAL_HASHBENCH_MEMORY") != "" {
		res["memory"] = benchMemory(t, dim)
	}
	out := filepath.Join(dir, "go.json")
	if r := os.Getenv("XMODAL_HASHBENCH_OUT"); r != "" {
		out = r
	}
	b, _ := json.MarshalIndent(res, "", " ")
	must(t, os.WriteFile(out, b, 0o644))
	logf("wrote %s", out)
}

// timing is one measurement in milliseconds: wall clock and process CPU.
type timing struct {
	Wall float64 `json:"wall_ms"`
	CPU  float64 `json:"cpu_ms"`
}

func (tm timing) String() string { return fmt.Sprintf("%.3f ms (cpu %.3f ms)", tm.Wall, tm.CPU) }

// timeRounds runs f rounds times and returns the best wall and the best CPU
// time of a round, divided by per (the operations in a round).
func timeRounds(rounds int, per float64, f func()) timing {
	best := timing{Wall: math.Inf(1), CPU: math.Inf(1)}
	for range rounds {
		w0, c0 := time.Now(), cpuTime()
		f()
		w, c := time.Since(w0), cpuTime()-c0
		best.Wall = min(best.Wall, float64(w.Nanoseconds())/1e6/per)
		best.CPU = min(best.CPU, float64(c.Nanoseconds())/1e6/per)
	}
	return best
}

// prepareHashBench writes the benchmark's data files: db.f32 and q.f32
// (little-endian float32, n x dim and nq x dim), db64.u8, q64.u8, db256.u8,
// q256.u8 (packed codes, MSB first) and meta.json.
func prepareHashBench(t *testing.T, dir string, n, nq, dim int, logf func(string, ...any)) {
	start := time.Now()
	sp := synthSpec{dim: dim, topics: 100, subs: 100, seed: 20261128}
	db := sp.generate(n, domain.ModalityImage, 1)
	qs := sp.generate(nq, domain.ModalityText, 2)
	logf("generated %d + %d vectors in %s", n, nq, time.Since(start).Round(time.Millisecond))

	fitN := 10000
	fitImg := sp.generate(fitN, domain.ModalityImage, 3)
	fitTxt := sp.generate(fitN, domain.ModalityText, 4)
	rows := func(v []float32) [][]float32 {
		out := make([][]float32, len(v)/dim)
		for i := range out {
			out[i] = v[i*dim : (i+1)*dim]
		}
		return out
	}
	coders := map[int]*hash.Coder{}
	for _, bits := range []int{64, 256} {
		t0 := time.Now()
		c, err := hash.Fit(context.Background(), hash.Samples{Image: rows(fitImg), Text: rows(fitTxt)}, hash.FitOptions{Model: "synthetic@1", Bits: bits})
		if err != nil {
			t.Fatal(err)
		}
		coders[bits] = c
		logf("fitted ITQ %d bits on %d+%d samples in %s", bits, fitN, fitN, time.Since(t0).Round(time.Millisecond))
	}
	codes := map[int][]byte{}
	qcodes := map[int][]byte{}
	for bits, c := range coders {
		t0 := time.Now()
		codes[bits] = codeAll(c, db, dim, domain.ModalityImage)
		qcodes[bits] = codeAll(c, qs, dim, domain.ModalityText)
		logf("coded %d vectors at %d bits in %s", n, bits, time.Since(t0).Round(time.Millisecond))
	}
	must(t, writeF32(filepath.Join(dir, "db.f32"), db))
	must(t, writeF32(filepath.Join(dir, "q.f32"), qs))
	for bits := range coders {
		must(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("db%d.u8", bits)), codes[bits], 0o644))
		must(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("q%d.u8", bits)), qcodes[bits], 0o644))
	}
	logf("wrote data files to %s", dir)

	meta, _ := json.Marshal(map[string]any{"n": n, "q": nq, "dim": dim, "bits": []int{64, 256},
		"data": "synthSpec{topics: 100, subs: 100, seed: 20261128}: database modality image, queries modality text; ITQ fitted on 10,000 + 10,000 other samples"})
	must(t, os.WriteFile(filepath.Join(dir, "meta.json"), meta, 0o644))
}

// synthSpec generates clustered unit vectors: topics x subs cluster centres
// (a sub-centre is its topic plus a smaller offset), each vector its
// centre plus isotropic noise plus a constant offset per modality, then
// normalised. Neighbours are graded (same sub-cluster, same topic, other),
// as embeddings of real collections tend to be.
type synthSpec struct {
	dim, topics, subs int
	seed              uint64
}

func (sp synthSpec) centres() (topic, sub [][]float32, gap map[domain.Modality][]float32) {
	r := rand.New(rand.NewPCG(sp.seed, 0))
	vec := func(scale float64) []float32 {
		v := make([]float32, sp.dim)
		s := scale / math.Sqrt(float64(sp.dim))
		for i := range v {
			v[i] = float32(r.NormFloat64() * s)
		}
		return v
	}
	for range sp.topics {
		topic = append(topic, vec(1))
	}
	for range sp.topics * sp.subs {
		sub = append(sub, vec(0.7))
	}
	gap = map[domain.Modality][]float32{domain.ModalityImage: vec(0.6), domain.ModalityText: vec(0.6)}
	return
}

// generate returns n vectors of modality m (stream selects the noise).
func (sp synthSpec) generate(n int, m domain.Modality, stream uint64) []float32 {
	topic, sub, gap := sp.centres()
	out := make([]float32, n*sp.dim)
	const chunk = 16384
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.NumCPU())
	for lo := 0; lo < n; lo += chunk {
		wg.Add(1)
		sem <- struct{}{}
		go func(lo int) {
			defer func() { <-sem; wg.Done() }()
			r := rand.New(rand.NewPCG(sp.seed^stream<<40, uint64(lo)))
			noise := 0.55 / math.Sqrt(float64(sp.dim))
			for i := lo; i < min(lo+chunk, n); i++ {
				t := r.IntN(sp.topics)
				s := t*sp.subs + r.IntN(sp.subs)
				v := out[i*sp.dim : (i+1)*sp.dim]
				var norm float64
				for j := range v {
					x := topic[t][j] + sub[s][j] + gap[m][j] + float32(r.NormFloat64()*noise)
					v[j] = x
					norm += float64(x) * float64(x)
				}
				inv := float32(1 / math.Sqrt(norm))
				for j := range v {
					v[j] *= inv
				}
			}
		}(lo)
	}
	wg.Wait()
	return out
}

func codeAll(c *hash.Coder, vecs []float32, dim int, m domain.Modality) []byte {
	n := len(vecs) / dim
	nb := c.Bytes()
	out := make([]byte, n*nb)
	var wg sync.WaitGroup
	workers := runtime.NumCPU()
	for w := range workers {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				c.AppendCode(out[i*nb:i*nb:(i+1)*nb], vecs[i*dim:(i+1)*dim], m)
			}
		}(w)
	}
	wg.Wait()
	return out
}

// benchMemory measures the heap bytes per record of an index loaded the
// normal way (Apply) with typical metadata, 64-bit codes and, for images,
// PDQ hashes; thumbnails excluded (they are stored as sent, ~3-6 KB).
func benchMemory(t *testing.T, dim int) map[string]any {
	const n = 20000
	r := rand.New(rand.NewPCG(1, 1))
	ctx := context.Background()
	ix, err := Open(ctx, Options{Path: filepath.Join(t.TempDir(), "mem.db"), Dim: dim})
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for lo := 0; lo < n; lo += 1000 {
		var chs []domain.Change
		for i := lo; i < lo+1000; i++ {
			id := fmt.Sprintf("post-%08d", i)
			m := domain.ModalityText
			if i%2 == 0 {
				m = domain.ModalityImage
			}
			v := make([]float32, dim)
			for j := range v {
				v[j] = float32(r.NormFloat64())
			}
			rec := domain.Record{PK: domain.PrimaryKey(id, m), PostID: id, Modality: m, Author: fmt.Sprintf("user%d", i%500),
				CreatedAt: time.Unix(1.7e9+int64(i), 0).UTC(), ModelVersion: "clip@1", Labels: []string{"street", "outdoor"},
				Text: "street corner downtown, quiet morning #city #photo walk", MediaURL: fmt.Sprintf("https://cdn.example.com/m/%08d.jpg", i),
				Vector: v, Code: make([]byte, 8)}
			if m == domain.ModalityImage {
				rec.PDQ, rec.PDQQuality = make([]byte, 32), 90
			}
			chs = append(chs, domain.Change{PostID: id, Records: []domain.Record{rec}})
		}
		if _, err := ix.Apply(ctx, chs); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	total := float64(after.HeapInuse-before.HeapInuse) / n
	arrays := map[string]int{"vector": 4 * dim, "code64": 8 + 1, "pdq_images": 32 + 1}
	runtime.KeepAlive(ix)
	return map[string]any{"records": n, "heap_bytes_per_record": total, "arrays": arrays,
		"note": "heap in use after loading (Go GC'd heap; vector, code, PDQ arrays + metadata struct, strings, map entry); bbolt's file is mmapped, not heap"}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeF32(path string, v []float32) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, 0, 1<<20)
	for i, x := range v {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(x))
		if len(buf) >= 1<<20 || i == len(v)-1 {
			if _, err := f.Write(buf); err != nil {
				f.Close()
				return err
			}
			buf = buf[:0]
		}
	}
	return f.Close()
}

func readF32(path string, n int) ([]float32, error) {
	b, err := readBytes(path, 4*n)
	if err != nil {
		return nil, err
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out, nil
}

func readBytes(path string, n int) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) != n {
		return nil, fmt.Errorf("%s has %d bytes, want %d (prepare the data again for this size)", path, len(b), n)
	}
	return b, nil
}

// TestHashBenchModel is the hybrid measurement on model embeddings
// (tools/bench_faiss.py --model-emb writes the files from `xmodal eval
// --write-embeddings`):
//
//	XMODAL_HASHBENCH_MODEL  directory with meta.json (n, q, fit, dim), db.f32
//	                        (image embeddings, the database), q.f32 (caption
//	                        embeddings, the queries), fitimg.f32 and fittxt.f32
//	                        (other embeddings of both modalities, for ITQ)
//	XMODAL_HASHBENCH_CODER  a parameter file to use for 64 bits instead of
//	                        fitting (the one the model ships)
//
// It writes model.json there: recall@10 of hybrid against exact and the time
// of both, with ITQ codes of 64 bits (XMODAL_HASHBENCH_BITS: a list), for C
// from 0.1 % to 5 % of the database.
func TestHashBenchModel(t *testing.T) {
	dir := os.Getenv("XMODAL_HASHBENCH_MODEL")
	if dir == "" {
		t.Fatal("set XMODAL_HASHBENCH_MODEL (tools/bench_faiss.py --model-emb does)")
	}
	var meta struct {
		N, Q, Fit, Dim int
		Model          string
	}
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	must(t, err)
	must(t, json.Unmarshal(b, &meta))
	dim := meta.Dim
	db, err := readF32(filepath.Join(dir, "db.f32"), meta.N*dim)
	must(t, err)
	qs, err := readF32(filepath.Join(dir, "q.f32"), meta.Q*dim)
	must(t, err)
	fi, err := readF32(filepath.Join(dir, "fitimg.f32"), meta.Fit*dim)
	must(t, err)
	ft, err := readF32(filepath.Join(dir, "fittxt.f32"), meta.Fit*dim)
	must(t, err)
	rows := func(v []float32) [][]float32 {
		out := make([][]float32, len(v)/dim)
		for i := range out {
			out[i] = v[i*dim : (i+1)*dim]
		}
		return out
	}
	prev := runtime.GOMAXPROCS(0)
	ctx := context.Background()
	ix, err := Open(ctx, Options{Path: filepath.Join(t.TempDir(), "ix.db"), Dim: dim})
	must(t, err)
	defer ix.Close()
	qv := func(i int) []float32 { return qs[i*dim : (i+1)*dim] }
	var truth [][]domain.Hit
	var exact timing
	var rowsOut []map[string]any
	coders := map[string]string{}
	bitsList := []int{64}
	if v := os.Getenv("XMODAL_HASHBENCH_BITS"); v != "" {
		bitsList = nil
		for _, f := range strings.Split(v, ",") {
			b, err := strconv.Atoi(f)
			must(t, err)
			bitsList = append(bitsList, b)
		}
	}
	for _, bits := range bitsList {
		runtime.GOMAXPROCS(prev)
		var coder *hash.Coder
		if p := os.Getenv("XMODAL_HASHBENCH_CODER"); p != "" && bits == 64 {
			coder, err = hash.Load(p, "", dim) // the coder the model ships
		} else {
			coder, err = hash.Fit(ctx, hash.Samples{Image: rows(fi), Text: rows(ft)}, hash.FitOptions{Model: meta.Model, Bits: bits})
		}
		must(t, err)
		coders[strconv.Itoa(bits)] = coder.ID()
		codes := codeAll(coder, db, dim, domain.ModalityImage)
		qcodes := codeAll(coder, qs, dim, domain.ModalityText)
		runtime.GOMAXPROCS(1)
		if truth == nil {
			ix.benchLoad(domain.ModalityImage, db, codes, bits)
			truth = make([][]domain.Hit, meta.Q)
			exact = timeRounds(1, float64(meta.Q), func() {
				for i := range meta.Q {
					h, err := ix.Search(ctx, domain.VectorQuery{Vector: qv(i), Modality: domain.ModalityImage, K: 10})
					must(t, err)
					truth[i] = h
				}
			})
		} else {
			ix.benchCodes(domain.ModalityImage, codes, bits)
		}
		runtime.GC()
		nb := bits / 8
		for _, frac := range []float64{0.001, 0.005, 0.01, 0.02, 0.05} {
			c := int(math.Round(frac * float64(meta.N)))
			hits := make([][]domain.Hit, meta.Q)
			el := timeRounds(2, float64(meta.Q), func() {
				for i := range meta.Q {
					h, err := ix.Search(ctx, domain.VectorQuery{Vector: qv(i), Code: qcodes[i*nb : (i+1)*nb], Modality: domain.ModalityImage,
						K: 10, Plan: domain.PlanHybrid, Candidates: c})
					must(t, err)
					hits[i] = h
				}
			})
			found, total := 0, 0
			for i := range meta.Q {
				want := map[string]bool{}
				for _, h := range truth[i] {
					want[h.PK] = true
				}
				for _, h := range hits[i] {
					if want[h.PK] {
						found++
					}
				}
				total += len(truth[i])
			}
			recall := float64(found) / float64(total)
			rowsOut = append(rowsOut, map[string]any{"bits": bits, "fraction": frac, "c": c, "recall10": recall, "hybrid": el, "exact": exact})
			fmt.Fprintf(os.Stderr, "[model] %d bits N=%d C=%d (%.1f%%): recall@10 %.3f, %s vs exact %s (%.0fx cpu)\n", bits, meta.N, c, 100*frac, recall, el, exact, exact.CPU/el.CPU)
		}
	}
	runtime.GOMAXPROCS(prev)
	out, _ := json.MarshalIndent(map[string]any{"n": meta.N, "q": meta.Q, "dim": dim, "model": meta.Model, "fit": meta.Fit,
		"coders": coders, "hybrid": rowsOut}, "", " ")
	must(t, os.WriteFile(filepath.Join(dir, "model.json"), out, 0o644))
}
