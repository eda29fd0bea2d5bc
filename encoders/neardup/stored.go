package neardup

import (
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"math"
	"slices"

	"github.com/xmodal/xmodal/encoders/pdq"
)

// Windows computes the area and cleaned hashes of img, its windows and its patch (no
// whole-image PDQ hash): what ingest stores when PDQ is computed elsewhere,
// for example from a larger decode (the windows are hashed on a 192-pixel
// plane, the area hash on a 64-pixel one and the cleaned hash on a
// 256-pixel one, so a small decode serves).
// Refused as Indexed refuses.
func (h *Hasher) Windows(img image.Image) ([]RegionHash, error) {
	luma, w, hh, err := h.lumaOf(img)
	if err != nil {
		return nil, err
	}
	return h.windowsOf(luma, w, hh), nil
}

// WindowsIn is Windows with what near-duplicate clusters link by (Linker):
// the image's content, its largest content rectangle (the XY-cut of
// ContentHashes: the picture inside a caption band, an app's frame,
// letterbox bars) as fractions of its width and height, or the whole image
// when it has none; and its link windows (Kind ScaledWindow): those of
// the image drawn at cropScale of the working size and, when it has a
// content rectangle, those of the rectangle drawn at the working size. A
// caption's lettering or an app's frame looks alike in every meme or
// screenshot, so clusters link by windows inside the content only; and
// the stored windows of a crop and of its picture, each drawn at the
// working size, show the content at two scales, so they rarely coincide:
// the picture's or the crop's scaled windows meet the other's plain ones
// (on 30 generated pictures, 27 of their 75 % crops link with them
// against 12 without). A screenshot shows its picture smaller still: the
// content rectangle's windows show it at its own scale (20 of 20
// generated screenshots link with their picture against 5 without). The
// lookup reads neither (ParseWindows leaves them out).
func (h *Hasher) WindowsIn(img image.Image) ([]RegionHash, Region, error) {
	luma, w, hh, err := h.lumaOf(img)
	if err != nil {
		return nil, Region{}, err
	}
	sig := h.windowsOf(luma, w, hh)
	content := Region{X1: 1, Y1: 1}
	if sig[len(sig)-1].Kind != Patch { // no windows
		return sig, content, nil
	}
	var contentRect image.Rectangle
	if rs := h.contentRects(luma, w, hh, 1, regionCutSide); len(rs) > 0 {
		r := rs[0]
		contentRect = r
		content = Region{X0: float32(r.Min.X) / float32(w), Y0: float32(r.Min.Y) / float32(hh),
			X1: float32(r.Max.X) / float32(w), Y1: float32(r.Max.Y) / float32(hh)}
	}
	patch := sig[len(sig)-1]
	sig = sig[:len(sig)-1]
	p := h.workPlaneSized(luma, w, hh, image.Rect(0, 0, w, hh), int(math.Round(cropScale*workSide)))
	for _, wd := range h.windows(p, indexKeypoints, indexMinPair, indexMaxPair, 0, wholeWindows, true, false) {
		sig = append(sig, RegionHash{Hash: wd.hashes[0], Kind: ScaledWindow, Region: wd.region(p), Transform: wd.variants[0], Quality: wd.quality})
	}
	if r := contentRect; !r.Empty() {
		// The content drawn at the working size, as a query draws its
		// content rectangles: a picture shown small inside a screenshot
		// or a frame then meets the picture's own windows at their scale.
		// Its windows are placed in the image's frame.
		cp := h.workPlaneSized(luma, w, hh, r, workSide)
		sx, sy := float64(r.Dx())/float64(cp.w), float64(r.Dy())/float64(cp.h)
		long := float64(max(w, hh))
		for _, wd := range h.windows(cp, indexKeypoints, indexMinPair, indexMaxPair, 0, wholeWindows, true, false) {
			g := Region{CX: float32((float64(r.Min.X) + wd.cx*sx) / float64(w)), CY: float32((float64(r.Min.Y) + wd.cy*sy) / float64(hh)),
				Side: float32(wd.side * sx / long), Angle: float32(wd.angle)}
			sig = append(sig, RegionHash{Hash: wd.hashes[0], Kind: ScaledWindow, Region: g, Transform: wd.variants[0], Quality: wd.quality})
		}
	}
	return append(sig, patch), content, nil
}

