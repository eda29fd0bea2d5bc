package tokenizer

import (
	"unicode/utf8"
)

// Character classes of open_clip's pre-tokenizer pattern
//
//	<start_of_text>|<end_of_text>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
//
// compiled by the `regex` module with IGNORECASE.
const (
	classNone   = 0 // whitespace (skipped), and U+0345 which IGNORECASE leaves in no class
	classLetter = 1
	classNumber = 2
	classOther  = 3
)

var asciiClass [128]uint8

func init() {
	for r := rune(0); r < 128; r++ {
		asciiClass[r] = slowClass(r)
	}
}

func slowClass(r rune) uint8 {
	switch {
	case inRanges(r, reLetterRanges):
		return classLetter
	case inRanges(r, reNumberRanges):
		return classNumber
	case inRanges(r, reOtherRanges):
		return classOther
	}
	return classNone
}

func charClass(r rune) uint8 {
	if r < 128 {
		return asciiClass[r]
	}
	return slowClass(r)
}

// foldEq reports whether rune r matches the ASCII character c under regex's IGNORECASE.
func foldEq(r rune, c byte) bool {
	if r == rune(c) {
		return true
	}
	if c >= 'a' && c <= 'z' && r == rune(c-'a'+'A') {
		return true
	}
	for _, e := range reFoldEquivalents[c] {
		if r == e {
			return true
		}
	}
	return false
}

// matchFold returns the byte length of the prefix of s matching lit case-insensitively, or 0.
func matchFold(s, lit string) int {
	i := 0
	for k := 0; k < len(lit); k++ {
		if i >= len(s) {
			return 0
		}
		r, sz := utf8.DecodeRuneInString(s[i:])
		if !foldEq(r, lit[k]) {
			return 0
		}
		i += sz
	}
	return i
}

var preLiterals = []string{"<start_of_text>", "<end_of_text>", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d"}

// pretokenize calls emit for each match of the pattern in s, in order; emit
// returns false to stop early.
func pretokenize(s string, emit func(tok string) bool) {
	for i := 0; i < len(s); {
		c := s[i]
		if c == '<' || c == '\'' {
			n := 0
			for _, lit := range preLiterals {
				if lit[0] != c {
					continue
				}
				if n = matchFold(s[i:], lit); n > 0 {
					break
				}
			}
			if n > 0 {
				if !emit(s[i : i+n]) {
					return
				}
				i += n
				continue
			}
		}
		r, sz := utf8.DecodeRuneInString(s[i:])
		switch cl := charClass(r); cl {
		case classLetter, classOther:
			j := i + sz
			for j < len(s) {
				r2, sz2 := utf8.DecodeRuneInString(s[j:])
				if charClass(r2) != cl {
					break
				}
				j += sz2
			}
			if !emit(s[i:j]) {
				return
			}
			i = j
		case classNumber:
			if !emit(s[i : i+sz]) {
				return
			}
			i += sz
		default:
			i += sz
		}
	}
}
