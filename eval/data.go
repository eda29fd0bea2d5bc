package eval

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/xmodal/xmodal/eval/synth"
)

// Corpus is a set of pictures and captions before encoding: the query
// split or the retrieval database.
type Corpus struct {
	// Name says where it came from, for reports and messages.
	Name   string
	Images []ImageEntry
	Texts  []TextEntry
	// HasScenes: every image carries a scene description (semantic R@K and
	// the strict ceiling are computed). HasLabels: every item carries its
	// label set (MAP is computed).
	HasScenes, HasLabels bool
}

// ImageEntry is one picture: a file or in-memory encoded bytes.
type ImageEntry struct {
	ID string
	// Path is the image file; empty when Data holds the encoded image.
	Path string
	Data []byte
	// Where names the picture in messages ("items.jsonl line 12").
	Where   string
	Scene   string
	Labels  []string
	Objects int // number of objects in the scene; 0 unknown
}

// TextEntry is one caption, paired with the image it describes.
type TextEntry struct {
	ID    string
	Text  string
	Image int // index into Corpus.Images; -1 unpaired
	Where string
}

// SynthCorpus generates a split of the synthetic dataset in memory.
func SynthCorpus(ctx context.Context, cfg synth.Config) (*Corpus, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.N == 0 {
		return nil, fmt.Errorf("split %s: no items (--n 0)", cfg.Split)
	}
	items := make([]synth.Item, cfg.N)
	errs := make([]error, cfg.N)
	var wg sync.WaitGroup
	next := make(chan int, 64)
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				items[i], errs[i] = cfg.Item(i)
			}
		}()
	}
	for i := range cfg.N {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	c := &Corpus{Name: fmt.Sprintf("synth:%s (seed %#x, %d items)", cfg.Split, cfg.Seed, cfg.N), HasScenes: true, HasLabels: true}
	for _, it := range items {
		c.addSynth(it, "", "item "+it.ID)
	}
	return c, nil
}

func (c *Corpus) addSynth(it synth.Item, path, where string) {
	c.Images = append(c.Images, ImageEntry{ID: it.ID, Path: path, Data: it.JPEG, Where: where, Scene: it.SceneKey,
		Labels: it.Labels, Objects: it.NumObjects()})
	for j, cp := range it.Captions {
		c.Texts = append(c.Texts, TextEntry{ID: fmt.Sprintf("%s#%d", it.ID, j), Text: cp, Image: len(c.Images) - 1, Where: where})
	}
}

// Subsample returns a corpus with n of c's images, evenly strided, and
// their captions; c itself when it has no more than n images.
func (c *Corpus) Subsample(n int) *Corpus {
	if n <= 0 || len(c.Images) <= n {
		return c
	}
	out := &Corpus{Name: fmt.Sprintf("%s (%d of %d images)", c.Name, n, len(c.Images)), HasScenes: c.HasScenes, HasLabels: c.HasLabels}
	newIdx := make(map[int]int, n)
	for i := range n {
		j := i * len(c.Images) / n
		newIdx[j] = i
		out.Images = append(out.Images, c.Images[j])
	}
	for _, t := range c.Texts {
		if i, ok := newIdx[t.Image]; ok {
			t.Image = i
			out.Texts = append(out.Texts, t)
		}
	}
	return out
}

// LoadGenDir reads a split written by `xmodal gen` (items.jsonl and
// images/).
func LoadGenDir(dir string) (*Corpus, error) {
	path := filepath.Join(dir, ItemsFile)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("generated dataset %s: %w", dir, err)
	}
	defer f.Close()
	c := &Corpus{Name: dir, HasScenes: true, HasLabels: true}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var gl genLine
		dec := json.NewDecoder(bytes.NewReader(b))
		if err := dec.Decode(&gl); err != nil {
			return nil, fmt.Errorf("%s line %d: %s", path, line, jsonLineErr(err))
		}
		where := fmt.Sprintf("%s line %d", path, line)
		switch {
		case gl.ID == "":
			return nil, fmt.Errorf("%s: no \"id\"", where)
		case gl.Image == "":
			return nil, fmt.Errorf("%s (item %s): no \"image\"; was the split generated with --no-images?", where, gl.ID)
		case len(gl.Captions) == 0:
			return nil, fmt.Errorf("%s (item %s): no captions", where, gl.ID)
		}
		if err := gl.Scene.Validate(); err != nil {
			return nil, fmt.Errorf("%s (item %s): scene: %v", where, gl.ID, err)
		}
		if gl.SceneKey != gl.Scene.Key() {
			return nil, fmt.Errorf("%s (item %s): scene_key %q does not match the scene (%q)", where, gl.ID, gl.SceneKey, gl.Scene.Key())
		}
		img := filepath.Join(dir, filepath.FromSlash(gl.Image))
		if _, err := os.Stat(img); err != nil {
			return nil, fmt.Errorf("%s (item %s): image %s: %w", where, gl.ID, img, unwrapPath(err))
		}
		gl.Item.JPEG = nil
		c.addSynth(gl.Item, img, where)
		c.Images[len(c.Images)-1].Data = nil
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s line %d: %w", path, line+1, err)
	}
	if len(c.Images) == 0 {
		return nil, fmt.Errorf("%s: no items (empty split)", path)
	}
	return c, nil
}

