package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func newFlags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	configFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "x.yaml")
	os.WriteFile(file, []byte("ingest:\n  batch_size: 8\n  fetch_wait: 250ms\nquery:\n  concurrency: 3\n"), 0o644)
	env := envOf(map[string]string{"XMODAL_CONFIG": file, "XMODAL_QUERY_CONCURRENCY": "5", "XMODAL_INGEST_ALLOW_PRIVATE": "127.0.0.0/8, ::1/128"})
	c, err := loadConfig(newFlags(t, "--query-concurrency", "7"), env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Ingest.BatchSize != 8 || c.Ingest.FetchWait != 250*time.Millisecond {
		t.Errorf("file values not applied: %+v", c.Ingest)
	}
	if c.Query.Concurrency != 7 {
		t.Errorf("flag should win over env and file: concurrency %d", c.Query.Concurrency)
	}
	if len(c.Ingest.AllowPrivate) != 2 || c.Ingest.AllowPrivate[1] != "::1/128" {
		t.Errorf("list from env: %q", c.Ingest.AllowPrivate)
	}
	if c.NATS.Listen != "127.0.0.1:4333" {
		t.Errorf("default lost: %q", c.NATS.Listen)
	}
}

func TestConfigRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "c.yaml")
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		wants string
	}{
		{"unknown yaml key", map[string]string{"XMODAL_CONFIG": write("ingest:\n  batchsize: 3\n")}, nil, "batchsize"},
		{"bad duration in env", map[string]string{"XMODAL_INGEST_FETCH_WAIT": "soon"}, nil, "ingest.fetch_wait"},
		{"bad int flag", nil, []string{"--ingest-batch-size", "many"}, "ingest.batch_size"},
		{"out of range", nil, []string{"--ingest-batch-size", "0"}, "ingest.batch_size"},
		{"bad provider", map[string]string{"XMODAL_ORT_PROVIDER": "tpu"}, nil, "ort.provider"},
		{"bad listen", nil, []string{"--nats-listen", "nowhere"}, "nats.listen"},
		{"bad log level", nil, []string{"--log-level", "loud"}, "log.level"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig(newFlags(t, tc.args...), envOf(tc.env))
			if err == nil || !strings.Contains(err.Error(), tc.wants) {
				t.Fatalf("err = %v; want one naming %q", err, tc.wants)
			}
		})
	}
}

func TestConfigReferenceListsEveryKey(t *testing.T) {
	var b strings.Builder
	printReference(&b)
	for _, l := range leaves(DefaultConfig()) {
		if !strings.Contains(b.String(), "`"+l.key+"`") || !strings.Contains(b.String(), l.env()) {
			t.Errorf("reference lacks %s", l.key)
		}
	}
}
