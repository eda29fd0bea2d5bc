package synth

import (
	"image"
	"image/color"
	"image/draw"
	"math"
	"math/rand/v2"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
	"golang.org/x/image/vector"
)

// Base colours of the colour classes; each object jitters its brightness and
// channels a little.
var palette = map[string][3]float64{
	"red": {215, 35, 35}, "orange": {240, 135, 25}, "yellow": {240, 215, 35}, "green": {40, 165, 60},
	"blue": {35, 80, 215}, "purple": {135, 50, 175}, "white": {245, 245, 245}, "black": {22, 22, 22},
}

// Anchor points of the positions, as fractions of the side.
var anchors = map[string][2]float64{
	"top-left": {0.25, 0.25}, "top-right": {0.75, 0.25}, "center": {0.5, 0.5},
	"bottom-left": {0.25, 0.75}, "bottom-right": {0.75, 0.75},
}

// Object radii as fractions of the side.
var radii = map[string]float64{"small": 0.09, "large": 0.16}

var backgroundKinds = []string{"solid", "gradient", "stripes", "checker", "clouds", "dots"}

// Words overlaid on a share of the images (memes, screenshots). None of
// them names a colour or a shape.
var overlayWords = []string{"lol", "mood", "omg", "wow", "same", "nope", "yes", "epic", "fail", "win",
	"monday", "vibes", "sale", "new", "hot", "cool", "meh", "ok", "why", "bruh", "2024", "#tbt", "fyi",
	"hello", "big mood", "relatable", "me irl", "tfw", "yolo", "goals", "nice", "help", "oops", "hmm"}

// Render is what a picture was drawn with, apart from its scene.
type Render struct {
	Background  string  `json:"background"`
	Noise       float64 `json:"noise"`
	JPEGQuality int     `json:"jpeg_quality"`
	Word        string  `json:"word,omitempty"`
	WordStyle   string  `json:"word_style,omitempty"`
}

