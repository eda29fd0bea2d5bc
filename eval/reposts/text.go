package reposts

import (
	"image"
	"image/color"
	"image/draw"
	"math"
	"math/rand/v2"
	"sync"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
)

// The Go fonts (BSD licence, shipped in golang.org/x/image).
var fonts = sync.OnceValue(func() [2]*opentype.Font {
	b, err := opentype.Parse(gobold.TTF)
	if err != nil {
		panic(err)
	}
	r, err := opentype.Parse(goregular.TTF)
	if err != nil {
		panic(err)
	}
	return [2]*opentype.Font{b, r}
})

// face returns a face of the bold (or regular) Go font at size px.
func face(bold bool, px float64) font.Face {
	f := fonts()[1]
	if bold {
		f = fonts()[0]
	}
	fc, err := opentype.NewFace(f, &opentype.FaceOptions{Size: math.Max(px, 4), DPI: 72, Hinting: font.HintingNone})
	if err != nil {
		panic(err)
	}
	return fc
}

// drawText writes s with its baseline's left end at (x, y).
func drawText(dst draw.Image, s string, fc font.Face, c color.Color, x, y int) {
	d := font.Drawer{Dst: dst, Src: image.NewUniform(c), Face: fc, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func textWidth(s string, fc font.Face) int {
	return font.MeasureString(fc, s).Ceil()
}

// fitText returns a bold face at which s fits in width w and height h.
func fitText(s string, w, h int) font.Face {
	px := float64(h)
	for px > 6 {
		fc := face(true, px)
		if textWidth(s, fc) <= w {
			return fc
		}
		px *= 0.9
	}
	return face(true, 6)
}

var memeLines = []string{
	"WHEN YOU SEE IT", "NOBODY:", "ME EVERY MONDAY", "THIS IS FINE", "WAIT FOR IT", "TAG A FRIEND",
	"POV: YOU FORGOT", "IT'S NOT A PHASE MOM", "HOW IT STARTED", "SHARE IF YOU AGREE", "ONE DOES NOT SIMPLY",
	"MY PLANS VS 2026", "LOOK AT THIS", "THEY DON'T KNOW", "ME AFTER ONE COFFEE", "EXPECTATION", "REALITY",
	"SO TRUE", "CAN'T UNSEE", "BREAKING NEWS", "DAY 3 WITHOUT WIFI", "WHO DID THIS", "THE AUDACITY",
}

var handles = []string{"@memelord", "@daily.pics", "@viral_now", "@photo.share", "@funnyfeed", "@xmodal", "@repost.bot", "@newsflash", "@the.best.of", "@lolcats"}

// captionBand adds a white or black band of 15-25 % of the height, with
// one or two lines of text, above or below m. It returns the new image and
// where m's top-left corner went.
func captionBand(m *image.RGBA, r *rand.Rand) (*image.RGBA, image.Point) {
	w, h := m.Bounds().Dx(), m.Bounds().Dy()
	bh := max(int(math.Round(float64(h)*(0.15+0.10*r.Float64()))), 4)
	bg, fg := color.RGBA{255, 255, 255, 255}, color.RGBA{0, 0, 0, 255}
	if r.IntN(2) == 1 {
		bg, fg = fg, bg
	}
	above := r.IntN(2) == 0
	out := image.NewRGBA(image.Rect(0, 0, w, h+bh))
	band, at := image.Rect(0, 0, w, bh), image.Pt(0, bh)
	if !above {
		band, at = image.Rect(0, h, w, h+bh), image.Pt(0, 0)
	}
	draw.Draw(out, band, image.NewUniform(bg), image.Point{}, draw.Src)
	draw.Draw(out, image.Rectangle{Min: at, Max: at.Add(image.Pt(w, h))}, m, image.Point{}, draw.Src)
	lines := []string{memeLines[r.IntN(len(memeLines))]}
	if r.IntN(2) == 0 {
		lines = append(lines, memeLines[r.IntN(len(memeLines))])
	}
	lh := bh * 8 / 10 / len(lines)
	for i, s := range lines {
		fc := fitText(s, w*9/10, lh)
		tw := textWidth(s, fc)
		asc := fc.Metrics().Ascent.Ceil()
		y := band.Min.Y + (bh-lh*len(lines))/2 + i*lh + (lh+asc)/2 - lh/6
		drawText(out, s, fc, fg, (w-tw)/2, y)
		fc.Close()
	}
	return out, at
}

// watermark draws a handle or a word in semi-transparent white (with a
// faint dark outline) across or in a corner of m.
func watermark(m *image.RGBA, r *rand.Rand) *image.RGBA {
	w, h := m.Bounds().Dx(), m.Bounds().Dy()
	out := image.NewRGBA(m.Bounds())
	copy(out.Pix, m.Pix)
	s := handles[r.IntN(len(handles))]
	if r.IntN(3) == 0 {
		s = "SAMPLE"
	}
	alpha := uint8(80 + r.IntN(60)) // 30-55 % opaque
	var fc font.Face
	var x, y int
	if r.IntN(2) == 0 { // large, centred
		fc = fitText(s, w*7/10, h/5)
		x, y = (w-textWidth(s, fc))/2, h/2+fc.Metrics().Ascent.Ceil()/2
	} else { // corner
		fc = fitText(s, w*4/10, h/12)
		x, y = w-textWidth(s, fc)-w/30, h-h/25
		if r.IntN(2) == 0 {
			x = w / 30
		}
	}
	mask := image.NewAlpha(m.Bounds())
	drawText(mask, s, fc, color.Alpha{255}, x, y)
	fc.Close()
	for i, a := range mask.Pix {
		if a == 0 {
			continue
		}
		k := float64(a) / 255 * float64(alpha) / 255
		for c := range 3 {
			v := float64(out.Pix[4*i+c])
			out.Pix[4*i+c] = clamp8(v + (255-v)*k)
		}
	}
	return out
}
