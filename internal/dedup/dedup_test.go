package dedup

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xmodal/xmodal/internal/clusters"
	"github.com/xmodal/xmodal/internal/hamming"
)

const thr = 16

// plantedItems: groups of near-duplicates (members within a few bits of a
// centre, so they chain), chains that link only through a middle post, and
// unrelated posts; in a shuffled order.
func plantedItems(seed uint64, groups, per, singles int) []Item {
	rng := rand.New(rand.NewPCG(seed, 3))
	rnd := func() hamming.Code {
		return hamming.Code{rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()}
	}
	flip := func(c hamming.Code, bits ...int) hamming.Code {
		for _, b := range bits {
			c[b/64] ^= 1 << (b % 64)
		}
		return c
	}
	var items []Item
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	add := func(p string, c hamming.Code) {
		items = append(items, Item{Post: p, At: t0 + int64(rng.IntN(1e6))*1e6, Sig: c})
	}
	for g := range groups {
		c := rnd()
		for i := range per {
			add(fmt.Sprintf("g%d-%d", g, i), flip(c, rng.IntN(256), rng.IntN(256), rng.IntN(256), rng.IntN(256)))
		}
		if g%5 == 0 { // a chain: far (24 bits) linked through a middle post (12 from each)
			bits := make([]int, 24)
			for i := range bits {
				bits[i] = (7*i + g) % 256
			}
			add(fmt.Sprintf("g%d-far", g), flip(c, bits...))
			add(fmt.Sprintf("g%d-mid", g), flip(c, bits[:12]...))
		}
	}
	for i := range singles {
		add(fmt.Sprintf("s%d", i), rnd())
	}
	rng.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	return items
}

// reference: components by comparing every pair.
func reference(items []Item) []int {
	u := clusters.NewUnionFind(len(items))
	for i := range items {
		for j := i + 1; j < len(items); j++ {
			if hamming.Distance(items[i].Sig, items[j].Sig) <= thr {
				u.Union(i, j)
			}
		}
	}
	return u.Components()
}

func equalLabels(t *testing.T, got *clusters.UnionFind, want []int) {
	t.Helper()
	g := got.Components()
	for i := range want {
		if g[i] != want[i] {
			t.Fatalf("item %d: component %d, want %d", i, g[i], want[i])
		}
	}
}

func TestComponentsExact(t *testing.T) {
	items := plantedItems(1, 60, 8, 500)
	want := reference(items)
	for _, tc := range []struct {
		name string
		opt  Options
	}{
		{"one index", Options{Threshold: thr}},
		{"blocks of 4096 (memory bound)", Options{Threshold: thr, MaxIndexBytes: 1}},
		{"one worker", Options{Threshold: thr, Workers: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uf, err := Components(context.Background(), items, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			equalLabels(t, uf, want)
		})
	}
	// The chains link: far and its group are one cluster through mid.
	uf, _ := Components(context.Background(), items, Options{Threshold: thr})
	idx := map[string]int{}
	for i, it := range items {
		idx[it.Post] = i
	}
	if uf.Find(idx["g0-far"]) != uf.Find(idx["g0-0"]) {
		t.Fatal("a chain through its middle post did not link")
	}
}

// TestMemoryBoundBlocks: with a bound below the posts' index, several blocks
// are searched, and the partition is the same.
func TestMemoryBoundBlocks(t *testing.T) {
	items := plantedItems(2, 500, 10, 6000) // 11,000+ posts: 3 blocks of 4096
	opt := Options{Threshold: thr, MaxIndexBytes: 4096 * BytesPerEntry}
	if got, one := opt.TotalSearches(len(items)), int64(len(items)); got <= one {
		t.Fatalf("%d searches with blocks, %d without: want more", got, one)
	}
	a, err := Components(context.Background(), items, opt)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Components(context.Background(), items, Options{Threshold: thr})
	if err != nil {
		t.Fatal(err)
	}
	equalLabels(t, a, b.Components())
}

// TestResumeAfterInterruption: a job stopped midway (after a checkpoint)
// resumes where it was and gives the partition of an uninterrupted run.
func TestResumeAfterInterruption(t *testing.T) {
	items := plantedItems(3, 300, 10, 8000)
	want, err := Components(context.Background(), items, Options{Threshold: thr})
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "checkpoint")
	ctx, cancel := context.WithCancel(context.Background())
	var stoppedAt int64
	opt := Options{Threshold: thr, MaxIndexBytes: 4096 * BytesPerEntry, Checkpoint: cp, CheckpointEvery: time.Nanosecond, Workers: 1,
		Progress: func(done, total int64) {
			if done > total/2 && stoppedAt == 0 {
				stoppedAt = done
				cancel()
			}
		}}
	if _, err := Components(ctx, items, opt); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	var firstReport int64 = -1
	opt.Progress = func(done, total int64) {
		if firstReport < 0 {
			firstReport = done
		}
	}
	got, err := Components(context.Background(), items, opt)
	if err != nil {
		t.Fatal(err)
	}
	equalLabels(t, got, want.Components())
	if firstReport < stoppedAt {
		t.Fatalf("the resumed run started over (first progress %d, stopped at %d)", firstReport, stoppedAt)
	}
	// A checkpoint of other posts is ignored: the run starts over.
	firstReport = -1
	if _, err := Components(context.Background(), items[1:], opt); err != nil {
		t.Fatal(err)
	}
	if firstReport > 2*2048 {
		t.Fatalf("a stale checkpoint was used (first progress %d)", firstReport)
	}
}

