package neardup

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
	"github.com/xmodal/xmodal/internal/testutil"
)

// TestAreaHashFindsDownscales: downscaled copies of the committed photos
// (and the ThreatExchange set's labelme photos) whose PDQ hash moved beyond
// 31 bits are found by their area hashes, with Kind Area, from signatures
// and from the stored window lists alike; an index without the area hashes
// misses some of them.
func TestAreaHashFindsDownscales(t *testing.T) {
	h := NewHasher(Options{PDQMaxSide: -1})
	var ph pdq.Hasher
	ph.MaxSide = -1
	paths, _ := filepath.Glob(filepath.Join(photoDir, "*.jpg"))
	more, _ := filepath.Glob("../../testdata/pdq/images/labelme-subset/*.jpg")
	paths = append(paths, more...)
	withArea := NewIndexWith(NewChunkSearcher(), NewChunkSearcher())
	stored := NewIndexWith(NewChunkSearcher(), NewChunkSearcher())
	without := NewIndexWith(NewChunkSearcher(), NewChunkSearcher())
	imgs := make([]pdq.Hash, len(paths))
	for i, p := range paths {
		img := testutil.DecodeImage(t, p)
		sig, err := h.Signatures(img)
		if err != nil {
			t.Fatal(err)
		}
		if sig[1].Kind != Area {
			t.Fatalf("%s: second hash %s, want the area hash", p, sig[1].Kind)
		}
		imgs[i] = sig[0].Hash
		b := img.Bounds()
		withArea.Add(int64(i), b.Dx(), b.Dy(), sig)
		without.Add(int64(i), b.Dx(), b.Dy(), slices.DeleteFunc(slices.Clone(sig), func(r RegionHash) bool { return r.Kind == Area }))
		// As the embedded index holds it: the stored window list, and the
		// PDQ hash beside it.
		w, hh, ssig, err := ParseWindows(AppendWindows(nil, b.Dx(), b.Dy(), sig))
		if err != nil {
			t.Fatal(err)
		}
		stored.Add(int64(i), w, hh, append(ssig, sig[0]))
	}
	var moved, foundArea, foundWithout int
	for i, p := range paths {
		img := testutil.DecodeImage(t, p)
		for _, k := range [][]reposts.Kind{{reposts.Down50}, {reposts.Down25}} {
			q := repostQuery(t, h, img, k, 1, 1)
			var qp pdq.Hash
			for _, qh := range q.Hashes {
				if qh.Kind == Whole && qh.Rect == 0 && qh.Transform == pdq.Original {
					qp = qh.Hash
				}
			}
			if pdq.Distance(qp, imgs[i]) <= WholeDistance {
				continue
			}
			moved++
			name := filepath.Base(p) + " " + reposts.Name(k)
			for ixName, ix := range map[string]*Index{"signatures": withArea, "stored": stored} {
				ms := ix.Search(q, SearchOptions{})
				if len(ms) == 0 || ms[0].ID != int64(i) {
					t.Errorf("%s (PDQ %d bits away), %s: matches %+v, want its original first", name, pdq.Distance(qp, imgs[i]), ixName, ms)
					continue
				}
				if ixName == "stored" {
					continue
				}
				if ms[0].Kind == Area {
					foundArea++
					if ms[0].Transform != pdq.Original || ms[0].Distance > WholeDistance {
						t.Errorf("%s: area match %+v, want transform original within %d bits", name, ms[0], WholeDistance)
					}
				}
			}
			if ms := without.Search(q, SearchOptions{}); len(ms) > 0 && ms[0].ID == int64(i) {
				foundWithout++
			}
		}
	}
	t.Logf("%d downscales moved PDQ beyond %d bits: %d found first by the area hash; %d found without area hashes", moved, WholeDistance, foundArea, foundWithout)
	if moved == 0 || foundArea == 0 || foundWithout == moved {
		t.Errorf("area hashes found %d of %d moved downscales first, and the index without them %d: want them to add finds", foundArea, moved, foundWithout)
	}
}
