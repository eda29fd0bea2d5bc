package reposts

import (
	"image"
	"image/color"
	"math"
	"math/rand/v2"
)

// Families of generated photo-like scenes. Two pictures of one family
// share layout and palette (sky above a skyline or horizon, the same kind
// of foreground), so they stand in for "different photos of similar
// content": the distractors a near-duplicate method must not confuse.
var Families = []string{"mountains", "coast", "city", "forest", "field"}

// Photo draws a photo-like picture: a sky gradient with clouds, two to four
// fractal ridgelines or a horizon, textured ground, objects of the family
// (buildings with windows, trees, rocks, boats, a sun), lens vignetting,
// blur and sensor noise. Everything comes from seed; family indexes
// Families. The pictures are not photos (no real optics or objects) but
// have their statistics where hashing cares: smooth gradients, textured
// regions, edges at many scales, no uniform borders.
func Photo(family int, seed uint64, w, h int) *image.RGBA {
	r := rand.New(rand.NewPCG(seed, uint64(family)*0x9e3779b97f4a7c15+1))
	fam := Families[family%len(Families)]
	// The scene is drawn at half resolution and upscaled; sensor noise is
	// added at full resolution.
	fw, fh := w, h
	w, h = max((w+1)/2, 2), max((h+1)/2, 2)
	c := newCanvas(w, h)
	// Sky.
	top := hsv(200+40*r.Float64(), 0.3+0.5*r.Float64(), 0.55+0.4*r.Float64())
	bot := hsv(20+200*r.Float64(), 0.1+0.4*r.Float64(), 0.7+0.3*r.Float64())
	if r.IntN(5) == 0 { // sunset
		top, bot = hsv(260+40*r.Float64(), 0.5, 0.35), hsv(20+25*r.Float64(), 0.8, 0.95)
	}
	clouds := newNoise(r, 4)
	cloudAmt := r.Float64() * 0.6
	for y := range h {
		t := float64(y) / float64(h)
		for x := range w {
			n := clouds.at(float64(x)/float64(w)*3, float64(y)/float64(h)*6)
			k := math.Max(0, n-0.45) * 2 * cloudAmt
			for ch := range 3 {
				v := top[ch]*(1-t) + bot[ch]*t
				c.set(x, y, ch, v*(1-k)+245*k)
			}
		}
	}
	if r.IntN(3) == 0 { // sun or moon
		sx, sy, sr := r.Float64()*float64(w), r.Float64()*float64(h)*0.35, (0.03+0.05*r.Float64())*float64(h)
		c.disc(sx, sy, sr, [3]float64{255, 240, 200}, 0.95)
	}
	horizon := 0.35 + 0.3*r.Float64()
	switch fam {
	case "mountains", "forest":
		layers := 2 + r.IntN(3)
		base := hsv(80+80*r.Float64(), 0.2+0.4*r.Float64(), 0.3+0.3*r.Float64())
		for l := range layers {
			depth := float64(l) / float64(layers)
			col := mix(base, top, 0.6*(1-depth))
			ridge := fractal1D(r, w, 0.25*(1-depth*0.5), 7)
			y0 := horizon - 0.2 + 0.18*float64(l)
			tex := newNoise(r, 4)
			c.fillBelow(func(x int) float64 { return (y0 + ridge[x]) * float64(h) }, func(x, y int) [3]float64 {
				n := tex.at(float64(x)/float64(w)*8, float64(y)/float64(h)*8)
				return scale3(col, 0.7+0.6*n)
			})
		}
		if fam == "forest" {
			for range 15 + r.IntN(30) {
				x := r.Float64() * float64(w)
				y := (horizon + (1-horizon)*r.Float64()) * float64(h)
				s := (0.04 + 0.12*r.Float64()) * float64(h) * (y / float64(h))
				c.tree(x, y, s, hsv(90+50*r.Float64(), 0.5+0.4*r.Float64(), 0.2+0.35*r.Float64()))
			}
		}
	case "coast":
		sea := hsv(190+30*r.Float64(), 0.4+0.4*r.Float64(), 0.35+0.4*r.Float64())
		sand := hsv(35+15*r.Float64(), 0.3+0.3*r.Float64(), 0.7+0.25*r.Float64())
		shore := horizon + (1-horizon)*(0.3+0.4*r.Float64())
		waves := newNoise(r, 4)
		sline := fractal1D(r, w, 0.08, 6)
		c.fillBelow(func(int) float64 { return horizon * float64(h) }, func(x, y int) [3]float64 {
			n := waves.at(float64(x)/float64(w)*20, float64(y)/float64(h)*60)
			return scale3(sea, 0.75+0.5*n)
		})
		tex := newNoise(r, 4)
		c.fillBelow(func(x int) float64 { return (shore + sline[x]) * float64(h) }, func(x, y int) [3]float64 {
			return scale3(sand, 0.8+0.4*tex.at(float64(x)/float64(w)*30, float64(y)/float64(h)*30))
		})
		for range r.IntN(4) {
			x, y := r.Float64()*float64(w), (horizon+0.02+(shore-horizon)*r.Float64())*float64(h)
			s := 0.03 * float64(h) * (1 + 3*(y/float64(h)-horizon))
			c.rect(x-s, y-s/3, x+s, y, [3]float64{240, 240, 235})
			c.rect(x-s/10, y-2*s, x+s/10, y-s/3, [3]float64{90, 60, 40})
		}
	case "city":
		ground := horizon + 0.25
		x := -r.Float64() * 40
		for x < float64(w) {
			bw := (0.05 + 0.12*r.Float64()) * float64(w)
			bh := (0.15 + 0.45*r.Float64()) * float64(h)
			col := hsv(r.Float64()*360, 0.1+0.3*r.Float64(), 0.3+0.5*r.Float64())
			y1 := ground * float64(h)
			c.rect(x, y1-bh, x+bw, y1, col)
			win := scale3(col, 0.5+r.Float64())
			if r.IntN(2) == 0 {
				win = [3]float64{240, 220, 150}
			}
			cols, rows := 2+r.IntN(5), 3+r.IntN(10)
			for i := range cols {
				for j := range rows {
					if r.IntN(5) == 0 {
						continue
					}
					wx := x + bw*(float64(i)+0.25)/float64(cols)
					wy := y1 - bh + bh*(float64(j)+0.2)/float64(rows)
					c.rect(wx, wy, wx+bw*0.5/float64(cols), wy+bh*0.5/float64(rows), win)
				}
			}
			x += bw + r.Float64()*0.03*float64(w)
		}
		road := hsv(0, 0, 0.25+0.2*r.Float64())
		tex := newNoise(r, 4)
		c.fillBelow(func(int) float64 { return ground * float64(h) }, func(x, y int) [3]float64 {
			return scale3(road, 0.8+0.4*tex.at(float64(x)/float64(w)*40, float64(y)/float64(h)*40))
		})
		for range r.IntN(6) { // cars
			cx, cy := r.Float64()*float64(w), (ground+0.05+0.3*r.Float64())*float64(h)
			s := 0.04 * float64(h)
			c.rect(cx-2*s, cy-s, cx+2*s, cy, hsv(r.Float64()*360, 0.7, 0.7))
		}
	case "field":
		crop := hsv(40+80*r.Float64(), 0.4+0.4*r.Float64(), 0.5+0.4*r.Float64())
		rows := newNoise(r, 4)
		freq := 20 + 60*r.Float64()
		c.fillBelow(func(int) float64 { return horizon * float64(h) }, func(x, y int) [3]float64 {
			fy := (float64(y)/float64(h) - horizon) / (1 - horizon)
			stripe := 0.5 + 0.5*math.Sin(float64(x)/float64(w)*freq/(0.2+fy)+fy*10)
			n := rows.at(float64(x)/float64(w)*6, float64(y)/float64(h)*6)
			return scale3(crop, 0.6+0.25*stripe+0.4*n)
		})
		for range r.IntN(8) {
			x, y := r.Float64()*float64(w), (horizon+(1-horizon)*r.Float64())*float64(h)
			c.tree(x, y, (0.05+0.1*r.Float64())*float64(h), hsv(100+30*r.Float64(), 0.5, 0.3))
		}
	}
	// Rocks or bushes in front.
	for range r.IntN(5) {
		x, y := r.Float64()*float64(w), (0.8+0.2*r.Float64())*float64(h)
		c.disc(x, y, (0.02+0.06*r.Float64())*float64(h), hsv(r.Float64()*60, 0.2, 0.2+0.4*r.Float64()), 1)
	}
	c.finish(r, fw, fh)
	return c.img
}

