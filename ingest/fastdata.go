package ingest

import (
	"bytes"

	"github.com/segmentio/asm/base64"
)

// Inline images make messages large (a 3000×2000 JPEG is about 2 MB of
// base64), and encoding/json walks every byte of a string twice through
// its scanner before unquoting and base64-decoding it: for such a message
// that was several milliseconds, more than decoding the JPEG at 1/8. So
// DecodePost takes image.data's string out of the message first (a
// structural walk that skips strings with bytes.IndexByte), decodes the
// rest as usual, and base64-decodes the string itself. It does so only when
// the result is certainly the same as encoding/json's: the keys involved
// are spelled plainly and appear once (encoding/json matches keys
// case-insensitively and keeps the last of duplicates), the value is a
// string without escapes, carriage returns or newlines (which
// base64.StdEncoding would skip but JSON forbids raw), and it decodes as
// standard base64. Anything else, and every error, goes the usual way.
// The base64 decoding is segmentio/asm's (AVX2 where the CPU has it, the
// standard library's results: FuzzDecodePost compares): about 13x faster
// than encoding/base64 on a 3000x2000 photo's 1.7 MB of base64 (1.24 ms
// against 0.10), which was most of a large post's cost before its decode.

// fastDataMin is the smallest image.data string taken out of a message.
const fastDataMin = 16 << 10

// splitImageData finds the string value of the top-level object's
// image.data in b, if it is at least minLen bytes long. It returns b
// without that string's contents (the value becomes "") and the decoded
// bytes, or ok false when the message is not one it can be sure of.
func splitImageData(b []byte, minLen int) (rest, data []byte, ok bool) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return nil, nil, false
	}
	var lo, hi int // the data string's contents, b[lo:hi]
	images := 0
	_, ok = walkObject(b, i, func(key []byte, v int) (int, bool) {
		if !bytes.EqualFold(key, []byte("image")) {
			return skipValue(b, v)
		}
		images++
		if images > 1 || string(key) != "image" || b[v] != '{' {
			return 0, false
		}
		datas := 0
		return walkObject(b, v, func(key []byte, v int) (int, bool) {
			if !bytes.EqualFold(key, []byte("data")) {
				return skipValue(b, v)
			}
			datas++
			if datas > 1 || string(key) != "data" || b[v] != '"' {
				return 0, false
			}
			end := bytes.IndexByte(b[v+1:], '"')
			if end < 0 {
				return 0, false
			}
			lo, hi = v+1, v+1+end
			return hi + 1, true
		})
	})
	if !ok || hi-lo < max(minLen, 1) {
		return nil, nil, false
	}
	s := b[lo:hi]
	if bytes.IndexByte(s, '\\') >= 0 || bytes.IndexByte(s, '\r') >= 0 || bytes.IndexByte(s, '\n') >= 0 {
		return nil, nil, false
	}
	data = make([]byte, base64.StdEncoding.DecodedLen(len(s)))
	n, err := base64.StdEncoding.Decode(data, s)
	if err != nil {
		return nil, nil, false
	}
	rest = make([]byte, 0, len(b)-len(s))
	rest = append(append(rest, b[:lo]...), b[hi:]...)
	return rest, data[:n], true
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string that starts at b[i] (a
// quote), or -1.
func skipString(b []byte, i int) int {
	j := i + 1
	for {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return -1
		}
		q := j + k
		// The quote is escaped when an odd number of backslashes precede it.
		n := 0
		for p := q - 1; p >= j && b[p] == '\\'; p-- {
			n++
		}
		if n%2 == 0 {
			return q + 1
		}
		j = q + 1
	}
}

// skipValue returns the index after the value that starts at b[i], or
// false. It checks structure only; encoding/json validates the rest.
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		j := skipString(b, i)
		return j, j > 0
	case '{', '[':
		depth := 0
		for j := i; j < len(b); {
			switch b[j] {
			case '"':
				if j = skipString(b, j); j < 0 {
					return 0, false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, true
				}
			}
			j++
		}
		return 0, false
	}
	// A number or a literal: up to the next delimiter.
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	return j, j > i
}

// walkObject calls f with each raw key (without its quotes) of the object
// that starts at b[i] and the index of its value; f returns the index after
// the value. walkObject returns the index after the object. Keys with
// escapes or non-ASCII bytes (which could fold to a field's name) stop it.
func walkObject(b []byte, i int, f func(key []byte, v int) (int, bool)) (int, bool) {
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, true
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, false
		}
		end := skipString(b, i)
		if end < 0 {
			return 0, false
		}
		key := b[i+1 : end-1]
		for _, c := range key {
			if c == '\\' || c >= 0x80 {
				return 0, false
			}
		}
		i = skipWS(b, end)
		if i >= len(b) || b[i] != ':' {
			return 0, false
		}
		v := skipWS(b, i+1)
		if v >= len(b) {
			return 0, false
		}
		next, ok := f(key, v)
		if !ok {
			return 0, false
		}
		i = skipWS(b, next)
		if i >= len(b) {
			return 0, false
		}
		switch b[i] {
		case ',':
			i = skipWS(b, i+1)
		case '}':
			return i + 1, true
		default:
			return 0, false
		}
	}
}
