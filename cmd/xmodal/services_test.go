package main

import (
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"

	"github.com/xmodal/xmodal/encoders"
	"github.com/xmodal/xmodal/internal/testutil"
)

var ortCheck struct {
	once sync.Once
	err  error
}

// requireORT ends the test through testutil.Unavailable (a failure under
// CI=true) when the ONNX Runtime library the xmodal processes need cannot be
// found: it loads the parity model once in the test process, which looks for
// the library the way the children do.
func requireORT(t testing.TB) {
	t.Helper()
	ortCheck.once.Do(func() {
		root, err := testutil.RepoRoot()
		if err != nil {
			ortCheck.err = err
			return
		}
		m, err := encoders.Load(filepath.Join(root, "testdata", "models", "parity"), encoders.Options{Logger: slog.New(slog.DiscardHandler)})
		if err == nil {
			m.Close()
		}
		ortCheck.err = err
	})
	if errors.Is(ortCheck.err, encoders.ErrORTNotFound) {
		testutil.Unavailable(t, "ONNX Runtime library", "%v", ortCheck.err)
	}
}
