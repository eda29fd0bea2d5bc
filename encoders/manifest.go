package encoders

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ManifestFile is the name of the manifest inside a model directory.
const ManifestFile = "model.json"

// Defaults of the model directory contract (the transformers.js two-file
// layout and OpenAI CLIP ViT-B/32 preprocessing).
const (
	DefaultImageInput    = "pixel_values"
	DefaultImageOutput   = "image_embeds"
	DefaultInputIDs      = "input_ids"
	DefaultAttentionMask = "attention_mask"
	DefaultTextOutput    = "text_embeds"
	DefaultContextLength = 77
	DefaultImageSize     = 224
	TokenizerCLIPBPE     = "clip-bpe"
	ResizeShortest       = "shortest"
	ResizeSquash         = "squash"
	DTypeInt64           = "int64"
	DTypeInt32           = "int32"
)

// CLIP's preprocessing constants (OpenAI CLIP, also used by open_clip's
// ViT-B-32 "openai" weights and by transformers' CLIPImageProcessor).
var (
	CLIPMean = [3]float32{0.48145466, 0.4578275, 0.40821073}
	CLIPStd  = [3]float32{0.26862954, 0.26130258, 0.27577711}
)

// Manifest describes a model directory (model.json). Paths are relative to
// the directory. Unknown keys are rejected, except inside Hash, which the
// hash coder parses itself.
//
//	{
//	  "name": "clip-vit-b32", "version": "1", "dim": 512,
//	  "image": {"file": "vision_model.onnx", "input": "pixel_values", "output": "image_embeds",
//	            "size": 224, "crop": 224, "resize": "shortest",
//	            "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]},
//	  "text":  {"file": "text_model.onnx", "input_ids": "input_ids", "attention_mask": "attention_mask",
//	            "output": "text_embeds", "input_ids_dtype": "int64",
//	            "tokenizer": {"kind": "clip-bpe", "vocab": "", "context_length": 77}},
//	  "hash": {...}
//	}
type Manifest struct {
	Name    string        `json:"name"`
	Version string        `json:"version"`
	Dim     int           `json:"dim"`
	Image   ImageManifest `json:"image"`
	Text    TextManifest  `json:"text"`
	// Hash holds the hash coder's parameters, parsed by the hashing code.
	Hash json.RawMessage `json:"hash,omitempty"`

	// Inferred is true when the directory had no model.json and the manifest
	// was derived from the two-file ONNX layout. Not part of the JSON.
	Inferred bool `json:"-"`
}

// ImageManifest is the image tower: its ONNX file, tensor names and
// preprocessing.
type ImageManifest struct {
	File   string `json:"file"`
	Input  string `json:"input,omitempty"`
	Output string `json:"output,omitempty"`
	// Size is the resize target: the shortest side for "shortest", both
	// sides for "squash".
	Size int `json:"size,omitempty"`
	// Crop is the centre-crop side after resizing; 0 means Size.
	Crop   int        `json:"crop,omitempty"`
	Resize string     `json:"resize,omitempty"`
	Mean   [3]float32 `json:"mean"`
	Std    [3]float32 `json:"std"`
}

// TextManifest is the text tower: its ONNX file, tensor names and tokenizer.
type TextManifest struct {
	File     string `json:"file"`
	InputIDs string `json:"input_ids,omitempty"`
	// AttentionMask is the mask input's name; "" feeds "attention_mask" when
	// the graph has that input and no mask otherwise.
	AttentionMask string            `json:"attention_mask,omitempty"`
	Output        string            `json:"output,omitempty"`
	InputIDsDType string            `json:"input_ids_dtype,omitempty"`
	Tokenizer     TokenizerManifest `json:"tokenizer"`
}

// TokenizerManifest names the tokenizer and its files.
type TokenizerManifest struct {
	Kind string `json:"kind,omitempty"`
	// Vocab is an optional BPE vocabulary file (open_clip's
	// bpe_simple_vocab_16e6.txt.gz format); "" uses the built-in CLIP vocabulary.
	Vocab         string `json:"vocab,omitempty"`
	ContextLength int    `json:"context_length,omitempty"`
}

