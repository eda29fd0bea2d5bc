// Package hash turns L2-normalised embeddings into compact binary codes that
// are compared by Hamming distance: the survey's "binary representation",
// used by the index for a cheap wide first pass (plan hash) and a short list
// to re-rank by exact cosine (plan hybrid).
//
// Two coders share one type:
//
//   - ITQ (iterative quantisation, Gong & Lazebnik 2011), fitted on a sample
//     of embeddings of both modalities: each modality is centred on its own
//     mean (otherwise the leading principal directions, and so the top bits,
//     only encode the gap between image and text embeddings), the centred
//     samples of both are projected on their top principal components, and an
//     orthogonal rotation is learned that minimises the quantisation error
//     ||sign(VR) - VR||. Bit j of a vector x of modality m is
//     (x - mean_m) · W[:, j] > 0 with W = PCA · R.
//   - SimHash (random hyperplanes through the origin), the untrained fallback
//     when a model ships no fitted parameters. Its hyperplanes are generated
//     from a seed, so its parameters are a few numbers.
//
// Codes have 16, 32, 64, 128 or 256 bits (never more than the embedding
// dimension) and are packed most significant bit first: bit j is bit 7-j%8
// of byte j/8.
//
// Parameters are saved as JSON together with the model version and the
// embedding dimension they were fitted for; loading them for another model
// is an error naming both.
package hash

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/xmodal/xmodal/domain"
)

// MaxDim bounds the embedding dimension a coder accepts.
const MaxDim = 1 << 16

// Methods of a coder.
const (
	MethodITQ     = "itq"
	MethodSimHash = "simhash"
)

// Format names the parameter file format.
const Format = "xmodal-hash/1"

// SupportedBits lists the code lengths a coder may have.
var SupportedBits = []int{16, 32, 64, 128, 256}

// DefaultBits is the code length of the SimHash fallback (capped by the
// dimension) and of `xmodal hash fit` without --bits.
const DefaultBits = 64

// CheckBits reports whether bits is a supported code length for embeddings
// of dimension dim, with an error naming the value.
func CheckBits(bits, dim int) error {
	if !slices.Contains(SupportedBits, bits) {
		return fmt.Errorf("hash: %d bits is not supported (want one of %s)", bits, bitsList())
	}
	if dim > 0 && bits > dim {
		return fmt.Errorf("hash: %d bits exceed the embedding dimension %d (at most one bit per dimension)", bits, dim)
	}
	return nil
}

func bitsList() string {
	s := make([]string, len(SupportedBits))
	for i, b := range SupportedBits {
		s[i] = strconv.Itoa(b)
	}
	return strings.Join(s, ", ")
}

// Params are a coder's parameters as saved on disk.
type Params struct {
	Format string `json:"format"`
	Method string `json:"method"`
	// Model is the version (name@version) of the model whose embeddings the
	// coder applies to, and Dim their dimension.
	Model string `json:"model"`
	Dim   int    `json:"dim"`
	Bits  int    `json:"bits"`
	// Seed drew ITQ's initial rotation or SimHash's hyperplanes.
	Seed uint64 `json:"seed"`
	// Fit statistics (ITQ): rotation iterations, samples per modality, and the
	// final mean quantisation loss ||B - VR||² per sample.
	Iterations int            `json:"iterations,omitempty"`
	Samples    map[string]int `json:"samples,omitempty"`
	Loss       float64        `json:"quantization_loss,omitempty"`
	Data       string         `json:"data,omitempty"` // what the coder was fitted on, for people
	// Means holds each modality's mean embedding (ITQ): "image", "text" and
	// "fused".
	Means map[string][]float32 `json:"means,omitempty"`
	// Projection is W = PCA · R, Dim rows of Bits columns (ITQ).
	Projection [][]float32 `json:"projection,omitempty"`
}

// Coder computes binary codes. It is immutable and safe for concurrent use.
type Coder struct {
	p    Params
	w    []float32                     // Dim x Bits, row-major
	off  map[domain.Modality][]float32 // mean_m · W per bit
	zero []float32                     // offsets of an unknown modality
	id   string
}

// Bits returns the code length in bits.
func (c *Coder) Bits() int { return c.p.Bits }

// Bytes returns the code length in bytes.
func (c *Coder) Bytes() int { return c.p.Bits / 8 }

// Dim returns the embedding dimension.
func (c *Coder) Dim() int { return c.p.Dim }

// Method returns "itq" or "simhash".
func (c *Coder) Method() string { return c.p.Method }

// Model returns the model version the coder applies to.
func (c *Coder) Model() string { return c.p.Model }

// ID identifies the coder's parameters: codes of two coders are comparable
// only when their IDs are equal. It is the method, the bits and a digest of
// the parameters, e.g. "itq-64-3fa2c1d0e9b4".
func (c *Coder) ID() string { return c.id }

