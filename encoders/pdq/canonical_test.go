package pdq

import (
	"path/filepath"
	"testing"
)

// TestCanonicalFiles: the eight rotated and flipped copies of the bridge
// photo (ThreatExchange's dih/ images) share one canonical hash, within a
// few bits, though their plain hashes are far apart; and the canonical hash
// is one of each copy's dihedral hashes.
func TestCanonicalFiles(t *testing.T) {
	dir := filepath.Join(vectorsDir, "images", "dih")
	files := []string{"bridge-1-original.jpg", "bridge-2-rotate-90.jpg", "bridge-3-rotate-180.jpg", "bridge-4-rotate-270.jpg",
		"bridge-5-flipx.jpg", "bridge-6-flipy.jpg", "bridge-7-flip-plus-1.jpg", "bridge-8-flip-minus-1.jpg"}
	hs := fullRes()
	var first, firstPlain Hash
	for i, f := range files {
		img := decodeFile(t, filepath.Join(dir, f))
		h, c, q := hs.HashCanonical(img)
		dih, d, q2 := hs.DihedralCanonical(img)
		if q != q2 || dih[Original] != h || dih[d] != c {
			t.Fatalf("%s: HashCanonical and DihedralCanonical disagree (canonical %v)", f, d)
		}
		if i == 0 {
			first, firstPlain = c, h
			continue
		}
		t.Logf("%-28s canonical %-10v %3d bits from the original's canonical hash, plain hashes %3d apart", f, d, Distance(c, first), Distance(h, firstPlain))
		if dist := Distance(c, first); dist > 10 {
			t.Errorf("%s: canonical hash %d bits from the original's, want <= 10", f, dist)
		}
		if Distance(h, firstPlain) <= 31 && i != 0 {
			t.Errorf("%s: plain hash within 31 bits of the original's: the test shows nothing", f)
		}
	}
}

// TestCanonicalPixels: exactly transformed pixels give the same canonical
// variant of the picture (the variant of the copy that maps back to the
// original's canonical one), hashed within float rounding.
func TestCanonicalPixels(t *testing.T) {
	for _, img := range []struct {
		name       string
		w, h, seed uint32
		limit      int
	}{
		// Sides of 64*m pixels, m odd: symmetric sampling (TestDihedralPixels).
		{"832x832", 832, 832, 99, 2}, {"576x832", 576, 832, 98, 2},
		// An asymmetric grid: within the clusters' default link distance.
		{"640x400", 640, 400, 97, 31},
	} {
		src := synthImage(img.w, img.h, 9, img.seed)
		hs := fullRes()
		_, want, q := hs.HashCanonical(src)
		if q < 80 {
			t.Fatalf("%s: quality %d; test image too flat", img.name, q)
		}
		for d := Original; d <= FlipMinus1; d++ {
			_, c, _ := hs.HashCanonical(transform(src, d))
			if dist := Distance(c, want); dist > img.limit {
				t.Errorf("%s %v: canonical hash %d bits from the original's", img.name, d, dist)
			}
		}
	}
}

// TestCanonicalFlat: an image too small to hash has zero hashes.
func TestCanonicalFlat(t *testing.T) {
	h, c, q := fullRes().HashCanonical(synthImage(4, 4, 1, 1))
	if q != 0 || h != (Hash{}) || c != (Hash{}) {
		t.Fatalf("4x4: got %v %v quality %d", h, c, q)
	}
}
