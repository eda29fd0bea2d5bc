// Package fsprobe checks that a directory can be written before a component
// that needs it starts, so that a read-only or full disk is reported at once
// and names the directory (the embedded NATS server, for one, only says after
// ten seconds that it did not start).
package fsprobe

import (
	"fmt"
	"os"
)

// NotWritableError says which directory cannot be written, and why.
type NotWritableError struct {
	Dir string
	Err error // from the operating system (EROFS, EACCES, ENOSPC, ...)
}

func (e *NotWritableError) Error() string {
	return fmt.Sprintf("%s is not writable: %v", e.Dir, e.Err)
}

func (e *NotWritableError) Unwrap() error { return e.Err }

// Writable creates dir when missing (with its parents) and checks that a file
// can be created, written, synced and removed in it. The error is a
// *NotWritableError.
func Writable(dir string) error {
	fail := func(err error) error { return &NotWritableError{Dir: dir, Err: err} }
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	f, err := os.CreateTemp(dir, ".write-probe-*")
	if err != nil {
		return fail(err)
	}
	name := f.Name()
	defer os.Remove(name)
	if _, err := f.Write([]byte("xmodal write probe\n")); err != nil {
		f.Close()
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := os.Remove(name); err != nil {
		return fail(err)
	}
	return nil
}
