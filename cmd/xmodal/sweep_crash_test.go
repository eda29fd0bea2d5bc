package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
	"github.com/xmodal/xmodal/sink/matching"
)

// TestSweepKill9Resumes: `xmodal run` is killed with SIGKILL in the middle
// of a retro sweep (crash point sweep-lookup: an entry looked up, its events
// not yet published). Started again on the same data dir, it resumes the
// sweep from its checkpoint (sweep-status: RESUMED at 100) and finishes it;
// the stream then holds exactly the expected (post, entry) events, each
// once: what the near-duplicate search finds for each entry, nothing else.
func TestSweepKill9Resumes(t *testing.T) {
	requireCrashBuild(t)
	if testing.Short() {
		t.Skip("starts xmodal processes")
	}
	const posts, crashAt = 240, 130
	dir := t.TempDir()
	listen := lowPort(t)
	c := startChild(t, dir, listen, "XMODAL_CRASH_AT=sweep-lookup:"+fmt.Sprint(crashAt))
	nc := connect(t, listen, c)
	js, _ := jetstream.New(nc)
	waitService(t, nc)
	ctx := context.Background()
	var ids []string
	for i := range posts {
		id := fmt.Sprintf("img-%03d", i)
		b, _ := json.Marshal(domain.Post{Schema: 1, ID: id, CreatedAt: time.Date(2026, 11, 1, 0, 0, i, 0, time.UTC), Image: &domain.ImageRef{Data: tinyPNG(1000 + i)}})
		if err := ingest.Publish(ctx, js, "xmodal.posts", id, b); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	cl := client.New(nc)
	// Every image indexed, with its PDQ hash.
	pdqs := map[string]bool{}
	testutil.CheckFor(t, 3*time.Minute, 200*time.Millisecond, func() error {
		clear(pdqs)
		n := 0
		for from := 0; from < len(ids); from += 25 { // under a get page (100 records)
			res, err := cl.Get(ctx, &query.GetRequest{PostIDs: ids[from:min(from+25, len(ids))]})
			if err != nil {
				return err
			}
			for _, r := range res.Records {
				if r.Modality == domain.ModalityImage && r.PDQ != "" {
					pdqs[r.PDQ] = true
					n++
				}
			}
		}
		if n != posts {
			return fmt.Errorf("%d of %d images indexed", n, posts)
		}
		return nil
	})
	if len(pdqs) < crashAt+20 {
		t.Fatalf("only %d distinct PDQ hashes among %d images: the sweep would end before the crash point", len(pdqs), posts)
	}
	// The expected events: each entry's near-duplicates at the bank's threshold.
	want := map[string]bool{}
	var entries []banks.Entry
	thr := banks.DefaultPDQThreshold
	for h := range pdqs {
		e := banks.Entry{Type: banks.SignalPDQ, Value: h}
		e.ID = banks.EntryID(banks.SignalPDQ, "", h)
		entries = append(entries, e)
		res, err := cl.NearDup(ctx, &query.NearDupRequest{PDQ: h, MaxDistance: &thr, K: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range res.Matches {
			want[m.PostID+"/"+e.ID] = true
		}
	}
	if err := cl.Call(ctx, "admin.banks.create", query.BankRequest{Name: "late", Actor: "t"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := cl.Call(ctx, "admin.banks.add", query.BankAddRequest{Bank: "late", Entries: entries}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-c.done:
		c.done <- err // for the cleanup
	case <-time.After(2 * time.Minute):
		t.Fatal("xmodal was not killed at the crash point")
	}
	if out := c.out.String(); !strings.Contains(out, "killing the process at sweep-lookup") {
		t.Fatalf("xmodal exited, but not at the crash point:\n%s", out)
	}
	nc.Close()

	c2 := startChild(t, dir, listen)
	nc2 := connect(t, listen, c2)
	waitService(t, nc2)
	cl2 := client.New(nc2)
	var st banks.SweepStatus
	testutil.CheckFor(t, 2*time.Minute, 200*time.Millisecond, func() error {
		var res query.SweepsResponse
		if err := cl2.Call(ctx, "banks.sweeps", struct{}{}, &res); err != nil {
			return err
		}
		if len(res.Sweeps) != 1 || res.Sweeps[0].State != matching.SweepDone {
			return fmt.Errorf("sweeps: %+v", res.Sweeps)
		}
		st = res.Sweeps[0]
		return nil
	})
	// The entries between the checkpoint and the crash had their events
	// made and their matches added to the records before it: looked up
	// again, they find records that carry them (known, no new event).
	if st.Resumed != 100 || st.Done != len(entries) || st.Matches+st.Known != len(want) || st.Known == 0 {
		t.Fatalf("the resumed sweep: %+v; want resumed at 100 (the checkpoint before lookup %d), %d entries, %d matches and known (some known)", st, crashAt, len(entries), len(want))
	}
	js2, _ := jetstream.New(nc2)
	evs, err := streamEvents(ctx, js2)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, e := range evs {
		got[e.PostID+"/"+e.EntryID]++
	}
	for k := range want {
		if got[k] != 1 {
			t.Errorf("event %s: %d copies, want 1", k, got[k])
		}
	}
	for k := range got {
		if !want[k] {
			t.Errorf("unexpected event %s", k)
		}
	}
	t.Logf("%d entries, %d expected events, killed at lookup %d, resumed at %d", len(entries), len(want), crashAt, st.Resumed)
}

// lowPort returns a free loopback address whose port is below the ephemeral
// range (32768 up), so that no client's outgoing connection takes it between
// the two starts of the child.
func lowPort(t *testing.T) string {
	t.Helper()
	for range 100 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no free port in 20000-31999")
	return ""
}
