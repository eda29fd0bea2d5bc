package milvus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/milvus-io/milvus/client/v2/column"
	"github.com/milvus-io/milvus/client/v2/entity"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/hash"
	"github.com/xmodal/xmodal/internal/dedup"
	"github.com/xmodal/xmodal/sink/conformance"
	"github.com/xmodal/xmodal/sink/embedded"
)

func mustApply(t testing.TB, ix domain.Index, chs ...domain.Change) []domain.Outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := ix.Apply(ctx, chs)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func textPost(id string, seq uint64, author string, r *rand.Rand) domain.Change {
	return domain.Change{PostID: id, Seq: seq, Records: []domain.Record{
		conformance.Record(id, domain.ModalityText, conformance.Unit(r), author, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), nil)}}
}

// TestSchemaDisagreementIsRefused: a collection of another dimension or model is
// refused at Open with a message that says what differs.
func TestSchemaDisagreementIsRefused(t *testing.T) {
	opt := testOptions(t, 8)
	ix := openTest(t, opt)
	ix.Close()

	other := opt
	other.Dim = 12
	_, err := Open(context.Background(), other)
	var se *SchemaError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "field vector has dimension 8, want 12") {
		t.Fatalf("Open with another dimension: %v; want a SchemaError naming the dimensions", err)
	}
	t.Log(err)

	other = opt
	other.CodeBits = 128
	if _, err := Open(context.Background(), other); !errors.As(err, &se) || !strings.Contains(err.Error(), "field code_hex holds 16 bytes, want 32") {
		t.Fatalf("Open with another code length: %v", err)
	}
	other = opt
	other.DisablePDQ = true
	if _, err := Open(context.Background(), other); !errors.As(err, &se) || !strings.Contains(err.Error(), "unexpected field pdq_hex") {
		t.Fatalf("Open without PDQ on a collection with it: %v", err)
	}
}

// TestModelVersionsAndAliasSwap: each model version has its own collections; the
// alias names the live one; a query process follows it only with the same model;
// SwapAlias moves it; DropModel refuses the live version.
func TestModelVersionsAndAliasSwap(t *testing.T) {
	ctx := context.Background()
	v1 := testOptions(t, conformance.Dim)
	r := rand.New(rand.NewPCG(1, 2))
	ix1 := openTest(t, v1)
	mustApply(t, ix1, textPost("a", 1, "x", r), textPost("b", 1, "x", r))

	v2 := v1
	v2.ModelVersion = "test@2"
	ix2, err := Open(ctx, v2) // an indexer re-embedding with the new model
	if err != nil {
		t.Fatal(err)
	}
	defer ix2.Close()
	if ix2.Collection() == ix1.Collection() {
		t.Fatalf("two model versions share collection %s", ix1.Collection())
	}
	mustApply(t, ix2, textPost("a", 1, "x", r))

	follow := v2
	follow.FollowAlias = true
	if _, err := Open(ctx, follow); err == nil || !strings.Contains(err.Error(), `holds model "test@1"`) {
		t.Fatalf("following an alias to another model's vectors: %v; want a refusal", err)
	}
	if err := DropModel(ctx, v1, "test@1"); err == nil {
		t.Fatal("DropModel dropped the live model version")
	}
	if err := SwapAlias(ctx, v1, "test@2"); err != nil {
		t.Fatal(err)
	}
	q, err := Open(ctx, follow)
	if err != nil {
		t.Fatalf("following the swapped alias: %v", err)
	}
	defer q.Close()
	if q.Collection() != ix2.Collection() {
		t.Fatalf("after the swap the alias serves %s, want %s", q.Collection(), ix2.Collection())
	}
	if n, _ := q.Count(ctx); n[domain.ModalityText] != 1 {
		t.Fatalf("the new version's count through the alias: %v", n)
	}
	if err := SwapAlias(ctx, v1, "test@9"); err == nil {
		t.Fatal("SwapAlias to a model version without collections succeeded")
	}
	ix1.Close()
	if err := DropModel(ctx, v1, "test@1"); err != nil {
		t.Fatalf("DropModel of the old version: %v", err)
	}
}

