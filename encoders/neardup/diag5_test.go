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

func TestDiagFail(t *testing.T) {
	a, _ := filepath.Glob("../../testdata/neardup/photos/*.jpg")
	b, _ := filepath.Glob("../../testdata/pdq/images/labelme-subset/*.jpg")
	photos := append(a, b...)
	h := NewHasher(Options{PDQMaxSide: -1})
	ix := NewIndex()
	var sigs [][]RegionHash
	for i, p := range photos {
		data, _ := os.ReadFile(p)
		img, _, _ := pdq.Decode(data)
		sig, _ := h.Signatures(img)
		sigs = append(sigs, sig)
		ix.Add(int64(i), img.Bounds().Dx(), img.Bounds().Dy(), sig)
	}
	for _, k := range [][]reposts.Kind{{reposts.JPEG30}, {reposts.Down25}, {reposts.Crop75, reposts.JPEG30}, {reposts.Crop90, reposts.Watermark}, {reposts.Down25, reposts.JPEG30}, {reposts.Caption, reposts.JPEG30}} {
		for i, p := range photos {
			data, _ := os.ReadFile(p)
			img, _, _ := pdq.Decode(data)
			rp, _ := reposts.Apply(img, k, rand.New(rand.NewPCG(uint64(i), 5)))
			q, _ := h.Query(rp.Image)
			ms := ix.Search(q, SearchOptions{})
			if len(ms) > 0 && ms[0].ID == int64(i) {
				continue
			}
			// Why: best whole distance and best window distance to own.
			bw, bwin, nwin := 256, 256, 0
			for _, qh := range q.Hashes {
				for _, s := range sigs[i] {
					if qh.Kind != s.Kind {
						continue
					}
					d := pdq.Distance(qh.Hash, s.Hash)
					if s.Kind == Whole {
						if qh.Rect == 0 {
							bw = min(bw, d)
						}
					} else {
						bwin = min(bwin, d)
						if d <= WindowDistance {
							nwin++
						}
					}
				}
			}
			fmt.Printf("%-20s %-12s q%3d(own %3d) whole %3d win %3d n %d rects %v matches %d\n", reposts.Name(k), filepath.Base(p), q.Hashes[0].Quality, sigs[i][0].Quality, bw, bwin, nwin, q.Rects[1:], len(ms))
		}
	}
}
