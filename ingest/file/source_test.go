package file

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xmodal/xmodal/ingest"
)

func writeLines(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
}

func fetchAll(t *testing.T, s *Source, n int) []*ingest.Message {
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
	open := func(restart bool) *Source {
		t.Helper()
		l, err := ListInput(in)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Open(l, cp, "direct /x", restart, 1<<10)
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
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	if s.cp.File != "" || s.cp.Line != 0 || len(s.cp.Done) != 0 {
		t.Fatalf("checkpoint moved past an unacked line: %+v", s.cp)
	}
	first[0].Ack(context.Background())
	s.Save()
	if s.cp.File != "a.jsonl" || s.cp.Line != 3 || s.cp.Lines != 2 {
		t.Fatalf("checkpoint %+v, want a.jsonl line 3 (2 lines)", s.cp)
	}
	second[0].Ack(context.Background())
	s.Save()
	if s.cp.File != "sub/b.ndjson" || s.cp.Line != 1 || !slices.Equal(s.cp.Done, []string{"a.jsonl"}) {
		t.Fatalf("checkpoint %+v, want a.jsonl done and sub/b.ndjson line 1", s.cp)
	}
	// A crash here: the next run resumes after b1, and b2 (handed out, never
	// done) counts its second attempt; b3 was never handed out.
	s.Close()
	s = open(false)
	third := fetchAll(t, s, 10)
	if got := origins(third); !slices.Equal(got, []string{"b.ndjson line 2", "b.ndjson line 3"}) {
		t.Fatalf("after a restart %v", got)
	}
	if third[0].Attempt != 2 || third[1].Attempt != 1 {
		t.Fatalf("attempts %d, %d; want 2, 1", third[0].Attempt, third[1].Attempt)
	}
	if !s.Exhausted() {
		t.Fatal("not exhausted after the last line")
	}
	third[0].Ack(context.Background())
	third[1].Ack(context.Background())
	if err := s.Finish(); err != nil {
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
		l, _ := ListInput(in)
		if _, err := Open(l, cp, "kafka topic x at y", false, 1<<10); err == nil || !strings.Contains(err.Error(), "belongs to a backfill") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("file-shrank", func(t *testing.T) {
		p := filepath.Join(dir, "one.jsonl")
		writeLines(t, p, `{"id":"1"}`, `{"id":"2"}`, `{"id":"3"}`, ``)
		cp2 := filepath.Join(dir, "cp2.json")
		l, _ := ListInput(p)
		s, _ := Open(l, cp2, "t", false, 1<<10)
		for _, m := range fetchAll(t, s, 2) {
			m.Ack(context.Background())
		}
		s.Save()
		s.Close()
		writeLines(t, p, `{"id":"1"}`)
		l, _ = ListInput(p)
		if _, err := Open(l, cp2, "t", false, 1<<10); err == nil || !strings.Contains(err.Error(), "changed since") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("new-file-sorts-first", func(t *testing.T) {
		d := filepath.Join(dir, "d")
		writeLines(t, filepath.Join(d, "b.jsonl"), `{"id":"b1"}`, `{"id":"b2"}`, `{"id":"b3"}`)
		cp4 := filepath.Join(dir, "cp4.json")
		l, _ := ListInput(d)
		s, _ := Open(l, cp4, "t", false, 1<<10)
		for _, m := range fetchAll(t, s, 1) {
			m.Ack(context.Background())
		}
		fetchAll(t, s, 1) // b2 handed out, never done: a crash
		s.Close()
		writeLines(t, filepath.Join(d, "a.jsonl"), `{"id":"a1"}`)
		l, _ = ListInput(d)
		s, _ = Open(l, cp4, "t", false, 1<<10)
		defer s.Close()
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
		l, _ := ListInput(p)
		s, _ := Open(l, filepath.Join(dir, "cp3.json"), "t", false, 1<<10)
		defer s.Close()
		_, err := s.Fetch(context.Background(), 10, 0)
		if err == nil || !strings.Contains(err.Error(), "long.jsonl line 2 is over 1024 bytes") {
			t.Fatalf("err %v", err)
		}
	})
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
		l, err := ListInput(p)
		if err != nil {
			t.Fatal(err)
		}
		s, err := Open(l, filepath.Join(dir, "cp.json"), "t", false, limit)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
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
		for !s.Exhausted() {
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
			key, del := LineKey([]byte(want[i]))
			if m.Key != key || m.Tombstone != del || !del && string(m.Value) != want[i] {
				t.Fatalf("message %d is key %q tombstone %v value %q; want the line %q", i, m.Key, m.Tombstone, m.Value, want[i])
			}
		}
		if err := s.Finish(); err != nil {
			t.Fatal(err)
		}
		if !s.cp.Complete || s.cp.Lines != int64(len(want)) {
			t.Fatalf("checkpoint %+v after every line, want complete with %d lines", s.cp, len(want))
		}
	})
}
