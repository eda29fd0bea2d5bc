package embedded

import "container/heap"

// scored is a candidate slot with its score; pk breaks ties so results are
// deterministic (higher score first, then smaller primary key).
type scored struct {
	slot  int
	score float32
	pk    string
}

// better reports whether a ranks before b.
func better(a, b scored) bool {
	if a.score != b.score {
		return a.score > b.score
	}
	return a.pk < b.pk
}

// topK keeps the k best candidates seen so far in a min-heap whose root is the worst.
type topK struct {
	k     int
	items []scored
}

func (t *topK) Len() int           { return len(t.items) }
func (t *topK) Less(i, j int) bool { return better(t.items[j], t.items[i]) }
func (t *topK) Swap(i, j int)      { t.items[i], t.items[j] = t.items[j], t.items[i] }
func (t *topK) Push(x any)         { t.items = append(t.items, x.(scored)) }
func (t *topK) Pop() any {
	n := len(t.items) - 1
	x := t.items[n]
	t.items = t.items[:n]
	return x
}

// offer considers a candidate. The caller passes the pk lazily only when needed.
func (t *topK) offer(c scored) {
	if len(t.items) < t.k {
		heap.Push(t, c)
		return
	}
	if better(c, t.items[0]) {
		t.items[0] = c
		heap.Fix(t, 0)
	}
}

// sorted returns the candidates best first.
func (t *topK) sorted() []scored {
	out := make([]scored, len(t.items))
	for i := len(out) - 1; i >= 0; i-- {
		out[i] = heap.Pop(t).(scored)
	}
	return out
}

// full reports whether the heap holds k candidates (a new one must then beat
// the root).
func (t *topK) full() bool { return len(t.items) >= t.k }
