package neardup

import (
	"cmp"
	"image"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
	"github.com/xmodal/xmodal/internal/testutil"
)

// setRef sets reference bit k (row k/16, column k%16) of h.
func setRef(h *pdq.Hash, k int) { h[31-k>>3] |= 1 << (k & 7) }

// TestLowKey: the key holds the 28 bits of the lowest frequencies (row
// and column, 0-based, summing to lowKeySum or less), each bit its own,
// and nothing else; lowDist counts the 64 bits of the 8 x 8 lowest.
func TestLowKey(t *testing.T) {
	seen := map[uint64]int{}
	all := pdq.Hash{}
	for k := range 256 {
		var h pdq.Hash
		setRef(&h, k)
		w := words(h)
		row, col := k/16, k%16
		inKey := row+col <= lowKeySum
		key := lowKey(w)
		switch {
		case inKey && key == 0:
			t.Errorf("bit %d (frequency %d,%d) is not in the key", k, row+1, col+1)
		case !inKey && key != 0:
			t.Errorf("bit %d (frequency %d,%d) is in the key: %x", k, row+1, col+1, key)
		case inKey:
			if o, dup := seen[key]; dup {
				t.Errorf("bits %d and %d give the same key %x", o, k, key)
			}
			if key&(key-1) != 0 || key >= 1<<lowKeyBits {
				t.Errorf("bit %d gives key %x: not one bit of the low %d", k, key, lowKeyBits)
			}
			seen[key] = k
			setRef(&all, k)
		}
		wantLow := 0
		if row < lowHitSide && col < lowHitSide {
			wantLow = 1
		}
		if d := lowDist(w, words(pdq.Hash{})); d != wantLow {
			t.Errorf("bit %d: lowDist %d, want %d", k, d, wantLow)
		}
	}
	if lowHitMask[0] != 0 || lowHitMask[1] != 0 {
		t.Errorf("low hit bits outside words 2 and 3: %x", lowHitMask)
	}
	if len(seen) != lowKeyBits {
		t.Errorf("%d key bits, want %d", len(seen), lowKeyBits)
	}
	// All the key's bits together: its low 28 bits.
	if got := lowKey(words(all)); got != 1<<lowKeyBits-1 {
		t.Errorf("all key bits: %x", got)
	}
}

// TestLowTable: lookups return exactly the refs of a key, newest first,
// across the table's growth, and nothing for a key held by more than
// lowMaxRefs refs.
func TestLowTable(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var tab lowTable
	byKey := map[uint64][]uint32{}
	const n = 20000
	for ref := range uint32(n) {
		k := r.Uint64N(5000) // many keys shared by a few refs
		if ref%10 == 0 {
			k = 99999 // one key shared by n/10 refs
		}
		tab.insert(ref, k)
		byKey[k] = append(byKey[k], ref)
	}
	if len(tab.heads) < n {
		t.Fatalf("%d buckets for %d refs", len(tab.heads), n)
	}
	var buf []uint32
	for k, refs := range byKey {
		got, ok := tab.lookup(k, buf[:0])
		if len(refs) > lowMaxRefs {
			if ok || len(got) != 0 {
				t.Errorf("key %d of %d refs: ok %v, %d refs", k, len(refs), ok, len(got))
			}
			continue
		}
		want := slices.Clone(refs)
		slices.Reverse(want)
		if !ok || !slices.Equal(got, want) {
			t.Errorf("key %d: %v (ok %v), want %v", k, got, ok, want)
		}
		buf = got
	}
	if got, ok := tab.lookup(1<<40, nil); !ok || len(got) != 0 {
		t.Errorf("absent key: %v %v", got, ok)
	}
	var empty lowTable
	if got, ok := empty.lookup(7, nil); !ok || len(got) != 0 {
		t.Errorf("empty table: %v %v", got, ok)
	}
}

