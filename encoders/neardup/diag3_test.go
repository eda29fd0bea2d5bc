//go:build neardupexp

package neardup

import (
	"fmt"
	"os"
	"testing"

	"github.com/xmodal/xmodal/encoders/pdq"
)

func TestDiagQ(t *testing.T) {
	halfScaleSpace = false
	for _, p := range []string{"../../testdata/pdq/images/labelme-subset/q0003.jpg", "../../testdata/pdq/images/labelme-subset/q0004.jpg", "../../testdata/neardup/photos/retina.jpg", "../../testdata/neardup/photos/gravel.jpg"} {
		data, _ := os.ReadFile(p)
		img, _, _ := pdq.Decode(data)
		l, w, h := pdq.Luma(img, nil)
		pl := workPlane(l, w, h, img.Bounds())
		ss := buildScaleSpace(pl, 3, false)
		kps := ss.detect(20, 4, 0.002*planeStd(pl)+1e-3)
		ws := pairWindows(ss, pl, kps, 0.12*256, 0.7*256, 1, 0, 0, 100, true)
		var qs []int
		for _, w := range ws {
			qs = append(qs, w.quality)
		}
		_, q := pdq.FromImage(img)
		fmt.Println(p, "std", planeStd(pl), "kps", len(kps), "wins", len(ws), "pdqq", q, qs)
	}
}
