package clusters

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/xmodal/xmodal/internal/testutil"
)

const testThreshold = 12

// t0 is the time of the test posts.
var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func openTest(t *testing.T, path string) (*bolt.DB, *Store) {
	t.Helper()
	db, err := bolt.Open(path, 0o644, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Update(Init); err != nil {
		t.Fatal(err)
	}
	l, err := NewPDQLinker(testThreshold)
	if err != nil {
		t.Fatal(err)
	}
	var s *Store
	if err := db.View(func(tx *bolt.Tx) error {
		var err error
		s, err = Open(tx, Options{Linker: l})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return db, s
}

// sig returns a random 32-byte hash from rng.
func sig(rng *rand.Rand) []byte {
	b := make([]byte, 32)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// flip returns s with the given bits flipped.
func flip(s []byte, bits ...int) []byte {
	o := append([]byte(nil), s...)
	for _, b := range bits {
		o[b/8] ^= 1 << (b % 8)
	}
	return o
}

func span(lo, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = lo + i
	}
	return out
}

func join(t *testing.T, db *bolt.DB, s *Store, post string, at time.Time, sg []byte) uint64 {
	t.Helper()
	var cid uint64
	if err := s.Update(db, func(tx *Txn) error {
		var err error
		cid, err = tx.Join(post, at, sg)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return cid
}

func leave(t *testing.T, db *bolt.DB, s *Store, post string) {
	t.Helper()
	if err := s.Update(db, func(tx *Txn) error { return tx.Leave(post) }); err != nil {
		t.Fatal(err)
	}
}

func check(t *testing.T, db *bolt.DB, s *Store) {
	t.Helper()
	if err := db.View(s.Check); err != nil {
		t.Fatal(err)
	}
}

func TestUnionFind(t *testing.T) {
	u := NewUnionFind(6)
	for _, p := range [][2]int{{0, 1}, {2, 3}, {1, 3}, {4, 4}} {
		u.Union(p[0], p[1])
	}
	want := []int{0, 0, 0, 0, 4, 5}
	for i, c := range u.Components() {
		if c != want[i] {
			t.Fatalf("components %v, want %v", u.Components(), want)
		}
	}
	if u.Size(3) != 4 || u.Size(5) != 1 {
		t.Fatalf("sizes %d %d, want 4 1", u.Size(3), u.Size(5))
	}
	if _, merged := u.Union(0, 2); merged {
		t.Fatal("Union of one set reported a merge")
	}
}

// TestMerges: A ~ B, C ~ D (two clusters), then B moves next to C (B ~ C):
// one cluster; a post linking two clusters merges them into the larger.
func TestMerges(t *testing.T) {
	db, s := openTest(t, filepath.Join(t.TempDir(), "c.db"))
	rng := rand.New(rand.NewPCG(1, 2))
	a := sig(rng)
	c := flip(a, span(0, 20)...) // d(A, C) = 20: not linked
	b := flip(a, span(100, 10)...)
	d := flip(c, span(200, 10)...)
	ca := join(t, db, s, "A", t0, a)
	if cb := join(t, db, s, "B", t0.Add(time.Minute), b); cb != ca {
		t.Fatalf("B joined %d, A is in %d", cb, ca)
	}
	cc := join(t, db, s, "C", t0.Add(2*time.Minute), c)
	if cd := join(t, db, s, "D", t0.Add(3*time.Minute), d); cd != cc || cc == ca {
		t.Fatalf("C in %d, D in %d, A in %d: want C and D together, apart from A", cc, cd, ca)
	}
	// B's new version lies 10 bits from A and 10 from C: B ~ A and B ~ C.
	b2 := flip(a, span(0, 10)...)
	join(t, db, s, "B", t0.Add(time.Minute), b2)
	part := s.Partition()
	if part["A"] != part["B"] || part["B"] != part["C"] || part["C"] != part["D"] {
		t.Fatalf("partition %v: want one cluster", part)
	}
	in, _ := s.Get(part["A"])
	if in.Size != 4 || in.Rep != "A" || !in.FirstSeen().Equal(t0) || !in.LastSeen().Equal(t0.Add(3*time.Minute)) {
		t.Fatalf("cluster %+v: want size 4, representative A, first %v", in, t0)
	}
	if st := s.Stats(); st.Clusters != 1 || st.Merges != 1 || st.Largest != 4 {
		t.Fatalf("stats %+v: want 1 cluster, 1 merge, largest 4", st)
	}
	check(t, db, s)

	// A bigger cluster keeps its id when a post links it to a smaller one.
	e := sig(rng)
	ce := join(t, db, s, "E", t0, e)
	join(t, db, s, "X", t0.Add(time.Hour), flip(a, span(100, 5)...)) // joins the big cluster
	big := s.ClusterOf("A")
	e2 := flip(a, span(150, 11)...)
	join(t, db, s, "E", t0, e2) // E's new version links it to A's cluster
	if got := s.ClusterOf("E"); got != big {
		t.Fatalf("E in %d, want the big cluster %d (its old one was %d)", got, big, ce)
	}
	if _, ok := s.Get(ce); ok {
		t.Fatalf("cluster %d still exists after its only member left", ce)
	}
	check(t, db, s)
}

// TestTakedownSplits: A ~ B ~ C with A and C not linked; taking B down
// splits the cluster, the larger part keeping the id.
func TestTakedownSplits(t *testing.T) {
	db, s := openTest(t, filepath.Join(t.TempDir(), "c.db"))
	rng := rand.New(rand.NewPCG(3, 4))
	a := sig(rng)
	b := flip(a, span(0, 10)...)
	c := flip(b, span(10, 10)...) // d(A, C) = 20
	a2 := flip(a, span(50, 3)...)
	join(t, db, s, "A", t0.Add(time.Minute), a)
	join(t, db, s, "B", t0, b)
	join(t, db, s, "C", t0.Add(2*time.Minute), c)
	join(t, db, s, "A2", t0.Add(3*time.Minute), a2)
	id := s.ClusterOf("A")
	if in, _ := s.Get(id); in.Size != 4 || in.Rep != "B" {
		t.Fatalf("cluster %+v: want 4 members, representative B", in)
	}
	leave(t, db, s, "B")
	part := s.Partition()
	if part["A"] != id || part["A2"] != id {
		t.Fatalf("partition %v: the larger part {A, A2} keeps id %d", part, id)
	}
	if part["C"] == id || part["C"] == 0 {
		t.Fatalf("partition %v: C should be alone in a new cluster", part)
	}
	if _, ok := part["B"]; ok {
		t.Fatal("B is still a member after its takedown")
	}
	in, _ := s.Get(id)
	if in.Size != 2 || in.Rep != "A" {
		t.Fatalf("cluster %+v: want 2 members, representative A (B left)", in)
	}
	if st := s.Stats(); st.Splits != 1 {
		t.Fatalf("stats %+v: want 1 split", st)
	}
	check(t, db, s)
	// A takedown that is not the only link leaves the cluster whole.
	leave(t, db, s, "A2")
	if s.ClusterOf("A") != id {
		t.Fatal("A changed cluster when A2 left")
	}
	check(t, db, s)
}

// TestSplitLimit: above the limit a takedown leaves the cluster whole.
func TestSplitLimit(t *testing.T) {
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, "c.db"), 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(Init); err != nil {
		t.Fatal(err)
	}
	l, _ := NewPDQLinker(testThreshold)
	var s *Store
	if err := db.View(func(tx *bolt.Tx) (err error) { s, err = Open(tx, Options{Linker: l, SplitLimit: 2}); return }); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	a := sig(rng)
	b := flip(a, span(0, 10)...)
	c := flip(b, span(10, 10)...)
	join(t, db, s, "A", t0, a)
	join(t, db, s, "B", t0, b)
	join(t, db, s, "C", t0, c)
	join(t, db, s, "D", t0, flip(a, 90))
	leave(t, db, s, "B")
	if s.ClusterOf("A") != s.ClusterOf("C") {
		t.Fatal("the cluster split above the split limit")
	}
	check(t, db, s)
}

// TestAbortedMergeLeavesNoTrace: a transaction that fails midway through a
// merge (after relabelling) leaves the file and memory as they were.
func TestAbortedMergeLeavesNoTrace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	db, s := openTest(t, path)
	rng := rand.New(rand.NewPCG(7, 8))
	a := sig(rng)
	c := flip(a, span(0, 20)...)
	join(t, db, s, "A", t0, a)
	join(t, db, s, "C", t0, c)
	before := s.Partition()
	boom := errors.New("crash")
	err := s.Update(db, func(tx *Txn) error {
		if _, err := tx.Join("B", t0, flip(a, span(0, 10)...)); err != nil {
			return err
		}
		if len(tx.Changed()) < 2 {
			t.Errorf("the bridging join relabelled nothing: %v", tx.Changed())
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v", err)
	}
	if got := s.Partition(); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("memory after abort %v, before %v", got, before)
	}
	check(t, db, s)
	db.Close()
	db2, s2 := openTest(t, path)
	if got := s2.Partition(); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("file after abort %v, before %v", got, before)
	}
	check(t, db2, s2)
}

// planted returns n posts in planted groups: centres and members within a
// few bits of their centre (so links chain within a group), plus
// unrelated posts.
func planted(rng *rand.Rand, groups, per, singles int) (map[string][]byte, []string) {
	sigs := map[string][]byte{}
	var order []string
	for g := range groups {
		c := sig(rng)
		for i := range per {
			bits := make([]int, 0, 8)
			for range rng.IntN(8) {
				bits = append(bits, rng.IntN(256))
			}
			p := fmt.Sprintf("g%d-%d", g, i)
			sigs[p] = flip(c, bits...)
			order = append(order, p)
		}
	}
	for i := range singles {
		p := fmt.Sprintf("s%d", i)
		sigs[p] = sig(rng)
		order = append(order, p)
	}
	return sigs, order
}

// TestOrderIndependent: in any arrival order and batching, with takedowns,
// the clusters are the connected components of the link graph.
// joinInBatches joins the posts of order (with their signatures in sigs, at
// random times) in transactions of 1..most posts.
func joinInBatches(t *testing.T, db *bolt.DB, s *Store, rng *rand.Rand, order []string, sigs map[string][]byte, most int) {
	t.Helper()
	for len(order) > 0 {
		n := min(len(order), 1+rng.IntN(most))
		batch := order[:n]
		order = order[n:]
		if err := s.Update(db, func(tx *Txn) error {
			for _, p := range batch {
				if _, err := tx.Join(p, t0.Add(time.Duration(rng.IntN(3600))*time.Second), sigs[p]); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOrderIndependent(t *testing.T) {
	for seed := uint64(1); seed <= 4; seed++ {
		t.Run(strconv.Itoa(int(seed)), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			sigs, order := planted(rng, 12, 6, 20)
			// Bridges: a post 10 bits from a group's first member and 10 from
			// a post 20 bits away, itself with a few near copies.
			for i := 0; i < 3; i++ {
				a := sigs[fmt.Sprintf("g%d-0", i)]
				far := flip(a, span(8*i, 20)...)
				sigs[fmt.Sprintf("far%d", i)] = far
				sigs[fmt.Sprintf("far%d-copy", i)] = flip(far, 255)
				sigs[fmt.Sprintf("bridge%d", i)] = flip(a, span(8*i, 10)...)
				order = append(order, fmt.Sprintf("far%d", i), fmt.Sprintf("far%d-copy", i), fmt.Sprintf("bridge%d", i))
			}
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
			db, s := openTest(t, filepath.Join(t.TempDir(), "c.db"))
			joinInBatches(t, db, s, rng, order, sigs, 9)
			for _, p := range []string{"g0-0", "g3-2", "g5-5", "s1"} {
				leave(t, db, s, p)
				delete(sigs, p)
			}
			if err := testutil.SamePartition(s.Partition(), components(sigs)); err != nil {
				t.Fatal(err)
			}
			check(t, db, s)
		})
	}
}

func TestMembersPagedNewestFirst(t *testing.T) {
	db, s := openTest(t, filepath.Join(t.TempDir(), "c.db"))
	rng := rand.New(rand.NewPCG(9, 10))
	a := sig(rng)
	for i := range 7 {
		join(t, db, s, fmt.Sprintf("p%d", i), t0.Add(time.Duration(i%4)*time.Minute), flip(a, i))
	}
	id := s.ClusterOf("p0")
	var got []string
	var cur []byte
	for pages := 0; ; pages++ {
		var pg Page
		if err := db.View(func(tx *bolt.Tx) (err error) { pg, err = s.Members(tx, id, 3, cur); return }); err != nil {
			t.Fatal(err)
		}
		if len(pg.Members) > 3 || pages > 5 {
			t.Fatalf("page of %d members (page %d)", len(pg.Members), pages)
		}
		for _, m := range pg.Members {
			got = append(got, m.Post)
		}
		if pg.Next == nil {
			break
		}
		cur = pg.Next
	}
	want := "[p3 p6 p2 p5 p1 p4 p0]" // by time descending, ties by post id descending
	if fmt.Sprint(got) != want {
		t.Fatalf("members %v, want %s", got, want)
	}
	if err := db.View(func(tx *bolt.Tx) error { _, err := s.Members(tx, 999, 3, nil); return err }); !errors.Is(err, ErrNoCluster) {
		t.Fatalf("unknown cluster: %v", err)
	}
	if err := db.View(func(tx *bolt.Tx) error { _, err := s.Members(tx, id, 3, []byte("junk")); return err }); !errors.Is(err, ErrBadCursor) {
		t.Fatalf("bad cursor: %v", err)
	}
}

// TestTrendingBurst: a cluster that bursts in the last hour ranks first; a
// steady large cluster and a cluster of two do not.
func TestTrendingBurst(t *testing.T) {
	db, s := openTest(t, filepath.Join(t.TempDir(), "c.db"))
	rng := rand.New(rand.NewPCG(11, 12))
	now := t0.Add(48 * time.Hour)
	steady, burst, pair, grow := sig(rng), sig(rng), sig(rng), sig(rng)
	err := s.Update(db, func(tx *Txn) error {
		n := 0
		add := func(c []byte, name string, at time.Time) error {
			n++
			_, err := tx.Join(fmt.Sprintf("%s%d", name, n), at, flip(c, rng.IntN(256)))
			return err
		}
		for i := range 2000 { // steady: 1,000 an hour for the last two hours
			if err := add(steady, "steady", now.Add(-time.Duration(i)*7200*time.Second/2000)); err != nil {
				return err
			}
		}
		for i := range 60 { // burst: 60 in the last hour, 1 before
			if err := add(burst, "burst", now.Add(-time.Duration(i)*time.Minute)); err != nil {
				return err
			}
		}
		if err := add(burst, "burst", now.Add(-90*time.Minute)); err != nil {
			return err
		}
		for i := range 2 { // pair: 0 -> 2
			if err := add(pair, "pair", now.Add(-time.Duration(i)*time.Minute)); err != nil {
				return err
			}
		}
		for i := range 120 { // grow: 20 -> 40
			at := now.Add(-time.Duration(i) * time.Minute)
			if i%3 == 0 && i < 60 {
				continue
			}
			if i >= 60 && i%3 != 0 {
				continue
			}
			if err := add(grow, "grow", at); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := s.Trending(TrendingQuery{Now: now, Window: time.Hour, MinCount: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(tr) == 0 || !strings.HasPrefix(tr[0].Rep, "burst") {
		t.Fatalf("trending %+v: want the burst cluster first", tr)
	}
	if tr[0].Current != 60 || tr[0].Previous != 1 {
		t.Fatalf("burst counts %d/%d, want 60/1", tr[0].Current, tr[0].Previous)
	}
	for i, x := range tr {
		if x.Size >= 2000 && i < 2 {
			t.Fatalf("the steady cluster ranks %d: %+v", i, tr)
		}
		if x.Size == 2 && i < 2 {
			t.Fatalf("the pair ranks %d: %+v", i, tr)
		}
	}
	if len(tr) < 2 || tr[1].Current != 40 {
		t.Fatalf("trending %+v: want the growing cluster second", tr)
	}
	if _, err := s.Trending(TrendingQuery{Now: now}); !errors.Is(err, ErrBadTrendingQuery) {
		t.Fatalf("no window: %v", err)
	}
}

// TestKilledMidMerge runs merges in a child process, kills it with SIGKILL
// at a random moment, reopens the file and checks that it is consistent and
// its clusters are the components of its members.
func TestKilledMidMerge(t *testing.T) {
	if p := os.Getenv("XMODAL_CLUSTERS_CHILD"); p != "" {
		childMerges(t, p)
		return
	}
	bridged := 0
	for round := range 3 {
		path := filepath.Join(t.TempDir(), "c.db")
		cmd := exec.Command(os.Args[0], "-test.run=^TestKilledMidMerge$")
		cmd.Env = append(os.Environ(), "XMODAL_CLUSTERS_CHILD="+path)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Wait until the child has written something, then kill it.
		deadline := time.Now().Add(20 * time.Second)
		for {
			if fi, err := os.Stat(path); err == nil && fi.Size() > 256<<10 {
				break
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatal("the child wrote nothing in 20 s")
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(50+100*round) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		db, s := openTest(t, path)
		check(t, db, s)
		sigs := map[string][]byte{}
		if err := db.View(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMembers).ForEach(func(k, v []byte) error {
				m, err := decodeMember(v)
				sigs[string(k)] = m.Sig
				return err
			})
		}); err != nil {
			t.Fatal(err)
		}
		if len(sigs) == 0 {
			t.Fatal("no members survived")
		}
		if err := testutil.SamePartition(s.Partition(), components(sigs)); err != nil {
			t.Fatalf("after the kill (%d members): %v", len(sigs), err)
		}
		t.Logf("round %d: %d members, %d clusters after SIGKILL", round, len(sigs), s.Stats().Clusters)
		// A bridged pair: one cluster holding copies of both centres of a pair.
		part := s.Partition()
		centres := childCentres()
		for p, sg := range sigs {
			for i := 0; i < len(centres); i += 2 {
				if l, _ := NewPDQLinker(3); l != nil {
					if ok, _ := l.Linked(sg, centres[i]); !ok {
						continue
					}
				}
				for q, sq := range sigs {
					if part[q] != part[p] {
						continue
					}
					l, _ := NewPDQLinker(3)
					if ok, _ := l.Linked(sq, centres[i+1]); ok {
						bridged++
						break
					}
				}
			}
			if bridged > 0 {
				break
			}
		}
	}
	if bridged == 0 {
		t.Error("no cluster holds copies of both centres of a pair: the child's bridges merged nothing")
	}
}

// childCentres are the child's centres: pairs 20 bits apart, bridged by
// posts 10 bits from each.
func childCentres() [][]byte {
	rng := rand.New(rand.NewPCG(77, 1))
	centres := make([][]byte, 40)
	for i := 0; i < len(centres); i += 2 {
		centres[i] = sig(rng)
		centres[i+1] = flip(centres[i], span(0, 20)...)
	}
	return centres
}

// childMerges joins posts forever in small batches that bridge clusters.
func childMerges(t *testing.T, path string) {
	db, s := openTest(t, path)
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), 1))
	centres := childCentres()
	n := 0
	for {
		err := s.Update(db, func(tx *Txn) error {
			for range 8 {
				n++
				c := centres[rng.IntN(len(centres))]
				if n%7 == 0 {
					c = flip(centres[2*rng.IntN(len(centres)/2)], span(0, 10)...)
				}
				if _, err := tx.Join(fmt.Sprintf("p%d", n), t0, flip(c, rng.IntN(256), rng.IntN(256), rng.IntN(256))); err != nil {
					return err
				}
				if n%5 == 0 {
					if err := tx.Leave(fmt.Sprintf("p%d", rng.IntN(n)+1)); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// components is the reference partition at testThreshold.
func components(sigs map[string][]byte) map[string]int {
	l, _ := NewPDQLinker(testThreshold)
	return testutil.Components(sigs, func(a, b []byte) bool { ok, _ := l.Linked(a, b); return ok })
}
