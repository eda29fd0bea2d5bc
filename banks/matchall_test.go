package banks

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/xmodal/xmodal/encoders/pdq"
)

// MatchAll answers each query exactly as Match does (every signal type,
// both embedding kernels' dimensions, bank restrictions, a disabled bank,
// a malformed query failing alone), and a missing bank fails the call.
func TestMatchAllAgreesWithMatch(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 3))
	s := NewState()
	vecs := map[string][][]float32{} // "text64", "image64", "text16": the entries' vectors
	var hashes []string
	for bi, name := range []string{"a", "b", "off"} {
		mustApply(t, s, createOp(name, func(b *Bank) {
			b.Enabled = name != "off"
			b.Thresholds.Embedding.TextImage, b.Thresholds.Embedding.ImageImage = 0.8, 0.8
			b.Thresholds.Embedding.TextText, b.Thresholds.Embedding.ImageText = 0.8, 0.8
		}))
		var es []Entry
		for _, kind := range []struct {
			modality string
			dim, n   int
		}{{"text", 64, 300}, {"image", 64, 60}, {"text", 16, 40}} {
			for i := range kind.n {
				v := unit(rng, kind.dim)
				key := fmt.Sprint(kind.modality, kind.dim)
				vecs[key] = append(vecs[key], v)
				val := fmt.Sprintf("%s %s %d", name, key, i)
				if kind.modality == "image" { // an exemplar's value is its image's SHA-256
					val = fmt.Sprintf("%x", sha256.Sum256([]byte(val)))
				}
				es = append(es, Entry{Type: SignalEmbedding, Modality: kind.modality, Value: val, Vector: v, ModelVersion: "m"})
			}
		}
		for i := range 20 {
			var raw pdq.Hash
			for j := range raw {
				raw[j] = byte(rng.Uint32())
			}
			h := raw.String()
			hashes = append(hashes, h)
			es = append(es, Entry{Type: SignalPDQ, Value: h})
			if i < 3 {
				es = append(es, Entry{Type: SignalText, Value: fmt.Sprintf("known text %d of %d", i, bi)},
					Entry{Type: SignalURL, Value: fmt.Sprintf("https://spam.example/%d/%d", bi, i)})
			}
		}
		mustApply(t, s, addOp(name, es...))
	}
	var qs []Query
	for i := range 60 {
		var q Query
		switch i % 6 {
		case 0, 1:
			src := vecs["text64"][rng.IntN(len(vecs["text64"]))]
			q = Query{Vector: near(rng, src, 0.9), Modality: []string{"image", "text"}[i%2], ModelVersion: "m"}
		case 2:
			src := vecs["image64"][rng.IntN(len(vecs["image64"]))]
			q = Query{Vector: near(rng, src, 0.85), Modality: "image", ModelVersion: "m"}
		case 3:
			src := vecs["text16"][rng.IntN(len(vecs["text16"]))]
			q = Query{Vector: near(rng, src, 0.95), Modality: "text", ModelVersion: "m", Text: "Known text 1 of 0, see spam.example/1/2"}
		case 4:
			h := hexHash(t, hashes[rng.IntN(len(hashes))])
			q = Query{PDQ: []pdq.Hash{flipBits(h, 5), flipBits(h, 40)}[:1+i%2]}
		case 5:
			q = Query{Vector: unit(rng, 64), Modality: "image", ModelVersion: "other"}
		}
		if i%5 == 0 {
			q.Banks = []string{"b"}
		}
		if i%17 == 0 {
			q.ModelVersion = "" // malformed: a vector without its model
		}
		qs = append(qs, q)
	}
	// The first query looks for bank a's last written concept: the last
	// block of rows, for the first query of the scan.
	qs[0] = Query{Vector: near(rng, vecs["text64"][299], 0.95), Modality: "text", ModelVersion: "m"}
	res, err := s.MatchAll(context.Background(), qs)
	if err != nil {
		t.Fatal(err)
	}
	matched, failed := 0, 0
	for i, q := range qs {
		want, werr := s.Match(context.Background(), q)
		if (werr == nil) != (res[i].Err == nil) || (werr != nil && !errors.Is(res[i].Err, ErrInvalidQuery)) {
			t.Fatalf("query %d: MatchAll error %v, Match error %v", i, res[i].Err, werr)
		}
		if werr != nil {
			failed++
			continue
		}
		if len(want) == 0 {
			want = nil
		}
		if !reflect.DeepEqual(res[i].Matches, want) {
			t.Fatalf("query %d: MatchAll\n%+v\nMatch\n%+v", i, res[i].Matches, want)
		}
		if len(want) > 0 {
			matched++
		}
	}
	if matched < 30 || failed == 0 {
		t.Fatalf("%d of %d queries matched, %d failed: the test shows too little", matched, len(qs), failed)
	}
	t.Logf("%d of %d queries matched, %d malformed", matched, len(qs), failed)
	if _, err := s.MatchAll(context.Background(), []Query{{Text: "x", Banks: []string{"nope"}}}); !errors.Is(err, ErrBankNotFound) {
		t.Fatalf("a missing bank: %v, want ErrBankNotFound", err)
	}
}
