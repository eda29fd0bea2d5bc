package banks

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/xmodal/xmodal/internal/vecmath"
)

// NoiseQuantile is the quantile of unrelated pairs' similarity below which
// an embedding threshold is refused: at the 99.9th percentile, about one
// unrelated item in a thousand would still match.
const NoiseQuantile = 0.999

// Calibration holds a model's noise floors: per pair of modalities, the
// NoiseQuantile of the cosine similarity between unrelated items (see
// UnrelatedQuantile). Bank.ValidateWith refuses thresholds below them.
type Calibration struct {
	ModelVersion string           `json:"model_version"`
	Quantile     float64          `json:"quantile"`
	Floors       map[Pair]float32 `json:"floors"`
	// Pairs is how many unrelated pairs each floor was measured on.
	Pairs map[Pair]int `json:"pairs"`
}

// Sample sizes of UnrelatedQuantile.
const (
	// MinCalibrationPairs is the fewest unrelated pairs a floor is
	// measured on: the 99.9th percentile of fewer is mostly noise.
	MinCalibrationPairs = 10_000
	// MaxCalibrationPairs bounds the pairs compared (chosen with a fixed
	// stride, so the result is deterministic).
	MaxCalibrationPairs = 4_000_000
)

// UnrelatedQuantile returns the q-quantile (0 < q < 1) of the cosine
// similarity between a[i] and b[j] over unrelated pairs, and how many
// pairs it used. When paired is true, a[i] and b[i] show the same item
// (an image and its caption, or a and b are the same set) and the pairs
// i == j are left out; otherwise every pair is unrelated. Vectors are
// L2-normalised first; all must have one dimension.
func UnrelatedQuantile(a, b [][]float32, q float64, paired bool) (float32, int, error) {
	if !(q > 0 && q < 1) {
		return 0, 0, fmt.Errorf("quantile %v is outside (0, 1)", q)
	}
	if len(a) == 0 || len(b) == 0 {
		return 0, 0, errors.New("calibration: no vectors")
	}
	dim := len(a[0])
	na, err := normalizedAll(a, dim)
	if err != nil {
		return 0, 0, err
	}
	nb, err := normalizedAll(b, dim)
	if err != nil {
		return 0, 0, err
	}
	total := len(na) * len(nb)
	if paired {
		total -= min(len(na), len(nb))
	}
	if total < MinCalibrationPairs {
		return 0, total, fmt.Errorf("calibration: %d unrelated pairs, at least %d are needed for a %.1fth percentile", total, MinCalibrationPairs, 100*q)
	}
	stride := max(1, (total+MaxCalibrationPairs-1)/MaxCalibrationPairs)
	sims := make([]float32, 0, min(total, MaxCalibrationPairs)+1)
	k := 0
	for i, x := range na {
		for j, y := range nb {
			if paired && i == j {
				continue
			}
			if k%stride == 0 {
				sims = append(sims, vecmath.Dot(x, y))
			}
			k++
		}
	}
	slices.Sort(sims)
	idx := min(len(sims)-1, int(math.Ceil(q*float64(len(sims))))-1)
	return sims[max(idx, 0)], len(sims), nil
}

func normalizedAll(vs [][]float32, dim int) ([][]float32, error) {
	out := make([][]float32, len(vs))
	for i, v := range vs {
		if len(v) != dim {
			return nil, fmt.Errorf("calibration: vector %d has %d dimensions, want %d", i, len(v), dim)
		}
		n, err := normalized(v)
		if err != nil {
			return nil, fmt.Errorf("calibration: vector %d: %w", i, err)
		}
		out[i] = n
	}
	return out, nil
}

// normalized returns v / |v|; an error for a zero or non-finite vector.
func normalized(v []float32) ([]float32, error) {
	var ss float64
	for _, x := range v {
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, fmt.Errorf("%w: a vector with a non-finite value", ErrInvalidEntry)
		}
		ss += float64(x) * float64(x)
	}
	if ss == 0 {
		return nil, fmt.Errorf("%w: a zero vector", ErrInvalidEntry)
	}
	inv := 1 / math.Sqrt(ss)
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(float64(x) * inv)
	}
	return out, nil
}