// TestLowSeeds: JPEG at quality 30 over a 75 % crop moves most windows of
// a generated picture beyond the window radius, but their lowest
// frequencies hold. With the low seeds and hits more of 40 such re-posts
// are found, none lost, and no distractor (another picture of the same
// family, edited alike) is matched; each match found only that way says
// so (LowFrequency) and rests on at least two agreeing windows.
func TestLowSeeds(t *testing.T) {
	if testing.Short() {
		t.Skip("hashes 100 generated pictures and queries 200")
	}
	const nPics = 100
	h := NewHasher(Options{PDQMaxSide: -1})
	newIndex := func(bits int) *Index {
		ix := NewIndexWith(NewMIHSearcher(false), NewMIHSearcher(false))
		ix.vp.lowHitBits = bits
		return ix
	}
	on, off := newIndex(LowHitBits), newIndex(0)
	pic := evalPic
	indexEvalPics(t, h, nPics, on, off)
	var n foundTally
	lowOnly := 0
	for p := range nPics {
		q := repostQuery(t, h, pic(p), []reposts.Kind{reposts.Crop75, reposts.JPEG30}, uint64(p), 17)
		a := on.Search(q, SearchOptions{K: 1})
		b := off.Search(q, SearchOptions{K: 1})
		found := len(a) > 0 && a[0].ID == int64(p)
		n.add(found, len(b) > 0 && b[0].ID == int64(p))
		if found && a[0].LowFrequency {
			lowOnly++
			if a[0].Windows < 2 || a[0].Distance <= WindowDistance {
				t.Errorf("picture %d: low-frequency match on %d windows at %d bits", p, a[0].Windows, a[0].Distance)
			}
		}
		d := repostQuery(t, h, pic(1000+p), []reposts.Kind{reposts.Crop75, reposts.JPEG30}, uint64(p), 19)
		if ms := on.Search(d, SearchOptions{K: 1}); len(ms) > 0 {
			t.Errorf("distractor %d matched picture %d (%v)", 1000+p, ms[0].ID, ms[0].Kind)
		}
	}
	t.Logf("crop75+jpeg30 of %d pictures: %d found with low seeds (%d on low hits alone), %d without, %d lost", nPics, n.with, lowOnly, n.without, n.lost)
	if n.with <= n.without || n.lost > 0 || lowOnly == 0 {
		t.Errorf("with low seeds %d found (%d on low hits alone), without %d, %d found only without", n.with, lowOnly, n.without, n.lost)
	}
}

// TestLowHitsAlone: a match on low hits alone needs two agreeing
// windows. Take the low-frequency matches of crop75+jpeg30 re-posts and
// keep one low hit of each: no match stands on it (in the 10k eval, one
// low window with a near-perfect pixel check matched two distractors).
func TestLowHitsAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("hashes 40 generated pictures")
	}
	h := NewHasher(Options{PDQMaxSide: -1})
	checked := 0
	for p := range 40 {
		ix := NewIndexWith(NewMIHSearcher(false), NewMIHSearcher(false))
		sig, err := h.Signatures(genPhoto(t, p))
		if err != nil {
			t.Fatal(err)
		}
		ix.Add(int64(p), 640, 480, sig)
		q := repostQuery(t, h, genPhoto(t, p), []reposts.Kind{reposts.Crop75, reposts.JPEG30}, uint64(p), 17)
		ms := ix.Search(q, SearchOptions{K: 1})
		if len(ms) == 0 || !ms[0].LowFrequency {
			continue
		}
		hits := ix.windowHits(q)[0]
		var low []winHit
		for _, hh := range hits {
			if hh.dist > WindowDistance {
				low = append(low, hh)
			}
		}
		if _, ok := ix.verify(q, &ix.entries[0], low, verifyLookup); !ok {
			t.Errorf("picture %d: its %d low hits alone do not verify", p, len(low))
		}
		for i := range low {
			if m, ok := ix.verify(q, &ix.entries[0], low[i:i+1], verifyLookup); ok {
				t.Errorf("picture %d: one low hit (%d bits) made a match: %+v", p, low[i].dist, m)
			}
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("no crop75+jpeg30 re-post was found on low hits alone")
	}
	t.Logf("%d low-frequency matches checked", checked)
}

