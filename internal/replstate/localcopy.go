package replstate

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// LocalCopy keeps a State's local copy in bbolt files, in a directory of
// this process's own (the clusters and the near-duplicate windows of a
// Milvus deployment keep theirs so): Open makes a file from a snapshot (or
// an empty one), Snapshot copies a file as of a read transaction. The copy
// is rebuilt from the stream at every start, so its files are not synced.
type LocalCopy struct {
	dir string
	n   int // files made, for their names
}

// NewLocalCopy makes a fresh directory named prefix-* under parent, first
// removing the ones crashed processes left there (older than a minute,
// with no file a process holds open: bbolt locks them).
func NewLocalCopy(parent, prefix string, log *slog.Logger) (*LocalCopy, error) {
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	removeStale(parent, prefix, log)
	dir, err := os.MkdirTemp(parent, prefix+"-")
	if err != nil {
		return nil, err
	}
	return &LocalCopy{dir: dir}, nil
}

func removeStale(parent, prefix string, log *slog.Logger) {
	ms, _ := filepath.Glob(filepath.Join(parent, prefix+"-*"))
	for _, d := range ms {
		if fi, err := os.Stat(d); err != nil || time.Since(fi.ModTime()) < time.Minute {
			continue
		}
		fs, _ := filepath.Glob(filepath.Join(d, "*.db"))
		stale := true
		for _, f := range fs {
			db, err := bolt.Open(f, 0o600, &bolt.Options{Timeout: 10 * time.Millisecond, ReadOnly: true})
			if err != nil {
				stale = false
				continue
			}
			db.Close()
		}
		if stale {
			if err := os.RemoveAll(d); err == nil && log != nil {
				log.Info("replstate: removed a stale local copy", "dir", d)
			}
		}
	}
}

// Open returns a new file holding the snapshot r (a bbolt file), or an
// empty one when r is nil.
func (c *LocalCopy) Open(r io.Reader) (*bolt.DB, error) {
	c.n++
	path := filepath.Join(c.dir, fmt.Sprintf("copy-%d.db", c.n))
	if r != nil {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("restore: %w", err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: true, NoFreelistSync: true})
	if err != nil {
		os.Remove(path)
		return nil, err
	}
	return db, nil
}

// Discard closes db (waiting for a snapshot still reading it) and removes
// its file.
func (c *LocalCopy) Discard(db *bolt.DB) {
	p := db.Path()
	db.Close()
	os.Remove(p)
}

// Snapshot copies db as of now into a file beside it and returns the
// function that writes that copy (a State's Snapshot; the follower may
// never call it: a copy left so is removed by the next snapshot or by
// Remove). Call it with db open (the caller guards against a Restore
// swapping it).
func (c *LocalCopy) Snapshot(db *bolt.DB) (func(io.Writer) error, error) {
	old, _ := filepath.Glob(filepath.Join(c.dir, "snap-*.db"))
	for _, f := range old {
		os.Remove(f)
	}
	c.n++
	path := filepath.Join(c.dir, fmt.Sprintf("snap-%d.db", c.n))
	if err := db.View(func(tx *bolt.Tx) error { return tx.CopyFile(path, 0o600) }); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return func(w io.Writer) error {
		defer os.Remove(path)
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(w, f)
		return err
	}, nil
}

// Remove removes the directory and every file in it (close the files
// first).
func (c *LocalCopy) Remove() { os.RemoveAll(c.dir) }
