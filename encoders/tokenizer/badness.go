package tokenizer

import "math/bits"

// ftfy.badness.is_bad without a regular-expression engine. The branches of
// BADNESS_RE are sequences of single-character items (see badnessAlts,
// generated from the parsed pattern); every character of a window gets a
// bit mask of the classes it belongs to and the branches are tried at each
// position. The tests check this against badnessPattern run by Go's regexp.

type badItem struct {
	bit int
	opt bool // the item is optional ('?')
}

type badAlt struct {
	begin bool // anchored at the start of the text ('^')
	items []badItem
}

type badMask [2]uint64

func (m *badMask) set(bit int)     { m[bit>>6] |= 1 << (bit & 63) }
func (m badMask) has(bit int) bool { return m[bit>>6]>>(bit&63)&1 != 0 }

// Read-only after init.
var (
	badASCII       [128]badMask
	badNonASCII    = map[rune]badMask{}
	badNonASCIIAll badMask        // bits every non-ASCII character has (negated ASCII classes, any)
	badAltsByFirst [128][]*badAlt // branches by the bit of their first item
)

func init() {
	for bit, rs := range badnessClassSets {
		for _, r := range rs {
			if r < 128 {
				badASCII[r].set(bit)
			} else {
				m := badNonASCII[r]
				m.set(bit)
				badNonASCII[r] = m
			}
		}
	}
	for bit, members := range badnessNotASCII {
		badNonASCIIAll.set(bit)
		for r := rune(0); r < 128; r++ {
			in := false
			for _, c := range members {
				in = in || c == r
			}
			if !in {
				badASCII[r].set(bit)
			}
		}
	}
	badNonASCIIAll.set(badBitAny)
	for a := range badnessAlts {
		alt := &badnessAlts[a]
		if len(alt.items) == 0 || alt.items[0].opt {
			panic("tokenizer: badness branch without a mandatory first item")
		}
		b := alt.items[0].bit
		badAltsByFirst[b] = append(badAltsByFirst[b], alt)
	}
	for r := rune(0); r < 128; r++ {
		if isPySpace(r) {
			badASCII[r].set(badBitSpace)
		}
		if inRanges(r, pyWordRanges) {
			badASCII[r].set(badBitWord)
		}
		if r != '\n' {
			badASCII[r].set(badBitAny)
		}
	}
}

func badMaskOf(r rune) badMask {
	if r < 128 {
		return badASCII[r]
	}
	m := badNonASCII[r]
	m[0] |= badNonASCIIAll[0]
	m[1] |= badNonASCIIAll[1]
	if isPySpace(r) {
		m.set(badBitSpace)
	}
	if inRanges(r, pyWordRanges) {
		m.set(badBitWord)
	}
	return m
}

// isBad is ftfy.badness.is_bad. Every match of the badness pattern is at most
// badnessMaxWidth characters long and contains a candidate character, so it
// only runs on (merged) windows around candidates; this keeps long texts with
// a few accented letters or curly quotes cheap.
func isBad(s string) bool {
	const w = badnessMaxWidth
	var ring [w]int // byte offsets of the last w runes
	n := 0          // runes seen
	winStart := -1  // byte offset where the pending window starts
	winStartRune := 0
	winEndRune := -1 // the pending window covers runes [winStartRune, winEndRune)
	for off, r := range s {
		if winStart >= 0 && n >= winEndRune {
			if badWindow(s[winStart:off], winStartRune == 0) {
				return true
			}
			winStart = -1
		}
		ring[n%w] = off
		if r >= 0x80 && inRanges(r, badnessCandidateRanges) {
			if winStart < 0 {
				first := n - (w - 1)
				if first < 0 {
					first = 0
				}
				winStart, winStartRune = ring[first%w], first
			}
			winEndRune = n + w
		}
		n++
	}
	if winStart >= 0 {
		return badWindow(s[winStart:], winStartRune == 0)
	}
	return false
}

// badWindow reports whether a branch matches somewhere in s; atStart tells
// whether s begins the text (for '^').
func badWindow(s string, atStart bool) bool {
	var buf [64]badMask
	masks := buf[:0]
	for _, r := range s {
		masks = append(masks, badMaskOf(r))
	}
	for i, m := range masks {
		for w, word := range m {
			for word != 0 {
				b := w<<6 | bits.TrailingZeros64(word)
				word &= word - 1
				for _, alt := range badAltsByFirst[b] {
					if alt.begin && (!atStart || i != 0) {
						continue
					}
					if badMatch(alt.items, masks, i) {
						return true
					}
				}
			}
		}
	}
	return false
}

func badMatch(items []badItem, m []badMask, pos int) bool {
	for k, it := range items {
		if it.opt {
			if pos < len(m) && m[pos].has(it.bit) && badMatch(items[k+1:], m, pos+1) {
				return true
			}
			continue
		}
		if pos >= len(m) || !m[pos].has(it.bit) {
			return false
		}
		pos++
	}
	return true
}
