package matching

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
	"github.com/xmodal/xmodal/internal/bankstore"
	"github.com/xmodal/xmodal/internal/denylist"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/sink/embedded"
)

type fixture struct {
	w     *Writer
	ix    *embedded.Index
	js    jetstream.JetStream
	deny  *denylist.List
	banks *bankstore.Store
	deps  Deps
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ns := testutil.StartNATS(t, "")
	_, js := testutil.ConnectJS(t, ns.ClientURL())
	ctx := context.Background()
	bs, err := bankstore.Open(ctx, js, bankstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bs.Close)
	dl, err := denylist.Open(ctx, js, denylist.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dl.Close)
	ix, err := embedded.Open(ctx, embedded.Options{Path: filepath.Join(t.TempDir(), "ix.db"), Dim: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	evs, err := OpenEvents(ctx, js, StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	mem, err := OpenMemory(ctx, js, MemoryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mem.Close)
	deps := Deps{Next: ix, Banks: bs, Events: evs, Deny: dl, Memory: mem}
	w, err := New(deps)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{w: w, ix: ix, js: js, deny: dl, banks: bs, deps: deps}
}

func hashOf(seed string) pdq.Hash { return pdq.Hash(sha256.Sum256([]byte(seed))) }

func (f *fixture) bank(t *testing.T, name string, action banks.Action, entries ...banks.Entry) {
	t.Helper()
	ctx := context.Background()
	if _, err := f.banks.Do(ctx, banks.Op{Kind: banks.OpCreateBank, Bank: name, Config: &banks.Bank{Name: name, Enabled: true, Action: action, Labels: []string{"l-" + name}}}); err != nil {
		t.Fatal(err)
	}
	for i := range entries {
		entries[i].AddedAt = time.Unix(1, 0)
	}
	if _, err := f.banks.Do(ctx, banks.Op{Kind: banks.OpAddEntries, Bank: name, Entries: entries}); err != nil {
		t.Fatal(err)
	}
}

func post(id string, seq uint64, h pdq.Hash, text string) domain.Change {
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	return domain.Change{PostID: id, Seq: seq, Records: []domain.Record{
		{PK: domain.PrimaryKey(id, domain.ModalityImage), PostID: id, Modality: domain.ModalityImage, Author: "a", CreatedAt: at,
			ModelVersion: "m1", Vector: []float32{1, 0, 0, 0}, PDQ: h[:], PDQQuality: 90, MediaURL: "https://cdn.example/" + id + ".jpg"},
		{PK: domain.PrimaryKey(id, domain.ModalityText), PostID: id, Modality: domain.ModalityText, Author: "a", CreatedAt: at,
			ModelVersion: "m1", Vector: []float32{0, 1, 0, 0}, Text: text},
	}}
}

// events reads every event in the stream.
func (f *fixture) events(t *testing.T) []Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := f.js.Stream(ctx, Stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []Event
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var e Event
		if err := json.Unmarshal(m.Data, &e); err != nil {
			t.Fatal(err)
		}
		if m.Subject != Subject(e.Bank) || m.Header.Get(jetstream.MsgIDHeader) != e.ID {
			t.Fatalf("event %s on subject %s with id header %q", e.ID, m.Subject, m.Header.Get(jetstream.MsgIDHeader))
		}
		out = append(out, e)
	}
	return out
}

// Matching at ingest: a post matching a review bank is written and gets an
// event per (version, entry); a redelivery adds none; a block bank's match
// takes the post down (deny-list, no record) with its event; a disabled bank
// and an unrelated post produce nothing.
func TestMatchAtIngest(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	near := hashOf("banned")
	near[0] ^= 0x0f // 4 bits off
	f.bank(t, "review-me", banks.ActionReview,
		banks.Entry{Type: banks.SignalPDQ, Value: hashOf("banned").String()},
		banks.Entry{Type: banks.SignalText, Value: "Buy followers now"})
	f.bank(t, "blocked", banks.ActionBlock, banks.Entry{Type: banks.SignalURL, Value: "cdn.example/evil.jpg"})
	f.bank(t, "off", banks.ActionReview, banks.Entry{Type: banks.SignalText, Value: "buy followers now"})
	if _, err := f.banks.Do(ctx, banks.Op{Kind: banks.OpUpdateBank, Bank: "off", Config: &banks.Bank{Name: "off", Enabled: false}}); err != nil {
		t.Fatal(err)
	}

	batch := []domain.Change{
		post("p1", 10, near, "BUY followers now!!"), // review-me: pdq (distance 4) and text
		post("evil", 11, hashOf("x"), "hello"),      // blocked: its image URL
		post("clean", 12, hashOf("y"), "nothing"),   // nothing
	}
	if _, err := f.w.Apply(ctx, batch); err != nil {
		t.Fatal(err)
	}
	evs := f.events(t)
	got := map[string]Event{}
	for _, e := range evs {
		got[e.PostID+"/"+string(e.SignalType)+"/"+e.Bank] = e
	}
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3 (p1 pdq and text in review-me, evil url in blocked): %+v", len(evs), evs)
	}
	e := got["p1/pdq/review-me"]
	if e.Distance == nil || *e.Distance != 4 || e.Version != 10 || e.Modality != domain.ModalityImage || e.Action != banks.ActionReview ||
		e.Source != SourceIngest || e.ID != EventID("p1", 10, e.EntryID) || len(e.Labels) != 1 || e.Author != "a" {
		t.Fatalf("pdq event: %+v", e)
	}
	if e := got["p1/text/review-me"]; e.Modality != domain.ModalityText {
		t.Fatalf("text event: %+v", e)
	}
	if e := got["evil/url/blocked"]; e.Action != banks.ActionBlock {
		t.Fatalf("block event: %+v", e)
	}
	recs, err := f.ix.Get(ctx, []string{domain.PrimaryKey("p1", domain.ModalityImage), domain.PrimaryKey("evil", domain.ModalityImage), domain.PrimaryKey("clean", domain.ModalityImage)})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.PostID)
	}
	if fmt.Sprint(ids) != "[p1 clean]" {
		t.Fatalf("indexed %v, want [p1 clean] (evil matched a block bank)", ids)
	}
	// The records keep their matches: p1's image record carries both (its
	// pdq and its text's), and a search filtered by the bank finds p1 only.
	if len(recs[0].Matches) != 2 || recs[0].Matches[0].Bank != "review-me" || len(recs[1].Matches) != 0 {
		t.Fatalf("matches on the records: p1 %+v, clean %+v", recs[0].Matches, recs[1].Matches)
	}
	hits, err := f.ix.Search(ctx, domain.VectorQuery{Vector: []float32{1, 0, 0, 0}, K: 10, Modality: domain.ModalityImage,
		Filter: domain.Filter{MatchedBanks: []string{"review-me"}}})
	if err != nil || len(hits) != 1 || hits[0].PostID != "p1" || len(hits[0].Matches) != 2 {
		t.Fatalf("search filtered by matched_banks review-me: %+v %v", hits, err)
	}
	if !f.deny.Denied("evil") || f.deny.Denied("p1") {
		t.Fatalf("deny-list: evil %v p1 %v, want true false", f.deny.Denied("evil"), f.deny.Denied("p1"))
	}
	// A redelivery of the same versions: no new event.
	if _, err := f.w.Apply(ctx, batch[:1]); err != nil {
		t.Fatal(err)
	}
	if n := len(f.events(t)); n != 3 {
		t.Fatalf("a redelivered post added events: %d, want 3", n)
	}
	// Deletes pass through unmatched.
	if _, err := f.w.Apply(ctx, []domain.Change{{PostID: "p1", Delete: true, Deny: true}}); err != nil {
		t.Fatal(err)
	}
	if n := len(f.events(t)); n != 3 {
		t.Fatalf("a delete added events: %d", n)
	}
}

