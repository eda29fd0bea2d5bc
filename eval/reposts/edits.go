// Package reposts makes re-posts of images the way people re-share them:
// seeded edits (re-compression, downscales, crops, colour changes, flips
// and rotations, meme caption bands, screenshots inside phone or browser
// frames, watermarks) alone or in pairs, and photo-like originals and
// distractors where real photos run out. It is the data side of
// `xmodal gen --reposts` and `xmodal eval --neardup`.
package reposts

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/jpeg"
	"math"
	"math/rand/v2"
	"slices"

	xdraw "golang.org/x/image/draw"

	"github.com/xmodal/xmodal/encoders/pdq"
)

// Kind names one edit.
type Kind string

// The edits.
const (
	JPEG30     Kind = "jpeg30"      // JPEG re-encoding at quality 30
	Down50     Kind = "down50"      // downscale to 50 % of each side
	Down25     Kind = "down25"      // downscale to 25 % of each side
	Crop90     Kind = "crop90"      // keep 90 % of each side, random offset
	Crop75     Kind = "crop75"      // keep 75 % of each side, random offset
	Bright     Kind = "bright125"   // brightness +25 % (channels x1.25)
	Contrast   Kind = "contrast140" // contrast x1.4 about the mean luminance
	Grey       Kind = "grey"        // greyscale
	FlipH      Kind = "hflip"       // mirror left to right
	Rot90      Kind = "rot90"       // rotate 90 degrees counter-clockwise
	Caption    Kind = "caption"     // white or black band with text, 15-25 % of the height, above or below
	Screenshot Kind = "screenshot"  // scaled into a phone or browser frame
	Watermark  Kind = "watermark"   // semi-transparent text
)

// Singles lists every single edit, in report order.
var Singles = []Kind{JPEG30, Down50, Down25, Crop90, Crop75, Bright, Contrast, Grey, FlipH, Rot90, Caption, Screenshot, Watermark}

// Combos lists the two-edit combinations (applied left to right): the
// pairs re-sharing produces most, each edit kind in at least one.
var Combos = [][]Kind{
	{Crop90, Caption},
	{Crop75, JPEG30},
	{Caption, JPEG30},
	{Screenshot, JPEG30},
	{Down50, Caption},
	{FlipH, Caption},
	{Grey, Crop90},
	{Bright, Screenshot},
	{Crop90, Watermark},
	{Rot90, Down50},
	{Contrast, Caption},
	{Down25, JPEG30},
	{FlipH, Crop75},
	{Crop90, Screenshot},
}

// Name is the edit list's name in reports: the kinds joined by "+".
func Name(kinds []Kind) string {
	s := ""
	for i, k := range kinds {
		if i > 0 {
			s += "+"
		}
		s += string(k)
	}
	return s
}

// ParseKinds reads a name written by Name.
func ParseKinds(name string) ([]Kind, error) {
	var out []Kind
	start := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '+' {
			k := Kind(name[start:i])
			if !slices.Contains(Singles, k) {
				return nil, fmt.Errorf("reposts: unknown edit %q in %q (want %v joined by +)", k, name, Singles)
			}
			out = append(out, k)
			start = i + 1
		}
	}
	return out, nil
}

// Placement says where an original's pixels went in a re-post: Shown is
// the part of the original that is visible (original pixels), Dihedral the
// rotation or mirror applied to it, and Placed the rectangle of the
// re-post that holds it (re-post pixels, after the dihedral).
type Placement struct {
	Shown    image.Rectangle
	Dihedral pdq.Dihedral
	Placed   image.Rectangle
}

// Repost is one generated re-post.
type Repost struct {
	Kinds []Kind
	Image *image.RGBA
	Placement
}