type canvas struct {
	w, h int
	f    []float64
	img  *image.RGBA
}

func newCanvas(w, h int) *canvas {
	return &canvas{w: w, h: h, f: make([]float64, 3*w*h)}
}

func (c *canvas) set(x, y, ch int, v float64) { c.f[3*(y*c.w+x)+ch] = v }

func (c *canvas) blend(x, y int, col [3]float64, a float64) {
	if x < 0 || y < 0 || x >= c.w || y >= c.h {
		return
	}
	i := 3 * (y*c.w + x)
	for ch := range 3 {
		c.f[i+ch] = c.f[i+ch]*(1-a) + col[ch]*a
	}
}

// fillBelow paints every pixel below the line edge(x) with paint(x, y),
// antialiasing the edge.
func (c *canvas) fillBelow(edge func(int) float64, paint func(x, y int) [3]float64) {
	for x := range c.w {
		e := edge(x)
		for y := max(int(math.Floor(e)), 0); y < c.h; y++ {
			a := math.Min(1, float64(y)+1-e)
			if a <= 0 {
				continue
			}
			c.blend(x, y, paint(x, y), a)
		}
	}
}

func (c *canvas) rect(x0, y0, x1, y1 float64, col [3]float64) {
	for y := max(int(y0), 0); y < min(int(math.Ceil(y1)), c.h); y++ {
		for x := max(int(x0), 0); x < min(int(math.Ceil(x1)), c.w); x++ {
			a := cover(float64(x), x0, x1) * cover(float64(y), y0, y1)
			c.blend(x, y, col, a)
		}
	}
}

