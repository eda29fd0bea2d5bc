package eval

import (
	"container/heap"
	"fmt"
	"slices"
	"strings"
)

// Matrix is a row-major matrix of embeddings: Rows vectors of Dim float32.
type Matrix struct {
	Rows, Dim int
	Data      []float32
}

// Row returns row i.
func (m Matrix) Row(i int) []float32 { return m.Data[i*m.Dim : (i+1)*m.Dim : (i+1)*m.Dim] }

// NewMatrix packs rows into a Matrix; all rows must have the same length.
func NewMatrix(rows [][]float32) (Matrix, error) {
	if len(rows) == 0 {
		return Matrix{}, nil
	}
	d := len(rows[0])
	m := Matrix{Rows: len(rows), Dim: d, Data: make([]float32, 0, len(rows)*d)}
	for i, r := range rows {
		if len(r) != d {
			return Matrix{}, fmt.Errorf("row %d has dimension %d, row 0 has %d", i, len(r), d)
		}
		m.Data = append(m.Data, r...)
	}
	return m, nil
}

// Ranker orders a gallery for one query. Implementations are safe for
// concurrent use; per-call memory comes from the caller's Scratch.
type Ranker interface {
	// Rank returns gallery indices, best first: the top k, or the whole
	// gallery when k <= 0 or k >= its size. Equal scores rank the lower
	// index first, so results are deterministic.
	Rank(q []float32, k int, s *Scratch) []int32
	// Len is the gallery size.
	Len() int
}

// Scratch is per-goroutine working memory for a Ranker.
type Scratch struct {
	scores []float32
	idx    []int32
	h      topHeap
	// Hamming ranking: the query's code and words, distances, counts.
	code []byte
	qw   []uint64
	dist []uint16
	cnt  []int32
}

// PlanFunc builds a Ranker over a gallery of embeddings.
type PlanFunc func(gallery Matrix) (Ranker, error)

// Plans lists the plan names Evaluate knows.
func Plans() []string { return []string{"exact", "hash", "hybrid"} }

// CheckPlan reports whether Evaluate knows the plan, with an error naming it.
func CheckPlan(name string) error {
	switch name {
	case "", "exact", "hash", "hybrid":
		return nil
	}
	return fmt.Errorf("unknown plan %q (want one of %s)", name, strings.Join(Plans(), ", "))
}

// PlanByName returns the ranking plan with that name that needs nothing
// but the gallery: "exact", cosine similarity over every float vector
// (vectors are L2-normalised, so the dot product). "hash" and "hybrid" need
// a coder: Evaluate builds them from Options.Hash (HammingPlan ranks by
// Hamming distance; hybrid runs in the embedded index).
func PlanByName(name string) (PlanFunc, error) {
	switch name {
	case "", "exact":
		return NewExact, nil
	case "hash", "hybrid":
		return nil, fmt.Errorf("plan %q needs a hash coder: run it through Evaluate with Options.Hash (or HammingPlan)", name)
	}
	return nil, CheckPlan(name)
}

// Exact ranks by the dot product with every gallery vector.
type Exact struct{ g Matrix }

// NewExact is the "exact" plan.
func NewExact(g Matrix) (Ranker, error) {
	if g.Rows > 0 && g.Dim == 0 {
		return nil, fmt.Errorf("gallery vectors have dimension 0")
	}
	return &Exact{g: g}, nil
}

// Len is the gallery size.
func (e *Exact) Len() int { return e.g.Rows }

// Scores writes the dot product of q with every gallery row into s.
func (e *Exact) Scores(q []float32, s []float32) []float32 {
	n, d := e.g.Rows, e.g.Dim
	s = slices.Grow(s[:0], n)[:n]
	q = q[:d:d]
	for i := 0; i < n; i++ {
		s[i] = dot(q, e.g.Data[i*d:(i+1)*d:(i+1)*d])
	}
	return s
}

func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// Rank implements Ranker.
func (e *Exact) Rank(q []float32, k int, s *Scratch) []int32 {
	s.scores = e.Scores(q, s.scores)
	return topK(s.scores, k, s)
}

// better reports whether gallery item a (score sa) ranks before b.
func better(sa float32, a int32, sb float32, b int32) bool {
	return sa > sb || sa == sb && a < b
}

// topK returns the indices of the k best scores (all when k <= 0 or k >=
// len), best first, ties by lower index.
func topK(scores []float32, k int, s *Scratch) []int32 {
	n := len(scores)
	if k <= 0 || k >= n || k > n/8 {
		s.idx = slices.Grow(s.idx[:0], n)[:n]
		for i := range s.idx {
			s.idx[i] = int32(i)
		}
		slices.SortFunc(s.idx, func(a, b int32) int {
			switch {
			case better(scores[a], a, scores[b], b):
				return -1
			case better(scores[b], b, scores[a], a):
				return 1
			}
			return 0
		})
		if k > 0 && k < n {
			return s.idx[:k]
		}
		return s.idx
	}
	// Bounded min-heap of the best k seen so far.
	h := &s.h
	h.scores = scores
	h.idx = h.idx[:0]
	for i := 0; i < n; i++ {
		if len(h.idx) < k {
			heap.Push(h, int32(i))
			continue
		}
		if worst := h.idx[0]; better(scores[i], int32(i), scores[worst], worst) {
			h.idx[0] = int32(i)
			heap.Fix(h, 0)
		}
	}
	out := slices.Grow(s.idx[:0], k)[:len(h.idx)]
	for j := len(out) - 1; j >= 0; j-- {
		out[j] = heap.Pop(h).(int32)
	}
	s.idx = out
	return out
}

// topHeap is a min-heap by rank order: the root is the worst kept item.
type topHeap struct {
	scores []float32
	idx    []int32
}

func (h topHeap) Len() int { return len(h.idx) }
func (h topHeap) Less(i, j int) bool {
	a, b := h.idx[i], h.idx[j]
	return better(h.scores[b], b, h.scores[a], a)
}
func (h topHeap) Swap(i, j int) { h.idx[i], h.idx[j] = h.idx[j], h.idx[i] }
func (h *topHeap) Push(x any)   { h.idx = append(h.idx, x.(int32)) }
func (h *topHeap) Pop() any {
	x := h.idx[len(h.idx)-1]
	h.idx = h.idx[:len(h.idx)-1]
	return x
}
