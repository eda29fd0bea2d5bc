package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/sink/milvus"
)

// TestRolesRefuseBadConfig: an invalid or contradictory configuration, or a role
// without the services it needs, is refused with one message naming the key.
func TestRolesRefuseBadConfig(t *testing.T) {
	dir := t.TempDir()
	file := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o644)
		return p
	}
	milvus := map[string]string{"XMODAL_MILVUS_ADDRESS": "milvus:19530"}
	with := func(m map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	tests := []struct {
		name  string
		role  role
		env   map[string]string
		args  []string
		key   string // the key the message must name
		words string // and a word of the reason
	}{
		{"unknown yaml key", roleRun, map[string]string{"XMODAL_CONFIG": file("u.yaml", "milvus:\n  adress: x:1\n")}, nil, "milvus.adress", "unknown key"},
		{"unknown nested section", roleRun, map[string]string{"XMODAL_CONFIG": file("s.yaml", "milvuss:\n  address: x:1\n")}, nil, "milvuss", "unknown key"},
		{"bad duration", roleRun, map[string]string{"XMODAL_SHUTDOWN_GRACE": "soon"}, nil, "shutdown_grace", "duration"},
		{"bad milvus duration flag", roleRun, nil, []string{"--milvus-call-timeout", "1 minute"}, "milvus.call_timeout", "duration"},
		{"zero grace", roleRun, nil, []string{"--shutdown-grace", "0s"}, "shutdown_grace", "positive"},
		{"milvus address not host:port", roleRun, map[string]string{"XMODAL_MILVUS_ADDRESS": "milvus"}, nil, "milvus.address", "host:port"},
		{"milvus consistency", roleRun, map[string]string{"XMODAL_MILVUS_CONSISTENCY": "eventual"}, nil, "milvus.consistency", "Strong"},
		{"milvus index type", roleRun, nil, []string{"--milvus-index-type", "DISKANN"}, "milvus.index_type", "HNSW"},
		{"milvus nprobe over nlist", roleRun, nil, []string{"--milvus-nlist", "8", "--milvus-nprobe", "16"}, "milvus.nprobe", "nlist"},
		{"milvus collection name", roleRun, nil, []string{"--milvus-collection", "my-posts"}, "milvus.collection", "letter"},
		{"milvus user without password", roleRun, map[string]string{"XMODAL_MILVUS_USERNAME": "root"}, nil, "milvus.username", "password"},
		{"indexer without milvus", roleIndexer, map[string]string{"XMODAL_KAFKA_BROKERS": "kafka:9092"}, nil, "milvus.address", "embedded index"},
		{"serve without milvus", roleServe, map[string]string{"XMODAL_NATS_URL": "nats://nats:4222"}, nil, "milvus.address", "embedded index"},
		{"indexer without nats", roleIndexer, with(milvus, "XMODAL_KAFKA_BROKERS", "k:9092"), nil, "nats.url", "JetStream"},
		{"serve without nats", roleServe, milvus, nil, "nats.url", "NATS"},
		{"split role without http", roleServe, with(milvus, "XMODAL_NATS_URL", "nats://n:4222"), []string{"--http-listen", ""}, "http.listen", "/readyz"},
		{"split role with embedded-server config", roleIndexer, with(milvus, "XMODAL_NATS_URL", "nats://n:4222", "XMODAL_NATS_SERVER_CONFIG", "deploy/nats/xmodal.conf"), nil, "nats.server_config", "embedded"},
		{"indexer following the alias", roleIndexer, with(milvus, "XMODAL_KAFKA_BROKERS", "k:9092", "XMODAL_NATS_URL", "nats://n:4222", "XMODAL_MILVUS_FOLLOW_ALIAS", "true"), nil, "milvus.follow_alias", "serve"},
		{"run following the alias", roleRun, map[string]string{"XMODAL_MILVUS_FOLLOW_ALIAS": "true"}, nil, "milvus.follow_alias", "serve"},
		{"follow_alias not a bool", roleServe, map[string]string{"XMODAL_MILVUS_FOLLOW_ALIAS": "sometimes"}, nil, "milvus.follow_alias", "true or false"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseConfig(tc.args, envOf(tc.env))
			if err == nil {
				err = cfg.validateRole(tc.role)
			}
			if err == nil {
				t.Fatalf("accepted; want a refusal naming %s", tc.key)
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.key) || !strings.Contains(msg, tc.words) || strings.Contains(msg, "\n") {
				t.Fatalf("err = %q; want one line naming %q and saying %q", msg, tc.key, tc.words)
			}
		})
	}
}

