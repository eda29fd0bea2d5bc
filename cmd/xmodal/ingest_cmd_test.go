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

	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/internal/testutil"
)

// ---- the file source on its own ----

func writeLines(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
}

func fetchAll(t *testing.T, s *fileSource, n int) []*ingest.Message {
	t.Helper()
	msgs, err := s.Fetch(context.Background(), n, 0)
	if err != nil {
		t.Fatal(err)
	}
	return msgs
}

func origins(msgs []*ingest.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Origin[strings.LastIndex(m.Origin, "/")+1:])
	}
	return out
}

func TestFileSourceCheckpoint(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	writeLines(t, filepath.Join(in, "a.jsonl"), `{"id":"a1"}`, ``, `{"id":"a2"}`, `{"id":"a3","delete":true}`, ``)
	writeLines(t, filepath.Join(in, "sub", "b.ndjson"), `{"id":"b1"}`, `not json`, `{"id":"b3"}`) // no final newline
	writeLines(t, filepath.Join(in, "ignored.txt"), `{"id":"x"}`)
	cp := filepath.Join(dir, "cp.json")
	open := func(restart bool) *fileSource {
		t.Helper()
		l, err := listInput(in)
		if err != nil {
			t.Fatal(err)
		}
		s, err := openFileSource(l, cp, "direct /x", restart, 1<<10)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.closeFile)
		return s
	}

	s := open(false)
	first := fetchAll(t, s, 2)
	if got := origins(first); !slices.Equal(got, []string{"a.jsonl line 1", "a.jsonl line 3"}) {
		t.Fatalf("first batch %v", got)
	}
	second := fetchAll(t, s, 3)
	if got := origins(second); !slices.Equal(got, []string{"a.jsonl line 4", "b.ndjson line 1", "b.ndjson line 2"}) {
		t.Fatalf("second batch %v", got)
	}
	if m := second[0]; !m.Tombstone || m.Key != "a3" || m.Value != nil {
		t.Fatalf("line 4 is %+v, want a tombstone for a3", m)
	}
	if m := second[2]; m.Key != "" || string(m.Value) != "not json" {
		t.Fatalf("line b2 is key %q value %q", m.Key, m.Value)
	}
	// Acks out of order: the checkpoint stops at the first line not done.
	second[1].Ack(context.Background())
	first[1].Ack(context.Background())
	if err := s.save(); err != nil {
		t.Fatal(err)
	}
	if s.cp.File != "" || s.cp.Line != 0 || len(s.cp.Done) != 0 {
		t.Fatalf("checkpoint moved past an unacked line: %+v", s.cp)
	}
	first[0].Ack(context.Background())
	s.save()
	if s.cp.File != "a.jsonl" || s.cp.Line != 3 || s.cp.Lines != 2 {
		t.Fatalf("checkpoint %+v, want a.jsonl line 3 (2 lines)", s.cp)
	}
	second[0].Ack(context.Background())
	s.save()
	if s.cp.File != "sub/b.ndjson" || s.cp.Line != 1 || !slices.Equal(s.cp.Done, []string{"a.jsonl"}) {
		t.Fatalf("checkpoint %+v, want a.jsonl done and sub/b.ndjson line 1", s.cp)
	}
	// A crash here: the next run resumes after b1, and b2 (handed out, never
	// done) counts its second attempt; b3 was never handed out.
	s.closeFile()
	s = open(false)
	third := fetchAll(t, s, 10)
	if got := origins(third); !slices.Equal(got, []string{"b.ndjson line 2", "b.ndjson line 3"}) {
		t.Fatalf("after a restart %v", got)
	}
	if third[0].Attempt != 2 || third[1].Attempt != 1 {
		t.Fatalf("attempts %d, %d; want 2, 1", third[0].Attempt, third[1].Attempt)
	}
	if !s.exhausted() {
		t.Fatal("not exhausted after the last line")
	}
	third[0].Ack(context.Background())
	third[1].Ack(context.Background())
	if err := s.finish(); err != nil {
		t.Fatal(err)
	}
	if !s.cp.Complete || s.cp.Lines != 6 || len(s.cp.Tries) != 0 || !slices.Equal(s.cp.Done, []string{"a.jsonl", "sub/b.ndjson"}) {
		t.Fatalf("final checkpoint %+v", s.cp)
	}
	if s.doneBytes.Load() != s.total {
		t.Fatalf("progress %d of %d bytes at the end", s.doneBytes.Load(), s.total)
	}
	if s = open(false); !s.cp.Complete {
		t.Fatal("a rerun does not see the backfill complete")
	}
	// A file added to the directory later is read by the next run, alone.
	writeLines(t, filepath.Join(in, "c.jsonl"), `{"id":"c1"}`, ``)
	s = open(false)
	if s.cp.Complete {
		t.Fatal("a new file in the directory is not picked up")
	}
	if got := origins(fetchAll(t, s, 10)); !slices.Equal(got, []string{"c.jsonl line 1"}) {
		t.Fatalf("after adding c.jsonl: %v", got)
	}
	if s = open(true); s.cp.Complete || s.cp.Lines != 0 {
		t.Fatal("--restart kept the checkpoint")
	}

	t.Run("target-mismatch", func(t *testing.T) {
		l, _ := listInput(in)
		if _, err := openFileSource(l, cp, "kafka topic x at y", false, 1<<10); err == nil || !strings.Contains(err.Error(), "belongs to a backfill") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("file-shrank", func(t *testing.T) {
		p := filepath.Join(dir, "one.jsonl")
		writeLines(t, p, `{"id":"1"}`, `{"id":"2"}`, `{"id":"3"}`, ``)
		cp2 := filepath.Join(dir, "cp2.json")
		l, _ := listInput(p)
		s, _ := openFileSource(l, cp2, "t", false, 1<<10)
		for _, m := range fetchAll(t, s, 2) {
			m.Ack(context.Background())
		}
		s.save()
		s.closeFile()
		writeLines(t, p, `{"id":"1"}`)
		l, _ = listInput(p)
		if _, err := openFileSource(l, cp2, "t", false, 1<<10); err == nil || !strings.Contains(err.Error(), "changed since") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("new-file-sorts-first", func(t *testing.T) {
		d := filepath.Join(dir, "d")
		writeLines(t, filepath.Join(d, "b.jsonl"), `{"id":"b1"}`, `{"id":"b2"}`, `{"id":"b3"}`)
		cp4 := filepath.Join(dir, "cp4.json")
		l, _ := listInput(d)
		s, _ := openFileSource(l, cp4, "t", false, 1<<10)
		for _, m := range fetchAll(t, s, 1) {
			m.Ack(context.Background())
		}
		fetchAll(t, s, 1) // b2 handed out, never done: a crash
		s.closeFile()
		writeLines(t, filepath.Join(d, "a.jsonl"), `{"id":"a1"}`)
		l, _ = listInput(d)
		s, _ = openFileSource(l, cp4, "t", false, 1<<10)
		defer s.closeFile()
		msgs := fetchAll(t, s, 10)
		if got := origins(msgs); !slices.Equal(got, []string{"b.jsonl line 2", "b.jsonl line 3", "a.jsonl line 1"}) {
			t.Fatalf("got %v; want the file in progress resumed first", got)
		}
		if msgs[0].Attempt != 2 || msgs[1].Attempt != 1 || msgs[2].Attempt != 1 {
			t.Fatalf("attempts %d %d %d, want 2 1 1", msgs[0].Attempt, msgs[1].Attempt, msgs[2].Attempt)
		}
	})
	t.Run("long-line", func(t *testing.T) {
		p := filepath.Join(dir, "long.jsonl")
		writeLines(t, p, `{"id":"1"}`, `{"id":"2","text":"`+strings.Repeat("x", 3000)+`"}`)
		l, _ := listInput(p)
		s, _ := openFileSource(l, filepath.Join(dir, "cp3.json"), "t", false, 1<<10)
		defer s.closeFile()
		_, err := s.Fetch(context.Background(), 10, 0)
		if err == nil || !strings.Contains(err.Error(), "long.jsonl line 2 is over 1024 bytes") {
			t.Fatalf("err %v", err)
		}
	})
}

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
		writeLines(t, filepath.Join(dir, name), append(lines, "")...)
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
	for _, want := range []string{"ingest: resuming " + in + " after ", "posts/s", "ETA", "ingest: done: "} {
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
		var d deadLetterLine
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
		m.key, _ = lineKey([]byte(jsonlLine(m))) // a line without a readable id goes without a key
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

// FuzzFileSource reads arbitrary bytes as a backfill file: every non-blank line
// under the limit becomes one message holding the line, and acking them all
// completes the checkpoint; a longer line is an error, never a panic.
func FuzzFileSource(f *testing.F) {
	for _, s := range []string{"", "\n\n", `{"id":"a"}` + "\n" + `{"id":"b","delete":true}`, "x\r\ny\n", `{"id":7}`, "\xff\xfe\n{", strings.Repeat("z", 70)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, "in.jsonl")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		const limit = 64
		l, err := listInput(p)
		if err != nil {
			t.Fatal(err)
		}
		s, err := openFileSource(l, filepath.Join(dir, "cp.json"), "t", false, limit)
		if err != nil {
			t.Fatal(err)
		}
		defer s.closeFile()
		var want []string
		tooLong := false
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimRight(line, "\r")
			if len(line) > limit {
				tooLong = true
				break
			}
			if strings.TrimSpace(line) != "" {
				want = append(want, line)
			}
		}
		var got []*ingest.Message
		for !s.exhausted() {
			msgs, err := s.Fetch(context.Background(), 3, 0)
			if err != nil {
				if !tooLong || !strings.Contains(err.Error(), "is over 64 bytes") {
					t.Fatalf("Fetch: %v (a line over the limit: %v)", err, tooLong)
				}
				return
			}
			for _, m := range msgs {
				m.Ack(context.Background())
			}
			got = append(got, msgs...)
		}
		if tooLong {
			t.Fatalf("a line over %d bytes was read without an error", limit)
		}
		if len(got) != len(want) {
			t.Fatalf("%d messages for %d non-blank lines", len(got), len(want))
		}
		for i, m := range got {
			key, del := lineKey([]byte(want[i]))
			if m.Key != key || m.Tombstone != del || !del && string(m.Value) != want[i] {
				t.Fatalf("message %d is key %q tombstone %v value %q; want the line %q", i, m.Key, m.Tombstone, m.Value, want[i])
			}
		}
		if err := s.finish(); err != nil {
			t.Fatal(err)
		}
		if !s.cp.Complete || s.cp.Lines != int64(len(want)) {
			t.Fatalf("checkpoint %+v after every line, want complete with %d lines", s.cp, len(want))
		}
	})
}
