package tokenizer

import (
	"sync"
)

type merge struct {
	rank int32
	id   int32 // vocabulary id of the merged symbol
}

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// bpeWord runs byte-level BPE over the symbols of one pre-token and returns
// the resulting vocabulary ids. It reproduces open_clip's SimpleTokenizer.bpe:
// repeatedly take the adjacent pair with the lowest merge rank and merge all
// of its non-overlapping occurrences from left to right.
func (t *Tokenizer) bpeWord(word []int32) []int32 {
	if len(word) > bpeHeapThreshold {
		return t.bpeHeap(word)
	}
	return t.bpeSimple(word)
}

const bpeHeapThreshold = 48

func (t *Tokenizer) bpeSimple(word []int32) []int32 {
	for len(word) > 1 {
		best := int32(-1)
		var bestPair merge
		var first, second int32
		for i := 0; i+1 < len(word); i++ {
			m, ok := t.merges[pairKey(word[i], word[i+1])]
			if ok && (best < 0 || m.rank < best) {
				best, bestPair, first, second = m.rank, m, word[i], word[i+1]
			}
		}
		if best < 0 {
			break
		}
		w := 0
		for i := 0; i < len(word); {
			if i+1 < len(word) && word[i] == first && word[i+1] == second {
				word[w] = bestPair.id
				i += 2
			} else {
				word[w] = word[i]
				i++
			}
			w++
		}
		word = word[:w]
	}
	return word
}

// bpeHeap gives the same result as bpeSimple in O(n log n) for long words.
// All occurrences of the lowest-ranked pair are merged as one round, left to
// right, before pairs created by that round are considered, exactly as the
// reference does.
func (t *Tokenizer) bpeHeap(word []int32) []int32 {
	n := len(word)
	sym := append([]int32(nil), word...)
	prev := make([]int32, n)
	next := make([]int32, n)
	alive := make([]bool, n)
	for i := range sym {
		prev[i] = int32(i - 1)
		next[i] = int32(i + 1)
		alive[i] = true
	}
	next[n-1] = -1
	h := make(pairHeap, 0, n)
	push := func(i int32) {
		if i < 0 {
			return
		}
		j := next[i]
		if j < 0 {
			return
		}
		if m, ok := t.merges[pairKey(sym[i], sym[j])]; ok {
			h.push(pairEntry{rank: m.rank, pos: i, a: sym[i], b: sym[j], id: m.id})
		}
	}
	for i := 0; i+1 < n; i++ {
		push(int32(i))
	}
	var touched []int32
	for len(h) > 0 {
		rank := h[0].rank
		touched = touched[:0]
		for len(h) > 0 && h[0].rank == rank {
			e := h.pop()
			i := e.pos
			if !alive[i] || sym[i] != e.a {
				continue
			}
			j := next[i]
			if j < 0 || sym[j] != e.b {
				continue
			}
			sym[i] = e.id
			alive[j] = false
			nj := next[j]
			next[i] = nj
			if nj >= 0 {
				prev[nj] = i
			}
			touched = append(touched, i)
		}
		// New adjacencies: (prev, merged) and (merged, next). A left neighbour
		// that was itself merged in this round pushes its own right pair.
		for k, i := range touched {
			if p := prev[i]; p >= 0 && (k == 0 || touched[k-1] != p) {
				push(p)
			}
			push(i)
		}
	}
	out := word[:0]
	for i := int32(0); i >= 0; i = next[i] {
		out = append(out, sym[i])
	}
	return out
}

type pairEntry struct {
	rank, pos, a, b, id int32
}

// pairHeap is a binary min-heap ordered by (rank, pos).
type pairHeap []pairEntry

func (h pairHeap) less(i, j int) bool {
	if h[i].rank != h[j].rank {
		return h[i].rank < h[j].rank
	}
	return h[i].pos < h[j].pos
}

func (h *pairHeap) push(e pairEntry) {
	*h = append(*h, e)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *pairHeap) pop() pairEntry {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		l := 2*i + 1
		if l >= len(s) {
			break
		}
		m := l
		if r := l + 1; r < len(s) && s.less(r, l) {
			m = r
		}
		if !s.less(m, i) {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// bpeCache is a bounded, concurrency-safe cache of pre-token -> ids. It is
// sharded; a shard that fills up is simply emptied (results are pure, so
// eviction only costs recomputation).
type bpeCache struct {
	shards [bpeCacheShards]bpeShard
}

const (
	bpeCacheShards    = 16
	bpeCacheShardSize = 4096 // entries per shard
	bpeCacheMaxKey    = 64   // longer pre-tokens are not cached
)

type bpeShard struct {
	mu sync.RWMutex
	m  map[string][]int32
}

func shardOf(s string) int {
	var h uint32 = 2166136261
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return int(h % bpeCacheShards)
}

func (c *bpeCache) get(s string) ([]int32, bool) {
	sh := &c.shards[shardOf(s)]
	sh.mu.RLock()
	v, ok := sh.m[s]
	sh.mu.RUnlock()
	return v, ok
}

func (c *bpeCache) put(s string, ids []int32) {
	if len(s) > bpeCacheMaxKey {
		return
	}
	sh := &c.shards[shardOf(s)]
	sh.mu.Lock()
	if sh.m == nil || len(sh.m) >= bpeCacheShardSize {
		sh.m = make(map[string][]int32, 256)
	}
	sh.m[s] = ids
	sh.mu.Unlock()
}
