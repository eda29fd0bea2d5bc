package tokenizer

// A port of ftfy 6.3.1's fix_text with its default configuration
// (TextFixerConfig()), which is what open_clip's basic_clean calls.

import (
	"regexp"
	"strings"
	"unicode/utf8"
)

// Compiled once; regexp.Regexp is safe for concurrent use.
var (
	utf8DetectorAnchoredRE = regexp.MustCompile("^" + utf8DetectorPattern)
)

const (
	ftfyMaxDecodeLength = 1000000
	// maxFixPasses bounds fix_and_explain's "until nothing changes" loop. ftfy
	// has no bound; real text settles in two or three passes.
	maxFixPasses = 64
	// maxEncodingSteps bounds fix_encoding's loop likewise.
	maxEncodingSteps = 64
)

// fixText is ftfy.fix_text(text).
func fixText(text string) string {
	if text == "" {
		return ""
	}
	unescape := true // "auto": on until a segment contains '<'
	var out strings.Builder
	out.Grow(len(text))
	for pos := 0; pos < len(text); {
		end := strings.IndexByte(text[pos:], '\n')
		if end < 0 {
			end = len(text)
		} else {
			end += pos + 1
		}
		if end-pos > ftfyMaxDecodeLength { // cheap test in bytes first
			n, cut := 0, pos
			for cut < end && n < ftfyMaxDecodeLength {
				_, sz := utf8.DecodeRuneInString(text[cut:])
				cut += sz
				n++
			}
			end = cut
		}
		seg := text[pos:end]
		if unescape && strings.IndexByte(seg, '<') >= 0 {
			unescape = false
		}
		out.WriteString(fixSegment(seg, unescape))
		pos = end
	}
	return out.String()
}

// fixSegment is ftfy.fix_and_explain(segment).text.
func fixSegment(text string, unescape bool) string {
	for pass := 0; pass < maxFixPasses; pass++ {
		orig := text
		if unescape {
			text = ftfyUnescapeHTML(text)
		}
		text = fixEncoding(text)
		text = fixC1Controls(text)
		text = mapRunes(text, func(r rune) (string, bool) { s, ok := ligatureMap[r]; return s, ok })
		text = mapRunes(text, func(r rune) (string, bool) { s, ok := widthMap[r]; return s, ok })
		text = uncurlQuotes(text)
		text = fixLineBreaks(text)
		// fix_surrogates: Go strings hold no surrogate code points.
		text = removeTerminalEscapes(text)
		text = removeControlChars(text)
		text = nfc(text)
		if text == orig {
			break
		}
	}
	return text
}

// mapRunes replaces runes for which f reports a replacement; it returns s
// itself when nothing changes.
func mapRunes(s string, f func(rune) (string, bool)) string {
	for i, r := range s {
		if r < 0x80 {
			continue
		}
		if _, ok := f(r); !ok {
			continue
		}
		var b strings.Builder
		b.Grow(len(s) + 8)
		b.WriteString(s[:i])
		for _, r := range s[i:] {
			if rep, ok := f(r); ok && r >= 0x80 {
				b.WriteString(rep)
			} else {
				b.WriteRune(r)
			}
		}
		return b.String()
	}
	return s
}

func fixC1Controls(s string) string {
	return mapRunes(s, func(r rune) (string, bool) {
		if r >= 0x80 && r <= 0x9F {
			return string(sloppy1252C1[r-0x80]), true
		}
		return "", false
	})
}

func uncurlQuotes(s string) string {
	return mapRunes(s, func(r rune) (string, bool) {
		switch {
		case r == 0x2BC || (r >= 0x2018 && r <= 0x201B):
			return "'", true
		case r >= 0x201C && r <= 0x201F:
			return "\"", true
		}
		return "", false
	})
}

func fixLineBreaks(s string) string {
	if strings.IndexByte(s, '\r') >= 0 {
		s = strings.ReplaceAll(s, "\r\n", "\n")
		s = strings.ReplaceAll(s, "\r", "\n")
	}
	return mapRunes(s, func(r rune) (string, bool) {
		if r == 0x2028 || r == 0x2029 || r == 0x85 {
			return "\n", true
		}
		return "", false
	})
}

func isPyDigit(r rune) bool {
	if r < 0x80 {
		return r >= '0' && r <= '9'
	}
	return inRanges(r, pyDigitRanges)
}

