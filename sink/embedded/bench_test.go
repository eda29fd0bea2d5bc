package embedded

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/xmodal/xmodal/domain"
)

// benchIndex holds n image records with random vectors of dim and random
// codes of bits (benchmarks load memory directly, not through the store).
func benchIndex(b *testing.B, n, dim, bits int) (*Index, []float32, []byte) {
	b.Helper()
	ix, err := Open(context.Background(), Options{Path: filepath.Join(b.TempDir(), "ix.db"), Dim: dim})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ix.Close() })
	r := rand.New(rand.NewPCG(1, 2))
	vecs := make([]float32, n*dim)
	for i := range vecs {
		vecs[i] = float32(r.NormFloat64())
	}
	codes := make([]byte, n*bits/8)
	for i := range codes {
		codes[i] = byte(r.Uint32())
	}
	ix.benchLoad(domain.ModalityImage, vecs, codes, bits)
	q := make([]float32, dim)
	for i := range q {
		q[i] = float32(r.NormFloat64())
	}
	qc := make([]byte, bits/8)
	for i := range qc {
		qc[i] = byte(r.Uint32())
	}
	return ix, q, qc
}

// BenchmarkHashPlan: Hamming top-100 over 100k records, one query.
func BenchmarkHashPlan(b *testing.B) {
	for _, bits := range []int{64, 128, 256} {
		b.Run(fmt.Sprintf("n=100k/bits=%d", bits), func(b *testing.B) {
			ix, q, qc := benchIndex(b, 100_000, 8, bits)
			ctx := context.Background()
			c0 := cpuTime()
			for b.Loop() {
				if _, err := ix.Search(ctx, domain.VectorQuery{Vector: q, Code: qc, Modality: domain.ModalityImage, K: 100, Plan: domain.PlanHash}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(b.N)/100_000, "cpu-ns/record")
		})
	}
}

// BenchmarkHybridPlan: Hamming top-C then cosine, 100k records of 512 dims.
func BenchmarkHybridPlan(b *testing.B) {
	ix, q, qc := benchIndex(b, 100_000, 512, 64)
	ctx := context.Background()
	for _, c := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("n=100k/C=%d", c), func(b *testing.B) {
			c0 := cpuTime()
			defer func() { b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(b.N), "cpu-ns/op") }()
			for b.Loop() {
				if _, err := ix.Search(ctx, domain.VectorQuery{Vector: q, Code: qc, Modality: domain.ModalityImage, K: 10, Plan: domain.PlanHybrid, Candidates: c}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkExactPlan: brute-force cosine, 100k records of 512 dims.
func BenchmarkExactPlan(b *testing.B) {
	ix, q, _ := benchIndex(b, 100_000, 512, 64)
	ctx := context.Background()
	c0 := cpuTime()
	for b.Loop() {
		if _, err := ix.Search(ctx, domain.VectorQuery{Vector: q, Modality: domain.ModalityImage, K: 10}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(b.N)/100_000, "cpu-ns/record")
}

// BenchmarkNearDup: PDQ distance <= 31 over the 8 dihedral variants, 100k images.
func BenchmarkNearDup(b *testing.B) {
	ix, _, _ := benchIndex(b, 100_000, 8, 64)
	r := rand.New(rand.NewPCG(3, 4))
	s := ix.segs[segIndex(domain.ModalityImage)]
	s.ensurePDQ()
	for i := range s.pdqQ {
		s.pdq[4*i], s.pdq[4*i+1], s.pdq[4*i+2], s.pdq[4*i+3] = r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64()
		s.pdqQ[i] = 90
	}
	hashes := make([][]byte, 8)
	for i := range hashes {
		hashes[i] = make([]byte, 32)
		for j := range hashes[i] {
			hashes[i][j] = byte(r.Uint32())
		}
	}
	ctx := context.Background()
	c0 := cpuTime()
	for b.Loop() {
		if _, err := ix.NearDup(ctx, domain.NearDupQuery{Hashes: hashes, MaxDistance: 31, K: 100}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(b.N)/100_000, "cpu-ns/record")
}

// benchLoad fills segment m with records r0000000... over vecs (shared, not
// copied) and their codes, bypassing the store (benchmarks only).
func (ix *Index) benchLoad(m domain.Modality, vecs []float32, codes []byte, bits int) {
	ix.mu.Lock()
	si := segIndex(m)
	n := len(vecs) / ix.dim
	s := &segment{mod: m, vecs: vecs, recs: make([]*domain.Record, n), pkKey: make([]uint64, n)}
	recs := make([]domain.Record, n)
	for i := range recs {
		id := fmt.Sprintf("post-%07d", i)
		recs[i] = domain.Record{PK: domain.PrimaryKey(id, m), PostID: id, Modality: m}
		s.recs[i] = &recs[i]
		s.setKey(i)
		ix.slotOf[recs[i].PK] = loc{seg: uint8(si), pos: int32(i)}
	}
	ix.segs[si] = s
	ix.mu.Unlock()
	ix.benchCodes(m, codes, bits)
}

// benchCodes replaces the codes of segment m (benchmarks only).
func (ix *Index) benchCodes(m domain.Modality, codes []byte, bits int) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	s := ix.segs[segIndex(m)]
	ix.codeBits, ix.words = bits, (bits+63)/64
	nb := bits / 8
	s.codes = make([]uint64, s.len()*ix.words)
	s.codeOK = make([]bool, s.len())
	for i := range s.codeOK {
		packCode(s.codes[i*ix.words:(i+1)*ix.words], codes[i*nb:(i+1)*nb], true)
		s.codeOK[i] = true
	}
}
