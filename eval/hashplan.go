package eval

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/hash"
)

// The hash and hybrid plans (docs/eval.md):
//
//   - hash: for each code length, a coder (ITQ fitted on a training set,
//     SimHash, or a given one such as the model's own) codes the gallery
//     and each query as a vector of its own modality; the gallery is ranked
//     by Hamming distance to the query's code, ties by the lower gallery
//     index, and MAP@K / MAP@ALL are computed from that ranking exactly as
//     for the exact plan, beside the exact plan's MAP.
//   - hybrid: the gallery goes into the embedded index (sink/embedded) with
//     the coder; each query is searched with the index's hybrid plan (the
//     Hamming top C re-ranked by exact cosine) for every C, and with its
//     exact plan; the report gives recall@K of hybrid against exact top K
//     and the time per query of both.

// Coder choices of HashOptions.Method.
const (
	CoderITQ     = hash.MethodITQ     // fitted on HashOptions.Train
	CoderSimHash = hash.MethodSimHash // random hyperplanes, seeded by Options.Seed
)

// HashOptions configure the hash and hybrid plans.
type HashOptions struct {
	// Bits are the code lengths, each one of hash.SupportedBits and at most
	// the embedding dimension. nil: the hash plan takes every supported
	// length up to the dimension, the hybrid plan 64 (fewer when the
	// dimension is smaller).
	Bits []int
	// Method is CoderITQ (default) or CoderSimHash; ignored when Coder is set.
	Method string
	// Coder, when set, is the only coder evaluated (e.g. the model's own,
	// hash.ForModel); Bits must be nil or its length. CoderSource says where
	// it came from, for the report.
	Coder       *hash.Coder
	CoderSource string
	// Train is the set ITQ is fitted on (images and texts; never the
	// queries). nil: the retrieval database, with a note in the report.
	Train *EmbeddedSet
	// FitSamples caps the samples per modality of an ITQ fit (evenly
	// strided); 0 is hash.Fit's default.
	FitSamples int
	// Model is the model version recorded in fitted coders ("" for "eval").
	Model string
	// Candidates are the hybrid plan's short-list sizes C; nil:
	// DefaultCandidates.
	Candidates []Candidates
	// K is the hybrid plan's recall cut-off; 0 means 10.
	K int
	// TempDir holds the hybrid plan's index file while it runs; "" is the
	// system's temporary directory.
	TempDir string
}

// DefaultCandidates are the hybrid plan's C when none are given.
func DefaultCandidates() []Candidates {
	return []Candidates{{Percent: 0.1}, {Percent: 0.5}, {Percent: 1}, {Percent: 2}, {Percent: 5}, {Percent: 10}}
}

// Candidates is the hybrid plan's short-list size C: a count, or a
// percentage of the gallery searched.
type Candidates struct {
	Count   int     // C itself, when Percent is 0
	Percent float64 // C as a percentage of the gallery, in (0, 100]
}

// ParseCandidates reads C: a positive count ("500") or a percentage of the
// gallery ("0.5%").
func ParseCandidates(s string) (Candidates, error) {
	t := strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(t, "%"); ok {
		x, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(x) || x <= 0 || x > 100 {
			return Candidates{}, fmt.Errorf("candidates %q: a percentage of the gallery must be a number in (0, 100]", s)
		}
		return Candidates{Percent: x}, nil
	}
	n, err := strconv.Atoi(t)
	if err != nil {
		return Candidates{}, fmt.Errorf("candidates %q: want a count (500) or a percentage of the gallery (0.5%%)", s)
	}
	if n <= 0 {
		return Candidates{}, fmt.Errorf("candidates %q: the count must be positive", s)
	}
	return Candidates{Count: n}, nil
}

// String is the form ParseCandidates reads.
func (c Candidates) String() string {
	if c.Percent > 0 {
		return strconv.FormatFloat(c.Percent, 'f', -1, 64) + "%"
	}
	return strconv.Itoa(c.Count)
}

// Of is C for a gallery of n items: the count, or the percentage of n
// rounded up; at least 1 and at most n.
func (c Candidates) Of(n int) int {
	v := c.Count
	if c.Percent > 0 {
		v = int(math.Ceil(c.Percent * float64(n) / 100))
	}
	return max(1, min(v, n))
}

func (c Candidates) valid() error {
	if c.Percent > 0 {
		if c.Percent > 100 || c.Count != 0 {
			return fmt.Errorf("candidates %s: a percentage of the gallery must be in (0, 100]", c)
		}
		return nil
	}
	if c.Count <= 0 || c.Percent < 0 || math.IsNaN(c.Percent) {
		return fmt.Errorf("candidates %s: the count must be positive", c)
	}
	return nil
}

