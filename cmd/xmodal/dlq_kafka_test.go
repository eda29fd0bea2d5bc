package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/internal/testutil"
)

// TestDLQKafka works the Kafka dead-letter topic with `xmodal dlq` on a real
// broker: `xmodal ingest --to kafka` dead-letters lines whose image_file is
// missing (stage file) into <topic>.dlq; ls lists them with the reason, show
// prints one, replay after the file is put in place produces the post to the
// topic with the image inline (and moves the dlq's place past it), purge
// --all empties the list.
func TestDLQKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Kafka broker")
	}
	b := startKafka(t)
	b.CreateTopic(t, "posts", 2)
	b.CreateTopic(t, "posts.dlq", 1)
	env := []string{"XMODAL_KAFKA_BROKERS=" + b.Plain(), "XMODAL_KAFKA_TOPIC=posts"}
	dir := t.TempDir()
	lines := []string{
		`{"schema":1,"id":"k-1","created_at":"2026-11-20T10:00:00Z","text":"fine","image_file":"pics/a.jpg"}`,
		`{"schema":1,"id":"k-2","created_at":"2026-11-20T10:00:00Z","text":"missing picture","image_file":"pics/missing.jpg"}`,
		`{"schema":1,"id":"k-3","created_at":"2026-11-20T10:00:00Z","text":"another missing one","image_file":"pics/gone.jpg"}`,
	}
	img, err := os.ReadFile(filepath.Join(testutil.MustRepoRoot(t), "testdata", "demo", "images", "demo-000001.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "pics"), 0o755)
	os.WriteFile(filepath.Join(dir, "pics", "a.jpg"), img, 0o644)
	in := filepath.Join(dir, "posts.jsonl")
	os.WriteFile(in, []byte(strings.Join(lines, "\n")+"\n"), 0o644)

	out, err := runXmodal(t, 2*time.Minute, env, "ingest", "--from", in, "--to", "kafka", "--data-dir", t.TempDir())
	if err != nil || !strings.Contains(out, "2 refused here") {
		t.Fatalf("ingest --to kafka: %v\n%s", err, out)
	}
	out, err = runXmodal(t, time.Minute, env, "dlq", "ls")
	if err != nil {
		t.Fatalf("dlq ls: %v\n%s", err, out)
	}
	if !strings.Contains(out, "2 dead letters in Kafka topic posts.dlq") ||
		!regexp.MustCompile(`(?m)^0:0\s+\S+ \S+\s+file\s+k-2\s+image_file: \S+missing.jpg does not exist`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^0:1\s+\S+ \S+\s+file\s+k-3\s`).MatchString(out) {
		t.Fatalf("dlq ls:\n%s", out)
	}
	out, err = runXmodal(t, time.Minute, env, "dlq", "show", "0:0")
	if err != nil || !strings.Contains(out, "Xmodal-Stage: file") || !strings.Contains(out, `"image_file": "pics/missing.jpg"`) ||
		!strings.Contains(out, "Xmodal-Source-Line: 2") {
		t.Fatalf("dlq show 0:0: %v\n%s", err, out)
	}

	// Put the picture in place, replay that one.
	os.WriteFile(filepath.Join(dir, "pics", "missing.jpg"), img, 0o644)
	out, err = runXmodal(t, time.Minute, env, "dlq", "replay", "0:0")
	if err != nil || !strings.Contains(out, "replayed 1 dead letters") {
		t.Fatalf("dlq replay 0:0: %v\n%s", err, out)
	}
	var replayed *domain.Post
	for _, m := range b.readTopic(t, "posts") {
		if string(m.Key) == "k-2" {
			p, err := ingest.DecodePost(m.Value, time.Now())
			if err != nil {
				t.Fatalf("the replayed k-2 is not a valid post: %v\n%.300s", err, m.Value)
			}
			replayed = p
		}
	}
	if replayed == nil || replayed.Image == nil || len(replayed.Image.Data) != len(img) {
		t.Fatalf("k-2 was not produced to posts with its picture inline: %+v", replayed)
	}
	out, _ = runXmodal(t, time.Minute, env, "dlq", "ls", "--json")
	var left []dlqView
	if err := json.Unmarshal([]byte(out), &left); err != nil || len(left) != 1 || left[0].Key != "k-3" {
		t.Fatalf("after replaying 0:0, dlq ls --json: %v\n%s", err, out)
	}

	out, err = runXmodal(t, time.Minute, env, "dlq", "purge", "--all")
	if err != nil || !strings.Contains(out, "purged 1 dead letters") {
		t.Fatalf("dlq purge --all: %v\n%s", err, out)
	}
	if out, _ = runXmodal(t, time.Minute, env, "dlq", "ls"); !strings.Contains(out, "0 dead letters") {
		t.Fatalf("after purge --all:\n%s", out)
	}
}
