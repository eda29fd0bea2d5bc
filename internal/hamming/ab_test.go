//go:build linux && bench

package hamming

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/xmodal/xmodal/internal/testutil"
)

// TestChunkingAB compares index configurations interleaved in one process
// (the same entries and image lookups, configurations alternating round by
// round), for a loaded machine where only ratios mean something: thread CPU
// per lookup of each, and its ratio to the first. Results are checked equal
// across configurations.
//
//	XMODAL_HAMMING_AB_N        entries (required; e.g. 1000000)
//	XMODAL_HAMMING_AB_CONFIGS  configurations, "chunks:radius[:bucketload]"
//	                           each (default "0:0,0:31": the log2 rule,
//	                           then tuned for radius 31)
//	XMODAL_HAMMING_AB_ROUNDS   rounds (default 4)
//
//	XMODAL_HAMMING_AB_N=1000000 go test -tags bench -count=1 -run TestChunkingAB -v ./internal/hamming/
func TestChunkingAB(t *testing.T) {
	n := testutil.EnvInt(t, "XMODAL_HAMMING_AB_N", 0)
	if n == 0 {
		t.Skip("set XMODAL_HAMMING_AB_N to compare chunkings")
	}
	rounds := testutil.EnvInt(t, "XMODAL_HAMMING_AB_ROUNDS", 4)
	type config struct {
		chunks, radius int
		load           float64
	}
	var configs []config
	for _, s := range strings.Split(envStr("XMODAL_HAMMING_AB_CONFIGS", "0:0,0:31"), ",") {
		f := strings.Split(strings.TrimSpace(s), ":")
		m, err := strconv.Atoi(f[0])
		must(t, err)
		r, err := strconv.Atoi(f[1])
		must(t, err)
		load := 0.0
		if len(f) > 2 {
			load, err = strconv.ParseFloat(f[2], 64)
			must(t, err)
		}
		configs = append(configs, config{m, r, load})
	}
	rng := rand.New(rand.NewPCG(uint64(n), 1))
	codes := clustered(rng, n, 0.1, 50, 24)
	ids := make([]uint64, n)
	for i := range ids {
		ids[i] = uint64(i)
	}
	ixs := make([]*Index, len(configs))
	for i, c := range configs {
		ix := newIndex(t, Options{Chunks: c.chunks, Radius: c.radius, BucketLoad: c.load, DeferMaintenance: true})
		ix.AddBatch(ids, codes)
		ix.Build(nil)
		ixs[i] = ix
		st := ix.Stats()
		fmt.Printf("config %d (%+v): %d chunks, %d MB\n", i, c, st.Segments[0].Chunks, st.Bytes>>20)
	}
	queries := imageQueries(rng, codes)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu := make([][]float64, len(ixs)) // per config, per round: ms per lookup
	var dst []Match
	for range rounds {
		for i, ix := range ixs {
			c0 := threadCPU()
			for _, q := range queries {
				dst, _ = ix.Search(q, 31, dst[:0])
			}
			cpu[i] = append(cpu[i], float64(threadCPU()-c0)/1e6/float64(len(queries)))
		}
	}
	for _, q := range queries {
		want := mustSearch(t, ixs[0], q, 31, planAuto)
		for _, ix := range ixs[1:] {
			sameMatches(t, "A/B", mustSearch(t, ix, q, 31, planAuto), want)
		}
	}
	for i := range ixs {
		line := fmt.Sprintf("config %d (%+v): ms/lookup", i, configs[i])
		for k, v := range cpu[i] {
			line += fmt.Sprintf(" %.3f (%.3f)", v, v/cpu[0][k])
		}
		fmt.Println(line, "(ratio to config 0)")
	}
}
