package ingest

import (
	"bytes"
	"encoding/base64"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/xmodal/xmodal/domain"
)

// decodePostPlain is DecodePost without the inline-image shortcut.
func decodePostPlain(b []byte) (*domain.Post, error) {
	if len(b) == 0 || len(b) > MaxMessageBytes || !utf8.Valid(b) {
		return nil, invalid("", "size or encoding")
	}
	var p domain.Post
	if err := decodeJSON(b, &p); err != nil {
		return nil, err
	}
	if err := Validate(&p, now); err != nil {
		return nil, err
	}
	return &p, nil
}

// samePost: DecodePost and the plain decode agree (both fail, or give equal
// posts).
func samePost(t *testing.T, name string, b []byte) {
	t.Helper()
	got, err := DecodePost(b, now)
	want, werr := decodePostPlain(b)
	if (err != nil) != (werr != nil) {
		t.Fatalf("%s: DecodePost error %v, plain decode error %v", name, err, werr)
	}
	if err == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: DecodePost and the plain decode differ", name)
	}
}

func bigData() string {
	raw := make([]byte, 30000)
	for i := range raw {
		raw[i] = byte(i*31 + i/7)
	}
	return base64.StdEncoding.EncodeToString(raw)
}

// The shortcut for large inline images takes image.data out of the message
// only when encoding/json would give the same post: every spelling that
// encoding/json treats differently (case-insensitive keys, duplicates,
// escapes, raw newlines, bad base64, trailing data) goes the plain way, and
// the posts agree.
func TestSplitImageDataAgrees(t *testing.T) {
	d := bigData()
	head := `{"schema":1,"id":"p1","created_at":"2026-11-01T10:00:00Z",`
	tests := []struct {
		name  string
		msg   string
		split bool // the shortcut applies
	}{
		{"plain", head + `"image":{"data":"` + d + `","mime":"image/jpeg"},"text":"hi"}`, true},
		{"spaces", head + ` "image" : { "mime" : "image/jpeg" , "data" : "` + d + `" } }`, true},
		{"image after text with braces", head + `"text":"{\"image\":{\"data\":1}}","image":{"data":"` + d + `"}}`, true},
		{"tags before", head + `"tags":["a","b\"}"],"labels":[],"image":{"data":"` + d + `"}}`, true},
		{"small", head + `"image":{"data":"AAAA"}}`, false},
		{"capital key", head + `"Image":{"data":"` + d + `"}}`, false},
		{"capital data", head + `"image":{"DATA":"` + d + `"}}`, false},
		{"two images", head + `"image":{"data":"` + d + `"},"image":{"url":"https://h/x.jpg"}}`, false},
		{"two images, folded", head + `"image":{"data":"` + d + `"},"IMAGE":{"data":"AAAA"}}`, false},
		{"two datas", head + `"image":{"data":"` + d + `","data":"AAAA"}}`, false},
		{"escaped key", head + `"\u0069mage":{"data":"` + d + `"}}`, false},
		{"escaped slash in data", head + `"image":{"data":"` + d[:100] + `\/` + d[100:] + `"}}`, false},
		{"escaped newline in data", head + `"image":{"data":"` + d[:100] + `\n` + d[100:] + `"}}`, false},
		{"raw newline in data", head + `"image":{"data":"` + d[:100] + "\n" + d[100:] + `"}}`, false},
		{"bad base64", head + `"image":{"data":"` + d[:100] + `*` + d[100:] + `"}}`, false},
		{"image null", head + `"image":null,"text":"` + d + `"}`, false},
		{"data null", head + `"image":{"data":null},"text":"x"}`, false},
		{"unknown field", head + `"image":{"data":"` + d + `"},"extra":1}`, true},
		{"unknown image field", head + `"image":{"data":"` + d + `","size":1}}`, true},
		{"trailing data", head + `"image":{"data":"` + d + `"}} {}`, true},
		{"truncated", head + `"image":{"data":"` + d + `"`, false},
		{"no id", `{"schema":1,"created_at":"2026-11-01T10:00:00Z","image":{"data":"` + d + `"}}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, ok := splitImageData([]byte(tt.msg), fastDataMin)
			if ok != tt.split {
				t.Errorf("shortcut taken: %v, want %v", ok, tt.split)
			}
			samePost(t, tt.name, []byte(tt.msg))
		})
	}
	// The data itself arrives intact.
	p, err := DecodePost([]byte(head+`"image":{"data":"`+d+`"}}`), now)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := base64.StdEncoding.DecodeString(d); !bytes.Equal(p.Image.Data, want) {
		t.Errorf("image data: %d bytes, want %d", len(p.Image.Data), len(want))
	}
}

// Any message: when the shortcut applies (at any length of data), the
// rest decoded plainly plus the data it took out is the post the plain
// decode gives.
func FuzzSplitImageData(f *testing.F) {
	f.Add([]byte(`{"schema":1,"id":"p1","created_at":"2026-11-01T10:00:00Z","image":{"data":"AAAA"}}`))
	f.Add([]byte(`{"schema":1,"id":"p1","created_at":"2026-11-01T10:00:00Z","text":"a","image":{"mime":"x","data":"/+8="},"tags":["t"]}`))
	f.Add([]byte(`{"image":{"data":"QUJD"},"schema":1,"text":"{\"image\":1}"}`))
	f.Add([]byte(`{"image":{"Data":"QUJD","data":"QUJD"}}`))
	// base64 corners (the fast path decodes with segmentio/asm, the plain
	// one with encoding/base64): padding, non-zero pad bits, bad bytes.
	for _, d := range []string{"QQ==", "QR==", "QUI=", "QUJ=", "QQ=", "Q===", "QUJ", "QUJD=", "QU JD", "QUJD\\t", "QUJD====", "-_-_", "QUJDRA==QUJD", "QUJDREVGR0g="} {
		f.Add([]byte(`{"schema":1,"id":"p","created_at":"2026-11-01T10:00:00Z","image":{"data":"` + d + `"}}`))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rest, data, ok := splitImageData(b, 1)
		if !ok {
			return
		}
		want, werr := decodePostPlain(b)
		var got domain.Post
		err := decodeJSON(rest, &got)
		if err == nil {
			if got.Image == nil {
				t.Fatalf("split a message whose rest has no image: %q", rest)
			}
			got.Image.Data = data
			err = Validate(&got, now)
		}
		if (err != nil) != (werr != nil) {
			t.Fatalf("split decode error %v, plain decode error %v", err, werr)
		}
		if err == nil && !reflect.DeepEqual(&got, want) {
			t.Fatalf("split decode %+v, plain decode %+v", got, want)
		}
	})
}
