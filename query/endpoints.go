package query

// The service's request plumbing, shared by the NATS endpoints and the HTTP
// gateway: the endpoint registry, in-process calls, the per-request deadline,
// metrics and error mapping, and the deny-list barrier before a reply.

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"time"
)

// register records an endpoint's handler so the HTTP gateway can call it.
func (s *Service) register(name string, h func(context.Context, []byte) (any, error)) {
	s.cs.eps.Store(name, h)
}

// Call runs one endpoint in-process, as a NATS request to it would (same
// concurrency bound, deadline, metrics and errors). Endpoint names are the
// subject suffixes: search, get, stats, admin.delete, and those others add.
func (s *Service) Call(ctx context.Context, endpoint string, data []byte) (any, error) {
	h, ok := s.cs.eps.Load(endpoint)
	if !ok {
		return nil, errorf(CodeNotFound, "unknown endpoint %q", endpoint)
	}
	if !s.enter() {
		s.reqs.WithLabelValues(endpoint, "503").Inc()
		return nil, errShuttingDown()
	}
	defer s.inflight.Done()
	select {
	case s.sem <- struct{}{}:
	default:
		err := errorf(CodeTooManyRequest, "too many requests in flight (%d); retry later", s.cfg.Concurrency)
		s.reqs.WithLabelValues(endpoint, "429").Inc()
		return nil, err
	}
	defer func() { <-s.sem }()
	return s.run(ctx, endpoint, h.(func(context.Context, []byte) (any, error)), data)
}

// Endpoints lists the registered endpoint names.
func (s *Service) Endpoints() []string {
	var out []string
	s.cs.eps.Range(func(k, _ any) bool { out = append(out, k.(string)); return true })
	slices.Sort(out)
	return out
}

// run applies the deadline and records the metrics of one request.
func (s *Service) run(parent context.Context, name string, h func(context.Context, []byte) (any, error), data []byte) (any, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(parent, s.cfg.Timeout)
	defer cancel()
	defer context.AfterFunc(s.base, cancel)() // Shutdown's grace is over
	res, err := h(ctx, data)
	s.lat.WithLabelValues(name).Observe(time.Since(start).Seconds())
	if err != nil {
		// The request's deadline, or a bare deadline error from below; an *Error
		// keeps its code even when its cause is a deadline of its own (a media
		// fetch's attempt timeout is a 422, not the request's 504).
		var qe *Error
		if errors.Is(ctx.Err(), context.DeadlineExceeded) || (!errors.As(err, &qe) && errors.Is(err, context.DeadlineExceeded)) {
			err = errorf(CodeTimeout, "request took longer than %s", s.cfg.Timeout)
		} else if s.base.Err() != nil && ctx.Err() != nil {
			err = errShuttingDown()
		}
		e := AsError(err)
		s.reqs.WithLabelValues(name, strconv.Itoa(e.Code)).Inc()
		if e.Code >= 500 {
			s.d.Logger.Warn("query failed", "endpoint", name, "code", e.Code, "err", e.Message)
		}
		return nil, e
	}
	s.reqs.WithLabelValues(name, "200").Inc()
	return res, nil
}

// syncDeny brings the deny-list up to every takedown recorded before the
// request; when it cannot, the request fails (503) rather than risk serving a
// taken-down post.
func (s *Service) syncDeny(ctx context.Context) error {
	if err := s.d.Deny.Sync(ctx); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errorf(CodeUnavailable, "the deny-list cannot be brought up to date (NATS JetStream unreachable?): %w", err)
	}
	return nil
}

func tookMS(start time.Time) float64 { return float64(time.Since(start).Microseconds()) / 1000 }
