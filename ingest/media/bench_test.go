package media

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkFetch50KB fetches a ~50 KB PNG from a local server over a kept-alive
// connection: the fetcher's own overhead (checks, sniffing, copying) plus
// loopback HTTP.
func BenchmarkFetch50KB(b *testing.B) {
	img := testPNG(b, 112, 112)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(img)
	}))
	defer srv.Close()
	for _, bc := range []struct {
		name     string
		parallel bool
	}{{"serial", false}, {"parallel", true}} {
		b.Run(bc.name, func(b *testing.B) {
			f, _ := newTestFetcher(b, Config{AllowPrivate: []string{"127.0.0.1"}}, nil)
			ctx := context.Background()
			b.SetBytes(int64(len(img)))
			b.ReportAllocs()
			b.ResetTimer()
			if bc.parallel {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := f.Fetch(ctx, srv.URL); err != nil {
							b.Error(err)
							return
						}
					}
				})
			} else {
				for b.Loop() {
					if _, err := f.Fetch(ctx, srv.URL); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fetches/s")
		})
	}
}
