package matching

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/pdq"
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
	w, err := New(Deps{Next: ix, Banks: bs, Events: evs, Deny: dl})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{w: w, ix: ix, js: js, deny: dl, banks: bs}
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
	// A new version of p1: its matches are events of that version.
	if _, err := f.w.Apply(ctx, []domain.Change{post("p1", 20, near, "edited")}); err != nil {
		t.Fatal(err)
	}
	evs = f.events(t)
	if len(evs) != 4 || evs[3].Version != 20 || evs[3].SignalType != banks.SignalPDQ {
		t.Fatalf("after an edit: %+v", evs)
	}
	// Deletes pass through unmatched.
	if _, err := f.w.Apply(ctx, []domain.Change{{PostID: "p1", Delete: true, Deny: true}}); err != nil {
		t.Fatal(err)
	}
	if n := len(f.events(t)); n != 4 {
		t.Fatalf("a delete added events: %d", n)
	}
}
