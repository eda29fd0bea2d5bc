package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestReleaseBinaryHasNoTestCode: no xmodal package linked into the release
// binary imports "testing" or an xmodal test helper (internal/testutil), and
// no crash point is compiled in (-tags crashtest only). The "testing" package
// itself is linked by the Milvus Go SDK (milvus/pkg/v2/util/hardware's
// container_test_linux.go is an ordinary file that imports it); that is the
// only importer allowed.
func TestReleaseBinaryHasNoTestCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}\t{{join .Imports \" \"}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, "\t")
		for _, imp := range strings.Fields(imports) {
			switch {
			case imp == "github.com/xmodal/xmodal/internal/testutil":
				t.Errorf("%s imports the test helpers (internal/testutil)", pkg)
			case imp == "testing" && strings.HasPrefix(pkg, "github.com/xmodal/xmodal"):
				t.Errorf("%s imports testing", pkg)
			case imp == "testing" && pkg != "github.com/milvus-io/milvus/pkg/v2/util/hardware":
				t.Errorf("%s (a dependency) imports testing", pkg)
			}
		}
	}
	if crashTestBuild {
		t.Log("this test binary is a crash-test build; the release binary (no tags) has no crash points")
	}
}
