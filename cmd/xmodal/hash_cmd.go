package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders"
	"github.com/xmodal/xmodal/encoders/hash"
	"github.com/xmodal/xmodal/encoders/imageprep"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/ingest/postfile"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/sink/embedded"
	"github.com/xmodal/xmodal/workers"
)

// modelCoder returns the binary-code coder of a loaded model: the fitted
// parameters its directory ships (model.json "hash", or hash.json), else
// the SimHash fallback (see hash.ForModel).
func modelCoder(m *encoders.Model, log *slog.Logger) (*hash.Coder, error) {
	c, src, err := hash.ForModel(m.Dir(), m.Manifest().Hash, m.Version(), m.Dim())
	if err != nil {
		return nil, err
	}
	if c == nil {
		log.Warn("no binary codes: the hash and hybrid plans are off", "reason", src)
		return nil, nil
	}
	log.Info("hash coder", "method", c.Method(), "bits", c.Bits(), "id", c.ID(), "from", src)
	if c.Method() == hash.MethodSimHash {
		log.Warn("binary codes are untrained random hyperplanes; fit them with 'xmodal hash fit' for better hash/hybrid results")
	}
	return c, nil
}

// indexCoder and queryCoder keep a nil coder a nil interface.
func indexCoder(c *hash.Coder) embedded.Coder {
	if c == nil {
		return nil
	}
	return c
}

func queryCoder(c *hash.Coder) query.Coder {
	if c == nil {
		return nil
	}
	return c
}

// ingestHasher computes the PDQ hash of each indexed image, as the query
// service hashes query images (query.PDQMaxSide). Binary codes are computed
// by the index (embedded.Options.Coder), which knows each record's modality.
func ingestHasher() workers.Hasher {
	pool := sync.Pool{New: func() any { return &pdq.Hasher{MaxSide: query.PDQMaxSide} }}
	return workers.Hasher{PDQ: func(img image.Image) ([]byte, int) {
		hs := pool.Get().(*pdq.Hasher)
		defer pool.Put(hs)
		h, q := hs.Hash(img)
		return h[:], q
	}}
}

// ingestQuery gives an image record its near-duplicate query
// (domain.Record.NearDupQuery) while want reports true (an enabled bank
// holds entries with windows), computed as xmodal.v1.match computes a
// lookup's, so that the matcher finds the crops a lookup finds; nil
// otherwise, and for an image refused as a lookup's would be (too small,
// too large, too flat).
func ingestQuery(want func() bool) func(img image.Image) any {
	pool := sync.Pool{New: func() any { return neardup.NewHasher(neardup.Options{PDQMaxSide: query.PDQMaxSide}) }}
	return func(img image.Image) any {
		if !want() {
			return nil
		}
		h := pool.Get().(*neardup.Hasher)
		defer pool.Put(h)
		q, err := h.Query(img)
		if err != nil {
			return nil
		}
		return q
	}
}

// ingestWindows gives an image record its near-duplicate windows
// (image.neardup_windows), in their stored form; nil for an image too small
// or too large to have any (it is still found by whole-image PDQ). With
// content set (clusters.windows) the stored form carries the image's
// content rectangle, which the clusters' window relation reads.
func ingestWindows(content bool) func(img image.Image) []byte {
	pool := sync.Pool{New: func() any { return neardup.NewHasher(neardup.Options{PDQMaxSide: query.PDQMaxSide}) }}
	return func(img image.Image) []byte {
		h := pool.Get().(*neardup.Hasher)
		defer pool.Put(h)
		b := img.Bounds()
		if content {
			ws, c, err := h.WindowsIn(img)
			if err != nil || len(ws) == 0 {
				return nil
			}
			return neardup.AppendWindowsIn(nil, b.Dx(), b.Dy(), ws, c)
		}
		ws, err := h.Windows(img)
		if err != nil || len(ws) == 0 {
			return nil
		}
		return neardup.AppendWindows(nil, b.Dx(), b.Dy(), ws)
	}
}

// ingestVariants is the pipeline's PDQ when the banks are matched at
// ingest: the eight dihedral hashes from one DCT (a rotated or mirrored
// copy of a banked image matches), the first being ingestHasher's hash.
func ingestVariants() func(img image.Image) ([][]byte, []int, int) {
	pool := sync.Pool{New: func() any { return &pdq.Hasher{MaxSide: query.PDQMaxSide} }}
	return func(img image.Image) ([][]byte, []int, int) {
		hs := pool.Get().(*pdq.Hasher)
		defer pool.Put(hs)
		vs, canon, q := hs.DihedralCanonical(img)
		out := make([][]byte, len(vs))
		for i := range vs {
			out[i] = vs[i][:]
		}
		idx := make([]int, len(canon))
		for i, d := range canon {
			idx[i] = int(d)
		}
		return out, idx, q
	}
}