// Region hashes at ingest (banks.match_regions): a meme of a banked
// picture (caption band) matches by its content rectangle's hash, a
// watermarked copy by its cleaned hash, each event saying which; their
// whole-image hashes match nothing, and without the option (their region
// hashes computed for clusters) neither post makes an event. A post
// matched by its whole image reports no region.
func TestMatchRegionsAtIngest(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	deps := f.deps
	deps.MatchRegions = true
	withRegions, err := New(deps)
	if err != nil {
		t.Fatal(err)
	}
	nd := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	ph := pdq.Hasher{MaxSide: -1}
	pic := reposts.Photo(0, 1000, 640, 480)
	entry, _ := ph.Hash(pic)
	f.bank(t, "known", banks.ActionReview, banks.Entry{Type: banks.SignalPDQ, Value: entry.String()})
	copies := map[string]reposts.Kind{"meme": reposts.Caption, "marked": reposts.Watermark}
	seeds := map[string][2]uint64{"meme": {1, 3}, "marked": {0, 9}}
	seq := uint64(1)
	for _, regions := range []bool{false, true} {
		var batch []domain.Change
		for _, id := range []string{"meme", "marked"} {
			s := seeds[id]
			rp, err := reposts.Apply(pic, []reposts.Kind{copies[id]}, rand.New(rand.NewPCG(s[0], s[1])))
			if err != nil {
				t.Fatal(err)
			}
			h, _ := ph.Hash(rp.Image)
			if pdq.Distance(h, entry) <= 31 {
				t.Fatalf("%s: the whole image is within PDQ's bound; the test shows nothing", id)
			}
			c := post(fmt.Sprintf("%s-%v", id, regions), seq, h, "")
			seq++
			c.Records = c.Records[:1]
			rs, _, err := nd.RegionHashes(rp.Image, false, neardup.DefaultMinQuality)
			if err != nil {
				t.Fatal(err)
			}
			c.Records[0].PDQRegions = rs
			batch = append(batch, c)
		}
		batch = append(batch, post(fmt.Sprintf("itself-%v", regions), seq, entry, ""))
		seq++
		batch[2].Records = batch[2].Records[:1]
		w := f.w
		if regions {
			w = withRegions
		}
		if _, err := w.Apply(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]string{}
	for _, e := range f.events(t) {
		if e.EntryID == "" || e.SignalType != banks.SignalPDQ || e.Distance == nil || *e.Distance > 31 {
			t.Errorf("event %+v", e)
		}
		got[e.PostID] = e.Region
	}
	want := map[string]string{"itself-false": "", "itself-true": "", "meme-true": "content", "marked-true": "cleaned"}
	if !maps.Equal(got, want) {
		t.Errorf("events by post and region %v, want %v", got, want)
	}
}

// Edits: each version of a post is matched again, and makes events only for
// the entries its previous matched version did not match (a changed
// distance is no change; a shrunk set makes none; an entry matched again
// after a version without it does). A redelivered older version makes
// none. A post taken down makes no more events; a deny-listed id never
// makes one.
func TestEditsMakeEventsOnlyWhenTheMatchChanged(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	banned := hashOf("banned")
	near := banned
	near[0] ^= 0x0f // 4 bits off
	f.bank(t, "rb", banks.ActionReview,
		banks.Entry{Type: banks.SignalPDQ, Value: banned.String()},
		banks.Entry{Type: banks.SignalText, Value: "Buy followers now"})
	pdqE := banks.EntryID(banks.SignalPDQ, "", banned.String())
	textE := banks.EntryID(banks.SignalText, "", "buy followers now")
	steps := []struct {
		name   string
		change domain.Change
		want   []string // new events: "<version>/<entry>"
	}{
		{"first version: both entries", post("e", 1, banned, "Buy followers now"), []string{"1/" + pdqE, "1/" + textE}},
		{"edit, same entries at another distance", post("e", 2, near, "buy FOLLOWERS now!"), nil},
		{"redelivery of version 2", post("e", 2, near, "buy FOLLOWERS now!"), nil},
		{"edit that drops the text match", post("e", 3, near, "edited"), nil},
		{"edit that matches the text again", post("e", 4, near, "Buy followers now"), []string{"4/" + textE}},
		{"an older version redelivered", post("e", 3, near, "edited"), nil},
		{"edit that matches nothing", post("e", 5, hashOf("other"), "nothing"), nil},
		{"edit that matches again", post("e", 6, banned, "nothing"), []string{"6/" + pdqE}},
	}
	seen := 0
	for _, st := range steps {
		if _, err := f.w.Apply(ctx, []domain.Change{st.change}); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		evs := f.events(t)
		var got []string
		for _, e := range evs[seen:] {
			if e.ID != EventID(e.PostID, e.Version, e.EntryID) {
				t.Fatalf("%s: event id %s", st.name, e.ID)
			}
			got = append(got, fmt.Sprintf("%d/%s", e.Version, e.EntryID))
		}
		seen = len(evs)
		slices.Sort(got)
		slices.Sort(st.want)
		if !slices.Equal(got, st.want) {
			t.Fatalf("%s: new events %v, want %v", st.name, got, st.want)
		}
	}
	// Another process (a restarted indexer) opens the memory: it knows
	// what "e" matched last, so the same match makes no event there either.
	mem2, err := OpenMemory(ctx, f.js, MemoryConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer mem2.Close()
	if !mem2.Known("e") || mem2.Known("never-matched") {
		t.Fatalf("a new memory: knows e %v, never-matched %v", mem2.Known("e"), mem2.Known("never-matched"))
	}
	if mo, err := mem2.Last(ctx, "e"); err != nil || mo == nil || mo.Version != 6 || !slices.Equal(mo.Entries, []string{"rb/" + pdqE}) {
		t.Fatalf("e's memo: %+v %v", mo, err)
	}
	// Taken down: later versions make nothing (the writer is called
	// directly here, as if the takedown landed while the version was in
	// flight).
	if err := f.deny.Deny(ctx, []domain.Takedown{{PostID: "e", At: time.Now(), Source: "admin"}}); err != nil {
		t.Fatal(err)
	}
	if err := f.deny.Deny(ctx, []domain.Takedown{{PostID: "denied-first", At: time.Now(), Source: "admin"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.w.Apply(ctx, []domain.Change{post("e", 7, hashOf("x"), "Buy followers now"), post("denied-first", 1, banned, "Buy followers now")}); err != nil {
		t.Fatal(err)
	}
	if evs := f.events(t); len(evs) != seen {
		t.Fatalf("events for posts on the deny-list: %+v", evs[seen:])
	}
}

// A retro sweep: posts indexed before an entry was added are found at the
// bank's threshold, each once, as events with source sweep; a sweep run
// again adds no event.
func TestSweep(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	target := hashOf("old meme")
	close4, far := target, target
	close4[3] ^= 0xf0                 // 4 bits off
	far[0], far[1] = ^far[0], ^far[1] // 16 bits off
	var chs []domain.Change
	for i, h := range []pdq.Hash{target, close4, far, hashOf("unrelated")} {
		chs = append(chs, post(fmt.Sprintf("old-%d", i), uint64(i+1), h, "x"))
	}
	if _, err := f.ix.Apply(ctx, chs); err != nil { // indexed before the bank existed
		t.Fatal(err)
	}
	ev, err := OpenEvents(ctx, f.js, StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	sw, err := NewSweeper(ctx, SweeperConfig{Index: f.ix, Events: ev, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	thr := 8
	if _, err := f.banks.Do(ctx, banks.Op{Kind: banks.OpCreateBank, Bank: "memes", Config: &banks.Bank{Name: "memes", Enabled: true, Thresholds: banks.Thresholds{PDQ: &thr}}}); err != nil {
		t.Fatal(err)
	}
	entry := banks.Entry{Type: banks.SignalPDQ, Value: target.String(), AddedAt: time.Unix(1, 0)}
	if _, err := f.banks.Do(ctx, banks.Op{Kind: banks.OpAddEntries, Bank: "memes", Entries: []banks.Entry{entry}}); err != nil {
		t.Fatal(err)
	}
	info, _ := f.banks.State().Bank("memes")
	page, _, _ := f.banks.State().Entries("memes", 0, 10)
	for round := 1; round <= 2; round++ {
		st := sw.Start(info, page)
		sweepDone(t, sw, st.ID, 10*time.Second)
		evs := f.events(t)
		var got []string
		for _, e := range evs {
			if e.Source != SourceSweep || e.Version != 0 || e.Bank != "memes" || e.ID != EventID(e.PostID, 0, e.EntryID) {
				t.Fatalf("sweep event %+v", e)
			}
			got = append(got, fmt.Sprintf("%s:%d", e.PostID, *e.Distance))
		}
		if fmt.Sprint(got) != "[old-0:0 old-1:4]" {
			t.Fatalf("round %d: sweep events %v, want [old-0:0 old-1:4] (old-2 is 16 bits off, over the threshold 8)", round, got)
		}
		if s := sw.Status()[round-1]; s.Done != 1 || s.Matches != 2 {
			t.Fatalf("status %+v", s)
		}
	}
}

type publishFunc func(ctx context.Context, evs []Event) error

func (f publishFunc) Publish(ctx context.Context, evs []Event) error { return f(ctx, evs) }

// Publishers: every publisher gets every event; one failing fails the call
// (the batch is retried whole, the others' repeats deduplicated by id).
func TestPublishers(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	js, err := OpenEvents(ctx, f.js, StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	evs := []Event{{ID: EventID("p", 1, "e1"), PostID: "p", Bank: "b"}, {ID: EventID("p", 1, "e2"), PostID: "p", Bank: "b"}}
	ok := publishFunc(func(_ context.Context, evs []Event) error {
		for _, e := range evs {
			got = append(got, e.ID)
		}
		return nil
	})
	if err := (Publishers{js, ok}).Publish(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(f.events(t)) != 2 {
		t.Fatalf("second publisher got %v; stream holds %d", got, len(f.events(t)))
	}
	down := fmt.Errorf("topic unavailable")
	err = (Publishers{js, publishFunc(func(context.Context, []Event) error { return down })}).Publish(ctx, evs)
	if !errors.Is(err, down) {
		t.Fatalf("a failing publisher: %v, want %v", err, down)
	}
	if n := len(f.events(t)); n != 2 {
		t.Fatalf("the retry's repeats were stored: %d events", n)
	}
}

// gated is the real index, searched through a gate that ends the sweeper's
// context at the stop-th lookup (a process stopped mid-sweep), counting the
// lookups made.
type gated struct {
	domain.NearDupSearcher
	stop   int
	cancel context.CancelFunc
	calls  atomic.Int32
}

func (g *gated) NearDup(ctx context.Context, q domain.NearDupQuery) ([]domain.NearDupHit, error) {
	if n := int(g.calls.Add(1)); n == g.stop {
		g.cancel()
		return nil, context.Canceled
	}
	return g.NearDupSearcher.NearDup(ctx, q)
}

// A sweep stopped mid-way (its context ended, as when the process stops)
// resumes from its checkpoint in the next sweeper on the directory: it
// looks up only the entries after the checkpoint, the sweep queued behind
// it runs too, and the stream holds each expected event once (the entries
// between the checkpoint and the stop published their events twice, with
// the same ids).
func TestSweepResumesFromItsCheckpoint(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // the sweepers stop before the index closes
	const n = 40
	var chs []domain.Change
	var entries []banks.Entry
	want := map[string]bool{}
	for i := range n {
		h := hashOf(fmt.Sprint("img-", i))
		chs = append(chs, post(fmt.Sprintf("old-%d", i), uint64(i+1), h, "x"))
		e := banks.Entry{Type: banks.SignalPDQ, Value: h.String(), AddedAt: time.Unix(1, 0)}
		e.ID = banks.EntryID(banks.SignalPDQ, "", e.Value)
		entries = append(entries, e)
		want[fmt.Sprintf("old-%d/%s", i, e.ID)] = true
	}
	if _, err := f.ix.Apply(ctx, chs); err != nil {
		t.Fatal(err)
	}
	if _, err := f.banks.Do(ctx, banks.Op{Kind: banks.OpCreateBank, Bank: "late", Config: &banks.Bank{Name: "late", Enabled: true}}); err != nil {
		t.Fatal(err)
	}
	info := banks.BankInfo{Bank: banks.Bank{Name: "late", Enabled: true, Action: banks.ActionReview}}
	ev, err := OpenEvents(ctx, f.js, StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sctx, stop := context.WithCancel(ctx)
	g1 := &gated{NearDupSearcher: f.ix, stop: 18, cancel: stop}
	sw1, err := NewSweeper(sctx, SweeperConfig{Index: g1, Events: ev, Dir: dir, CheckpointEvery: 5})
	if err != nil {
		t.Fatal(err)
	}
	first := sw1.Start(info, entries)
	second := sw1.Start(info, entries[:3])
	<-sctx.Done()
	// Done says the worker has stopped: its last checkpoint is on disk
	// and nothing writes to the directory after it (a caller may remove it).
	select {
	case <-sw1.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the sweeper's worker did not stop after its context ended")
	}
	if st := sw1.Status(); st[0].Done != 17 {
		t.Fatalf("first sweep when its worker stopped: %+v", st[0])
	}
	before, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if after, err := os.ReadDir(dir); err != nil || len(after) != len(before) {
		t.Fatalf("the sweeps' directory changed after the worker stopped: %d entries, then %d (%v)", len(before), len(after), err)
	}
	if evs := f.events(t); len(evs) != 17 {
		t.Fatalf("%d events before the stop, want 17", len(evs))
	}

	g2 := &gated{NearDupSearcher: f.ix, cancel: func() {}}
	sw2, err := NewSweeper(ctx, SweeperConfig{Index: g2, Events: ev, Dir: dir, CheckpointEvery: 5})
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		st := sw2.Status()
		if len(st) != 2 || st[0].State != SweepDone || st[1].State != SweepDone {
			return fmt.Errorf("after the restart: %+v", st)
		}
		return nil
	})
	st := sw2.Status()
	if st[0].ID != first.ID || st[0].Resumed != 15 || st[0].Done != n || st[0].Matches != n || st[1].ID != second.ID || st[1].Resumed != 0 || st[1].Matches != 3 {
		t.Fatalf("statuses after the restart: %+v", st)
	}
	// The checkpoint was at 15 entries (every 5): 25 lookups for the first
	// sweep, 3 for the second.
	if c := g2.calls.Load(); c != n-15+3 {
		t.Fatalf("the resumed sweeps looked up %d entries, want %d", c, n-15+3)
	}
	got := map[string]int{}
	for _, e := range f.events(t) {
		got[e.PostID+"/"+e.EntryID]++
	}
	for k := range want {
		if got[k] != 1 {
			t.Errorf("event %s: %d copies, want 1", k, got[k])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d distinct events, want %d", len(got), len(want))
	}
	// A third sweeper on the directory lists the finished sweeps and resumes nothing.
	g3 := &gated{NearDupSearcher: f.ix, cancel: func() {}}
	sw3, err := NewSweeper(ctx, SweeperConfig{Index: g3, Events: ev, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	// Its directory is read before NewSweeper returns: a resumed sweep
	// would be listed as queued.
	if st := sw3.Status(); len(st) != 2 || st[0].State != SweepDone || st[1].State != SweepDone {
		t.Fatalf("finished sweeps after a restart: %+v", st)
	}
	if next := sw3.Start(info, entries[:1]); next.ID != second.ID+1 {
		t.Fatalf("a new sweep's id %d, want %d", next.ID, second.ID+1)
	}
}

// The ingest-to-event histogram observes, once per post with events at
// ingest, the time from the pipeline receiving it to its events being
// durable; posts without events, and changes with no receive time, are
// not observed.
func TestIngestToEventLatency(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.bank(t, "review-me", banks.ActionReview, banks.Entry{Type: banks.SignalText, Value: "buy followers now"})
	f.bank(t, "blocked", banks.ActionBlock, banks.Entry{Type: banks.SignalText, Value: "evil text"})
	evs, err := OpenEvents(ctx, f.js, StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	w, err := New(Deps{Next: f.ix, Banks: f.banks, Events: evs, Deny: f.deny, Registerer: reg, Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	at := func(c domain.Change, received time.Time) domain.Change { c.Received = received; return c }
	batch := []domain.Change{
		at(post("p1", 1, hashOf("a"), "Buy followers NOW"), t0.Add(-2*time.Second)),  // review event
		at(post("evil", 2, hashOf("b"), "evil text"), t0.Add(-500*time.Millisecond)), // block event (taken down)
		at(post("clean", 3, hashOf("c"), "nothing"), t0.Add(-time.Hour)),             // no event: not observed
		post("p2", 4, hashOf("d"), "buy followers now"),                              // no receive time: not observed
	}
	if _, err := w.Apply(ctx, batch); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var h *dto.Histogram
	for _, mf := range mfs {
		if mf.GetName() == "xmodal_match_event_latency_seconds" {
			h = mf.GetMetric()[0].GetHistogram()
		}
	}
	if h == nil {
		t.Fatal("xmodal_match_event_latency_seconds is not registered")
	}
	if h.GetSampleCount() != 2 || h.GetSampleSum() != 2.5 {
		t.Fatalf("ingest-to-event latency: %d observations summing to %v s, want 2 summing to 2.5 s", h.GetSampleCount(), h.GetSampleSum())
	}
}

// A sweep covers text, URL, embedding and MD5 entries too, on an index that
// can be scanned: every stored record is matched against them as ingest
// matches a post; the matches reach the records (hits carry them, the
// matched_banks filter lists the posts); a second run adds no match twice.
func TestSweepScansRecordsForOtherSignals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	mk := func(id, text, media string, txtVec []float32) domain.Change {
		return domain.Change{PostID: id, Seq: 1, Records: []domain.Record{
			{PK: domain.PrimaryKey(id, domain.ModalityImage), PostID: id, Modality: domain.ModalityImage, Author: "a", CreatedAt: at,
				ModelVersion: "m1", Vector: []float32{1, 0, 0, 0}, MediaURL: media},
			{PK: domain.PrimaryKey(id, domain.ModalityText), PostID: id, Modality: domain.ModalityText, Author: "a", CreatedAt: at,
				ModelVersion: "m1", Vector: txtVec, Text: text},
		}}
	}
	// Indexed before the bank existed; more than one scan chunk of posts.
	var chs []domain.Change
	for i := range 700 {
		chs = append(chs, mk(fmt.Sprintf("filler-%03d", i), fmt.Sprintf("nothing to see %d", i), "", []float32{0, 0, 1, 0}))
	}
	chs = append(chs,
		mk("by-text", "Cheap WATCHES here!", "", []float32{0, 0, 1, 0}),
		mk("by-url", "look https://Spam.example/deal?x=1 now", "", []float32{0, 0, 1, 0}),
		mk("by-media", "a photo", "https://cdn.example/banned.jpg", []float32{0, 0, 1, 0}),
		mk("by-concept", "unrelated words", "", []float32{0, 0.6, 0.8, 0}),
	)
	// An image whose file MD5 was kept (image.keep_md5).
	byMD5 := mk("by-md5", "a picture", "", []float32{0, 0, 1, 0})
	byMD5.Records[0].MD5, _ = hex.DecodeString("0123456789abcdef0123456789abcdef")
	chs = append(chs, byMD5)
	if _, err := f.ix.Apply(ctx, chs); err != nil {
		t.Fatal(err)
	}
	sw := f.recordSweeper(t)
	cfg := &banks.Bank{Name: "spam", Enabled: true, Labels: []string{"spam"}, Thresholds: banks.Thresholds{Embedding: banks.EmbeddingThresholds{TextText: 0.5}}}
	if _, err := f.banks.Do(ctx, banks.Op{Kind: banks.OpCreateBank, Bank: "spam", Config: cfg}); err != nil {
		t.Fatal(err)
	}
	entries := []banks.Entry{
		{Type: banks.SignalText, Value: "cheap watches here"},
		{Type: banks.SignalURL, Value: "https://spam.example/deal?x=1"},
		{Type: banks.SignalURL, Value: "https://cdn.example/banned.jpg"},
		{Type: banks.SignalEmbedding, Value: "a concept", Modality: "text", Vector: []float32{0, 1, 0, 0}, ModelVersion: "m1"},
		{Type: banks.SignalMD5, Value: "0123456789abcdef0123456789abcdef"},
	}
	for i := range entries {
		entries[i].AddedAt = time.Unix(1, 0)
	}
	if _, err := f.banks.Do(ctx, banks.Op{Kind: banks.OpAddEntries, Bank: "spam", Entries: entries}); err != nil {
		t.Fatal(err)
	}
	info, _ := f.banks.State().Bank("spam")
	page, _, _ := f.banks.State().Entries("spam", 0, 10)
	for round := 1; round <= 2; round++ {
		st := sw.Start(info, page)
		if st.Entries != 5 {
			t.Fatalf("sweep of %d entries, want 5", st.Entries)
		}
		done := sweepDone(t, sw, st.ID, 20*time.Second)
		// The second sweep finds the same posts, whose records carry the
		// first's matches now: no new event.
		wantMatches, wantKnown := 5, 0
		if round == 2 {
			wantMatches, wantKnown = 0, 5
		}
		if done.Done != 5 || done.Records != 2*len(chs) || done.Matches != wantMatches || done.Known != wantKnown {
			t.Errorf("round %d: status %+v, want 5 entries done, %d records, %d matches, %d known", round, done, 2*len(chs), wantMatches, wantKnown)
		}
		got := map[string]string{}
		for _, e := range f.events(t) {
			if e.Source != SourceSweep || e.Bank != "spam" || e.ID != EventID(e.PostID, 0, e.EntryID) {
				t.Fatalf("sweep event %+v", e)
			}
			got[e.PostID] = string(e.SignalType)
			if e.SignalType == banks.SignalEmbedding && (e.Score == nil || *e.Score < 0.59 || *e.Score > 0.61) {
				t.Errorf("embedding event score %v, want 0.6", e.Score)
			}
		}
		want := map[string]string{"by-text": "text", "by-url": "url", "by-media": "url", "by-concept": "embedding", "by-md5": "md5"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("round %d: events by post %v, want %v", round, got, want)
		}
	}
	// The matches are on the records: the filter lists exactly those posts,
	// each record with its match once after two sweeps.
	hits, err := f.ix.Search(ctx, domain.VectorQuery{Vector: []float32{0, 0, 1, 0}, K: 2000, Filter: domain.Filter{MatchedBanks: []string{"spam"}}})
	if err != nil {
		t.Fatal(err)
	}
	posts := map[string]bool{}
	for _, h := range hits {
		posts[h.PostID] = true
		if len(h.Matches) != 1 || h.Matches[0].Bank != "spam" {
			t.Errorf("hit %s matches %+v, want one spam match", h.PK, h.Matches)
		}
	}
	if len(posts) != 5 || !posts["by-text"] || !posts["by-url"] || !posts["by-media"] || !posts["by-concept"] || !posts["by-md5"] {
		t.Errorf("matched_banks=spam lists %v", posts)
	}
}

// Sweeps with regions (banks.match_regions) find the memes and watermarked
// copies of a banked picture indexed before its entry, by their stored
// region hashes, as ingest would have: a sweep without regions finds only
// the picture itself; one with them adds the meme (region content) and the
// watermarked copy (region cleaned), not the picture again (its record
// carries the first sweep's match) nor an unrelated photo; a third finds
// nothing new.
func TestSweepMatchesRegions(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	nd := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	ph := pdq.Hasher{MaxSide: -1}
	pic := reposts.Photo(0, 1000, 640, 480)
	entry, _ := ph.Hash(pic)
	var chs []domain.Change
	for i, c := range []struct {
		id   string
		kind reposts.Kind
		seed [2]uint64
	}{{"meme", reposts.Caption, [2]uint64{1, 3}}, {"marked", reposts.Watermark, [2]uint64{0, 9}}, {"itself", "", [2]uint64{}}, {"other", "", [2]uint64{}}} {
		img := pic
		switch {
		case c.kind != "":
			rp, err := reposts.Apply(pic, []reposts.Kind{c.kind}, rand.New(rand.NewPCG(c.seed[0], c.seed[1])))
			if err != nil {
				t.Fatal(err)
			}
			img = rp.Image
		case c.id == "other":
			img = reposts.Photo(1, 1000, 640, 480)
		}
		h, _ := ph.Hash(img)
		if d := pdq.Distance(h, entry); (c.id == "itself") != (d <= 31) {
			t.Fatalf("%s: whole-image distance %d; the test shows nothing", c.id, d)
		}
		ch := post(c.id, uint64(i+1), h, "")
		ch.Records = ch.Records[:1]
		rs, _, err := nd.RegionHashes(img, false, neardup.DefaultMinQuality)
		if err != nil {
			t.Fatal(err)
		}
		ch.Records[0].PDQRegions = rs
		chs = append(chs, ch)
	}
	if _, err := f.ix.Apply(ctx, chs); err != nil { // indexed before the bank existed
		t.Fatal(err)
	}
	f.bank(t, "known", banks.ActionReview, banks.Entry{Type: banks.SignalPDQ, Value: entry.String()})
	ev, err := OpenEvents(ctx, f.js, StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	info, _ := f.banks.State().Bank("known")
	page, _, _ := f.banks.State().Entries("known", 0, 10)
	var seen int
	for round, c := range []struct {
		regions      bool
		want         map[string]string // new events: post -> region
		matches, kno int
	}{
		{false, map[string]string{"itself": ""}, 1, 0},
		{true, map[string]string{"meme": "content", "marked": "cleaned"}, 2, 1},
		{true, map[string]string{}, 0, 3},
	} {
		sw, err := NewSweeper(ctx, SweeperConfig{Index: f.ix, Records: f.ix, Recorder: f.ix, Events: ev, Dir: t.TempDir(), Regions: c.regions})
		if err != nil {
			t.Fatal(err)
		}
		done := sweepDone(t, sw, sw.Start(info, page).ID, 20*time.Second)
		evs := f.events(t)
		got := map[string]string{}
		for _, e := range evs[seen:] {
			if e.Source != SourceSweep || e.SignalType != banks.SignalPDQ || e.Distance == nil || *e.Distance > 31 {
				t.Errorf("round %d: event %+v", round+1, e)
			}
			got[e.PostID] = e.Region
		}
		seen = len(evs)
		if !maps.Equal(got, c.want) {
			t.Errorf("round %d: new events by post and region %v, want %v", round+1, got, c.want)
		}
		if done.Done != 1 || done.Matches != c.matches || done.Known != c.kno {
			t.Errorf("round %d: status %+v, want 1 entry done, %d matches, %d known", round+1, done, c.matches, c.kno)
		}
	}
	// The matches are on the records: matched_banks lists the three.
	hits, err := f.ix.Search(ctx, domain.VectorQuery{Vector: []float32{1, 0, 0, 0}, K: 10, Filter: domain.Filter{MatchedBanks: []string{"known"}}})
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, h := range hits {
		listed = append(listed, h.PostID)
	}
	slices.Sort(listed)
	if fmt.Sprint(listed) != "[itself marked meme]" {
		t.Errorf("matched_banks=known lists %v, want [itself marked meme]", listed)
	}
}

// A sweep that runs after posts were matched at ingest (queued behind
// others, or resumed after a crash, while ingest went on with the entries
// already in force) finds those posts again; their records carry the
// ingest match, so it makes no second event: one event per (post version,
// entry), for PDQ entries (near-dup lookup) and scanned ones (text) alike.
func TestSweepSkipsPostsMatchedAtIngest(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if _, err := f.ix.Apply(ctx, []domain.Change{post("before", 1, hashOf("banned"), "buy followers now")}); err != nil {
		t.Fatal(err) // indexed before the bank: only the sweep can find it
	}
	f.bank(t, "spam", banks.ActionReview,
		banks.Entry{Type: banks.SignalPDQ, Value: hashOf("banned").String()},
		banks.Entry{Type: banks.SignalText, Value: "buy followers now"})
	if _, err := f.w.Apply(ctx, []domain.Change{post("after", 7, hashOf("banned"), "BUY followers now!")}); err != nil {
		t.Fatal(err) // matched at ingest: two events, version 7
	}
	sw := f.recordSweeper(t)
	info, _ := f.banks.State().Bank("spam")
	page, _, _ := f.banks.State().Entries("spam", 0, 10)
	done := sweepDone(t, sw, sw.Start(info, page).ID, 10*time.Second)
	if done.Matches != 2 || done.Known != 2 {
		t.Fatalf("sweep status %+v, want done with 2 matches (post before) and 2 known (post after)", done)
	}
	got := map[string]int{}
	for _, e := range f.events(t) {
		got[fmt.Sprintf("%s v%d %s %s", e.PostID, e.Version, e.SignalType, e.Source)]++
	}
	want := map[string]int{"after v7 pdq ingest": 1, "after v7 text ingest": 1, "before v0 pdq sweep": 1, "before v0 text sweep": 1}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

// gatedScan stops its sweeper (cancel) after stop records.
type gatedScan struct {
	domain.RecordScanner
	stop    int
	cancel  func()
	visited atomic.Int64
}

func (g *gatedScan) ScanRecords(ctx context.Context, after string, fn func(r *domain.Record) error) error {
	return g.RecordScanner.ScanRecords(ctx, after, func(r *domain.Record) error {
		if n := g.visited.Add(1); g.stop > 0 && int(n) > g.stop {
			g.cancel()
			return ctx.Err()
		}
		return fn(r)
	})
}

// A record scan stopped midway resumes after the last chunk it
// checkpointed: the records before it are not scanned again, and every
// matching post has its event.
func TestSweepScanResumes(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	var chs []domain.Change
	for i := range 1500 {
		id := fmt.Sprintf("p-%04d", i)
		text := "ordinary words"
		if i%100 == 7 {
			text = "forbidden phrase"
		}
		chs = append(chs, domain.Change{PostID: id, Seq: 1, Records: []domain.Record{{PK: domain.PrimaryKey(id, domain.ModalityText),
			PostID: id, Modality: domain.ModalityText, CreatedAt: at, Vector: []float32{0, 1, 0, 0}, Text: text}}})
	}
	if _, err := f.ix.Apply(ctx, chs); err != nil {
		t.Fatal(err)
	}
	info := banks.BankInfo{Bank: banks.Bank{Name: "words", Enabled: true, Action: banks.ActionReview}}
	e := banks.Entry{Type: banks.SignalText, Value: "forbidden phrase", AddedAt: time.Unix(1, 0)}
	e.ID = banks.EntryID(banks.SignalText, "", e.Value)
	ev, err := OpenEvents(ctx, f.js, StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sctx, stop := context.WithCancel(ctx)
	g1 := &gatedScan{RecordScanner: f.ix, stop: 1100, cancel: stop}
	sw1, err := NewSweeper(sctx, SweeperConfig{Index: f.ix, Records: g1, Recorder: f.ix, Events: ev, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	sw1.Start(info, []banks.Entry{e})
	<-sctx.Done()
	<-sw1.Done()
	if st := sw1.Status()[0]; st.Records != 1024 || st.State != SweepRunning {
		t.Fatalf("when stopped: %+v, want two chunks (1024 records) done", st)
	}
	g2 := &gatedScan{RecordScanner: f.ix, cancel: func() {}}
	sw2, err := NewSweeper(ctx, SweeperConfig{Index: f.ix, Records: g2, Recorder: f.ix, Events: ev, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if st := sw2.Status(); len(st) != 1 || st[0].State != SweepDone {
			return fmt.Errorf("after the restart: %+v", st)
		}
		return nil
	})
	if v := g2.visited.Load(); v != 1500-1024 {
		t.Errorf("the resumed scan visited %d records, want %d", v, 1500-1024)
	}
	got := map[string]int{}
	for _, ev := range f.events(t) {
		got[ev.PostID]++
	}
	if len(got) != 15 {
		t.Errorf("events for %d posts, want 15: %v", len(got), got)
	}
	for p, n := range got {
		if n != 1 {
			t.Errorf("post %s: %d events", p, n)
		}
	}
}

// recordSweeper is a sweeper over the fixture's index that scans its
// records and adds its matches to them.
func (f *fixture) recordSweeper(t *testing.T) *Sweeper {
	t.Helper()
	ctx := context.Background()
	ev, err := OpenEvents(ctx, f.js, StreamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	sw, err := NewSweeper(ctx, SweeperConfig{Index: f.ix, Records: f.ix, Recorder: f.ix, Events: ev, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	return sw
}

// sweepDone waits for sweep id to end and returns its status; a failed
// sweep fails the test.
func sweepDone(t *testing.T, sw *Sweeper, id int, within time.Duration) banks.SweepStatus {
	t.Helper()
	var done banks.SweepStatus
	testutil.CheckFor(t, within, 20*time.Millisecond, func() error {
		for _, s := range sw.Status() {
			if s.ID == id && s.State == "done" {
				done = s
				return nil
			}
			if s.ID == id && s.State == "failed" {
				t.Fatalf("sweep failed: %s", s.Error)
			}
		}
		return fmt.Errorf("sweep %d not done: %+v", id, sw.Status())
	})
	return done
}
