package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// charmap is one of ftfy's single-byte encodings (CHARMAP_ENCODINGS).
type charmap struct {
	name   string
	sloppy bool
	// high holds the characters bytes 0x80..0xFF decode to, then the one 0x1A decodes to.
	high [129]rune
	enc  map[rune]byte // filled by init
}

func init() {
	for i := range charmapEncodings {
		cm := &charmapEncodings[i]
		cm.enc = make(map[rune]byte, 129)
		for k, r := range cm.high[:128] {
			cm.enc[r] = byte(0x80 + k)
		}
		cm.enc[cm.high[128]] = 0x1A
	}
}

// encode is Python's text.encode(name), restricted to what ftfy's
// possible_encoding admits: ok is false when some character has no byte.
func (cm *charmap) encode(s string) ([]byte, bool) {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if r < 0x80 && r != 0x1A {
			out = append(out, byte(r))
			continue
		}
		b, ok := cm.enc[r]
		if !ok {
			return nil, false
		}
		out = append(out, b)
	}
	return out, true
}

func isUTF8Cont(b byte) bool { return b >= 0x80 && b <= 0xBF }

// alteredUTF8At matches ftfy's ALTERED_UTF8_RE at position i; returns the match length or 0.
func alteredUTF8At(b []byte, i int) int {
	n := len(b) - i
	if n < 2 {
		return 0
	}
	c := b[i]
	notA0or85 := func(x byte) bool {
		return (x >= 0x80 && x <= 0x84) || (x >= 0x86 && x <= 0x9F) || (x >= 0xA1 && x <= 0xBF)
	}
	switch c {
	case 0xC2, 0xC3, 0xC5, 0xCE, 0xD0, 0xD9:
		if b[i+1] == ' ' {
			return 2
		}
	}
	if n >= 3 {
		if (c == 0xE2 || c == 0xE3) && b[i+1] == ' ' && notA0or85(b[i+2]) {
			return 3
		}
		if c >= 0xE0 && c <= 0xE3 && notA0or85(b[i+1]) && b[i+2] == ' ' {
			return 3
		}
	}
	if n >= 4 && c == 0xF0 {
		x, y, z := b[i+1], b[i+2], b[i+3]
		if x == ' ' && isUTF8Cont(y) && isUTF8Cont(z) {
			return 4
		}
		if isUTF8Cont(x) && y == ' ' && isUTF8Cont(z) {
			return 4
		}
		if isUTF8Cont(x) && isUTF8Cont(y) && z == ' ' {
			return 4
		}
	}
	return 0
}

func hasAlteredUTF8(b []byte) bool {
	for i := range b {
		if alteredUTF8At(b, i) > 0 {
			return true
		}
	}
	return false
}

// restoreByteA0 is ftfy.fixes.restore_byte_a0.
func restoreByteA0(b []byte) []byte {
	// A_GRAVE_WORD_RE: b"\xc3 (?! |quele|quela|quilo|s )" -> b"\xc3\xa0 "
	tmp := make([]byte, 0, len(b)+8)
	for i := 0; i < len(b); {
		if b[i] == 0xC3 && i+1 < len(b) && b[i+1] == ' ' {
			rest := b[i+2:]
			excluded := hasPrefix(rest, " ") || hasPrefix(rest, "quele") || hasPrefix(rest, "quela") ||
				hasPrefix(rest, "quilo") || hasPrefix(rest, "s ")
			if !excluded {
				tmp = append(tmp, 0xC3, 0xA0, ' ')
				i += 2
				continue
			}
		}
		tmp = append(tmp, b[i])
		i++
	}
	out := make([]byte, 0, len(tmp))
	for i := 0; i < len(tmp); {
		if n := alteredUTF8At(tmp, i); n > 0 {
			for _, x := range tmp[i : i+n] {
				if x == ' ' {
					x = 0xA0
				}
				out = append(out, x)
			}
			i += n
			continue
		}
		out = append(out, tmp[i])
		i++
	}
	return out
}

func hasPrefix(b []byte, p string) bool {
	return len(b) >= len(p) && string(b[:len(p)]) == p
}

