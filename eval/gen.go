package eval

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/imageprep"
	"github.com/xmodal/xmodal/encoders/tokenizer"
	"github.com/xmodal/xmodal/eval/npy"
	"github.com/xmodal/xmodal/eval/synth"
)

// File names inside a generated dataset directory.
const (
	ItemsFile  = "items.jsonl" // one synth.Item per line (plus "image")
	MetaFile   = "meta.json"   // GenMeta
	PixelsFile = "pixels.npy"  // uint8 [N, 3, S, S]: the resized crop imageprep feeds the model
	TokensFile = "tokens.npy"  // int32 [N, captions, L]: CLIP BPE ids, zero-padded
	PostsFile  = "posts.jsonl" // posts in the post format (docs/post-format.md), images by image_file
	ImagesDir  = "images"
)

// GenOptions configure GenerateDataset.
type GenOptions struct {
	Config synth.Config
	Out    string
	// Images writes images/<id>.jpg (the JPEG bytes the pixels come from).
	Images bool
	// PixelSize > 0 writes pixels.npy: each picture decoded with
	// imageprep.Decode and resized and cropped exactly as
	// imageprep.Preprocess does for a model with this image size and
	// resize rule, kept as the 8-bit RGB values before normalisation
	// (normalising them with the model's mean and std reproduces
	// Preprocess's float32 tensor bit for bit).
	PixelSize int
	Resize    string
	// Context > 0 writes tokens.npy: every caption through the CLIP BPE
	// tokenizer with this context length.
	Context int
	// Posts writes posts.jsonl for `xmodal demo --posts` (implies Images).
	Posts bool
	// Workers bounds parallelism; 0 means GOMAXPROCS.
	Workers int
	// Progress, when set, receives a line every few thousand items.
	Progress io.Writer
}

// GenMeta is meta.json: what was generated and how.
type GenMeta struct {
	Split      string   `json:"split"`
	Seed       uint64   `json:"seed"`
	N          int      `json:"n"`
	ImageSize  int      `json:"image_size"`
	Captions   int      `json:"captions"`
	Family     int      `json:"family"`
	LabelNames []string `json:"label_names"`
	PixelSize  int      `json:"pixel_size,omitempty"`
	Resize     string   `json:"resize,omitempty"`
	Context    int      `json:"context,omitempty"`
	Images     bool     `json:"images"`
	Seconds    float64  `json:"seconds"`
}

// genLine is a line of items.jsonl.
type genLine struct {
	synth.Item
	Image   string `json:"image,omitempty"`
	Objects int    `json:"n_objects"`
	Vector  []int  `json:"label_vector"`
}

// PostLine is a line of posts.jsonl: a post in the post format
// (docs/post-format.md) whose image is a file beside it (image_file, read by
// the client: xmodal post, ingest, demo, hash fit).
type PostLine struct {
	Schema    int       `json:"schema"`
	ID        string    `json:"id"`
	Author    string    `json:"author"`
	CreatedAt time.Time `json:"created_at"`
	Text      string    `json:"text"`
	ImageFile string    `json:"image_file"`
	Labels    []string  `json:"labels"`
}

// PostEpoch is the created_at of a split's item 0; item i is i·PostSpacing
// older, so posts.jsonl is a pure function of the split like the rest.
var PostEpoch = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// PostSpacing separates consecutive items' created_at.
const PostSpacing = 37 * time.Minute

var demoAuthors = []string{"lena", "marco", "aiko", "sam", "noor", "ivan"}

