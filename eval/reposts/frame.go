package reposts

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"math"
	"math/rand/v2"
)

// screenshot draws m scaled into a phone app or a browser window: bars
// with status text, icons, margins and lines of text around the picture.
// It returns the screenshot and the rectangle where m went.
func screenshot(m *image.RGBA, r *rand.Rand) (*image.RGBA, image.Rectangle) {
	if r.IntN(2) == 0 {
		return phone(m, r)
	}
	return browser(m, r)
}

type theme struct{ bg, bar, fg, dim, accent color.RGBA }

func pickTheme(r *rand.Rand) theme {
	accents := []color.RGBA{{29, 155, 240, 255}, {225, 48, 108, 255}, {24, 119, 242, 255}, {255, 69, 0, 255}, {0, 150, 136, 255}}
	a := accents[r.IntN(len(accents))]
	if r.IntN(2) == 0 {
		return theme{bg: color.RGBA{255, 255, 255, 255}, bar: color.RGBA{246, 246, 248, 255}, fg: color.RGBA{20, 20, 20, 255}, dim: color.RGBA{120, 120, 125, 255}, accent: a}
	}
	return theme{bg: color.RGBA{0, 0, 0, 255}, bar: color.RGBA{22, 24, 28, 255}, fg: color.RGBA{235, 235, 235, 255}, dim: color.RGBA{140, 140, 145, 255}, accent: a}
}

func fill(dst *image.RGBA, rect image.Rectangle, c color.RGBA) {
	draw.Draw(dst, rect, image.NewUniform(c), image.Point{}, draw.Src)
}

func disc(dst *image.RGBA, cx, cy, rad int, c color.RGBA) {
	for y := cy - rad; y <= cy+rad; y++ {
		for x := cx - rad; x <= cx+rad; x++ {
			if (x-cx)*(x-cx)+(y-cy)*(y-cy) <= rad*rad && image.Pt(x, y).In(dst.Bounds()) {
				dst.SetRGBA(x, y, c)
			}
		}
	}
}

// textLines writes n lines of grey "text" (words) in rect.
func textLines(dst *image.RGBA, rect image.Rectangle, n int, size float64, c color.RGBA, r *rand.Rand) {
	fc := face(false, size)
	defer fc.Close()
	words := []string{"so", "this", "happened", "today", "and", "honestly", "can't", "believe", "it", "look", "at",
		"the", "view", "from", "here", "#nofilter", "#travel", "love", "it", "when", "you", "see", "what", "wow"}
	lh := int(size * 1.4)
	for i := range n {
		y := rect.Min.Y + (i+1)*lh
		if y > rect.Max.Y {
			break
		}
		s := ""
		for len(s) < 60 {
			s += words[r.IntN(len(words))] + " "
		}
		for textWidth(s, fc) > rect.Dx() && len(s) > 1 {
			s = s[:len(s)-1]
		}
		drawText(dst, s, fc, c, rect.Min.X, y)
	}
}

// placeScaled draws m into box, scaled to fit its width (or height),
// centred, and returns where it went.
func placeScaled(dst *image.RGBA, m *image.RGBA, box image.Rectangle) image.Rectangle {
	w, h := m.Bounds().Dx(), m.Bounds().Dy()
	s := math.Min(float64(box.Dx())/float64(w), float64(box.Dy())/float64(h))
	nw, nh := max(int(math.Round(float64(w)*s)), 1), max(int(math.Round(float64(h)*s)), 1)
	at := image.Rect(box.Min.X+(box.Dx()-nw)/2, box.Min.Y, box.Min.X+(box.Dx()-nw)/2+nw, box.Min.Y+nh)
	sm := resize(m, nw, nh)
	draw.Draw(dst, at, sm, image.Point{}, draw.Src)
	return at
}

