package neardup

import (
	"crypto/sha256"
	"fmt"
	"github.com/xmodal/xmodal/internal/hamming"
	"image"
	"math"
	"math/bits"
	"slices"
	"sync"

	"github.com/xmodal/xmodal/encoders/pdq"
)

// The link relation of near-duplicate clusters by windows. A lookup
// (Index.Search) is one-sided: a query from the pixels of an image finds
// the indexed images it shows, a part of (a crop) or whole (inside a
// caption band or a frame). Clusters need a relation on pairs of stored
// images that is symmetric (a ~ b exactly when b ~ a, whichever arrived
// first) and complete (every linked image is found, not the top k), and
// that the batch job can compute again from what the index stores. So:
//
//   - Each image is both sides from its stored windows (AppendWindows):
//     as a query, its windows at their places in its frame, and its patch,
//     bilinearly enlarged, as the pixels the pixel check reads; as an
//     original, the same windows and patch.
//   - Each side's windows are its plain and its link windows (WindowsIn:
//     those of the image drawn at cropScale of the working size, so that
//     a crop and its picture, whose plain windows show the content at two
//     scales, meet; and those of its content rectangle drawn at the
//     working size, so that a picture shown small inside a screenshot or
//     a frame meets the picture).
//   - Only windows inside the image's content rectangle take part
//     (WindowsIn, stored by AppendWindowsIn): the lettering of a caption
//     band or the chrome of an app looks alike in every meme or
//     screenshot, and windows there link different pictures.
//   - a ~ b when some window of a is within SeedDistance bits of some
//     window of b (the seed: symmetric, and what a multi-index search of
//     a's windows finds), and the window verification (agreeing windows,
//     placement, pixel check) accepts a as a query over b or b as a query
//     over a. In either direction the placement may also have the
//     original inside the query (the original is the crop): with both
//     directions, a crop and its original link whichever is which.
//
// Linker indexes stored window lists under member ids and answers this
// relation: internal/clusters uses it beside whole-image PDQ.

// linkPlaneSide is the side of the plane a stored patch is enlarged to
// for the pixel check of a query made from stored windows.
const linkPlaneSide = 4 * PatchSide

// linkSide is an image as the two sides of a verification.
type linkSide struct {
	e      entry
	hashes []pdq.Hash // e's window hashes, in order
	q      *Query
}

// newLinkSide makes both sides from an image's w x h size, window hashes
// and their frames, and patch (nil: no pixel check).
func newLinkSide(w, h int, wins []indexWindow, hashes []pdq.Hash, patch []byte) *linkSide {
	s := &linkSide{e: entry{w: uint16(w), h: uint16(h), wins: wins, patch: patch}, hashes: hashes}
	q := &Query{W: w, H: h, Rects: []image.Rectangle{image.Rect(0, 0, w, h)}}
	long := float64(max(w, h))
	for k, iw := range wins {
		q.Hashes = append(q.Hashes, QueryHash{Hash: hashes[k], Kind: Window, Transform: iw.variant,
			cx: float64(iw.cx) * float64(w), cy: float64(iw.cy) * float64(h), side: float64(iw.side) * long, angle: float64(iw.angle), rank: k})
	}
	if patch != nil {
		q.pixels = newQueryPixels(enlargePatch(patch), w, h)
	}
	s.q = q
	return s
}

// sideOfSig makes the sides of a parsed stored window list.
func sideOfSig(w, h int, sig []RegionHash) *linkSide {
	var wins []indexWindow
	var hashes []pdq.Hash
	var patch []byte
	for _, r := range sig {
		switch r.Kind {
		case Window:
			wins = append(wins, indexWindow{cx: r.Region.CX, cy: r.Region.CY, side: r.Region.Side, angle: r.Region.Angle, variant: r.Transform})
			hashes = append(hashes, r.Hash)
		case Patch:
			if len(r.Pixels) == patchBytes {
				patch = r.Pixels
			}
		}
	}
	return newLinkSide(w, h, wins, hashes, patch)
}

