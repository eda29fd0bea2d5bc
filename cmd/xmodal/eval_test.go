package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/xmodal/xmodal/eval"
)

// evalEmbeddings writes a small embeddings directory (dimension 16): query,
// db and train sets of image/caption pairs around 4 labelled centres.
func evalEmbeddings(t *testing.T) string {
	t.Helper()
	const dim = 16
	r := rand.New(rand.NewPCG(5, 6))
	centres := make([][]float64, 4)
	for i := range centres {
		centres[i] = make([]float64, dim)
		for j := range centres[i] {
			centres[i][j] = r.NormFloat64()
		}
	}
	set := func(name string, n int) *eval.EmbeddedSet {
		var imgs, txts [][]float32
		es := &eval.EmbeddedSet{Name: name, HasLabels: true}
		for i := range n {
			k := i % len(centres)
			for _, dst := range []*[][]float32{&imgs, &txts} {
				v := make([]float32, dim)
				var s float64
				for j := range v {
					x := centres[k][j] + 0.5*r.NormFloat64()
					v[j] = float32(x)
					s += x * x
				}
				for j := range v {
					v[j] /= float32(math.Sqrt(s))
				}
				*dst = append(*dst, v)
			}
			l := []string{fmt.Sprint("c", k)}
			es.ImageMeta = append(es.ImageMeta, eval.Meta{ID: fmt.Sprintf("%s-i%d", name, i), Labels: l, Pair: -1})
			es.TextMeta = append(es.TextMeta, eval.Meta{ID: fmt.Sprintf("%s-t%d", name, i), Labels: l, Pair: i})
		}
		var err error
		if es.Images, err = eval.NewMatrix(imgs); err != nil {
			t.Fatal(err)
		}
		if es.Texts, err = eval.NewMatrix(txts); err != nil {
			t.Fatal(err)
		}
		return es
	}
	dir := t.TempDir()
	if err := eval.WriteEmbeddingSets(dir, set("q", 20), set("db", 120), set("train", 200)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func runEval(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out, progress bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&progress) // progress and warnings; stdout is the report
	root.SetArgs(append([]string{"eval"}, args...))
	err := root.Execute()
	return out.String(), err
}

func TestEvalHashFlagsRefuseBadValues(t *testing.T) {
	dir := evalEmbeddings(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--plan", "hash", "--bits", "48"}, "--bits: hash: 48 bits is not supported (want one of 16, 32, 64, 128, 256)"},
		{[]string{"--plan", "hash", "--bits", "16,512"}, "--bits: hash: 512 bits is not supported"},
		{[]string{"--plan", "hash", "--bits", "64"}, "64 bits exceed the embedding dimension 16"},
		{[]string{"--bits", "64"}, "--bits needs --plan hash or hybrid"},
		{[]string{"--coder", "simhash"}, "--coder needs --plan hash or hybrid"},
		{[]string{"--plan", "hash", "--candidates", "1%"}, "--candidates needs --plan hybrid"},
		{[]string{"--plan", "hybrid", "--candidates", "0"}, `--candidates "0": the count must be positive`},
		{[]string{"--plan", "hybrid", "--candidates", "1%,120%"}, `--candidates "120%": a percentage of the gallery must be a number in (0, 100]`},
		{[]string{"--plan", "hybrid", "--candidates", "ten"}, `--candidates "ten": want a count`},
		{[]string{"--plan", "hash", "--coder", "lsh"}, `--coder "lsh": want itq, simhash or model`},
		{[]string{"--plan", "hash", "--coder", "model", "--model", "../../testdata/models/demo"}, "is for dimension 256, the embeddings have 16"},
		{[]string{"--plan", "hash", "--coder", "model", "--model", "../../testdata/models/demo", "--bits", "32"}, "--bits 32: the model's coder itq-64-9f971b11166e has 64 bits"},
		{[]string{"--plan", "hashes"}, `unknown plan "hashes"`},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			_, err := runEval(t, append([]string{"--embeddings", dir}, c.args...)...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v; want %q", err, c.want)
			}
		})
	}
}

func TestEvalHashAndHybridPlans(t *testing.T) {
	dir := evalEmbeddings(t)
	out, err := runEval(t, "--embeddings", dir, "--plan", "hash", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rep eval.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	// Dimension 16: every supported length up to it is 16 bits only.
	if rep.Hash == nil || len(rep.Hash.Coders) != 1 || rep.Hash.Coders[0].Bits != 16 || !strings.Contains(rep.Hash.FitSet, "(train)") {
		t.Fatalf("hash report %+v", rep.Hash)
	}
	for _, dir := range []string{eval.TqI, eval.IqT} {
		ex, ok := rep.FindMAP(dir, 0)
		found := false
		for _, r := range rep.Hash.MAP {
			if r.Direction == dir && r.K == 0 {
				found = true
				if !ok || r.Exact != ex.MAP || r.MAP < ex.Random+0.2 || r.Gallery != 120 || r.Queries != map[string]int{eval.TqI: 20, eval.IqT: 20}[dir] {
					t.Errorf("%s: %+v (exact %+v)", dir, r, ex)
				}
			}
		}
		if !found {
			t.Errorf("no %s MAP@ALL row", dir)
		}
	}

	out, err = runEval(t, "--embeddings", dir, "--plan", "hybrid", "--bits", "16", "--coder", "simhash", "--candidates", "10,100%")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"Hybrid vs exact (embedded index)", "simhash-16-", "100%", "1.000"} {
		if !strings.Contains(out, w) {
			t.Errorf("hybrid table lacks %q:\n%s", w, out)
		}
	}
}