func TestRolesAcceptTheirServices(t *testing.T) {
	ok := []struct {
		role role
		env  map[string]string
	}{
		{roleRun, nil},
		{roleRun, map[string]string{"XMODAL_MILVUS_ADDRESS": "127.0.0.1:19530"}},
		{roleIndexer, map[string]string{"XMODAL_MILVUS_ADDRESS": "m:19530", "XMODAL_KAFKA_BROKERS": "k:9092", "XMODAL_NATS_URL": "nats://n:4222"}},
		{roleIndexer, map[string]string{"XMODAL_MILVUS_ADDRESS": "m:19530", "XMODAL_NATS_URL": "nats://n:4222"}},
		{roleServe, map[string]string{"XMODAL_MILVUS_ADDRESS": "m:19530", "XMODAL_NATS_URL": "nats://n:4222", "XMODAL_MILVUS_FOLLOW_ALIAS": "true"}},
		// Window clusters on Milvus (the shared clusters sign with the windows).
		{roleIndexer, map[string]string{"XMODAL_MILVUS_ADDRESS": "m:19530", "XMODAL_NATS_URL": "nats://n:4222",
			"XMODAL_IMAGE_NEARDUP_WINDOWS": "true", "XMODAL_CLUSTERS_WINDOWS": "true"}},
	}
	for _, tc := range ok {
		cfg, err := loadConfig(newFlags(t), envOf(tc.env))
		if err == nil {
			err = cfg.validateRole(tc.role)
		}
		if err != nil {
			t.Errorf("%s %v: %v", tc.role, tc.env, err)
		}
	}
	// The defaults are sink/milvus's: the reference shows what Milvus gets.
	c := DefaultConfig()
	c.Milvus.Address = "127.0.0.1:19530"
	o := c.milvusOptions(roleServe, 8, "m@1", 64, nil)
	if o.FloatIndex != "IVF_FLAT" || o.NList != 128 || o.Consistency != "Bounded" || o.FollowAlias {
		t.Errorf("milvus options from defaults: %+v", o)
	}
	if err := o.Validate(); err != nil {
		t.Errorf("default milvus options do not validate: %v", err)
	}
}

// TestRoleRefusalIsOneLine runs the binary: a role without its services exits 1
// with one line on stderr naming the key, before it loads anything.
func TestRoleRefusalIsOneLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		key  string
	}{
		{[]string{"indexer", "--kafka-brokers", "127.0.0.1:9"}, "milvus.address"},
		{[]string{"serve", "--milvus-address", "127.0.0.1:9"}, "nats.url"},
		{[]string{"run", "--milvus-retries", "-1"}, "milvus.retries"},
	} {
		cmd := exec.Command(os.Args[0], tc.args...)
		cmd.Env = append(os.Environ(), "XMODAL_TEST_MAIN=1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("%v: exit %v, want 1", tc.args, err)
		}
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "xmodal: config "+tc.key+":") {
			t.Errorf("%v: stderr %q; want one line 'xmodal: config %s: ...'", tc.args, stderr.String(), tc.key)
		}
	}
}

// TestMilvusUnreachableNamesTheKey: a Milvus that does not answer stops the
// start within milvus.start_timeout, naming milvus.address.
func TestMilvusUnreachableNamesTheKey(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "run", "--data-dir", dir, "--nats-listen", freePort(t), "--http-listen", "",
		"--milvus-address", "127.0.0.1:1", "--milvus-dial-timeout", "300ms", "--milvus-start-timeout", "1s", "--log-level", "error")
	cmd.Dir = testutil.MustRepoRoot(t)
	cmd.Env = append(os.Environ(), "XMODAL_TEST_MAIN=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	if err == nil {
		t.Fatal("started without Milvus")
	}
	if took := time.Since(start); took > 60*time.Second {
		t.Errorf("took %v to give up", took)
	}
	last := strings.TrimSpace(stderr.String())
	if i := strings.LastIndex(last, "\n"); i >= 0 {
		last = last[i+1:]
	}
	if !strings.Contains(last, "config milvus.address") || !strings.Contains(last, "127.0.0.1:1") {
		t.Errorf("last line %q; want one naming milvus.address and the address", last)
	}
}

// A failed milvus.Open names the configuration key by the error's type: an
// error from the server whose text mentions an alias is not a follow_alias
// problem.
func TestMilvusOpenErrorByType(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string // prefix; "" when passed on as it is
	}{
		{"schema", &milvus.SchemaError{Collection: "c", Diffs: []string{"dim"}}, "config model / milvus.collection:"},
		{"unreachable", fmt.Errorf("%w: no answer", milvus.ErrUnreachable), "config milvus.address:"},
		{"alias serves another model", fmt.Errorf("milvus: %w", &milvus.AliasError{Alias: "xmodal", Collection: "xmodal_m1"}), "config milvus.follow_alias / model:"},
		{"a collection, not an alias", &milvus.AliasError{Alias: "xmodal", Collection: "xmodal", NotAlias: true}, "config milvus.collection:"},
		{"server error about an alias", errors.New("milvus: create alias xmodal: permission denied"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := milvusOpenError(tt.err, "m1", 512, 256)
			if !errors.Is(got, tt.err) {
				t.Fatalf("%v does not wrap %v", got, tt.err)
			}
			if tt.want == "" && got != tt.err {
				t.Fatalf("got %q, want the error passed on as it is", got)
			}
			if tt.want != "" && !strings.HasPrefix(got.Error(), tt.want) {
				t.Fatalf("got %q, want prefix %q", got, tt.want)
			}
		})
	}
}