// Params returns a copy of the parameters.
func (c *Coder) Params() Params {
	p := c.p
	p.Samples = maps(c.p.Samples)
	p.Means = make(map[string][]float32, len(c.p.Means))
	for k, v := range c.p.Means {
		p.Means[k] = slices.Clone(v)
	}
	p.Projection = make([][]float32, len(c.p.Projection))
	for i, r := range c.p.Projection {
		p.Projection[i] = slices.Clone(r)
	}
	if len(c.p.Projection) == 0 {
		p.Projection = nil
	}
	return p
}

func maps(m map[string]int) map[string]int {
	if m == nil {
		return nil
	}
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Code returns the packed code of vec, an embedding of modality m (the
// modality selects the mean it is centred on; "" centres on the mean of the
// image and text means). It returns nil when vec does not have the coder's
// dimension.
func (c *Coder) Code(vec []float32, m domain.Modality) []byte {
	return c.AppendCode(nil, vec, m)
}

// AppendCode appends the code of vec to dst (see Code).
func (c *Coder) AppendCode(dst []byte, vec []float32, m domain.Modality) []byte {
	nb := c.p.Bits
	if len(vec) != c.p.Dim {
		return dst
	}
	var acc [256]float32
	y := acc[:nb]
	w := c.w
	// Four rows of W per pass over y: a quarter of the loads and stores of y.
	i := 0
	for ; i+4 <= len(vec); i += 4 {
		x0, x1, x2, x3 := vec[i], vec[i+1], vec[i+2], vec[i+3]
		r0 := w[i*nb : (i+1)*nb]
		r1 := w[(i+1)*nb : (i+2)*nb][:len(r0)]
		r2 := w[(i+2)*nb : (i+3)*nb][:len(r0)]
		r3 := w[(i+3)*nb : (i+4)*nb][:len(r0)]
		y := y[:len(r0)]
		for j := range r0 {
			y[j] += x0*r0[j] + x1*r1[j] + x2*r2[j] + x3*r3[j]
		}
	}
	for ; i < len(vec); i++ {
		x := vec[i]
		row := w[i*nb : (i+1)*nb]
		for j := range row {
			y[j] += x * row[j]
		}
	}
	off, ok := c.off[m]
	if !ok {
		off = c.zero
	}
	for k := 0; k < nb; k += 8 {
		var b byte
		for j := k; j < k+8; j++ {
			b <<= 1
			if y[j] > off[j] {
				b |= 1
			}
		}
		dst = append(dst, b)
	}
	return dst
}

// Hamming returns the number of differing bits of two codes of equal length
// (it panics on codes of different lengths).
func Hamming(a, b []byte) int {
	if len(a) != len(b) {
		panic(fmt.Sprintf("hash: Hamming of codes of %d and %d bytes", len(a), len(b)))
	}
	n, i := 0, 0
	for ; i+8 <= len(a); i += 8 {
		n += bits.OnesCount64(le64(a[i:]) ^ le64(b[i:]))
	}
	for ; i < len(a); i++ {
		n += bits.OnesCount8(a[i] ^ b[i])
	}
	return n
}

func le64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// NewSimHash returns the untrained fallback: bits random hyperplanes through
// the origin for dim-dimensional embeddings of model, drawn from seed.
func NewSimHash(model string, dim, bits int, seed uint64) (*Coder, error) {
	return New(Params{Format: Format, Method: MethodSimHash, Model: model, Dim: dim, Bits: bits, Seed: seed})
}

// simhashPlanes draws the hyperplanes of a SimHash coder: standard normal
// entries from a PCG seeded with (seed, dim*1000+bits).
func simhashPlanes(dim, bits int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, uint64(dim)*1000+uint64(bits)))
	w := make([]float32, dim*bits)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	return w
}

