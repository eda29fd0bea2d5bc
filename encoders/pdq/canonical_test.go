package pdq

import (
	"bytes"
	"image"
	"image/jpeg"
	"os"
	"path/filepath"
	"testing"
)

// closest is the smallest distance between a hash of a and a hash of b.
func closest(a, b []Hash) int {
	best := 257
	for _, x := range a {
		for _, y := range b {
			best = min(best, Distance(x, y))
		}
	}
	return best
}

// reencoded returns img under the dihedral symmetry d, re-encoded as a JPEG
// of quality 90 (a re-post).
func reencoded(t *testing.T, img image.Image, d Dihedral) image.Image {
	t.Helper()
	rgba := image.NewRGBA(img.Bounds())
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			rgba.Set(x, y, img.At(x, y))
		}
	}
	var enc bytes.Buffer
	if err := jpeg.Encode(&enc, transform(rgba, d), &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	out, err := jpeg.Decode(&enc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCanonicalRealPhotos: photos mirrored or rotated and re-encoded share a
// canonical hash with the original (within 31 bits, the clusters' default)
// at least as often as a lookup of all eight variants of the copy finds the
// original's hash, the most PDQ's DCT-derived variants allow; and more often
// than the strict choice of one canonical variant would. The figures are in
// the log (and in canonical.go's comment).
func TestCanonicalRealPhotos(t *testing.T) {
	var files []string
	for _, g := range []string{"../../testdata/neardup/photos/*.jpg", filepath.Join(vectorsDir, "images", "labelme-subset", "*"), filepath.Join(vectorsDir, "images", "misc", "*")} {
		m, err := filepath.Glob(g)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 20 {
		t.Fatalf("%d photos found, want the 23 of testdata", len(files))
	}
	var canonical, strict, lookup, n int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		img, _, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		var hs Hasher
		dih, ds, _ := hs.DihedralCanonical(img)
		_, cs, _ := hs.HashCanonical(img)
		for _, d := range []Dihedral{FlipY, Rotate180, Rotate90} {
			var h2 Hasher
			cdih, cds, _ := h2.DihedralCanonical(reencoded(t, img, d))
			_, ccs, _ := h2.HashCanonical(reencoded(t, img, d))
			n++
			if closest(cs, ccs) <= 31 {
				canonical++
			}
			if Distance(dih[ds[0]], cdih[cds[0]]) <= 31 {
				strict++
			}
			if closest(cdih[:], []Hash{dih[Original]}) <= 31 {
				lookup++
			}
		}
	}
	t.Logf("%d copies of %d photos: canonical hashes %d, strict single choice %d, lookup of all eight variants %d", n, len(files), canonical, strict, lookup)
	if canonical < lookup || canonical <= strict {
		t.Fatalf("canonical hashes match %d copies: want at least the lookup's %d and more than the strict choice's %d", canonical, lookup, strict)
	}
}

// TestCanonicalFiles: the eight rotated and flipped copies of the bridge
// photo (ThreatExchange's dih/ images) share one canonical hash, within a
// few bits, though their plain hashes are far apart; and the canonical hash
// is one of each copy's dihedral hashes.
func TestCanonicalFiles(t *testing.T) {
	dir := filepath.Join(vectorsDir, "images", "dih")
	files := []string{"bridge-1-original.jpg", "bridge-2-rotate-90.jpg", "bridge-3-rotate-180.jpg", "bridge-4-rotate-270.jpg",
		"bridge-5-flipx.jpg", "bridge-6-flipy.jpg", "bridge-7-flip-plus-1.jpg", "bridge-8-flip-minus-1.jpg"}
	hs := fullRes()
	var first []Hash
	var firstPlain Hash
	for i, f := range files {
		img := decodeFile(t, filepath.Join(dir, f))
		h, cs, q := hs.HashCanonical(img)
		dih, ds, q2 := hs.DihedralCanonical(img)
		if q != q2 || dih[Original] != h || len(cs) != len(ds) || len(cs) == 0 || len(cs) > MaxCanonical {
			t.Fatalf("%s: HashCanonical and DihedralCanonical disagree (canonical %v)", f, ds)
		}
		for j, d := range ds {
			if dih[d] != cs[j] {
				t.Fatalf("%s: canonical hash %d is not the %v variant", f, j, d)
			}
		}
		if i == 0 {
			first, firstPlain = cs, h
			continue
		}
		dist := closest(cs, first)
		t.Logf("%-28s canonical %-24v %3d bits from the original's canonical hashes, plain hashes %3d apart", f, ds, dist, Distance(h, firstPlain))
		if dist > 10 {
			t.Errorf("%s: canonical hashes %d bits from the original's, want <= 10", f, dist)
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
			if dist := closest(c, want); dist > img.limit {
				t.Errorf("%s %v: canonical hashes %d bits from the original's", img.name, d, dist)
			}
		}
	}
}

// TestCanonicalFlat: an image too small to hash has zero hashes.
func TestCanonicalFlat(t *testing.T) {
	h, c, q := fullRes().HashCanonical(synthImage(4, 4, 1, 1))
	if q != 0 || h != (Hash{}) || len(c) != 0 {
		t.Fatalf("4x4: got %v %v quality %d", h, c, q)
	}
}

// TestAppendHashes: the hashes one after another, after dst.
func TestAppendHashes(t *testing.T) {
	a, b := Hash{1}, Hash{31: 2}
	got := AppendHashes([]byte{9}, []Hash{a, b})
	if len(got) != 65 || got[0] != 9 || got[1] != 1 || got[64] != 2 || len(AppendHashes(nil, nil)) != 0 {
		t.Fatalf("AppendHashes: %v", got)
	}
}
