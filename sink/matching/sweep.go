package matching

import (
	"context"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/domain"
)

// Sweeper looks the posts already indexed up against new bank entries
// (retro sweeps, issue #18 item 4): each PDQ entry is searched in the index
// at the bank's threshold (an exact Hamming range search) and every image
// within it becomes an event with source "sweep" and version 0 (the id is
// still deterministic: a sweep run again adds no event within the duplicate
// window). Sweeps run one at a time, in the background, in the order they
// were asked for; Status shows their progress.
//
// Not yet: other signal types (MD5, text, URL and embedding entries are
// matched at ingest only), resuming a sweep after a crash (it is lost; ask
// for it again), and rotated or mirrored copies (the index keeps one PDQ hash
// per image, in its original orientation).
type Sweeper struct {
	ix     domain.NearDupSearcher
	events Publisher
	log    *slog.Logger

	mu     sync.Mutex
	queue  chan *sweep
	all    []*sweep
	nextID int

	progress *prometheus.CounterVec
	matched  *prometheus.CounterVec
}

type sweep struct {
	st      banks.SweepStatus
	bank    banks.BankInfo
	entries []banks.Entry
}

// NewSweeper starts the sweeper's worker; it stops when ctx ends.
func NewSweeper(ctx context.Context, ix domain.NearDupSearcher, events Publisher, log *slog.Logger, reg prometheus.Registerer) (*Sweeper, error) {
	if log == nil {
		log = slog.Default()
	}
	s := &Sweeper{ix: ix, events: events, log: log, queue: make(chan *sweep, 1024),
		progress: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xmodal_sweep_entries_total",
			Help: "Bank entries looked up in the index by retro sweeps, by bank."}, []string{"bank"}),
		matched: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xmodal_sweep_matches_total",
			Help: "Indexed posts found by retro sweeps (match events with source sweep), by bank."}, []string{"bank"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{s.progress, s.matched} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	go s.run(ctx)
	return s, nil
}

// Start queues a sweep of the index for the entries of bank (only PDQ
// entries that are not disabled are swept) and returns its status.
func (s *Sweeper) Start(bank banks.BankInfo, entries []banks.Entry) banks.SweepStatus {
	var pdqs []banks.Entry
	for _, e := range entries {
		if e.Type == banks.SignalPDQ && !e.Disabled {
			pdqs = append(pdqs, e)
		}
	}
	now := time.Now().UTC()
	if len(pdqs) == 0 {
		// Nothing to sweep (yet: other signal types are matched at ingest only).
		return banks.SweepStatus{Bank: bank.Name, State: "done", Queued: now, Finished: now}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	sw := &sweep{bank: bank, entries: pdqs, st: banks.SweepStatus{ID: s.nextID, Bank: bank.Name, Entries: len(pdqs),
		State: "queued", Queued: now}}
	select {
	case s.queue <- sw:
	default:
		sw.st.State, sw.st.Error = "failed", "too many sweeps queued; ask again later"
	}
	s.all = append(s.all, sw)
	if len(s.all) > 100 {
		s.all = slices.Delete(s.all, 0, len(s.all)-100)
	}
	return sw.st
}

// Status lists the latest sweeps (at most 100), newest last.
func (s *Sweeper) Status() []banks.SweepStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]banks.SweepStatus, len(s.all))
	for i, sw := range s.all {
		out[i] = sw.st
	}
	return out
}

func (s *Sweeper) set(sw *sweep, f func(st *banks.SweepStatus)) {
	s.mu.Lock()
	f(&sw.st)
	s.mu.Unlock()
}

func (s *Sweeper) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case sw := <-s.queue:
			start := time.Now()
			s.set(sw, func(st *banks.SweepStatus) { st.State, st.Started = "running", start.UTC() })
			err := s.sweep(ctx, sw)
			s.set(sw, func(st *banks.SweepStatus) {
				st.Finished = time.Now().UTC()
				if err != nil {
					st.State, st.Error = "failed", err.Error()
				} else {
					st.State = "done"
				}
			})
			s.log.Info("retro sweep", "bank", sw.st.Bank, "entries", sw.st.Entries, "matches", sw.st.Matches, "state", sw.st.State,
				"err", sw.st.Error, "took", time.Since(start).Round(time.Millisecond))
		}
	}
}

// sweep looks each entry up and publishes the events of each few entries
// together.
func (s *Sweeper) sweep(ctx context.Context, sw *sweep) error {
	thr := sw.bank.Thresholds.PDQThreshold()
	now := time.Now().UTC()
	// A swept bank's series exist from its first sweep, matches or not.
	s.matched.WithLabelValues(sw.bank.Name)
	var pending []Event
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		if err := s.events.Publish(ctx, pending); err != nil {
			return err
		}
		s.matched.WithLabelValues(sw.bank.Name).Add(float64(len(pending)))
		pending = pending[:0]
		return nil
	}
	for i, e := range sw.entries {
		h, err := hex.DecodeString(e.Value)
		if err != nil || len(h) != domain.PDQBytes {
			return fmt.Errorf("entry %s: not a PDQ hash", e.ID)
		}
		hits, err := s.ix.NearDup(ctx, domain.NearDupQuery{Hashes: [][]byte{h}, MaxDistance: thr})
		if err != nil {
			return fmt.Errorf("entry %s: %w", e.ID, err)
		}
		for _, hit := range hits {
			pending = append(pending, Event{ID: EventID(hit.PostID, 0, e.ID), PostID: hit.PostID, Author: hit.Author, CreatedAt: hit.CreatedAt,
				Modality: hit.Modality, Bank: sw.bank.Name, EntryID: e.ID, SignalType: banks.SignalPDQ, Distance: hit.Distance,
				Labels: sw.bank.Labels, Action: sw.bank.Action, MatchedAt: now, Source: SourceSweep})
		}
		if len(pending) >= 256 {
			if err := flush(); err != nil {
				return err
			}
		}
		s.progress.WithLabelValues(sw.bank.Name).Inc()
		s.set(sw, func(st *banks.SweepStatus) { st.Done, st.Matches = i+1, st.Matches+len(hits) })
	}
	return flush()
}
