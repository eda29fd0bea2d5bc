package reposts

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/jpeg"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/xmodal/xmodal/encoders/pdq"
)

// SetOptions configure WriteSet.
type SetOptions struct {
	// Originals are image files to make re-posts of.
	Originals []string
	// Generated adds this many photo-like originals (Photo, families in
	// turn) of W x H pixels.
	Generated int
	W, H      int
	// Distractors: generated pictures of the same families that are not
	// originals, written (edited like re-posts) for a near-duplicate
	// search to reject.
	Distractors int
	// Kinds are the edit lists (default every single edit and combination).
	Kinds [][]Kind
	Seed  uint64
	Out   string
}

// Entry is one line of manifest.jsonl.
type Entry struct {
	File     string `json:"file"`
	Original string `json:"original,omitempty"` // empty for distractors
	Edit     string `json:"edit,omitempty"`
	// Shown and Placed as in Placement ([x0, y0, x1, y1] pixels).
	Shown    [4]int `json:"shown,omitzero"`
	Placed   [4]int `json:"placed,omitzero"`
	Dihedral string `json:"dihedral,omitempty"`
}

// WriteSet writes originals/ (the generated originals), reposts/ (every
// original under every edit list), distractors/ and manifest.jsonl into
// opt.Out. Images are JPEG quality 95. Everything follows from the inputs
// and opt.Seed.
func WriteSet(ctx context.Context, opt SetOptions) (int, error) {
	if opt.W == 0 {
		opt.W, opt.H = 640, 480
	}
	if opt.Kinds == nil {
		for _, k := range Singles {
			opt.Kinds = append(opt.Kinds, []Kind{k})
		}
		opt.Kinds = append(opt.Kinds, Combos...)
	}
	for _, d := range []string{"originals", "reposts", "distractors"} {
		if err := os.MkdirAll(filepath.Join(opt.Out, d), 0o755); err != nil {
			return 0, err
		}
	}
	mf, err := os.Create(filepath.Join(opt.Out, "manifest.jsonl"))
	if err != nil {
		return 0, err
	}
	defer mf.Close()
	bw := bufio.NewWriter(mf)
	enc := json.NewEncoder(bw)
	n := 0
	type orig struct {
		name string
		img  func() (image.Image, error)
	}
	var origs []orig
	for _, p := range opt.Originals {
		p := p
		origs = append(origs, orig{name: strings.TrimSuffix(filepath.Base(p), filepath.Ext(p)), img: func() (image.Image, error) {
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			img, _, err := pdq.Decode(data)
			return img, err
		}})
	}
	for i := range opt.Generated {
		i := i
		name := fmt.Sprintf("gen-%05d", i)
		origs = append(origs, orig{name: name, img: func() (image.Image, error) {
			img := Photo(i%len(Families), opt.Seed*1_000_003+uint64(i), opt.W, opt.H)
			return img, writeJPEG(filepath.Join(opt.Out, "originals", name+".jpg"), img)
		}})
	}
	for oi, o := range origs {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		img, err := o.img()
		if err != nil {
			return n, fmt.Errorf("%s: %w", o.name, err)
		}
		for ki, k := range opt.Kinds {
			r := rand.New(rand.NewPCG(opt.Seed^uint64(oi)*0x100000001b3, uint64(ki)+7))
			rp, err := Apply(img, k, r)
			if err != nil {
				return n, fmt.Errorf("%s %s: %w", o.name, Name(k), err)
			}
			file := filepath.Join("reposts", o.name+"__"+Name(k)+".jpg")
			if err := writeJPEG(filepath.Join(opt.Out, file), rp.Image); err != nil {
				return n, err
			}
			sh, pl := rp.Shown, rp.Placed
			if err := enc.Encode(Entry{File: file, Original: o.name, Edit: Name(k), Shown: [4]int{sh.Min.X, sh.Min.Y, sh.Max.X, sh.Max.Y},
				Placed: [4]int{pl.Min.X, pl.Min.Y, pl.Max.X, pl.Max.Y}, Dihedral: rp.Dihedral.String()}); err != nil {
				return n, err
			}
			n++
		}
	}
	for i := range opt.Distractors {
		img := Photo(i%len(Families), opt.Seed*1_000_003+uint64(i)+1<<40, opt.W, opt.H)
		r := rand.New(rand.NewPCG(opt.Seed, uint64(i)+1<<41))
		k := opt.Kinds[r.IntN(len(opt.Kinds))]
		rp, err := Apply(img, k, r)
		if err != nil {
			return n, err
		}
		file := filepath.Join("distractors", fmt.Sprintf("distractor-%05d__%s.jpg", i, Name(k)))
		if err := writeJPEG(filepath.Join(opt.Out, file), rp.Image); err != nil {
			return n, err
		}
		if err := enc.Encode(Entry{File: file, Edit: Name(k)}); err != nil {
			return n, err
		}
		n++
	}
	if err := bw.Flush(); err != nil {
		return n, err
	}
	return n, mf.Close()
}

func writeJPEG(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := writeJPEGTo(f, img); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// writeJPEGTo encodes img at quality 95 into f and closes it.
func writeJPEGTo(f *os.File, img image.Image) error {
	if err := jpeg.Encode(f, img, &jpeg.Options{Quality: 95}); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