// CropSize is the side of the square image the model takes.
func (im ImageManifest) CropSize() int {
	if im.Crop > 0 {
		return im.Crop
	}
	return im.Size
}

// ParseManifest decodes a manifest, rejecting unknown keys and trailing data,
// and fills defaults. It does not look at files; Load validates against them.
func ParseManifest(data []byte) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("%s: %w", ManifestFile, manifestJSONError(data, err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return Manifest{}, fmt.Errorf("%s: trailing data after the JSON object", ManifestFile)
	}
	m = m.WithDefaults()
	if err := m.Validate(); err != nil {
		return Manifest{}, err
	}
	return m, nil
}

// manifestJSONError turns encoding/json errors into messages that name the
// key or the line.
func manifestJSONError(data []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line := 1 + bytes.Count(data[:min(int(se.Offset), len(data))], []byte("\n"))
		return fmt.Errorf("bad JSON at line %d: %v", line, se)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("key %q: want a %s, got JSON %s", te.Field, te.Type, te.Value)
	}
	if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
		return fmt.Errorf("unknown key %s", strings.TrimPrefix(msg, "json: unknown field "))
	}
	if errors.Is(err, io.EOF) {
		return errors.New("empty file")
	}
	return err
}

// WithDefaults returns m with the zero fields set to their defaults.
func (m Manifest) WithDefaults() Manifest {
	im, tx := &m.Image, &m.Text
	if im.Input == "" {
		im.Input = DefaultImageInput
	}
	if im.Output == "" {
		im.Output = DefaultImageOutput
	}
	if im.Size == 0 {
		im.Size = DefaultImageSize
	}
	if im.Resize == "" {
		im.Resize = ResizeShortest
	}
	if im.Mean == ([3]float32{}) {
		im.Mean = CLIPMean
	}
	if im.Std == ([3]float32{}) {
		im.Std = CLIPStd
	}
	if tx.InputIDs == "" {
		tx.InputIDs = DefaultInputIDs
	}
	if tx.Output == "" {
		tx.Output = DefaultTextOutput
	}
	if tx.InputIDsDType == "" {
		tx.InputIDsDType = DTypeInt64
	}
	if tx.Tokenizer.Kind == "" {
		tx.Tokenizer.Kind = TokenizerCLIPBPE
	}
	if tx.Tokenizer.ContextLength == 0 {
		tx.Tokenizer.ContextLength = DefaultContextLength
	}
	return m
}

// Validate checks the manifest on its own (not against the ONNX files).
func (m Manifest) Validate() error {
	var errs []string
	bad := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	if m.Name == "" {
		bad(`"name" is required`)
	}
	if m.Dim < 0 {
		bad(`"dim" must be positive, got %d`, m.Dim)
	}
	if m.Image.File == "" {
		bad(`"image.file" is required`)
	}
	if m.Text.File == "" {
		bad(`"text.file" is required`)
	}
	for _, p := range []string{m.Image.File, m.Text.File, m.Text.Tokenizer.Vocab} {
		if p != "" && (filepath.IsAbs(p) || strings.HasPrefix(filepath.Clean(p), "..")) {
			bad("path %q must be relative to the model directory", p)
		}
	}
	im := m.Image
	if im.Size <= 0 {
		bad(`"image.size" must be positive, got %d`, im.Size)
	}
	if im.Crop < 0 || im.Crop > im.Size && im.Resize == ResizeShortest {
		bad(`"image.crop" %d must be between 0 and "image.size" %d`, im.Crop, im.Size)
	}
	if im.Resize != ResizeShortest && im.Resize != ResizeSquash {
		bad(`"image.resize" %q: want %q or %q`, im.Resize, ResizeShortest, ResizeSquash)
	}
	for i, s := range im.Std {
		if s <= 0 {
			bad(`"image.std"[%d] must be positive, got %g`, i, s)
		}
	}
	tx := m.Text
	if tx.InputIDsDType != DTypeInt64 && tx.InputIDsDType != DTypeInt32 {
		bad(`"text.input_ids_dtype" %q: want %q or %q`, tx.InputIDsDType, DTypeInt64, DTypeInt32)
	}
	if tx.Tokenizer.Kind != TokenizerCLIPBPE {
		bad(`"text.tokenizer.kind" %q: only %q is supported`, tx.Tokenizer.Kind, TokenizerCLIPBPE)
	}
	if tx.Tokenizer.ContextLength < 2 {
		bad(`"text.tokenizer.context_length" must be at least 2, got %d`, tx.Tokenizer.ContextLength)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s: %s", ManifestFile, strings.Join(errs, "; "))
	}
	return nil
}

