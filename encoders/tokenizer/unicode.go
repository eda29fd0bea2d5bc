package tokenizer

import (
	"slices"
	"strings"
	"unicode/utf8"
)

// inRanges reports whether r lies in one of the inclusive [lo, hi] pairs of rs
// (sorted, non-overlapping, flattened as lo0, hi0, lo1, hi1, ...).
func inRanges(r rune, rs []rune) bool {
	lo, hi := 0, len(rs)/2
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch {
		case r < rs[2*m]:
			hi = m
		case r > rs[2*m+1]:
			lo = m + 1
		default:
			return true
		}
	}
	return false
}

// sanitizeUTF8 replaces each maximal ill-formed subsequence of s with U+FFFD,
// the same result as Python's bytes.decode("utf-8", errors="replace").
func sanitizeUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r != utf8.RuneError || size > 1 {
			b.WriteString(s[i : i+size])
			i += size
			continue
		}
		b.WriteRune(utf8.RuneError)
		i += maximalSubpart(s[i:])
	}
	return b.String()
}

// maximalSubpart returns the length (>= 1) of the maximal prefix of s that is
// a prefix of some well-formed UTF-8 sequence, given that s starts with an
// ill-formed sequence.
func maximalSubpart(s string) int {
	c := s[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		need, lo = 2, 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 2
	case c == 0xED:
		need, hi = 2, 0x9F
	case c == 0xF0:
		need, lo = 3, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	case c == 0xF4:
		need, hi = 3, 0x8F
	default:
		return 1
	}
	n := 1
	for k := 1; k <= need && k < len(s); k++ {
		if s[k] < lo || s[k] > hi {
			break
		}
		n++
		lo, hi = 0x80, 0xBF
	}
	if n > need { // cannot happen for an ill-formed sequence; be safe
		n = 1
	}
	return n
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// isPySpace is Python's str.isspace() for one character.
func isPySpace(r rune) bool {
	if r < 0x80 {
		return r == ' ' || (r >= '\t' && r <= '\r') || (r >= 0x1C && r <= 0x1F)
	}
	return inRanges(r, pySpaceRanges)
}

// pyWhitespaceClean is " ".join(s.split()) with Python's notion of whitespace
// (which also makes a leading/trailing strip() redundant).
func pyWhitespaceClean(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	inWord := false
	wrote := false
	for _, r := range s {
		if isPySpace(r) {
			inWord = false
			continue
		}
		if !inWord && wrote {
			b.WriteByte(' ')
		}
		inWord = true
		wrote = true
		b.WriteRune(r)
	}
	return b.String()
}

// pyLower is Python's str.lower(), including the contextual final sigma rule.
func pyLower(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s)
	}
	rs := []rune(s)
	var b strings.Builder
	b.Grow(len(s) + 4)
	for i, r := range rs {
		switch {
		case r < 0x80:
			if r >= 'A' && r <= 'Z' {
				r += 'a' - 'A'
			}
			b.WriteByte(byte(r))
		case r == 0x3A3:
			if finalSigma(rs, i) {
				b.WriteRune(0x3C2)
			} else {
				b.WriteRune(0x3C3)
			}
		default:
			if m, ok := lowerMap[r]; ok {
				b.WriteString(m)
			} else {
				b.WriteRune(r)
			}
		}
	}
	return b.String()
}

func isCaseIgnorable(r rune) bool { return inRanges(r, pyCaseIgnorableRanges) }
func isCased(r rune) bool         { return inRanges(r, pyCasedRanges) }

// finalSigma mirrors CPython's handle_capital_sigma.
func finalSigma(rs []rune, i int) bool {
	j := i - 1
	for j >= 0 && isCaseIgnorable(rs[j]) {
		j--
	}
	final := j >= 0 && isCased(rs[j])
	if final && i+1 < len(rs) {
		j = i + 1
		for j < len(rs) && isCaseIgnorable(rs[j]) {
			j++
		}
		final = j == len(rs) || !isCased(rs[j])
	}
	return final
}

