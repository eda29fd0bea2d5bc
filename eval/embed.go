package eval

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/xmodal/xmodal/encoders/imageprep"
	"github.com/xmodal/xmodal/eval/npy"
	"github.com/xmodal/xmodal/internal/vecmath"
)

// Embedder is what EmbedCorpus needs from a model (*encoders.Model has it).
type Embedder interface {
	EmbedImages(ctx context.Context, imgs []image.Image) ([][]float32, error)
	EmbedTexts(ctx context.Context, texts []string) ([][]float32, error)
}

// Meta describes one embedded item.
type Meta struct {
	ID      string
	Scene   string   // "" when unknown
	Labels  []string // the item's labels (relevance for MAP)
	Objects int      // objects in the scene; 0 unknown
	Pair    int      // texts: index of the image it describes; -1 none. Images: -1.
}

// EmbeddedSet is a corpus after encoding: unit vectors and metadata.
type EmbeddedSet struct {
	Name                 string
	Images, Texts        Matrix
	ImageMeta, TextMeta  []Meta
	HasScenes, HasLabels bool
	// EncodeSeconds is the time spent decoding and encoding (0 when loaded).
	EncodeSeconds struct{ Images, Texts float64 }
}

// EmbedOptions configure EmbedCorpus.
type EmbedOptions struct {
	ImageBatch, TextBatch int // 0: 64 and 256
	Progress              io.Writer
	// Decoder decodes the pictures (its mode and needs, as ingest decodes);
	// nil: imageprep.Decode at full size.
	Decoder *imageprep.Decoder
}

// EmbedCorpus decodes and encodes every picture and caption of c.
func EmbedCorpus(ctx context.Context, m Embedder, c *Corpus, opt EmbedOptions) (*EmbeddedSet, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	if opt.ImageBatch <= 0 {
		opt.ImageBatch = 64
	}
	if opt.TextBatch <= 0 {
		opt.TextBatch = 256
	}
	es := &EmbeddedSet{Name: c.Name, HasScenes: c.HasScenes, HasLabels: c.HasLabels}
	start := time.Now()
	var rows [][]float32
	imgs := make([]image.Image, opt.ImageBatch)
	rels := make([]func(), opt.ImageBatch)
	for lo := 0; lo < len(c.Images); lo += opt.ImageBatch {
		hi := min(lo+opt.ImageBatch, len(c.Images))
		err := decodeBatch(ctx, opt.Decoder, c.Images[lo:hi], imgs[:hi-lo], rels[:hi-lo])
		if err == nil {
			var out [][]float32
			out, err = m.EmbedImages(ctx, imgs[:hi-lo])
			if err != nil {
				err = fmt.Errorf("%s: encoding images %d..%d: %w", c.Name, lo, hi-1, err)
			}
			rows = append(rows, out...)
		}
		for i, r := range rels[:hi-lo] {
			if r != nil {
				r()
			}
			rels[i], imgs[i] = nil, nil
		}
		if err != nil {
			return nil, err
		}
		if opt.Progress != nil && (hi/opt.ImageBatch)%40 == 0 {
			fmt.Fprintf(opt.Progress, "%s: %d/%d images encoded\n", c.Name, hi, len(c.Images))
		}
	}
	var err error
	if es.Images, err = NewMatrix(rows); err != nil {
		return nil, fmt.Errorf("%s: image embeddings: %w", c.Name, err)
	}
	es.EncodeSeconds.Images = time.Since(start).Seconds()
	start = time.Now()
	rows = rows[:0:0]
	texts := make([]string, 0, opt.TextBatch)
	for lo := 0; lo < len(c.Texts); lo += opt.TextBatch {
		hi := min(lo+opt.TextBatch, len(c.Texts))
		texts = texts[:0]
		for _, t := range c.Texts[lo:hi] {
			texts = append(texts, t.Text)
		}
		out, err := m.EmbedTexts(ctx, texts)
		if err != nil {
			return nil, fmt.Errorf("%s: encoding captions %d..%d: %w", c.Name, lo, hi-1, err)
		}
		rows = append(rows, out...)
	}
	if es.Texts, err = NewMatrix(rows); err != nil {
		return nil, fmt.Errorf("%s: text embeddings: %w", c.Name, err)
	}
	es.EncodeSeconds.Texts = time.Since(start).Seconds()
	if es.Images.Rows > 0 && es.Texts.Rows > 0 && es.Images.Dim != es.Texts.Dim {
		return nil, fmt.Errorf("%s: image embeddings have dimension %d but text embeddings %d", c.Name, es.Images.Dim, es.Texts.Dim)
	}
	for _, im := range c.Images {
		es.ImageMeta = append(es.ImageMeta, Meta{ID: im.ID, Scene: im.Scene, Labels: im.Labels, Objects: im.Objects, Pair: -1})
	}
	for _, t := range c.Texts {
		mt := Meta{ID: t.ID, Pair: t.Image}
		if t.Image >= 0 {
			im := c.Images[t.Image]
			mt.Scene, mt.Labels, mt.Objects = im.Scene, im.Labels, im.Objects
		}
		es.TextMeta = append(es.TextMeta, mt)
	}
	return es, nil
}