// readManifest loads dir/model.json, or infers a manifest from the
// transformers.js two-file layout when there is none.
func readManifest(dir string) (Manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err == nil {
		return ParseManifest(data)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return Manifest{}, fmt.Errorf("model directory %s: %w", dir, err)
	}
	return inferManifest(dir)
}

// twoFileLayouts are the layouts accepted without model.json.
var twoFileLayouts = [][2]string{
	{"vision_model.onnx", "text_model.onnx"},
	{"onnx/vision_model.onnx", "onnx/text_model.onnx"},
}

// inferManifest builds a manifest for a directory without model.json. The
// dimension is filled in later from the ONNX graphs; preprocessing comes from
// a transformers preprocessor_config.json when present, else CLIP defaults.
func inferManifest(dir string) (Manifest, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return Manifest{}, fmt.Errorf("model directory: %w", err)
	}
	if !st.IsDir() {
		return Manifest{}, fmt.Errorf("model directory %s is not a directory", dir)
	}
	for _, l := range twoFileLayouts {
		if !isFile(filepath.Join(dir, l[0])) || !isFile(filepath.Join(dir, l[1])) {
			continue
		}
		abs, _ := filepath.Abs(dir)
		m := Manifest{
			Name:     filepath.Base(abs),
			Version:  "onnx",
			Image:    ImageManifest{File: l[0]},
			Text:     TextManifest{File: l[1]},
			Inferred: true,
		}
		m = m.WithDefaults()
		if err := applyPreprocessorConfig(dir, &m.Image); err != nil {
			return Manifest{}, err
		}
		return m, m.Validate()
	}
	return Manifest{}, fmt.Errorf("model directory %s has no %s and no two-file ONNX layout (want %s + %s, or %s + %s)",
		dir, ManifestFile, twoFileLayouts[0][0], twoFileLayouts[0][1], twoFileLayouts[1][0], twoFileLayouts[1][1])
}

// applyPreprocessorConfig reads transformers' preprocessor_config.json (as
// shipped by transformers.js exports) when present.
func applyPreprocessorConfig(dir string, im *ImageManifest) error {
	data, err := os.ReadFile(filepath.Join(dir, "preprocessor_config.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var pc struct {
		Size      json.RawMessage `json:"size"`
		CropSize  json.RawMessage `json:"crop_size"`
		DoCrop    *bool           `json:"do_center_crop"`
		ImageMean []float32       `json:"image_mean"`
		ImageStd  []float32       `json:"image_std"`
	}
	if err := json.Unmarshal(data, &pc); err != nil {
		return fmt.Errorf("%s: preprocessor_config.json: %w", dir, err)
	}
	if s := sizeOf(pc.Size, "shortest_edge"); s > 0 {
		im.Size = s
	} else if s := sizeOf(pc.Size, "height"); s > 0 {
		im.Size, im.Resize = s, ResizeSquash
	}
	if pc.DoCrop == nil || *pc.DoCrop {
		if c := sizeOf(pc.CropSize, "height"); c > 0 {
			im.Crop = c
		}
	}
	if len(pc.ImageMean) == 3 {
		copy(im.Mean[:], pc.ImageMean)
	}
	if len(pc.ImageStd) == 3 {
		copy(im.Std[:], pc.ImageStd)
	}
	return nil
}

// sizeOf reads transformers' size fields: a number or {"shortest_edge": n} /
// {"height": h, "width": w}.
func sizeOf(raw json.RawMessage, key string) int {
	if len(raw) == 0 {
		return 0
	}
	var n int
	if json.Unmarshal(raw, &n) == nil {
		return n
	}
	var obj map[string]int
	if json.Unmarshal(raw, &obj) == nil {
		return obj[key]
	}
	return 0
}
