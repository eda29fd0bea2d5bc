package file

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Input is the list of files to read: one file, or the JSON Lines files under a
// directory, by relative path.
type Input struct {
	root  string   // absolute
	dir   bool     // root is a directory
	files []string // relative to root (the base name for a file), sorted
	sizes map[string]int64
}

// Root is the input's absolute path (a file or a directory).
func (in *Input) Root() string { return in.root }

func (in *Input) path(name string) string {
	if in.dir {
		return filepath.Join(in.Root(), name)
	}
	return in.Root()
}

// ListInput lists the input of a backfill: the file from, or the *.jsonl and
// *.ndjson files under the directory from.
func ListInput(from string) (*Input, error) {
	root := absPath(from)
	st, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("ingest --from: %w", err)
	}
	in := &Input{root: root, sizes: map[string]int64{}}
	if !st.IsDir() {
		in.files = []string{filepath.Base(root)}
		in.sizes[in.files[0]] = st.Size()
		return in, nil
	}
	in.dir = true
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !(strings.HasSuffix(d.Name(), ".jsonl") || strings.HasSuffix(d.Name(), ".ndjson")) {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		in.files = append(in.files, rel)
		in.sizes[rel] = info.Size()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("ingest --from %s: %w", from, err)
	}
	if len(in.files) == 0 {
		return nil, fmt.Errorf("ingest --from %s: no *.jsonl or *.ndjson files in the directory", from)
	}
	slices.Sort(in.files)
	return in, nil
}

func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// DefaultCheckpoint is where a backfill of root to target keeps its checkpoint
// unless told: under dataDir/backfill, named after the input, the kind of
// target (to) and a hash of both.
func DefaultCheckpoint(dataDir, root, to, target string) string {
	h := sha256.Sum256([]byte(root + "\x00" + target))
	base := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, filepath.Base(root))
	return filepath.Join(dataDir, "backfill", fmt.Sprintf("%s-%s-%s.json", base, to, hex.EncodeToString(h[:4])))
}