// TestLowHitsDoNotOutvoteNearWindows: the 10k eval's flipped 75 % crop of
// rocket.jpg (its photo 11, edit 25, seed 1) shares one window at 12 bits
// and one at 28 with the photo, which agree, and low hits at 28 and 36 bits
// that agree on another map and fail the far weak rule's pixel check. As a
// pair of low-weighted hits the latter no longer outvote the former: the
// crop is found, as it was before low hits.
func TestLowHitsDoNotOutvoteNearWindows(t *testing.T) {
	h := NewHasher(Options{PDQMaxSide: -1})
	img := loadPhoto(t, "rocket.jpg")
	sig, err := h.Signatures(img)
	if err != nil {
		t.Fatal(err)
	}
	b := img.Bounds()
	for _, low := range []int{LowHitBits, 0} {
		ix := NewIndexWith(NewMIHSearcher(false), NewMIHSearcher(false))
		ix.vp.lowHitBits = low
		ix.Add(1, b.Dx(), b.Dy(), sig)
		rp, err := reposts.Apply(img, []reposts.Kind{reposts.FlipH, reposts.Crop75}, rand.New(rand.NewPCG(1^11*0x100000001b3, 25+7)))
		if err != nil {
			t.Fatal(err)
		}
		q, err := h.Query(rp.Image)
		if err != nil {
			t.Fatal(err)
		}
		if ms := ix.Search(q, SearchOptions{K: 1}); len(ms) != 1 || ms[0].Kind != Window || ms[0].LowFrequency {
			t.Errorf("low hits %d: matches %+v, want a window match", low, ms)
		}
	}
}

// TestLowHitMapYieldsToNearWindow: the 10k eval's flipped meme of
// wee.jpg (34 x 42; its photo 22, edit 18, seed 1) agrees with the photo
// on windows at 12-28 bits and on low hits, and the largest set was found
// from a low overlay window's map at 36 bits, under which the placement
// failed. The nearest window within the radius places the query now: the
// meme is found, on the same windows.
func TestLowHitMapYieldsToNearWindow(t *testing.T) {
	h := NewHasher(Options{PDQMaxSide: -1})
	img := testutil.DecodeImage(t, "../../testdata/pdq/images/misc/wee.jpg")
	sig, err := h.Signatures(img)
	if err != nil {
		t.Fatal(err)
	}
	ix := NewIndexWith(NewMIHSearcher(false), NewMIHSearcher(false))
	b := img.Bounds()
	ix.Add(1, b.Dx(), b.Dy(), sig)
	q := repostQuery(t, h, img, []reposts.Kind{reposts.FlipH, reposts.Caption}, 1^22*0x100000001b3, 18+7)
	if ms := ix.Search(q, SearchOptions{K: 1}); len(ms) != 1 || ms[0].ID != 1 {
		t.Errorf("matches %+v, want the photo", ms)
	}
}

// evalPic is the eval's generated picture i (xmodal eval neardup's
// originals: gen-<family>-<seed>), 640 x 480.
func evalPic(i int) image.Image {
	return reposts.Photo(i%len(reposts.Families), 0x9e3779b97f4a7c15+uint64(i)*2+1, 640, 480)
}

// indexEvalPics adds the signatures of the eval's pictures 0 to n-1 to
// each index, under their numbers.
func indexEvalPics(t *testing.T, h *Hasher, n int, ixs ...*Index) {
	t.Helper()
	for p := range n {
		sig, err := h.Signatures(evalPic(p))
		if err != nil {
			t.Fatal(err)
		}
		for _, ix := range ixs {
			ix.Add(int64(p), 640, 480, sig)
		}
	}
}

// TestKeyFlips: the bits keyFlips names are the key's bits that noise
// flips. Random coefficients, each variant hashed before and after a
// small disturbance: the key bits that moved are among the window's
// lowFlips least certain ones far more often than the lowFlips of 28 that
// a random order would name (a wrong bit order would give that).
func TestKeyFlips(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	moved, named := 0, 0
	for range 400 {
		var c, n [hashFreqs][hashFreqs]float32
		for i := range hashFreqs {
			for j := range hashFreqs {
				c[i][j] = float32(r.NormFloat64())
				n[i][j] = c[i][j] + float32(0.05*r.NormFloat64())
			}
		}
		for d := range pdq.Dihedral(8) {
			fl := keyFlips(&c, d, coeffHash(&c, d))
			if want := keyFlipsRef(&c, d); fl != want {
				t.Fatalf("variant %d: flips %v, by sorting %v", d, fl, want)
			}
			seen := map[uint8]bool{}
			for _, b := range fl {
				if b >= lowKeyBits || seen[b] {
					t.Fatalf("variant %d: flips %v", d, fl)
				}
				seen[b] = true
			}
			x := lowKey(words(coeffHash(&c, d))) ^ lowKey(words(coeffHash(&n, d)))
			for b := range uint8(lowKeyBits) {
				if x>>b&1 == 1 {
					moved++
					if seen[b] {
						named++
					}
				}
			}
		}
	}
	t.Logf("%d of %d moved key bits among the %d named", named, moved, lowFlips)
	if moved < 100 || float64(named) < 0.8*float64(moved) {
		t.Errorf("%d of %d moved key bits were named", named, moved)
	}
}

