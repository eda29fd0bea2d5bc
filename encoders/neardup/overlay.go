package neardup

// Overlay-cleaned query planes. A large semi-transparent watermark across
// a cropped copy defeats both the cleaned hash (the crop moves it) and the
// windows: the lettering's strokes are the plane's strongest blobs, so
// every window of the query is anchored on the text and hashes mostly
// text. On the generated crop90+watermark misses of the eval, the nearest
// query window to each of the original's windows lay 80-100 bits away.
//
// Opening the whole plane (cleanPlane) removes the strokes, but also the
// picture's own small bright details, on which the original's windows are
// anchored. So the query opens only where lifted pixels are dense, as
// lettering is: a pixel is cleaned when the opening lowers it by more than
// cleanLift and more than overlayDensity of the pixels around it (a square
// three times the opening's side) are lowered as well. The windows of that
// plane are searched besides the plain plane's (at workSide and at
// nearCropScale: overlayPlanes), and the pixel check, which the
// lettering's detail fails, reads the cleaned plane where the plain one
// fails. In a 200-picture run, 18 of the 46 missed crop90+watermark
// re-posts then had two or more windows within 20 bits of the original's,
// against none, and the run found 0.920 of them against 0.770
// (docs/neardup.md).
const (
	overlayDensity = 0.15
	// overlayMinShare is the least share of the plane the dense region
	// must cover for the cleaned plane to be searched: a plane with no
	// lettering adds no windows.
	overlayMinShare = 0.02
	// overlayPlanes: the query's first working sizes (workSide,
	// nearCropScale) that are also searched cleaned; the cropScale plane
	// added nothing in the run above.
	overlayPlanes = 2
)

// overlayCleaned returns p with its dense bright thin strokes opened away,
// and whether there were enough of them (overlayMinShare) to be worth
// searching. p is not changed.
func (h *Hasher) overlayCleaned(p *plane) (*plane, bool) {
	n := len(p.p)
	if n == 0 {
		return nil, false
	}
	opened := &plane{w: p.w, h: p.h, p: append([]float32(nil), p.p...)}
	k := cleanSquare(p)
	h.openLifted(opened, k)
	// Integral image of the lifted pixels (those the opening changed).
	w1 := p.w + 1
	ii := make([]int32, w1*(p.h+1))
	lifted := 0
	for y := range p.h {
		var row int32
		for x := range p.w {
			i := y*p.w + x
			if opened.p[i] != p.p[i] {
				row++
				lifted++
			}
			ii[(y+1)*w1+x+1] = ii[y*w1+x+1] + row
		}
	}
	if float64(lifted) < overlayMinShare*overlayDensity*float64(n) {
		return nil, false
	}
	r := 3 * k / 2
	out := &plane{w: p.w, h: p.h, p: append([]float32(nil), p.p...)}
	region := 0
	for y := range p.h {
		y0, y1 := max(y-r, 0), min(y+r+1, p.h)
		for x := range p.w {
			x0, x1 := max(x-r, 0), min(x+r+1, p.w)
			s := ii[y1*w1+x1] - ii[y0*w1+x1] - ii[y1*w1+x0] + ii[y0*w1+x0]
			if float64(s) > overlayDensity*float64((x1-x0)*(y1-y0)) {
				region++
				i := y*p.w + x
				out.p[i] = opened.p[i]
			}
		}
	}
	if float64(region) < overlayMinShare*float64(n) {
		return nil, false
	}
	return out, true
}
