// Package testutil holds small helpers shared by tests of several packages.
package testutil

import (
	"errors"
	"os"
	"path/filepath"
)

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