type memSource struct {
	items []Item
	part  map[string]uint64
}

func (m *memSource) DedupItems(ctx context.Context, since, until time.Time) ([]Item, error) {
	var out []Item
	for _, it := range m.items {
		at := time.Unix(0, it.At)
		if (since.IsZero() || !at.Before(since)) && (until.IsZero() || at.Before(until)) {
			out = append(out, it)
		}
	}
	return out, nil
}

func (m *memSource) Thumbnails(ctx context.Context, posts []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, p := range posts {
		out[p] = []byte("jpeg:" + p)
	}
	return out, nil
}

func (m *memSource) ClusterPartition() (map[string]uint64, int, bool) {
	return m.part, thr, m.part != nil
}

func TestManagerJob(t *testing.T) {
	items := plantedItems(4, 40, 6, 300)
	ref := reference(items)
	part := map[string]uint64{}
	for i, it := range items {
		part[it.Post] = uint64(ref[i]) + 1
	}
	src := &memSource{items: items, part: part}
	dir := t.TempDir()
	m, err := NewManager(src, dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	st, err := m.Start(Request{Threshold: thr})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start(Request{Threshold: thr}); err != nil && !errors.Is(err, ErrBusy) {
		t.Fatalf("second start: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for st.State == StateRunning {
		if time.Now().After(deadline) {
			t.Fatal("the job did not finish")
		}
		time.Sleep(10 * time.Millisecond)
		if st, err = m.Status(st.ID); err != nil {
			t.Fatal(err)
		}
	}
	if st.State != StateDone || st.Summary == nil {
		t.Fatalf("status %+v", st)
	}
	if st.Summary.Drift != 0 {
		t.Fatalf("drift %d against the reference partition", st.Summary.Drift)
	}
	// The JSON Lines hold every cluster of two or more, largest first.
	f, err := os.Open(filepath.Join(st.Dir, "clusters.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	lines, prev, members := 0, 1<<30, 0
	for sc.Scan() {
		var c Cluster
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			t.Fatal(err)
		}
		lines++
		if c.Size > prev || c.Size != len(c.Members) || c.Size < 2 || c.Representative != c.Members[0] || c.ID != lines {
			t.Fatalf("line %d: %+v", lines, c)
		}
		prev = c.Size
		members += c.Size
	}
	sizes := map[int]int{}
	for _, r := range ref {
		sizes[r]++
	}
	wantClusters, wantMembers := 0, 0
	for _, n := range sizes {
		if n >= 2 {
			wantClusters++
			wantMembers += n
		}
	}
	if lines != wantClusters || members != wantMembers || st.Summary.Clusters != wantClusters {
		t.Fatalf("%d clusters with %d members (summary %d), want %d with %d", lines, members, st.Summary.Clusters, wantClusters, wantMembers)
	}
	html, err := os.ReadFile(filepath.Join(st.Dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(html), "data:image/jpeg;base64,") || !strings.Contains(string(html), st.Summary.Largest[0].Representative) {
		t.Fatal("the report lacks thumbnails or the largest cluster")
	}
	// A drifted partition is reported: two posts of different components in
	// one incremental cluster.
	if ref[0] == ref[1] {
		t.Fatal("pick two posts of different components")
	}
	part[items[0].Post] = part[items[1].Post]
	st2, err := m.Start(Request{Threshold: thr})
	if err != nil {
		t.Fatal(err)
	}
	for st2.State == StateRunning {
		time.Sleep(10 * time.Millisecond)
		st2, _ = m.Status(st2.ID)
	}
	if st2.Summary == nil || st2.Summary.Drift == 0 {
		t.Fatalf("drift not reported: %+v", st2.Summary)
	}
	for _, bad := range []Request{{Threshold: -1}, {Threshold: 300}, {Threshold: 5, MaxMemoryMB: -1}, {Resume: "../x"},
		{Threshold: 5, Since: time.Unix(10, 0), Until: time.Unix(5, 0)}} {
		if _, err := m.Start(bad); !errors.Is(err, ErrBadRequest) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	if _, err := m.Start(Request{Resume: "dedup-nope"}); !errors.Is(err, ErrUnknownJob) {
		t.Errorf("resume unknown: %v", err)
	}
}

// TestKilledJobResumes: the job killed with SIGKILL midway (a checkpoint on
// disk) resumes from it and gives the partition of an uninterrupted run.
func TestKilledJobResumes(t *testing.T) {
	items := plantedItems(5, 400, 10, 12000)
	opt := Options{Threshold: thr, MaxIndexBytes: 4096 * BytesPerEntry, CheckpointEvery: time.Nanosecond, Workers: 1}
	if p := os.Getenv("XMODAL_DEDUP_CHILD"); p != "" {
		opt.Checkpoint = p
		opt.Progress = func(done, total int64) { time.Sleep(20 * time.Millisecond) } // slow enough to be killed midway
		_, _ = Components(context.Background(), items, opt)
		return
	}
	want, err := Components(context.Background(), items, Options{Threshold: thr})
	if err != nil {
		t.Fatal(err)
	}
	cp := filepath.Join(t.TempDir(), "checkpoint")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledJobResumes$")
	cmd.Env = append(os.Environ(), "XMODAL_DEDUP_CHILD="+cp)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := os.Stat(cp); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the child wrote no checkpoint in 60 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	var first int64 = -1
	opt.Checkpoint = cp
	opt.Progress = func(done, total int64) {
		if first < 0 {
			first = done
		}
	}
	got, err := Components(context.Background(), items, opt)
	if err != nil {
		t.Fatal(err)
	}
	equalLabels(t, got, want.Components())
	if first <= 2*2048 {
		t.Fatalf("the resumed run started at %d searches: the checkpoint was not used", first)
	}
	t.Logf("resumed after SIGKILL at %d of %d searches", first, opt.TotalSearches(len(items)))
}

// TestComponentsCanonical: items that carry a canonical dihedral hash link
// when any hash of one is within the threshold of any hash of the other
// (the incremental clusters' relation, clusters.PDQLinker), with and
// without the memory bound's blocks; a post alone stays out of Group's
// clusters of two or more though its canonical hash adds a node.
func TestComponentsCanonical(t *testing.T) {
	items := plantedItems(4, 40, 3, 300)
	rng := rand.New(rand.NewPCG(4, 4))
	rnd := func() hamming.Code { return hamming.Code{rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64()} }
	// Every post gets a canonical hash: the groups' share a value (with a
	// bit of noise); then mirrored copies, whose plain hashes are random,
	// join their group by it alone.
	canon := map[string]hamming.Code{}
	for i := range items {
		g, _, ok := strings.Cut(items[i].Post, "-")
		if !ok {
			items[i].Canon[0], items[i].Canon[1], items[i].NCanon = rnd(), rnd(), 2
			continue
		}
		c, seen := canon[g]
		if !seen {
			c = rnd()
			canon[g] = c
		}
		c[0] ^= 1 << uint(rng.IntN(64))
		items[i].Canon[0], items[i].NCanon = c, 1
		if i%3 == 0 { // a second canonical hash, in first place
			items[i].Canon[0], items[i].Canon[1], items[i].NCanon = rnd(), c, 2
		}
	}
	for g, c := range canon {
		items = append(items, Item{Post: g + "-mirrored", At: 1, Sig: rnd(), Canon: [2]hamming.Code{c}, NCanon: 1})
	}
	items = append(items, Item{Post: "plain-only", At: 2, Sig: items[0].Canon[0]}) // an old record whose hash is another's canonical
	linked := func(a, b Item) bool {
		as := append([]hamming.Code{a.Sig}, a.Canon[:a.NCanon]...)
		bs := append([]hamming.Code{b.Sig}, b.Canon[:b.NCanon]...)
		for _, x := range as {
			for _, y := range bs {
				if hamming.Distance(x, y) <= thr {
					return true
				}
			}
		}
		return false
	}
	u := clusters.NewUnionFind(len(items))
	for i := range items {
		for j := i + 1; j < len(items); j++ {
			if linked(items[i], items[j]) {
				u.Union(i, j)
			}
		}
	}
	want := u.Components()
	for _, opt := range []Options{{Threshold: thr}, {Threshold: thr, MaxIndexBytes: 1}} {
		uf, err := Components(context.Background(), items, opt)
		if err != nil {
			t.Fatal(err)
		}
		equalLabels(t, uf, want)
		idx := map[string]int{}
		for i, it := range items {
			idx[it.Post] = i
		}
		if uf.Find(idx["g1-mirrored"]) != uf.Find(idx["g1-0"]) {
			t.Fatal("a mirrored copy did not join its group by its canonical hash")
		}
		if uf.Find(idx["plain-only"]) != uf.Find(0) {
			t.Fatal("a plain hash equal to another post's canonical hash did not link")
		}
		for _, c := range Group(items, uf, 2) {
			if c.Size < 2 || len(c.Members) < 2 {
				t.Fatalf("Group(min 2) returned a cluster of %d: %v", c.Size, c.Members)
			}
		}
	}
}
