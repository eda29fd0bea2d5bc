package embedded

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/sink/conformance"
)

// TestConformance runs the backend suite (sink/conformance) that the Milvus index
// runs too.
func TestConformance(t *testing.T) {
	conformance.Run(t, func(t *testing.T, dim int) domain.Index {
		ix, err := Open(context.Background(), Options{Path: filepath.Join(t.TempDir(), "ix.db"), Dim: dim, ModelVersion: "test@1"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ix.Close() })
		return ix
	})
}
