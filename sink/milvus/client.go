package milvus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	grpc_retry "github.com/grpc-ecosystem/go-grpc-middleware/retry"
	"github.com/milvus-io/milvus/client/v2/milvusclient"
	"github.com/milvus-io/milvus/pkg/v2/util/merr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// ErrUnreachable is returned by Open when no Milvus answered within StartTimeout.
var ErrUnreachable = errors.New("milvus unreachable")

// noRetry turns off the SDK's own retry interceptor for a call: this package retries
// by itself (bounded, on Unavailable/ResourceExhausted only) and the SDK's default
// (6 attempts, backoff up to 44 s) would stack on top of it.
var noRetry = grpc_retry.Disable()

// dial connects to Milvus, trying again with a short timeout per attempt until
// StartTimeout has passed.
func dial(ctx context.Context, o Options) (*milvusclient.Client, error) {
	cfg := &milvusclient.ClientConfig{
		Address:  o.Address,
		Username: o.Username,
		Password: o.Password,
		DBName:   o.DBName,
		DialOptions: []grpc.DialOption{
			// The SDK dials with grpc.DialContext; blocking makes an absent server an
			// error within DialTimeout instead of a failure on the first call.
			//lint:ignore SA1019 see above
			grpc.WithBlock(),
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
				MinConnectTimeout: o.DialTimeout,
			}),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)),
			// Guarantee and mutation timestamps, which the SDK does not expose
			// (fence.go).
			grpc.WithChainUnaryInterceptor(tsInterceptor),
		},
	}
	cfg.DialOptions = append(cfg.DialOptions, o.DialOptions...)
	deadline := time.Now().Add(o.StartTimeout)
	var last error
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, o.DialTimeout)
		c, err := milvusclient.New(actx, cfg)
		cancel()
		if err == nil {
			return c, nil
		}
		last = err
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrUnreachable, o.Address, ctx.Err())
		}
		if !time.Now().Add(time.Second).Before(deadline) {
			return nil, fmt.Errorf("%w: no answer from %s within %s (%d attempts of %s; last: %v); is Milvus running (scripts/milvus.sh start) and milvus.address right?",
				ErrUnreachable, o.Address, o.StartTimeout, attempt, o.DialTimeout, last)
		}
		o.Logger.Warn("milvus not reachable yet, retrying", "address", o.Address, "attempt", attempt, "err", err)
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
	}
}

// retryable reports whether err means "unavailable" or "resource exhausted": a gRPC
// status with either code, or Milvus's own statuses of the same meaning.
func retryable(err error) bool {
	if err == nil {
		return false
	}
	if s, ok := status.FromError(err); ok && (s.Code() == codes.Unavailable || s.Code() == codes.ResourceExhausted) {
		return true
	}
	for _, e := range []error{merr.ErrServiceNotReady, merr.ErrServiceUnavailable, merr.ErrServiceTooManyRequests,
		merr.ErrServiceRateLimit, merr.ErrServiceResourceInsufficient} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// call runs fn with a per-attempt timeout and retries it with exponential backoff
// (with jitter) while it fails with a retryable error, at most Retries times.
func (ix *Index) call(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	return retry(ctx, ix.opt, what, ix.opt.CallTimeout, fn, ix.metrics.retry)
}

func retry(ctx context.Context, o Options, what string, timeout time.Duration, fn func(ctx context.Context) error, onRetry func()) error {
	wait := o.RetryBackoff
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, timeout)
		err := fn(actx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("milvus: %s: %w (after %d attempts: %v)", what, ctx.Err(), attempt+1, err)
		}
		if !retryable(err) || attempt >= o.Retries {
			if attempt > 0 {
				return fmt.Errorf("milvus: %s (after %d attempts): %w", what, attempt+1, err)
			}
			return fmt.Errorf("milvus: %s: %w", what, err)
		}
		if onRetry != nil {
			onRetry()
		}
		d := wait/2 + time.Duration(rand.Int64N(int64(wait/2)+1))
		o.Logger.Warn("milvus call failed, retrying", "call", what, "attempt", attempt+1, "wait", d, "err", err)
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return fmt.Errorf("milvus: %s: %w (while waiting to retry: %v)", what, ctx.Err(), err)
		}
		wait = min(2*wait, o.RetryMaxBackoff)
	}
}