// removeTerminalEscapes deletes matches of "\033\[((?:\d|;)*)([a-zA-Z])".
func removeTerminalEscapes(s string) string {
	if strings.IndexByte(s, 0x1B) < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		if s[i] == 0x1B && i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) {
				r, sz := utf8.DecodeRuneInString(s[j:])
				if r != ';' && !isPyDigit(r) {
					break
				}
				j += sz
			}
			if j < len(s) && ((s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z')) {
				i = j + 1
				continue
			}
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

func isControlChar(r rune) bool {
	if r < 0x80 {
		return r <= 0x08 || r == 0x0B || (r >= 0x0E && r <= 0x1F) || r == 0x7F
	}
	return inRanges(r, controlCharRanges)
}

func removeControlChars(s string) string {
	for i, r := range s {
		if !isControlChar(r) {
			continue
		}
		var b strings.Builder
		b.Grow(len(s))
		b.WriteString(s[:i])
		for _, r := range s[i:] {
			if !isControlChar(r) {
				b.WriteRune(r)
			}
		}
		return b.String()
	}
	return s
}

// fixEncoding is ftfy.fix_encoding(text).
func fixEncoding(text string) string {
	for step := 0; step < maxEncodingSteps; step++ {
		fixed := fixEncodingOneStep(text)
		if fixed == text {
			break
		}
		text = fixed
	}
	return text
}

// fixEncodingOneStep is ftfy's _fix_encoding_one_step_and_explain(text).text.
func fixEncodingOneStep(text string) string {
	if text == "" || isASCII(text) || !isBad(text) {
		return text
	}
	latin1Possible := false
	for i := range charmapEncodings {
		cm := &charmapEncodings[i]
		encoded, ok := cm.encode(text)
		if !ok {
			continue
		}
		if i == 0 {
			latin1Possible = true
		}
		if cm.name != "macroman" && hasAlteredUTF8(encoded) {
			encoded = restoreByteA0(encoded)
		}
		if cm.sloppy {
			encoded = replaceLossySequences(encoded)
		}
		variants := false
		for _, c := range encoded {
			if c == 0xED || c == 0xC0 {
				variants = true
				break
			}
		}
		if variants {
			if fixed, ok := decodeUTF8Variants(encoded); ok {
				return fixed
			}
		} else if utf8.Valid(encoded) {
			return string(encoded)
		}
	}
	if utf8DetectorSearch(text) {
		if fixed := decodeInconsistentUTF8(text); fixed != text {
			return fixed
		}
	}
	if latin1Possible {
		// ftfy checks for "windows-1252" among the possible encodings, which
		// only ever lists "sloppy-windows-1252", so this always runs.
		if fixed, ok := latin1ToWindows1252(text); ok && fixed != text {
			return fixed
		}
	}
	for _, r := range text {
		if r >= 0x80 && r <= 0x9F {
			return fixC1Controls(text)
		}
	}
	return text
}

// latin1ToWindows1252 is text.encode("latin-1").decode("windows-1252").
func latin1ToWindows1252(text string) (string, bool) {
	var b strings.Builder
	b.Grow(len(text))
	for _, r := range text {
		if r > 0xFF {
			return "", false
		}
		if r >= 0x80 && r <= 0x9F {
			m := windows1252Strict[r-0x80]
			if m < 0 {
				return "", false
			}
			r = m
		}
		b.WriteRune(r)
	}
	return b.String(), true
}

// utf8DetectorNext finds the next match of UTF8_DETECTOR_RE at or after byte
// offset pos. Like the reference engine it tries each start position in
// turn, checking the negative lookbehind before the body, so failing
// positions cost O(1); only characters that can start the body are tried.
func utf8DetectorNext(text string, pos int) (int, int, bool) {
	for p := pos; p < len(text); {
		r, sz := utf8.DecodeRuneInString(text[p:])
		if r >= 0x80 && inRanges(r, utf8DetectorFirstRanges) {
			lookbehindOK := true
			if p > 0 {
				prev, _ := utf8.DecodeLastRuneInString(text[:p])
				lookbehindOK = !inRanges(prev, utf8StrictContinuationRanges)
			}
			if lookbehindOK {
				if loc := utf8DetectorAnchoredRE.FindStringIndex(text[p:]); loc != nil {
					return p, p + loc[1], true
				}
			}
		}
		p += sz
	}
	return 0, 0, false
}

func utf8DetectorSearch(text string) bool {
	_, _, ok := utf8DetectorNext(text, 0)
	return ok
}

// decodeInconsistentUTF8 is ftfy.fixes.decode_inconsistent_utf8.
func decodeInconsistentUTF8(text string) string {
	n := utf8.RuneCountInString(text)
	var b strings.Builder
	last, pos := 0, 0
	for {
		s, e, ok := utf8DetectorNext(text, pos)
		if !ok {
			break
		}
		b.WriteString(text[last:s])
		sub := text[s:e]
		if utf8.RuneCountInString(sub) < n && isBad(sub) {
			sub = fixEncoding(sub)
		}
		b.WriteString(sub)
		last, pos = e, e
		if e == s { // cannot happen (the pattern is never empty); avoid looping
			break
		}
	}
	b.WriteString(text[last:])
	return b.String()
}
