package tokenizer

import (
	"strings"
	"unicode/utf8"
)

func isASCIIAlnum(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// ftfyUnescapeHTML is ftfy.fixes.unescape_html: matches of
// "&#?[0-9A-Za-z]{1,24};" are replaced when they name an entity (html5 names
// ending in ';' plus ftfy's all-caps variants) or are a numeric reference that
// html.unescape decodes completely.
func ftfyUnescapeHTML(s string) string {
	if strings.IndexByte(s, '&') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	last := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '&' {
			continue
		}
		j := i + 1
		if j < len(s) && s[j] == '#' {
			j++
		}
		k := j
		for k < len(s) && isASCIIAlnum(s[k]) {
			k++
		}
		if k == j || k-j > 24 || k >= len(s) || s[k] != ';' {
			continue
		}
		m := s[i : k+1]
		rep, ok := ftfyEntity(m)
		if !ok {
			continue
		}
		b.WriteString(s[last:i])
		b.WriteString(rep)
		last = k + 1
		i = k
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

func ftfyEntity(m string) (string, bool) {
	if v, ok := html5Entities[m[1:]]; ok {
		return v, true
	}
	if v, ok := ftfyUpperEntities[m]; ok {
		return v, true
	}
	if strings.HasPrefix(m, "&#") {
		u := htmlUnescape(m)
		if strings.IndexByte(u, ';') >= 0 {
			return "", false
		}
		return u, true
	}
	return "", false
}

func isHexDigit(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// htmlUnescape is Python's html.unescape.
func htmlUnescape(s string) string {
	if strings.IndexByte(s, '&') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	last := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '&' {
			continue
		}
		end, rep, ok := matchCharref(s, i)
		if !ok {
			continue
		}
		b.WriteString(s[last:i])
		b.WriteString(rep)
		last = end
		i = end - 1
	}
	b.WriteString(s[last:])
	return b.String()
}

// matchCharref applies html's _charref pattern at s[i] == '&':
// &(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)
func matchCharref(s string, i int) (end int, rep string, ok bool) {
	j := i + 1
	if j >= len(s) {
		return 0, "", false
	}
	if s[j] == '#' {
		k := j + 1
		for k < len(s) && s[k] >= '0' && s[k] <= '9' {
			k++
		}
		hex := false
		digits := s[j+1 : k]
		if k == j+1 {
			if k < len(s) && (s[k] == 'x' || s[k] == 'X') {
				k++
				start := k
				for k < len(s) && isHexDigit(s[k]) {
					k++
				}
				if k == start {
					return 0, "", false
				}
				digits = s[start:k]
				hex = true
			} else {
				return 0, "", false
			}
		}
		if k < len(s) && s[k] == ';' {
			k++
		}
		return k, numericCharref(digits, hex), true
	}
	// Named reference: 1..32 characters outside \t \n \f space < & # ;
	k, n := j, 0
	for k < len(s) && n < 32 {
		r, sz := utf8.DecodeRuneInString(s[k:])
		if r == '\t' || r == '\n' || r == '\f' || r == ' ' || r == '<' || r == '&' || r == '#' || r == ';' {
			break
		}
		k += sz
		n++
	}
	if n == 0 {
		return 0, "", false
	}
	if k < len(s) && s[k] == ';' {
		k++
	}
	name := s[j:k]
	if v, ok := html5Entities[name]; ok {
		return k, v, true
	}
	// Longest prefix (of at least 2 characters) that is an entity name.
	rs := []rune(name)
	for x := len(rs) - 1; x > 1; x-- {
		if v, ok := html5Entities[string(rs[:x])]; ok {
			return k, v + string(rs[x:]), true
		}
	}
	return k, "&" + name, true
}

func numericCharref(digits string, hex bool) string {
	const limit = 0x10FFFF + 1 // anything above maps to U+FFFD; saturate here
	var num int64
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		var d int64
		switch {
		case c >= '0' && c <= '9':
			d = int64(c - '0')
		case c >= 'a' && c <= 'f':
			d = int64(c-'a') + 10
		default:
			d = int64(c-'A') + 10
		}
		if hex {
			num = num*16 + d
		} else {
			num = num*10 + d
		}
		if num > limit {
			num = limit
		}
	}
	if v, ok := htmlInvalidCharrefs[num]; ok {
		return v
	}
	if (num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF {
		return "\uFFFD"
	}
	if htmlInvalidCodepoints[num] {
		return ""
	}
	return string(rune(num))
}
