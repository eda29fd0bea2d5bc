package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// A write replaces the file whole; a failing fill leaves the old contents
// and no temporary file behind; a missing directory is created.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "state.json")
	for _, tc := range []struct {
		name    string
		fill    func(w io.Writer) error
		want    string
		wantErr bool
	}{
		{"first", func(w io.Writer) error { _, err := io.WriteString(w, "one"); return err }, "one", false},
		{"replace", func(w io.Writer) error { _, err := io.WriteString(w, "two, longer"); return err }, "two, longer", false},
		{"fill fails", func(w io.Writer) error { io.WriteString(w, "partial"); return errors.New("boom") }, "two, longer", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Write(path, tc.fill)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Write: %v, want error %v", err, tc.wantErr)
			}
			b, err := os.ReadFile(path)
			if err != nil || string(b) != tc.want {
				t.Fatalf("file holds %q (%v), want %q", b, err, tc.want)
			}
			ents, _ := os.ReadDir(filepath.Dir(path))
			if len(ents) != 1 {
				t.Fatalf("directory holds %d files, want only the written one: %v", len(ents), ents)
			}
		})
	}
}
