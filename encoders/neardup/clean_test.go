package neardup

import (
	"image"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
)

// naiveMorph is morph by definition: the extreme over the clipped window.
func naiveMorph(in, out []float32, w, h, k int, horiz, isMax bool) {
	r := k / 2
	for y := range h {
		for x := range w {
			best := in[y*w+x]
			for d := -r; d <= r; d++ {
				xx, yy := x, y
				if horiz {
					xx += d
				} else {
					yy += d
				}
				if xx < 0 || yy < 0 || xx >= w || yy >= h {
					continue
				}
				if v := in[yy*w+xx]; (isMax && v > best) || (!isMax && v < best) {
					best = v
				}
			}
			out[y*w+x] = best
		}
	}
}

func TestMorphMatchesNaive(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct{ w, h, k int }{{1, 1, 3}, {7, 5, 3}, {30, 17, 5}, {64, 48, 9}, {9, 40, 11}, {5, 5, 13}} {
		in := make([]float32, c.w*c.h)
		for i := range in {
			in[i] = float32(r.IntN(256))
		}
		got, want := make([]float32, len(in)), make([]float32, len(in))
		for _, horiz := range []bool{true, false} {
			for _, isMax := range []bool{true, false} {
				morph(in, got, c.w, c.h, c.k, horiz, isMax)
				naiveMorph(in, want, c.w, c.h, c.k, horiz, isMax)
				for i := range got {
					if got[i] != want[i] {
						t.Fatalf("%dx%d k=%d horiz=%v max=%v: at %d got %v, want %v", c.w, c.h, c.k, horiz, isMax, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// TestCleanedHashWatermarks: watermarked copies of generated pictures whose
// whole-image hash moved beyond 31 bits are within 31 of their picture by
// the cleaned hashes, and the cleaned hashes of different pictures of one
// family stay apart.
func TestCleanedHashWatermarks(t *testing.T) {
	hs := NewHasher(Options{PDQMaxSide: -1})
	var ph pdq.Hasher
	ph.MaxSide = -1
	var moved, found int
	var origs []pdq.Hash
	for i := range 40 {
		img := reposts.Photo(i%len(reposts.Families), uint64(1000+i), 640, 480)
		rp, err := reposts.Apply(img, []reposts.Kind{reposts.Watermark}, rand.New(rand.NewPCG(uint64(i), 9)))
		if err != nil {
			t.Fatal(err)
		}
		a, _ := ph.Hash(img)
		b, _ := ph.Hash(rp.Image)
		ca := cleanedOf(t, hs, img)
		cb := cleanedOf(t, hs, rp.Image)
		origs = append(origs, ca)
		if pdq.Distance(a, b) > WholeDistance {
			moved++
			if pdq.Distance(ca, cb) <= WholeDistance {
				found++
			}
		}
		if d := pdq.Distance(ca, cb); d > 16 {
			t.Errorf("picture %d: cleaned hashes of the picture and its watermarked copy %d bits apart", i, d)
		}
	}
	t.Logf("%d of 40 watermarks moved the whole-image hash beyond %d bits; the cleaned hashes link %d of them", moved, WholeDistance, found)
	if moved == 0 || found != moved {
		t.Errorf("cleaned hashes link %d of %d moved copies", found, moved)
	}
	var close int
	for i := range origs {
		for j := range i {
			if pdq.Distance(origs[i], origs[j]) <= WholeDistance {
				close++
				t.Logf("pictures %d and %d (families %d, %d): cleaned hashes %d bits apart", i, j, i%5, j%5, pdq.Distance(origs[i], origs[j]))
			}
		}
	}
	if close > 0 {
		t.Errorf("%d pairs of different pictures within %d bits by their cleaned hashes", close, WholeDistance)
	}
}

func cleanedOf(t *testing.T, hs *Hasher, img image.Image) pdq.Hash {
	t.Helper()
	luma, w, h, err := hs.lumaOf(img)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := hs.cleanedHash(luma, w, h)
	return v
}

func TestCleanedSpace(t *testing.T) {
	for _, b := range []byte{areaSpaceByte, cleanedSpaceByte} {
		if n := inSpace(pdq.Hash{}, b).OnesCount(); n != 128 {
			t.Fatalf("space byte %#x sets %d bits, want 128", b, n)
		}
	}
	if d := pdq.Distance(areaSpace(pdq.Hash{}), cleanedSpace(pdq.Hash{})); d != 256 {
		t.Errorf("the area and cleaned spaces lie %d bits apart, want 256", d)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for range 100 {
		var a, b pdq.Hash
		for i := range a {
			a[i], b[i] = byte(r.IntN(256)), byte(r.IntN(256))
		}
		if pdq.Distance(cleanedSpace(a), cleanedSpace(b)) != pdq.Distance(a, b) {
			t.Fatal("masking changed a distance")
		}
		if d := pdq.Distance(cleanedSpace(a), a); d != 128 {
			t.Fatalf("a masked hash lies %d bits from itself unmasked, want 128", d)
		}
	}
}

// TestCleanedQueryFindsWatermarks: a watermarked copy of a generated
// picture whose whole-image hash moved beyond WholeDistance is found by the
// query's cleaned hash (Kind Cleaned), against the picture's cleaned hash
// when the index holds one, and, less often, against its plain PDQ hash
// alone (as banks and Milvus hold it: cleaning the original moves its own
// hash too, 16-62 bits here). Without the query's cleaned hashes it is not
// found, and no copy is found as another picture.
func TestCleanedQueryFindsWatermarks(t *testing.T) {
	hs := NewHasher(Options{PDQMaxSide: -1})
	const n = 40
	type pair struct {
		orig []RegionHash
		copy image.Image
	}
	var pairs []pair
	for i := range n {
		img := reposts.Photo(i%len(reposts.Families), uint64(1000+i), 640, 480)
		sig, err := hs.Signatures(img)
		if err != nil {
			t.Fatal(err)
		}
		rp, err := reposts.Apply(img, []reposts.Kind{reposts.Watermark}, rand.New(rand.NewPCG(uint64(i), 9)))
		if err != nil {
			t.Fatal(err)
		}
		pairs = append(pairs, pair{sig, rp.Image})
	}
	for _, c := range []struct {
		name     string
		kinds    []Kind // of each original's signature, indexed
		minShare float64
	}{
		{"cleaned hashes indexed", []Kind{Whole, Cleaned}, 1},
		{"PDQ hashes only", []Kind{Whole}, 0.3},
	} {
		t.Run(c.name, func(t *testing.T) {
			ix := NewIndex()
			for i, p := range pairs {
				ix.Add(int64(i), 640, 480, slices.DeleteFunc(slices.Clone(p.orig), func(r RegionHash) bool { return !slices.Contains(c.kinds, r.Kind) }))
			}
			var moved, found int
			for i, p := range pairs {
				q, err := hs.QueryRects(p.copy)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.ContainsFunc(q.Hashes, func(h QueryHash) bool { return h.Cleaned && h.Kind == Whole && h.Transform == pdq.Original }) {
					t.Fatalf("copy %d: the query has no cleaned hash", i)
				}
				plain := *q
				plain.Hashes = slices.DeleteFunc(slices.Clone(q.Hashes), func(h QueryHash) bool { return h.Cleaned })
				ms := ix.Search(q, SearchOptions{})
				for _, m := range ms {
					if m.ID != int64(i) {
						t.Errorf("copy %d found as picture %d (%+v)", i, m.ID, m)
					}
				}
				if len(ix.Search(&plain, SearchOptions{})) > 0 {
					continue
				}
				moved++
				if len(ms) > 0 {
					if ms[0].Kind != Cleaned || ms[0].Distance > WholeDistance {
						t.Errorf("copy %d: found as %+v, want a cleaned match", i, ms[0])
					}
					found++
				}
			}
			t.Logf("%d of %d watermarked copies not found by their plain hashes; %d of them found by the cleaned hash", moved, n, found)
			if moved == 0 || float64(found) < c.minShare*float64(moved) {
				t.Errorf("the cleaned hash found %d of %d copies that the plain hashes missed, want %.0f %%", found, moved, 100*c.minShare)
			}
		})
	}
}