// --- NFC, from Python's unicodedata tables --------------------------------

const (
	hangulSBase  = 0xAC00
	hangulLBase  = 0x1100
	hangulVBase  = 0x1161
	hangulTBase  = 0x11A7
	hangulLCount = 19
	hangulVCount = 21
	hangulTCount = 28
	hangulNCount = hangulVCount * hangulTCount
	hangulSCount = hangulLCount * hangulNCount
)

// nfcFastBelow: no character below it has a non-zero combining class, is
// NFC_Quick_Check No or Maybe (checked in tests), so a text of such characters
// is already NFC. Many of them still have a canonical decomposition (U+00C0
// to U+02DD: ê is e + U+0302), which nfc must apply when a combining mark
// follows: ê + U+0323 reorders to e + U+0323 + U+0302 and composes to ệ.
const nfcFastBelow = 0x300

func ccc(r rune) uint8 {
	if r < nfcFastBelow {
		return 0
	}
	return cccMap[r]
}

func nfcQuickYes(s string) bool {
	var last uint8
	for _, r := range s {
		if r < nfcFastBelow {
			last = 0
			continue
		}
		c := ccc(r)
		if c != 0 && last > c {
			return false
		}
		if inRanges(r, nfcQCNoRanges) || inRanges(r, nfcQCMaybeRanges) {
			return false
		}
		last = c
	}
	return true
}

// nfc is unicodedata.normalize("NFC", s).
func nfc(s string) string {
	if nfcQuickYes(s) {
		return s
	}
	buf := make([]rune, 0, len(s)+8)
	for _, r := range s {
		switch {
		case r >= hangulSBase && r < hangulSBase+hangulSCount:
			si := r - hangulSBase
			buf = append(buf, hangulLBase+si/hangulNCount, hangulVBase+(si%hangulNCount)/hangulTCount)
			if t := si % hangulTCount; t != 0 {
				buf = append(buf, hangulTBase+t)
			}
		case r < 0xC0: // the first character with a decomposition is U+00C0
			buf = append(buf, r)
		default:
			if d, ok := decompMap[r]; ok {
				buf = append(buf, []rune(d)...)
			} else {
				buf = append(buf, r)
			}
		}
	}
	// Canonical ordering: stable sort of each run of non-starters by class.
	for i := 0; i < len(buf); {
		if ccc(buf[i]) == 0 {
			i++
			continue
		}
		j := i + 1
		for j < len(buf) && ccc(buf[j]) != 0 {
			j++
		}
		if run := buf[i:j]; len(run) > 1 {
			slices.SortStableFunc(run, func(a, b rune) int { return int(ccc(a)) - int(ccc(b)) })
		}
		i = j
	}
	// Canonical composition.
	if len(buf) == 0 {
		return ""
	}
	starter := -1
	if ccc(buf[0]) == 0 {
		starter = 0
	}
	w := 1
	for i := 1; i < len(buf); i++ {
		r := buf[i]
		c := ccc(r)
		if starter >= 0 {
			blocked := false
			if w-1 != starter {
				lc := ccc(buf[w-1])
				blocked = lc == 0 || lc >= c
			}
			if !blocked {
				if p, ok := compose(buf[starter], r); ok {
					buf[starter] = p
					continue
				}
			}
		}
		if c == 0 {
			starter = w
		}
		buf[w] = r
		w++
	}
	return string(buf[:w])
}

func compose(a, b rune) (rune, bool) {
	if a >= hangulLBase && a < hangulLBase+hangulLCount && b >= hangulVBase && b < hangulVBase+hangulVCount {
		return hangulSBase + ((a-hangulLBase)*hangulVCount+(b-hangulVBase))*hangulTCount, true
	}
	if a >= hangulSBase && a < hangulSBase+hangulSCount && (a-hangulSBase)%hangulTCount == 0 &&
		b > hangulTBase && b < hangulTBase+hangulTCount {
		return a + (b - hangulTBase), true
	}
	p, ok := composePairs[[2]rune{a, b}]
	return p, ok
}