// enlargePatch samples a patch bilinearly onto a linkPlaneSide square
// plane (cell centres at (i+0.5)/PatchSide of the image, edges clamped):
// plane.sample's arithmetic, in two separable passes (rows, then columns),
// so the values are the same and it costs a twentieth.
func enlargePatch(patch []byte) *plane {
	type tap struct {
		i0, i1 int
		f      float32
	}
	var taps [linkPlaneSide]tap
	scale := float64(PatchSide) / linkPlaneSide
	for i := range taps {
		v := (float64(i)+0.5)*scale - 0.5
		v0 := math.Floor(v)
		taps[i] = tap{clampi(int(v0), PatchSide), clampi(int(v0)+1, PatchSide), float32(v - v0)}
	}
	rows := make([]float32, PatchSide*linkPlaneSide) // each patch row, widened
	for y := range PatchSide {
		src, dst := patch[y*PatchSide:(y+1)*PatchSide], rows[y*linkPlaneSide:(y+1)*linkPlaneSide]
		for x, t := range taps {
			a, b := float32(src[t.i0]), float32(src[t.i1])
			dst[x] = a + (b-a)*t.f
		}
	}
	dst := &plane{w: linkPlaneSide, h: linkPlaneSide, p: make([]float32, linkPlaneSide*linkPlaneSide)}
	for y, t := range taps {
		r0, r1 := rows[t.i0*linkPlaneSide:(t.i0+1)*linkPlaneSide], rows[t.i1*linkPlaneSide:(t.i1+1)*linkPlaneSide]
		out := dst.p[y*linkPlaneSide : (y+1)*linkPlaneSide]
		for x := range out {
			out[x] = r0[x] + (r1[x]-r0[x])*t.f
		}
	}
	return dst
}

// pairHits returns the window pairs of query side a and original side b
// within windowDistance (nearest first), and whether one lies within
// seedDistance.
func pairHits(vp *verifyParams, a, b *linkSide) (hits []winHit, seeded bool) {
	for i := range a.q.Hashes {
		qh := &a.q.Hashes[i]
		qw := words(qh.Hash)
		for k, h := range b.hashes {
			w := words(h)
			d := bits.OnesCount64(qw[0]^w[0]) + bits.OnesCount64(qw[1]^w[1]) + bits.OnesCount64(qw[2]^w[2]) + bits.OnesCount64(qw[3]^w[3])
			if d <= vp.windowDistance {
				hits = append(hits, winHit{q: qh, win: uint16(k), dist: d})
				seeded = seeded || d <= vp.seedDistance
			}
		}
	}
	slices.SortStableFunc(hits, func(x, y winHit) int { return x.dist - y.dist })
	return hits, seeded
}

// linked is the relation on two sides.
func (ix *Index) linked(a, b *linkSide) bool {
	hits, seeded := pairHits(&ix.vp, a, b)
	if !seeded {
		return false
	}
	if _, ok := ix.verify(a.q, &b.e, hits, verifyLink); ok {
		return true
	}
	hits, _ = pairHits(&ix.vp, b, a)
	_, ok := ix.verify(b.q, &a.e, hits, verifyLink)
	return ok
}

// Linker holds stored window lists under member ids and answers the link
// relation of clusters (above). Members whose stored lists are identical
// (the same picture re-posted byte for byte, the commonest near-duplicate)
// share one entry of the index: a search meets the entry once and verifies
// it once for all of them. Safe for concurrent use.
type Linker struct {
	mu      sync.Mutex
	ix      *Index
	groups  map[[32]byte]*linkGroup
	byEntry map[int64]*linkGroup
	groupOf map[uint64]*linkGroup
	next    int64
}

// linkGroup is the members that share one stored list, and its entry id.
type linkGroup struct {
	key     [32]byte
	entry   int64
	members []uint64
}

// linkTail is the linker's unindexed tail (hamming.Options.TailSize): every
// join searches each of a post's ~100 windows, each search scans the tail
// linearly, and the tail fills in a few posts, so a short one is cheaper
// than the default 4,096 despite more segments to probe.
const linkTail = 512

// NewLinker returns an empty linker.
func NewLinker() *Linker {
	mih := func() *MIHSearcher { return newMIHSearcher(hamming.Options{TailSize: linkTail}) }
	return &Linker{ix: NewIndexWith(mih(), mih()),
		groups: map[[32]byte]*linkGroup{}, byEntry: map[int64]*linkGroup{}, groupOf: map[uint64]*linkGroup{}}
}

