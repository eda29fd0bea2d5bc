package main

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xmodal/xmodal/internal/testutil"
)

// TestDocsModerationCommands runs the shell block of docs/moderation.md
// marked "tested: TestDocsModerationCommands" against `xmodal run` started
// in-process (its NATS server through XMODAL_NATS_URL, its gateway in place
// of 127.0.0.1:8080), with `xmodal` on PATH being this test binary's main:
// the commands and curl calls the docs give work as written.
func TestDocsModerationCommands(t *testing.T) {
	requireORT(t)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl not found on PATH: the moderation docs use it (scripts/deps.sh installs it)")
	}
	root := testutil.MustRepoRoot(t)
	doc, err := os.ReadFile(filepath.Join(root, "docs", "moderation.md"))
	if err != nil {
		t.Fatal(err)
	}
	const marker = "<!-- tested: TestDocsModerationCommands -->"
	_, rest, ok := strings.Cut(string(doc), marker)
	if !ok {
		t.Fatalf("docs/moderation.md has no %q block", marker)
	}
	_, rest, _ = strings.Cut(rest, "```sh\n")
	block, _, ok := strings.Cut(rest, "```")
	if !ok || strings.TrimSpace(block) == "" {
		t.Fatal("the tested block of docs/moderation.md is empty or unterminated")
	}

	cfg := DefaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.NATS.Listen = "127.0.0.1:0"
	cfg.HTTP.Listen = freePort(t)
	cfg.HTTP.AdminToken = "docs-admin-token"
	cfg.Model = filepath.Join(root, "testdata", "models", "demo")
	logs := &syncBuffer{}
	a, err := startApp(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Close()
		if t.Failed() {
			t.Logf("xmodal log:\n%s", logs.text())
		}
	})

	bin := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	wrapper := "#!/bin/sh\nXMODAL_TEST_MAIN=1 exec '" + exe + "' \"$@\"\n"
	if err := os.WriteFile(filepath.Join(bin, "xmodal"), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	script := strings.ReplaceAll(block, "http://127.0.0.1:8080", "http://"+cfg.HTTP.Listen)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"XMODAL_NATS_URL="+a.ns.ClientURL(), "XMODAL_HTTP_ADMIN_TOKEN="+cfg.HTTP.AdminToken, "XMODAL_TEST_MAIN=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the commands of docs/moderation.md failed: %v\n%s", err, out)
	}
	t.Logf("output of the docs block:\n%s", out)
	for _, want := range []string{
		"line 4: malformed signal", "import exit status 1", "4 lines imported (4 added",
		"known-spam", "pdq:1 md5:1 text:1 url:1", // ls
		`"signal_type":"md5"`, `"added":1`, `"banks":[{"name":"known-spam"`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the output lacks %q:\n%s", want, out)
		}
	}
	csv, err := os.ReadFile(filepath.Join(work, "known-spam.csv"))
	if err != nil || !strings.HasPrefix(string(csv), "signal,signal_type,tags,note\n") || strings.Count(string(csv), "\n") != 5 {
		t.Errorf("known-spam.csv: %v\n%s", err, csv)
	}
	if !strings.Contains(logs.text(), "actor=curl") {
		t.Error("the curl change is not in the audit log with its actor")
	}
}
