package milvus

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"testing"

	"github.com/milvus-io/milvus/client/v2/milvusclient"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/sink/conformance"
)

// TestIndexTypes: every configurable index answers the plans; FLAT and IVF_FLAT
// (searched with nprobe = nlist) are exact, BIN_IVF_FLAT ranks codes exactly, and
// HNSW's exact plan (ef = ExactEF) finds the exact top 10 on a small collection.
func TestIndexTypes(t *testing.T) {
	chs := conformance.Dataset(120, 31)
	var recs []domain.Record
	for _, ch := range chs {
		recs = append(recs, ch.Records...)
	}
	for _, tc := range []struct{ float, code string }{{IndexFlat, IndexBinIVFFlat}, {IndexHNSW, IndexBinFlat}} {
		t.Run(tc.float+"_"+tc.code, func(t *testing.T) {
			opt := testOptions(t, conformance.Dim)
			opt.FloatIndex, opt.CodeIndex = tc.float, tc.code
			ix := openTest(t, opt)
			if got := ix.indexOf(fVector).typ; got != tc.float {
				t.Fatalf("float index %s, want %s", got, tc.float)
			}
			mustApply(t, ix, chs...)
			r := rand.New(rand.NewPCG(31, 32))
			for qi := range 5 {
				v := conformance.Unit(r)
				for _, plan := range []domain.Plan{domain.PlanExact, domain.PlanANN, domain.PlanHash} {
					q := domain.VectorQuery{Vector: v, Code: conformance.Code(v), K: 10, Plan: plan}
					hits, err := ix.Search(context.Background(), q)
					if err != nil {
						t.Fatal(err)
					}
					var want []string
					if plan == domain.PlanHash {
						for _, h := range conformance.HashRef(recs, q, 10) {
							want = append(want, h.PK())
						}
					} else {
						for _, h := range conformance.ExactRef(recs, q) {
							want = append(want, h.PK())
						}
					}
					if got := fmt.Sprint(pksOf(hits)); got != fmt.Sprint(want) && plan != domain.PlanANN {
						t.Errorf("query %d plan %s: %s, want %v", qi, plan, got, want)
					}
				}
			}
		})
	}
}

func pksOf(h []domain.Hit) []string {
	out := make([]string, len(h))
	for i := range h {
		out[i] = h[i].PK
	}
	return out
}

// TestServerFeatures: what docs/milvus.md says the test server offers and the
// code relies on: a version (GetVersion), the layout auto picks for it, and
// the alias Open creates (DescribeAlias and ListAliases name it).
func TestServerFeatures(t *testing.T) {
	opt := testOptions(t, conformance.Dim)
	ix := openTest(t, opt)
	ctx := context.Background()
	t.Logf("server %s, layout %s", ix.ServerVersion(), ix.Layout())
	if !regexp.MustCompile(`^v?\d+\.\d+`).MatchString(ix.ServerVersion()) {
		t.Errorf("server version %q, want major.minor (GetVersion)", ix.ServerVersion())
	}
	if opt.Layout == "" || opt.Layout == LayoutAuto {
		want := map[bool]string{true: LayoutSingle, false: LayoutSplit}[serverSupportsMultiVector(ix.ServerVersion())]
		if ix.Layout() != want {
			t.Errorf("layout %s on server %s, want %s", ix.Layout(), ix.ServerVersion(), want)
		}
	}
	a, err := ix.c.DescribeAlias(ctx, milvusclient.NewDescribeAliasOption(opt.Collection))
	if err != nil {
		t.Fatalf("DescribeAlias(%s): %v", opt.Collection, err)
	}
	if a.Alias != opt.Collection || a.CollectionName != ix.Collection() {
		t.Errorf("DescribeAlias: %+v, want alias %s of collection %s", a, opt.Collection, ix.Collection())
	}
	names, err := ix.c.ListAliases(ctx, milvusclient.NewListAliasesOption(ix.Collection()))
	if err != nil {
		t.Fatalf("ListAliases(%s): %v", ix.Collection(), err)
	}
	if !slices.Contains(names, opt.Collection) {
		t.Errorf("ListAliases(%s) = %v, want it to hold %s", ix.Collection(), names, opt.Collection)
	}
}
