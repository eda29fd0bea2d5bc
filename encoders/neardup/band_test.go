package neardup

import (
	"fmt"
	"testing"

	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
)

// bandCase is one re-post query of a committed photo.
type bandCase struct {
	name  string
	photo int
	q     *Query
}

// bandQueries makes watermark, JPEG-30 and brightness re-posts of every
// committed photo (four seeds each): the edits that move a whole-image
// hash beyond WholeDistance without moving the picture.
func bandQueries(t *testing.T, h *Hasher, names []string) []bandCase {
	t.Helper()
	var out []bandCase
	for i, name := range names {
		img := loadPhoto(t, name)
		for _, k := range [][]reposts.Kind{{reposts.Watermark}, {reposts.JPEG30}, {reposts.Bright}} {
			for seed := range uint64(4) {
				out = append(out, bandCase{fmt.Sprintf("%s %s seed %d", name, reposts.Name(k), seed), i, repostQuery(t, h, img, k, seed, 5)})
			}
		}
	}
	return out
}

// bandMatch returns the match of ms beyond WholeDistance (the band), or nil.
func bandMatch(ms []Match) *Match {
	for i := range ms {
		if ms[i].Kind == Whole && ms[i].Distance > WholeDistance {
			return &ms[i]
		}
	}
	return nil
}

// A re-post whose whole-image hash moved 32-56 bits is found by the
// pixel-verified band, and only its own original: the same queries find
// fewer originals with the band off, and none through the band when each
// photo is indexed with another photo's patch.
func TestWholeBand(t *testing.T) {
	h := NewHasher(Options{PDQMaxSide: -1})
	_, names := photoIndex(t, h)
	on := NewIndexWith(NewMIHSearcher(false), NewChunkSearcher())
	off := NewIndexWithOptions(NewMIHSearcher(false), NewChunkSearcher(), IndexOptions{WholeBand: -1})
	chunked := NewIndexWith(NewChunkSearcher(), NewChunkSearcher()) // no band: radius 31 at most
	swapped := NewIndexWith(NewMIHSearcher(false), NewChunkSearcher())
	addPhotos(t, h, names, []*Index{on, off, chunked}, []*Index{swapped})
	found := func(ms []Match, want int) bool { return len(ms) > 0 && ms[0].ID == int64(want) }
	var band, gained int
	for _, c := range bandQueries(t, h, names) {
		msOn, msOff := on.Search(c.q, SearchOptions{}), off.Search(c.q, SearchOptions{})
		for _, m := range msOn {
			if m.ID != int64(c.photo) {
				t.Errorf("%s: matched %s (%v, distance %d)", c.name, names[m.ID], m.Kind, m.Distance)
			}
		}
		if m := bandMatch(msOff); m != nil {
			t.Errorf("%s: band match %+v with the band off", c.name, *m)
		}
		if m := bandMatch(chunked.Search(c.q, SearchOptions{})); m != nil {
			t.Errorf("%s: band match %+v over a ChunkSearcher", c.name, *m)
		}
		if m := bandMatch(swapped.Search(c.q, SearchOptions{})); m != nil {
			t.Errorf("%s: band match through another photo's patch (pixels %.2f, detail %.2f)", c.name, m.Pixels, m.PixelDetail)
		}
		if m := bandMatch(msOn); m != nil {
			band++
			if m.Distance > WholeBandDistance || m.Pixels < MinPixelCorr || m.PixelDetail < MinPixelDetail || m.Transform != pdq.Original {
				t.Errorf("%s: band match %+v outside the band's rules", c.name, *m)
			}
			if bo := bandMatch(on.Search(c.q, SearchOptions{BandOnly: true})); bo == nil || bo.ID != m.ID {
				t.Errorf("%s: BandOnly lost the band match", c.name)
			}
		}
		if found(msOn, c.photo) && !found(msOff, c.photo) {
			gained++
			t.Logf("gained: %s", c.name)
		}
		for _, m := range on.Search(c.q, SearchOptions{BandOnly: true}) {
			if m.Kind == Whole && m.Distance <= WholeDistance {
				t.Errorf("%s: BandOnly returned a whole-image match within %d", c.name, WholeDistance)
			}
		}
	}
	t.Logf("%d band matches; %d re-posts found only with the band", band, gained)
	if gained == 0 {
		t.Error("the band found no re-post that the index without it misses")
	}
}

// wholeMap lays a rotated or mirrored copy over its original: under the
// variant whose hash is nearest the original's, the pixel check agrees.
func TestWholeMapTransforms(t *testing.T) {
	h := NewHasher(Options{PDQMaxSide: -1})
	for _, name := range []string{"astronaut.jpg", "chelsea.jpg", "rocket.jpg"} {
		img := loadPhoto(t, name)
		sig, err := h.Signatures(img)
		if err != nil {
			t.Fatal(err)
		}
		ix := NewIndex()
		ix.Add(1, img.Bounds().Dx(), img.Bounds().Dy(), sig)
		e := &ix.entries[0]
		var whole pdq.Hash
		for _, r := range sig {
			if r.Kind == Whole {
				whole = r.Hash
			}
		}
		for ki, k := range [][]reposts.Kind{{reposts.FlipH}, {reposts.Rot90}, {reposts.Grey}} {
			q := repostQuery(t, h, img, k, uint64(ki), 9)
			var best *QueryHash
			for i := range q.Hashes {
				qh := &q.Hashes[i]
				if qh.Kind == Whole && qh.Rect == 0 && (best == nil || pdq.Distance(qh.Hash, whole) < pdq.Distance(best.Hash, whole)) {
					best = qh
				}
			}
			corr, detail, ok := ix.wholePixels(q, e, best)
			if !ok || corr < 0.9 {
				t.Errorf("%s %s: variant %v, pixels %.3f detail %.3f ok %v; want agreement", name, reposts.Name(k), best.Transform, corr, detail, ok)
			}
			// Another variant lays the copy over the original wrongly.
			wrong := *best
			wrong.Transform = (best.Transform + 2) % 8
			if c, _, ok := ix.wholePixels(q, e, &wrong); ok {
				t.Errorf("%s %s: variant %v (not the copy's) agrees too (pixels %.3f)", name, reposts.Name(k), wrong.Transform, c)
			}
		}
	}
}

