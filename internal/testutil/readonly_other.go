//go:build !linux

package testutil

import (
	"os"
	"path/filepath"
)

// ReadOnlyDir returns an existing directory (holding one file, "existing")
// that the test's process cannot write to: a 0555 directory (on Linux a root
// gets a read-only bind mount instead). A root gets Unavailable here.
func ReadOnlyDir(t T) string {
	t.Helper()
	if os.Geteuid() == 0 {
		Unavailable(t, "a read-only directory", "running as root, which writes through a 0555 mode; run the tests as another user")
		return ""
	}
	dir := filepath.Join(t.TempDir(), "readonly")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "existing"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o755) })
	return dir
}