// GenerateDataset writes a split to opts.Out.
func GenerateDataset(ctx context.Context, opts GenOptions) (GenMeta, error) {
	start := time.Now()
	cfg := opts.Config.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return GenMeta{}, err
	}
	if opts.Posts {
		opts.Images = true
	}
	var spec imageprep.Spec
	if opts.PixelSize > 0 {
		spec = imageprep.Spec{Size: opts.PixelSize, Resize: opts.Resize, Std: [3]float32{1, 1, 1}}
		if err := spec.Validate(); err != nil {
			return GenMeta{}, err
		}
	}
	var tok *tokenizer.Tokenizer
	if opts.Context > 0 {
		if opts.Context < 2 {
			return GenMeta{}, fmt.Errorf("context length %d: want at least 2", opts.Context)
		}
		var err error
		if tok, err = tokenizer.New(); err != nil {
			return GenMeta{}, err
		}
	}
	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return GenMeta{}, err
	}
	if opts.Images {
		if err := os.MkdirAll(filepath.Join(opts.Out, ImagesDir), 0o755); err != nil {
			return GenMeta{}, err
		}
	}
	type out struct {
		item   synth.Item
		pixels []byte
		tokens []int32
		err    error
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	create := func(name string) (*bufio.Writer, error) {
		f, err := os.Create(filepath.Join(opts.Out, name))
		if err != nil {
			return nil, err
		}
		files = append(files, f)
		return bufio.NewWriterSize(f, 1<<20), nil
	}
	items, err := create(ItemsFile)
	if err != nil {
		return GenMeta{}, err
	}
	var pixW, tokW, postW *bufio.Writer
	if opts.PixelSize > 0 {
		if pixW, err = create(PixelsFile); err != nil {
			return GenMeta{}, err
		}
		c := spec.Crop()
		if err := npy.WriteHeader(pixW, "|u1", []int{cfg.N, 3, c, c}); err != nil {
			return GenMeta{}, err
		}
	}
	if tok != nil {
		if tokW, err = create(TokensFile); err != nil {
			return GenMeta{}, err
		}
		if err := npy.WriteHeader(tokW, "<i4", []int{cfg.N, cfg.Captions, opts.Context}); err != nil {
			return GenMeta{}, err
		}
	}
	if opts.Posts {
		if postW, err = create(PostsFile); err != nil {
			return GenMeta{}, err
		}
	}

	workers := opts.Workers
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	const chunk = 512
	buf := make([]out, chunk)
	for lo := 0; lo < cfg.N; lo += chunk {
		if err := ctx.Err(); err != nil {
			return GenMeta{}, err
		}
		hi := min(lo+chunk, cfg.N)
		var wg sync.WaitGroup
		next := make(chan int)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				scratch := make([]float32, 0)
				for i := range next {
					o := &buf[i-lo]
					*o = out{}
					o.item, o.err = cfg.Item(i)
					if o.err != nil {
						continue
					}
					if opts.PixelSize > 0 {
						img, _, err := imageprep.Decode(o.item.JPEG, imageprep.DefaultLimits())
						if err != nil {
							o.err = fmt.Errorf("item %s: decoding its own JPEG: %w", o.item.ID, err)
							continue
						}
						scratch = imageprep.Preprocess(img, spec, scratch)
						o.pixels = make([]byte, len(scratch))
						for j, v := range scratch {
							o.pixels[j] = uint8(math.Round(float64(v) * 255))
						}
					}
					if tok != nil {
						ids, _ := tok.Batch(o.item.Captions, opts.Context)
						o.tokens = make([]int32, cfg.Captions*opts.Context)
						for j, id := range ids {
							o.tokens[j] = int32(id)
						}
					}
				}
			}()
		}
		for i := lo; i < hi; i++ {
			next <- i
		}
		close(next)
		wg.Wait()
		for _, o := range buf[:hi-lo] {
			if o.err != nil {
				return GenMeta{}, o.err
			}
			it := o.item
			line := genLine{Item: it, Objects: it.NumObjects()}
			for _, v := range it.Scene.LabelVector() {
				line.Vector = append(line.Vector, int(v))
			}
			if opts.Images {
				line.Image = ImagesDir + "/" + it.ID + ".jpg"
				if err := os.WriteFile(filepath.Join(opts.Out, line.Image), it.JPEG, 0o644); err != nil {
					return GenMeta{}, err
				}
			}
			b, _ := json.Marshal(line)
			items.Write(append(b, '\n'))
			if pixW != nil {
				pixW.Write(o.pixels)
			}
			if tokW != nil {
				for _, v := range o.tokens {
					var b4 [4]byte
					binary.LittleEndian.PutUint32(b4[:], uint32(v))
					tokW.Write(b4[:])
				}
			}
			if postW != nil {
				p := PostLine{Schema: domain.SchemaVersion, ID: "post-" + it.ID, Author: demoAuthors[it.Index%len(demoAuthors)],
					CreatedAt: PostEpoch.Add(-time.Duration(it.Index) * PostSpacing), Text: it.Captions[0],
					ImageFile: line.Image, Labels: it.Labels}
				b, _ := json.Marshal(p)
				postW.Write(append(b, '\n'))
			}
		}
		if opts.Progress != nil && (hi/chunk)%8 == 0 {
			fmt.Fprintf(opts.Progress, "%s: %d/%d items (%.0fs)\n", cfg.Split, hi, cfg.N, time.Since(start).Seconds())
		}
	}
	for _, w := range []*bufio.Writer{items, pixW, tokW, postW} {
		if w != nil {
			if err := w.Flush(); err != nil {
				return GenMeta{}, err
			}
		}
	}
	meta := GenMeta{Split: cfg.Split, Seed: cfg.Seed, N: cfg.N, ImageSize: cfg.ImageSize, Captions: cfg.Captions,
		Family: cfg.Family, LabelNames: synth.LabelNames(), PixelSize: opts.PixelSize, Context: opts.Context,
		Images: opts.Images, Seconds: math.Round(time.Since(start).Seconds()*10) / 10}
	if opts.PixelSize > 0 {
		meta.Resize = spec.Resize
		if meta.Resize == "" {
			meta.Resize = imageprep.ResizeShortest
		}
	}
	b, _ := json.MarshalIndent(meta, "", "  ")
	if err := os.WriteFile(filepath.Join(opts.Out, MetaFile), append(b, '\n'), 0o644); err != nil {
		return GenMeta{}, err
	}
	for _, f := range files {
		if err := f.Close(); err != nil {
			return GenMeta{}, err
		}
	}
	files = nil
	return meta, nil
}
