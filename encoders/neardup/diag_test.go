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

func TestDiagWindows(t *testing.T) {
	a, _ := filepath.Glob("../../testdata/neardup/photos/*.jpg")
	b, _ := filepath.Glob("../../testdata/pdq/images/labelme-subset/*.jpg")
	photos := append(a, b...)
	for _, cfg := range []struct{ ik, qk, iw, qw, ws int }{{24, 28, 32, 128, 256}} {
		halfScaleSpace, centralWindows = false, true
		indexKeypoints, queryKeypoints, indexWindows, maxQueryWins, workSide = cfg.ik, cfg.qk, cfg.iw, cfg.qw, cfg.ws
		for _, k := range []reposts.Kind{reposts.Crop75, reposts.Crop90} {
			found, nwin := 0, 0
			for i, p := range photos {
				data, _ := os.ReadFile(p)
				img, _, _ := pdq.Decode(data)
				h := NewHasher(Options{PDQMaxSide: -1})
				sig, _ := h.Signatures(img)
				nwin += len(sig) - 1
				rp, _ := reposts.Apply(img, []reposts.Kind{k}, rand.New(rand.NewPCG(uint64(i), 3)))
				q, _ := h.Query(rp.Image)
				ix := NewIndex()
				ix.Add(0, img.Bounds().Dx(), img.Bounds().Dy(), sig)
				ms := ix.Search(q, SearchOptions{})
				if len(ms) > 0 {
					found++
				}
			}
			fmt.Printf("cfg=%v %s found %d/%d windows/img %.1f\n", cfg, k, found, len(photos), float64(nwin)/float64(len(photos)))
		}
	}
}
