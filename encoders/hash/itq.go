package hash

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"

	"gonum.org/v1/gonum/mat"

	"github.com/xmodal/xmodal/domain"
)

// Samples are the embeddings an ITQ coder is fitted on. Image and Text are
// required (both modalities: the codes must work across them); Fused, when
// given, only sets the fused records' mean.
type Samples struct {
	Image, Text, Fused [][]float32
}

// FitOptions configure Fit.
type FitOptions struct {
	// Model is the model version (name@version) the embeddings come from.
	Model string
	// Bits is the code length (one of SupportedBits, at most the dimension).
	Bits int
	// Iterations of the rotation update; 0 means 50 (the ITQ paper's value).
	Iterations int
	// Seed draws the initial rotation; 0 means 1.
	Seed uint64
	// MaxSamples caps the samples used per modality (evenly strided); 0
	// means 20,000.
	MaxSamples int
	// Data describes the samples, for the parameter file.
	Data string
}

// Fit learns an ITQ coder: each modality centred on its own mean, PCA of the
// centred image and text samples together down to Bits dimensions, then
// Iterations rounds of B = sign(VR) and R = the orthogonal Procrustes
// solution of min ||B - VR|| (from the SVD of BᵀV). Deterministic for given
// samples and options. ctx is checked between iterations.
func Fit(ctx context.Context, s Samples, opt FitOptions) (*Coder, error) {
	if opt.Iterations <= 0 {
		opt.Iterations = 50
	}
	if opt.Seed == 0 {
		opt.Seed = 1
	}
	if opt.MaxSamples <= 0 {
		opt.MaxSamples = 20000
	}
	if len(s.Image) == 0 || len(s.Text) == 0 {
		return nil, fmt.Errorf("hash fit: need embeddings of both modalities (got %d images, %d texts)", len(s.Image), len(s.Text))
	}
	dim := len(s.Image[0])
	if err := CheckBits(opt.Bits, dim); err != nil {
		return nil, err
	}
	for name, set := range map[string][][]float32{"image": s.Image, "text": s.Text, "fused": s.Fused} {
		for i, v := range set {
			if len(v) != dim {
				return nil, fmt.Errorf("hash fit: %s sample %d has dimension %d, want %d", name, i, len(v), dim)
			}
		}
	}
	img, txt := stride(s.Image, opt.MaxSamples), stride(s.Text, opt.MaxSamples)
	n := len(img) + len(txt)
	if n < 2*opt.Bits {
		return nil, fmt.Errorf("hash fit: %d samples are too few for %d bits (want at least %d)", n, opt.Bits, 2*opt.Bits)
	}
	means := map[string][]float32{"image": mean(s.Image, dim), "text": mean(s.Text, dim)}
	if len(s.Fused) > 0 {
		means["fused"] = mean(s.Fused, dim)
	}

	// X: the centred samples of both modalities, n x dim.
	x := mat.NewDense(n, dim, nil)
	row := 0
	for _, set := range []struct {
		vs [][]float32
		mu []float32
	}{{img, means["image"]}, {txt, means["text"]}} {
		for _, v := range set.vs {
			r := x.RawRowView(row)
			for j := range r {
				r[j] = float64(v[j] - set.mu[j])
			}
			row++
		}
	}

	// PCA: the top Bits eigenvectors of XᵀX.
	var cov mat.SymDense
	cov.SymOuterK(1/float64(n), x.T())
	var eig mat.EigenSym
	if !eig.Factorize(&cov, true) {
		return nil, errors.New("hash fit: eigendecomposition of the covariance did not converge")
	}
	var vecs mat.Dense
	eig.VectorsTo(&vecs) // columns in ascending eigenvalue order
	c := opt.Bits
	pca := mat.NewDense(dim, c, nil)
	for j := 0; j < c; j++ {
		col := dim - 1 - j
		for i := 0; i < dim; i++ {
			pca.Set(i, j, vecs.At(i, col))
		}
	}
	var v mat.Dense
	v.Mul(x, pca) // n x c

	// Initial rotation: the orthogonal factor of a Gaussian matrix.
	rng := rand.New(rand.NewPCG(opt.Seed, 0x17c))
	g := mat.NewDense(c, c, nil)
	for i := 0; i < c; i++ {
		for j := 0; j < c; j++ {
			g.Set(i, j, rng.NormFloat64())
		}
	}
	r, err := procrustes(g)
	if err != nil {
		return nil, err
	}
	b := mat.NewDense(n, c, nil)
	var z, m mat.Dense
	for it := 0; it < opt.Iterations; it++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		z.Mul(&v, r)
		signInto(b, &z)
		m.Mul(b.T(), &v) // c x c: BᵀV = U S Wᵀ, R = W Uᵀ
		if r, err = procrustesT(&m); err != nil {
			return nil, err
		}
	}
	z.Mul(&v, r)
	signInto(b, &z)
	var diff mat.Dense
	diff.Sub(b, &z)
	loss := mat.Norm(&diff, 2) // Frobenius for a matrix
	loss = loss * loss / float64(n)

	var w mat.Dense
	w.Mul(pca, r) // dim x c
	proj := make([][]float32, dim)
	for i := range proj {
		proj[i] = make([]float32, c)
		for j := range proj[i] {
			proj[i][j] = float32(w.At(i, j))
		}
	}
	p := Params{Format: Format, Method: MethodITQ, Model: opt.Model, Dim: dim, Bits: c, Seed: opt.Seed,
		Iterations: opt.Iterations, Loss: loss, Data: opt.Data,
		Samples: map[string]int{"image": len(img), "text": len(txt), "fused": len(s.Fused)},
		Means:   means, Projection: proj}
	if len(s.Fused) == 0 {
		delete(p.Samples, "fused")
	}
	return New(p)
}