// Apply makes a re-post of img with the edits in order, drawing every
// random choice (offsets, band colour and text, frame style) from r.
func Apply(img image.Image, kinds []Kind, r *rand.Rand) (*Repost, error) {
	src := toRGBA(img)
	b := src.Bounds()
	if b.Dx() < 8 || b.Dy() < 8 {
		return nil, fmt.Errorf("reposts: image %dx%d is too small to edit", b.Dx(), b.Dy())
	}
	p := &Repost{Kinds: slices.Clone(kinds), Image: src,
		Placement: Placement{Shown: b, Dihedral: pdq.Original, Placed: b}}
	for _, k := range kinds {
		if err := p.apply(k, r); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *Repost) apply(k Kind, r *rand.Rand) error {
	m := p.Image
	w, h := m.Bounds().Dx(), m.Bounds().Dy()
	switch k {
	case JPEG30:
		p.Image = jpegRoundTrip(m, 30)
	case Down50, Down25:
		f := 0.5
		if k == Down25 {
			f = 0.25
		}
		nw, nh := max(int(math.Round(float64(w)*f)), 1), max(int(math.Round(float64(h)*f)), 1)
		p.Image = resize(m, nw, nh)
		p.Placed = scaleRect(p.Placed, float64(nw)/float64(w), float64(nh)/float64(h))
	case Crop90, Crop75:
		f := 0.9
		if k == Crop75 {
			f = 0.75
		}
		cw, ch := int(math.Round(float64(w)*f)), int(math.Round(float64(h)*f))
		x0, y0 := r.IntN(w-cw+1), r.IntN(h-ch+1)
		crop := image.Rect(x0, y0, x0+cw, y0+ch)
		p.cropTo(crop)
	case Bright:
		p.Image = mapRGB(m, func(v float64) float64 { return v * 1.25 })
	case Contrast:
		mean := meanLuma(m)
		p.Image = mapRGB(m, func(v float64) float64 { return mean + 1.4*(v-mean) })
	case Grey:
		out := image.NewRGBA(m.Bounds())
		for i := 0; i < len(m.Pix); i += 4 {
			y := uint8(math.Round(0.299*float64(m.Pix[i]) + 0.587*float64(m.Pix[i+1]) + 0.114*float64(m.Pix[i+2])))
			out.Pix[i], out.Pix[i+1], out.Pix[i+2], out.Pix[i+3] = y, y, y, 255
		}
		p.Image = out
	case FlipH:
		p.Image = dihedralImage(m, pdq.FlipY)
		p.Placed = image.Rect(w-p.Placed.Max.X, p.Placed.Min.Y, w-p.Placed.Min.X, p.Placed.Max.Y)
		p.Dihedral = compose(pdq.FlipY, p.Dihedral)
	case Rot90:
		p.Image = dihedralImage(m, pdq.Rotate90)
		// Counter-clockwise: (x, y) -> (y, w-x).
		p.Placed = image.Rect(p.Placed.Min.Y, w-p.Placed.Max.X, p.Placed.Max.Y, w-p.Placed.Min.X)
		p.Dihedral = compose(pdq.Rotate90, p.Dihedral)
	case Caption:
		var off image.Point
		p.Image, off = captionBand(m, r)
		p.Placed = p.Placed.Add(off)
	case Screenshot:
		var at image.Rectangle
		p.Image, at = screenshot(m, r)
		p.Placed = scaleRect(p.Placed, float64(at.Dx())/float64(w), float64(at.Dy())/float64(h)).Add(at.Min)
	case Watermark:
		p.Image = watermark(m, r)
	default:
		return fmt.Errorf("reposts: unknown edit %q", k)
	}
	return nil
}

// cropTo crops the current image to c (current pixels), updating what of
// the original is shown.
func (p *Repost) cropTo(c image.Rectangle) {
	m := p.Image
	out := image.NewRGBA(image.Rect(0, 0, c.Dx(), c.Dy()))
	draw.Draw(out, out.Bounds(), m, c.Min, draw.Src)
	p.Image = out
	// The visible part of the placed original, mapped back through the
	// placement (a scale and the dihedral).
	vis := p.Placed.Intersect(c)
	if !vis.Empty() {
		p.Shown = p.unplace(vis)
	}
	p.Placed = vis.Sub(c.Min)
}

// unplace maps a rectangle of the current image inside Placed back to
// original pixels.
func (p *Repost) unplace(q image.Rectangle) image.Rectangle {
	pl := p.Placed
	// Undo the dihedral inside Placed: normalise to [0,1] in the placed
	// frame, rotate back, scale to Shown.
	fx0, fy0 := float64(q.Min.X-pl.Min.X)/float64(pl.Dx()), float64(q.Min.Y-pl.Min.Y)/float64(pl.Dy())
	fx1, fy1 := float64(q.Max.X-pl.Min.X)/float64(pl.Dx()), float64(q.Max.Y-pl.Min.Y)/float64(pl.Dy())
	ax, ay := invDihedralPoint(p.Dihedral, fx0, fy0)
	bx, by := invDihedralPoint(p.Dihedral, fx1, fy1)
	x0, x1 := math.Min(ax, bx), math.Max(ax, bx)
	y0, y1 := math.Min(ay, by), math.Max(ay, by)
	s := p.Shown
	return image.Rect(s.Min.X+int(math.Round(x0*float64(s.Dx()))), s.Min.Y+int(math.Round(y0*float64(s.Dy()))),
		s.Min.X+int(math.Round(x1*float64(s.Dx()))), s.Min.Y+int(math.Round(y1*float64(s.Dy()))))
}

func scaleRect(r image.Rectangle, fx, fy float64) image.Rectangle {
	return image.Rect(int(math.Round(float64(r.Min.X)*fx)), int(math.Round(float64(r.Min.Y)*fy)),
		int(math.Round(float64(r.Max.X)*fx)), int(math.Round(float64(r.Max.Y)*fy)))
}

func toRGBA(img image.Image) *image.RGBA {
	b := img.Bounds()
	out := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	draw.Draw(out, out.Bounds(), img, b.Min, draw.Src)
	// Opaque: a re-post is a flat picture.
	for i := 3; i < len(out.Pix); i += 4 {
		out.Pix[i] = 255
	}
	return out
}

func jpegRoundTrip(m *image.RGBA, q int) *image.RGBA {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, m, &jpeg.Options{Quality: q}); err != nil {
		panic(err) // encoding an in-memory RGBA image cannot fail
	}
	out, err := jpeg.Decode(&buf)
	if err != nil {
		panic(err)
	}
	return toRGBA(out)
}