// New builds a coder from parameters, validating them.
func New(p Params) (*Coder, error) {
	if p.Format == "" {
		p.Format = Format
	}
	if p.Format != Format {
		return nil, fmt.Errorf("hash: parameter format %q is not supported (want %q)", p.Format, Format)
	}
	if p.Dim <= 0 || p.Dim > MaxDim {
		return nil, fmt.Errorf("hash: dimension %d must be between 1 and %d", p.Dim, MaxDim)
	}
	if err := CheckBits(p.Bits, p.Dim); err != nil {
		return nil, err
	}
	c := &Coder{p: p, off: map[domain.Modality][]float32{}, zero: make([]float32, p.Bits)}
	switch p.Method {
	case MethodSimHash:
		if len(p.Projection) > 0 || len(p.Means) > 0 {
			return nil, errors.New("hash: simhash parameters carry no projection or means (they come from the seed)")
		}
		c.w = simhashPlanes(p.Dim, p.Bits, p.Seed)
		for _, m := range domain.Modalities {
			c.off[m] = c.zero
		}
	case MethodITQ:
		if len(p.Projection) != p.Dim {
			return nil, fmt.Errorf("hash: itq projection has %d rows, want the dimension %d", len(p.Projection), p.Dim)
		}
		c.w = make([]float32, 0, p.Dim*p.Bits)
		for i, row := range p.Projection {
			if len(row) != p.Bits {
				return nil, fmt.Errorf("hash: itq projection row %d has %d columns, want %d bits", i, len(row), p.Bits)
			}
			for _, x := range row {
				if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
					return nil, fmt.Errorf("hash: itq projection row %d holds a non-finite value", i)
				}
			}
			c.w = append(c.w, row...)
		}
		for _, m := range []domain.Modality{domain.ModalityImage, domain.ModalityText} {
			if _, ok := p.Means[string(m)]; !ok {
				return nil, fmt.Errorf("hash: itq parameters lack the %s mean", m)
			}
		}
		for k, mean := range p.Means {
			m, err := domain.ParseModality(k)
			if err != nil {
				return nil, fmt.Errorf("hash: means: %v", err)
			}
			if len(mean) != p.Dim {
				return nil, fmt.Errorf("hash: %s mean has %d values, want the dimension %d", k, len(mean), p.Dim)
			}
			c.off[m] = c.project(mean)
		}
		img, txt := p.Means[string(domain.ModalityImage)], p.Means[string(domain.ModalityText)]
		both := make([]float32, p.Dim)
		for i := range both {
			both[i] = (img[i] + txt[i]) / 2
		}
		c.zero = c.project(both)
		if _, ok := c.off[domain.ModalityFused]; !ok {
			c.off[domain.ModalityFused] = c.zero
		}
	default:
		return nil, fmt.Errorf("hash: method %q is unknown (want %q or %q)", p.Method, MethodITQ, MethodSimHash)
	}
	c.id = fmt.Sprintf("%s-%d-%s", p.Method, p.Bits, c.digest())
	return c, nil
}

// project returns v · W.
func (c *Coder) project(v []float32) []float32 {
	nb := c.p.Bits
	out := make([]float32, nb)
	for i, x := range v {
		row := c.w[i*nb : (i+1)*nb]
		for j := range row {
			out[j] += x * row[j]
		}
	}
	return out
}

// digest hashes what determines the codes: method, model, dims, seed,
// projection and offsets.
func (c *Coder) digest() string {
	h := sha256.New()
	fmt.Fprintf(h, "%s|%s|%d|%d|%d|", c.p.Method, c.p.Model, c.p.Dim, c.p.Bits, c.p.Seed)
	var b [4]byte
	put := func(xs []float32) {
		for _, x := range xs {
			u := math.Float32bits(x)
			b[0], b[1], b[2], b[3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
			h.Write(b[:])
		}
	}
	put(c.w)
	for _, m := range domain.Modalities {
		put(c.off[m])
	}
	return hex.EncodeToString(h.Sum(nil)[:6])
}

// MarshalJSON writes the parameters.
func (c *Coder) MarshalJSON() ([]byte, error) { return json.Marshal(c.p) }

// Save writes the parameters to path (JSON, indented).
func (c *Coder) Save(path string) error {
	b, err := json.MarshalIndent(c.p, "", " ")
	if err != nil {
		return err
	}
	b = append(compactArrays(b), '\n')
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("hash: save: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("hash: save: %w", err)
	}
	return nil
}

// compactArrays puts every innermost JSON array (one holding no array or
// object) on one line: a projection row per line instead of a number per line.
func compactArrays(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '[' {
			out = append(out, b[i])
			continue
		}
		j := i + 1
		for j < len(b) && b[j] != ']' && b[j] != '[' && b[j] != '{' && b[j] != '"' {
			j++
		}
		if j == len(b) || b[j] != ']' {
			out = append(out, b[i])
			continue
		}
		out = append(out, '[')
		for _, c := range b[i+1 : j] {
			if c != ' ' && c != '\n' && c != '\t' && c != '\r' {
				out = append(out, c)
			}
		}
		out = append(out, ']')
		i = j
	}
	return out
}

// Parse decodes parameters (JSON) and checks that they were fitted for model
// (name@version; "" skips the check) and embeddings of dimension dim (0
// skips the check). A mismatch is an error naming both values.
func Parse(data []byte, model string, dim int) (*Coder, error) {
	var p Params
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("hash: parameters: %w", err)
	}
	if (model != "" && p.Model != model) || (dim > 0 && p.Dim != dim) {
		return nil, &ModelMismatchError{FileModel: p.Model, FileDim: p.Dim, Model: model, Dim: dim}
	}
	return New(p)
}

// ModelMismatchError says that hash parameters belong to another model.
type ModelMismatchError struct {
	Path             string
	FileModel, Model string
	FileDim, Dim     int
}

func (e *ModelMismatchError) Error() string {
	where := "hash parameters"
	if e.Path != "" {
		where = "hash parameters " + e.Path
	}
	return fmt.Sprintf("%s were fitted for model %q (dim %d), not for %q (dim %d): refit them with 'xmodal hash fit'",
		where, e.FileModel, e.FileDim, e.Model, e.Dim)
}

// Load reads parameters from path (see Parse).
func Load(path, model string, dim int) (*Coder, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("hash: %w", err)
	}
	c, err := Parse(b, model, dim)
	if err != nil {
		var me *ModelMismatchError
		if errors.As(err, &me) {
			me.Path = path
			return nil, me
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}
