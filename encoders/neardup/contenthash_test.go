package neardup

import (
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
)

// hashesOf splits concatenated 32-byte hashes.
func hashesOf(b []byte) []pdq.Hash {
	var out []pdq.Hash
	for i := 0; i+32 <= len(b); i += 32 {
		out = append(out, pdq.Hash(b[i:i+32]))
	}
	return out
}

// minDistance is the least distance between any hash of a and any of b.
func minDistance(a, b []pdq.Hash) int {
	d := 256
	for _, x := range a {
		for _, y := range b {
			d = min(d, pdq.Distance(x, y))
		}
	}
	return d
}

// ContentHashes links a meme (caption band) and a screenshot of a photo to
// the photo: a hash of the copy's content rectangle lies within 31 bits of
// the photo's whole-image hashes (PDQ and canonical), where the copy's
// whole-image hash does not; the plain photos have no content rectangle,
// and the content hashes of one photo's copies do not come near another
// photo's hashes.
func TestContentHashes(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(photoDir, "*.jpg"))
	if err != nil || len(paths) < 10 {
		t.Fatalf("committed photos missing in %s: %v", photoDir, err)
	}
	h := NewHasher(Options{PDQMaxSide: -1})
	ph := pdq.Hasher{MaxSide: -1}
	type orig struct {
		name   string
		hashes []pdq.Hash
	}
	var origs []orig
	for _, p := range paths {
		img := loadPhoto(t, filepath.Base(p))
		v, canon, q := ph.HashCanonical(img)
		if q < 50 {
			continue
		}
		cv, ccanon, cq, own, _, err := h.ContentHashes(img, true, 50)
		if err != nil {
			t.Fatal(err)
		}
		if cv != v || cq != q || !slices.Equal(ccanon, canon) {
			t.Fatalf("%s: ContentHashes's whole-image hashes differ from plain PDQ's", filepath.Base(p))
		}
		if len(own) != 0 {
			t.Logf("%s: %d content hashes of its own", filepath.Base(p), len(own)/32)
		}
		// The relation of clusters: any hash of one within 31 bits of any
		// hash of the other, the originals' own content hashes included.
		origs = append(origs, orig{filepath.Base(p), slices.Concat([]pdq.Hash{v}, canon, hashesOf(own))})
	}
	edits := [][]reposts.Kind{{reposts.Caption}, {reposts.Screenshot}, {reposts.FlipH, reposts.Caption}, {reposts.Caption, reposts.JPEG30}, {reposts.Down50, reposts.Caption}}
	found, wholeFound, total := 0, 0, 0
	for i, o := range origs {
		img := loadPhoto(t, o.name)
		for j, k := range edits {
			rp, err := reposts.Apply(img, k, rand.New(rand.NewPCG(uint64(i), uint64(j))))
			if err != nil {
				t.Fatal(err)
			}
			total++
			v, canon, _ := ph.HashCanonical(rp.Image)
			whole := append([]pdq.Hash{v}, canon...)
			_, _, _, b, _, err := h.ContentHashes(rp.Image, true, 50)
			if err != nil {
				t.Fatal(err)
			}
			rs := hashesOf(b)
			if minDistance(whole, o.hashes) <= 31 {
				wholeFound++
			}
			if minDistance(slices.Concat(whole, rs), o.hashes) <= 31 {
				found++
			} else {
				t.Logf("%s %s: not linked (regions %d, nearest %d bits)", o.name, reposts.Name(k), len(rs), minDistance(slices.Concat(whole, rs), o.hashes))
			}
			for _, other := range origs {
				if other.name != o.name && minDistance(rs, other.hashes) <= 31 {
					t.Errorf("%s %s: a content hash links to %s", o.name, reposts.Name(k), other.name)
				}
			}
		}
	}
	t.Logf("linked %d of %d copies with content hashes, %d by whole-image hashes alone", found, total, wholeFound)
	if found < total*4/5 || wholeFound > total/10 {
		t.Fatalf("content hashes link %d of %d captioned and framed copies (want at least %d); whole-image hashes alone %d", found, total, total*4/5, wholeFound)
	}
}
