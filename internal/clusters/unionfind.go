// Package clusters groups near-duplicate posts: an in-memory union-find
// (UnionFind, used by the batch dedup job and to compare partitions), a
// persisted cluster store kept in bbolt transactions (Store: the clusters
// maintained at ingest), the link relation behind one interface (Linker;
// PDQLinker links whole-image PDQ hashes within a distance through
// internal/hamming) and trending (clusters ranked by smoothed growth between
// two windows). See docs/clusters.md.
package clusters

// UnionFind is a disjoint-set forest over 0..n-1 with union by size and
// path compression (path halving): Find and Union take amortised
// near-constant time.
type UnionFind struct {
	parent []int32
	size   []int32
}

// NewUnionFind returns n singletons.
func NewUnionFind(n int) *UnionFind {
	u := &UnionFind{parent: make([]int32, n), size: make([]int32, n)}
	for i := range u.parent {
		u.parent[i] = int32(i)
		u.size[i] = 1
	}
	return u
}

// Len is the number of elements.
func (u *UnionFind) Len() int { return len(u.parent) }

// Find returns the root of x's set, halving the path as it goes.
func (u *UnionFind) Find(x int) int {
	p := u.parent
	for int(p[x]) != x {
		p[x] = p[p[x]]
		x = int(p[x])
	}
	return x
}

// Union joins the sets of a and b; it returns the root and whether they were
// separate. The smaller set goes under the larger one's root (ties: under a's).
func (u *UnionFind) Union(a, b int) (int, bool) {
	ra, rb := u.Find(a), u.Find(b)
	if ra == rb {
		return ra, false
	}
	if u.size[ra] < u.size[rb] {
		ra, rb = rb, ra
	}
	u.parent[rb] = int32(ra)
	u.size[ra] += u.size[rb]
	return ra, true
}

// Size is the size of x's set.
func (u *UnionFind) Size(x int) int { return int(u.size[u.Find(x)]) }

// Parents exposes the parent array (a checkpoint saves it; Restore loads it).
func (u *UnionFind) Parents() ([]int32, []int32) { return u.parent, u.size }

// RestoreUnionFind rebuilds a forest from saved parent and size arrays.
func RestoreUnionFind(parent, size []int32) *UnionFind {
	return &UnionFind{parent: parent, size: size}
}

// Components returns, for every element, a label of its set: the smallest
// element of the set. Two partitions are equal when their labels are.
func (u *UnionFind) Components() []int {
	n := len(u.parent)
	minOf := make([]int32, n)
	for i := range minOf {
		minOf[i] = -1
	}
	out := make([]int, n)
	for i := 0; i < n; i++ {
		r := u.Find(i)
		if minOf[r] < 0 {
			minOf[r] = int32(i)
		}
		out[i] = int(minOf[r])
	}
	return out
}
