package neardup

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xmodal/xmodal/eval/reposts"
)

// lookupSearchers builds the searchers BenchmarkLookup measures; a build of
// the benchmark may point it at another RangeSearcher (internal/hamming).
var lookupSearchers = func() (whole, windows RangeSearcher) {
	return NewMIHSearcher(true), NewMIHSearcher(true)
}

// BenchmarkLookup times Index.Search (the lookup, without hashing the
// query) on an index over internal/hamming (MIHSearcher) holding the
// signatures of XMODAL_ND_LOOKUP_IMAGES images (default 20,000): the
// committed photos' real signatures, and synthetic ones (uniformly random
// hashes: PDQ, area and cleaned hashes and MaxWindows windows each) for
// the rest. The queries are real:
// re-posts of the photos under every single edit and combination. It
// reports the median and the 99th percentile per query, by wall clock and
// by the thread's CPU time (robust to a shared machine), the signature
// bytes and the index's Go heap per image, and checks that each query
// still finds its photo or nothing else. Run on one core:
// XMODAL_ND_LOOKUP_IMAGES=1000000 go test -run '^$' -bench Lookup -cpu 1 -benchtime 2000x ./encoders/neardup
func BenchmarkLookup(b *testing.B) {
	n := 20000
	if s := os.Getenv("XMODAL_ND_LOOKUP_IMAGES"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			b.Fatalf("XMODAL_ND_LOOKUP_IMAGES=%q", s)
		}
		n = v
	}
	opts := Options{PDQMaxSide: -1}
	// XMODAL_ND_LOOKUP_QW bounds the query's windows per plane.
	if s := os.Getenv("XMODAL_ND_LOOKUP_QW"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			b.Fatalf("XMODAL_ND_LOOKUP_QW=%q", s)
		}
		opts.QueryWindows = v
	}
	h := NewHasher(opts)
	paths, _ := filepath.Glob(filepath.Join(photoDir, "*.jpg"))
	ix := NewIndexWith(lookupSearchers())
	// XMODAL_ND_LOOKUP_RADIUS sets the window radius (default
	// WindowDistance): the knob between lookup time and recall.
	if s := os.Getenv("XMODAL_ND_LOOKUP_RADIUS"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 || v > 256 {
			b.Fatalf("XMODAL_ND_LOOKUP_RADIUS=%q", s)
		}
		ix.vp.windowDistance = v
	}
	// XMODAL_ND_LOOKUP_SEED lists radii of the window search's first
	// stage, each a sub-benchmark on the same index: N searches within N
	// exactly, and the whole-image band too (IndexOptions.ExactLookup; N >=
	// the window radius: one stage), pN approximately within N (chunk
	// radius 0), the band probed as XMODAL_ND_LOOKUP_BANDPROBE says
	// (default BandProbeBits; -1: exact); the default is p24. And
	// XMODAL_ND_LOOKUP_SEEDWIN the query windows per plane the first stage
	// searches (0: all).
	type seedMode struct {
		name   string
		radius int
		probed bool
	}
	seedModes := []seedMode{{"p" + strconv.Itoa(ix.vp.probeDistance), ix.vp.probeDistance, true}}
	if s := os.Getenv("XMODAL_ND_LOOKUP_SEED"); s != "" {
		seedModes = nil
		for f := range strings.SplitSeq(s, ",") {
			v, err := strconv.Atoi(strings.TrimPrefix(f, "p"))
			if err != nil || v < 1 || v > 256 {
				b.Fatalf("XMODAL_ND_LOOKUP_SEED=%q", s)
			}
			seedModes = append(seedModes, seedMode{f, v, strings.HasPrefix(f, "p")})
		}
	}
	// XMODAL_ND_LOOKUP_BAND sets the reach of the pixel-verified
	// whole-image band (default WholeBandDistance; 0: off).
	if s := os.Getenv("XMODAL_ND_LOOKUP_BAND"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || (v != 0 && (v <= WholeDistance || v > 256)) {
			b.Fatalf("XMODAL_ND_LOOKUP_BAND=%q", s)
		}
		ix.vp.wholeBand = v
	}
	bandProbe := ix.vp.bandProbe
	if s := os.Getenv("XMODAL_ND_LOOKUP_BANDPROBE"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("XMODAL_ND_LOOKUP_BANDPROBE=%q", s)
		}
		bandProbe = v
	}
	if s := os.Getenv("XMODAL_ND_LOOKUP_SEEDWIN"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			b.Fatalf("XMODAL_ND_LOOKUP_SEEDWIN=%q", s)
		}
		ix.vp.seedWindows = v
	}
	var queries []*Query
	var want []int64
	for i, p := range paths {
		img := loadPhoto(b, filepath.Base(p))
		sig, err := h.Signatures(img)
		if err != nil {
			b.Fatal(err)
		}
		ix.Add(int64(i), img.Bounds().Dx(), img.Bounds().Dy(), sig)
		for ki, k := range append(singleKinds(), reposts.Combos...) {
			rp, err := reposts.Apply(img, k, rand.New(rand.NewPCG(uint64(i), uint64(ki))))
			if err != nil {
				b.Fatal(err)
			}
			q, err := h.Query(rp.Image)
			if err != nil {
				b.Fatal(err)
			}
			queries = append(queries, q)
			want = append(want, int64(i))
		}
	}
	sigBytes := 0
	for i, p := range paths {
		_ = i
		img := loadPhoto(b, filepath.Base(p))
		sig, _ := h.Signatures(img)
		sigBytes += EncodedSize(sig)
	}
	runtime.GC()
	var m0 runtime.MemStats
	runtime.ReadMemStats(&m0)
	r := rand.New(rand.NewPCG(1, 2))
	// The PDQ, area and cleaned hashes that every indexed image carries,
	// then its windows.
	sig := make([]RegionHash, MaxWindows+3)
	t0 := time.Now()
	for i := len(paths); i < n; i++ {
		for k := range sig {
			for j := range sig[k].Hash {
				sig[k].Hash[j] = byte(r.Uint32())
			}
			sig[k].Kind, sig[k].Quality = Window, 80
			sig[k].Region = Region{CX: 0.5, CY: 0.5, Side: 0.3}
		}
		sig[0].Kind, sig[1].Kind, sig[2].Kind = Whole, Area, Cleaned
		ix.Add(int64(i), 640, 480, sig)
	}
	ix.Finish()
	b.Logf("indexed %d images (%d window hashes) in %s", n, ix.windows.Len(), time.Since(t0).Round(time.Millisecond))
	runtime.GC()
	var m1 runtime.MemStats
	runtime.ReadMemStats(&m1)
	heapPer := float64(m1.HeapAlloc-min(m0.HeapAlloc, m1.HeapAlloc)) / float64(n-len(paths))
	sigPer := float64(sigBytes) / float64(len(paths))
	perQuery := func(qs []*Query) (hashes, seeds float64) {
		for _, qq := range qs {
			hashes += float64(len(qq.Hashes))
			for _, qh := range qq.Hashes {
				if qh.Kind == Window && !qh.alt {
					seeds++
				}
			}
		}
		return hashes / float64(len(qs)), seeds / float64(len(qs))
	}
	// XMODAL_ND_LOOKUP_LOW lists low-hit settings (lowseed.go), each a
	// sub-benchmark of every seed mode on the same index, interleaved: N
	// bits (LowHitBits by default), 0 off.
	lows := []int{LowHitBits}
	if s := os.Getenv("XMODAL_ND_LOOKUP_LOW"); s != "" {
		lows = nil
		for f := range strings.SplitSeq(s, ",") {
			v, err := strconv.Atoi(f)
			if err != nil || v < 0 || v > 64 {
				b.Fatalf("XMODAL_ND_LOOKUP_LOW=%q", s)
			}
			lows = append(lows, v)
		}
	}
	// XMODAL_ND_LOOKUP_SMOOTH lists, likewise, 1 (the queries as Query
	// makes them) and 0 (without the windows of the smoothed crop plane:
	// smoothCropPlane).
	smooths := []bool{true}
	if s := os.Getenv("XMODAL_ND_LOOKUP_SMOOTH"); s != "" {
		smooths = nil
		for f := range strings.SplitSeq(s, ",") {
			if f != "0" && f != "1" {
				b.Fatalf("XMODAL_ND_LOOKUP_SMOOTH=%q", s)
			}
			smooths = append(smooths, f == "1")
		}
	}
	unsmoothed := make([]*Query, len(queries))
	for i, q := range queries {
		u := *q
		u.Hashes = nil
		for _, qh := range q.Hashes {
			if !qh.smoothed {
				u.Hashes = append(u.Hashes, qh)
			}
		}
		unsmoothed[i] = &u
	}
	type lookupMode struct {
		seedMode
		low    int
		smooth bool
	}
	var modes []lookupMode
	for _, sm := range seedModes {
		for _, lo := range lows {
			for _, so := range smooths {
				modes = append(modes, lookupMode{sm, lo, so})
			}
		}
	}
	for _, md := range modes {
		sm := md.seedMode
		name := "seed=" + sm.name
		if len(lows) > 1 || md.low != LowHitBits {
			name += "/low=" + strconv.Itoa(md.low)
		}
		qs := queries
		if len(smooths) > 1 || !md.smooth {
			name += fmt.Sprintf("/smooth=%v", md.smooth)
			if !md.smooth {
				qs = unsmoothed
			}
		}
		b.Run(name, func(b *testing.B) {
			ix.vp.lowHitBits = md.low
			ix.vp.seedDistance, ix.vp.probeDistance, ix.vp.bandProbe = sm.radius, 0, -1
			if sm.probed {
				ix.vp.seedDistance, ix.vp.probeDistance, ix.vp.bandProbe = SeedDistance, sm.radius, bandProbe
			}
			lookupRun(b, ix, qs, want)
			b.ReportMetric(float64(n), "images")
			b.ReportMetric(float64(ix.vp.windowDistance), "window-radius")
			b.ReportMetric(float64(sm.radius), "seed-radius")
			b.ReportMetric(float64(md.low), "low-bits")
			b.ReportMetric(float64(ix.vp.bandProbe), "band-probe")
			b.ReportMetric(sigPer, "sig-bytes/image")
			b.ReportMetric(heapPer, "heap-bytes/image")
			hashesPer, seedsPer := perQuery(qs)
			b.ReportMetric(hashesPer, "hashes/query")
			if sm.radius < ix.vp.windowDistance {
				b.ReportMetric(seedsPer, "seeds/query")
			}
		})
	}
}

