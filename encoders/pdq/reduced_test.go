package pdq

import (
	"image"
	"image/color"
	"math"
	"math/rand/v2"
	"testing"
)

// gridded is a reduced image that knows the full image it stands for.
type gridded struct {
	*image.RGBA
	g Grid
}

func (m gridded) PDQGrid() (Grid, bool) { return m.g, true }

// reducedPicture is a w x h picture with smooth shading, edges and some
// noise, so that its hash has bits near and far from the median.
func reducedPicture(w, h int, seed uint64) *image.RGBA {
	rng := rand.New(rand.NewPCG(seed, 7))
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	cx, cy, r := rng.Float64()*float64(w), rng.Float64()*float64(h), float64(min(w, h))/3
	for y := range h {
		for x := range w {
			v := 128 + 60*math.Sin(float64(x)/17+float64(y)/29) + 30*math.Cos(float64(x*y)/900)
			if math.Hypot(float64(x)-cx, float64(y)-cy) < r {
				v -= 70
			}
			v += rng.NormFloat64() * 8
			c := uint8(max(0, min(255, v)))
			img.Set(x, y, color.RGBA{c, uint8(max(0, min(255, v*0.8+20))), 255 - c, 255})
		}
	}
	return img
}

// filled is the full image in which every pixel of small fills its block.
func filled(small *image.RGBA, g Grid) *image.RGBA {
	full := image.NewRGBA(image.Rect(0, 0, g.FullW, g.FullH))
	for y := range g.FullH {
		for x := range g.FullW {
			full.Set(x, y, small.At((x-g.OffX)/g.Scale, (y-g.OffY)/g.Scale))
		}
	}
	return full
}

// TestGridMatchesFilled: a reduced image with a grid hashes as the
// reference hashes the full image in which each of its pixels fills its
// block (every scale, partial blocks at either end, both orientations of
// the rectangle), and its plane form hashes the same. Without the grid the
// same pixels hash differently (their own geometry).
func TestGridMatchesFilled(t *testing.T) {
	cases := []struct {
		name      string
		w, h      int
		g         Grid
		wantDiffs bool // the plain hash of the reduced pixels differs (own geometry)
	}{
		{"1/2 exact blocks", 300, 200, Grid{Scale: 2, FullW: 600, FullH: 400}, true},
		{"1/4 partial blocks last", 251, 167, Grid{Scale: 4, FullW: 1001, FullH: 666}, true},
		{"1/4 partial blocks first", 251, 167, Grid{Scale: 4, FullW: 1001, FullH: 666, OffX: -3, OffY: -2}, true},
		{"1/8 portrait", 125, 188, Grid{Scale: 8, FullW: 1000, FullH: 1500}, true},
		{"1/8 partial first", 188, 125, Grid{Scale: 8, FullW: 1497, FullH: 998, OffX: -3, OffY: -2}, true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			small := reducedPicture(c.w, c.h, uint64(i))
			if !c.g.fits(c.w, c.h) {
				t.Fatalf("grid %+v does not fit %dx%d", c.g, c.w, c.h)
			}
			ref := Hasher{MaxSide: -1}
			want, wq := ref.Dihedral(filled(small, c.g))
			hs := Hasher{MaxSide: -1}
			got, gq := hs.Dihedral(gridded{small, c.g})
			for d := range got {
				if dist := Distance(got[d], want[d]); dist != 0 {
					t.Errorf("%v: %d bits from the filled image's hash", Dihedral(d), dist)
				}
			}
			if gq != wq {
				t.Errorf("quality %d, filled image's %d", gq, wq)
			}
			luma, w, h := Luma(small, nil)
			pv, pq := hs.DihedralGridPlane(luma, w, h, c.g)
			if pv != got || pq != gq {
				t.Errorf("DihedralGridPlane differs from Dihedral of the gridded image")
			}
			plain, _ := ref.Dihedral(small)
			if (plain != want) != c.wantDiffs {
				t.Errorf("plain hash differs from the filled image's: %v, want %v (%d bits)", plain != want, c.wantDiffs, Distance(plain[0], want[0]))
			}
		})
	}
}

// TestGridRefused: a grid that does not describe the image, or a full
// image that MaxSide would shrink, hashes the pixels as they are.
func TestGridRefused(t *testing.T) {
	small := reducedPicture(120, 80, 9)
	plainHs := Hasher{MaxSide: -1}
	plain, _ := plainHs.Dihedral(small)
	for _, c := range []struct {
		name    string
		g       Grid
		maxSide int
	}{
		{"too few blocks", Grid{Scale: 4, FullW: 600, FullH: 320}, -1},
		{"too many blocks", Grid{Scale: 4, FullW: 400, FullH: 320}, -1},
		{"scale 1", Grid{Scale: 1, FullW: 120, FullH: 80}, -1},
		{"positive offset", Grid{Scale: 4, FullW: 480, FullH: 320, OffX: 1}, -1},
		{"offset of a whole block", Grid{Scale: 4, FullW: 476, FullH: 320, OffX: -4}, -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			hs := Hasher{MaxSide: c.maxSide}
			got, _ := hs.Dihedral(gridded{small, c.g})
			if got != plain {
				t.Errorf("hashed with grid %+v; want the plain hash", c.g)
			}
		})
	}
	// The reference tools shrink a full image over 512 px first: a gridded
	// image standing for one hashes as its own pixels shrunk.
	def := Hasher{}
	want, _ := def.Dihedral(small)
	got, _ := def.Dihedral(gridded{small, Grid{Scale: 8, FullW: 960, FullH: 640}})
	if got != want {
		t.Errorf("MaxSide 512: a 960x640 grid was used")
	}
}