// cover is how much of pixel [p, p+1) lies in [a, b).
func cover(p, a, b float64) float64 { return math.Max(0, math.Min(p+1, b)-math.Max(p, a)) }

func (c *canvas) disc(cx, cy, rad float64, col [3]float64, alpha float64) {
	for y := max(int(cy-rad-1), 0); y < min(int(cy+rad+2), c.h); y++ {
		for x := max(int(cx-rad-1), 0); x < min(int(cx+rad+2), c.w); x++ {
			d := math.Hypot(float64(x)+0.5-cx, float64(y)+0.5-cy)
			if a := math.Min(1, rad+0.5-d); a > 0 {
				c.blend(x, y, scale3(col, 0.85+0.15*(1-d/rad)), a*alpha)
			}
		}
	}
}

func (c *canvas) tree(x, y, s float64, col [3]float64) {
	c.rect(x-s*0.06, y-s*0.4, x+s*0.06, y, [3]float64{80, 55, 35})
	for i := range 3 {
		fi := float64(i)
		c.disc(x, y-s*(0.5+0.25*fi), s*(0.35-0.08*fi), col, 1)
	}
}

// finish applies vignetting, a slight blur and sensor noise, and writes
// the 8-bit image.
func (c *canvas) finish(r *rand.Rand, fw, fh int) {
	w, h := c.w, c.h
	vig := 0.2 + 0.3*r.Float64()
	sigma := 2 + 4*r.Float64()
	c.img = image.NewRGBA(image.Rect(0, 0, fw, fh))
	sx, sy := float64(w)/float64(fw), float64(h)/float64(fh)
	// Sensor noise from a table of normal deviates, walked by xorshift.
	var gauss [4096]float64
	for i := range gauss {
		gauss[i] = r.NormFloat64() * sigma
	}
	st := r.Uint64() | 1
	for y := range fh {
		gy := math.Max((float64(y)+0.5)*sy-0.5, 0)
		y0 := min(int(gy), h-1)
		y1 := min(y0+1, h-1)
		ty := gy - float64(y0)
		for x := range fw {
			gx := math.Max((float64(x)+0.5)*sx-0.5, 0)
			x0 := min(int(gx), w-1)
			x1 := min(x0+1, w-1)
			tx := gx - float64(x0)
			dx, dy := (float64(x)/float64(fw) - 0.5), (float64(y)/float64(fh) - 0.5)
			v := 1 - vig*(dx*dx+dy*dy)*2
			o := c.img.PixOffset(x, y)
			for ch := range 3 {
				a := c.f[3*(y0*w+x0)+ch]*(1-tx) + c.f[3*(y0*w+x1)+ch]*tx
				b := c.f[3*(y1*w+x0)+ch]*(1-tx) + c.f[3*(y1*w+x1)+ch]*tx
				st ^= st << 13
				st ^= st >> 7
				st ^= st << 17
				c.img.Pix[o+ch] = clamp8((a*(1-ty)+b*ty)*v + gauss[st&4095])
			}
			c.img.Pix[o+3] = 255
		}
	}
}

