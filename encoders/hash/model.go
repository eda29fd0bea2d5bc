package hash

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ParamsFile is the file in a model directory that holds the fitted coder
// when the manifest's "hash" section does not name one.
const ParamsFile = "hash.json"

// DefaultSeed seeds the SimHash fallback.
const DefaultSeed = 1

// ForModel returns the coder of a model directory and says where it came
// from. In order:
//
//   - the manifest's "hash" section: {"file": "hash-64.json"} (a parameter
//     file relative to the directory), or parameters inline (model and dim
//     may be left out: they are the model's), e.g.
//     {"method": "simhash", "bits": 128, "seed": 7};
//   - dir/hash.json;
//   - SimHash with DefaultBits bits (fewer when the dimension is smaller)
//     and DefaultSeed.
//
// model (name@version) and dim are the model's; parameters fitted for
// another model are an error naming both. A dimension under 16 has no coder
// (nil, with the reason as the source).
func ForModel(dir string, section json.RawMessage, model string, dim int) (*Coder, string, error) {
	if s := bytes.TrimSpace(section); len(s) > 0 && !bytes.Equal(s, []byte("null")) {
		var ref struct {
			File string `json:"file"`
		}
		if err := json.Unmarshal(s, &ref); err != nil {
			return nil, "", fmt.Errorf("model.json \"hash\": %w", err)
		}
		if ref.File != "" {
			if filepath.IsAbs(ref.File) || strings.HasPrefix(filepath.Clean(ref.File), "..") {
				return nil, "", fmt.Errorf("model.json \"hash.file\" %q must be relative to the model directory", ref.File)
			}
			p := filepath.Join(dir, ref.File)
			c, err := Load(p, model, dim)
			return c, p, err
		}
		var p Params
		dec := json.NewDecoder(bytes.NewReader(s))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			return nil, "", fmt.Errorf("model.json \"hash\": %w", err)
		}
		if p.Model == "" {
			p.Model = model
		}
		if p.Dim == 0 {
			p.Dim = dim
		}
		if p.Model != model || p.Dim != dim {
			return nil, "", &ModelMismatchError{Path: "in model.json", FileModel: p.Model, FileDim: p.Dim, Model: model, Dim: dim}
		}
		c, err := New(p)
		if err != nil {
			return nil, "", fmt.Errorf("model.json \"hash\": %w", err)
		}
		return c, "model.json", nil
	}
	p := filepath.Join(dir, ParamsFile)
	if _, err := os.Stat(p); err == nil {
		c, err := Load(p, model, dim)
		return c, p, err
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("hash: %w", err)
	}
	bits := FallbackBits(dim)
	if bits == 0 {
		return nil, fmt.Sprintf("none (dimension %d is under %d)", dim, SupportedBits[0]), nil
	}
	c, err := NewSimHash(model, dim, bits, DefaultSeed)
	return c, "simhash fallback (no fitted parameters)", err
}

// FallbackBits is the code length of the SimHash fallback for a dimension:
// DefaultBits, or the largest supported length under dim; 0 when none fits.
func FallbackBits(dim int) int {
	best := 0
	for _, b := range SupportedBits {
		if b <= dim && b <= DefaultBits {
			best = b
		}
	}
	return best
}