// decodeBatch decodes entries in parallel; errors name the picture.
// With a decoder, rel receives each image's release.
func decodeBatch(ctx context.Context, dec *imageprep.Decoder, entries []ImageEntry, dst []image.Image, rel []func()) error {
	errs := make([]error, len(entries))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, e := range entries {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			data := e.Data
			name := e.ID
			if data == nil {
				var err error
				if data, err = os.ReadFile(e.Path); err != nil {
					errs[i] = fmt.Errorf("%s: image %s: %w", e.Where, e.Path, unwrapPath(err))
					return
				}
				name = e.Path
			}
			var img image.Image
			var err error
			if dec != nil {
				var d *imageprep.Decoded
				if d, err = dec.Decode(ctx, data); err == nil {
					img, rel[i] = d.Image, d.Release
				}
			} else {
				img, _, err = imageprep.Decode(data, imageprep.DefaultLimits())
			}
			if err != nil {
				errs[i] = fmt.Errorf("%s: image %s: %w", e.Where, name, err)
				return
			}
			dst[i] = img
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ---- precomputed embeddings

// Files of an embeddings directory (see docs/eval.md).
const (
	ImagesJSONL = "images.jsonl"
	TextsJSONL  = "texts.jsonl"
	ImagesNPY   = "images.npy"
	TextsNPY    = "texts.npy"
)

// embLine is a line of images.jsonl or texts.jsonl.
type embLine struct {
	ID      string    `json:"id"`
	Set     string    `json:"set,omitempty"`      // "query" (default), "db" or "train"
	ImageID string    `json:"image_id,omitempty"` // texts: the image it describes (same set)
	Text    string    `json:"text,omitempty"`     // texts: the caption (informational)
	Scene   string    `json:"scene,omitempty"`
	Labels  *[]string `json:"labels,omitempty"`
	Objects int       `json:"objects,omitempty"`
	Vector  []float32 `json:"vector,omitempty"`
}

// LoadEmbeddings reads precomputed embeddings from dir: images.jsonl and
// texts.jsonl (one item per line with metadata, and "vector" unless
// images.npy / texts.npy hold the vectors, row i for line i). Items with
// "set":"db" form the retrieval database (nil when there are none); items
// with "set":"train" (the hash plans' fit set, see LoadEmbeddingSets) are
// read and dropped.
func LoadEmbeddings(dir string) (q, db *EmbeddedSet, err error) {
	q, db, _, err = LoadEmbeddingSets(dir)
	return q, db, err
}

// LoadEmbeddingSets is LoadEmbeddings that also returns the items with
// "set":"train", the set the hash and hybrid plans fit ITQ on (nil when
// there are none).
func LoadEmbeddingSets(dir string) (q, db, train *EmbeddedSet, err error) {
	sets := map[string]*EmbeddedSet{
		"query": {Name: dir + " (query)", HasScenes: true, HasLabels: true},
		"db":    {Name: dir + " (db)", HasScenes: true, HasLabels: true},
		"train": {Name: dir + " (train)", HasScenes: true, HasLabels: true},
	}
	dims := map[string]struct {
		d    int
		file string
	}{}
	var rowsOf = map[string][][]float32{}
	for _, kind := range []string{"images", "texts"} {
		jpath := filepath.Join(dir, kind+".jsonl")
		lines, err := readEmbLines(jpath)
		if err != nil {
			return nil, nil, nil, err
		}
		npath := filepath.Join(dir, kind+".npy")
		var vecs []float32
		var nrows, ncols int
		haveNPY := false
		if _, err := os.Stat(npath); err == nil {
			haveNPY = true
			if vecs, nrows, ncols, err = npy.ReadFloat32(npath); err != nil {
				return nil, nil, nil, err
			}
			if nrows != len(lines) {
				return nil, nil, nil, fmt.Errorf("%s has %d rows but %s has %d lines", npath, nrows, jpath, len(lines))
			}
		}
		imageIdx := map[string]map[string]int{"query": {}, "db": {}, "train": {}}
		if kind == "texts" {
			for set, es := range sets {
				for i, m := range es.ImageMeta {
					imageIdx[set][m.ID] = i
				}
			}
		}
		for i, l := range lines {
			where := fmt.Sprintf("%s line %d (id %q)", jpath, l.line, l.ID)
			set := l.Set
			if set == "" {
				set = "query"
			}
			es, ok := sets[set]
			if !ok {
				return nil, nil, nil, fmt.Errorf("%s: set %q: want \"query\", \"db\" or \"train\"", where, l.Set)
			}
			var v []float32
			switch {
			case haveNPY && l.Vector != nil:
				return nil, nil, nil, fmt.Errorf("%s: has a \"vector\" but %s holds the vectors", where, npath)
			case haveNPY:
				v = vecs[i*ncols : (i+1)*ncols]
			case l.Vector == nil:
				return nil, nil, nil, fmt.Errorf("%s: no \"vector\" (and no %s)", where, npath)
			default:
				v = l.Vector
			}
			file := jpath
			if haveNPY {
				file = npath
			}
			if prev, ok := dims["any"]; ok && prev.d != len(v) {
				return nil, nil, nil, fmt.Errorf("%s: dimension %d, but %s has dimension %d (mismatched embedding dimensions)", where, len(v), prev.file, prev.d)
			} else if !ok {
				if len(v) == 0 {
					return nil, nil, nil, fmt.Errorf("%s: empty vector", where)
				}
				dims["any"] = struct {
					d    int
					file string
				}{len(v), file}
			}
			for _, x := range v {
				if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
					return nil, nil, nil, fmt.Errorf("%s: vector has a non-finite value", where)
				}
			}
			m := Meta{ID: l.ID, Scene: l.Scene, Objects: l.Objects, Pair: -1}
			if l.Labels != nil {
				m.Labels = *l.Labels
			}
			if kind == "images" {
				if l.Scene == "" {
					es.HasScenes = false
				}
				if l.Labels == nil {
					es.HasLabels = false
				}
				es.ImageMeta = append(es.ImageMeta, m)
			} else {
				if l.ImageID != "" {
					j, ok := imageIdx[set][l.ImageID]
					if !ok {
						return nil, nil, nil, fmt.Errorf("%s: image_id %q is not an image of set %q in %s", where, l.ImageID, set, filepath.Join(dir, ImagesJSONL))
					}
					m.Pair = j
					im := es.ImageMeta[j]
					if m.Scene == "" {
						m.Scene = im.Scene
					}
					if l.Labels == nil && im.Labels != nil {
						m.Labels = im.Labels
					}
					if m.Objects == 0 {
						m.Objects = im.Objects
					}
				}
				if m.Labels == nil {
					es.HasLabels = false
				}
				if m.Scene == "" {
					es.HasScenes = false
				}
				es.TextMeta = append(es.TextMeta, m)
			}
			rowsOf[set+"/"+kind] = append(rowsOf[set+"/"+kind], vecmath.Normalized(v))
		}
	}
	for set, es := range sets {
		var err error
		if es.Images, err = NewMatrix(rowsOf[set+"/images"]); err != nil {
			return nil, nil, nil, err
		}
		if es.Texts, err = NewMatrix(rowsOf[set+"/texts"]); err != nil {
			return nil, nil, nil, err
		}
	}
	q, db, train = sets["query"], sets["db"], sets["train"]
	if len(q.ImageMeta) == 0 && len(q.TextMeta) == 0 {
		return nil, nil, nil, fmt.Errorf("%s: no query items (empty split): %s and %s have no lines with set \"query\"", dir, ImagesJSONL, TextsJSONL)
	}
	if len(db.ImageMeta) == 0 && len(db.TextMeta) == 0 {
		db = nil
	}
	if len(train.ImageMeta) == 0 && len(train.TextMeta) == 0 {
		train = nil
	}
	return q, db, train, nil
}

type lineEmb struct {
	embLine
	line int
}

func readEmbLines(path string) ([]lineEmb, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseEmbLines(f, path)
}

// parseEmbLines parses images.jsonl / texts.jsonl; errors name path and line.
func parseEmbLines(r io.Reader, path string) ([]lineEmb, error) {
	var out []lineEmb
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 64<<20)
	n := 0
	for sc.Scan() {
		n++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var l embLine
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			return nil, fmt.Errorf("%s line %d: %s", path, n, jsonLineErr(err))
		}
		if l.ID == "" {
			return nil, fmt.Errorf("%s line %d: no \"id\"", path, n)
		}
		out = append(out, lineEmb{l, n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s line %d: %w", path, n+1, err)
	}
	return out, nil
}

// WriteEmbeddings writes q (and db, when not nil) as an embeddings
// directory that LoadEmbeddings reads: JSONL metadata plus .npy vectors.
func WriteEmbeddings(dir string, q, db *EmbeddedSet) error {
	return WriteEmbeddingSets(dir, q, db, nil)
}

// WriteEmbeddingSets is WriteEmbeddings with the hash plans' fit set too
// (train, written with "set":"train" when not nil).
func WriteEmbeddingSets(dir string, q, db, train *EmbeddedSet) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, kind := range []string{"images", "texts"} {
		var lines bytes.Buffer
		var data []float32
		dim := 0
		for _, set := range []struct {
			name string
			es   *EmbeddedSet
		}{{"query", q}, {"db", db}, {"train", train}} {
			if set.es == nil {
				continue
			}
			metas, m := set.es.ImageMeta, set.es.Images
			if kind == "texts" {
				metas, m = set.es.TextMeta, set.es.Texts
			}
			for i, mt := range metas {
				l := embLine{ID: mt.ID, Scene: mt.Scene, Objects: mt.Objects}
				if set.name != "query" {
					l.Set = set.name
				}
				if set.es.HasLabels {
					labels := mt.Labels
					if labels == nil {
						labels = []string{}
					}
					l.Labels = &labels
				}
				if kind == "texts" && mt.Pair >= 0 {
					l.ImageID = set.es.ImageMeta[mt.Pair].ID
				}
				b, _ := json.Marshal(l)
				lines.Write(append(b, '\n'))
				data = append(data, m.Row(i)...)
				dim = m.Dim
			}
		}
		if err := os.WriteFile(filepath.Join(dir, kind+".jsonl"), lines.Bytes(), 0o644); err != nil {
			return err
		}
		rows := 0
		if dim > 0 {
			rows = len(data) / dim
		}
		if err := npy.WriteFloat32(filepath.Join(dir, kind+".npy"), data, rows, dim); err != nil {
			return err
		}
	}
	return nil
}