// Weak window evidence (one window, or two far ones) makes a match only
// with a near window and a far stricter pixel check, or a window within 28
// bits and a near-perfect one (the far weak rule): crops that the
// ordinary rule misses are found, each by its own original, and nothing
// more is found through another photo's patch.
func TestWeakWindowEvidence(t *testing.T) {
	h := NewHasher(Options{PDQMaxSide: -1})
	_, names := photoIndex(t, h)
	newIx := func(weak bool) *Index {
		ix := NewIndexWith(NewMIHSearcher(false), NewChunkSearcher())
		if !weak {
			ix.vp.weakPixelDetail = 0 // the ordinary rule alone
		}
		return ix
	}
	def, strict, swapped, swappedStrict := newIx(true), newIx(false), newIx(true), newIx(false)
	addPhotos(t, h, names, []*Index{def, strict}, []*Index{swapped, swappedStrict})
	byID := func(ms []Match) map[int64]Match {
		out := map[int64]Match{}
		for _, m := range ms {
			out[m.ID] = m
		}
		return out
	}
	gained := 0
	for i, name := range names {
		img := loadPhoto(t, name)
		for _, k := range [][]reposts.Kind{{reposts.Crop75}, {reposts.Crop90}, {reposts.FlipH, reposts.Crop75}, {reposts.Crop75, reposts.JPEG30}} {
			for seed := range uint64(6) {
				label := fmt.Sprintf("%s %s seed %d", name, reposts.Name(k), seed)
				q := repostQuery(t, h, img, k, seed, 7)
				ms, ordinary := def.Search(q, SearchOptions{}), byID(strict.Search(q, SearchOptions{}))
				for _, m := range ms {
					if m.ID != int64(i) {
						t.Errorf("%s: matched %s (%v, %d windows, distance %d)", label, names[m.ID], m.Kind, m.Windows, m.Distance)
					}
					if _, ok := ordinary[m.ID]; ok {
						continue
					}
					// Found through weak evidence only.
					gained++
					t.Logf("found only through weak evidence: %s (%d windows, distance %d, pixels %.3f, detail %.3f)", label, m.Windows, m.Distance, m.Pixels, m.PixelDetail)
					vp := defaultVerify
					near := m.Distance <= vp.strongDistance && m.Pixels >= vp.weakPixelCorr && m.PixelDetail >= vp.weakPixelDetail
					far := m.Distance <= vp.farWeakDistance && m.Pixels >= vp.farWeakCorr && m.PixelDetail >= vp.farWeakDetail
					if m.Kind != Window || !near && !far {
						t.Errorf("%s: match %+v outside the weak rules", label, m)
					}
				}
				alone := byID(swappedStrict.Search(q, SearchOptions{}))
				for _, m := range swapped.Search(q, SearchOptions{}) {
					if _, ok := alone[m.ID]; !ok {
						t.Errorf("%s: weak evidence matched %s through another photo's patch (pixels %.2f, detail %.2f)", label, names[m.ID], m.Pixels, m.PixelDetail)
					}
				}
			}
		}
	}
	t.Logf("%d crops found only through weak evidence", gained)
	if gained == 0 {
		t.Error("weak evidence found no crop that the ordinary rule misses")
	}
}

// addPhotos adds the named committed photos' signatures to each index of
// own (ids are positions in names), and to each index of swapped with the
// next photo's patch in place of its own (the patch is a signature's last
// hash), so that the pixel check compares another picture. The signatures
// keep the windows of the photos' whole planes and leave out those of
// their middles (centralExtra): the rules these tests exercise (the band,
// weak evidence) serve re-posts that few windows meet, and with the
// middles' windows every re-post of the committed photos that they query
// meets enough windows for the ordinary rule.
func addPhotos(t *testing.T, h *Hasher, names []string, own, swapped []*Index) {
	t.Helper()
	sigs := make([][]RegionHash, len(names))
	for i, name := range names {
		sig, err := h.Signatures(loadPhoto(t, name))
		if err != nil {
			t.Fatal(err)
		}
		if sig[len(sig)-1].Kind != Patch {
			t.Fatalf("%s: the signature does not end with its patch", name)
		}
		sigs[i] = wholePlaneWindows(sig)
	}
	for i, name := range names {
		b := loadPhoto(t, name).Bounds()
		other := sigs[(i+1)%len(sigs)]
		mixed := append(append([]RegionHash{}, sigs[i][:len(sigs[i])-1]...), other[len(other)-1])
		for _, ix := range own {
			ix.Add(int64(i), b.Dx(), b.Dy(), sigs[i])
		}
		for _, ix := range swapped {
			ix.Add(int64(i), b.Dx(), b.Dy(), mixed)
		}
	}
}

// wholePlaneWindows is sig without the windows of the plane's middle: the
// windows after the first wholeWindows (storedWindows puts them last).
func wholePlaneWindows(sig []RegionHash) []RegionHash {
	var out []RegionHash
	n := 0
	for _, r := range sig {
		if r.Kind == Window {
			if n++; n > wholeWindows {
				continue
			}
		}
		out = append(out, r)
	}
	return out
}
