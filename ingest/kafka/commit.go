package kafka

// Commits: acknowledgements move each partition's commit to the lowest
// offset not yet acknowledged.

import (
	"context"
	"fmt"
	"time"
)

// ack marks off done. Acks of a generation that ended are ignored: its
// partitions were committed as far as was safe and the rest will be redelivered.
func (s *Source) ack(p *partition, off int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !p.gen.revoked {
		p.track.ack(off)
	}
}

// safeOffsets returns, per partition, the offset to commit when it moved.
// Callers hold s.mu.
func (s *Source) safeOffsets(g *generation) map[int]int64 {
	out := map[int]int64{}
	for id, p := range g.parts {
		if off := p.track.safe(); off >= 0 && off > p.committed {
			out[id] = off
		}
	}
	return out
}

// commit commits g's safe offsets, if it is still the live generation.
func (s *Source) commit(g *generation) error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	s.mu.Lock()
	if g.revoked {
		s.mu.Unlock()
		return nil
	}
	offs := s.safeOffsets(g)
	s.mu.Unlock()
	return s.commitOffsets(g, offs)
}

// commitOffsets sends offs; callers hold commitMu.
func (s *Source) commitOffsets(g *generation, offs map[int]int64) error {
	if len(offs) == 0 {
		return nil
	}
	t0 := time.Now()
	err := g.kg.CommitOffsets(map[string]map[int]int64{s.cfg.Topic: offs})
	if err != nil {
		s.m.commitErrors.Inc()
		s.warn("commit", "offset commit failed", "generation", g.kg.ID, "err", err)
		return fmt.Errorf("kafka: commit: %w", err)
	}
	s.m.commitTime.Observe(time.Since(t0).Seconds())
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, off := range offs {
		p := g.parts[id]
		if off > p.committed {
			p.committed = off
		}
		if !g.revoked {
			s.m.committed.WithLabelValues(s.cfg.Topic, p.label).Set(float64(p.committed))
			if p.hwm >= 0 {
				s.m.lag.WithLabelValues(s.cfg.Topic, p.label).Set(float64(max(p.hwm-p.committed, 0)))
			}
		}
	}
	return nil
}

// Flush commits the acknowledged offsets now instead of at the next interval.
func (s *Source) Flush(ctx context.Context) error {
	s.mu.Lock()
	g := s.gen
	s.mu.Unlock()
	if g == nil {
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- s.commit(g) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
