package hash

import (
	"fmt"
	"testing"

	"github.com/xmodal/xmodal/domain"
)

// BenchmarkCode measures coding one 512-dimensional vector.
func BenchmarkCode(b *testing.B) {
	for _, bits := range []int{64, 256} {
		c, err := NewSimHash("m@1", 512, bits, 1)
		if err != nil {
			b.Fatal(err)
		}
		v := make([]float32, 512)
		for i := range v {
			v[i] = float32(i%7) - 3
		}
		b.Run(fmt.Sprintf("bits=%d", bits), func(b *testing.B) {
			dst := make([]byte, 0, bits/8)
			for b.Loop() {
				dst = c.AppendCode(dst[:0], v, domain.ModalityText)
			}
		})
	}
}