// ingestCanonical gives an image record its PDQ hash and its canonical
// dihedral hashes (clusters.dihedral), from one DCT.
func ingestCanonical() func(img image.Image) ([]byte, []byte, int) {
	pool := sync.Pool{New: func() any { return &pdq.Hasher{MaxSide: query.PDQMaxSide} }}
	return func(img image.Image) ([]byte, []byte, int) {
		hs := pool.Get().(*pdq.Hasher)
		defer pool.Put(hs)
		h, cs, q := hs.HashCanonical(img)
		return h[:], pdq.AppendHashes(nil, cs), q
	}
}

// ingestRegions gives an image record its PDQ hash, its canonical
// dihedral hashes and the PDQ hashes of its content rectangles
// (clusters.regions; with their canonical hashes when canonical is set),
// from one luminance plane. An image too small or too large for regions
// gets its plain PDQ hashes, as ingestCanonical would give them.
func ingestRegions(canonical bool) func(img image.Image, whole bool) workers.RegionHashes {
	pool := sync.Pool{New: func() any { return neardup.NewHasher(neardup.Options{PDQMaxSide: query.PDQMaxSide}) }}
	plain := ingestCanonical()
	return func(img image.Image, whole bool) workers.RegionHashes {
		h := pool.Get().(*neardup.Hasher)
		defer pool.Put(h)
		// The regions' floor is the lookup's (neardup.DefaultMinQuality),
		// not the record's (domain.LowPDQQuality, which clusters apply to
		// the image's own hash): a dark picture inside a screenshot, or
		// the cleaned hash of a smooth one, scores 3-50 and hashes
		// reliably; plain bands score 0-1. At 40 and 60 originals the
		// clusters' quality benchmark kept precision 1.0000 and rose from
		// single-edit recall 0.981 to 0.998 and 0.997 (docs/clusters.md).
		if !whole { // the pipeline has the image's own hashes (banks' variants)
			regions, framed, _ := h.RegionHashes(img, canonical, neardup.DefaultMinQuality)
			return workers.RegionHashes{Regions: regions, Framed: framed}
		}
		v, cs, q, regions, framed, err := h.ContentHashes(img, canonical, neardup.DefaultMinQuality)
		if err != nil {
			hv, canon, q := plain(img)
			return workers.RegionHashes{PDQ: hv, Canonical: canon, Quality: q}
		}
		return workers.RegionHashes{PDQ: v[:], Canonical: pdq.AppendHashes(nil, cs), Regions: regions, Framed: framed, Quality: q}
	}
}

func hashCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "hash",
		Short: "Binary hash codes: fit ITQ parameters for a model, show the coder in use",
	}
	c.AddCommand(hashFitCmd(), hashInfoCmd())
	return c
}

