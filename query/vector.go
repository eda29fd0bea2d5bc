package query

import (
	"encoding/json"
	"reflect"
	"strconv"
	"unsafe"
)

// Vector is a query vector: a JSON array of numbers, decoded into float32s
// exactly as encoding/json decodes a []float32 (strconv.ParseFloat with 32
// bits, the same errors for a non-number or an out-of-range number) but in
// one pass without reflection per element. Decoding a 256- or
// 512-dimensional vector was most of the CPU time of a cached search.
type Vector []float32

var float32Type = reflect.TypeFor[float32]()

// UnmarshalJSON implements json.Unmarshaler.
func (v *Vector) UnmarshalJSON(b []byte) error {
	i := skipSpace(b, 0)
	if string(trimRightSpace(b[i:])) == "null" {
		return nil // as encoding/json: null leaves a slice as it is
	}
	if i == len(b) || b[i] != '[' {
		return &json.UnmarshalTypeError{Value: jsonKind(b[i:]), Type: reflect.TypeFor[Vector]()}
	}
	out := (*v)[:0]
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		if out == nil {
			out = Vector{}
		}
		*v = out
		return nil
	}
	for {
		if i == len(b) {
			return &json.UnmarshalTypeError{Value: "truncated array", Type: reflect.TypeFor[Vector]()}
		}
		start := i
		switch c := b[i]; {
		case c == 'n' && len(b)-i >= 4 && string(b[i:i+4]) == "null":
			// encoding/json leaves an element it reads null at zero
			out = append(out, 0)
			i += 4
		case c == '-' || c >= '0' && c <= '9':
			for i < len(b) && isNumberByte(b[i]) {
				i++
			}
			num := b[start:i]
			f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(num), len(num)), 32)
			if err != nil {
				return &json.UnmarshalTypeError{Value: "number " + string(num), Type: float32Type}
			}
			out = append(out, float32(f))
		default:
			return &json.UnmarshalTypeError{Value: jsonKind(b[i:]), Type: float32Type}
		}
		i = skipSpace(b, i)
		if i == len(b) {
			return &json.UnmarshalTypeError{Value: "truncated array", Type: reflect.TypeFor[Vector]()}
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case ']':
			if skipSpace(b, i+1) != len(b) {
				return &json.UnmarshalTypeError{Value: "data after the array", Type: reflect.TypeFor[Vector]()}
			}
			*v = out
			return nil
		default:
			return &json.UnmarshalTypeError{Value: jsonKind(b[i:]), Type: float32Type}
		}
	}
}

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

func trimRightSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// jsonKind names the JSON value that starts b, as encoding/json's errors do.
func jsonKind(b []byte) string {
	if len(b) == 0 {
		return "end of input"
	}
	switch b[0] {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return "number"
	}
	return "invalid value"
}
