package deploy

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/xmodal/xmodal/internal/testutil"
)

func loadCompose(t *testing.T, file string) (*types.Project, error) {
	t.Helper()
	dir := filepath.Join(testutil.MustRepoRoot(t), "deploy")
	return loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, file)}},
		Environment: types.Mapping{},
	}, func(o *loader.Options) {
		o.SetProjectName("xmodal", true)
		o.Profiles = []string{"monitoring"}
	})
}

// TestComposeFile loads deploy/compose.yaml with compose-go (the compose
// specification's schema: unknown fields and wrong types fail) and checks the
// stack: every real dependency, the two roles, the sample loader.
func TestComposeFile(t *testing.T) {
	p, err := loadCompose(t, "compose.yaml")
	if err != nil {
		t.Fatalf("compose-go refuses deploy/compose.yaml: %v", err)
	}
	_, envs := configKeys(t)
	for _, name := range []string{"kafka", "kafka-init", "nats", "etcd", "minio", "milvus", "redis", "indexer", "query", "load-samples", "prometheus", "grafana"} {
		if _, ok := p.Services[name]; !ok {
			t.Errorf("no service %s", name)
		}
	}
	env := func(svc, k string) string {
		if v := p.Services[svc].Environment[k]; v != nil {
			return *v
		}
		return ""
	}
	// Kafka in KRaft mode (no ZooKeeper anywhere).
	if !strings.Contains(env("kafka", "KAFKA_PROCESS_ROLES"), "controller") || env("kafka", "KAFKA_CONTROLLER_QUORUM_VOTERS") == "" {
		t.Error("kafka is not a KRaft broker+controller")
	}
	for name, s := range p.Services {
		if strings.Contains(s.Image, "zookeeper") {
			t.Errorf("service %s runs ZooKeeper", name)
		}
	}
	if !slices.Contains(p.Services["nats"].Command, "--jetstream") {
		t.Errorf("nats command %v lacks --jetstream", p.Services["nats"].Command)
	}
	for _, dep := range []string{"etcd", "minio"} {
		if _, ok := p.Services["milvus"].DependsOn[dep]; !ok {
			t.Errorf("milvus does not depend on %s", dep)
		}
	}
	roles := map[string]string{"indexer": "indexer", "query": "serve", "load-samples": "ingest"}
	for svc, role := range roles {
		s := p.Services[svc]
		if len(s.Command) == 0 || s.Command[0] != role {
			t.Errorf("service %s runs %v, want xmodal %s", svc, s.Command, role)
		}
		if s.Build == nil || s.Build.Dockerfile != "deploy/Dockerfile" {
			t.Errorf("service %s does not build deploy/Dockerfile", svc)
		} else if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
			t.Errorf("service %s: %v", svc, err)
		}
		var runEnv []string
		for k, v := range s.Environment {
			if !envs[k] {
				t.Errorf("service %s: env %s is not a config env name (docs/configuration.md)", svc, k)
			}
			if v != nil {
				runEnv = append(runEnv, k+"="+*v)
			}
		}
		if role == "ingest" {
			if !slices.Contains(s.Command, "kafka") || !slices.Contains(s.Command, "/opt/xmodal/share/samples/posts.jsonl") {
				t.Errorf("load-samples runs %v, want xmodal ingest of the bundled samples --to kafka", s.Command)
			}
			if _, ok := s.DependsOn["kafka-init"]; !ok {
				t.Error("load-samples does not wait for the posts topic")
			}
			continue
		}
		// The binary accepts the service's configuration for its role.
		if out, err := xmodal(t, runEnv, role, "--check"); err != nil {
			t.Errorf("service %s: xmodal %s --check: %v\n%s", svc, role, err, out)
		}
		grace := 20 * time.Second
		if g := env(svc, "XMODAL_SHUTDOWN_GRACE"); g != "" {
			grace = mustDuration(t, g)
		}
		if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) < grace+5*time.Second {
			t.Errorf("service %s: stop_grace_period %v is not above shutdown_grace %v", svc, s.StopGracePeriod, grace)
		}
	}
	if env("indexer", "XMODAL_KAFKA_BROKERS") == "" || env("indexer", "XMODAL_MILVUS_ADDRESS") == "" || env("indexer", "XMODAL_NATS_URL") == "" {
		t.Error("the indexer lacks Kafka or Milvus")
	}
	if env("query", "XMODAL_NATS_URL") == "" || env("query", "XMODAL_MILVUS_ADDRESS") == "" || env("query", "XMODAL_REDIS_ADDR") == "" {
		t.Error("the query role lacks NATS, Milvus or Redis")
	}
	if env("indexer", "XMODAL_KAFKA_TOPIC") != env("load-samples", "XMODAL_KAFKA_TOPIC") ||
		!slices.Contains(p.Services["kafka-init"].Command, "--topic="+env("indexer", "XMODAL_KAFKA_TOPIC")) {
		t.Error("the loader, kafka-init and the indexer do not agree on the topic")
	}
	if c, ok := p.Configs["grafana-dashboard"]; !ok {
		t.Error("no grafana-dashboard config")
	} else if _, err := os.Stat(c.File); err != nil {
		t.Errorf("grafana-dashboard: %v", err)
	}
}

// TestComposeRefusesUnknownFields: the check above would catch a misspelt key.
func TestComposeRefusesUnknownFields(t *testing.T) {
	dir := filepath.Join(testutil.MustRepoRoot(t), "deploy")
	f := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(f, []byte("services:\n  x:\n    image: redis\n    stop_grace: 30s\n"), 0o644)
	_, err := loader.LoadWithContext(context.Background(), types.ConfigDetails{WorkingDir: dir,
		ConfigFiles: []types.ConfigFile{{Filename: f}}, Environment: types.Mapping{}},
		func(o *loader.Options) { o.SetProjectName("bad", true) })
	if err == nil || !strings.Contains(err.Error(), "stop_grace") {
		t.Fatalf("a misspelt field was accepted: %v", err)
	}
}
