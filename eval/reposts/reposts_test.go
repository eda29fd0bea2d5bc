package reposts

import (
	"context"
	"encoding/json"
	"image"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xmodal/xmodal/encoders/pdq"
)

func photo(t testing.TB) *image.RGBA {
	t.Helper()
	return Photo(0, 42, 320, 240)
}

// The placement each edit reports is where the original's pixels went:
// the placed rectangle of the re-post holds the shown part of the
// original, transformed by the dihedral (checked on pixels after the
// lossless edits, on PDQ hashes after the lossy ones).
func TestPlacement(t *testing.T) {
	src := photo(t)
	for _, k := range [][]Kind{{Crop90}, {Crop75}, {FlipH}, {Rot90}, {Caption}, {Crop75, Caption}, {Rot90, Crop90}, {FlipH, Crop75}} {
		t.Run(Name(k), func(t *testing.T) {
			rp, err := Apply(src, k, rand.New(rand.NewPCG(3, 4)))
			if err != nil {
				t.Fatal(err)
			}
			// Expected: the shown part, transformed.
			sh := rp.Shown
			part := image.NewRGBA(image.Rect(0, 0, sh.Dx(), sh.Dy()))
			for y := range sh.Dy() {
				copy(part.Pix[part.PixOffset(0, y):part.PixOffset(sh.Dx(), y)], src.Pix[src.PixOffset(sh.Min.X, sh.Min.Y+y):src.PixOffset(sh.Max.X, sh.Min.Y+y)])
			}
			want := dihedralImage(part, rp.Dihedral)
			pl := rp.Placed
			if pl.Dx() != want.Bounds().Dx() || pl.Dy() != want.Bounds().Dy() {
				t.Fatalf("placed %v, shown %v under %v is %v", pl, sh, rp.Dihedral, want.Bounds())
			}
			for y := range pl.Dy() {
				for x := range pl.Dx() {
					if rp.Image.RGBAAt(pl.Min.X+x, pl.Min.Y+y) != want.RGBAAt(x, y) {
						t.Fatalf("pixel (%d,%d) of the placed part differs from the original's", x, y)
					}
				}
			}
		})
	}
	// Lossy and scaling edits: the placed part hashes like the original.
	for _, k := range [][]Kind{{JPEG30}, {Down50}, {Screenshot}, {Watermark}, {Bright}, {Contrast}, {Grey}} {
		rp, err := Apply(src, k, rand.New(rand.NewPCG(5, 6)))
		if err != nil {
			t.Fatal(err)
		}
		sub := rp.Image.SubImage(rp.Placed)
		h1, _ := pdq.FromImage(sub)
		h0, _ := pdq.FromImage(src)
		if d := pdq.Distance(h0, h1); d > 40 || rp.Dihedral != pdq.Original || rp.Shown != src.Bounds() {
			t.Errorf("%s: placed part %v is %d bits from the original, dihedral %v, shown %v", Name(k), rp.Placed, d, rp.Dihedral, rp.Shown)
		}
	}
}

// dihedralImage agrees with PDQ's dihedral variants: the hash of the
// transformed image is the matching variant of the original's hash.
func TestDihedralImageMatchesPDQ(t *testing.T) {
	src := photo(t)
	vs, _ := (&pdq.Hasher{MaxSide: -1}).Dihedral(src)
	for d := range 8 {
		h, _ := (&pdq.Hasher{MaxSide: -1}).Hash(dihedralImage(src, pdq.Dihedral(d)))
		// PDQ's variants are exact up to its sampling grid (a few bits);
		// every other variant is far.
		for e := range 8 {
			dist := pdq.Distance(h, vs[e])
			if e == d && dist > 20 || e != d && dist < 40 {
				t.Errorf("%v: transformed image %d bits from variant %v", pdq.Dihedral(d), dist, pdq.Dihedral(e))
			}
		}
	}
	// compose: b then a.
	if compose(pdq.Rotate90, pdq.Rotate90) != pdq.Rotate180 || compose(pdq.FlipY, pdq.FlipY) != pdq.Original || compose(pdq.Rotate90, pdq.Rotate270) != pdq.Original {
		t.Error("dihedral composition")
	}
}

