//go:build cgo && amd64

package neardup

import (
	"fmt"
	"image"
	"math"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
)

// avx2Modes are the builds of the C kernels this CPU runs: the baseline
// one, and the AVX2 one where the CPU has it.
func avx2Modes() []bool {
	if cpuAVX2 {
		return []bool{false, true}
	}
	return []bool{false}
}

// randPlane is a w x h plane of random grey levels; levels > 0 quantises
// them to that many values (flat runs and ties).
func randPlane(r *rand.Rand, w, h, levels int) *plane {
	p := &plane{w: w, h: h, p: make([]float32, w*h)}
	for i := range p.p {
		if levels > 0 {
			p.p[i] = float32(r.IntN(levels)) * 255 / float32(levels)
		} else {
			p.p[i] = 255 * r.Float32()
		}
	}
	return p
}

func sameBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: [%d] = %v (%#x), want %v (%#x)", what, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

var kernelSizes = [][2]int{{1, 1}, {2, 3}, {5, 4}, {16, 16}, {17, 31}, {31, 17}, {33, 200}, {192, 144}, {191, 127}, {7, 192}}

func TestFastBlurMatchesGo(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, avx2 := range avx2Modes() {
		fs := fastScratch{avx2: avx2}
		for _, sz := range kernelSizes {
			for _, sigma := range []float64{0.3, 0.9, 1.2489, 1.6, 2.5, 4, 9} {
				for _, levels := range []int{0, 3} {
					g := randPlane(r, sz[0], sz[1], levels)
					want := gaussBlurBuf(g, sigma, nil)
					got := fs.blurInto(g, sigma, make([]float32, len(g.p)))
					sameBits(t, fmt.Sprintf("avx2 %v %dx%d sigma %v", avx2, sz[0], sz[1], sigma), got.p, want.p)
				}
			}
		}
	}
}

func TestFastScaleSpaceAndDetectMatchGo(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, avx2 := range avx2Modes() {
		fs := fastScratch{avx2: avx2}
		found := 0
		for _, sz := range [][2]int{{16, 16}, {17, 16}, {33, 35}, {64, 17}, {192, 144}, {131, 192}, {192, 20}} {
			for _, levels := range []int{0, 2, 5} {
				p := randPlane(r, sz[0], sz[1], levels)
				name := fmt.Sprintf("avx2 %v %dx%d levels %d", avx2, sz[0], sz[1], levels)
				want := buildScaleSpace(p, 3)
				got := fs.buildScaleSpace(p, 3)
				if len(got.octaves) != len(want.octaves) || !reflect.DeepEqual(got.sigmas, want.sigmas) || !reflect.DeepEqual(got.scale, want.scale) {
					t.Fatalf("%s: octaves %d sigmas %v, want %d %v", name, len(got.octaves), got.sigmas, len(want.octaves), want.sigmas)
				}
				for o := range want.octaves {
					for i := range want.octaves[o] {
						sameBits(t, fmt.Sprintf("%s octave %d level %d", name, o, i), got.octaves[o][i].p, want.octaves[o][i].p)
					}
				}
				// Thresholds equal to the response of some extrema too (|v|
				// >= minResp keeps them).
				resps := []float64{1e-3, 0.1, 0.5 + 1e-9, 3}
				if lv := want.octaves[0]; len(lv) == 6 {
					w := lv[0].w
					d := make([][]float32, 3)
					for i := range d {
						d[i] = make([]float32, len(lv[0].p))
						for j := range d[i] {
							d[i][j] = lv[i+1].p[j] - lv[i].p[j]
						}
					}
					for i := 4*w + 4; i < len(d[1])-4*w-4 && len(resps) < 10; i++ {
						if v := d[1][i]; math.Abs(float64(v)) > 0.01 && extremum(v, i, w, d[0], d[1], d[2]) {
							resps = append(resps, math.Abs(float64(v)))
						}
					}
				}
				for _, minResp := range resps {
					for _, n := range []int{4, 24, 1000} {
						wk, gk := want.detect(n, 4, minResp), fs.detect(got, n, 4, minResp)
						if !reflect.DeepEqual(gk, wk) {
							t.Fatalf("%s minResp %v n %d: keypoints\n%v\nwant\n%v", name, minResp, n, gk, wk)
						}
						found += len(wk)
					}
				}
			}
		}
		if found < 300 {
			t.Fatalf("avx2 %v: only %d keypoints, the comparison proves little", avx2, found)
		}
	}
}

func TestFastWindowSampleMatchesGo(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, avx2 := range avx2Modes() {
		fs := fastScratch{avx2: avx2}
		for _, sz := range [][2]int{{16, 16}, {40, 23}, {192, 144}} {
			p := randPlane(r, sz[0], sz[1], 0)
			ss := fs.buildScaleSpace(p, 3)
			tried, kept := 0, 0
			for range 400 {
				cx, cy := r.Float64()*float64(p.w), r.Float64()*float64(p.h)
				side := (0.02 + r.Float64()) * float64(min(p.w, p.h))
				angle := (2*r.Float64() - 1) * math.Pi
				f, ok := frameOf(ss, p, cx, cy, side, angle)
				want := make([]float32, winSize*winSize)
				if ok != sampleWindow(ss, p, cx, cy, side, angle, want) {
					t.Fatal("frameOf and sampleWindow disagree")
				}
				if !ok {
					continue
				}
				tried++
				got := make([]float32, winSize*winSize)
				var gc, wc [hashFreqs][hashFreqs]float32
				var canon [3]float64
				q, qok := windowC(avx2, f.src, f.cx, f.cy, f.half, f.step, f.ux, f.uy, f.vx, f.vy, f.sc, got, 0, &gc, &canon)
				sameBits(t, fmt.Sprintf("%dx%d window %v,%v side %v angle %v", sz[0], sz[1], cx, cy, side, angle), got, want)
				wq, wok := normQuality(want)
				if q != wq || qok != wok {
					t.Fatalf("quality %d %v, want %d %v", q, qok, wq, wok)
				}
				if !wok {
					continue
				}
				kept++
				wx, wy, wd := canonSums(want)
				if math.Float64bits(canon[0]) != math.Float64bits(wx) || math.Float64bits(canon[1]) != math.Float64bits(wy) || math.Float64bits(canon[2]) != math.Float64bits(wd) {
					t.Fatalf("canonical sums %v, want %v %v %v", canon, wx, wy, wd)
				}
				// The coefficients come with a quality of minq or more.
				var gc2 [hashFreqs][hashFreqs]float32
				coeffsC(avx2, got, &gc2)
				if gc2 != gc {
					t.Fatal("coeffsC and windowC's coefficients differ")
				}
				winCoeffs(want, &wc)
				for i := range hashFreqs {
					sameBits(t, "coefficients", gc[i][:], wc[i][:])
				}
			}
			if tried < 20 || kept == 0 {
				t.Fatalf("%dx%d: only %d windows inside the plane, %d with contrast", sz[0], sz[1], tried, kept)
			}
		}
	}
}

// TestFastHashMatchesGo: canonical's sums and the window hash of random
// grids and coefficients (with ties and zeros of both signs), every
// variant.
func TestFastHashMatchesGo(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for trial := range 300 {
		buf := randPlane(r, winSize, winSize, []int{0, 2, 7}[trial%3]).p
		gx, gy, gd := canonSumsC(buf)
		wx, wy, wd := canonSums(buf)
		if math.Float64bits(gx) != math.Float64bits(wx) || math.Float64bits(gy) != math.Float64bits(wy) || math.Float64bits(gd) != math.Float64bits(wd) {
			t.Fatalf("trial %d: canonical sums %v %v %v, want %v %v %v", trial, gx, gy, gd, wx, wy, wd)
		}
		var c [hashFreqs][hashFreqs]float32
		for i := range hashFreqs {
			for j := range hashFreqs {
				switch trial % 4 {
				case 0:
					c[i][j] = float32(r.NormFloat64() * 100)
				case 1:
					c[i][j] = float32(r.IntN(5) - 2) // many ties
				case 2:
					c[i][j] = float32(math.Copysign(0, float64(r.IntN(2)*2-1))) * float32(r.IntN(2))
					if r.IntN(3) == 0 {
						c[i][j] = float32(r.IntN(3) - 1)
					}
				default:
					c[i][j] = float32(r.ExpFloat64()) * float32(1-2*r.IntN(2)) * 1e-30
				}
			}
		}
		for _, avx2 := range avx2Modes() {
			for d := range pdq.Dihedral(8) {
				if got, want := coeffHashC(avx2, &c, d), coeffHash(&c, d); got != want {
					t.Fatalf("trial %d avx2 %v variant %v: hash %x, want %x", trial, avx2, d, got, want)
				}
			}
		}
	}
}

func TestFastResampleMatchesGo(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, avx2 := range avx2Modes() {
		fs := fastScratch{avx2: avx2}
		for _, sz := range [][4]int{{1, 1, 1, 1}, {17, 31, 5, 9}, {512, 512, 192, 192}, {451, 300, 192, 128}, {640, 427, 192, 128}, {100, 37, 192, 71}, {30, 500, 12, 192}, {3, 2, 7, 5}, {640, 640, 192, 192}, {448, 172, 192, 74}, {9, 300, 17, 192}, {1000, 3, 192, 1}} {
			src := randPlane(r, sz[0], sz[1], 0)
			want := resampleArea(src.p, sz[0], sz[1], sz[2], sz[3])
			got := fs.resample(src.p, sz[0], sz[1], sz[2], sz[3])
			if got.w != want.w || got.h != want.h {
				t.Fatalf("%v: %dx%d, want %dx%d", sz, got.w, got.h, want.w, want.h)
			}
			sameBits(t, fmt.Sprint(avx2, sz), got.p, want.p)
		}
	}
}

// fastTestImages are the committed photos and generated pictures of
// several sizes, odd and tiny ones included.
func fastTestImages(t *testing.T) map[string]image.Image {
	imgs := map[string]image.Image{}
	paths, _ := filepath.Glob(filepath.Join(photoDir, "*.jpg"))
	if len(paths) < 10 {
		t.Fatalf("committed photos missing in %s", photoDir)
	}
	for _, p := range paths {
		imgs[filepath.Base(p)] = loadPhoto(t, filepath.Base(p))
	}
	for i, sz := range [][2]int{{16, 16}, {17, 23}, {40, 300}, {301, 33}, {97, 101}, {255, 193}, {640, 480}, {333, 777}} {
		imgs[fmt.Sprintf("photo%d-%dx%d", i, sz[0], sz[1])] = reposts.Photo(i, uint64(i)+11, sz[0], sz[1])
	}
	// Packed RGB rows, as the media pipeline decodes.
	imgs["photo-packed-rgb"] = toPackedRGB(reposts.Photo(2, 5, 421, 317))
	imgs["chelsea-packed-rgb"] = toPackedRGB(imgs["chelsea.jpg"])
	return imgs
}

// TestFastWindowsMatchGo: Windows, Signatures and Query give the same
// results, bit for bit, with the C kernels as with the Go code.
func TestFastWindowsMatchGo(t *testing.T) {
	fast := NewHasher(Options{PDQMaxSide: -1})
	base := NewHasher(Options{PDQMaxSide: -1})
	base.fs.avx2 = false // the C kernels' baseline build
	ref := NewHasher(Options{PDQMaxSide: -1})
	ref.goKernels = true
	if !fast.useFast() || ref.useFast() || fast.fs.avx2 != cpuAVX2 {
		t.Fatal("hashers do not run the intended kernels")
	}
	windows := 0
	for name, img := range fastTestImages(t) {
		if bw, _ := base.Windows(img); !reflect.DeepEqual(bw, mustWindows(t, ref, img)) {
			t.Fatalf("%s: Windows (baseline C build) differ", name)
		}
		gw, gerr := fast.Windows(img)
		ww, werr := ref.Windows(img)
		if !reflect.DeepEqual(gw, ww) || (gerr == nil) != (werr == nil) {
			t.Fatalf("%s: Windows differ:\n%v %v\nwant\n%v %v", name, gw, gerr, ww, werr)
		}
		windows += len(ww)
		gs, _ := fast.Signatures(img)
		ws, _ := ref.Signatures(img)
		if !reflect.DeepEqual(gs, ws) {
			t.Fatalf("%s: Signatures differ", name)
		}
		gq, _ := fast.Query(img)
		wq, _ := ref.Query(img)
		if !reflect.DeepEqual(gq, wq) {
			t.Fatalf("%s: Query differs", name)
		}
	}
	if windows < 200 {
		t.Fatalf("only %d windows over the test images: the comparison proves little", windows)
	}
}

func mustWindows(t *testing.T, h *Hasher, img image.Image) []RegionHash {
	t.Helper()
	ws, err := h.Windows(img)
	if err != nil {
		t.Fatal(err)
	}
	return ws
}

// TestFastLumaMatchesPDQ: the C luminance is pdq.Luma's, bit for bit, for
// packed RGB rows and Y'CbCr images of every subsampling (sub-images at odd
// offsets too, chroma at its extremes); images it does not handle are
// left to pdq.Luma.
func TestFastLumaMatchesPDQ(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	var imgs []image.Image
	for _, ratio := range []image.YCbCrSubsampleRatio{image.YCbCrSubsampleRatio444, image.YCbCrSubsampleRatio422, image.YCbCrSubsampleRatio420, image.YCbCrSubsampleRatio440} {
		for _, sz := range [][2]int{{1, 1}, {2, 3}, {17, 9}, {64, 33}, {301, 7}} {
			m := image.NewYCbCr(image.Rect(0, 0, sz[0], sz[1]), ratio)
			for _, p := range [][]byte{m.Y, m.Cb, m.Cr} {
				for i := range p {
					switch r.IntN(4) {
					case 0:
						p[i] = 0
					case 1:
						p[i] = 255
					default:
						p[i] = byte(r.IntN(256))
					}
				}
			}
			imgs = append(imgs, m)
			for _, o := range [][2]int{{1, 0}, {1, 1}, {2, 1}, {3, 2}} {
				if o[0] < sz[0] && o[1] < sz[1] {
					imgs = append(imgs, m.SubImage(image.Rect(o[0], o[1], sz[0], sz[1])))
				}
			}
		}
	}
	imgs = append(imgs, toPackedRGB(reposts.Photo(1, 2, 37, 21)), toPackedRGB(randRGBA(r, 64, 3)), randRGBA(r, 5, 5))
	handled := 0
	for _, avx2 := range avx2Modes() {
		for i, img := range imgs {
			want, _, _ := pdq.Luma(img, nil)
			got, ok := lumaC(avx2, img, nil)
			if !ok {
				if _, rgb := img.(*image.RGBA); !rgb && !(isYCbCr(img, image.YCbCrSubsampleRatio440)) {
					t.Fatalf("image %d (%T): not handled", i, img)
				}
				continue
			}
			handled++
			sameBits(t, fmt.Sprintf("avx2 %v image %d (%T %v)", avx2, i, img, img.Bounds()), got, want)
		}
	}
	if handled < 40 {
		t.Fatalf("only %d images handled by the C luminance", handled)
	}
}

func isYCbCr(img image.Image, ratio image.YCbCrSubsampleRatio) bool {
	m, ok := img.(*image.YCbCr)
	return ok && m.SubsampleRatio == ratio
}

func randRGBA(r *rand.Rand, w, h int) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range m.Pix {
		m.Pix[i] = byte(r.IntN(256))
		if i%4 == 3 {
			m.Pix[i] = 0xff
		}
	}
	return m
}

