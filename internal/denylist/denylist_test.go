package denylist

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/sink/embedded"
)

func openList(t *testing.T, url string) *List {
	t.Helper()
	_, js := testutil.ConnectJS(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := Open(ctx, js, Config{SnapshotEvery: -1})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(l.Close)
	return l
}

func TestDenyIsSeenEverywhereAfterSync(t *testing.T) {
	ns := testutil.StartNATS(t, "")
	a, b := openList(t, ns.ClientURL()), openList(t, ns.ClientURL())
	g0 := b.Generation()
	if err := a.Deny(context.Background(), []domain.Takedown{{PostID: "p1", Source: "admin", Reason: "spam"}}); err != nil {
		t.Fatal(err)
	}
	if !a.Denied("p1") {
		t.Fatal("Deny returned but the local copy does not hold the id")
	}
	if err := b.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !b.Denied("p1") || b.Denied("p2") {
		t.Fatalf("after Sync: Denied(p1)=%v Denied(p2)=%v, want true false", b.Denied("p1"), b.Denied("p2"))
	}
	if b.Generation() == g0 {
		t.Fatalf("generation %q did not move with a takedown", g0)
	}
	// A retried request records nothing twice.
	seq := a.Seq()
	if err := a.Deny(context.Background(), []domain.Takedown{{PostID: "p1", Source: "admin", Reason: "spam"}}); err != nil {
		t.Fatal(err)
	}
	if a.Seq() != seq {
		t.Fatalf("a retried takedown moved the list from %d to %d", seq, a.Seq())
	}
}

func TestLargeDenyIsChunkedAndSnapshotRoundTrips(t *testing.T) {
	ns := testutil.StartNATS(t, "")
	a := openList(t, ns.ClientURL())
	var ts []domain.Takedown
	for i := range 2500 {
		ts = append(ts, domain.Takedown{PostID: fmt.Sprintf("post-%05d", i), Source: "admin"})
	}
	if err := a.Deny(context.Background(), ts); err != nil {
		t.Fatal(err)
	}
	if a.Len() != 2500 || a.Seq() != 3 {
		t.Fatalf("after 2,500 takedowns: %d ids in %d changes, want 2500 in 3", a.Len(), a.Seq())
	}
	if _, err := a.f.SnapshotNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	b := openList(t, ns.ClientURL())
	if b.Len() != 2500 || !b.Denied("post-02499") {
		t.Fatalf("a list loaded from the snapshot holds %d ids", b.Len())
	}
}

func TestSnapshotFormat(t *testing.T) {
	s := &state{ids: map[string]int64{"a": 1, "bé": -5, "": 0}}
	write, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := write(&buf); err != nil {
		t.Fatal(err)
	}
	r := &state{}
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if len(r.ids) != 3 || r.ids["bé"] != -5 {
		t.Fatalf("restored %v", r.ids)
	}
	for _, bad := range [][]byte{nil, []byte("XDL2"), []byte("XDL1\x05ab")} {
		if err := r.Restore(bytes.NewReader(bad)); err == nil {
			t.Errorf("Restore(%q) accepted a bad snapshot", bad)
		}
	}
	if err := r.Apply([]byte(`{"v":2,"deny":[]}`)); err == nil {
		t.Error("Apply accepted a change of an unknown version")
	}
}

// A new list (fresh NATS data) takes the takedowns an index already holds.
func TestSeedFromTheIndexDenyRows(t *testing.T) {
	ctx := context.Background()
	ix, err := embedded.Open(ctx, embedded.Options{Path: filepath.Join(t.TempDir(), "ix.db"), Dim: 2, ModelVersion: "m"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	if _, err := ix.Apply(ctx, []domain.Change{{PostID: "old1", Delete: true, Deny: true}, {PostID: "old2", Delete: true, Deny: true}}); err != nil {
		t.Fatal(err)
	}
	ns := testutil.StartNATS(t, "")
	l := openList(t, ns.ClientURL())
	n, err := l.Seed(ctx, ix)
	if err != nil || n != 2 {
		t.Fatalf("Seed = %d, %v; want 2", n, err)
	}
	if !l.Denied("old1") || !l.Denied("old2") {
		t.Fatal("seeded ids are not denied")
	}
	// A list with history is not seeded again.
	if n, err := l.Seed(ctx, ix); err != nil || n != 0 {
		t.Fatalf("second Seed = %d, %v; want 0", n, err)
	}
}
