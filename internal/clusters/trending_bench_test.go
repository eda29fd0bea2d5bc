//go:build linux && bench

package clusters

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestTrendingScale is the benchmark of bench/results/trending.txt: the
// latency of Store.Trending (1-hour window against the hour before, top 10)
// over N clustered posts spread over two days (planted clusters of
// Zipf-distributed sizes, a tenth of them bursting in one hour, plus
// unrelated posts), at random times, interleaved in rounds with a direct
// peer: count the members of each cluster created in the two windows from
// every post's (time, cluster) sorted by time (binary search, then a map).
// Both rank by the same score; the test checks that they agree.
//
//	XMODAL_TRENDINGBENCH=1        run it
//	XMODAL_TRENDINGBENCH_N        posts (default 1,000,000)
//	XMODAL_TRENDINGBENCH_Q        queries per round (default 2,000)
//	XMODAL_TRENDINGBENCH_ROUNDS   rounds (default 3)
func TestTrendingScale(t *testing.T) {
	if os.Getenv("XMODAL_TRENDINGBENCH") != "1" {
		t.Skip("set XMODAL_TRENDINGBENCH=1 to run the trending benchmark (docs/clusters.md)")
	}
	env := func(k string, def int) int {
		if v, err := strconv.Atoi(os.Getenv(k)); err == nil {
			return v
		}
		return def
	}
	n, q, rounds := env("XMODAL_TRENDINGBENCH_N", 1_000_000), env("XMODAL_TRENDINGBENCH_Q", 2000), env("XMODAL_TRENDINGBENCH_ROUNDS", 3)
	// Trending reads only the in-memory cluster table: the benchmark fills
	// it from the planted clusters directly (building it through Join, with
	// its searches and bbolt writes, is what the ingest benchmark measures).
	s := &Store{opt: Options{}.WithDefaults(), members: map[string]*Member{}, postOf: map[uint64]string{},
		infos: map[uint64]*Info{}, multi: map[uint64]*Info{}}
	rng := rand.New(rand.NewPCG(5, 5))
	z := rand.NewZipf(rand.New(rand.NewPCG(6, 6)), 1.5, 1, 3000)
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	span := 48 * time.Hour
	type tc struct {
		at int64
		c  uint64
	}
	all := make([]tc, 0, n)
	var id uint64
	addCluster := func(ats []int64) {
		id++
		slices.Sort(ats)
		es := make([]entry, len(ats))
		for i, at := range ats {
			es[i] = entry{post: fmt.Sprintf("p%d-%d", id, i), at: at}
			all = append(all, tc{at, id})
		}
		in := infoOf(id, es, s.opt)
		s.infos[id] = in
		if in.Size >= 2 {
			s.multi[id] = in
		}
	}
	planted := 0
	for len(all) < n/2 {
		size := min(int(z.Uint64())+2, n/2-len(all))
		burst := rng.IntN(10) == 0
		start := t0.Add(time.Duration(rng.Int64N(int64(span - time.Hour))))
		ats := make([]int64, size)
		for i := range ats {
			at := t0.Add(time.Duration(rng.Int64N(int64(span))))
			if burst {
				at = start.Add(time.Duration(rng.Int64N(int64(time.Hour))))
			}
			ats[i] = at.UnixNano()
		}
		addCluster(ats)
		planted++
	}
	for len(all) < n {
		addCluster([]int64{t0.Add(time.Duration(rng.Int64N(int64(span)))).UnixNano()})
	}
	st := s.Stats()
	t.Logf("N=%d posts over %v: %d planted clusters (Zipf sizes 2..3002, a tenth bursting within an hour); %d clusters (%d of two or more, largest %d)",
		n, span, planted, st.Clusters, st.Multi, st.Largest)
	// The peer's data: (time, cluster) of every member, sorted by time.
	slices.SortFunc(all, func(a, b tc) int { return cmpI64(a.at, b.at) })
	peer := func(now time.Time, w time.Duration) []Trend {
		g := s.Bucket()
		end := bucketOf(now.UnixNano(), g)
		lo := (end - 2*int64(w/g) + 1) * int64(g)
		mid := (end - int64(w/g) + 1) * int64(g)
		hi := (end + 1) * int64(g)
		i, _ := slices.BinarySearchFunc(all, lo, func(x tc, v int64) int { return cmpI64(x.at, v) })
		cur, prev := map[uint64]int{}, map[uint64]int{}
		for ; i < len(all) && all[i].at < hi; i++ {
			if all[i].at < mid {
				prev[all[i].c]++
			} else {
				cur[all[i].c]++
			}
		}
		var out []Trend
		for c, k := range cur {
			if k < DefaultMinCount {
				continue
			}
			if sc := Score(k, prev[c], DefaultSmoothing); sc > 0 {
				out = append(out, Trend{Info: Info{ID: c}, Current: k, Previous: prev[c], Score: sc})
			}
		}
		slices.SortFunc(out, func(a, b Trend) int {
			if a.Score != b.Score {
				if a.Score > b.Score {
					return -1
				}
				return 1
			}
			if a.Current != b.Current {
				return b.Current - a.Current
			}
			return cmpU64(a.ID, b.ID)
		})
		return out[:min(len(out), DefaultTrendingK)]
	}
	times := make([]time.Time, q)
	for i := range times {
		times[i] = t0.Add(2*time.Hour + time.Duration(rng.Int64N(int64(span-2*time.Hour))))
	}
	pct := func(d []time.Duration, p float64) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[min(len(s)-1, int(p*float64(len(s))))]
	}
	// Wall time and the thread's CPU time of each query (the goroutine is
	// locked to its thread): on a machine shared by many processes the wall
	// time includes waiting for a core.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var ratios []float64
	for r := 1; r <= rounds; r++ {
		ours, theirs := make([]time.Duration, q), make([]time.Duration, q)
		oursCPU, theirsCPU := make([]time.Duration, q), make([]time.Duration, q)
		for i, now := range times {
			a, ac := time.Now(), threadCPU()
			got, err := s.Trending(TrendingQuery{Now: now, Window: time.Hour})
			ours[i], oursCPU[i] = time.Since(a), threadCPU()-ac
			if err != nil {
				t.Fatal(err)
			}
			b, bc := time.Now(), threadCPU()
			want := peer(now, time.Hour)
			theirs[i], theirsCPU[i] = time.Since(b), threadCPU()-bc
			if r == 1 {
				if len(got) != len(want) {
					t.Fatalf("query %d: %d trending clusters, the peer %d", i, len(got), len(want))
				}
				for j := range got {
					if got[j].ID != want[j].ID || got[j].Current != want[j].Current || got[j].Previous != want[j].Previous {
						t.Fatalf("query %d rank %d: %+v, the peer %+v", i, j, got[j], want[j])
					}
				}
			}
		}
		t.Logf("round %d Store.Trending: wall p50 %v, p99 %v, max %v; thread CPU p50 %v, p99 %v", r, pct(ours, .5), pct(ours, .99), pct(ours, 1), pct(oursCPU, .5), pct(oursCPU, .99))
		t.Logf("round %d peer (scan of the windows' posts): wall p50 %v, p99 %v, max %v; thread CPU p50 %v, p99 %v", r, pct(theirs, .5), pct(theirs, .99), pct(theirs, 1), pct(theirsCPU, .5), pct(theirsCPU, .99))
		ratios = append(ratios, float64(pct(theirsCPU, .99))/float64(pct(oursCPU, .99)))
	}
	slices.Sort(ratios)
	t.Logf("peer / Store.Trending thread-CPU p99: median %.1fx (rounds %.1f..%.1f, n=%d); rankings identical on round 1's %d queries",
		ratios[len(ratios)/2], ratios[0], ratios[len(ratios)-1], len(ratios), q)
}

func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