func hashFitCmd() *cobra.Command {
	var (
		data       []string
		out        string
		bits       int
		iterations int
		seed       uint64
		maxSamples int
		batch      int
	)
	c := &cobra.Command{
		Use:   "fit",
		Short: "Fit ITQ hash parameters on embeddings of sample posts and save them",
		Long: `Embeds the texts and images of sample posts with the model, then fits an ITQ
coder: each modality centred on its own mean, PCA of both modalities together
down to --bits dimensions, and an orthogonal rotation that minimises the
quantisation error. The parameters (with the model's version and dimension)
go to --out, by default hash.json in the model directory, which xmodal loads
with the model (a "hash": {"file": ...} entry in model.json names another).

--data takes post files in the post format (docs/post-format.md; images
inline or by image_file, relative to the file) that 'xmodal post' and
'xmodal ingest' read: a posts.jsonl file or a directory holding one, e.g. a
split written by 'xmodal gen --posts'. Bad lines are skipped and reported. Repeat it to combine several. Fit on
a training split, not on the data you evaluate on.`,
		Example: `  xmodal gen --split train --n 4000 --posts --out .cache/hashfit
  xmodal hash fit --model testdata/models/parity --data .cache/hashfit --bits 64`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd.Flags(), os.LookupEnv)
			if err != nil {
				return err
			}
			if len(data) == 0 {
				return errors.New("--data is required (posts.jsonl files or directories holding one)")
			}
			if batch < 1 {
				return fmt.Errorf("--batch %d must be positive", batch)
			}
			log := newLogger(cfg, cmd.ErrOrStderr())
			model, err := loadModel(cfg, log)
			if err != nil {
				return err
			}
			defer model.Close()
			dir := model.Dir()
			if err := hash.CheckBits(bits, model.Dim()); err != nil {
				return fmt.Errorf("--bits: %w", err)
			}
			if out == "" {
				out = filepath.Join(dir, hash.ParamsFile)
			}
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			start := time.Now()
			s, desc, err := embedSamples(ctx, model, data, batch, maxSamples, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "embedded %d images, %d texts, %d pairs in %s; fitting %d bits\n",
				len(s.Image), len(s.Text), len(s.Fused), time.Since(start).Round(time.Millisecond), bits)
			fitStart := time.Now()
			coder, err := hash.Fit(ctx, s, hash.FitOptions{Model: model.Version(), Bits: bits, Iterations: iterations,
				Seed: seed, MaxSamples: maxSamples, Data: desc})
			if err != nil {
				return err
			}
			if err := coder.Save(out); err != nil {
				return err
			}
			p := coder.Params()
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "wrote %s: %s, %d bits, model %s (dim %d), id %s\n", out, p.Method, p.Bits, p.Model, p.Dim, coder.ID())
			fmt.Fprintf(w, "samples %v, %d iterations, quantisation loss %.4f per sample, fit took %s\n",
				p.Samples, p.Iterations, p.Loss, time.Since(fitStart).Round(time.Millisecond))
			if len(s.Fused) > 1 {
				pairD, otherD, r1 := pairCheck(coder, s)
				fmt.Fprintf(w, "check on the fitted pairs: mean Hamming distance image↔its text %.1f, ↔another text %.1f; "+
					"text→image R@1 by Hamming %.3f\n", pairD, otherD, r1)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringArrayVar(&data, "data", nil, "posts.jsonl (or a directory holding one) to embed; repeatable")
	_ = c.MarkFlagRequired("data")
	f.StringVar(&out, "out", "", "parameter file to write (default: hash.json in the model directory)")
	f.IntVar(&bits, "bits", hash.DefaultBits, fmt.Sprintf("code length: one of %v, at most the model's dimension", hash.SupportedBits))
	f.IntVar(&iterations, "iterations", 50, "ITQ rotation iterations")
	f.Uint64Var(&seed, "seed", 1, "seed of the initial rotation")
	f.IntVar(&maxSamples, "max-samples", 20000, "at most this many samples per modality")
	f.IntVar(&batch, "batch", 32, "embedding batch size")
	return c
}

func hashInfoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "info",
		Short: "Show the hash coder the model directory gives (fitted parameters or the SimHash fallback)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(cmd.Flags(), os.LookupEnv)
			if err != nil {
				return err
			}
			model, err := loadModel(cfg, newLogger(cfg, io.Discard))
			if err != nil {
				return err
			}
			defer model.Close()
			dir := model.Dir()
			c, src, err := hash.ForModel(dir, model.Manifest().Hash, model.Version(), model.Dim())
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if c == nil {
				fmt.Fprintf(w, "model %s (dim %d): no binary codes: %s\n", model.Version(), model.Dim(), src)
				return nil
			}
			p := c.Params()
			fmt.Fprintf(w, "model %s (dim %d): %s, %d bits, id %s\nfrom: %s\n", model.Version(), model.Dim(), p.Method, p.Bits, c.ID(), src)
			if p.Method == hash.MethodITQ {
				fmt.Fprintf(w, "fitted on: %s\nsamples %v, %d iterations, quantisation loss %.4f\n", p.Data, p.Samples, p.Iterations, p.Loss)
			}
			return nil
		},
	}
}

// postsFile resolves a --data argument to a posts.jsonl path.
func postsFile(arg string) (string, error) {
	st, err := os.Stat(arg)
	if err != nil {
		return "", fmt.Errorf("--data %s: %w", arg, err)
	}
	if st.IsDir() {
		p := filepath.Join(arg, "posts.jsonl")
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("--data %s: no posts.jsonl in the directory (write one with 'xmodal gen --posts')", arg)
		}
		return p, nil
	}
	return arg, nil
}