// parseLink reads a stored window list for the linker: its plain and
// scaled windows (WindowsIn), keeping only those whose centres lie inside
// the image's content rectangle (a stored list without one keeps all); one
// without windows links nothing (nil side, no error).
func parseLink(stored []byte) (*linkSide, []RegionHash, int, int, error) {
	w, h, sig, content, err := ParseWindowsIn(stored)
	if err != nil {
		return nil, nil, 0, 0, err
	}
	kept := sig[:0]
	for _, r := range sig {
		if r.Kind == Area || r.Kind == Cleaned {
			continue // the relation links by windows (and the pixels)
		}
		if r.Kind == ScaledWindow {
			r.Kind = Window // both kinds are windows to the relation
		}
		if r.Kind == Window && !isWhole(content) && (r.Region.CX < content.X0 || r.Region.CX > content.X1 || r.Region.CY < content.Y0 || r.Region.CY > content.Y1) {
			continue
		}
		kept = append(kept, r)
	}
	sig = kept
	s := sideOfSig(w, h, sig)
	if len(s.hashes) == 0 {
		return nil, sig, w, h, nil
	}
	return s, sig, w, h, nil
}

// Add indexes the stored window list of member id (replacing what it had).
func (l *Linker) Add(id uint64, stored []byte) error {
	if id > 1<<62 {
		return fmt.Errorf("neardup: linker member id %d out of range", id)
	}
	_, sig, w, h, err := parseLink(stored)
	if err != nil {
		return err
	}
	key := sha256.Sum256(stored)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.removeLocked(id)
	g := l.groups[key]
	if g == nil {
		l.next++
		g = &linkGroup{key: key, entry: l.next}
		l.groups[key], l.byEntry[g.entry] = g, g
		l.ix.Add(g.entry, w, h, sig)
	}
	g.members = append(g.members, id)
	l.groupOf[id] = g
	return nil
}

// Remove drops member id (absent: a no-op).
func (l *Linker) Remove(id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.removeLocked(id)
}

func (l *Linker) removeLocked(id uint64) {
	g := l.groupOf[id]
	if g == nil {
		return
	}
	delete(l.groupOf, id)
	if i := slices.Index(g.members, id); i >= 0 {
		g.members = slices.Delete(g.members, i, i+1)
	}
	if len(g.members) == 0 {
		delete(l.groups, g.key)
		delete(l.byEntry, g.entry)
		l.ix.Remove(g.entry)
	}
}

// Len is the number of members held.
func (l *Linker) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.groupOf)
}

// Neighbours appends to dst every member linked to the image of a stored
// window list (itself too, when it is held).
func (l *Linker) Neighbours(stored []byte, dst []uint64) ([]uint64, error) {
	err := l.NeighboursSkip(stored, nil, func(id uint64) { dst = append(dst, id) })
	return dst, err
}

// NeighboursSkip calls found with each member linked to the image of a
// stored window list, except those for which skip (nil: none) reports
// true when their turn comes: an entry whose members are all skipped is
// not verified. A caller that only needs one link per group (a cluster to
// join, a component being built) skips the members of groups already
// linked, which saves verifying every other copy of a popular picture.
func (l *Linker) NeighboursSkip(stored []byte, skip func(id uint64) bool, found func(id uint64)) error {
	a, _, _, _, err := parseLink(stored)
	if err != nil || a == nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ix := l.ix
	g := ix.windows.(hashGetter)
	cands := map[uint32]struct{}{}
	for _, h := range a.hashes {
		ix.windows.Range(h, ix.vp.seedDistance, func(ref uint32, _ int) { cands[uint32(ix.winRef[ref]>>16)] = struct{}{} })
	}
	eis := make([]uint32, 0, len(cands))
	for ei := range cands {
		eis = append(eis, ei)
	}
	slices.Sort(eis)
	var want []uint64
	for _, ei := range eis {
		e := &ix.entries[ei]
		grp := l.byEntry[e.id]
		if e.dead || grp == nil {
			continue
		}
		want = want[:0]
		for _, m := range grp.members {
			if skip == nil || !skip(m) {
				want = append(want, m)
			}
		}
		if len(want) == 0 {
			continue
		}
		hashes := make([]pdq.Hash, len(e.wins))
		for k := range e.wins {
			hashes[k], _ = g.Hash(e.winBase + uint32(k))
		}
		if ix.linked(a, newLinkSide(int(e.w), int(e.h), e.wins, hashes, e.patch)) {
			for _, m := range want {
				found(m)
			}
		}
	}
	return nil
}

// Linked reports whether the images of two stored window lists are linked.
func (l *Linker) Linked(a, b []byte) (bool, error) {
	sa, _, _, _, err := parseLink(a)
	if err != nil {
		return false, err
	}
	sb, _, _, _, err := parseLink(b)
	if err != nil || sa == nil || sb == nil {
		return false, err
	}
	return l.ix.linked(sa, sb), nil
}