// TestDeleteAuthor: a takedown by author removes every post of theirs and deny-lists them.
func TestDeleteAuthor(t *testing.T) {
	ix := openTest(t, testOptions(t, conformance.Dim))
	r := rand.New(rand.NewPCG(3, 4))
	var chs []domain.Change
	for i := range 30 {
		author := "keep"
		if i%3 == 0 {
			author = "gone"
		}
		chs = append(chs, textPost(fmt.Sprintf("p%02d", i), 1, author, r))
	}
	mustApply(t, ix, chs...)
	removed, err := ix.DeleteAuthor(context.Background(), "gone", true)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 10 {
		t.Fatalf("removed %d posts, want 10: %v", len(removed), removed)
	}
	if n, _ := ix.Count(context.Background()); n[domain.ModalityText] != 20 {
		t.Fatalf("count after the takedown: %v, want 20 texts", n)
	}
	if d, _ := ix.IsDenied(context.Background(), "p03"); !d {
		t.Fatal("a taken-down post is not deny-listed")
	}
	if out := mustApply(t, ix, textPost("p03", 9, "gone", r)); out[0] != domain.Denied {
		t.Fatalf("re-indexing a taken-down post: %q", out[0])
	}
}

// TestNearDup answers PDQ lookups like the embedded index.
func TestNearDup(t *testing.T) {
	opt := testOptions(t, conformance.Dim)
	ix := openTest(t, opt)
	emb, err := embedded.Open(context.Background(), embedded.Options{Path: filepath.Join(t.TempDir(), "e.db"), Dim: conformance.Dim, ModelVersion: "test@1"})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	chs := conformance.Dataset(60, 5)
	mustApply(t, ix, chs...)
	mustApply(t, emb, chs...)
	var img domain.Record
	for _, ch := range chs {
		for _, r := range ch.Records {
			if r.Modality == domain.ModalityImage && img.PK == "" {
				img = r
			}
		}
	}
	flipped := slices.Clone(img.PDQ)
	flipped[0] ^= 0xff
	// The bound is inclusive (Milvus answers with a range search): a bound
	// equal to a hit's distance keeps it.
	far, err := emb.NearDup(context.Background(), domain.NearDupQuery{Hashes: [][]byte{flipped}, MaxDistance: 140})
	if err != nil || len(far) < 3 {
		t.Fatalf("embedded near-dups within 140: %d, %v", len(far), err)
	}
	atHit := *far[len(far)/2].Distance
	for _, q := range []domain.NearDupQuery{
		{Hashes: [][]byte{flipped}, MaxDistance: atHit},
		{Hashes: [][]byte{flipped}, MaxDistance: atHit - 1},
		{Hashes: [][]byte{img.PDQ}, MaxDistance: 0},
		{Hashes: [][]byte{flipped, img.PDQ}, MaxDistance: 40, K: 5},
		{Hashes: [][]byte{flipped}, MaxDistance: 120},
		{Hashes: [][]byte{flipped}, MaxDistance: 120, MinQuality: 95},
		{Hashes: [][]byte{img.PDQ}, MaxDistance: 100, Filter: domain.Filter{Authors: []string{img.Author}}},
	} {
		got, err := ix.NearDup(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		want, err := emb.NearDup(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("query %+v: %d hits, embedded %d", q, len(got), len(want))
		}
		for i := range want {
			if got[i].PK != want[i].PK || *got[i].Distance != *want[i].Distance || got[i].Variant != want[i].Variant || got[i].Score != want[i].Score {
				t.Fatalf("query bound %d hit %d: %s d=%d v=%d s=%v, embedded %s d=%d v=%d s=%v", q.MaxDistance, i,
					got[i].PK, *got[i].Distance, got[i].Variant, got[i].Score, want[i].PK, *want[i].Distance, want[i].Variant, want[i].Score)
			}
		}
	}
	if _, err := ix.NearDup(context.Background(), domain.NearDupQuery{Hashes: [][]byte{{1}}, MaxDistance: 3}); !errors.Is(err, domain.ErrInvalidQuery) {
		t.Fatalf("a short PDQ hash: %v, want ErrInvalidQuery", err)
	}
}

// TestHashHybridRecallMatchesEmbedded: on the same data the hash and hybrid plans of
// Milvus and of the embedded index have recall@10 (against exact) within 0.01 of
// each other — in fact the same ids, since both rank by Hamming distance then key.
func TestHashHybridRecallMatchesEmbedded(t *testing.T) {
	ix := openTest(t, testOptions(t, conformance.Dim))
	emb, err := embedded.Open(context.Background(), embedded.Options{Path: filepath.Join(t.TempDir(), "e.db"), Dim: conformance.Dim, ModelVersion: "test@1"})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	chs := conformance.Dataset(400, 17)
	mustApply(t, ix, chs...)
	mustApply(t, emb, chs...)
	r := rand.New(rand.NewPCG(17, 18))
	ctx := context.Background()
	type plan struct {
		p domain.Plan
		c int
	}
	for _, pl := range []plan{{domain.PlanHash, 0}, {domain.PlanHybrid, 50}, {domain.PlanHybrid, 200}} {
		var rm, re float64
		const nq = 10
		for range nq {
			v := conformance.Unit(r)
			truth, err := emb.Search(ctx, domain.VectorQuery{Vector: v, K: 10, Plan: domain.PlanExact})
			if err != nil {
				t.Fatal(err)
			}
			q := domain.VectorQuery{Vector: v, Code: conformance.Code(v), K: 10, Plan: pl.p, Candidates: pl.c}
			gm, err := ix.Search(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			ge, err := emb.Search(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			rm += recallOf(gm, truth)
			re += recallOf(ge, truth)
		}
		rm, re = rm/nq, re/nq
		t.Logf("%s C=%d: recall@10 milvus %.3f, embedded %.3f", pl.p, pl.c, rm, re)
		if math.Abs(rm-re) > 0.01 {
			t.Errorf("%s C=%d: recall@10 milvus %.3f, embedded %.3f: more than 0.01 apart", pl.p, pl.c, rm, re)
		}
	}
}

func recallOf(got, truth []domain.Hit) float64 {
	in := map[string]bool{}
	for _, h := range truth {
		in[h.PK] = true
	}
	n := 0
	for _, h := range got {
		if in[h.PK] {
			n++
		}
	}
	return float64(n) / float64(len(truth))
}

// TestConcurrentAppliesShareRounds: Apply calls that arrive together are written in
// shared rounds (batching with linger), and each returns its own outcomes.
func TestConcurrentAppliesShareRounds(t *testing.T) {
	opt := testOptions(t, conformance.Dim)
	opt.Linger = 50 * time.Millisecond
	opt.BatchSize = 64
	ix := openTest(t, opt)
	r := rand.New(rand.NewPCG(9, 9))
	const n = 40
	chs := make([]domain.Change, n)
	for i := range chs {
		chs[i] = textPost(fmt.Sprintf("c%02d", i), 1, "x", r)
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	outs := make([][]domain.Outcome, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = ix.Apply(context.Background(), chs[i:i+1])
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || len(outs[i]) != 1 || outs[i][0] != domain.Applied {
			t.Fatalf("apply %d: %v %v", i, outs[i], errs[i])
		}
	}
	st := ix.Stats()
	t.Logf("%d concurrent Apply calls in %d rounds", n, st.Rounds)
	if st.Rounds >= n/2 {
		t.Errorf("%d concurrent Apply calls took %d rounds; want them coalesced", n, st.Rounds)
	}
	if c, _ := ix.Count(context.Background()); c[domain.ModalityText] != n {
		t.Fatalf("count %v, want %d texts", c, n)
	}
	// Invalid input fails the call before any write.
	bad := textPost("bad", 1, "x", r)
	bad.Records[0].Vector = bad.Records[0].Vector[:3]
	if _, err := ix.Apply(context.Background(), []domain.Change{bad}); err == nil || !strings.Contains(err.Error(), "dimension 3") {
		t.Fatalf("a record of the wrong dimension: %v", err)
	}
}

// Write rounds read at Bounded consistency, which does not show writes of the
// last few seconds: the writer's memory of its own writes keeps versions and
// removed modalities right for posts it wrote a moment ago.
func TestBoundedRoundsSeeTheirOwnWrites(t *testing.T) {
	opt := testOptions(t, conformance.Dim)
	opt.WriteConsistency = "" // the default, Bounded
	// A writer that inserts new posts reads at a fence timestamp for its
	// first StaleWindow (TestNewPostsInsertedOnce); this one reads Bounded
	// from the start.
	opt.UpsertOnly = true
	ix := openTest(t, opt)
	r := rand.New(rand.NewPCG(3, 3))
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	both := domain.Change{PostID: "p", Seq: 10, Records: []domain.Record{
		conformance.Record("p", domain.ModalityImage, conformance.Unit(r), "a", at, nil),
		conformance.Record("p", domain.ModalityText, conformance.Unit(r), "a", at, nil)}}
	mustApply(t, ix, both)
	// At once: an older version is stale, a newer text-only one removes the image.
	if out := mustApply(t, ix, textPost("p", 5, "a", r)); out[0] != domain.Stale {
		t.Fatalf("an older version written right after a newer one: %v, want stale", out)
	}
	if out := mustApply(t, ix, textPost("p", 20, "a", r)); out[0] != domain.Applied {
		t.Fatalf("newer version: %v", out)
	}
	recs, err := ix.Get(context.Background(), []string{"p#image", "p#text"})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Modality != domain.ModalityText {
		t.Fatalf("records after the text-only version: %v, want p#text alone", recs)
	}
	// A delete then a redelivered old version: the delete stands.
	mustApply(t, ix, domain.Change{PostID: "p", Delete: true, Deny: true})
	if out := mustApply(t, ix, textPost("p", 20, "a", r)); out[0] != domain.Denied {
		t.Fatalf("re-upsert right after a takedown: %v, want denied", out)
	}
	if st := ix.Stats(); st.StrongRounds != 0 {
		t.Fatalf("%d rounds read Strong without a Fence", st.StrongRounds)
	}
	ix.Fence()
	mustApply(t, ix, textPost("q", 1, "a", r))
	if st := ix.Stats(); st.StrongRounds != 1 {
		t.Fatalf("after Fence: %d strong rounds, want 1", st.StrongRounds)
	}
}

// Rounds overlap (one reads while another writes, and with Rounds > 1
// several of each), but two rounds never hold one post: a version racing
// a newer one of the same post, each in a round full of other posts, is
// either applied before it or stale after it, and the newer version stands.
func TestOverlappingRoundsKeepEachPostsOrder(t *testing.T) {
	for _, rounds := range []int{1, 3} {
		t.Run(fmt.Sprintf("rounds=%d", rounds), func(t *testing.T) {
			opt := testOptions(t, conformance.Dim)
			opt.Rounds = rounds
			opt.BatchSize = 8
			ix := openTest(t, opt)
			r := rand.New(rand.NewPCG(5, uint64(rounds)))
			const posts, callers = 6, 8
			type call struct {
				ch  []domain.Change
				out []domain.Outcome
				err error
			}
			var calls []*call
			for c := range callers {
				for p := range posts {
					// Caller c applies version c+1 of post p after three other posts.
					var chs []domain.Change
					for f := range 3 {
						chs = append(chs, textPost(fmt.Sprintf("f%d-%d-%d", c, p, f), 1, "a", r))
					}
					calls = append(calls, &call{ch: append(chs, textPost(fmt.Sprintf("p%d", p), uint64(c+1), "a", r))})
				}
			}
			var wg sync.WaitGroup
			for c := range callers {
				wg.Go(func() {
					for _, cl := range calls[c*posts : (c+1)*posts] {
						cl.out, cl.err = ix.Apply(context.Background(), cl.ch)
					}
				})
			}
			wg.Wait()
			for _, cl := range calls {
				if cl.err != nil {
					t.Fatal(cl.err)
				}
			}
			for p := range posts {
				// Every version of p came out applied or stale, and none after
				// the newest is left applied: a redelivery of each older
				// version is stale now.
				for c := range callers {
					out := mustApply(t, ix, textPost(fmt.Sprintf("p%d", p), uint64(c+1), "a", r))
					want := domain.Stale
					if c == callers-1 {
						want = domain.Applied
					}
					if out[0] != want {
						t.Fatalf("post p%d version %d applied again after the race: %v, want %v (the index holds an older version than %d)",
							p, c+1, out[0], want, callers)
					}
				}
			}
			if st := ix.Stats(); st.Rounds < 2 {
				t.Fatalf("%d rounds: nothing overlapped", st.Rounds)
			}
		})
	}
}

// A partition that moves to another indexer: the new owner's fenced rounds
// see what the previous owner wrote a moment before, so a redelivered older
// version is stale, not a regression. Each pair of writers here is two
// indexes on one collection; the previous owner writes, then the new owner
// fences and writes at once, long before a Bounded read would be bound to
// show the writes (common.gracefulTime, 5 s), in several rounds, so that both
// the round that takes the fence timestamp and the rounds that reuse it are
// checked.
func TestFencedRoundsSeeThePreviousOwnersWrites(t *testing.T) {
	opt := testOptions(t, conformance.Dim)
	opt.WriteConsistency = "" // the default, Bounded
	// Without the start fence of a writer that inserts new posts, which
	// would show it prev's writes by itself: the Fence alone is checked.
	opt.UpsertOnly = true
	prev := openTest(t, opt)
	next, err := Open(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	r := rand.New(rand.NewPCG(4, 4))
	for i := range 5 {
		mustApply(t, prev, textPost(fmt.Sprintf("moved-%d", i), 10, "a", r))
	}
	next.Fence() // the partition is assigned to next after prev's last write
	for i := range 5 {
		id := fmt.Sprintf("moved-%d", i)
		if out := mustApply(t, next, textPost(id, 5, "a", r)); out[0] != domain.Stale {
			t.Fatalf("round %d: an older version redelivered to the new owner right after the previous owner wrote a newer one: %v, want stale", i, out)
		}
	}
	st := next.Stats()
	if st.StrongRounds != 5 {
		t.Fatalf("fenced rounds: %d, want 5", st.StrongRounds)
	}
	// At the fence timestamp, not Strong (which waits for a time tick on
	// every read): the server gave one.
	ts, err := next.serverTimestamp(context.Background())
	if err != nil || ts == 0 {
		t.Fatalf("fence timestamp: %d, %v", ts, err)
	}
	recs, err := next.Get(context.Background(), []string{"moved-0#text"})
	if err != nil || len(recs) != 1 {
		t.Fatalf("the previous owner's record: %v, %v", recs, err)
	}
}

// The deny rows page through in key order (a new replicated deny-list is
// seeded from them).
func TestDeniedIDs(t *testing.T) {
	opt := testOptions(t, conformance.Dim)
	ix := openTest(t, opt)
	var chs []domain.Change
	for i := range 30 {
		chs = append(chs, domain.Change{PostID: fmt.Sprintf("gone-%02d", i), Delete: true, Deny: true})
	}
	mustApply(t, ix, chs...)
	var got []string
	err := ix.DeniedIDs(context.Background(), func(id string, at time.Time) error {
		if time.Since(at) > time.Hour {
			t.Errorf("%s denied at %v", id, at)
		}
		got = append(got, id)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The deny collection is shared by every base name on the server: keep ours.
	var ours []string
	for _, id := range got {
		if strings.HasPrefix(id, "gone-") {
			ours = append(ours, id)
		}
	}
	if len(ours) < 30 || !slices.IsSorted(got) {
		t.Fatalf("listed %d of our 30 deny rows (sorted: %v)", len(ours), slices.IsSorted(got))
	}
}

// With a Coder, records written without a binary code get the coder's code
// (the embedded index does the same); a record's own code is kept.
func TestCoderCodesRecords(t *testing.T) {
	coder, err := hash.NewSimHash("m@1", conformance.Dim, 16, 1)
	if err != nil {
		t.Fatal(err)
	}
	opt := testOptions(t, conformance.Dim)
	opt.CodeBits, opt.Coder = 16, coder
	ix := openTest(t, opt)
	r := rand.New(rand.NewPCG(8, 8))
	a, b := textPost("a", 1, "x", r), textPost("b", 1, "x", r)
	a.Records[0].Code = nil // written without a code: the coder gives it one
	b.Records[0].Code = []byte{0xab, 0xcd}
	want := coder.Code(a.Records[0].Vector, domain.ModalityText)
	mustApply(t, ix, a, b)
	res, err := ix.Search(context.Background(), domain.VectorQuery{Code: want, Modality: domain.ModalityText, K: 1, Plan: domain.PlanHash})
	if err != nil || len(res) != 1 || res[0].PostID != "a" || *res[0].Distance != 0 {
		t.Fatalf("hash search for a's code: %+v %v", res, err)
	}
	res, err = ix.Search(context.Background(), domain.VectorQuery{Code: []byte{0xab, 0xcd}, Modality: domain.ModalityText, K: 1, Plan: domain.PlanHash})
	if err != nil || len(res) != 1 || res[0].PostID != "b" || *res[0].Distance != 0 {
		t.Fatalf("hash search for b's own code: %+v %v", res, err)
	}
}

// A round reads one collection, the versions rows, for a post's version and
// its takedown. Deny rows written before versions rows held the mark (an
// older build, or another model version's indexer: the deny rows are shared)
// are copied in before the first round, so they still refuse the post; a
// takedown through Apply leaves the mark.
func TestDenyMarksInVersionsRows(t *testing.T) {
	ctx := context.Background()
	opt := testOptions(t, conformance.Dim)
	first := openTest(t, opt)
	r := rand.New(rand.NewPCG(9, 9))
	// What an older build left: a deny row, no versions row, no marker row.
	if err := first.upsert(ctx, first.l.deny.name, []column.Column{
		column.NewColumnVarChar(fPostID, []string{"old-gone"}),
		column.NewColumnInt64(fDeniedAt, []int64{time.Now().UnixNano()}), dummyColumn(1)}); err != nil {
		t.Fatal(err)
	}
	if err := first.deleteIn(ctx, first.l.posts.name, fPostID, []string{denyMarksRow}); err != nil {
		t.Fatal(err)
	}
	first.Close()
	ix, err := Open(ctx, opt) // the upgraded build
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if out := mustApply(t, ix, textPost("old-gone", 3, "a", r), textPost("kept", 1, "a", r)); out[0] != domain.Denied || out[1] != domain.Applied {
		t.Fatalf("a post whose deny row predates the marks: %v, want [denied applied]", out)
	}
	mustApply(t, ix, domain.Change{PostID: "kept", Delete: true, Deny: true})
	seqs, err := ix.queryInt64(ctx, ix.l.posts.name, fPostID, fSeq, []string{"old-gone", "kept", denyMarksRow}, entity.ClStrong)
	if err != nil {
		t.Fatal(err)
	}
	if seqs["old-gone"] != denyMark || seqs["kept"] != denyMark || seqs[denyMarksRow] != denyMarksDone {
		t.Fatalf("versions rows %v: want both posts marked denied (%d) and the marker row", seqs, denyMark)
	}
	// Another process taking the posts over sees both takedowns.
	ix2, err := Open(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer ix2.Close()
	ix2.Fence()
	if out := mustApply(t, ix2, textPost("kept", 9, "a", r), textPost("old-gone", 9, "a", r)); out[0] != domain.Denied || out[1] != domain.Denied {
		t.Fatalf("another process: %v, want both denied", out)
	}
	// A version over int64 cannot be stored: refused, not wrapped into a mark.
	if _, err := ix2.Apply(ctx, []domain.Change{textPost("huge", math.MaxUint64, "a", r)}); err == nil {
		t.Fatal("a version of 2^64-1 was accepted")
	}
}

// openPair opens Milvus collections and an embedded index of the
// conformance dimension, to be given the same data.
func openPair(t *testing.T) (*Index, *embedded.Index) {
	t.Helper()
	ix := openTest(t, testOptions(t, conformance.Dim))
	emb, err := embedded.Open(context.Background(), embedded.Options{Path: filepath.Join(t.TempDir(), "e.db"), Dim: conformance.Dim, ModelVersion: "test@1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	return ix, emb
}

// TestDedupItems: the batch job's input read from Milvus (image records with
// a usable PDQ hash, paged in key order, within a time window) is the
// embedded index's on the same data, and so is the job's partition; the
// thumbnails come back for the posts that have one.
func TestDedupItems(t *testing.T) {
	ctx := context.Background()
	ix, emb := openPair(t)
	chs := conformance.Dataset(60, 5)
	// Near-duplicates of the first image, so that the job has clusters to find.
	var first *domain.Record
	for i := range chs {
		for j := range chs[i].Records {
			if r := &chs[i].Records[j]; r.Modality == domain.ModalityImage && len(r.PDQ) == domain.PDQBytes && r.PDQQuality >= domain.LowPDQQuality && first == nil {
				first = r
			}
		}
	}
	if first == nil {
		t.Fatal("the dataset has no image record with a usable PDQ hash")
	}
	for k := range 3 {
		ch := domain.Change{PostID: fmt.Sprintf("copy-%d", k)}
		r := *first
		r.PostID, r.PK = ch.PostID, domain.PrimaryKey(ch.PostID, domain.ModalityImage)
		r.PDQ = slices.Clone(first.PDQ)
		r.PDQ[k] ^= 0x0f
		r.CreatedAt = first.CreatedAt.Add(time.Duration(k+1) * time.Hour)
		ch.Records = []domain.Record{r}
		chs = append(chs, ch)
	}
	mustApply(t, ix, chs...)
	mustApply(t, emb, chs...)
	all, err := emb.DedupItems(ctx, time.Time{}, time.Time{})
	if err != nil || len(all) < 10 {
		t.Fatalf("embedded items: %d, %v", len(all), err)
	}
	mid := time.Unix(0, all[len(all)/2].At)
	for _, w := range []struct{ since, until time.Time }{{}, {since: mid}, {until: mid}} {
		got, err := ix.DedupItems(ctx, w.since, w.until)
		if err != nil {
			t.Fatal(err)
		}
		want, err := emb.DedupItems(ctx, w.since, w.until)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) || len(want) == 0 {
			t.Fatalf("window %v..%v: %d items from Milvus, %d embedded", w.since, w.until, len(got), len(want))
		}
		for i := range want {
			if got[i].Post != want[i].Post || got[i].At != want[i].At || got[i].Sig != want[i].Sig {
				t.Fatalf("item %d: Milvus %+v, embedded %+v", i, got[i], want[i])
			}
		}
	}
	got, _ := ix.DedupItems(ctx, time.Time{}, time.Time{})
	uf, err := dedup.Components(ctx, got, dedup.Options{Threshold: 31})
	if err != nil {
		t.Fatal(err)
	}
	idx := map[string]int{}
	for i, it := range got {
		idx[it.Post] = i
	}
	for k := range 3 {
		if uf.Find(idx[fmt.Sprintf("copy-%d", k)]) != uf.Find(idx[first.PostID]) {
			t.Fatalf("copy-%d is not in %s's component", k, first.PostID)
		}
	}
	posts := []string{first.PostID, "copy-0", "no-such-post"}
	th, err := ix.Thumbnails(ctx, posts)
	if err != nil {
		t.Fatal(err)
	}
	eth, _ := emb.Thumbnails(ctx, posts)
	if len(th) != len(eth) || string(th[first.PostID]) != string(eth[first.PostID]) {
		t.Fatalf("thumbnails: Milvus %d, embedded %d", len(th), len(eth))
	}
}

// TestScanRecords: Milvus visits the records as the embedded index does (the
// same keys in the same order, with what a retro sweep matches: ids,
// author, time, labels, text, media URL, vector), and resumes after a key.
func TestScanRecords(t *testing.T) {
	ctx := context.Background()
	ix, emb := openPair(t)
	chs := conformance.Dataset(700, 9) // more records than one page
	mustApply(t, ix, chs...)
	mustApply(t, emb, chs...)
	scan := func(s domain.RecordScanner, after string) []domain.Record {
		var out []domain.Record
		if err := s.ScanRecords(ctx, after, func(r *domain.Record) error {
			out = append(out, *r)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := scan(emb, "")
	if len(want) <= scanPage {
		t.Fatalf("%d records: want more than a page (%d)", len(want), scanPage)
	}
	for _, after := range []string{"", want[len(want)/3].PK, want[len(want)-1].PK} {
		got, exp := scan(ix, after), scan(emb, after)
		if len(got) != len(exp) {
			t.Fatalf("after %q: %d records from Milvus, %d embedded", after, len(got), len(exp))
		}
		for i := range exp {
			g, w := got[i], exp[i]
			if g.PK != w.PK || g.PostID != w.PostID || g.Modality != w.Modality || g.Author != w.Author || !g.CreatedAt.Equal(w.CreatedAt) ||
				!slices.Equal(g.Labels, w.Labels) || g.Text != w.Text || g.MediaURL != w.MediaURL || !slices.Equal(g.Vector, w.Vector) {
				t.Fatalf("after %q, record %d: Milvus %s/%s %q, embedded %s/%s %q", after, i, g.PK, g.Author, g.Text, w.PK, w.Author, w.Text)
			}
		}
	}
	// fn's error stops the scan and comes back.
	stop := errors.New("stop")
	n := 0
	if err := ix.ScanRecords(ctx, "", func(*domain.Record) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Fatalf("a failing fn: %v after %d records", err, n)
	}
}