// embedSamples embeds the texts and images of the posts in files (at most
// maxSamples posts, evenly strided) and the fused vectors of posts with both.
func embedSamples(ctx context.Context, m *encoders.Model, files []string, batch, maxSamples int, progress io.Writer) (hash.Samples, string, error) {
	var posts []domain.Post
	var names []string
	for _, arg := range files {
		p, err := postsFile(arg)
		if err != nil {
			return hash.Samples{}, "", err
		}
		ps, bad, err := postfile.Load(p, time.Now())
		if err != nil {
			return hash.Samples{}, "", err
		}
		for i, b := range bad {
			if i == 5 {
				fmt.Fprintf(progress, "... and %d more bad lines skipped\n", len(bad)-5)
				break
			}
			fmt.Fprintf(progress, "skipped %v\n", b)
		}
		posts = append(posts, ps...)
		names = append(names, p+genSplit(filepath.Dir(p)))
	}
	if maxSamples > 0 && len(posts) > maxSamples {
		kept := make([]domain.Post, maxSamples)
		for i := range kept {
			kept[i] = posts[i*len(posts)/maxSamples]
		}
		posts = kept
	}
	var s hash.Samples
	lim := imageprep.DefaultLimits()
	skipped := 0
	for lo := 0; lo < len(posts); lo += batch {
		if err := ctx.Err(); err != nil {
			return s, "", err
		}
		chunk := posts[lo:min(lo+batch, len(posts))]
		var texts []string
		var imgs []image.Image
		textOf, imgOf := make([]int, len(chunk)), make([]int, len(chunk))
		for i, p := range chunk {
			textOf[i], imgOf[i] = -1, -1
			if p.HasText() {
				textOf[i] = len(texts)
				texts = append(texts, p.Text)
			}
			if p.Image != nil && len(p.Image.Data) > 0 {
				img, _, err := imageprep.Decode(p.Image.Data, lim)
				if err != nil {
					skipped++
					continue
				}
				imgOf[i] = len(imgs)
				imgs = append(imgs, img)
			}
		}
		tv, err := m.EmbedTexts(ctx, texts)
		if err != nil {
			return s, "", fmt.Errorf("embed texts: %w", err)
		}
		iv, err := m.EmbedImages(ctx, imgs)
		if err != nil {
			return s, "", fmt.Errorf("embed images: %w", err)
		}
		s.Text = append(s.Text, tv...)
		s.Image = append(s.Image, iv...)
		for i := range chunk {
			if textOf[i] >= 0 && imgOf[i] >= 0 {
				a, b := iv[imgOf[i]], tv[textOf[i]]
				f := make([]float32, len(a))
				var n float64
				for j := range f {
					f[j] = a[j] + b[j]
					n += float64(f[j]) * float64(f[j])
				}
				inv := float32(1 / math.Sqrt(max(n, 1e-30)))
				for j := range f {
					f[j] *= inv
				}
				s.Fused = append(s.Fused, f)
			}
		}
		if done := lo + len(chunk); done%(batch*32) < batch || done == len(posts) {
			fmt.Fprintf(progress, "embedded %d/%d posts\n", done, len(posts))
		}
	}
	if skipped > 0 {
		fmt.Fprintf(progress, "skipped %d images that did not decode\n", skipped)
	}
	desc := fmt.Sprintf("%d posts from %s", len(posts), strings.Join(names, ", "))
	return s, desc, nil
}

// genSplit describes the `xmodal gen` split a directory holds (its
// meta.json), or "".
func genSplit(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return ""
	}
	var m struct {
		Split string `json:"split"`
		Seed  uint64 `json:"seed"`
		N     int    `json:"n"`
	}
	if json.Unmarshal(b, &m) != nil || m.Split == "" {
		return ""
	}
	return fmt.Sprintf(" (xmodal gen split %s, seed %d, n %d)", m.Split, m.Seed, m.N)
}

// pairCheck measures the codes on the fitting pairs: the mean Hamming
// distance of an image to its own text and to the next post's text, and
// text→image R@1 by Hamming distance (ties count against).
func pairCheck(c *hash.Coder, s hash.Samples) (pairD, otherD, r1 float64) {
	// Fused pairs are in post order; recover the pairs from texts/images
	// with both only when counts agree (every post had both).
	n := len(s.Fused)
	if len(s.Image) != n || len(s.Text) != n {
		return math.NaN(), math.NaN(), math.NaN()
	}
	n = min(n, 2000)
	ic := make([][]byte, n)
	tc := make([][]byte, n)
	for i := 0; i < n; i++ {
		ic[i] = c.Code(s.Image[i], domain.ModalityImage)
		tc[i] = c.Code(s.Text[i], domain.ModalityText)
	}
	hits := 0
	for i := 0; i < n; i++ {
		pairD += float64(hash.Hamming(ic[i], tc[i]))
		otherD += float64(hash.Hamming(ic[i], tc[(i+1)%n]))
		own := hash.Hamming(tc[i], ic[i])
		best := true
		for j := 0; j < n && best; j++ {
			if j != i && hash.Hamming(tc[i], ic[j]) <= own {
				best = false
			}
		}
		if best {
			hits++
		}
	}
	return pairD / float64(n), otherD / float64(n), float64(hits) / float64(n)
}
