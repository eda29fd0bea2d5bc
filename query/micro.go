package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"
)

// microService speaks the NATS services protocol (what nats.go's micro
// package speaks: $SRV.PING, $SRV.INFO and $SRV.STATS discovery, a queue
// group per endpoint, errors in the Nats-Service-Error headers), with the
// types of that package, so `nats micro ls|info|stats` see xmodal as any
// micro service.
//
// It exists because micro times a request by its handler's return, and its
// handlers run one at a time per endpoint: a handler that hands the work to
// a goroutine (so that searches run concurrently) is timed in microseconds
// whatever the search took, and its errors are counted before they happen.
// Here a request is timed from its arrival to its reply, and counted with
// the outcome of that reply, while requests run concurrently.
type microService struct {
	nc      *nats.Conn
	id      string
	name    string
	version string
	desc    string
	started time.Time

	mu   sync.Mutex
	eps  []*microEndpoint
	subs []*nats.Subscription
}

// microQueueGroup is micro's default queue group: replicas share the load.
const microQueueGroup = "q"

// microEndpoint is one endpoint and its statistics.
type microEndpoint struct {
	ms    *microService
	stats micro.EndpointStats
}

// msgHandler handles a request; it must call done exactly once, when the
// reply (or error) has been sent, with the error sent (nil on success).
type msgHandler func(msg *nats.Msg, done func(err error))

func newMicroService(nc *nats.Conn, name, version, desc string) (*microService, error) {
	ms := &microService{nc: nc, id: nuid.Next(), name: name, version: version, desc: desc, started: time.Now().UTC()}
	for _, v := range []micro.Verb{micro.PingVerb, micro.InfoVerb, micro.StatsVerb} {
		for _, subj := range []struct{ name, id string }{{"", ""}, {name, ""}, {name, ms.id}} {
			s, err := micro.ControlSubject(v, subj.name, subj.id)
			if err != nil {
				ms.stop()
				return nil, err
			}
			verb := v
			sub, err := nc.Subscribe(s, func(m *nats.Msg) { ms.answerVerb(verb, m) })
			if err != nil {
				ms.stop()
				return nil, fmt.Errorf("query: subscribe %s: %w", s, err)
			}
			ms.subs = append(ms.subs, sub)
		}
	}
	return ms, nil
}

func (ms *microService) identity() micro.ServiceIdentity {
	return micro.ServiceIdentity{Name: ms.name, ID: ms.id, Version: ms.version, Metadata: map[string]string{}}
}

func (ms *microService) answerVerb(v micro.Verb, m *nats.Msg) {
	var out any
	switch v {
	case micro.PingVerb:
		out = micro.Ping{ServiceIdentity: ms.identity(), Type: micro.PingResponseType}
	case micro.InfoVerb:
		out = ms.info()
	case micro.StatsVerb:
		out = ms.statsReply()
	}
	b, err := json.Marshal(out)
	if err == nil {
		err = m.Respond(b)
	}
	_ = err // a discovery request whose requester went away
}

func (ms *microService) info() micro.Info {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	in := micro.Info{ServiceIdentity: ms.identity(), Type: micro.InfoResponseType, Description: ms.desc, Endpoints: []micro.EndpointInfo{}}
	for _, e := range ms.eps {
		in.Endpoints = append(in.Endpoints, micro.EndpointInfo{Name: e.stats.Name, Subject: e.stats.Subject, QueueGroup: e.stats.QueueGroup,
			Metadata: map[string]string{}})
	}
	return in
}

func (ms *microService) statsReply() micro.Stats {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	st := micro.Stats{ServiceIdentity: ms.identity(), Type: micro.StatsResponseType, Started: ms.started, Endpoints: []*micro.EndpointStats{}}
	for _, e := range ms.eps {
		c := e.stats
		st.Endpoints = append(st.Endpoints, &c)
	}
	return st
}

// add subscribes an endpoint in the service's queue group.
func (ms *microService) add(name, subject string, h msgHandler) error {
	e := &microEndpoint{ms: ms, stats: micro.EndpointStats{Name: name, Subject: subject, QueueGroup: microQueueGroup}}
	sub, err := ms.nc.QueueSubscribe(subject, microQueueGroup, func(m *nats.Msg) {
		start := time.Now()
		h(m, func(err error) { e.record(time.Since(start), err) })
	})
	if err != nil {
		return fmt.Errorf("query: subscribe %s: %w", subject, err)
	}
	ms.mu.Lock()
	ms.eps = append(ms.eps, e)
	ms.subs = append(ms.subs, sub)
	ms.mu.Unlock()
	return nil
}

// record counts one request that took d and ended with err.
func (e *microEndpoint) record(d time.Duration, err error) {
	e.ms.mu.Lock()
	defer e.ms.mu.Unlock()
	s := &e.stats
	s.NumRequests++
	s.ProcessingTime += d
	s.AverageProcessingTime = s.ProcessingTime / time.Duration(s.NumRequests)
	if err != nil {
		s.NumErrors++
		var qe *Error
		if errors.As(err, &qe) {
			s.LastError = fmt.Sprintf("%d:%s", qe.Code, qe.Message)
		} else {
			s.LastError = err.Error()
		}
	}
}

// stop drains the subscriptions: requests already received are still answered.
func (ms *microService) stop() error {
	ms.mu.Lock()
	subs := slices.Clone(ms.subs)
	ms.subs = nil
	ms.mu.Unlock()
	var errs []error
	for _, s := range subs {
		if err := s.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// stopAndWait stops the service and waits, until ctx ends, for the drained
// subscriptions to deliver what they had received.
func (ms *microService) stopAndWait(ctx context.Context) error {
	ms.mu.Lock()
	subs := slices.Clone(ms.subs)
	ms.mu.Unlock()
	err := ms.stop()
	for _, sub := range subs {
		for sub.IsValid() {
			select {
			case <-ctx.Done():
				return err
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return err
}

// respondError sends a micro-style error reply: headers, empty body.
func respondError(m *nats.Msg, e *Error) error {
	if m.Reply == "" {
		return nil // a publish, not a request: nobody waits for an answer
	}
	out := nats.NewMsg(m.Reply)
	out.Header.Set(micro.ErrorHeader, e.Message)
	out.Header.Set(micro.ErrorCodeHeader, fmt.Sprint(e.Code))
	return m.RespondMsg(out)
}