// procrustes returns the orthogonal matrix nearest to a (U Vᵀ from its SVD).
func procrustes(a mat.Matrix) (*mat.Dense, error) {
	var svd mat.SVD
	if !svd.Factorize(a, mat.SVDFull) {
		return nil, errors.New("hash fit: SVD did not converge")
	}
	var u, vt mat.Dense
	svd.UTo(&u)
	svd.VTo(&vt)
	var out mat.Dense
	out.Mul(&u, vt.T())
	return &out, nil
}

// procrustesT returns W Uᵀ for m = U S Wᵀ: the rotation R maximising
// tr(R m) (the ITQ update, m = BᵀV).
func procrustesT(m mat.Matrix) (*mat.Dense, error) {
	var svd mat.SVD
	if !svd.Factorize(m, mat.SVDFull) {
		return nil, errors.New("hash fit: SVD did not converge")
	}
	var u, w mat.Dense
	svd.UTo(&u)
	svd.VTo(&w)
	var out mat.Dense
	out.Mul(&w, u.T())
	return &out, nil
}

// signInto sets b to +1 where z > 0 and -1 elsewhere (the bit rule of Code).
func signInto(b *mat.Dense, z *mat.Dense) {
	rows, _ := z.Dims()
	for i := 0; i < rows; i++ {
		zr, br := z.RawRowView(i), b.RawRowView(i)
		for j, x := range zr {
			if x > 0 {
				br[j] = 1
			} else {
				br[j] = -1
			}
		}
	}
}

// stride returns at most max of vs, evenly spaced.
func stride(vs [][]float32, max int) [][]float32 {
	if len(vs) <= max {
		return vs
	}
	out := make([][]float32, max)
	for i := range out {
		out[i] = vs[i*len(vs)/max]
	}
	return out
}

func mean(vs [][]float32, dim int) []float32 {
	acc := make([]float64, dim)
	for _, v := range vs {
		for j, x := range v {
			acc[j] += float64(x)
		}
	}
	out := make([]float32, dim)
	for j := range out {
		out[j] = float32(acc[j] / float64(len(vs)))
	}
	return out
}

// SamplesFromRecords groups record vectors by modality (a convenience for
// fitting on an index's contents).
func SamplesFromRecords(recs []domain.Record) Samples {
	var s Samples
	for i := range recs {
		switch recs[i].Modality {
		case domain.ModalityImage:
			s.Image = append(s.Image, recs[i].Vector)
		case domain.ModalityText:
			s.Text = append(s.Text, recs[i].Vector)
		case domain.ModalityFused:
			s.Fused = append(s.Fused, recs[i].Vector)
		}
	}
	return s
}
