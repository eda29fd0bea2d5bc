//go:build neardupexp

package neardup

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
)

func TestDiagPer(t *testing.T) {
	halfScaleSpace = false
	a, _ := filepath.Glob("../../testdata/neardup/photos/*.jpg")
	b, _ := filepath.Glob("../../testdata/pdq/images/labelme-subset/*.jpg")
	photos := append(a, b...)
	for _, k := range []reposts.Kind{reposts.Crop75} {
		for i, p := range photos {
			data, _ := os.ReadFile(p)
			img, _, _ := pdq.Decode(data)
			h := NewHasher(Options{PDQMaxSide: -1})
			sig, _ := h.Signatures(img)
			rp, _ := reposts.Apply(img, []reposts.Kind{k}, rand.New(rand.NewPCG(uint64(i), 3)))
			q, _ := h.Query(rp.Image)
			nq := 0
			best := 256
			raw := 0
			for _, qh := range q.Hashes {
				if qh.Kind != Window {
					continue
				}
				nq++
				for _, s := range sig[1:] {
					d := pdq.Distance(qh.Hash, s.Hash)
					best = min(best, d)
					if d <= WindowDistance {
						raw++
					}
				}
			}
			ix := NewIndex()
			ix.Add(0, img.Bounds().Dx(), img.Bounds().Dy(), sig)
			ms := ix.Search(q, SearchOptions{})
			m := "-"
			if len(ms) > 0 {
				m = fmt.Sprintf("%v d=%d wins=%d shown=%.2f,%.2f-%.2f,%.2f", ms[0].Kind, ms[0].Distance, ms[0].Windows, ms[0].Shown.X0, ms[0].Shown.Y0, ms[0].Shown.X1, ms[0].Shown.Y1)
			}
			sh := rp.Shown
			fmt.Printf("%-12s idxwin %2d qwin %3d raw %3d best %3d  %s  true %v\n", filepath.Base(p), len(sig)-1, nq, raw, best, m, sh)
		}
	}
}