func (h *Hasher) windowsOf(luma []float32, w, hh int) []RegionHash {
	p := h.workPlane(luma, w, hh, image.Rect(0, 0, w, hh))
	patch := RegionHash{Kind: Patch, Region: Region{X1: 1, Y1: 1}, Pixels: patchOf(p.p, p.w, p.h)}
	out := []RegionHash{h.areaOf(luma, w, hh), h.cleanedOf(luma, w, hh)}
	ws := h.storedWindows(p)
	for _, wd := range ws {
		out = append(out, RegionHash{Hash: wd.hashes[0], Kind: Window, Region: wd.region(p), Transform: wd.variants[0], Quality: wd.quality})
	}
	if len(ws) == 0 {
		return out // no window match to check
	}
	return append(out, patch)
}

// The stored form of an image's windows (AppendWindows, ParseWindows): a
// format byte, the image's width and height as hashed (uint16 each, capped),
// then per window its hash (32 bytes), centre x and y (fractions of the
// width and height, 16-bit fixed point), side (fraction of the longer side,
// 16-bit fixed point over [0, 2)), angle (16-bit fixed point over
// [-pi, pi)) and variant (one byte): 5 + 41 bytes a window. Format 2 ends
// with the patch (PatchSide^2 bytes); format 1, written before patches
// existed, has none, and its window matches go without the pixel check.
// Format 3 is format 2 with what clusters link by (WindowsIn) after the
// size: the content rectangle (X0, Y0, X1, Y1 as fractions of the width
// and height, 16-bit fixed point each) and the number of link windows
// (Kind ScaledWindow, one byte), which follow the plain windows; it is
// written only when there is one or the other. Format 4 is format 3 with
// the image's area hash (Kind Area, 32 bytes, then its quality, one byte)
// after the number of link windows; it is written whenever the signature
// has an area hash. Format 5 is format 4 with the image's cleaned hash
// (Kind Cleaned, 32 bytes and its quality) after the area hash; it is
// written whenever the signature has both.
const (
	windowsFormat1    = 1
	windowsFormat     = 2
	windowsFormat3    = 3
	windowsFormat4    = 4
	windowsFormat5    = 5
	windowsHeader     = 5
	contentBytes      = 8 + 1
	areaBytes         = 32 + 1
	storedWindowBytes = 32 + 8 + 1
)

// ErrBadWindows is returned by ParseWindows for bytes that are not a
// stored window list.
var ErrBadWindows = errors.New("neardup: bad stored windows")

// StoredWindowsSize is the size of the stored form of n windows, an area
// and a cleaned hash and a patch.
func StoredWindowsSize(n int) int {
	return windowsHeader + contentBytes + 2*areaBytes + n*storedWindowBytes + patchBytes
}

func fix16(v, lo, span float64) uint16 {
	x := math.Round((v - lo) / span * 65536)
	return uint16(min(max(x, 0), 65535))
}

// angle16 is an angle in 16-bit fixed point over [-pi, pi), wrapping.
func angle16(a float64) uint16 {
	x := math.Round((a + math.Pi) / (2 * math.Pi) * 65536)
	x = math.Mod(x, 65536)
	if x < 0 {
		x += 65536
	}
	return uint16(x)
}

func unfix16(u uint16, lo, span float64) float32 {
	return float32(lo + float64(u)/65536*span)
}

// AppendWindows appends the stored form of the windows of sig (its Window
// hashes, at most MaxWindows, and its patch; whole-image hashes are
// skipped) of an image of w x h pixels to dst. A signature without a
// patch is stored with a flat one, which the pixel check refuses: compute
// signatures with Signatures or Windows.
func AppendWindows(dst []byte, w, h int, sig []RegionHash) []byte {
	plain := make([]RegionHash, 0, len(sig))
	for _, r := range sig {
		if r.Kind != ScaledWindow {
			plain = append(plain, r)
		}
	}
	return AppendWindowsIn(dst, w, h, plain, Region{X1: 1, Y1: 1})
}

// isWhole reports whether a content region is the whole image.
func isWhole(c Region) bool { return c.X0 <= 0 && c.Y0 <= 0 && c.X1 >= 1 && c.Y1 >= 1 }

