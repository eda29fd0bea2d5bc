package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

func newFlags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	configFlags(fs, scope{})
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

// parseConfig parses the flags (a typed flag refuses a bad value there) and
// loads the configuration.
func parseConfig(args []string, env lookupEnv) (*Config, error) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	configFlags(fs, scope{})
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return loadConfig(fs, env)
}

func envOf(m map[string]string) lookupEnv {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

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
	n := 0
	write := func(s string) string { // one file per case: the table is built before any case runs
		n++
		p := filepath.Join(dir, fmt.Sprintf("c%d.yaml", n))
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
		{"negative byte bound", map[string]string{"XMODAL_INGEST_MAX_INFLIGHT_MB": "-1"}, nil, "ingest.max_inflight_mb"},
		{"bad provider", map[string]string{"XMODAL_ORT_PROVIDER": "tpu"}, nil, "ort.provider"},
		{"bad listen", nil, []string{"--nats-listen", "nowhere"}, "nats.listen"},
		{"bad log level", nil, []string{"--log-level", "loud"}, "log.level"},
		{"bad bool flag", nil, []string{"--kafka-tls=maybe"}, "kafka.tls"},
		{"bad int in yaml", map[string]string{"XMODAL_CONFIG": write("ingest:\n  batch_size: lots\n")}, nil, `ingest.batch_size (line 2): "lots" is not an integer`},
		{"bad duration in yaml", map[string]string{"XMODAL_CONFIG": write("query:\n  timeout: [1, 2]\n")}, nil, "query.timeout (line 2): a list"},
		{"empty int env", map[string]string{"XMODAL_QUERY_CONCURRENCY": ""}, nil, "query.concurrency"},
		{"certificate without key", map[string]string{"XMODAL_NATS_TLS_CERT_FILE": "c.pem"}, nil, "nats.tls_cert_file: set both nats.tls_cert_file and nats.tls_key_file, or neither"},
		{"key without certificate", map[string]string{"XMODAL_REDIS_TLS_KEY_FILE": "k.pem"}, nil, "redis.tls_cert_file: set both"},
		{"user without password", map[string]string{"XMODAL_MILVUS_USERNAME": "u"}, nil, "milvus.username: set both milvus.username and milvus.password"},
		{"negative seed windows", nil, []string{"--image-neardup-seed-windows", "-1"}, "image.neardup_seed_windows"},
		{"negative window block pixels", map[string]string{"XMODAL_BANKS_WINDOW_BLOCK_PIXELS": "-0.5"}, nil, "banks.window_block_pixels: -0.5 is negative"},
		{"window block pixels not a number", nil, []string{"--banks-window-block-pixels", "NaN"}, `"NaN" is not a number (config banks.window_block_pixels)`},
		{"window block pixels in yaml", map[string]string{"XMODAL_CONFIG": write("banks:\n  window_block_pixels: high\n")}, nil, `banks.window_block_pixels (line 2): "high" is not a number`},
		{"whole band inside the PDQ threshold", nil, []string{"--image-neardup-whole-band", "20"}, "image.neardup_whole_band: 20 is not 0"},
		{"whole band below -1", map[string]string{"XMODAL_IMAGE_NEARDUP_WHOLE_BAND": "-2"}, nil, "image.neardup_whole_band"},
		{"window clusters without windows", nil, []string{"--clusters-windows"}, "clusters.windows: links by near-duplicate windows, which image.neardup_windows stores"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig(tc.args, envOf(tc.env))
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
	configFlags(fs, scope{})
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

// TestTypedFlags: flags parse as their types, a bare bool flag is true, a
// repeated list flag appends, and a variable set to "" is set.
func TestTypedFlags(t *testing.T) {
	fs := newFlags(t, "--kafka-tls", "--kafka-brokers", "a:1", "--kafka-brokers", "b:2,c:3", "--ingest-fetch-wait", "2s", "--ingest-batch-size", "9",
		"--banks-window-block-pixels", "0.95")
	c, err := loadConfig(fs, envOf(map[string]string{"XMODAL_HTTP_LISTEN": "", "XMODAL_KAFKA_TLS_CA_FILE": ""}))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Kafka.TLS {
		t.Error("--kafka-tls alone did not turn TLS on")
	}
	if !slices.Equal(c.Kafka.Brokers, []string{"a:1", "b:2", "c:3"}) {
		t.Errorf("repeated list flag: %q", c.Kafka.Brokers)
	}
	if c.Ingest.FetchWait != 2*time.Second || c.Ingest.BatchSize != 9 {
		t.Errorf("typed values: fetch_wait %v batch_size %d", c.Ingest.FetchWait, c.Ingest.BatchSize)
	}
	if c.Banks.WindowBlockPixels != 0.95 {
		t.Errorf("float flag: banks.window_block_pixels %v, want 0.95", c.Banks.WindowBlockPixels)
	}
	if c.HTTP.Listen != "" {
		t.Errorf("XMODAL_HTTP_LISTEN= (set, empty) left http.listen at %q", c.HTTP.Listen)
	}
	if d := DefaultConfig(); d.HTTP.Listen == "" {
		t.Fatal("the default http.listen is empty: the test above shows nothing")
	}
	for name, typ := range map[string]string{"ingest-batch-size": "int", "banks-window-block-pixels": "float", "ingest-fetch-wait": "duration", "kafka-tls": "bool", "kafka-brokers": "strings", "nats-url": "string"} {
		if got := fs.Lookup(name).Value.Type(); got != typ {
			t.Errorf("--%s is a %s flag, want %s", name, got, typ)
		}
	}
}

// TestCommandFlags: each command lists the flags of what it reads, each
// default once; the roles take every key.
func TestCommandFlags(t *testing.T) {
	help := func(args ...string) string {
		root := newRoot()
		var b strings.Builder
		root.SetOut(&b)
		root.SetErr(&b)
		root.SetArgs(append(args, "--help"))
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	q := help("query")
	for _, want := range []string{"--nats-url string", "--log-level string"} {
		if !strings.Contains(q, want) {
			t.Errorf("query --help lacks %s", want)
		}
	}
	for _, other := range []string{"--ingest-batch-size", "--milvus-address", "--redis-addr", "--kafka-brokers"} {
		if strings.Contains(q, other) {
			t.Errorf("query --help lists %s, which query does not read", other)
		}
	}
	r := help("run")
	if !strings.Contains(r, "--ingest-batch-size int") || !strings.Contains(r, "--query-timeout duration") {
		t.Errorf("run --help lacks typed flags:\n%s", r)
	}
	if n := strings.Count(r, "default"); n == 0 || strings.Contains(r, `(default "32"`) || strings.Contains(r, `default ""`) {
		t.Errorf("run --help prints defaults as strings or empty defaults:\n%s", r)
	}
	if strings.Count(r, "(default 32)") != strings.Count(r, "(default 32") {
		t.Error("a default printed twice")
	}
	root := newRoot()
	run, _, err := root.Find([]string{"run"})
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leaves(DefaultConfig()) {
		if run.PersistentFlags().Lookup(l.flag()) == nil {
			t.Errorf("run has no --%s", l.flag())
		}
	}
}

func TestUnknownEnv(t *testing.T) {
	got := unknownEnv([]string{"XMODAL_INGEST_BATCHSIZE=3", "XMODAL_INGEST_BATCH_SIZE=3", "XMODAL_READER_PASSWORD=x", "XMODAL_TEST_KAFKA_PORT=1",
		"XMODAL_CONFIG=a.yaml", "XMODAL_READER_NKEY=U", "HOME=/root", "XMODAL_HTTP_LISTN="})
	if !slices.Equal(got, []string{"XMODAL_HTTP_LISTN", "XMODAL_INGEST_BATCHSIZE"}) {
		t.Errorf("unknown variables %q", got)
	}
}

// TestConfigPrintRedactsSecrets: every password and token prints as
// <redacted> when set.
func TestConfigPrintRedactsSecrets(t *testing.T) {
	env := map[string]string{}
	n := 0
	for _, l := range leaves(DefaultConfig()) {
		if l.secret {
			env[l.env()] = "hunter2-" + l.key
			n++
		}
	}
	env["XMODAL_MILVUS_USERNAME"] = "root" // a Milvus password goes with a user
	if n < 5 {
		t.Fatalf("only %d secret keys (nats, kafka sasl, redis, milvus passwords, http admin token)", n)
	}
	c, err := loadConfig(newFlags(t), envOf(env))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := printConfig(&b, c); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "hunter2") || strings.Count(b.String(), "<redacted>") != n {
		t.Errorf("config print:\n%s", b.String())
	}
	if c.Redis.Password != "hunter2-redis.password" {
		t.Error("printing changed the config itself")
	}
}
