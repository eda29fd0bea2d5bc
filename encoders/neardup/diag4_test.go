//go:build neardupexp

package neardup

import (
	"fmt"
	"image"
	"testing"
	"time"

	"github.com/xmodal/xmodal/encoders/pdq"
)

func TestDiagTime(t *testing.T) {
	imgs := benchImages()
	var tl, tp, tr, ts, td, tw time.Duration
	var hs pdq.Hasher
	hs.MaxSide = -1
	for rep := 0; rep < 5; rep++ {
		for _, img := range imgs {
			t0 := time.Now()
			l, w, h := pdq.Luma(img, nil)
			t1 := time.Now()
			hs.DihedralPlane(l, w, h)
			t2 := time.Now()
			p := workPlane(l, w, h, image.Rect(0, 0, w, h))
			t3 := time.Now()
			ss := buildScaleSpace(p, 3, false)
			t4 := time.Now()
			kps := ss.detect(24, 4, 0.002*planeStd(p)+1e-3)
			t5 := time.Now()
			pairWindows(ss, p, kps, 0.12*256, 0.7*256, 1, minWinQuality, 0, 32, true)
			t6 := time.Now()
			tl += t1.Sub(t0)
			tp += t2.Sub(t1)
			tr += t3.Sub(t2)
			ts += t4.Sub(t3)
			td += t5.Sub(t4)
			tw += t6.Sub(t5)
		}
	}
	n := time.Duration(5 * len(imgs))
	fmt.Println("luma", tl/n, "pdq", tp/n, "resample", tr/n, "scalespace", ts/n, "detect", td/n, "windows", tw/n)
}