// lossyAt matches ftfy's LOSSY_UTF8_RE at position i; returns the match length or 0.
func lossyAt(b []byte, i int) int {
	n := len(b) - i
	c := b[i]
	in := func(k int, f func(byte) bool) bool { return k < n && f(b[i+k]) }
	sub := func(x byte) bool { return x == 0x1A }
	subQ := func(x byte) bool { return x == 0x1A || x == '?' }
	subCont := func(x byte) bool { return x == 0x1A || isUTF8Cont(x) }
	subQCont := func(x byte) bool { return x == 0x1A || x == '?' || isUTF8Cont(x) }
	rng := func(lo, hi byte) func(byte) bool { return func(x byte) bool { return x >= lo && x <= hi } }
	if c >= 0xC2 && c <= 0xDF && in(1, sub) {
		return 2
	}
	if (c == 0xC2 || c == 0xC3) && in(1, func(x byte) bool { return x == '?' }) {
		return 2
	}
	if c == 0xED {
		if in(1, rng(0xA0, 0xAF)) && in(2, subQ) && in(3, rng(0xED, 0xED)) && in(4, rng(0xB0, 0xBF)) && in(5, subQCont) {
			return 6
		}
		if in(1, rng(0xA0, 0xAF)) && in(2, subQCont) && in(3, rng(0xED, 0xED)) && in(4, rng(0xB0, 0xBF)) && in(5, subQ) {
			return 6
		}
	}
	if c >= 0xE0 && c <= 0xEF {
		if in(1, subQ) && in(2, subCont) {
			return 3
		}
		if in(1, subCont) && in(2, subQ) {
			return 3
		}
	}
	if c >= 0xF0 && c <= 0xF4 {
		if in(1, subQ) && in(2, subCont) && in(3, subCont) {
			return 4
		}
		if in(1, subCont) && in(2, subQ) && in(3, subCont) {
			return 4
		}
		if in(1, subCont) && in(2, subCont) && in(3, subQ) {
			return 4
		}
	}
	if c == 0x1A {
		return 1
	}
	return 0
}

// replaceLossySequences is ftfy.fixes.replace_lossy_sequences.
func replaceLossySequences(b []byte) []byte {
	out := make([]byte, 0, len(b)+8)
	for i := 0; i < len(b); {
		if n := lossyAt(b, i); n > 0 {
			out = append(out, 0xEF, 0xBF, 0xBD)
			i += n
			continue
		}
		out = append(out, b[i])
		i++
	}
	return out
}

// atEnd is Python's `$` (no MULTILINE) at position q of b: the end, or just
// before a final newline.
func atEnd(b []byte, q int) bool {
	return q == len(b) || (q == len(b)-1 && b[q] == '\n')
}

// specialUTF8VariantAt reports whether ftfy's utf-8-variants SPECIAL_BYTES_RE
// matches at position p.
func specialUTF8VariantAt(b []byte, p int) bool {
	switch b[p] {
	case 0xC0:
		return atEnd(b, p+1) || (p+1 < len(b) && b[p+1] == 0x80)
	case 0xED:
		if atEnd(b, p+1) {
			return true
		}
		if p+1 < len(b) && b[p+1] >= 0xA0 && b[p+1] <= 0xBF {
			return atEnd(b, p+2) || (p+2 < len(b) && isUTF8Cont(b[p+2]))
		}
	}
	return false
}

// decodeUTF8Variants is bytes.decode("utf-8-variants") from ftfy.bad_codecs
// (CESU-8 surrogate pairs and Java's C0 80 null on top of strict UTF-8).
func decodeUTF8Variants(b []byte) (string, bool) {
	var sb strings.Builder
	sb.Grow(len(b))
	pos := 0
	for pos < len(b) {
		cut := -1
		for p := pos; p < len(b); p++ {
			if specialUTF8VariantAt(b, p) {
				cut = p
				break
			}
		}
		if cut < 0 {
			if !utf8.Valid(b[pos:]) {
				return "", false
			}
			sb.Write(b[pos:])
			break
		}
		if cut > pos {
			if !utf8.Valid(b[pos:cut]) {
				return "", false
			}
			sb.Write(b[pos:cut])
			pos = cut
			continue
		}
		in := b[pos:]
		if in[0] == 0xC0 {
			if len(in) > 1 {
				sb.WriteByte(0)
				pos += 2
				continue
			}
			return "", false
		}
		if len(in) < 6 {
			if !utf8.Valid(in) {
				return "", false
			}
			sb.Write(in)
			break
		}
		if in[1] >= 0xA0 && in[1] <= 0xAF && isUTF8Cont(in[2]) && in[3] == 0xED && in[4] >= 0xB0 && in[4] <= 0xBF &&
			(isUTF8Cont(in[5]) || (len(in) == 6 && in[5] == '\n')) {
			cp := rune(in[1]&0x0F)<<16 + rune(in[2]&0x3F)<<10 + rune(in[4]&0x0F)<<6 + rune(in[5]&0x3F) + 0x10000
			sb.WriteRune(cp)
			pos += 6
			continue
		}
		// A lone encoded surrogate: Python's strict decoder rejects it.
		return "", false
	}
	return sb.String(), true
}
