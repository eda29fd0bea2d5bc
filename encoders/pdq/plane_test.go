package pdq

import (
	"path/filepath"
	"testing"
)

// DihedralPlane over Luma must give Dihedral's hashes bit for bit, in the
// default (shrink to 512) and the full-resolution mode, on the reference
// photos (1600x1004, so the shrink path runs) and small images.
func TestDihedralPlaneMatchesDihedral(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(vectorsDir, "images", "*", "*"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no reference images: %v", err)
	}
	var buf []float32
	for _, maxSide := range []int{0, -1, 100} {
		hs := &Hasher{MaxSide: maxSide}
		ref := &Hasher{MaxSide: maxSide}
		for _, p := range paths {
			img := decodeFile(t, p)
			var w, h int
			buf, w, h = Luma(img, buf)
			got, gq := hs.DihedralPlane(buf, w, h)
			want, wq := ref.Dihedral(img)
			if got != want || gq != wq {
				t.Errorf("maxSide %d %s: plane %s q%d, image %s q%d", maxSide, filepath.Base(p), got[0], gq, want[0], wq)
			}
		}
	}
	if h, q := new(Hasher).DihedralPlane(make([]float32, 12), 4, 3); q != 0 || h[0] != (Hash{}) {
		t.Errorf("4x3 plane: %s q%d, want the zero hash", h[0], q)
	}
}
