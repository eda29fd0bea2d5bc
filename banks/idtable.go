package banks

import "encoding/binary"

// idTable maps the entry ids of a bank to their slots in 4 bytes a cell
// (a map of 16-byte ids to slots takes several times that). It is an open
// addressing table with linear probing; a cell holds a slot + 1 (0 is
// empty). The table keeps no ids: a cell's home is drawn from the tag of
// its entry's id (its first 32 bits, kept in the entry's rec, where it
// fills padding), and a lookup confirms a candidate whose tag matches by
// a test the caller gives (comparing the stored value, or hashing it).
// Removal shifts the cells after the removed one back, so the table holds
// no tombstones.
type idTable struct {
	cells []uint32
	n     int
}

// idTag is the tag of an id: its first 32 bits (ids are hashes).
func idTag(h [16]byte) uint32 { return binary.LittleEndian.Uint32(h[:4]) }

// reserve sizes the table for n entries at most 3/4 full.
func (t *idTable) reserve(recs []rec, n int) {
	size := 16
	for size*3/4 < n {
		size *= 2
	}
	if size <= len(t.cells) {
		return
	}
	old := t.cells
	t.cells = make([]uint32, size)
	mask := uint32(size - 1)
	for _, c := range old {
		if c == 0 {
			continue
		}
		i := recs[c-1].tag & mask
		for t.cells[i] != 0 {
			i = (i + 1) & mask
		}
		t.cells[i] = c
	}
}

func (t *idTable) len() int { return t.n }

// find returns the slot of the entry whose tag is tag and for which is
// returns true.
func (t *idTable) find(recs []rec, tag uint32, is func(slot uint32) bool) (uint32, bool) {
	if len(t.cells) == 0 {
		return 0, false
	}
	mask := uint32(len(t.cells) - 1)
	for i := tag & mask; ; i = (i + 1) & mask {
		c := t.cells[i]
		if c == 0 {
			return 0, false
		}
		if recs[c-1].tag == tag && is(c-1) {
			return c - 1, true
		}
	}
}

// insert adds slot, whose rec holds its tag; the caller has made sure that
// its id is not in the table.
func (t *idTable) insert(recs []rec, slot uint32) {
	if (t.n+1)*4 > len(t.cells)*3 {
		t.reserve(recs, t.n+1)
	}
	mask := uint32(len(t.cells) - 1)
	i := recs[slot].tag & mask
	for t.cells[i] != 0 {
		i = (i + 1) & mask
	}
	t.cells[i] = slot + 1
	t.n++
}

// remove removes slot (in the table), whose rec still holds its tag.
func (t *idTable) remove(recs []rec, slot uint32) {
	mask := uint32(len(t.cells) - 1)
	i := recs[slot].tag & mask
	for t.cells[i] != slot+1 {
		if t.cells[i] == 0 {
			panic("banks: removing a slot missing from the id table")
		}
		i = (i + 1) & mask
	}
	// Shift back the cells of the run after i that may move to i.
	for j := i; ; {
		j = (j + 1) & mask
		c := t.cells[j]
		if c == 0 {
			break
		}
		k := recs[c-1].tag & mask
		// c stays if its home lies cyclically in (i, j].
		if i <= j && i < k && k <= j || i > j && (i < k || k <= j) {
			continue
		}
		t.cells[i] = c
		i = j
	}
	t.cells[i] = 0
	t.n--
}
