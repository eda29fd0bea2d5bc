package main

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xmodal/xmodal/internal/testutil"
)

// TestGenPostsFeedEveryTool: what `xmodal gen --posts` writes (the post
// format, images by image_file) is read by `xmodal hash fit` and `xmodal
// ingest` alike, with inline images and bad lines in the same file (issue
// #19: one format everywhere).
func TestGenPostsFeedEveryTool(t *testing.T) {
	if testing.Short() {
		t.Skip("runs xmodal processes")
	}
	dir := t.TempDir()
	if out, err := runXmodal(t, 2*time.Minute, nil, "gen", "--split", "demo", "--n", "40", "--posts", "--out", dir); err != nil {
		t.Fatalf("gen --posts: %v\n%s", err, out)
	}
	path := filepath.Join(dir, "posts.jsonl")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(filepath.Join(dir, "images", "demo-000000.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	inline, _ := json.Marshal(map[string]any{"schema": 1, "id": "inline-1", "created_at": "2026-11-02T10:00:00Z", "text": "an inline picture",
		"image": map[string]string{"data": base64.StdEncoding.EncodeToString(img)}})
	b = append(b, inline...)
	b = append(b, "\n{\"id\":\"broken\",\"text\":\"no schema, no time\"}\n"...)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	model := filepath.Join(testutil.MustRepoRoot(t), "testdata", "models", "parity")

	params := filepath.Join(t.TempDir(), "hash.json")
	out, err := runXmodal(t, 3*time.Minute, nil, "hash", "fit", "--model", model, "--data", dir, "--bits", "16", "--out", params)
	if err != nil {
		t.Fatalf("hash fit on gen --posts output: %v\n%s", err, out)
	}
	if !strings.Contains(out, "posts.jsonl line 42: invalid post: schema: missing") || !strings.Contains(out, "embedded 41/41 posts") {
		t.Errorf("hash fit output:\n%s", out)
	}
	var fitted struct {
		Bits    int `json:"bits"`
		Samples map[string]int
	}
	if pb, err := os.ReadFile(params); err != nil || json.Unmarshal(pb, &fitted) != nil || fitted.Bits != 16 {
		t.Errorf("hash fit wrote no 16-bit parameters: %v %+v", err, fitted)
	}

	data := t.TempDir()
	out, err = runXmodal(t, 3*time.Minute, nil, "ingest", "--from", path, "--to", "direct", "--data-dir", data, "--model", model)
	if err != nil || !strings.Contains(out, "ingest: done: 42 lines") || !strings.Contains(out, "1 dead-lettered") {
		t.Fatalf("ingest --to direct of gen --posts output: %v\n%s", err, out)
	}
	dl, _ := os.ReadFile(filepath.Join(data, "backfill-dlq.jsonl"))
	if !strings.Contains(string(dl), `"key":"broken"`) || !strings.Contains(string(dl), "schema: missing") {
		t.Errorf("dead letters:\n%s", dl)
	}
}
