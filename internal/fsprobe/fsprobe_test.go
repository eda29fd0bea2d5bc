package fsprobe_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/xmodal/xmodal/internal/fsprobe"
	"github.com/xmodal/xmodal/internal/testutil"
)

func TestWritable(t *testing.T) {
	ok := filepath.Join(t.TempDir(), "a", "b")
	if err := fsprobe.Writable(ok); err != nil {
		t.Fatalf("a new directory under a temporary one: %v", err)
	}
	if es, _ := os.ReadDir(ok); len(es) != 0 {
		t.Errorf("the probe left %v behind", es)
	}
	ro := testutil.ReadOnlyDir(t)
	for _, dir := range []string{ro, filepath.Join(ro, "sub")} {
		err := fsprobe.Writable(dir)
		var nw *fsprobe.NotWritableError
		if !errors.As(err, &nw) || nw.Dir != dir {
			t.Errorf("%s: %v, want a NotWritableError naming it", dir, err)
		}
	}
}