// karpathy is the dataset_*.json format of Karpathy's splits for Flickr8K,
// Flickr30K and MS-COCO.
type karpathy struct {
	Dataset string `json:"dataset"`
	Images  []struct {
		Filename  string `json:"filename"`
		Filepath  string `json:"filepath"`
		Split     string `json:"split"`
		ImgID     *int   `json:"imgid"`
		Sentences []struct {
			Raw    string   `json:"raw"`
			Tokens []string `json:"tokens"`
			SentID *int     `json:"sentid"`
		} `json:"sentences"`
	} `json:"images"`
}

// LoadKarpathy reads one split of a Karpathy-format JSON file (as used for
// Flickr30K and MS-COCO); image paths are imageRoot/filepath/filename.
// Karpathy files carry no labels or scene descriptions, so only strict R@K
// can be computed.
func LoadKarpathy(path, imageRoot, split string) (*Corpus, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseKarpathy(data, path, imageRoot, split, func(p string) error { _, err := os.Stat(p); return err })
}

// parseKarpathy parses a Karpathy JSON file's bytes; stat checks an image.
func parseKarpathy(data []byte, path, imageRoot, split string, stat func(string) error) (*Corpus, error) {
	var k karpathy
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&k); err != nil {
		return nil, fmt.Errorf("%s: %s", path, jsonErr(data, err))
	}
	if k.Images == nil {
		return nil, fmt.Errorf("%s: no \"images\" array (not a Karpathy-format dataset file)", path)
	}
	c := &Corpus{Name: fmt.Sprintf("%s split %s", path, split)}
	splits := map[string]int{}
	for i, im := range k.Images {
		splits[im.Split]++
		if im.Split != split && !(split == "train" && im.Split == "restval") {
			continue
		}
		where := fmt.Sprintf("%s images[%d]", path, i)
		if im.ImgID != nil {
			where += fmt.Sprintf(" (imgid %d)", *im.ImgID)
		}
		if im.Filename == "" {
			return nil, fmt.Errorf("%s: no \"filename\"", where)
		}
		p := filepath.Join(imageRoot, filepath.FromSlash(im.Filepath), filepath.FromSlash(im.Filename))
		if err := stat(p); err != nil {
			return nil, fmt.Errorf("%s: image %s: %w", where, p, unwrapPath(err))
		}
		if len(im.Sentences) == 0 {
			return nil, fmt.Errorf("%s: no sentences", where)
		}
		id := strings.TrimSuffix(im.Filename, filepath.Ext(im.Filename))
		c.Images = append(c.Images, ImageEntry{ID: id, Path: p, Where: where})
		for j, s := range im.Sentences {
			text := s.Raw
			if text == "" {
				text = strings.Join(s.Tokens, " ")
			}
			if strings.TrimSpace(text) == "" {
				return nil, fmt.Errorf("%s: sentences[%d] is empty", where, j)
			}
			c.Texts = append(c.Texts, TextEntry{ID: fmt.Sprintf("%s#%d", id, j), Text: text, Image: len(c.Images) - 1,
				Where: fmt.Sprintf("%s sentences[%d]", where, j)})
		}
	}
	if len(c.Images) == 0 {
		var have []string
		for s, n := range splits {
			have = append(have, fmt.Sprintf("%s (%d)", s, n))
		}
		sort.Strings(have)
		return nil, fmt.Errorf("%s: no images in split %q (empty split; the file has: %s)", path, split, strings.Join(have, ", "))
	}
	return c, nil
}

// jsonLineErr describes a JSON error inside one JSONL line (the caller
// names the line).
func jsonLineErr(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return "malformed JSON: " + se.Error()
	case errors.As(err, &te):
		return fmt.Sprintf("%s: want %s, got JSON %s", te.Field, te.Type, te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "truncated JSON"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// jsonErr names the line of a JSON syntax or type error in a whole file.
func jsonErr(data []byte, err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("line %d: malformed JSON: %v", lineAt(data, se.Offset), se)
	case errors.As(err, &te):
		return fmt.Sprintf("line %d: %s: want %s, got JSON %s", lineAt(data, te.Offset), te.Field, te.Type, te.Value)
	case errors.Is(err, io.EOF):
		return "empty file"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Sprintf("line %d: truncated JSON", 1+bytes.Count(data, []byte("\n")))
	}
	return err.Error()
}

func lineAt(data []byte, off int64) int {
	return 1 + bytes.Count(data[:min(int(off), len(data))], []byte("\n"))
}

// validate checks that the corpus is not empty and every text's image index is valid.
func (c *Corpus) validate() error {
	for i, t := range c.Texts {
		if t.Image < -1 || t.Image >= len(c.Images) {
			return fmt.Errorf("%s: text %d (%s) points at image %d of %d", c.Name, i, t.ID, t.Image, len(c.Images))
		}
	}
	if len(c.Images) == 0 && len(c.Texts) == 0 {
		return fmt.Errorf("%s: empty", c.Name)
	}
	return nil
}

// unwrapPath drops the *fs.PathError wrapper (its path is already in the
// message) but keeps other errors whole.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
