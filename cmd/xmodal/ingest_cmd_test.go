package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	filesrc "github.com/xmodal/xmodal/ingest/file"
	"github.com/xmodal/xmodal/internal/testutil"
)

// ---- end to end, through the binary ----

// runXmodal runs the binary (the test binary re-executed) and returns its
// combined output.
func runXmodal(t *testing.T, timeout time.Duration, env []string, args ...string) (string, error) {
	t.Helper()
	requireORT(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Dir = testutil.MustRepoRoot(t)
	cmd.Env = append(os.Environ(), append([]string{"XMODAL_TEST_MAIN=1"}, env...)...)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("xmodal %v did not finish within %v:\n%s", args, timeout, buf.String())
	}
	return buf.String(), err
}

// jsonlLine renders a workload message as a line of a backfill file.
func jsonlLine(m *e2eMsg) string {
	if m.value == nil {
		b, _ := json.Marshal(map[string]any{"id": m.key, "delete": true})
		return string(b)
	}
	return string(m.value)
}

// fileWorkload is the e2e workload without what only Kafka can express (a key
// that differs from the post id): in a file the key is the line's id.
func fileWorkload(t *testing.T, n int) *e2eWorkload {
	w := newE2EWorkload(e2eSeed(t), n)
	w.msgs = slices.DeleteFunc(w.msgs, func(m *e2eMsg) bool { return m.kind == "key-differs" })
	t.Logf("workload: %s", w)
	return w
}

type fileLine struct {
	file string
	line int
}

// writeWorkload writes the workload's messages as JSON Lines over files under
// dir (with blank lines here and there) and returns where each bad one is.
func writeWorkload(t *testing.T, dir string, w *e2eWorkload, files ...string) map[fileLine]*e2eMsg {
	t.Helper()
	bad := map[fileLine]*e2eMsg{}
	per := (len(w.msgs) + len(files) - 1) / len(files)
	for i, name := range files {
		var lines []string
		for j, m := range w.msgs[min(i*per, len(w.msgs)):min((i+1)*per, len(w.msgs))] {
			if j%97 == 5 {
				lines = append(lines, "")
			}
			lines = append(lines, jsonlLine(m))
			if m.stage != "" {
				bad[fileLine{filepath.Join(dir, name), len(lines)}] = m
			}
		}
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return bad
}

// TestIngestDirect backfills a directory into the embedded index, is killed with
// SIGKILL mid-way (after a batch's write, before its lines are acknowledged),
// resumes from the checkpoint and checks the index and the dead-letter file.
func TestIngestDirect(t *testing.T) {
	requireCrashBuild(t)
	if testing.Short() {
		t.Skip("runs xmodal processes")
	}
	w := fileWorkload(t, 600)
	in := filepath.Join(t.TempDir(), "backfill")
	bad := writeWorkload(t, in, w, "2025-06-01.jsonl", "later/2025-06-02.jsonl")
	data := t.TempDir()
	args := []string{"ingest", "--from", in, "--to", "direct", "--data-dir", data, "--log-level", "warn",
		"--model", filepath.Join(testutil.MustRepoRoot(t), "testdata", "models", "parity"), "--batch", "16", "--progress-interval", "100ms"}

	out, err := runXmodal(t, 3*time.Minute, []string{"XMODAL_CRASH_AT=after-write:6"}, args...)
	if !killedBySIGKILL(err) {
		t.Fatalf("first run: %v, want SIGKILL after the 6th write:\n%s", err, out)
	}
	cps, _ := filepath.Glob(filepath.Join(data, "backfill", "backfill-direct-*.json"))
	if len(cps) != 1 {
		t.Fatalf("checkpoint files %v, want one", cps)
	}
	cp, _ := os.ReadFile(cps[0])
	t.Logf("killed after the 6th batch's write; checkpoint:\n%s", cp)

	t0 := time.Now()
	out, err = runXmodal(t, 5*time.Minute, nil, args...)
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	t.Logf("second run (%v):\n%s", time.Since(t0).Round(time.Millisecond), out)
	wants := []string{"posts/s", "ETA", "ingest: done: "}
	// The checkpoint holds the lines acknowledged in order; when the first
	// lines were still being encoded at the kill (an image batch behind six
	// text batches' writes), it holds none and the second run starts over.
	var cpv struct {
		Lines int `json:"lines"`
	}
	if err := json.Unmarshal(cp, &cpv); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	if cpv.Lines > 0 {
		wants = append(wants, "ingest: resuming "+in+" after ")
	}
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("second run's output lacks %q", want)
		}
	}
	// The first run was killed after its 6th write of up to 16 posts: the
	// checkpoint holds the lines completed before it, in order (how many
	// depends on how the pipeline grouped its writes).
	if m := regexp.MustCompile(`ingest: resuming \S+ after (\d+) lines`).FindStringSubmatch(out); m != nil {
		if n, _ := strconv.Atoi(m[1]); n < 1 || n > 6*16 {
			t.Errorf("resumed after %d lines; want 1..%d (6 writes of up to 16)", n, 6*16)
		}
	}
	checkIndex(t, readIndex(t, "index", data, w), w)

	// The dead-letter file holds the bad lines, each with its reason and stage.
	b, err := os.ReadFile(filepath.Join(data, "backfill-dlq.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[fileLine]bool{}
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var d filesrc.DeadLetterLine
		if err := json.Unmarshal(l, &d); err != nil {
			t.Fatalf("dead-letter line %q: %v", l, err)
		}
		n, _ := strconv.Atoi(d.Headers["Xmodal-Source-Line"])
		at := fileLine{d.Headers["Xmodal-Source-File"], n}
		m := bad[at]
		switch {
		case m == nil:
			t.Errorf("dead letter for %v (%s: %s) is not a bad line", at, d.Stage, d.Reason)
		case d.Stage != m.stage || d.Reason == "":
			t.Errorf("dead letter for %v (%s): stage %q reason %q, want stage %q", at, m.kind, d.Stage, d.Reason, m.stage)
		case m.value != nil && (d.Value == nil || *d.Value != string(m.value)) && !bytes.Equal(d.ValueBase64, m.value):
			t.Errorf("dead letter for %v (%s) does not carry the line", at, m.kind)
		}
		seen[at] = true
	}
	for at, m := range bad {
		if !seen[at] {
			t.Errorf("no dead letter for %v (%s)", at, m.kind)
		}
	}

	out, err = runXmodal(t, time.Minute, nil, args...)
	if err != nil || !strings.Contains(out, "nothing to do") {
		t.Fatalf("third run: %v\n%s", err, out)
	}
}

