package milvus

import (
	"testing"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/sink/conformance"
)

// TestConformance runs the backend suite (sink/conformance), which the embedded
// index runs too, against a real Milvus.
func TestConformance(t *testing.T) {
	conformance.Run(t, func(t *testing.T, dim int) domain.Index {
		opt := testOptions(t, dim)
		opt.CodeBits = conformance.CodeBits
		return openTest(t, opt)
	})
}
