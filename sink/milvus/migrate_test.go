package milvus

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/milvus-io/milvus/client/v2/milvusclient"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/sink/conformance"
)

// createSchemaV1 makes the collections of opt's model version as a build
// from before bank matches made them (schema 1, split layout), with the alias
// pointing to them.
func createSchemaV1(t *testing.T, opt Options) {
	t.Helper()
	ctx := context.Background()
	opt = opt.WithDefaults()
	c, err := dial(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	ix := &Index{opt: opt, log: opt.Logger, c: c, recordsC: VersionCollection(opt.Collection, opt.ModelVersion)}
	ix.l = ix.buildLayout(ix.recordsC, false, schemaV1)
	for _, tb := range ix.l.tables() {
		if err := ix.ensure(ctx, tb); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.CreateAlias(ctx, milvusclient.NewCreateAliasOption(ix.recordsC, opt.Collection)); err != nil {
		t.Fatal(err)
	}
}

func withMatches(ch domain.Change, banks ...string) domain.Change {
	for i := range ch.Records {
		for _, b := range banks {
			ch.Records[i].Matches = append(ch.Records[i].Matches, domain.RecordMatch{Bank: b, EntryID: b + "-1", SignalType: "text", Modality: ch.Records[i].Modality})
		}
	}
	return ch
}

// A collection from before bank matches keeps working without them (the
// matched_banks filter is refused, naming the migration); Migrate copies it
// into collections of the current schema, moves the alias and drops the old
// ones, and afterwards records keep their matches and filters read them,
// while versions, takedowns and the records themselves carried over.
func TestMigrateToMatchesSchema(t *testing.T) {
	ctx := context.Background()
	opt := testOptions(t, conformance.Dim)
	opt.Consistency = "Strong"
	t.Cleanup(func() { dropBase(t, opt) })
	createSchemaV1(t, opt)
	old, err := Open(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	if old.KeepsMatches() {
		t.Fatal("a schema 1 collection says it keeps matches")
	}
	r := rand.New(rand.NewPCG(5, 5))
	const n = 300 // more than a page of the copy
	var chs []domain.Change
	for i := range n {
		chs = append(chs, withMatches(textPost(fmt.Sprintf("m%04d", i), 5, "a", r), "spam"))
	}
	mustApply(t, old, chs...)
	mustApply(t, old, domain.Change{PostID: "m0001", Delete: true, Deny: true})
	q := domain.VectorQuery{Vector: chs[2].Records[0].Vector, Modality: domain.ModalityText, K: 5, Plan: domain.PlanExact, Filter: domain.Filter{MatchedBanks: []string{"spam"}}}
	if _, err := old.Search(ctx, q); !errors.Is(err, domain.ErrInvalidQuery) {
		t.Fatalf("matched_banks on a schema 1 collection: %v, want an invalid query", err)
	}
	before, err := old.Get(ctx, []string{"m0002#text", "m0003#text"})
	if err != nil || len(before) != 2 {
		t.Fatalf("get before: %v, %v", before, err)
	}
	old.Close()

	var progressed int
	rep, err := Migrate(ctx, opt, true, func(done int) { progressed = done })
	if err != nil {
		t.Fatal(err)
	}
	if rep.Records != n-1 || progressed != n-1 || !rep.AliasMoved || !rep.Dropped || rep.To != migratedCollection(rep.From) {
		t.Fatalf("report %+v (progress %d), want %d records copied, the alias moved and the old collections dropped", rep, progressed, n-1)
	}
	if again, err := Migrate(ctx, opt, false, nil); err != nil || !again.Done {
		t.Fatalf("a second migration: %+v, %v; want nothing to do", again, err)
	}

	ix, err := Open(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if ix.Collection() != rep.To || !ix.KeepsMatches() {
		t.Fatalf("after the migration the index uses %s (keeps matches %v), want %s", ix.Collection(), ix.KeepsMatches(), rep.To)
	}
	follow := opt
	follow.FollowAlias = true
	fx, err := Open(ctx, follow)
	if err != nil {
		t.Fatal(err)
	}
	if fx.Collection() != rep.To {
		t.Fatalf("a query process follows the alias to %s, want %s", fx.Collection(), rep.To)
	}
	fx.Close()
	after, err := ix.Get(ctx, []string{"m0002#text", "m0003#text"})
	if err != nil || len(after) != 2 {
		t.Fatalf("get after: %v, %v", after, err)
	}
	for i := range before {
		b, a := before[i], after[i]
		if a.PK != b.PK || a.Author != b.Author || !a.CreatedAt.Equal(b.CreatedAt) || a.Text != b.Text || !slices.Equal(a.Code, b.Code) || !slices.Equal(a.Vector, b.Vector) {
			t.Fatalf("record %s changed in the copy:\n%+v\n%+v", b.PK, b, a)
		}
	}
	// Versions and takedowns carried over.
	if out := mustApply(t, ix, textPost("m0002", 4, "a", r), textPost("m0001", 9, "a", r)); out[0] != domain.Stale || out[1] != domain.Denied {
		t.Fatalf("after the migration: %v, want [stale denied]", out)
	}
	// Code hits (rebuilt side rows) still come back.
	hits, err := ix.Search(ctx, domain.VectorQuery{Code: after[0].Code, Modality: domain.ModalityText, K: 1, Plan: domain.PlanHash})
	if err != nil || len(hits) != 1 || hits[0].Distance == nil || *hits[0].Distance != 0 {
		t.Fatalf("hash search after the migration: %+v, %v", hits, err)
	}
	// New versions keep their matches; the filter reads them.
	mustApply(t, ix, withMatches(textPost("m0002", 6, "a", r), "spam", "memes"), textPost("m0003", 6, "a", r))
	q.Vector = after[0].Vector
	q.K = n
	hits, err = ix.Search(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(hits) != 1 || hits[0].PostID != "m0002" || len(hits[0].Matches) != 2 || hits[0].Matches[1].Bank != "memes" {
		t.Fatalf("matched_banks [spam] after the migration: %+v, want only m0002 with its two matches", hits)
	}
	got, err := ix.Get(ctx, []string{"m0002#text"})
	if err != nil || len(got) != 1 || len(got[0].Matches) != 2 {
		t.Fatalf("get keeps the matches: %+v, %v", got, err)
	}
}
