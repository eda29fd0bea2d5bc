package imageprep

import (
	"context"
	"os"
	"testing"
)

func BenchmarkZZScales(b *testing.B) {
	data, _ := os.ReadFile("/work/wt/image/.cache/bench-photos/large/l0000.jpg")
	for _, s := range []int{8, 4, 2, 1} {
		b.Run(string(rune('0'+s)), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				jd, _ := openJPEG(context.Background(), data, 100)
				img, err := jd.decode(context.Background(), s, 0, nil)
				if err != nil {
					b.Fatal(err)
				}
				_ = img
				jd.close()
			}
		})
	}
}