// HashReport is the hash or hybrid plan's part of a Report.
type HashReport struct {
	// Coders are the coders evaluated, one per code length.
	Coders []CoderInfo `json:"coders"`
	// FitSet names what ITQ was fitted on (or where a given coder came from).
	FitSet string `json:"fit_set,omitempty"`
	// MAP: plan hash. Hybrid: plan hybrid, with the recall cut-off K.
	MAP    []HashMAPRow `json:"map,omitempty"`
	K      int          `json:"k,omitempty"`
	Hybrid []HybridRow  `json:"hybrid,omitempty"`
}

// CoderInfo describes one coder.
type CoderInfo struct {
	Bits   int    `json:"bits"`
	Method string `json:"method"`
	ID     string `json:"id"`
	// FitSeconds is the time of the ITQ fit (0 for others); Samples the
	// samples per modality it used and Loss its quantisation loss.
	FitSeconds float64        `json:"fit_seconds,omitempty"`
	Samples    map[string]int `json:"samples,omitempty"`
	Loss       float64        `json:"quantization_loss,omitempty"`
}

// HashMAPRow is MAP@K (K = 0: ALL) of the Hamming ranking for one code
// length and direction, beside the exact plan's MAP on the same queries and
// gallery.
type HashMAPRow struct {
	Bits      int     `json:"bits"`
	Direction string  `json:"direction"`
	K         int     `json:"k"` // 0 = ALL
	MAP       float64 `json:"map"`
	Exact     float64 `json:"exact_map"`
	Queries   int     `json:"queries"`
	Gallery   int     `json:"gallery"`
}

// HybridRow is the hybrid plan at one code length, direction and C:
// recall@K against the exact top K, and the time per query of both plans
// on one goroutine, the query's code included in hybrid's time: wall time,
// and the process's CPU time (user + system; steadier on a shared machine,
// 0 where unknown).
type HybridRow struct {
	Bits       int    `json:"bits"`
	Direction  string `json:"direction"`
	Candidates string `json:"candidates"` // as given: "500" or "0.5%"
	// C is the short-list size searched: the given one, at least K and at
	// most the gallery.
	C       int     `json:"c"`
	Queries int     `json:"queries"`
	Gallery int     `json:"gallery"`
	Recall  float64 `json:"recall"` // mean |hybrid top K ∩ exact top K| / K
	// Microseconds per query, wall and CPU time.
	HybridMicros    float64 `json:"hybrid_us_per_query"`
	ExactMicros     float64 `json:"exact_us_per_query"`
	HybridCPUMicros float64 `json:"hybrid_cpu_us_per_query,omitempty"`
	ExactCPUMicros  float64 `json:"exact_cpu_us_per_query,omitempty"`
	// Speedup is exact / hybrid by CPU time (by wall time where CPU time
	// is unknown); WallSpeedup by wall time.
	Speedup     float64 `json:"speedup"`
	WallSpeedup float64 `json:"wall_speedup"`
}

// checkHash validates the hash options for embeddings of dimension dim and
// fills in the defaults; every error names the offending value.
func (o *HashOptions) check(plan string, dim int) error {
	if o.Coder != nil {
		if o.Coder.Dim() != dim {
			return fmt.Errorf("hash coder %s is for dimension %d, the embeddings have %d", o.Coder.ID(), o.Coder.Dim(), dim)
		}
		for _, b := range o.Bits {
			if b != o.Coder.Bits() {
				return fmt.Errorf("bits %d: the given coder %s has %d bits", b, o.Coder.ID(), o.Coder.Bits())
			}
		}
		o.Bits = []int{o.Coder.Bits()}
	} else {
		switch o.Method {
		case "":
			o.Method = CoderITQ
		case CoderITQ, CoderSimHash:
		default:
			return fmt.Errorf("hash coder %q is unknown (want %s or %s)", o.Method, CoderITQ, CoderSimHash)
		}
	}
	if len(o.Bits) == 0 {
		for _, b := range hash.SupportedBits {
			if b <= dim && (plan == "hash" || b == hash.FallbackBits(dim)) {
				o.Bits = append(o.Bits, b)
			}
		}
		if len(o.Bits) == 0 {
			return fmt.Errorf("embeddings of dimension %d are too small for binary codes (at least %d bits)", dim, hash.SupportedBits[0])
		}
	}
	for _, b := range o.Bits {
		if err := hash.CheckBits(b, dim); err != nil {
			return fmt.Errorf("code length: %w", err)
		}
	}
	o.Bits = slices.Compact(slices.Sorted(slices.Values(o.Bits)))
	if o.Candidates == nil {
		o.Candidates = DefaultCandidates()
	}
	for _, c := range o.Candidates {
		if err := c.valid(); err != nil {
			return err
		}
	}
	if o.K == 0 {
		o.K = 10
	}
	if o.K < 0 {
		return fmt.Errorf("hybrid recall cut-off K must be positive, got %d", o.K)
	}
	if o.FitSamples < 0 {
		return fmt.Errorf("fit samples %d must not be negative", o.FitSamples)
	}
	return nil
}

