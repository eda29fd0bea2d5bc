// Package testutil holds small helpers shared by tests of several packages.
// It does not import package testing (its helpers take the TB interface), so
// that a helper package a command also uses (internal/redisserver, which
// `xmodal loadgen` runs) does not link testing into the release binary.
package testutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// TB is the part of testing.TB that Unavailable uses; *testing.T and
// *testing.B satisfy it.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
}

// T is the part of testing.TB the other helpers use.
type T interface {
	TB
	Fatal(args ...any)
	Logf(format string, args ...any)
	TempDir() string
	Cleanup(func())
}

// EnvCI is the variable that marks a CI run: .ci/run sets CI=true, as most CI
// systems do.
const EnvCI = "CI"

// InCI reports whether the tests run in CI (CI set to a true value).
func InCI() bool {
	v, err := strconv.ParseBool(os.Getenv(EnvCI))
	return err == nil && v
}

// Unavailable ends a test that cannot run because a service or library it
// needs is missing or did not start (the ONNX Runtime library, redis-server,
// Kafka, Milvus, Chromium, python3 for the tools the tests install). The
// message names the service and says how to get it.
//
// Under CI=true the test fails: a CI run must not pass by skipping what it was
// meant to check. Elsewhere the test is skipped, so that a machine without,
// say, Kafka still runs everything else. This is the one place that rule
// lives; tests never call t.Skip for a missing service themselves.
func Unavailable(tb TB, service, format string, args ...any) {
	tb.Helper()
	msg := service + " unavailable: " + fmt.Sprintf(format, args...)
	if InCI() {
		tb.Fatalf("%s\n(%s=true: a missing service fails the run instead of skipping the test)", msg, EnvCI)
		return
	}
	tb.Skipf("%s\n(skipped outside CI; %s=true makes this a failure)", msg, EnvCI)
}

// MustRepoRoot is RepoRoot for a test: it fails the test when there is none.
func MustRepoRoot(t TB) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatalf("repository root: %v", err)
	}
	return root
}

// RepoRoot returns the nearest directory above the working directory that holds
// go.mod: the repository root, where the scripts that start test services live.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// EnvInt returns the integer in environment variable name (underscores
// allowed as digit separators: 1_000_000), or def when it is unset; a value
// that is not an integer fails the test naming the variable. Benchmarks
// size their runs by it.
func EnvInt(t TB, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(strings.ReplaceAll(v, "_", ""))
	if err != nil {
		t.Fatalf("%s=%q is not an integer", name, v)
	}
	return n
}