// packedGridded is a gridded packed-RGB image (as imageprep's RGBImage).
type packedGridded struct {
	pix  []byte
	w, h int
	g    Grid
}

func (m *packedGridded) ColorModel() color.Model { return color.RGBAModel }
func (m *packedGridded) Bounds() image.Rectangle { return image.Rect(0, 0, m.w, m.h) }
func (m *packedGridded) At(x, y int) color.Color {
	p := m.pix[3*(y*m.w+x):]
	return color.RGBA{p[0], p[1], p[2], 255}
}
func (m *packedGridded) RowRGB(y int) []byte      { return m.pix[3*y*m.w : 3*(y+1)*m.w] }
func (m *packedGridded) PackedRGB() ([]byte, int) { return m.pix, 3 * m.w }
func (m *packedGridded) PDQGrid() (Grid, bool)    { return m.g, true }

// TestGridRowsRGBMatchesGo: the grid's horizontal pass over packed RGB
// (in C where cgo is on) gives the Go pass's plane, bit for bit.
func TestGridRowsRGBMatchesGo(t *testing.T) {
	for i, c := range []struct {
		w, h int
		g    Grid
	}{
		{251, 167, Grid{Scale: 4, FullW: 1001, FullH: 666, OffX: -3}},
		{7, 190, Grid{Scale: 8, FullW: 50, FullH: 1520}},
		{375, 250, Grid{Scale: 8, FullW: 3000, FullH: 2000}},
	} {
		src := reducedPicture(c.w, c.h, uint64(40+i))
		pk := &packedGridded{pix: make([]byte, 3*c.w*c.h), w: c.w, h: c.h, g: c.g}
		for y := range c.h {
			for x := range c.w {
				o := src.PixOffset(x, y)
				copy(pk.pix[3*(y*c.w+x):], src.Pix[o:o+3])
			}
		}
		var a, b Hasher
		a.MaxSide, b.MaxSide = -1, -1
		ha, qa := a.Dihedral(pk)
		hb, qb := b.Dihedral(gridded{src, c.g})
		if a.ds.plane != b.ds.plane || ha != hb || qa != qb {
			t.Errorf("%dx%d: packed RGB and Go passes differ", c.w, c.h)
		}
	}
}

// FuzzGrid: any grid a w x h image might claim (decoders of outside
// images set them) either fits and hashes as the plane form does, or is
// refused; nothing panics.
func FuzzGrid(f *testing.F) {
	f.Add(uint16(251), uint16(167), uint8(4), uint16(1001), uint16(666), uint8(3), uint8(0))
	f.Add(uint16(5), uint16(5), uint8(8), uint16(40), uint16(33), uint8(0), uint8(7))
	f.Add(uint16(1), uint16(300), uint8(2), uint16(2), uint16(599), uint8(1), uint8(1))
	f.Fuzz(func(t *testing.T, w, h uint16, scale uint8, fw, fh uint16, offx, offy uint8) {
		W, H := int(w%400)+1, int(h%400)+1
		g := Grid{Scale: int(scale % 70), FullW: int(fw), FullH: int(fh), OffX: -int(offx % 70), OffY: -int(offy % 70)}
		small := reducedPicture(W, H, uint64(w)^uint64(fh))
		hs := Hasher{MaxSide: -1}
		got, q := hs.Dihedral(gridded{small, g})
		if !g.fits(W, H) {
			plain, pq := (&Hasher{MaxSide: -1}).Dihedral(small)
			if got != plain || q != pq {
				t.Fatalf("grid %+v does not fit %dx%d but was used", g, W, H)
			}
			return
		}
		luma, _, _ := Luma(small, nil)
		pv, pqq := (&Hasher{MaxSide: -1}).DihedralGridPlane(luma, W, H, g)
		if pv != got || pqq != q {
			t.Fatalf("grid %+v on %dx%d: plane form differs", g, W, H)
		}
	})
}

// TestLumaIntegerIdentity: for every 8-bit colour, the reference's
// luminance (the tables' double sum rounded to float) is the float
// division (299R + 587G + 114B) / 1000, which the C code's vector path
// computes (downsample.c, luma4).
func TestLumaIntegerIdentity(t *testing.T) {
	for r := range 256 {
		for g := range 256 {
			for b := range 256 {
				if got, want := float32(299*r+587*g+114*b)/1000, luma8(uint8(r), uint8(g), uint8(b)); got != want {
					t.Fatalf("(%d,%d,%d): integer luminance %v, reference %v", r, g, b, got, want)
				}
			}
		}
	}
}
