package milvus

import (
	"context"
	"errors"
	"fmt"

	"github.com/milvus-io/milvus-proto/go-api/v2/commonpb"
	"github.com/milvus-io/milvus-proto/go-api/v2/milvuspb"
	"github.com/milvus-io/milvus/client/v2/column"
	"github.com/milvus-io/milvus/client/v2/milvusclient"
	"google.golang.org/grpc"
)

// A fenced write round must see every write acknowledged before its Fence
// (the previous owner's last writes of a partition). A Strong read gives that
// but waits for the next time tick (~200-300 ms on Milvus 2.3) on every read.
// Instead the writer takes one timestamp from the server after the Fence (the
// timestamp Milvus gives a no-op delete: every write acknowledged before it
// has a smaller one) and the fenced rounds read at that guarantee timestamp
// (consistency Session with the request's guarantee_timestamp, which Milvus
// honours as given): the first such read waits for the server to pass it,
// the later ones do not wait. The Go SDK has no option for either timestamp,
// so a gRPC interceptor carries them (tsInterceptor).

type guaranteeKey struct{}

type mutationTSKey struct{}

// withGuarantee returns a context whose Milvus queries read at guarantee
// timestamp ts (the query option must say ClSession).
func withGuarantee(ctx context.Context, ts uint64) context.Context {
	return context.WithValue(ctx, guaranteeKey{}, ts)
}

// errNoGuarantee: a Session read without a guarantee timestamp would read
// at timestamp 0 (Eventually); it is refused instead.
var errNoGuarantee = errors.New("milvus: a Session read without a guarantee timestamp (internal error)")

// tsInterceptor sets the guarantee timestamp of queries whose context carries
// one, and records the timestamp of a mutation whose context asks for it.
func tsInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if q, ok := req.(*milvuspb.QueryRequest); ok && q.GetConsistencyLevel() == commonpb.ConsistencyLevel_Session {
		ts, ok := ctx.Value(guaranteeKey{}).(uint64)
		if !ok || ts == 0 {
			return errNoGuarantee
		}
		q.GuaranteeTimestamp = ts
	}
	err := invoker(ctx, method, req, reply, cc, opts...)
	if p, ok := ctx.Value(mutationTSKey{}).(*uint64); ok && err == nil {
		if m, ok := reply.(*milvuspb.MutationResult); ok {
			*p = m.GetTimestamp()
		}
	}
	return err
}

// serverTimestamp returns a timestamp of the server's clock (TSO) that is
// later than every write acknowledged before the call: the timestamp Milvus
// assigns an upsert of the fence row, post id "" (which no post can have:
// Apply refuses an empty id) in the versions collection. (Milvus 2.3.5
// returns no timestamp for a delete.) Rounds read that collection by post
// id only, so the row is never seen.
func (ix *Index) serverTimestamp(ctx context.Context) (uint64, error) {
	var ts uint64
	err := ix.call(ctx, "fence timestamp", func(ctx context.Context) error {
		ts = 0
		cctx := context.WithValue(ctx, mutationTSKey{}, &ts)
		_, err := ix.c.Upsert(cctx, milvusclient.NewColumnBasedInsertOption(ix.l.posts.name,
			column.NewColumnVarChar(fPostID, []string{""}), column.NewColumnInt64(fSeq, []int64{0}), dummyColumn(1)), noRetry)
		return err
	})
	if err != nil {
		return 0, err
	}
	if ts == 0 {
		return 0, fmt.Errorf("milvus: the server returned no timestamp for an upsert")
	}
	return ts, nil
}