// TestIngestKafka backfills a file into a Kafka topic (real broker), is killed
// after a produce before its checkpoint, resumes, and checks the topic (every
// line, keyed by post id, partitioned by murmur2, in order per key; only the
// interrupted batch twice), then indexes the topic with `xmodal run` and checks
// the end state: the duplicate batch changes nothing.
func TestIngestKafka(t *testing.T) {
	requireCrashBuild(t)
	if testing.Short() {
		t.Skip("starts a Kafka broker and xmodal processes")
	}
	b := startKafka(t)
	topic := "backfill"
	b.CreateTopic(t, topic, e2ePartitions)
	w := fileWorkload(t, 400)
	in := filepath.Join(t.TempDir(), "posts.jsonl")
	writeWorkload(t, filepath.Dir(in), w, filepath.Base(in))
	for _, m := range w.msgs {
		m.key, _ = filesrc.LineKey([]byte(jsonlLine(m))) // a line without a readable id goes without a key
	}
	data := t.TempDir()
	args := []string{"ingest", "--from", in, "--to", "kafka", "--data-dir", data, "--log-level", "warn",
		"--kafka-brokers", b.Plain(), "--kafka-topic", topic, "--batch", "50", "--progress-interval", "100ms"}

	out, err := runXmodal(t, time.Minute, nil, "ingest", "--from", in, "--to", "kafka", "--data-dir", data,
		"--kafka-brokers", b.Plain(), "--kafka-topic", "no-such-topic")
	if err == nil || !strings.Contains(out, `kafka topic "no-such-topic"`) {
		t.Fatalf("backfill to a missing topic: %v\n%s", err, out)
	}
	out, err = runXmodal(t, time.Minute, []string{"XMODAL_CRASH_AT=ingest-after-produce:3"}, args...)
	if !killedBySIGKILL(err) {
		t.Fatalf("first run: %v, want SIGKILL after the 3rd produce:\n%s", err, out)
	}
	out, err = runXmodal(t, 2*time.Minute, nil, args...)
	if err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	t.Logf("second run:\n%s", out)
	if !strings.Contains(out, "resuming "+in+" after 100 lines") || !strings.Contains(out, "ingest: done: ") {
		t.Fatalf("second run did not resume after the 2 batches that were checkpointed")
	}
	if out, err := runXmodal(t, time.Minute, nil, args...); err != nil || !strings.Contains(out, "nothing to do") {
		t.Fatalf("third run: %v\n%s", err, out)
	}

	// The topic: each line once, except the 3rd batch (lines produced, then the
	// kill before the checkpoint), which is there twice; per key in file order.
	got := b.readTopic(t, topic)
	slices.SortFunc(got, func(x, y kafkago.Message) int {
		if x.Partition != y.Partition {
			return x.Partition - y.Partition
		}
		return int(x.Offset - y.Offset)
	})
	type kv struct{ key, value string }
	count := map[kv]int{}
	perKey := map[string][]string{}
	w.bad = map[[2]int64]*e2eMsg{}
	byKV := map[kv]*e2eMsg{}
	for _, m := range w.msgs {
		byKV[kv{m.key, string(m.value)}] = m
	}
	for _, km := range got {
		k := kv{string(km.Key), string(km.Value)}
		count[k]++
		m := byKV[k]
		if m == nil {
			t.Fatalf("message %d/%d (key %q) is not a line of the file", km.Partition, km.Offset, km.Key)
		}
		if m.value == nil && km.Value != nil {
			t.Errorf("tombstone for %s has a value", m.key)
		}
		if len(km.Key) > 0 {
			want := (&kafkago.Murmur2Balancer{}).Balance(kafkago.Message{Key: km.Key}, allParts(e2ePartitions)...)
			if km.Partition != want {
				t.Errorf("key %s is in partition %d; murmur2 puts it in %d", km.Key, km.Partition, want)
			}
			perKey[k.key] = append(perKey[k.key], k.value)
		}
		if m.stage != "" {
			w.bad[[2]int64{int64(km.Partition), km.Offset}] = m
		}
	}
	// The third batch is messages 101..150 (non-blank lines in file order).
	twice := map[kv]bool{}
	for _, m := range w.msgs[100:150] {
		twice[kv{m.key, string(m.value)}] = true
	}
	dups := 0
	for k, n := range count {
		if n > 1 {
			dups += n - 1
			if byKV[k].key != "" && !twice[k] {
				t.Errorf("key %s value %.40q is in the topic %d times; it was not in the interrupted batch", k.key, k.value, n)
			}
		}
	}
	t.Logf("topic: %d messages for %d lines (%d duplicates from the interrupted batch)", len(got), len(w.msgs), dups)
	if len(got) != len(w.msgs)+50 {
		t.Errorf("topic holds %d messages, want %d lines + the 50 of the interrupted batch", len(got), len(w.msgs))
	}
	for key, vals := range perKey {
		var want []string
		for _, m := range w.msgs {
			if m.key == key {
				want = append(want, string(m.value))
			}
		}
		if !isSubsequenceWithRepeats(want, vals) {
			t.Errorf("key %s: versions in the topic out of file order", key)
		}
	}

	// Index the topic; the duplicates are idempotent.
	group := "xmodal-backfill"
	dir := t.TempDir()
	ix := startIndexer(t, "indexer", dir, indexerOpts{brokers: b.Plain(), topic: topic, group: group})
	waitDone(t, b, topic, group, 3*time.Minute, ix)
	ix.stop(t)
	checkEndState(t, b, topic, group, w, readIndex(t, "index", dir, w))
}

// isSubsequenceWithRepeats reports whether got is want with some stretches
// repeated (a re-sent batch): every element of got is the next element of want
// or an element already seen.
func isSubsequenceWithRepeats(want, got []string) bool {
	seen := map[string]bool{}
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			seen[g] = true
			i++
			continue
		}
		if !seen[g] {
			return false
		}
	}
	return i == len(want)
}
