package milvus

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
)

// BenchmarkSinkVsUpsert measures the Milvus sink (Apply, fed pre-encoded
// text posts in calls of 32, by as many concurrent callers as the pipeline's
// writers: 16, or XMODAL_BENCH_WRITERS; milvus.rounds from
// XMODAL_BENCH_ROUNDS, default 1; milvus.linger from XMODAL_BENCH_LINGER,
// default 100ms, as `xmodal indexer` sets them) against its peer, the Go client's Upsert of the same
// record rows at the same batch size into a collection of the same schema
// (what a hand-written glue loop does: no versions, no deny-list, no side
// collections). The peer runs with one caller (a loop) and with the sink's
// concurrency, in interleaved rounds; the ratios are medians of per-round
// ratios. A third peer upserts the same data rows the sink writes, record
// and code rows (on the split layout a collection holds one vector field, so
// a glue loop that keeps binary codes searchable writes both, in parallel),
// with the sink's concurrency.
//
//	go test -run '^$' -bench SinkVsUpsert -benchtime 1x -timeout 60m ./sink/milvus/
func BenchmarkSinkVsUpsert(b *testing.B) {
	const (
		dim, codeBits = 512, 64
		batch         = 32
		defWriters    = 16 // ingest.writers' auto for Milvus (docs/milvus.md)
		posts         = 3200
		rounds        = 3
	)
	writers := defWriters
	if v := os.Getenv("XMODAL_BENCH_WRITERS"); v != "" {
		writers, _ = strconv.Atoi(v)
	}
	ctx := context.Background()
	opt := testOptions(b, dim)
	opt.Consistency = "Bounded"
	opt.CodeBits = codeBits
	opt.Linger = 100 * time.Millisecond // milvus.linger's default for xmodal's roles
	if v := os.Getenv("XMODAL_BENCH_LINGER"); v != "" {
		var err error
		if opt.Linger, err = time.ParseDuration(v); err != nil {
			b.Fatalf("XMODAL_BENCH_LINGER: %v", err)
		}
	}
	if v := os.Getenv("XMODAL_BENCH_ROUNDS"); v != "" {
		opt.Rounds, _ = strconv.Atoi(v)
	}
	sink := openTest(b, opt)
	peerOpt := testOptions(b, dim)
	peerOpt.Consistency = "Bounded"
	peerOpt.CodeBits = codeBits
	peer := openTest(b, peerOpt)

	r := rand.New(rand.NewPCG(7, 7))
	planes := make([][]float32, codeBits)
	for i := range planes {
		planes[i] = randVec(r, dim, nil, 0)
	}
	text := strings.Repeat("a post about something that happened today ", 5)
	mk := func(round, i int) domain.Change {
		id := fmt.Sprintf("r%d-%06d", round, i)
		v := randVec(r, dim, nil, 0)
		rec := domain.Record{PK: domain.PrimaryKey(id, domain.ModalityText), PostID: id, Modality: domain.ModalityText,
			Author: fmt.Sprintf("user%d", i%500), CreatedAt: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second),
			ModelVersion: "test@1", Labels: []string{"news"}, Text: text, Vector: v, Code: simhash(v, planes)}
		return domain.Change{PostID: id, Seq: uint64(i + 1), Records: []domain.Record{rec}}
	}
	// The server's CPU time per 1000 rows (user + system, from /proc), when
	// its pid is known: what a loaded machine's rows/s cannot show.
	srvPID := serverPID()
	cpuPer := map[string][]float64{}
	var idle float64 // the idle server's CPU s per s (time ticks and the like), subtracted
	if srvPID > 0 {
		cpu0, t0 := procCPU(srvPID), time.Now()
		time.Sleep(3 * time.Second)
		idle = (procCPU(srvPID) - cpu0).Seconds() / time.Since(t0).Seconds()
	}
	// run feeds the calls to fn from c concurrent callers and returns rows/s.
	run := func(calls [][]domain.Change, c int, fn func([]domain.Change) error, tag string) float64 {
		cpu0, t0 := procCPU(srvPID), time.Now()
		defer func() {
			if srvPID > 0 {
				busy := (procCPU(srvPID) - cpu0).Seconds() - idle*time.Since(t0).Seconds()
				cpuPer[tag] = append(cpuPer[tag], busy*1000/float64(len(calls)*batch))
			}
		}()
		next := make(chan []domain.Change, len(calls))
		for _, cl := range calls {
			next <- cl
		}
		close(next)
		start := time.Now()
		var wg sync.WaitGroup
		var once sync.Once
		for range c {
			wg.Go(func() {
				for cl := range next {
					if err := fn(cl); err != nil {
						once.Do(func() { b.Error(err) })
						return
					}
				}
			})
		}
		wg.Wait()
		return float64(len(calls)*batch) / time.Since(start).Seconds()
	}
	for range b.N {
		var sinkRate, peer1Rate, peerCRate, peerRRate, vs1, vsC, vsR []float64
		for round := range rounds {
			calls := func(tag int) [][]domain.Change {
				var out [][]domain.Change
				for from := 0; from < posts; from += batch {
					var cl []domain.Change
					for i := from; i < from+batch; i++ {
						cl = append(cl, mk(round*10+tag, i))
					}
					out = append(out, cl)
				}
				return out
			}
			apply := func(cl []domain.Change) error {
				out, err := sink.Apply(ctx, cl)
				if err == nil && slices.ContainsFunc(out, func(o domain.Outcome) bool { return o != domain.Applied }) {
					err = fmt.Errorf("outcomes %v", out)
				}
				return err
			}
			upsert := func(cl []domain.Change) error {
				recs := make([]*domain.Record, len(cl))
				for i := range cl {
					recs[i] = &cl[i].Records[0]
				}
				return peer.upsert(ctx, peer.l.records.name, peer.recordColumns(recs))
			}
			upsertRows := func(cl []domain.Change) error {
				recs := make([]*domain.Record, len(cl))
				for i := range cl {
					recs[i] = &cl[i].Records[0]
				}
				fns := []func() error{func() error { return peer.upsert(ctx, peer.l.records.name, peer.recordColumns(recs)) }}
				if peer.l.code != nil && !peer.l.single {
					fns = append(fns, func() error { return peer.upsert(ctx, peer.l.code.name, peer.sideColumns(recs, fCode)) })
				}
				return parallel(fns...)
			}
			s := run(calls(0), writers, apply, "sink")
			p1 := run(calls(1), 1, upsert, "peer1")
			pc := run(calls(2), writers, upsert, "peerC")
			pr := run(calls(3), writers, upsertRows, "peerR")
			sinkRate, peer1Rate, peerCRate, peerRRate = append(sinkRate, s), append(peer1Rate, p1), append(peerCRate, pc), append(peerRRate, pr)
			vs1, vsC, vsR = append(vs1, s/p1), append(vsC, s/pc), append(vsR, s/pr)
			fmt.Printf("round %d: sink %.0f rows/s (%d callers), Go-client upsert %.0f rows/s (1 caller), %.0f rows/s (%d callers), records and codes %.0f rows/s (%d callers)\n",
				round+1, s, writers, p1, pc, writers, pr, writers)
		}
		st := sink.Stats()
		fmt.Printf("\nMilvus %s, layout %s, dim %d, %d-bit codes, %d text posts per round in Apply calls of %d, %d callers\n",
			sink.ServerVersion(), sink.Layout(), dim, codeBits, posts, batch, writers)
		fmt.Printf("sink rows/s median %.0f; peer (1 caller) %.0f; peer (%d callers) %.0f\n", median(sinkRate), median(peer1Rate), writers, median(peerCRate))
		fmt.Printf("ratio sink / peer (1 caller): median %.2f (min %.2f, max %.2f)\n", median(vs1), slices.Min(vs1), slices.Max(vs1))
		fmt.Printf("ratio sink / peer (%d callers): median %.2f (min %.2f, max %.2f)\n", writers, median(vsC), slices.Min(vsC), slices.Max(vsC))
		fmt.Printf("ratio sink / peer writing the same data rows, records and codes (%d callers, peer %.0f rows/s): median %.2f (min %.2f, max %.2f)\n",
			writers, median(peerRRate), median(vsR), slices.Min(vsR), slices.Max(vsR))
		fmt.Printf("sink rounds %d (%d read Strong), rows %d\n", st.Rounds, st.StrongRounds, st.Rows)
		if st.Rounds > 0 {
			per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1e3 / float64(st.Rounds) }
			fmt.Printf("per round: %.0f rows, read %.1f ms, waiting for a write slot %.1f ms, write %.1f ms (milvus.rounds %d)\n",
				float64(st.Rows)/float64(st.Rounds), per(st.ReadTime), per(st.WriteWait), per(st.WriteTime), sink.opt.Rounds)
		}
		if srvPID > 0 {
			fmt.Printf("server CPU s per 1000 rows beyond its idle %.2f CPU, median: sink %.3f, peer (1 caller) %.3f, peer (%d callers) %.3f, records and codes (%d callers) %.3f\n",
				idle, median(cpuPer["sink"]), median(cpuPer["peer1"]), writers, median(cpuPer["peerC"]), writers, median(cpuPer["peerR"]))
		}
		b.ReportMetric(median(sinkRate), "sink-rows/s")
		b.ReportMetric(median(vs1), "ratio-vs-loop")
		b.ReportMetric(median(vsC), "ratio-vs-concurrent")
		b.ReportMetric(median(vsR), "ratio-vs-same-rows")
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// serverPID is the pid of the test Milvus (the pid file of the server the
// tests started, or XMODAL_BENCH_MILVUS_PID for another); 0 when unknown.
func serverPID() int {
	if v := os.Getenv("XMODAL_BENCH_MILVUS_PID"); v != "" {
		pid, _ := strconv.Atoi(v)
		return pid
	}
	if server.External() || server.DataDir() == "" {
		return 0
	}
	b, err := os.ReadFile(filepath.Join(server.DataDir(), "milvus.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// procCPU is the user + system CPU time of a process (0 when unknown).
func procCPU(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces): utime and stime
	// are the 12th and 13th.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b)[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ
}
