package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xmodal/xmodal/internal/testutil"
)

// TestBenchRecordRefusesDirtyTree runs scripts/bench-record.sh in a scratch
// git repository: with a modified, a staged or an untracked file (outside
// bench/results/) it refuses, writes nothing and never runs the command; on a
// clean tree it records the command's output under the commit it ran on.
func TestBenchRecordRefusesDirtyTree(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git: %v", err)
	}
	script, err := os.ReadFile(filepath.Join(testutil.MustRepoRoot(t), "scripts", "bench-record.sh"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run := func(name string, args ...string) (string, error) {
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		cmd.Env = append(cleanEnv(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
			"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "XMODAL_ORT_LIB=/nonexistent/libonnxruntime.so")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	must := func(name string, args ...string) string {
		t.Helper()
		out, err := run(name, args...)
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return out
	}
	write := func(rel, s string) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	must("git", "init", "-q")
	write("scripts/bench-record.sh", string(script))
	write("code.go", "package x\n")
	write("bench/results/old.txt", "an earlier result\n")
	must("git", "add", "-A")
	must("git", "commit", "-q", "-m", "code")
	ran := filepath.Join(dir, "ran")
	record := func() (string, error) {
		return run("bash", "scripts/bench-record.sh", "r", "sh", "-c", "touch "+ran+"; echo BenchmarkX 1 2 ns/op")
	}

	for _, tc := range []struct {
		name  string
		dirty func()
	}{
		{"modified", func() { write("code.go", "package x // changed\n") }},
		{"staged", func() { write("code.go", "package x // staged\n"); must("git", "add", "code.go") }},
		{"untracked", func() { write("new.go", "package x\n") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.dirty()
			out, err := record()
			if err == nil || !strings.Contains(out, "refusing to record from a dirty tree") {
				t.Errorf("err %v, output:\n%s\nwant a refusal", err, out)
			}
			if _, err := os.Stat(filepath.Join(dir, "bench", "results", "r.txt")); err == nil {
				t.Error("a result was written from a dirty tree")
			}
			if _, err := os.Stat(ran); err == nil {
				t.Error("the command ran on a dirty tree")
			}
			must("git", "reset", "-q", "--hard")
			must("git", "clean", "-qfd")
		})
	}

	// Clean, except for another result under bench/results/: it records.
	write("bench/results/old.txt", "re-recorded, not committed yet\n")
	head := strings.TrimSpace(must("git", "rev-parse", "HEAD"))
	if out, err := record(); err != nil {
		t.Fatalf("clean tree: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "bench", "results", "r.txt"))
	if err != nil {
		t.Fatal(err)
	}
	res := string(b)
	if !strings.Contains(res, "# commit: "+head+"\n") || !strings.Contains(res, "BenchmarkX 1 2 ns/op") {
		t.Errorf("result does not name commit %s or lacks the output:\n%s", head, res)
	}
}
