package eval

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/hash"
	"github.com/xmodal/xmodal/sink/embedded"
)

// galleryPostID names gallery item i of a modality in the hybrid plan's
// index. Zero-padded, so primary keys sort as gallery indices do (the
// index breaks ties by primary key, Hamming and Evaluate by lower index).
func galleryPostID(m domain.Modality, i int) string {
	return fmt.Sprintf("%c%09d", m[0], i)
}

// loadGallery opens an embedded index with coder c in dir and puts the
// gallery's images and texts into it (the index codes them).
func loadGallery(ctx context.Context, dir string, g *EmbeddedSet, c *hash.Coder) (*embedded.Index, error) {
	dim := max(g.Images.Dim, g.Texts.Dim)
	ix, err := embedded.Open(ctx, embedded.Options{Path: filepath.Join(dir, fmt.Sprintf("hybrid-%s.db", c.ID())), Dim: dim,
		Coder: c, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, err
	}
	const batch = 1024
	for _, part := range []struct {
		m  domain.Modality
		mx Matrix
	}{{domain.ModalityImage, g.Images}, {domain.ModalityText, g.Texts}} {
		for lo := 0; lo < part.mx.Rows; lo += batch {
			chs := make([]domain.Change, 0, batch)
			for i := lo; i < min(lo+batch, part.mx.Rows); i++ {
				id := galleryPostID(part.m, i)
				chs = append(chs, domain.Change{PostID: id, Records: []domain.Record{{
					PK: domain.PrimaryKey(id, part.m), PostID: id, Modality: part.m, Vector: part.mx.Row(i)}}})
			}
			if _, err := ix.Apply(ctx, chs); err != nil {
				ix.Close()
				return nil, err
			}
		}
	}
	return ix, nil
}

// hybridSection adds the hybrid plan's rows: for every coder, direction and
// C, recall@K of the embedded index's hybrid plan against its exact plan,
// and the time per query of both. Queries run on one goroutine, each query
// through exact and then every C in turn, so that load on the machine
// weighs on both plans alike.
func hybridSection(ctx context.Context, q, g *EmbeddedSet, coders []*hash.Coder, opt Options, rep *Report) error {
	tmp, err := os.MkdirTemp(opt.Hash.TempDir, "xmodal-eval-hybrid-")
	if err != nil {
		return fmt.Errorf("hybrid plan: %w", err)
	}
	defer os.RemoveAll(tmp)
	k := opt.Hash.K
	rep.Hash.K = k
	for _, c := range coders {
		ix, err := loadGallery(ctx, tmp, g, c)
		if err != nil {
			return fmt.Errorf("hybrid plan: %w", err)
		}
		err = hybridRuns(ctx, ix, q, g, c, k, opt.Hash.Candidates, rep)
		ix.Close()
		if err != nil {
			return err
		}
	}
	order := map[string]int{TqI: 0, IqT: 1}
	slices.SortStableFunc(rep.Hash.Hybrid, func(a, b HybridRow) int {
		if d := order[a.Direction] - order[b.Direction]; d != 0 {
			return d
		}
		return a.Bits - b.Bits
	})
	return nil
}

func hybridRuns(ctx context.Context, ix *embedded.Index, q, g *EmbeddedSet, c *hash.Coder, k int, cands []Candidates, rep *Report) error {
	for _, d := range []struct {
		dir        string
		qv         Matrix
		qm, gm     domain.Modality
		galleryLen int
	}{{TqI, q.Texts, domain.ModalityText, domain.ModalityImage, g.Images.Rows},
		{IqT, q.Images, domain.ModalityImage, domain.ModalityText, g.Texts.Rows}} {
		n := d.galleryLen
		if d.qv.Rows == 0 || n == 0 {
			continue
		}
		kk := min(k, n)
		cs := make([]int, len(cands))
		for i, cd := range cands {
			cs[i] = max(cd.Of(n), kk)
		}
		overlap := make([]int, len(cs))
		var exact, code clock
		hybrid := make([]clock, len(cs))
		exactPK := make(map[string]bool, kk)
		for i := range d.qv.Rows {
			if i%256 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			v := d.qv.Row(i)
			var ex, hy []domain.Hit
			var err error
			exact.time(func() {
				ex, err = ix.Search(ctx, domain.VectorQuery{Vector: v, Modality: d.gm, K: kk, Plan: domain.PlanExact})
			})
			if err != nil {
				return fmt.Errorf("hybrid plan: exact search: %w", err)
			}
			clear(exactPK)
			for _, h := range ex {
				exactPK[h.PK] = true
			}
			var qc []byte
			before := code
			code.time(func() { qc = c.Code(v, d.qm) }) // the query as a vector of its own modality
			codeT := code.sub(before)
			for j, cj := range cs {
				hybrid[j].add(codeT)
				hybrid[j].time(func() {
					hy, err = ix.Search(ctx, domain.VectorQuery{Vector: v, Code: qc, Modality: d.gm, K: kk,
						Plan: domain.PlanHybrid, Candidates: cj})
				})
				if err != nil {
					return fmt.Errorf("hybrid plan: C=%d: %w", cj, err)
				}
				for _, h := range hy {
					if exactPK[h.PK] {
						overlap[j]++
					}
				}
			}
		}
		nq := float64(d.qv.Rows)
		for j, cj := range cs {
			row := HybridRow{Bits: c.Bits(), Direction: d.dir, Candidates: cands[j].String(),
				C: cj, Queries: d.qv.Rows, Gallery: n, Recall: float64(overlap[j]) / (nq * float64(kk)),
				HybridMicros: hybrid[j].wall.Seconds() * 1e6 / nq, ExactMicros: exact.wall.Seconds() * 1e6 / nq}
			row.WallSpeedup = row.ExactMicros / row.HybridMicros
			row.Speedup = row.WallSpeedup
			if exact.cpuOK && hybrid[j].cpuOK {
				row.HybridCPUMicros = hybrid[j].cpu.Seconds() * 1e6 / nq
				row.ExactCPUMicros = exact.cpu.Seconds() * 1e6 / nq
				row.Speedup = row.ExactCPUMicros / row.HybridCPUMicros
			}
			rep.Hash.Hybrid = append(rep.Hash.Hybrid, row)
		}
	}
	return nil
}

// clock accumulates the wall and CPU time of timed calls.
type clock struct {
	wall, cpu time.Duration
	cpuOK     bool
}

func (k *clock) time(f func()) {
	c0, ok0 := cpuTime()
	w0 := time.Now()
	f()
	k.wall += time.Since(w0)
	c1, ok1 := cpuTime()
	k.cpu += c1 - c0
	k.cpuOK = ok0 && ok1
}

// sub is the time k gained since before.
func (k clock) sub(before clock) clock {
	return clock{wall: k.wall - before.wall, cpu: k.cpu - before.cpu, cpuOK: k.cpuOK}
}

func (k *clock) add(o clock) {
	k.wall += o.wall
	k.cpu += o.cpu
}
