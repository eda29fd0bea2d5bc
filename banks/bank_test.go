package banks

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func intp(v int) *int { return &v }

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"a", "csam-hashes", "team_1", "0day", strings.Repeat("x", 64)} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "Upper", "has space", "dot.ted", "star*", "gt>", "-lead", "_lead", strings.Repeat("x", 65), "ü"} {
		if err := ValidateName(bad); !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateName(%q): %v, want ErrInvalidName", bad, err)
		}
	}
}

func TestBankValidate(t *testing.T) {
	good := Bank{Name: "b", Enabled: true}.WithDefaults()
	if good.Action != ActionReview || good.Thresholds.PDQThreshold() != DefaultPDQThreshold || good.PDQDihedral != DihedralFast {
		t.Fatalf("defaults: %+v", good)
	}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	zero := Bank{Name: "b", Thresholds: Thresholds{PDQ: intp(0)}}.WithDefaults()
	if zero.Thresholds.PDQThreshold() != 0 || zero.Validate() != nil {
		t.Fatalf("an explicit pdq threshold 0 is kept and valid: %+v", zero.Thresholds)
	}
	for _, tc := range []struct {
		name string
		b    Bank
		err  error
		sub  string
	}{
		{"name", Bank{Name: "Bad Name"}, ErrInvalidName, "Bad Name"},
		{"action", Bank{Name: "b", Action: "delete"}, ErrInvalidBank, "action"},
		{"dihedral", Bank{Name: "b", PDQDihedral: "sideways"}, ErrInvalidBank, `pdq_dihedral "sideways"`},
		{"pdq high", Bank{Name: "b", Thresholds: Thresholds{PDQ: intp(65)}}, ErrInvalidBank, "pdq threshold 65"},
		{"pdq negative", Bank{Name: "b", Thresholds: Thresholds{PDQ: intp(-1)}}, ErrInvalidBank, "pdq threshold -1"},
		{"embedding", Bank{Name: "b", Thresholds: Thresholds{Embedding: EmbeddingThresholds{TextImage: 1.5}}}, ErrInvalidBank, "text_image"},
		{"label", Bank{Name: "b", Labels: []string{"has space"}}, ErrInvalidBank, "label"},
	} {
		b := tc.b.WithDefaults()
		err := b.Validate()
		if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.sub) {
			t.Errorf("%s: %v, want %v containing %q", tc.name, err, tc.err, tc.sub)
		}
	}
}

func TestValidateWithCalibration(t *testing.T) {
	cal := &Calibration{ModelVersion: "m1", Quantile: NoiseQuantile, Floors: map[Pair]float32{PairImageImage: 0.8, PairTextImage: 0.27}}
	b := Bank{Name: "b", Thresholds: Thresholds{Embedding: EmbeddingThresholds{ImageImage: 0.85, TextImage: 0.3}}}.WithDefaults()
	if err := b.ValidateWith(cal); err != nil {
		t.Fatal(err)
	}
	b.Thresholds.Embedding.TextImage = 0.2
	if err := b.ValidateWith(cal); !errors.Is(err, ErrThresholdBelowNoise) || !strings.Contains(err.Error(), "text_image 0.2 is below 0.2700") {
		t.Fatalf("below the floor: %v", err)
	}
	b.Thresholds.Embedding = EmbeddingThresholds{TextText: 0.9}
	if err := b.ValidateWith(cal); !errors.Is(err, ErrThresholdBelowNoise) || !strings.Contains(err.Error(), "no floor for text_text") {
		t.Fatalf("uncalibrated pair: %v", err)
	}
	if err := b.ValidateWith(nil); !errors.Is(err, ErrThresholdBelowNoise) {
		t.Fatalf("no calibration: %v", err)
	}
	b.Thresholds.Embedding = EmbeddingThresholds{}
	if err := b.ValidateWith(nil); err != nil {
		t.Fatalf("no embedding thresholds need no calibration: %v", err)
	}
}

func TestUnrelatedQuantile(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// Random 64-d vectors: cosines of unrelated pairs ~ N(0, 1/64); the
	// 99.9th percentile is about 3.09/8 = 0.386.
	const n, dim = 400, 64
	a := make([][]float32, n)
	for i := range a {
		a[i] = make([]float32, dim)
		for j := range a[i] {
			a[i][j] = float32(rng.NormFloat64())
		}
	}
	q, pairs, err := UnrelatedQuantile(a, a, NoiseQuantile, true)
	if err != nil {
		t.Fatal(err)
	}
	if pairs != n*n-n || q < 0.33 || q > 0.44 {
		t.Fatalf("quantile %v over %d pairs; want about 0.386 over %d", q, pairs, n*n-n)
	}
	// Paired: related pairs (i, i) are left out; here they are identical
	// vectors (cosine 1) and would dominate the top if counted.
	if q2, _, _ := UnrelatedQuantile(a, a, 0.9999, true); q2 > 0.6 {
		t.Fatalf("paired pairs counted: %v", q2)
	}
	if q3, _, _ := UnrelatedQuantile(a, a, 0.9999, false); q3 < 0.999 {
		t.Fatalf("unpaired keeps the identical pairs: %v", q3)
	}
	if _, _, err := UnrelatedQuantile(a[:50], a[:50], NoiseQuantile, true); err == nil || !strings.Contains(err.Error(), "at least 10000") {
		t.Fatalf("too few pairs: %v", err)
	}
	bad := [][]float32{make([]float32, dim)}
	if _, _, err := UnrelatedQuantile(append(a[:200:200], bad...), a, NoiseQuantile, false); !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("zero vector: %v", err)
	}
	if _, _, err := UnrelatedQuantile(a, [][]float32{make([]float32, 3)}, NoiseQuantile, false); err == nil {
		t.Fatal("dimension mismatch accepted")
	}
}