// Edits are pure functions of the seed; different seeds differ.
func TestDeterministic(t *testing.T) {
	src := photo(t)
	for _, k := range append([]Kind{}, Singles...) {
		a, _ := Apply(src, []Kind{k}, rand.New(rand.NewPCG(9, 9)))
		b, _ := Apply(src, []Kind{k}, rand.New(rand.NewPCG(9, 9)))
		if string(a.Image.Pix) != string(b.Image.Pix) || a.Placement != b.Placement {
			t.Errorf("%s: not deterministic", k)
		}
	}
	if p1, p2 := Photo(1, 1, 64, 48), Photo(1, 2, 64, 48); string(p1.Pix) == string(p2.Pix) {
		t.Error("two seeds drew the same photo")
	}
	if p1, p2 := Photo(1, 1, 64, 48), Photo(1, 1, 64, 48); string(p1.Pix) != string(p2.Pix) {
		t.Error("one seed drew two photos")
	}
}

// Caption bands are 15-25 % of the original's height, white or black, with
// text; the rest is the original.
func TestCaptionBand(t *testing.T) {
	src := photo(t)
	for seed := range uint64(20) {
		rp, err := Apply(src, []Kind{Caption}, rand.New(rand.NewPCG(seed, 1)))
		if err != nil {
			t.Fatal(err)
		}
		h := src.Bounds().Dy()
		band := rp.Image.Bounds().Dy() - h
		if band < h*15/100 || band > h*25/100+1 {
			t.Errorf("seed %d: band %d px of %d", seed, band, h)
		}
		by := 0
		if rp.Placed.Min.Y == 0 {
			by = h
		}
		bg := rp.Image.RGBAAt(0, by)
		ink := 0
		for y := by; y < by+band; y++ {
			for x := range rp.Image.Bounds().Dx() {
				if c := rp.Image.RGBAAt(x, y); c != bg {
					ink++
				}
			}
		}
		if (bg.R != 0 && bg.R != 255) || ink == 0 {
			t.Errorf("seed %d: band colour %v, %d text pixels", seed, bg, ink)
		}
	}
}

func TestApplyErrors(t *testing.T) {
	if _, err := Apply(image.NewRGBA(image.Rect(0, 0, 4, 4)), []Kind{Crop75}, rand.New(rand.NewPCG(1, 1))); err == nil {
		t.Error("4x4 image edited")
	}
	if _, err := Apply(photo(t), []Kind{"sepia"}, rand.New(rand.NewPCG(1, 1))); err == nil || !strings.Contains(err.Error(), "sepia") {
		t.Errorf("unknown edit: %v", err)
	}
}

func TestParseKinds(t *testing.T) {
	for _, k := range append(append([][]Kind{}, Combos...), []Kind{Caption}) {
		got, err := ParseKinds(Name(k))
		if err != nil || Name(got) != Name(k) {
			t.Errorf("%s: %v %v", Name(k), got, err)
		}
	}
	for _, bad := range []string{"", "crop", "crop75+", "+grey", "grey++hflip"} {
		if _, err := ParseKinds(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func FuzzParseKinds(f *testing.F) {
	for _, s := range []string{"crop75", "caption+jpeg30", "", "+", "x+y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ks, err := ParseKinds(s)
		if err != nil {
			return
		}
		if Name(ks) != s {
			t.Errorf("%q parsed to %q", s, Name(ks))
		}
	})
}

// WriteSet writes every re-post and distractor with a manifest line each.
func TestWriteSet(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.png")
	f, err := os.Create(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeJPEGTo(f, photo(t)); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	n, err := WriteSet(context.Background(), SetOptions{Originals: []string{in}, Generated: 1, Distractors: 2, W: 96, H: 64,
		Kinds: [][]Kind{{Crop75}, {Caption, JPEG30}}, Seed: 3, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	if n != 2*2+2 {
		t.Errorf("wrote %d, want 6", n)
	}
	data, err := os.ReadFile(filepath.Join(out, "manifest.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != n {
		t.Fatalf("%d manifest lines, %d images", len(lines), n)
	}
	for _, l := range lines {
		var e Entry
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(out, e.File)); err != nil {
			t.Errorf("manifest names a missing file: %v", err)
		}
	}
}
