package testutil

import (
	"errors"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ReadOnlyDir returns an existing directory (holding one file, "existing")
// that the test's process and its children cannot write to: a read-only bind
// mount of a temporary directory when the test runs as root (root writes
// through a 0555 mode), a 0555 directory otherwise. It is undone when the
// test ends. A root without the right to mount gets Unavailable.
func ReadOnlyDir(t T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "readonly")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "existing"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(dir, 0o755) })
	} else {
		if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
			Unavailable(t, "a read-only directory", "running as root, and a bind mount of %s failed: %v (needs CAP_SYS_ADMIN; or run the tests as another user)", dir, err)
			return ""
		}
		t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
		if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, ""); err != nil {
			Unavailable(t, "a read-only directory", "remounting %s read-only failed: %v", dir, err)
			return ""
		}
	}
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, nil, 0o644); err == nil {
		os.Remove(probe)
		t.Fatalf("%s is still writable", dir)
	} else if !errors.Is(err, unix.EROFS) && !errors.Is(err, os.ErrPermission) {
		t.Fatalf("writing into %s: %v, want EROFS or EACCES", dir, err)
	}
	return dir
}
