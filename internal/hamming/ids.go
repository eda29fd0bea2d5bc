package hamming

import "math/bits"

// idTable maps the ids of an index to their positions in 4 bytes a cell,
// 6.7 bytes an entry at 10 million (a Go map of uint64 to uint32 took 28).
// It is an open addressing table with linear probing; a cell holds a
// position + 1 (0 is empty). The table keeps no ids: a cell's home is drawn from a hash of
// its entry's id, which the store holds at the position, and a lookup
// confirms a candidate by comparing that id. Removal shifts the cells after
// the removed one back, so the table holds no tombstones. At most 3/4 of
// the cells are used.
type idTable struct {
	cells []uint32
	shift uint // 64 - log2(len(cells))
	n     int
}

// home is the first cell probed for id.
func (t *idTable) home(id uint64) uint32 {
	// Fibonacci hashing: the high bits of the product spread ids that
	// differ in any bits (dense small ids included) over the table.
	return uint32((id * 0x9e3779b97f4a7c15) >> t.shift)
}

// cellsFor is the number of cells (a power of two, at least 16) that hold
// n entries at most 3/4 full.
func cellsFor(n int) int {
	size := 16
	for size*3/4 < n {
		size *= 2
	}
	return size
}

// fits reports whether the table holds n entries without growing.
func (t *idTable) fits(n int) bool { return n*4 <= len(t.cells)*3 }

// resized returns a copy of t with room for n entries (at least t's
// count), ids being the store's ids by position.
func (t *idTable) resized(ids []uint64, n int) idTable {
	size := cellsFor(max(n, t.n))
	nt := idTable{cells: hugeSlice[uint32](size), shift: uint(64 - bits.TrailingZeros(uint(size))), n: t.n}
	mask := uint32(size - 1)
	for _, c := range t.cells {
		if c == 0 {
			continue
		}
		i := nt.home(ids[c-1])
		for nt.cells[i] != 0 {
			i = (i + 1) & mask
		}
		nt.cells[i] = c
	}
	return nt
}

// find returns the position of id.
func (t *idTable) find(ids []uint64, id uint64) (uint32, bool) {
	i, ok := t.cell(ids, id)
	if !ok {
		return 0, false
	}
	return t.cells[i] - 1, true
}

// findFrom is find with the home of id given (h, from t.home).
func (t *idTable) findFrom(ids []uint64, id uint64, h uint32) (uint32, bool) {
	mask := uint32(len(t.cells) - 1)
	for i := h; ; i = (i + 1) & mask {
		c := t.cells[i]
		if c == 0 {
			return 0, false
		}
		if ids[c-1] == id {
			return c - 1, true
		}
	}
}

// cell returns the cell of id, or false and the empty cell that ends its
// probe sequence.
func (t *idTable) cell(ids []uint64, id uint64) (uint32, bool) {
	if len(t.cells) == 0 {
		return 0, false
	}
	mask := uint32(len(t.cells) - 1)
	for i := t.home(id); ; i = (i + 1) & mask {
		c := t.cells[i]
		if c == 0 {
			return i, false
		}
		if ids[c-1] == id {
			return i, true
		}
	}
}

// set makes p the position of id, whose entry the store holds at p (ids[p]
// is id), and returns its previous position if it had one. The table must
// have room for one more entry (fits).
func (t *idTable) set(ids []uint64, id uint64, p uint32) (uint32, bool) {
	i, ok := t.cell(ids, id)
	if ok {
		old := t.cells[i] - 1
		t.cells[i] = p + 1
		return old, true
	}
	t.cells[i] = p + 1
	t.n++
	return 0, false
}

// remove removes id and returns its position.
func (t *idTable) remove(ids []uint64, id uint64) (uint32, bool) {
	i, ok := t.cell(ids, id)
	if !ok {
		return 0, false
	}
	p := t.cells[i] - 1
	mask := uint32(len(t.cells) - 1)
	// Shift back the cells of the run after i that may move to i.
	for j := i; ; {
		j = (j + 1) & mask
		c := t.cells[j]
		if c == 0 {
			break
		}
		k := t.home(ids[c-1])
		// c stays if its home lies cyclically in (i, j].
		if i <= j && i < k && k <= j || i > j && (i < k || k <= j) {
			continue
		}
		t.cells[i] = c
		i = j
	}
	t.cells[i] = 0
	t.n--
	return p, true
}

func (t *idTable) bytes() int64 { return 4 * int64(cap(t.cells)) }