// coders builds one coder per code length: the given one, SimHash, or ITQ
// fitted on o.Train (else on fallback, the retrieval database).
func (o *HashOptions) coders(ctx context.Context, dim int, seed uint64, fallback *EmbeddedSet, rep *Report) ([]*hash.Coder, error) {
	hr := rep.Hash
	if o.Coder != nil {
		hr.FitSet = o.CoderSource
		hr.Coders = append(hr.Coders, coderInfo(o.Coder, 0))
		return []*hash.Coder{o.Coder}, nil
	}
	model := o.Model
	if model == "" {
		model = "eval"
	}
	var out []*hash.Coder
	if o.Method == CoderSimHash {
		hr.FitSet = fmt.Sprintf("none: random hyperplanes, seed %d", seed)
		for _, b := range o.Bits {
			c, err := hash.NewSimHash(model, dim, b, seed)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
			hr.Coders = append(hr.Coders, coderInfo(c, 0))
		}
		return out, nil
	}
	train := o.Train
	if train == nil {
		if fallback == nil {
			return nil, fmt.Errorf("ITQ needs a set to fit on and there is neither a train set nor a retrieval database (give one, or use the simhash coder)")
		}
		train = fallback
		rep.Notes = append(rep.Notes, fmt.Sprintf("ITQ was fitted on the retrieval database %s (no train set given): the gallery, never the queries", fallback.Name))
	}
	if train.Images.Rows == 0 || train.Texts.Rows == 0 {
		return nil, fmt.Errorf("ITQ fit set %s has %d images and %d texts; it needs both modalities", train.Name, train.Images.Rows, train.Texts.Rows)
	}
	if train.Images.Dim != dim || train.Texts.Dim != dim {
		return nil, fmt.Errorf("ITQ fit set %s has dimension %d, the evaluated embeddings %d (mismatched embedding dimensions)", train.Name, train.Images.Dim, dim)
	}
	s := hash.Samples{Image: rowsOf(train.Images), Text: rowsOf(train.Texts)}
	hr.FitSet = fmt.Sprintf("%s: %d images, %d texts", train.Name, train.Images.Rows, train.Texts.Rows)
	for _, b := range o.Bits {
		t0 := time.Now()
		c, err := hash.Fit(ctx, s, hash.FitOptions{Model: model, Bits: b, Seed: seed, MaxSamples: o.FitSamples, Data: train.Name})
		if err != nil {
			return nil, err
		}
		out = append(out, c)
		hr.Coders = append(hr.Coders, coderInfo(c, time.Since(t0).Seconds()))
	}
	return out, nil
}

func coderInfo(c *hash.Coder, fit float64) CoderInfo {
	p := c.Params()
	return CoderInfo{Bits: c.Bits(), Method: c.Method(), ID: c.ID(), FitSeconds: fit, Samples: p.Samples, Loss: p.Loss}
}

func rowsOf(m Matrix) [][]float32 {
	out := make([][]float32, m.Rows)
	for i := range out {
		out[i] = m.Row(i)
	}
	return out
}

// ---- Hamming ranking

// Hamming ranks a gallery of binary codes by Hamming distance to a query
// code, ties by the lower gallery index: the order of the embedded index's
// hash plan when primary keys sort as gallery indices do (checked in
// TestHammingMatchesEmbeddedHashPlan). It is safe for concurrent use.
type Hamming struct {
	n, words, bits int
	codes          []uint64 // n × words
}

// NewHamming packs codes (all of one length, a multiple of 8 bits).
func NewHamming(codes [][]byte) (*Hamming, error) {
	h := &Hamming{n: len(codes)}
	if len(codes) == 0 {
		return h, nil
	}
	nb := len(codes[0])
	if nb == 0 {
		return nil, fmt.Errorf("gallery code 0 is empty")
	}
	h.bits, h.words = 8*nb, (nb+7)/8
	h.codes = make([]uint64, len(codes)*h.words)
	for i, c := range codes {
		if len(c) != nb {
			return nil, fmt.Errorf("gallery code %d has %d bytes, code 0 has %d", i, len(c), nb)
		}
		packWords(h.codes[i*h.words:(i+1)*h.words], c)
	}
	return h, nil
}

// packWords puts code into w, 8 bytes per word (little-endian), zero-padded.
func packWords(w []uint64, code []byte) {
	for j := range w {
		var b [8]byte
		copy(b[:], code[min(8*j, len(code)):min(8*j+8, len(code))])
		w[j] = binary.LittleEndian.Uint64(b[:])
	}
}

// Len is the gallery size.
func (h *Hamming) Len() int { return h.n }

