package ingest

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

func TestDecodePostValid(t *testing.T) {
	tests := []struct {
		name string
		json string
	}{
		{"text only", `{"schema":1,"id":"p1","created_at":"2026-11-01T10:00:00Z","text":"hello"}`},
		{"image url", `{"schema":1,"id":"p:2","author":"alice","created_at":"2026-11-01T10:00:00+02:00","image":{"url":"https://cdn.example/x.jpg","mime":"image/jpeg"}}`},
		{"inline image and text", `{"schema":1,"id":"p.3","created_at":"2026-11-01T10:00:00Z","text":"a cat","image":{"data":"` + base64.StdEncoding.EncodeToString([]byte("\x89PNG")) + `"},"tags":["cats"],"labels":["animal"],"lang":"en-GB"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := DecodePost([]byte(tc.json), now)
			if err != nil {
				t.Fatal(err)
			}
			if p.ID == "" || p.CreatedAt.IsZero() {
				t.Errorf("decoded post lacks fields: %+v", p)
			}
		})
	}
}

func TestDecodePostInvalid(t *testing.T) {
	long := strings.Repeat("x", MaxTextBytes+1)
	tests := []struct {
		name, json, field string
	}{
		{"empty", ``, ""},
		{"not json", `hello`, ""},
		{"truncated", `{"schema":1,"id":"p1"`, ""},
		{"array", `[1,2]`, ""},
		{"trailing", `{"schema":1,"id":"p1","created_at":"2026-11-01T10:00:00Z","text":"x"} {}`, ""},
		{"unknown field", `{"schema":1,"id":"p1","created_at":"2026-11-01T10:00:00Z","text":"x","colour":"red"}`, ""},
		{"no schema", `{"id":"p1","created_at":"2026-11-01T10:00:00Z","text":"x"}`, "schema"},
		{"future schema", `{"schema":2,"id":"p1","created_at":"2026-11-01T10:00:00Z","text":"x"}`, "schema"},
		{"no id", `{"schema":1,"created_at":"2026-11-01T10:00:00Z","text":"x"}`, "id"},
		{"id with #", `{"schema":1,"id":"p#1","created_at":"2026-11-01T10:00:00Z","text":"x"}`, "id"},
		{"id with space", `{"schema":1,"id":"p 1","created_at":"2026-11-01T10:00:00Z","text":"x"}`, "id"},
		{"id too long", `{"schema":1,"id":"` + strings.Repeat("a", 129) + `","created_at":"2026-11-01T10:00:00Z","text":"x"}`, "id"},
		{"id wrong type", `{"schema":1,"id":12,"created_at":"2026-11-01T10:00:00Z","text":"x"}`, ""},
		{"no time", `{"schema":1,"id":"p1","text":"x"}`, "created_at"},
		{"bad time", `{"schema":1,"id":"p1","created_at":"yesterday","text":"x"}`, ""},
		{"ancient", `{"schema":1,"id":"p1","created_at":"1970-01-01T00:00:00Z","text":"x"}`, "created_at"},
		{"future", `{"schema":1,"id":"p1","created_at":"2027-06-01T00:00:00Z","text":"x"}`, "created_at"},
		{"nothing to index", `{"schema":1,"id":"p1","created_at":"2026-11-01T10:00:00Z","text":"  "}`, ""},
		{"text too long", `{"schema":1,"id":"p1","created_at":"2026-11-01T10:00:00Z","text":"` + long + `"}`, "text"},
		{"invalid utf8", "{\"schema\":1,\"id\":\"p1\",\"created_at\":\"2026-11-01T10:00:00Z\",\"text\":\"\xff\xfe\"}", ""},
		{"both url and data", `{"schema":1,"id":"p1","created_at":"2026-11-01T10:00:00Z","image":{"url":"https://x/y","data":"AAAA"}}`, "image"},
		{"empty image", `{"schema":1,"id":"p1","created_at":"2026-11-01T10:00:00Z","text":"x","image":{}}`, "image"},
		{"bad base64", `{"schema":1,"id":"p1","created_at":"2026-11-01T10:00:00Z","image":{"data":"!!!"}}`, ""},
		{"file url", `{"schema":1,"id":"p1","created_at":"2026-11-01T10:00:00Z","image":{"url":"file:///etc/passwd"}}`, "image.url"},
		{"no host", `{"schema":1,"id":"p1","created_at":"2026-11-01T10:00:00Z","image":{"url":"http:///x"}}`, "image.url"},
		{"bad mime", `{"schema":1,"id":"p1","created_at":"2026-11-01T10:00:00Z","image":{"url":"http://h/x","mime":"text/html"}}`, "image.mime"},
		{"control in author", `{"schema":1,"id":"p1","author":"a\u0007b","created_at":"2026-11-01T10:00:00Z","text":"x"}`, "author"},
		{"empty label", `{"schema":1,"id":"p1","created_at":"2026-11-01T10:00:00Z","text":"x","labels":[""]}`, "labels[0]"},
		{"bad lang", `{"schema":1,"id":"p1","created_at":"2026-11-01T10:00:00Z","text":"x","lang":"en GB"}`, "lang"},
		// A path named in a message is refused with its own reason, never opened.
		{"image_file", `{"schema":1,"id":"p1","created_at":"2026-11-01T10:00:00Z","text":"x","image_file":"/etc/passwd"}`, "image_file"},
		{"image_file without schema", `{"id":"p1","text":"x","image_file":"images/a.jpg"}`, "image_file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodePost([]byte(tc.json), now)
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want a *ValidationError", err)
			}
			if ve.Field != tc.field {
				t.Errorf("field %q, want %q (%v)", ve.Field, tc.field, err)
			}
			if ve.Reason == "" {
				t.Error("empty reason")
			}
		})
	}
}

func FuzzDecodePost(f *testing.F) {
	f.Add([]byte(`{"schema":1,"id":"p1","created_at":"2026-11-01T10:00:00Z","text":"hello"}`))
	f.Add([]byte(`{"schema":1,"id":"p:2","created_at":"2026-11-01T10:00:00Z","image":{"url":"https://h/x.jpg"}}`))
	f.Add([]byte(`{"schema":1,"id":"p3","created_at":"2026-11-01T10:00:00Z","image":{"data":"AAAA"},"labels":["a"]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePost(b, now)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if ValidID(p.ID) != "" || (!p.HasText() && !p.HasImage()) {
			t.Fatalf("accepted an invalid post: %+v", p)
		}
	})
}

func TestQuoteIDCutsLongIDs(t *testing.T) {
	if got := QuoteID("post-1"); got != `"post-1"` {
		t.Errorf("QuoteID(post-1) = %s", got)
	}
	huge := strings.Repeat("é", 5000)
	got := QuoteID(huge)
	if len(got) > 80 || !strings.Contains(got, "(10000 bytes)") {
		t.Errorf("QuoteID of a 10,000-byte id = %q (%d bytes)", got, len(got))
	}
	_, err := DecodePost([]byte(`{"schema":1,"id":"`+strings.Repeat("a", 10000)+`","created_at":"2026-11-01T10:00:00Z","text":"x"}`), now)
	if err == nil || len(err.Error()) > 200 {
		t.Errorf("a 10 KB id's error is %d bytes: %.300v", len(fmt.Sprint(err)), err)
	}
}
