package kafka

// The consumer group's lifecycle: joining generations, starting the
// partition readers of this member's share, and tearing a generation down.

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"time"

	kafkago "github.com/segmentio/kafka-go"
)

// run follows the group from generation to generation until Close.
func (s *Source) run() {
	defer s.loop.Done()
	for {
		kg, err := s.group.Next(s.ctx)
		if err != nil {
			if errors.Is(err, kafkago.ErrGroupClosed) || s.ctx.Err() != nil {
				return
			}
			s.m.groupErrors.Inc()
			s.warn("group", "consumer group join failed; retrying", "err", err)
			continue
		}
		s.m.generations.Inc()
		s.startGeneration(kg)
	}
}

// startGeneration runs one generation: it loads the delivery history of the
// assigned partitions, starts one reader per partition, and commits on an
// interval; when the generation ends (rebalance, lost coordinator, Close) it
// commits what is safe and abandons the rest.
func (s *Source) startGeneration(kg *kafkago.Generation) {
	g := &generation{kg: kg, parts: map[int]*partition{}}
	assigned := kg.Assignments[s.cfg.Topic]
	kg.Start(func(ctx context.Context) {
		ids := make([]int, 0, len(assigned))
		for _, a := range assigned {
			ids = append(ids, a.ID)
		}
		slices.Sort(ids)
		s.log.Info("partitions assigned", "generation", kg.ID, "member", kg.MemberID, "partitions", ids)
		if s.cfg.OnAssign != nil {
			s.cfg.OnAssign(ids)
		}
		var hist map[int][]span
		for backoff := 100 * time.Millisecond; ; backoff = min(backoff*2, 5*time.Second) {
			var err error
			if hist, err = s.loadHistory(ctx); err == nil {
				break
			}
			s.warn("history", "reading the attempts table failed; retrying", "topic", s.cfg.AttemptsTopic, "err", err)
			if !sleep(ctx, backoff) {
				s.teardown(g)
				return
			}
		}
		s.mu.Lock()
		for _, a := range assigned {
			p := &partition{gen: g, id: a.ID, label: strconv.Itoa(a.ID), track: newTracker(), committed: -1, hwm: -1, cur: span{-1, -1}}
			if a.Offset >= 0 {
				p.committed = a.Offset
				s.m.committed.WithLabelValues(s.cfg.Topic, p.label).Set(float64(a.Offset))
			}
			p.prior = prune(hist[a.ID], p.committed)
			g.parts[a.ID] = p
		}
		s.gen = g
		s.mu.Unlock()
		for _, a := range assigned {
			p, off := g.parts[a.ID], a.Offset
			kg.Start(func(ctx context.Context) { s.readPartition(ctx, p, off) })
		}
		t := time.NewTicker(s.cfg.CommitInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				s.teardown(g)
				return
			case <-t.C:
				s.commit(g)
			}
		}
	})
}

// teardown ends g: no more hand-outs or acks count for it; what is safe is
// committed, the rest will be redelivered to the partitions' next owner.
func (s *Source) teardown(g *generation) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.handMu.Lock()
	s.mu.Lock()
	offs := s.safeOffsets(g)
	g.revoked = true
	if s.gen == g {
		s.gen = nil
	}
	outstanding := 0
	ids := slices.Sorted(maps.Keys(g.parts))
	for _, id := range ids {
		outstanding += g.parts[id].track.outstanding()
	}
	s.mu.Unlock()
	s.handMu.Unlock()
	err := s.commitOffsets(g, offs)
	s.mu.Lock()
	for _, id := range ids {
		s.m.committed.DeleteLabelValues(s.cfg.Topic, g.parts[id].label)
		s.m.lag.DeleteLabelValues(s.cfg.Topic, g.parts[id].label)
	}
	s.mu.Unlock()
	s.log.Info("partitions revoked", "generation", g.kg.ID, "partitions", ids, "committed", offs,
		"abandoned_unacked", outstanding, "commit_err", err)
}