// Distances writes the Hamming distance of code to every gallery code into d.
func (h *Hamming) Distances(code []byte, d []uint16, s *Scratch) []uint16 {
	if len(code)*8 != h.bits {
		panic(fmt.Sprintf("eval: query code of %d bits against %d-bit gallery codes", len(code)*8, h.bits))
	}
	s.qw = slices.Grow(s.qw[:0], h.words)[:h.words]
	packWords(s.qw, code)
	d = slices.Grow(d[:0], h.n)[:h.n]
	switch h.words {
	case 1:
		q := s.qw[0]
		for i, c := range h.codes[:h.n] {
			d[i] = uint16(bits.OnesCount64(q ^ c))
		}
	default:
		w := h.words
		for i := range d {
			row := h.codes[i*w : (i+1)*w : (i+1)*w]
			n := 0
			for j, q := range s.qw[:len(row)] {
				n += bits.OnesCount64(q ^ row[j])
			}
			d[i] = uint16(n)
		}
	}
	return d
}

// RankCode returns gallery indices by Hamming distance to code, ties by
// the lower index: the top k, or all when k <= 0 or k >= the gallery size.
// A counting sort: O(gallery + bits).
func (h *Hamming) RankCode(code []byte, k int, s *Scratch) []int32 {
	s.dist = h.Distances(code, s.dist, s)
	s.cnt = slices.Grow(s.cnt[:0], h.bits+2)[:h.bits+2]
	clear(s.cnt)
	for _, d := range s.dist {
		s.cnt[d+1]++
	}
	for i := 1; i < len(s.cnt); i++ {
		s.cnt[i] += s.cnt[i-1]
	}
	if k <= 0 || k > h.n {
		k = h.n
	}
	s.idx = slices.Grow(s.idx[:0], h.n)[:h.n]
	for i, d := range s.dist { // ascending i: ties keep the lower index first
		if p := s.cnt[d]; p < int32(k) {
			s.idx[p] = int32(i)
		}
		s.cnt[d]++
	}
	return s.idx[:k]
}

// hashRanker ranks float queries of one modality by coding them first.
type hashRanker struct {
	h     *Hamming
	coder *hash.Coder
	m     domain.Modality
}

func (r *hashRanker) Len() int { return r.h.Len() }

func (r *hashRanker) Rank(q []float32, k int, s *Scratch) []int32 {
	s.code = r.coder.AppendCode(s.code[:0], q, r.m)
	return r.h.RankCode(s.code, k, s)
}

// HammingPlan is the hash plan's PlanFunc for one direction: the gallery is
// coded as vectors of modality gallery, each query as a vector of modality
// query, and the gallery ranked by Hamming distance (Hamming.RankCode).
func HammingPlan(c *hash.Coder, query, gallery domain.Modality) PlanFunc {
	return func(g Matrix) (Ranker, error) {
		if g.Rows > 0 && g.Dim != c.Dim() {
			return nil, fmt.Errorf("hash coder %s is for dimension %d, the gallery has %d", c.ID(), c.Dim(), g.Dim)
		}
		codes := make([][]byte, g.Rows)
		for i := range codes {
			codes[i] = c.Code(g.Row(i), gallery)
		}
		h, err := NewHamming(codes)
		if err != nil {
			return nil, err
		}
		return &hashRanker{h: h, coder: c, m: query}, nil
	}
}

// hashSection adds the hash plan's MAP rows: one Hamming ranking per coder
// and direction, scored as mapSection scores the exact plan.
func hashSection(ctx context.Context, q, g *EmbeddedSet, coders []*hash.Coder, opt Options, rep *Report) error {
	ks := append(slices.Clone(opt.MAPKs), 0)
	for _, c := range coders {
		rows, err := mapRows(ctx, q, g, func(dir string) PlanFunc {
			if dir == TqI {
				return HammingPlan(c, domain.ModalityText, domain.ModalityImage)
			}
			return HammingPlan(c, domain.ModalityImage, domain.ModalityText)
		}, ks, opt, false)
		if err != nil {
			return err
		}
		for _, r := range rows {
			row := HashMAPRow{Bits: c.Bits(), Direction: r.Direction, K: r.K, MAP: r.MAP, Queries: r.Queries, Gallery: r.Gallery}
			if e, ok := rep.FindMAP(r.Direction, r.K); ok {
				row.Exact = e.MAP
			}
			rep.Hash.MAP = append(rep.Hash.MAP, row)
		}
	}
	// By direction (TqI first, as the table reads), then bits, then K.
	order := map[string]int{TqI: 0, IqT: 1}
	slices.SortStableFunc(rep.Hash.MAP, func(a, b HashMAPRow) int {
		if d := order[a.Direction] - order[b.Direction]; d != 0 {
			return d
		}
		return a.Bits - b.Bits
	})
	return nil
}
