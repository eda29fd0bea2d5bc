package deploy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xmodal/xmodal/internal/testutil"
)

// configKeys reads the key and env columns of docs/configuration.md, which
// cmd/xmodal's TestConfigurationDocIsUpToDate keeps equal to the code.
func configKeys(t testing.TB) (keys, envs map[string]bool) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.MustRepoRoot(t), "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("^\\| `([a-z0-9_.]+)` \\| `(XMODAL_[A-Z0-9_]+)` \\|")
	keys, envs = map[string]bool{}, map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if m := row.FindStringSubmatch(sc.Text()); m != nil {
			keys[m[1]], envs[m[2]] = true, true
		}
	}
	if len(keys) < 50 {
		t.Fatalf("docs/configuration.md lists only %d keys: is the generated table there?", len(keys))
	}
	envs["XMODAL_CONFIG"] = true
	return keys, envs
}

// The release layout built by scripts/build.sh, once per test process.
var build struct {
	once sync.Once
	dir  string
	err  error
	out  string
}

// dist runs scripts/build.sh (the script the Dockerfile's build stage runs) into a
// temporary directory and returns it.
func dist(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		dir, err := os.MkdirTemp("", "xmodal-dist-")
		if err != nil {
			build.err = err
			return
		}
		build.dir = dir
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(testutil.MustRepoRoot(t), "scripts", "build.sh"), dir)
		cmd.Dir = testutil.MustRepoRoot(t)
		out, err := cmd.CombinedOutput()
		build.out = string(out)
		if err != nil {
			build.err = fmt.Errorf("scripts/build.sh: %v", err)
		}
	})
	if build.err != nil {
		t.Fatalf("%v\n%s", build.err, build.out)
	}
	return build.dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// xmodal runs the built binary with args and env (XMODAL_ORT_LIB set to the
// bundled library), from / so that nothing of the repository is found by accident.
func xmodal(t testing.TB, env []string, args ...string) (string, error) {
	t.Helper()
	d := dist(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(d, "bin", "xmodal"), args...)
	cmd.Dir = "/"
	cmd.Env = append(cleanEnv(), append([]string{"XMODAL_ORT_LIB=" + filepath.Join(d, "lib", "libonnxruntime.so")}, env...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// cleanEnv is the test's environment without XMODAL_* (a developer's settings
// must not leak into what is checked).
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "XMODAL_") {
			out = append(out, kv)
		}
	}
	return out
}
