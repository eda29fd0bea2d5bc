package bankstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/internal/natsserver"
	"github.com/xmodal/xmodal/internal/replstate"
	"github.com/xmodal/xmodal/internal/testutil"
)

func openStore(t testing.TB, url string, every int) *Store {
	t.Helper()
	_, js := testutil.ConnectJS(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := Open(ctx, js, Config{SnapshotEvery: every})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func createOp(name string) banks.Op {
	return banks.Op{Kind: banks.OpCreateBank, Bank: name, Actor: "alice", Config: &banks.Bank{Name: name, Enabled: true, Labels: []string{"spam"}}}
}

func pdqHex(seed int) string {
	return pdq.Hash(sha256.Sum256([]byte(fmt.Sprint(seed)))).String()
}

func addOp(bank string, hexes ...string) banks.Op {
	op := banks.Op{Kind: banks.OpAddEntries, Bank: bank, Actor: "alice"}
	for _, h := range hexes {
		op.Entries = append(op.Entries, banks.Entry{Type: banks.SignalPDQ, Value: h, AddedAt: time.Unix(1700000000, 0), AddedBy: "alice"})
	}
	return op
}

func matchPDQ(t testing.TB, s *Store, hexs string) []banks.Match {
	t.Helper()
	h, err := pdq.ParseHex(hexs)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := s.Match(context.Background(), banks.Query{PDQ: []pdq.Hash{h}})
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// Two processes on one NATS server: an entry added through one is found by
// the other; a deleted bank disappears from both; a restart reloads the same
// state, from the stream and from a snapshot.
func TestTwoProcessesShareBanks(t *testing.T) {
	ns := testutil.StartNATS(t, t.TempDir())
	a, b := openStore(t, ns.ClientURL(), -1), openStore(t, ns.ClientURL(), -1)
	ctx := context.Background()
	if _, err := a.Do(ctx, createOp("known-spam")); err != nil {
		t.Fatal(err)
	}
	res, err := a.Do(ctx, addOp("known-spam", pdqHex(1), pdqHex(2)))
	if err != nil {
		t.Fatal(err)
	}
	if res.Added != 2 {
		t.Fatalf("add: %+v, want 2 added", res)
	}
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	ms := matchPDQ(t, b, pdqHex(2))
	if len(ms) != 1 || ms[0].Bank != "known-spam" || *ms[0].Distance != 0 {
		t.Fatalf("the other process matched %+v, want the entry of known-spam at distance 0", ms)
	}
	// A restart (a third process) reloads the same state from the stream.
	c := openStore(t, ns.ClientURL(), -1)
	if got := c.State().Banks(); len(got) != 1 || got[0].Entries != 2 {
		t.Fatalf("a new process loaded %+v, want known-spam with 2 entries", got)
	}
	// ... and from a snapshot, with the stream purged below it.
	if _, err := a.SnapshotNow(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Do(ctx, addOp("known-spam", pdqHex(3))); err != nil {
		t.Fatal(err)
	}
	d := openStore(t, ns.ClientURL(), -1)
	if got := d.State().Banks(); len(got) != 1 || got[0].Entries != 3 {
		t.Fatalf("a process loaded from the snapshot and the op after it holds %+v, want 3 entries", got)
	}
	if len(matchPDQ(t, d, pdqHex(3))) != 1 {
		t.Fatal("the entry added after the snapshot does not match in the reloaded process")
	}
	// A deleted bank disappears from every process.
	if _, err := b.Do(ctx, banks.Op{Kind: banks.OpDeleteBank, Bank: "known-spam", Actor: "bob"}); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*Store{"a": a, "b": b, "c": c, "d": d} {
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if got := s.State().Banks(); len(got) != 0 {
			t.Fatalf("process %s still holds %+v after the bank was deleted", name, got)
		}
		if ms := matchPDQ(t, s, pdqHex(1)); len(ms) != 0 {
			t.Fatalf("process %s still matches a deleted bank: %+v", name, ms)
		}
	}
}

// Bad operations are refused with the banks error kind before anything is
// recorded; two writers racing to create one bank: exactly one wins and the
// other gets ErrBankExists.
func TestDoRefusesAndOrdersWriters(t *testing.T) {
	ns := testutil.StartNATS(t, "")
	a, b := openStore(t, ns.ClientURL(), -1), openStore(t, ns.ClientURL(), -1)
	ctx := context.Background()
	cases := []struct {
		name string
		op   banks.Op
		want error
	}{
		{"add to a missing bank", addOp("nope", pdqHex(1)), banks.ErrBankNotFound},
		{"bad name", createOp("Bad.Name"), banks.ErrInvalidName},
		{"threshold out of range", banks.Op{Kind: banks.OpCreateBank, Bank: "t", Config: &banks.Bank{Name: "t", Thresholds: banks.Thresholds{PDQ: ptr(65)}}}, banks.ErrInvalidBank},
		{"malformed hex", addOp("x", "abc"), banks.ErrMalformedSignal},
	}
	if _, err := a.Do(ctx, createOp("x")); err != nil {
		t.Fatal(err)
	}
	seq := a.Seq()
	for _, c := range cases {
		if _, err := a.Do(ctx, c.op); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
	if a.Seq() != seq {
		t.Fatalf("refused operations were recorded: sequence %d -> %d", seq, a.Seq())
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, s := range []*Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Both pass the local check (neither sees the other's yet) or one
			// fails it: either way exactly one create applies.
			_, errs[i] = s.Do(ctx, banks.Op{Kind: banks.OpCreateBank, Bank: "race", Actor: fmt.Sprint(i), Config: &banks.Bank{Name: "race"}})
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, banks.ErrBankExists):
			t.Fatalf("racing create: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("racing creates: %v, want exactly one success", errs)
	}
	for _, s := range []*Store{a, b} {
		if err := s.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ia, _ := a.State().Bank("race")
	ib, _ := b.State().Bank("race")
	if ia.CreatedBy != ib.CreatedBy {
		t.Fatalf("the processes disagree on who created the bank: %q vs %q", ia.CreatedBy, ib.CreatedBy)
	}
}

func ptr[T any](v T) *T { return &v }

// An import of many entries in ops of 10,000 crosses the snapshot mark: the
// snapshot is written and purges the stream, and a process started after it
// holds every entry.
func TestLargeImportSnapshots(t *testing.T) {
	ns := testutil.StartNATS(t, "")
	a := openStore(t, ns.ClientURL(), 3)
	ctx := context.Background()
	if _, err := a.Do(ctx, createOp("big")); err != nil {
		t.Fatal(err)
	}
	bt := banks.OpBatcher{Bank: "big", Actor: "alice", At: time.Unix(1700000000, 0)}
	n := 0
	flush := func(op *banks.Op) {
		if op == nil {
			return
		}
		if _, err := a.Do(ctx, *op); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 25000 {
		op, err := bt.Add(banks.Entry{Type: banks.SignalMD5, Value: fmt.Sprintf("%032x", i), AddedAt: time.Unix(1700000000, 0)})
		if err != nil {
			t.Fatal(err)
		}
		flush(op)
		n++
	}
	flush(bt.Flush())
	testutil.CheckFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if s := a.Stats(); s.Snapshot == 0 {
			return fmt.Errorf("no snapshot yet (applied %d)", s.Applied)
		}
		return nil
	})
	b := openStore(t, ns.ClientURL(), -1)
	got := b.State().Banks()
	if len(got) != 1 || got[0].Entries != n {
		t.Fatalf("a new process holds %+v, want %d entries", got, n)
	}
	ms, err := b.Match(ctx, banks.Query{MD5: fmt.Sprintf("%032x", 24999)})
	if err != nil || len(ms) != 1 {
		t.Fatalf("match the last entry: %v %v", ms, err)
	}
}

// BenchmarkVisibility measures how long an entry added through one process
// takes to be matched by another that only follows the stream (no Sync),
// (follow-*), and how long an add plus the reader's Sync take (the read
// barrier: after it the entry always matches).
func BenchmarkVisibility(b *testing.B) {
	ns := testutil.StartNATS(b, "")
	w, r := openStore(b, ns.ClientURL(), -1), openStore(b, ns.ClientURL(), -1)
	ctx := context.Background()
	if _, err := w.Do(ctx, createOp("vis")); err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	var syncLat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		h := pdqHex(1000 + i)
		hash, _ := pdq.ParseHex(h)
		start := time.Now()
		if _, err := w.Do(ctx, addOp("vis", h)); err != nil {
			b.Fatal(err)
		}
		// Followed live: poll the reader's local copy.
		for {
			ms, _ := r.Match(ctx, banks.Query{PDQ: []pdq.Hash{hash}})
			if len(ms) > 0 && hasDistance0(ms) {
				break
			}
			time.Sleep(50 * time.Microsecond)
		}
		lat = append(lat, time.Since(start))
		// With the read barrier: a reader that syncs first always sees it.
		h2 := pdqHex(500000 + i)
		start = time.Now()
		if _, err := w.Do(ctx, addOp("vis", h2)); err != nil {
			b.Fatal(err)
		}
		if err := r.Sync(ctx); err != nil {
			b.Fatal(err)
		}
		syncLat = append(syncLat, time.Since(start))
		hash2, _ := pdq.ParseHex(h2)
		if ms, _ := r.Match(ctx, banks.Query{PDQ: []pdq.Hash{hash2}}); !hasDistance0(ms) {
			b.Fatal("after Sync the entry is not matched")
		}
	}
	b.StopTimer()
	q := func(d []time.Duration, p float64) float64 {
		s := append([]time.Duration(nil), d...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return float64(s[min(len(s)-1, int(p*float64(len(s))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(lat, 0.5), "follow-p50-ms")
	b.ReportMetric(q(lat, 0.99), "follow-p99-ms")
	b.ReportMetric(q(lat, 1), "follow-max-ms")
	b.ReportMetric(q(syncLat, 0.5), "add+sync-p50-ms")
	b.ReportMetric(q(syncLat, 0.99), "add+sync-p99-ms")
}

func hasDistance0(ms []banks.Match) bool {
	for _, m := range ms {
		if m.Distance != nil && *m.Distance == 0 {
			return true
		}
	}
	return false
}

// A query with several signals matches each, in State.Match's order, and
// counts a lookup per signal type; sizes are exported per bank and type.
func TestMatchSplitsAndCounts(t *testing.T) {
	ns := testutil.StartNATS(t, "")
	s := openStore(t, ns.ClientURL(), -1)
	reg := prometheus.NewRegistry()
	if err := s.Register(reg); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := s.Do(ctx, createOp("mixed")); err != nil {
		t.Fatal(err)
	}
	op := addOp("mixed", pdqHex(7))
	op.Entries = append(op.Entries,
		banks.Entry{Type: banks.SignalText, Value: "Buy now!", AddedAt: time.Unix(1, 0)},
		banks.Entry{Type: banks.SignalURL, Value: "https://evil.example/x", AddedAt: time.Unix(1, 0)})
	if _, err := s.Do(ctx, op); err != nil {
		t.Fatal(err)
	}
	h, _ := pdq.ParseHex(pdqHex(7))
	ms, err := s.Match(ctx, banks.Query{PDQ: []pdq.Hash{h}, Text: "buy NOW", URLs: []string{"http://evil.example/x"}})
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, m := range ms {
		types = append(types, string(m.SignalType))
	}
	if fmt.Sprint(types) != "[pdq text url]" {
		t.Fatalf("matched %v, want [pdq text url] (the URL once)", types)
	}
	if _, err := s.Match(ctx, banks.Query{PDQ: []pdq.Hash{h}, MD5: "zz"}); !errors.Is(err, banks.ErrInvalidQuery) {
		t.Fatalf("a query with a bad MD5: %v, want ErrInvalidQuery", err)
	}
	if _, err := s.Match(ctx, banks.Query{}); !errors.Is(err, banks.ErrNoSignal) {
		t.Fatalf("a query without a signal: %v, want ErrNoSignal", err)
	}
	if n := counterValue(s.m.lookups.WithLabelValues("pdq", "match")); n != 1 {
		t.Fatalf("pdq lookups with a match: %v, want 1", n)
	}
	if n := counterValue(s.m.lookups.WithLabelValues("url", "match")); n != 1 {
		t.Fatalf("url lookups with a match: %v, want 1", n)
	}
	// MatchAll: each query's answer is Match's, a bad query fails alone, and
	// the lookups are counted per signal type as Match counts them.
	qs := []banks.Query{{PDQ: []pdq.Hash{h}, Text: "buy NOW", URLs: []string{"http://evil.example/x"}}, {PDQ: []pdq.Hash{h}, MD5: "zz"}, {Text: "nothing known"}}
	res, err := s.MatchAll(ctx, qs)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || !reflect.DeepEqual(res[0].Matches, ms) || !errors.Is(res[1].Err, banks.ErrInvalidQuery) || res[2].Err != nil || len(res[2].Matches) != 0 {
		t.Fatalf("MatchAll: %+v", res)
	}
	for _, c := range []struct {
		t, outcome string
		want       float64
	}{{"pdq", "match", 2}, {"url", "match", 2}, {"text", "match", 2}, {"text", "none", 1}, {"pdq", "error", 1}, {"md5", "error", 1}} {
		if n := counterValue(s.m.lookups.WithLabelValues(c.t, c.outcome)); n != c.want {
			t.Errorf("%s lookups %s after MatchAll: %v, want %v", c.t, c.outcome, n, c.want)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sizes []string
	for _, mf := range mfs {
		if mf.GetName() != "xmodal_bank_entries" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			sizes = append(sizes, fmt.Sprintf("%v %v", ls, m.GetGauge().GetValue()))
		}
	}
	sort.Strings(sizes)
	if got := strings.Join(sizes, "; "); got != "[bank=mixed enabled=true signal_type=pdq] 1; [bank=mixed enabled=true signal_type=text] 1; [bank=mixed enabled=true signal_type=url] 1" {
		t.Fatalf("xmodal_bank_entries: %s", got)
	}
}

func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	return m.GetCounter().GetValue()
}

// A server without JetStream: Open fails with replstate.ErrNoJetStream,
// whose message names JetStream and how to enable it.
func TestOpenWithoutJetStream(t *testing.T) {
	ns, err := natsserver.Start(natsserver.Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	_, js := testutil.ConnectJS(t, ns.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = Open(ctx, js, Config{})
	if !errors.Is(err, replstate.ErrNoJetStream) || !strings.Contains(err.Error(), "JetStream") {
		t.Fatalf("Open on a server without JetStream: %v, want ErrNoJetStream naming it", err)
	}
}
