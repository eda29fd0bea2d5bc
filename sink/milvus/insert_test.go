package milvus

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/milvus-io/milvus-proto/go-api/v2/milvuspb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/sink/conformance"
)

// countEach checks that the index holds exactly n rows of each modality:
// count(*) counts a key inserted twice twice, where searches and Get merge
// the rows of one key.
func countEach(t *testing.T, ix *Index, n int) {
	t.Helper()
	c, err := ix.Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c[domain.ModalityText] != n || c[domain.ModalityImage] != n {
		t.Fatalf("count %v, want %d rows of each modality (each key once)", c, n)
	}
}

// TestNewPostsInsertedOnce covers the insert of new posts' rows
// (Options.UpsertOnly false): a post Milvus holds nothing of is inserted,
// and no path writes one of its keys twice: a new version, a redelivery by
// a writer that restarted a moment later, a round redone after a crash
// between its versions row and its inserts, a round after a Fence.
func TestNewPostsInsertedOnce(t *testing.T) {
	const n = 40
	cases := []struct {
		name string
		// run writes posts [0, n) in the scenario's way and returns the
		// index that wrote last and how many of them it inserted.
		run          func(t *testing.T, opt Options, ix *Index) (*Index, int64)
		wantInserted int64
	}{
		{"new posts", func(t *testing.T, opt Options, ix *Index) (*Index, int64) {
			mustApply(t, ix, posts(0, n, 1)...)
			return ix, ix.Stats().InsertedPosts
		}, n},
		{"new versions upsert", func(t *testing.T, opt Options, ix *Index) (*Index, int64) {
			mustApply(t, ix, posts(0, n, 1)...)
			next := posts(0, n, 2)
			for i := range next {
				next[i].Seq = 2
			}
			if out := mustApply(t, ix, next...); out[0] != domain.Applied {
				t.Fatalf("new version: %v", out[0])
			}
			return ix, ix.Stats().InsertedPosts - n
		}, 0},
		{"redelivery after a restart", func(t *testing.T, opt Options, ix *Index) (*Index, int64) {
			// A second writer on the same collections (a restarted
			// indexer replaying from its committed offset) gets the same
			// posts the moment the first acknowledged them: its read must
			// show the first writer's versions rows, which a Bounded read
			// made this soon misses.
			ix2, err := Open(context.Background(), opt)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ix2.Close() })
			mustApply(t, ix, posts(0, n, 1)...)
			mustApply(t, ix2, posts(0, n, 1)...)
			return ix2, ix2.Stats().InsertedPosts
		}, 0},
		{"round redone after a crash between versions and inserts", func(t *testing.T, opt Options, ix *Index) (*Index, int64) {
			// What such a crash leaves: the versions rows, no records.
			ids := make([]string, n)
			seqs := make([]int64, n)
			for i, ch := range posts(0, n, 1) {
				ids[i], seqs[i] = ch.PostID, int64(ch.Seq)
			}
			if err := parallel(ix.w.versionWrites(context.Background(), ids, seqs, true)...); err != nil {
				t.Fatal(err)
			}
			countEach(t, ix, 0)
			mustApply(t, ix, posts(0, n, 1)...)
			mustApply(t, ix, posts(0, n, 1)...) // and once more
			return ix, ix.Stats().InsertedPosts
		}, 0},
		{"after a fence", func(t *testing.T, opt Options, ix *Index) (*Index, int64) {
			ix.Fence()
			mustApply(t, ix, posts(0, n, 1)...)
			return ix, ix.Stats().InsertedPosts
		}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opt := testOptions(t, conformance.Dim)
			ix := openTest(t, opt)
			ix, got := tc.run(t, opt, ix)
			if got != tc.wantInserted {
				t.Errorf("posts inserted %d, want %d", got, tc.wantInserted)
			}
			countEach(t, ix, n)
			pks := make([]string, 0, 2*n)
			for _, ch := range posts(0, n, 1) {
				pks = append(pks, domain.PrimaryKey(ch.PostID, domain.ModalityText), domain.PrimaryKey(ch.PostID, domain.ModalityImage))
			}
			recs, err := ix.Get(context.Background(), pks)
			if err != nil || len(recs) != len(pks) {
				t.Fatalf("Get found %d of %d records (%v)", len(recs), len(pks), err)
			}
		})
	}
	t.Run("insert whose acknowledgement is lost", func(t *testing.T) {
		// The server applies the first insert into the records collection
		// but the client hears Unavailable (a dropped connection): the
		// insert must not be sent again, and the round that redoes the
		// posts must upsert them, though a Bounded read made at once may not
		// show their versions rows.
		var records atomic.Pointer[string]
		var lost atomic.Int32
		opt := testOptions(t, conformance.Dim)
		opt.DialOptions = []grpc.DialOption{grpc.WithChainUnaryInterceptor(
			func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				err := invoker(ctx, method, req, reply, cc, opts...)
				if in, ok := req.(*milvuspb.InsertRequest); ok && err == nil && records.Load() != nil &&
					in.GetCollectionName() == *records.Load() && lost.Add(1) == 1 {
					return status.Error(codes.Unavailable, "connection dropped after the insert was sent (test)")
				}
				return err
			})}
		ix := openTest(t, opt)
		records.Store(&ix.l.records.name)
		chs := posts(0, n, 1)
		if _, err := ix.Apply(context.Background(), chs); err == nil {
			t.Fatal("Apply succeeded though its records insert failed")
		}
		mustApply(t, ix, chs...) // the pipeline's redelivery
		if lost.Load() != 1 {
			t.Fatalf("%d inserts into the records collection, want 1 (the redelivery upserts)", lost.Load())
		}
		countEach(t, ix, n)
	})
	t.Run("upsert only", func(t *testing.T) {
		opt := testOptions(t, conformance.Dim)
		opt.UpsertOnly = true
		ix := openTest(t, opt)
		mustApply(t, ix, posts(0, n, 1)...)
		if got := ix.Stats().InsertedPosts; got != 0 {
			t.Errorf("UpsertOnly: %d posts inserted", got)
		}
		countEach(t, ix, n)
	})
}
