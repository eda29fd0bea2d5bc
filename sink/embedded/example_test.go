package embedded_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/hash"
	"github.com/xmodal/xmodal/sink/embedded"
)

// Ranking a database by binary codes (the hash plan) and re-ranking the
// Hamming top C by cosine (the hybrid plan), as the query service and
// `xmodal eval` do: fit a coder on image and text embeddings, give it to
// the index (which codes the records it is given), code each query as a
// vector of the modality it came from.
func Example_hashAndHybridPlans() {
	ctx := context.Background()
	const dim, n = 32, 400
	imgs, txts := examplePairs(n, dim)

	// ITQ, 16 bits, fitted on both modalities (in practice: a training
	// split, or `xmodal hash fit` and hash.Load / hash.ForModel).
	coder, err := hash.Fit(ctx, hash.Samples{Image: imgs, Text: txts}, hash.FitOptions{Model: "example@1", Bits: 16})
	if err != nil {
		panic(err)
	}
	dir, _ := os.MkdirTemp("", "xmodal-example")
	defer os.RemoveAll(dir)
	ix, err := embedded.Open(ctx, embedded.Options{Path: filepath.Join(dir, "ix.db"), Dim: dim, Coder: coder})
	if err != nil {
		panic(err)
	}
	defer ix.Close()

	// The database: n image records (no codes given: the index computes them).
	var chs []domain.Change
	for i, v := range imgs {
		id := fmt.Sprintf("img-%03d", i)
		chs = append(chs, domain.Change{PostID: id, Records: []domain.Record{{
			PK: domain.PrimaryKey(id, domain.ModalityImage), PostID: id, Modality: domain.ModalityImage, Vector: v}}})
	}
	if _, err := ix.Apply(ctx, chs); err != nil {
		panic(err)
	}

	// Text → image: the caption of image 7.
	q := txts[7]
	code := coder.Code(q, domain.ModalityText)
	// Full Hamming ranking (K = the database: what MAP@ALL needs).
	ranked, _ := ix.Search(ctx, domain.VectorQuery{Vector: q, Code: code, Modality: domain.ModalityImage, K: n, Plan: domain.PlanHash})
	// Hybrid: the Hamming top 5% re-ranked by cosine.
	top, _ := ix.Search(ctx, domain.VectorQuery{Vector: q, Code: code, Modality: domain.ModalityImage, K: 3,
		Plan: domain.PlanHybrid, Candidates: n / 20})
	exact, _ := ix.Search(ctx, domain.VectorQuery{Vector: q, Modality: domain.ModalityImage, K: 3})

	fmt.Println("hash ranking:", len(ranked), "records, nearest at distance", *ranked[0].Distance)
	fmt.Println("hybrid top 3 equals exact top 3:", top[0].PK == exact[0].PK && top[1].PK == exact[1].PK && top[2].PK == exact[2].PK)
	// Output:
	// hash ranking: 400 records, nearest at distance 0
	// hybrid top 3 equals exact top 3: true
}

// examplePairs makes n image/text embedding pairs around 20 centres, each
// modality with its own offset.
func examplePairs(n, dim int) (imgs, txts [][]float32) {
	r := rand.New(rand.NewPCG(1, 2))
	vec := func(scale float64) []float32 {
		v := make([]float32, dim)
		for i := range v {
			v[i] = float32(r.NormFloat64() * scale)
		}
		return v
	}
	unit := func(v []float32) []float32 {
		var s float64
		for _, x := range v {
			s += float64(x * x)
		}
		for i := range v {
			v[i] /= float32(math.Sqrt(s))
		}
		return v
	}
	centres := make([][]float32, 20)
	for i := range centres {
		centres[i] = vec(1)
	}
	gapI, gapT := vec(1), vec(1)
	for i := 0; i < n; i++ {
		c := centres[i%20]
		a, b := vec(0.15), vec(0.15)
		for j := range a {
			a[j] += c[j] + gapI[j]
			b[j] += c[j] + gapT[j]
		}
		imgs = append(imgs, unit(a))
		txts = append(txts, unit(b))
	}
	return
}