// resize scales m with Catmull-Rom (antialiased when shrinking).
func resize(m image.Image, w, h int) *image.RGBA {
	out := image.NewRGBA(image.Rect(0, 0, w, h))
	xdraw.CatmullRom.Scale(out, out.Bounds(), m, m.Bounds(), xdraw.Src, nil)
	return out
}

func mapRGB(m *image.RGBA, f func(float64) float64) *image.RGBA {
	var lut [256]uint8
	for v := range lut {
		lut[v] = clamp8(f(float64(v)))
	}
	out := image.NewRGBA(m.Bounds())
	for i := 0; i < len(m.Pix); i += 4 {
		out.Pix[i], out.Pix[i+1], out.Pix[i+2], out.Pix[i+3] = lut[m.Pix[i]], lut[m.Pix[i+1]], lut[m.Pix[i+2]], 255
	}
	return out
}

func meanLuma(m *image.RGBA) float64 {
	var s float64
	n := 0
	for i := 0; i < len(m.Pix); i += 4 {
		s += 0.299*float64(m.Pix[i]) + 0.587*float64(m.Pix[i+1]) + 0.114*float64(m.Pix[i+2])
		n++
	}
	return s / float64(max(n, 1))
}

func clamp8(v float64) uint8 {
	switch {
	case v <= 0:
		return 0
	case v >= 255:
		return 255
	}
	return uint8(v + 0.5)
}

// dihedral matrices acting on centred coordinates (x right, y down), in
// pdq's order; d maps the original's point p to m[d] p.
var dihedralMat = [8][4]int{
	pdq.Original:   {1, 0, 0, 1},
	pdq.Rotate90:   {0, 1, -1, 0}, // counter-clockwise on screen: (x, y) -> (y, -x)
	pdq.Rotate180:  {-1, 0, 0, -1},
	pdq.Rotate270:  {0, -1, 1, 0},
	pdq.FlipX:      {1, 0, 0, -1}, // top to bottom
	pdq.FlipY:      {-1, 0, 0, 1}, // left to right
	pdq.FlipPlus1:  {0, 1, 1, 0},  // transpose
	pdq.FlipMinus1: {0, -1, -1, 0},
}

func mul(a, b [4]int) [4]int {
	return [4]int{a[0]*b[0] + a[1]*b[2], a[0]*b[1] + a[1]*b[3], a[2]*b[0] + a[3]*b[2], a[2]*b[1] + a[3]*b[3]}
}

// compose returns the dihedral "b, then a".
func compose(a, b pdq.Dihedral) pdq.Dihedral {
	m := mul(dihedralMat[a], dihedralMat[b])
	for d, v := range dihedralMat {
		if v == m {
			return pdq.Dihedral(d)
		}
	}
	panic("reposts: dihedral group not closed")
}

// invDihedralPoint maps a point of the transformed unit square back to the
// original unit square.
func invDihedralPoint(d pdq.Dihedral, x, y float64) (float64, float64) {
	m := dihedralMat[d]
	// Inverse of an orthogonal integer matrix is its transpose.
	cx, cy := x-0.5, y-0.5
	return float64(m[0])*cx + float64(m[2])*cy + 0.5, float64(m[1])*cx + float64(m[3])*cy + 0.5
}

// dihedralImage returns m transformed by d (pdq's meaning of d).
func dihedralImage(m *image.RGBA, d pdq.Dihedral) *image.RGBA {
	w, h := m.Bounds().Dx(), m.Bounds().Dy()
	mt := dihedralMat[d]
	ow, oh := w, h
	if mt[0] == 0 {
		ow, oh = h, w
	}
	out := image.NewRGBA(image.Rect(0, 0, ow, oh))
	for y := range h {
		for x := range w {
			// Centred coordinates doubled to stay integral.
			cx, cy := 2*x+1-w, 2*y+1-h
			nx, ny := mt[0]*cx+mt[1]*cy, mt[2]*cx+mt[3]*cy
			ox, oy := (nx+ow-1)/2, (ny+oh-1)/2
			copy(out.Pix[out.PixOffset(ox, oy):out.PixOffset(ox, oy)+4], m.Pix[m.PixOffset(x, y):m.PixOffset(x, y)+4])
		}
	}
	return out
}

var _ color.Color = color.RGBA{}