// draw paints scene s on a size×size canvas with r's randomness.
func paint(s Scene, r *rand.Rand, size int) (*image.RGBA, Render) {
	img := image.NewRGBA(image.Rect(0, 0, size, size))
	var info Render
	info.Background = background(img, r)
	order := r.Perm(len(s.Objects))
	for _, i := range order {
		drawObject(img, s.Objects[i], r)
	}
	if r.Float64() < 0.3 {
		info.Word, info.WordStyle = overlayWord(img, r)
	}
	if r.Float64() < 0.7 {
		info.Noise = math.Round(r.Float64()*10*10) / 10
		addNoise(img, info.Noise, r)
	}
	info.JPEGQuality = 35 + r.IntN(61)
	return img, info
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

// hsv converts h in [0,360), s and v in [0,1] to RGB in [0,255].
func hsv(h, s, v float64) [3]float64 {
	c := v * s
	x := c * (1 - math.Abs(math.Mod(h/60, 2)-1))
	m := v - c
	var rgb [3]float64
	switch {
	case h < 60:
		rgb = [3]float64{c, x, 0}
	case h < 120:
		rgb = [3]float64{x, c, 0}
	case h < 180:
		rgb = [3]float64{0, c, x}
	case h < 240:
		rgb = [3]float64{0, x, c}
	case h < 300:
		rgb = [3]float64{x, 0, c}
	default:
		rgb = [3]float64{c, 0, x}
	}
	for i := range rgb {
		rgb[i] = (rgb[i] + m) * 255
	}
	return rgb
}

// background fills img with a muted texture (low saturation, middle
// brightness, so that every colour class, white and black included, stands
// out) and returns its kind.
func background(img *image.RGBA, r *rand.Rand) string {
	kind := pick(r, backgroundKinds)
	c1 := hsv(r.Float64()*360, r.Float64()*0.3, 0.38+r.Float64()*0.34)
	c2 := c1
	d := 15 + r.Float64()*30
	if r.IntN(2) == 0 {
		d = -d
	}
	for i := range c2 {
		c2[i] += d + (r.Float64()-0.5)*12
	}
	n := img.Rect.Dx()
	theta := r.Float64() * math.Pi
	ct, st := math.Cos(theta), math.Sin(theta)
	period := float64(n) * (0.06 + r.Float64()*0.12)
	var grid [9][9]float64
	for i := range grid {
		for j := range grid[i] {
			grid[i][j] = r.Float64()
		}
	}
	for y := 0; y < n; y++ {
		for x := 0; x < n; x++ {
			fx, fy := float64(x)/float64(n), float64(y)/float64(n)
			var t float64
			switch kind {
			case "gradient":
				t = (fx-0.5)*ct + (fy-0.5)*st + 0.5
			case "stripes":
				u := (float64(x)*ct + float64(y)*st) / period
				t = 0.5 + 0.5*math.Sin(2*math.Pi*u)
				t = math.Min(1, math.Max(0, (t-0.5)*4+0.5))
			case "checker":
				cx, cy := int(math.Floor(float64(x)/period)), int(math.Floor(float64(y)/period))
				t = float64((cx + cy) & 1)
			case "clouds":
				gx, gy := fx*8, fy*8
				ix, iy := int(gx), int(gy)
				ax, ay := gx-float64(ix), gy-float64(iy)
				ax, ay = ax*ax*(3-2*ax), ay*ay*(3-2*ay)
				t = (1-ay)*((1-ax)*grid[iy][ix]+ax*grid[iy][ix+1]) + ay*((1-ax)*grid[iy+1][ix]+ax*grid[iy+1][ix+1])
			case "dots":
				u, v := math.Mod(float64(x), period)/period-0.5, math.Mod(float64(y), period)/period-0.5
				if u*u+v*v < 0.09 {
					t = 1
				}
			}
			o := img.PixOffset(x, y)
			for c := 0; c < 3; c++ {
				img.Pix[o+c] = clamp8(c1[c]*(1-t) + c2[c]*t)
			}
			img.Pix[o+3] = 255
		}
	}
	return kind
}

// shapeMask rasterises an object's silhouette into an alpha mask.
func shapeMask(shape string, cx, cy, rad, rot float64, n int) *image.Alpha {
	mask := image.NewAlpha(image.Rect(0, 0, n, n))
	poly := func(pts [][2]float64) {
		z := vector.NewRasterizer(n, n)
		for i, p := range pts {
			x, y := p[0]*math.Cos(rot)-p[1]*math.Sin(rot), p[0]*math.Sin(rot)+p[1]*math.Cos(rot)
			x, y = cx+x*rad, cy+y*rad
			if i == 0 {
				z.MoveTo(float32(x), float32(y))
			} else {
				z.LineTo(float32(x), float32(y))
			}
		}
		z.ClosePath()
		z.Draw(mask, mask.Bounds(), image.Opaque, image.Point{})
	}
	regular := func(k int, r0, phase float64) [][2]float64 {
		pts := make([][2]float64, k)
		for i := range pts {
			a := phase + 2*math.Pi*float64(i)/float64(k)
			pts[i] = [2]float64{r0 * math.Cos(a), r0 * math.Sin(a)}
		}
		return pts
	}
	switch shape {
	case "circle":
		poly(regular(48, 0.95, 0))
	case "square":
		poly([][2]float64{{-0.8, -0.8}, {0.8, -0.8}, {0.8, 0.8}, {-0.8, 0.8}})
	case "triangle":
		poly(regular(3, 1.05, -math.Pi/2))
	case "star":
		var pts [][2]float64
		for i := range 10 {
			r0 := 1.05
			if i%2 == 1 {
				r0 = 0.45
			}
			a := -math.Pi/2 + math.Pi*float64(i)/5
			pts = append(pts, [2]float64{r0 * math.Cos(a), r0 * math.Sin(a)})
		}
		poly(pts)
	case "heart":
		var pts [][2]float64
		for i := range 60 {
			t := 2 * math.Pi * float64(i) / 60
			x := 16 * math.Pow(math.Sin(t), 3)
			y := 13*math.Cos(t) - 5*math.Cos(2*t) - 2*math.Cos(3*t) - math.Cos(4*t)
			pts = append(pts, [2]float64{x / 16.5, -(y + 2.5) / 15.5})
		}
		poly(pts)
	case "cross":
		w := 0.32
		poly([][2]float64{{-w, -0.95}, {w, -0.95}, {w, -w}, {0.95, -w}, {0.95, w}, {w, w}, {w, 0.95}, {-w, 0.95}, {-w, w}, {-0.95, w}, {-0.95, -w}, {-w, -w}})
	case "diamond":
		poly([][2]float64{{0, -1.05}, {0.62, 0}, {0, 1.05}, {-0.62, 0}})
	case "moon":
		poly(regular(48, 0.95, 0))
		cut := image.NewAlpha(mask.Rect)
		z := vector.NewRasterizer(n, n)
		ox, oy := 0.42*math.Cos(rot-0.5), 0.42*math.Sin(rot-0.5)
		for i, p := range regular(48, 0.8, 0) {
			x, y := cx+(p[0]+ox)*rad, cy+(p[1]+oy)*rad
			if i == 0 {
				z.MoveTo(float32(x), float32(y))
			} else {
				z.LineTo(float32(x), float32(y))
			}
		}
		z.ClosePath()
		z.Draw(cut, cut.Bounds(), image.Opaque, image.Point{})
		for i := range mask.Pix {
			mask.Pix[i] = uint8(int(mask.Pix[i]) * (255 - int(cut.Pix[i])) / 255)
		}
	}
	return mask
}

// drawObject paints one object: position jitter, radius jitter, a small
// rotation, colour jitter and a flat, shaded or striped fill.
func drawObject(img *image.RGBA, o Object, r *rand.Rand) {
	n := img.Rect.Dx()
	a := anchors[o.Position]
	cx := (a[0] + (r.Float64()-0.5)*0.1) * float64(n)
	cy := (a[1] + (r.Float64()-0.5)*0.1) * float64(n)
	rad := radii[o.Size] * (0.9 + r.Float64()*0.2) * float64(n)
	rot := (r.Float64() - 0.5) * (20 * math.Pi / 180)
	mask := shapeMask(o.Shape, cx, cy, rad, rot, n)
	base := palette[o.Colour]
	bright := 0.88 + r.Float64()*0.2
	var col [3]float64
	for c := range col {
		col[c] = base[c]*bright + (r.Float64()-0.5)*20
	}
	fill := r.IntN(10) // 0-5 flat, 6-8 shaded, 9 striped
	gdir := r.Float64() * 2 * math.Pi
	for y := 0; y < n; y++ {
		for x := 0; x < n; x++ {
			m := mask.Pix[y*mask.Stride+x]
			if m == 0 {
				continue
			}
			f := 1.0
			dx, dy := (float64(x)-cx)/rad, (float64(y)-cy)/rad
			switch {
			case fill >= 6 && fill <= 8:
				f = 1 + 0.15*(dx*math.Cos(gdir)+dy*math.Sin(gdir))
			case fill == 9:
				if int(math.Floor((dx+dy+4)*3))%2 == 0 {
					f = 0.85
				}
			}
			al := float64(m) / 255
			o := img.PixOffset(x, y)
			for c := 0; c < 3; c++ {
				v := col[c] * f
				if col[c] > 235 && f > 1 { // keep white white
					v = col[c]
				}
				img.Pix[o+c] = clamp8(float64(img.Pix[o+c])*(1-al) + v*al)
			}
		}
	}
}

// overlayWord writes a short word in the 7x13 bitmap font, at 1x or 2x, as
// a meme caption (white with a black outline), a screenshot bar (black on a
// white band) or plain black or white text.
func overlayWord(img *image.RGBA, r *rand.Rand) (string, string) {
	word := pick(r, overlayWords)
	style := pick(r, []string{"meme", "bar", "plain"})
	scale := 1
	if style != "bar" && r.IntN(10) < 2 {
		scale = 2
	}
	face := basicfont.Face7x13
	tw := font.MeasureString(face, word).Ceil()
	th := 13
	n := img.Rect.Dx()
	// Render at 1x on a transparent layer, then blit scaled.
	layer := image.NewRGBA(image.Rect(0, 0, tw+2, th+2))
	fg, outline := color.RGBA{255, 255, 255, 255}, color.RGBA{0, 0, 0, 255}
	switch style {
	case "bar":
		fg = color.RGBA{10, 10, 10, 255}
	case "plain":
		if r.IntN(2) == 0 {
			fg = color.RGBA{10, 10, 10, 255}
		}
	}
	put := func(c color.RGBA, dx, dy int) {
		d := &font.Drawer{Dst: layer, Src: image.NewUniform(c), Face: face, Dot: fixed.P(1+dx, 1+11+dy)}
		d.DrawString(word)
	}
	if style == "meme" {
		for _, d := range [][2]int{{-1, 0}, {1, 0}, {0, -1}, {0, 1}} {
			put(outline, d[0], d[1])
		}
	}
	put(fg, 0, 0)
	lw, lh := layer.Rect.Dx()*scale, layer.Rect.Dy()*scale
	x0 := r.IntN(max(1, n-lw))
	// Bars and large text sit at the top or bottom edge; small text anywhere.
	var y0 int
	switch r.IntN(3) {
	case 0:
		y0 = 0
	case 1:
		y0 = n - lh
	default:
		y0 = r.IntN(max(1, n-lh))
		if style == "bar" || scale > 1 {
			y0 = 0
		}
	}
	if style == "bar" {
		draw.Draw(img, image.Rect(0, y0, n, y0+lh), image.NewUniform(color.RGBA{250, 250, 250, 255}), image.Point{}, draw.Src)
	}
	for y := 0; y < lh; y++ {
		for x := 0; x < lw; x++ {
			px, py := x0+x, y0+y
			if px < 0 || py < 0 || px >= n || py >= n {
				continue
			}
			src := layer.RGBAAt(x/scale, y/scale)
			if src.A == 0 {
				continue
			}
			al := float64(src.A) / 255
			o := img.PixOffset(px, py)
			s := [3]uint8{src.R, src.G, src.B}
			for c := 0; c < 3; c++ {
				// premultiplied source over destination
				img.Pix[o+c] = clamp8(float64(s[c]) + float64(img.Pix[o+c])*(1-al))
			}
		}
	}
	return word, style
}

// addNoise adds Gaussian noise of standard deviation sigma (in levels).
func addNoise(img *image.RGBA, sigma float64, r *rand.Rand) {
	for i := 0; i < len(img.Pix); i += 4 {
		for c := 0; c < 3; c++ {
			img.Pix[i+c] = clamp8(float64(img.Pix[i+c]) + r.NormFloat64()*sigma)
		}
	}
}