// phone: a 9:19.5 portrait screen with a status bar, an app header with
// an avatar and a name, the picture at full width (or with margins), text
// and a bottom bar of icons.
func phone(m *image.RGBA, r *rand.Rand) (*image.RGBA, image.Rectangle) {
	W := 540 + 60*r.IntN(4)
	H := W * 195 / 90
	t := pickTheme(r)
	out := image.NewRGBA(image.Rect(0, 0, W, H))
	fill(out, out.Bounds(), t.bg)
	u := W / 36 // unit
	status := image.Rect(0, 0, W, 3*u)
	fill(out, status, t.bar)
	sf := face(true, float64(u)*1.6)
	drawText(out, fmt.Sprintf("%d:%02d", 1+r.IntN(12), r.IntN(60)), sf, t.fg, 2*u, 2*u+u/3)
	sf.Close()
	for i := range 3 { // signal, wifi, battery
		fill(out, image.Rect(W-(4+5*i)*u, u, W-(1+5*i)*u-u, 2*u+u/2), t.fg)
	}
	header := image.Rect(0, status.Max.Y, W, status.Max.Y+5*u)
	fill(out, header, t.bg)
	disc(out, 3*u, header.Min.Y+5*u/2, 3*u/2, t.accent)
	hf := face(true, float64(u)*1.5)
	drawText(out, handles[r.IntN(len(handles))], hf, t.fg, 6*u, header.Min.Y+3*u)
	hf.Close()
	margin := 0
	if r.IntN(2) == 0 {
		margin = u * (1 + r.IntN(2))
	}
	box := image.Rect(margin, header.Max.Y+u/2, W-margin, H-14*u)
	at := placeScaled(out, m, box)
	textLines(out, image.Rect(2*u, at.Max.Y+u, W-2*u, H-6*u), 3, float64(u)*1.3, t.fg, r)
	nav := image.Rect(0, H-5*u, W, H)
	fill(out, nav, t.bar)
	for i := range 5 {
		cx := W*(2*i+1)/10 - u
		fill(out, image.Rect(cx, nav.Min.Y+3*u/2, cx+2*u, nav.Min.Y+7*u/2), t.dim)
	}
	return out, at
}

// browser: a 16:10 window with a tab strip, an address bar, a page header
// and the picture in a column with text beside or below.
func browser(m *image.RGBA, r *rand.Rand) (*image.RGBA, image.Rectangle) {
	W := 1024 + 128*r.IntN(3)
	H := W * 10 / 16
	t := pickTheme(r)
	out := image.NewRGBA(image.Rect(0, 0, W, H))
	fill(out, out.Bounds(), t.bg)
	u := W / 80
	tabs := image.Rect(0, 0, W, 3*u)
	fill(out, tabs, color.RGBA{t.bar.R / 2, t.bar.G / 2, t.bar.B / 2, 255})
	tf := face(false, float64(u)*1.2)
	fill(out, image.Rect(u, u/2, 18*u, 3*u), t.bar)
	drawText(out, "Photos - xmodal", tf, t.fg, 2*u, 2*u+u/4)
	addr := image.Rect(0, tabs.Max.Y, W, tabs.Max.Y+3*u)
	fill(out, addr, t.bar)
	fill(out, image.Rect(8*u, addr.Min.Y+u/2, W-8*u, addr.Max.Y-u/2), t.bg)
	drawText(out, fmt.Sprintf("https://social.example/p/%08x", r.Uint32()), tf, t.dim, 9*u, addr.Min.Y+2*u+u/4)
	tf.Close()
	head := image.Rect(0, addr.Max.Y, W, addr.Max.Y+4*u)
	fill(out, head, t.accent)
	colW := W * (45 + r.IntN(20)) / 100
	x0 := (W - colW) / 2
	if r.IntN(2) == 0 {
		x0 = 6 * u
	}
	box := image.Rect(x0, head.Max.Y+2*u, x0+colW, H-2*u)
	at := placeScaled(out, m, box)
	if x0 < W/4 {
		textLines(out, image.Rect(at.Max.X+2*u, head.Max.Y+2*u, W-2*u, H-2*u), 12, float64(u)*1.1, t.fg, r)
	} else {
		textLines(out, image.Rect(x0, at.Max.Y+u, x0+colW, H-u), 4, float64(u)*1.1, t.fg, r)
	}
	return out, at
}