// lookupRun times the queries on ix, one core, round robin.
func lookupRun(b *testing.B, ix *Index, queries []*Query, want []int64) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var times, cpus []time.Duration
	wrong, found := 0, 0
	for i := 0; b.Loop(); i++ {
		q := queries[i%len(queries)]
		t, c := time.Now(), threadCPU()
		ms := ix.Search(q, SearchOptions{})
		times = append(times, time.Since(t))
		cpus = append(cpus, threadCPU()-c)
		for _, m := range ms {
			if m.ID != want[i%len(queries)] {
				wrong++
			}
		}
		if len(ms) > 0 && ms[0].ID == want[i%len(queries)] {
			found++
		}
	}
	b.StopTimer()
	slices.Sort(times)
	slices.Sort(cpus)
	q := func(ts []time.Duration, p float64) float64 {
		return float64(ts[min(int(p*float64(len(ts))), len(ts)-1)]) / 1e6
	}
	b.ReportMetric(q(times, 0.5), "p50-ms")
	b.ReportMetric(q(times, 0.99), "p99-ms")
	b.ReportMetric(q(cpus, 0.5), "cpu-p50-ms")
	b.ReportMetric(q(cpus, 0.99), "cpu-p99-ms")
	b.ReportMetric(float64(found)/float64(len(times)), "found")
	if wrong > 0 {
		b.Errorf("%d matches of other images", wrong)
	}
}

func singleKinds() [][]reposts.Kind {
	var out [][]reposts.Kind
	for _, k := range reposts.Singles {
		out = append(out, []reposts.Kind{k})
	}
	return out
}
