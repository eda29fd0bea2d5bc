package pdq_test

import (
	"context"
	"encoding/json"
	"fmt"
	"image"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xmodal/xmodal/encoders/imageprep"
	"github.com/xmodal/xmodal/encoders/pdq"
)

// plainImage hides an image's pdq.Grid (and its packed rows).
type plainImage struct{ image.Image }

// BenchmarkFastModePDQ measures, on the photo set of tools/bench_photos.py
// (.cache/bench-photos, or XMODAL_BENCH_PHOTOS), how far each decode mode's
// PDQ hash is from the reference's full-resolution hash (pdqhash on Pillow's
// full decode, in the set's manifest), per set, and near-duplicate recall:
// the share of dihedral variants whose reference hash lies within 31 bits of
// one of the eight dihedral hashes of the original as that mode hashes it.
// Rows "pdq_min_side N" are fast mode with image.pdq_min_side N instead of
// the default (imageprep.DefaultHashSide): on the 3000x2000 photos 750
// still decodes the hash input at 1/2, 500 and 375 at 1/4, 250 at 1/8.
// It also reports what hashing the model's own decode would give (no
// separate hash input), and, rows "no grid", what hashing the same decodes
// as images of their own gave before pdq.Grid. It prints a table; b.N is ignored.
func BenchmarkFastModePDQ(b *testing.B) {
	dir := os.Getenv("XMODAL_BENCH_PHOTOS")
	if dir == "" {
		dir = "../../.cache/bench-photos"
	}
	raw, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		b.Fatalf("photo set missing: run .cache/venv/bin/python tools/bench_photos.py (%v)", err)
	}
	var m struct {
		Photos []struct {
			File, PDQ, Variant, Of string
			PDQQuality             int `json:"pdq_quality"`
		}
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		b.Fatal(err)
	}
	modes := []struct {
		name   string
		need   imageprep.Need
		mode   imageprep.Mode
		noGrid bool // hash the decode as an image of its own (before pdq.Grid)
	}{
		{"exact", imageprep.Need{}, imageprep.ModeExact, false},
		{"fast", imageprep.Need{Draft: 224, LongSide: 128, Hash: imageprep.DefaultHashSide}, imageprep.ModeFast, false},
		{"fast, pdq_min_side 1000", imageprep.Need{Draft: 224, LongSide: 128, Hash: 1000}, imageprep.ModeFast, false},
		{"fast, pdq_min_side 750", imageprep.Need{Draft: 224, LongSide: 128, Hash: 750}, imageprep.ModeFast, false},
		{"fast, pdq_min_side 500", imageprep.Need{Draft: 224, LongSide: 128, Hash: 500}, imageprep.ModeFast, false},
		{"fast, pdq_min_side 375", imageprep.Need{Draft: 224, LongSide: 128, Hash: 375}, imageprep.ModeFast, false},
		{"fast, pdq_min_side 250", imageprep.Need{Draft: 224, LongSide: 128, Hash: 250}, imageprep.ModeFast, false},
		{"fast, model decode hashed (224 px model)", imageprep.Need{Draft: 224, LongSide: 128}, imageprep.ModeFast, false},
		{"no grid, pdq_min_side 1000 (the old default)", imageprep.Need{Draft: 224, LongSide: 128, Hash: 1000}, imageprep.ModeFast, true},
		{"no grid, pdq_min_side 500", imageprep.Need{Draft: 224, LongSide: 128, Hash: 500}, imageprep.ModeFast, true},
		{"no grid, pdq_min_side 250", imageprep.Need{Draft: 224, LongSide: 128, Hash: 250}, imageprep.ModeFast, true},
		{"fast, model decode hashed (64 px model)", imageprep.Need{Draft: 64, LongSide: 128}, imageprep.ModeFast, false},
	}
	refOf := map[string]pdq.Hash{}
	for _, p := range m.Photos {
		h, err := pdq.ParseHex(p.PDQ)
		if err != nil {
			b.Fatal(err)
		}
		refOf[p.File] = h
	}
	fmt.Printf("%-42s %-7s %5s %6s %4s %4s %4s %6s\n", "mode", "set", "n", "median", "p90", "max", ">10", "recall")
	for _, md := range modes {
		d, err := imageprep.NewDecoder(imageprep.DecoderOptions{Mode: md.mode, Need: md.need})
		if err != nil {
			b.Fatal(err)
		}
		dists := map[string][]int{}
		hashes := map[string][8]pdq.Hash{}
		for _, p := range m.Photos {
			data, err := os.ReadFile(filepath.Join(dir, p.File))
			if err != nil {
				b.Fatal(err)
			}
			dec, err := d.Decode(context.Background(), data)
			if err != nil {
				b.Fatal(err)
			}
			in := image.Image(dec.Image)
			if dec.HashImage != nil {
				in = dec.HashImage
			}
			if md.noGrid {
				in = plainImage{in}
			}
			hs := pdq.Hasher{MaxSide: -1}
			h, _ := hs.Dihedral(in)
			dec.Release()
			hashes[p.File] = h
			set := strings.SplitN(p.File, "/", 2)[0]
			dists[set] = append(dists[set], pdq.Distance(h[pdq.Original], refOf[p.File]))
		}
		// Recall: variants found from their original's hashes, per set.
		found, total := map[string]int{}, map[string]int{}
		for _, p := range m.Photos {
			if p.Variant == "" || p.Variant == "original" {
				continue
			}
			set := strings.SplitN(p.File, "/", 2)[0]
			total[set]++
			orig := hashes[strings.Replace(p.File, "-"+p.Variant+".jpg", "-original.jpg", 1)]
			for _, h := range orig {
				if pdq.Distance(h, refOf[p.File]) <= 31 {
					found[set]++
					break
				}
			}
		}
		for _, set := range []string{"normal", "large", "dih", "hires"} {
			ds := dists[set]
			if len(ds) == 0 {
				continue
			}
			slices.Sort(ds)
			over := 0
			for _, x := range ds {
				if x > 10 {
					over++
				}
			}
			rec := ""
			if total[set] > 0 {
				rec = fmt.Sprintf("%.3f", float64(found[set])/float64(total[set]))
			}
			fmt.Printf("%-42s %-7s %5d %6d %4d %4d %4d %6s\n", md.name, set, len(ds), ds[len(ds)/2], ds[len(ds)*9/10], ds[len(ds)-1], over, rec)
		}
	}
}