// AppendWindowsIn is AppendWindows with the image's content rectangle
// (WindowsIn; the whole image writes what AppendWindows writes).
func AppendWindowsIn(dst []byte, w, h int, sig []RegionHash, content Region) []byte {
	scaled := 0
	for _, r := range sig {
		if r.Kind == ScaledWindow && scaled < maxLinkWindows {
			scaled++
		}
	}
	area := slices.IndexFunc(sig, func(r RegionHash) bool { return r.Kind == Area })
	cleaned := slices.IndexFunc(sig, func(r RegionHash) bool { return r.Kind == Cleaned })
	format := byte(windowsFormat)
	switch {
	case cleaned >= 0 && area >= 0:
		format = windowsFormat5
	case area >= 0:
		format = windowsFormat4
	case !isWhole(content) || scaled > 0:
		format = windowsFormat3
	}
	dst = append(dst, format)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(min(max(w, 0), math.MaxUint16)))
	dst = binary.LittleEndian.AppendUint16(dst, uint16(min(max(h, 0), math.MaxUint16)))
	if format >= windowsFormat3 {
		for _, v := range [4]float32{content.X0, content.Y0, content.X1, content.Y1} {
			dst = binary.LittleEndian.AppendUint16(dst, fix16(float64(v), 0, 1))
		}
		dst = append(dst, byte(scaled))
		if format >= windowsFormat4 {
			dst = append(dst, sig[area].Hash[:]...)
			dst = append(dst, byte(min(max(sig[area].Quality, 0), 100)))
		}
		if format == windowsFormat5 {
			dst = append(dst, sig[cleaned].Hash[:]...)
			dst = append(dst, byte(min(max(sig[cleaned].Quality, 0), 100)))
		}
		dst = appendWins(dst, sig, Window, MaxWindows)
		dst = appendWins(dst, sig, ScaledWindow, maxLinkWindows)
	} else {
		dst = appendWins(dst, sig, Window, MaxWindows)
	}
	var patch []byte
	for _, r := range sig {
		if r.Kind == Patch && len(r.Pixels) == patchBytes {
			patch = r.Pixels
		}
	}
	if patch == nil {
		patch = make([]byte, patchBytes)
	}
	return append(dst, patch...)
}

// appendWins appends the stored form of sig's hashes of kind k (at most
// limit).
func appendWins(dst []byte, sig []RegionHash, k Kind, limit int) []byte {
	n := 0
	for _, r := range sig {
		if r.Kind != k || n == limit {
			continue
		}
		n++
		dst = append(dst, r.Hash[:]...)
		g := r.Region
		dst = binary.LittleEndian.AppendUint16(dst, fix16(float64(g.CX), 0, 1))
		dst = binary.LittleEndian.AppendUint16(dst, fix16(float64(g.CY), 0, 1))
		dst = binary.LittleEndian.AppendUint16(dst, fix16(float64(g.Side), 0, 2))
		dst = binary.LittleEndian.AppendUint16(dst, angle16(float64(g.Angle)))
		dst = append(dst, byte(r.Transform))
	}
	return dst
}

// ParseWindows reads a stored window list: the image's size as hashed, its
// area hash (Kind Area, first; none before format 4), its cleaned hash
// (Kind Cleaned; none before format 5), its windows (Kind
// Window, Region and Transform set; Quality unknown, 0) and, last, its patch (Kind Patch; none in format 1). Anything else is refused
// with an error wrapping ErrBadWindows. The link windows of format 3 are
// left out: the lookup does not use them.
func ParseWindows(b []byte) (w, h int, sig []RegionHash, err error) {
	w, h, sig, _, err = ParseWindowsIn(b)
	if err != nil {
		return 0, 0, nil, err
	}
	return w, h, slices.DeleteFunc(sig, func(r RegionHash) bool { return r.Kind == ScaledWindow }), nil
}