// TestFastLumaExhaustive: every RGB triple and every Y'CbCr triple (4:4:4)
// converts as pdq.Luma converts it.
func TestFastLumaExhaustive(t *testing.T) {
	rgb := &packedRGB{w: 4096, h: 4096, stride: 3 * 4096, pix: make([]byte, 3*4096*4096)}
	ycc := image.NewYCbCr(image.Rect(0, 0, 4096, 4096), image.YCbCrSubsampleRatio444)
	for i := range 1 << 24 {
		a, b, c := byte(i>>16), byte(i>>8), byte(i)
		rgb.pix[3*i], rgb.pix[3*i+1], rgb.pix[3*i+2] = a, b, c
		ycc.Y[i], ycc.Cb[i], ycc.Cr[i] = a, b, c
	}
	for _, img := range []image.Image{rgb, ycc} {
		want, _, _ := pdq.Luma(img, nil)
		for _, avx2 := range avx2Modes() {
			got, ok := lumaC(avx2, img, nil)
			if !ok {
				t.Fatalf("%T not handled", img)
			}
			sameBits(t, fmt.Sprintf("%T avx2 %v", img, avx2), got, want)
		}
	}
}

// nd_flat_lines decides every row and column of a rectangle exactly as
// isFlat does: planes of near-flat lines (a level plus noise of a few grey
// levels, some values far off, levels on the histogram's bin edges) and of
// random ones, every direction, random rectangles; and the cut of re-posts
// with caption bands and frames gives the same rectangles on both.
func TestFlatLinesCMatchesGo(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for trial := range 400 {
		w, h := 8+r.IntN(120), 8+r.IntN(120)
		p := &plane{w: w, h: h, p: make([]float32, w*h)}
		base := float32(4*r.IntN(64)) + []float32{0, 2, 3.99, 4, -0.5}[r.IntN(5)]
		spread := float32(1 + r.IntN(12))
		for i := range p.p {
			p.p[i] = base + spread*(r.Float32()-0.5)
			if r.IntN(25) == 0 {
				p.p[i] = 255 * r.Float32()
			}
		}
		if trial%4 == 0 {
			p = randPlane(r, w, h, 0)
		}
		x0, y0 := r.IntN(w/2), r.IntN(h/2)
		rect := image.Rect(x0, y0, x0+1+r.IntN(w-x0), y0+1+r.IntN(h-y0))
		for _, horiz := range []bool{true, false} {
			n := rect.Dy()
			if !horiz {
				n = rect.Dx()
			}
			got := make([]bool, n)
			flatLinesC(p, rect, horiz, make([]int32, 66*rect.Dx()), got)
			buf := make([]float32, max(rect.Dx(), rect.Dy()))
			for i := range n {
				var line []float32
				if horiz {
					y := rect.Min.Y + i
					line = p.p[y*w+rect.Min.X : y*w+rect.Max.X]
				} else {
					line = buf[:rect.Dy()]
					for j := range line {
						line[j] = p.p[(rect.Min.Y+j)*w+rect.Min.X+i]
					}
				}
				if want := isFlat(line, buf); got[i] != want {
					t.Fatalf("trial %d, %v horiz %v, line %d: C says flat %v, Go %v", trial, rect, horiz, i, got[i], want)
				}
			}
		}
	}
	h := NewHasher(Options{PDQMaxSide: -1})
	for i := range 24 {
		img := reposts.Photo(i%5, uint64(i), 300+i*7, 240+i*3)
		for j, k := range [][]reposts.Kind{{reposts.Caption}, {reposts.Screenshot}, nil} {
			rp, err := reposts.Apply(img, k, rand.New(rand.NewPCG(uint64(i), uint64(j))))
			if err != nil {
				t.Fatal(err)
			}
			luma, w, hh, err := h.lumaOf(rp.Image)
			if err != nil {
				t.Fatal(err)
			}
			p := &plane{w: w, h: hh, p: luma}
			var goCut, cCut cutPlane
			goCut.prepare(p, false)
			cCut.prepare(p, true)
			var a, b []image.Rectangle
			cut(&goCut, image.Rect(0, 0, w, hh), 0, 12, false, cutNone, &a)
			cut(&cCut, image.Rect(0, 0, w, hh), 0, 12, false, cutNone, &b)
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("photo %d %v: the Go cut gives %v, the C cut %v", i, k, a, b)
			}
		}
	}
}