// noise is value noise: a lattice of random values, smoothly interpolated,
// summed over octaves (0..1).
type noise struct {
	oct  int
	grid [][]float64
	n    int
}

func newNoise(r *rand.Rand, octaves int) *noise {
	const n = 64
	nz := &noise{oct: octaves, n: n}
	nz.grid = make([][]float64, octaves)
	for o := range nz.grid {
		g := make([]float64, n*n)
		for i := range g {
			g[i] = r.Float64()
		}
		nz.grid[o] = g
	}
	return nz
}

func (nz *noise) at(x, y float64) float64 {
	s, amp, tot := 0.0, 1.0, 0.0
	for o, g := range nz.grid {
		f := float64(int(1) << o)
		s += amp * lattice(g, nz.n, x*f, y*f)
		tot += amp
		amp *= 0.5
	}
	return s / tot
}

func lattice(g []float64, n int, x, y float64) float64 {
	x0, y0 := math.Floor(x), math.Floor(y)
	fx, fy := x-x0, y-y0
	fx, fy = fx*fx*(3-2*fx), fy*fy*(3-2*fy)
	m := n - 1 // n is a power of two
	i0, j0 := int(x0)&m, int(y0)&m
	i1, j1 := (i0+1)&m, (j0+1)&m
	a := g[j0*n+i0]*(1-fx) + g[j0*n+i1]*fx
	b := g[j1*n+i0]*(1-fx) + g[j1*n+i1]*fx
	return a*(1-fy) + b*fy
}

// fractal1D is a midpoint-displacement ridgeline of w samples with
// amplitude amp (fraction of the height).
func fractal1D(r *rand.Rand, w int, amp float64, levels int) []float64 {
	n := 1 << levels
	pts := make([]float64, n+1)
	pts[0], pts[n] = (r.Float64()-0.5)*amp, (r.Float64()-0.5)*amp
	a := amp
	for step := n; step > 1; step /= 2 {
		for i := step / 2; i < n; i += step {
			pts[i] = (pts[i-step/2]+pts[i+step/2])/2 + (r.Float64()-0.5)*a
		}
		a *= 0.55
	}
	out := make([]float64, w)
	for x := range out {
		t := float64(x) / float64(max(w-1, 1)) * float64(n)
		i := min(int(t), n-1)
		f := t - float64(i)
		out[x] = pts[i]*(1-f) + pts[i+1]*f
	}
	return out
}

func hsv(hue, s, v float64) [3]float64 {
	hue = math.Mod(hue, 360)
	c := v * s
	x := c * (1 - math.Abs(math.Mod(hue/60, 2)-1))
	m := v - c
	var rgb [3]float64
	switch {
	case hue < 60:
		rgb = [3]float64{c, x, 0}
	case hue < 120:
		rgb = [3]float64{x, c, 0}
	case hue < 180:
		rgb = [3]float64{0, c, x}
	case hue < 240:
		rgb = [3]float64{0, x, c}
	case hue < 300:
		rgb = [3]float64{x, 0, c}
	default:
		rgb = [3]float64{c, 0, x}
	}
	return [3]float64{(rgb[0] + m) * 255, (rgb[1] + m) * 255, (rgb[2] + m) * 255}
}

func mix(a, b [3]float64, t float64) [3]float64 {
	return [3]float64{a[0]*(1-t) + b[0]*t, a[1]*(1-t) + b[1]*t, a[2]*(1-t) + b[2]*t}
}

func scale3(a [3]float64, k float64) [3]float64 { return [3]float64{a[0] * k, a[1] * k, a[2] * k} }

var _ color.Color = color.RGBA{}
