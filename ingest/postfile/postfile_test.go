package postfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xmodal/xmodal/ingest"
)

var now = time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)

// pngBytes is the start of a PNG (enough for the sniffer).
var pngBytes = []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00")

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestResolveInlinesImageFile(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "images", "a.png"), pngBytes)
	line := `{"schema":1,"id":"p1","created_at":"2026-11-01T10:00:00Z","text":"hi","image_file":"images/a.png","labels":["x"]}`
	m, err := Resolve([]byte(line), dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Key != "p1" || m.Tombstone || m.ImageFile != filepath.Join(dir, "images", "a.png") {
		t.Fatalf("message %+v", m)
	}
	if bytes.Contains(m.Value, []byte("image_file")) {
		t.Fatalf("the value still names the file: %s", m.Value)
	}
	p, err := ingest.DecodePost(m.Value, now)
	if err != nil {
		t.Fatalf("the resolved post does not validate: %v\n%s", err, m.Value)
	}
	if !bytes.Equal(p.Image.Data, pngBytes) || p.Image.MIME != "image/png" || p.Text != "hi" || p.Labels[0] != "x" {
		t.Fatalf("decoded post %+v", p)
	}
}

func TestResolvePassesOtherLinesThrough(t *testing.T) {
	line := `{"schema":1,"id":"p2","created_at":"2026-11-01T10:00:00Z","image":{"url":"http://10.1.2.3/x.jpg"}}`
	m, err := Resolve([]byte(line), "/nowhere")
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Value) != line {
		t.Fatalf("value %s, want the line as written", m.Value)
	}
	m, err = Resolve([]byte(`{"id":"p3","delete":true}`), "")
	if err != nil || !m.Tombstone || m.Value != nil || m.Key != "p3" {
		t.Fatalf("tombstone: %+v, %v", m, err)
	}
}

func TestResolveRefusals(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.png"), pngBytes)
	writeFile(t, filepath.Join(dir, "empty.png"), nil)
	big := make([]byte, ingest.MaxInlineImage+1)
	writeFile(t, filepath.Join(dir, "big.png"), big)
	huge := strings.Repeat("x", 10_000)
	tests := []struct {
		name, line, field string
		noID              bool
		cause             error
	}{
		{"not json", `hello`, "", true, nil},
		{"no id", `{"text":"x"}`, "id", true, nil},
		{"id not a string", `{"id":7,"text":"x"}`, "id", true, nil},
		{"huge id", `{"id":"` + huge + `","text":"x"}`, "id", true, nil},
		{"missing file", `{"id":"p","image_file":"nope.png"}`, FieldImageFile, false, fs.ErrNotExist},
		{"empty file", `{"id":"p","image_file":"empty.png"}`, FieldImageFile, false, nil},
		{"big file", `{"id":"p","image_file":"big.png"}`, FieldImageFile, false, nil},
		{"directory", `{"id":"p","image_file":"."}`, FieldImageFile, false, nil},
		{"not a string", `{"id":"p","image_file":3}`, FieldImageFile, false, nil},
		{"image and image_file", `{"id":"p","image_file":"a.png","image":{"url":"https://x/y"}}`, FieldImageFile, false, nil},
		{"tombstone with more", `{"id":"p","delete":true,"text":"x"}`, "delete", false, nil},
		{"delete not bool", `{"id":"p","delete":"yes"}`, "delete", false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Resolve([]byte(tc.line), dir)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err %v, want *Error", err)
			}
			if e.Field != tc.field {
				t.Errorf("field %q, want %q (%v)", e.Field, tc.field, err)
			}
			if errors.Is(err, ErrNoID) != tc.noID {
				t.Errorf("errors.Is(ErrNoID) = %v, want %v", !tc.noID, tc.noID)
			}
			if tc.cause != nil && !errors.Is(err, tc.cause) {
				t.Errorf("err %v does not wrap %v", err, tc.cause)
			}
			if len(err.Error()) > 300 {
				t.Errorf("error is %d bytes long: %.200s", len(err.Error()), err)
			}
		})
	}
}

func TestLoadReportsBadLinesAndKeepsGoodOnes(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "img", "a.png"), pngBytes)
	path := filepath.Join(dir, "posts.jsonl")
	lines := []string{
		`{"schema":1,"id":"ok1","created_at":"2026-11-01T10:00:00Z","text":"one","image_file":"img/a.png"}`,
		``,
		`{"text":"no id"}`,
		`{"schema":1,"id":"ok2","created_at":"2026-11-01T10:00:00Z","text":"two"}`,
		`{"id":"noschema","text":"x"}`,
		`{"id":"gone","delete":true}`,
		`{"schema":1,"id":"missing","created_at":"2026-11-01T10:00:00Z","image_file":"img/b.png"}`,
	}
	writeFile(t, path, []byte(strings.Join(lines, "\n")+"\n"))
	posts, bad, err := Load(path, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(posts) != 2 || posts[0].ID != "ok1" || posts[1].ID != "ok2" || len(posts[0].Image.Data) == 0 {
		t.Fatalf("posts %+v", posts)
	}
	var got []int
	for _, b := range bad {
		got = append(got, b.Line)
	}
	if len(got) != 3 || got[0] != 3 || got[1] != 5 || got[2] != 7 {
		t.Fatalf("bad lines %v, want [3 5 7]: %v", got, bad)
	}
	var ve *ingest.ValidationError
	if !errors.As(bad[1], &ve) || ve.Field != "schema" {
		t.Errorf("line 5: %v, want a schema ValidationError", bad[1])
	}
}

// TestDemoPostsAreInTheFormat checks that the sample posts the README tells a
// new user to post are valid posts, every one (issue #19).
func TestDemoPostsAreInTheFormat(t *testing.T) {
	path := filepath.Join("..", "..", "testdata", "demo", "posts.jsonl")
	posts, bad, err := Load(path, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		t.Error(b)
	}
	if len(posts) != 24 {
		t.Fatalf("%d valid demo posts, want 24", len(posts))
	}
	for _, p := range posts {
		if p.Image == nil || len(p.Image.Data) == 0 || p.Text == "" || p.Author == "" || len(p.Labels) == 0 {
			t.Errorf("demo post %s lacks a field: %+v", p.ID, p)
		}
	}
}

func FuzzResolve(f *testing.F) {
	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.png"), pngBytes, 0o644); err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		`{"schema":1,"id":"p1","created_at":"2026-11-01T10:00:00Z","text":"hi","image_file":"a.png"}`,
		`{"id":"p3","delete":true}`,
		`{"id":"p3","delete":false,"text":"x"}`,
		`{"id":"p","image_file":"../../etc/passwd"}`,
		`[]`, `null`, `{"id":null}`, `{"id":"a","image_file":null}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		m, err := Resolve(line, dir)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err %v is not a *Error", err)
			}
			if len(err.Error()) > 600 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		if why := ingest.ValidID(m.Key); why != "" {
			t.Fatalf("resolved key %q is invalid: %s", m.Key, why)
		}
		if m.Tombstone != (m.Value == nil) {
			t.Fatalf("tombstone %v with value %q", m.Tombstone, m.Value)
		}
		if !m.Tombstone {
			var v map[string]json.RawMessage
			if err := json.Unmarshal(m.Value, &v); err != nil {
				t.Fatalf("value is not a JSON object: %v", err)
			}
			if _, ok := v[FieldImageFile]; ok {
				t.Fatalf("value still names a file: %s", m.Value)
			}
		}
	})
}