// ParseWindowsIn is ParseWindows with what clusters link by: the image's
// content rectangle (the whole image when none was stored) and its link
// windows (Kind ScaledWindow, after the plain ones).
func ParseWindowsIn(b []byte) (w, h int, sig []RegionHash, content Region, err error) {
	content = Region{X1: 1, Y1: 1}
	if len(b) < windowsHeader || b[0] < windowsFormat1 || b[0] > windowsFormat5 {
		return 0, 0, nil, content, fmt.Errorf("%w: unknown format or %d bytes", ErrBadWindows, len(b))
	}
	body := b[windowsHeader:]
	scaled := 0
	var area, cleaned *RegionHash
	if b[0] >= windowsFormat3 {
		if len(body) < contentBytes {
			return 0, 0, nil, content, fmt.Errorf("%w: %d bytes, short of the content rectangle", ErrBadWindows, len(b))
		}
		var v [4]float32
		for i := range v {
			v[i] = unfix16(binary.LittleEndian.Uint16(body[2*i:]), 0, 1)
		}
		content = Region{X0: v[0], Y0: v[1], X1: v[2], Y1: v[3]}
		if !(content.X0 < content.X1 && content.Y0 < content.Y1) {
			return 0, 0, nil, content, fmt.Errorf("%w: empty content rectangle", ErrBadWindows)
		}
		scaled = int(body[8])
		body = body[contentBytes:]
	}
	for _, k := range []Kind{Area, Cleaned} {
		if b[0] < windowsFormat4 || (k == Cleaned && b[0] < windowsFormat5) {
			break
		}
		if len(body) < areaBytes {
			return 0, 0, nil, content, fmt.Errorf("%w: %d bytes, short of the %v hash", ErrBadWindows, len(b), k)
		}
		if body[32] > 100 {
			return 0, 0, nil, content, fmt.Errorf("%w: %v hash quality %d", ErrBadWindows, k, body[32])
		}
		r := &RegionHash{Kind: k, Region: Region{X1: 1, Y1: 1}, Quality: int(body[32])}
		copy(r.Hash[:], body[:32])
		body = body[areaBytes:]
		if k == Area {
			area = r
		} else {
			cleaned = r
		}
	}
	var patch []byte
	if b[0] != windowsFormat1 {
		if len(body) < patchBytes {
			return 0, 0, nil, content, fmt.Errorf("%w: %d bytes, short of the %d byte patch", ErrBadWindows, len(b), patchBytes)
		}
		body, patch = body[:len(body)-patchBytes], body[len(body)-patchBytes:]
	}
	n := len(body) / storedWindowBytes
	if len(body)%storedWindowBytes != 0 || scaled > maxLinkWindows || scaled > n || n-scaled > MaxWindows {
		return 0, 0, nil, content, fmt.Errorf("%w: %d bytes of windows, %d scaled (a window is %d, at most %d plain and %d scaled)", ErrBadWindows, len(body), scaled, storedWindowBytes, MaxWindows, maxLinkWindows)
	}
	w = int(binary.LittleEndian.Uint16(b[1:]))
	h = int(binary.LittleEndian.Uint16(b[3:]))
	if w < MinSide || h < MinSide {
		return 0, 0, nil, content, fmt.Errorf("%w: image size %dx%d", ErrBadWindows, w, h)
	}
	sig = make([]RegionHash, 0, n+3)
	if area != nil {
		sig = append(sig, *area)
	}
	if cleaned != nil {
		sig = append(sig, *cleaned)
	}
	for k := 0; len(body) > 0; k++ {
		var r RegionHash
		r.Kind = Window
		if k >= n-scaled {
			r.Kind = ScaledWindow
		}
		copy(r.Hash[:], body[:32])
		r.Region.CX = unfix16(binary.LittleEndian.Uint16(body[32:]), 0, 1)
		r.Region.CY = unfix16(binary.LittleEndian.Uint16(body[34:]), 0, 1)
		r.Region.Side = unfix16(binary.LittleEndian.Uint16(body[36:]), 0, 2)
		r.Region.Angle = unfix16(binary.LittleEndian.Uint16(body[38:]), -math.Pi, 2*math.Pi)
		v := body[40]
		if v > byte(pdq.FlipMinus1) {
			return 0, 0, nil, content, fmt.Errorf("%w: window variant %d", ErrBadWindows, v)
		}
		r.Transform = pdq.Dihedral(v)
		sig = append(sig, r)
		body = body[storedWindowBytes:]
	}
	if patch != nil {
		sig = append(sig, RegionHash{Kind: Patch, Region: Region{X1: 1, Y1: 1}, Pixels: slices.Clone(patch)})
	}
	return w, h, sig, content, nil
}