// TestLowFlips: the crop plane's seeds that also look up their least
// certain key bits flipped find more crop75+jpeg30 re-posts of the
// committed photos and of real photos of the ThreatExchange set, lose
// none, and match no other photo.
func TestLowFlips(t *testing.T) {
	if testing.Short() {
		t.Skip("hashes 20 photos and queries 200 re-posts")
	}
	h := NewHasher(Options{PDQMaxSide: -1})
	files, err := filepath.Glob(filepath.Join(photoDir, "*.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob("../../testdata/pdq/images/labelme-subset/*.jpg")
	files = append(files, more...)
	on := NewIndexWith(NewMIHSearcher(false), NewMIHSearcher(false))
	off := NewIndexWith(NewMIHSearcher(false), NewMIHSearcher(false))
	off.vp.lowFlips = 0
	var imgs []image.Image
	for i, f := range files {
		img := testutil.DecodeImage(t, f)
		sig, err := h.Signatures(img)
		if err != nil {
			t.Fatal(err)
		}
		b := img.Bounds()
		on.Add(int64(i), b.Dx(), b.Dy(), sig)
		off.Add(int64(i), b.Dx(), b.Dy(), sig)
		imgs = append(imgs, img)
	}
	on.Finish()
	off.Finish()
	var n foundTally
	for i, img := range imgs {
		for seed := range uint64(10) {
			q := repostQuery(t, h, img, []reposts.Kind{reposts.Crop75, reposts.JPEG30}, seed, 23)
			a := on.Search(q, SearchOptions{K: 1})
			b := off.Search(q, SearchOptions{K: 1})
			for _, ms := range [][]Match{a, b} {
				if len(ms) > 0 && ms[0].ID != int64(i) {
					t.Errorf("%s seed %d: matched %s", filepath.Base(files[i]), seed, filepath.Base(files[ms[0].ID]))
				}
			}
			n.add(len(a) > 0 && a[0].ID == int64(i), len(b) > 0 && b[0].ID == int64(i))
		}
	}
	t.Logf("crop75+jpeg30 of %d photos, 10 seeds: %d found with the flipped keys, %d without, %d lost", len(imgs), n.with, n.without, n.lost)
	if n.with <= n.without || n.lost > 0 {
		t.Errorf("with flipped keys %d found, without %d, %d found only without", n.with, n.without, n.lost)
	}
}

// keyFlipsRef is keyFlips the long way: the variant's coefficients laid
// out as coeffHash lays them (variantCoeffs), their median selected, the key's places
// sorted by their distance to it.
func keyFlipsRef(c *[hashFreqs][hashFreqs]float32, d pdq.Dihedral) [lowFlips]uint8 {
	var v [hashFreqs * hashFreqs]float32
	variantCoeffs(c, d, &v)
	sorted := v
	med := kth(sorted[:], len(sorted)/2-1)
	type place struct {
		b    uint8
		dist float32
	}
	var ps []place
	for i := 0; i <= lowKeySum; i++ {
		for j := 0; i+j <= lowKeySum; j++ {
			ps = append(ps, place{uint8(len(ps)), abs32(v[i*hashFreqs+j] - med)})
		}
	}
	slices.SortStableFunc(ps, func(a, b place) int { return cmp.Compare(a.dist, b.dist) })
	var out [lowFlips]uint8
	for k := range out {
		out[k] = ps[k].b
	}
	return out
}
