package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
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

// yamlKeys lists the dotted keys of every leaf of the YAML the configuration
// marshals to: a walk of its own over what the yaml package sees, independent
// of leaves(), which the reference, the env names and the flags all use.
func yamlKeys(t *testing.T, c *Config) []string {
	t.Helper()
	b, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		t.Fatal(err)
	}
	var keys []string
	var walk func(n *yaml.Node, prefix string)
	walk = func(n *yaml.Node, prefix string) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i].Value, n.Content[i+1]
			if prefix != "" {
				k = prefix + "." + k
			}
			if v.Kind == yaml.MappingNode {
				walk(v, k)
				continue
			}
			keys = append(keys, k)
		}
	}
	walk(root.Content[0], "")
	return keys
}

// TestConfigReferenceListsEveryKey: every key of the configuration file has a
// row in the reference with its env name and flag, and is a flag of the
// commands; the keys come from the YAML encoding, not from the list the
// reference itself is printed from.
func TestConfigReferenceListsEveryKey(t *testing.T) {
	var b strings.Builder
	printReference(&b)
	rows := map[string]string{}
	for _, line := range strings.Split(b.String(), "\n") {
		if cells := strings.Split(line, " | "); len(cells) > 3 && strings.HasPrefix(cells[0], "| `") {
			rows[strings.Trim(cells[0], "| `")] = line
		}
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	configFlags(fs)
	keys := yamlKeys(t, DefaultConfig())
	if len(keys) < 80 {
		t.Fatalf("only %d keys in the YAML encoding of the configuration", len(keys))
	}
	for _, key := range keys {
		env := "XMODAL_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(key))
		flag := strings.NewReplacer(".", "-", "_", "-").Replace(key)
		row, ok := rows[key]
		switch {
		case !ok:
			t.Errorf("reference lacks %s", key)
		case !strings.Contains(row, "`"+env+"`") || !strings.Contains(row, "`--"+flag+"`"):
			t.Errorf("reference row of %s does not name %s and --%s: %s", key, env, flag, row)
		}
		if fs.Lookup(flag) == nil {
			t.Errorf("no flag --%s for %s", flag, key)
		}
		delete(rows, key)
	}
	for key := range rows {
		t.Errorf("reference lists %s, which is not a key of the configuration file", key)
	}
}
