package query

import (
	"testing"

	"github.com/xmodal/xmodal/domain"
)

func TestMergeByRank(t *testing.T) {
	h := func(pk string, s float32) domain.Hit { return domain.Hit{PK: pk, Score: s} }
	tests := []struct {
		name  string
		lists [][]domain.Hit
		k     int
		want  []string
	}{
		{"rank before score", [][]domain.Hit{{h("t1", 0.9), h("t2", 0.8)}, {h("i1", 0.3), h("i2", 0.2)}}, 4, []string{"t1", "i1", "t2", "i2"}},
		{"ties by pk", [][]domain.Hit{{h("b", 0.5)}, {h("a", 0.5)}}, 2, []string{"a", "b"}},
		{"k cuts", [][]domain.Hit{{h("t1", 0.9), h("t2", 0.8)}, {h("i1", 0.3)}}, 2, []string{"t1", "i1"}},
		{"empty lists", [][]domain.Hit{{}, {h("i1", 0.3)}, nil}, 5, []string{"i1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := MergeByRank(tc.lists, tc.k)
			if len(got) != len(tc.want) {
				t.Fatalf("got %d hits, want %d", len(got), len(tc.want))
			}
			for i := range got {
				if got[i].PK != tc.want[i] {
					t.Fatalf("rank %d: %s, want %s", i, got[i].PK, tc.want[i])
				}
			}
		})
	}
}

func FuzzParseSearch(f *testing.F) {
	f.Add([]byte(`{"text":"hello","k":5,"target":"image"}`))
	f.Add([]byte(`{"vector":[0.1,0.2],"filter":{"authors":["a"],"since":"2026-01-01T00:00:00Z"}}`))
	f.Add([]byte(`{"image":"AAAA","plan":"hybrid"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseSearch(b)
		if err != nil {
			if e := AsError(err); e.Code != CodeBadRequest && e.Code != CodeTooLarge {
				t.Fatalf("unexpected code %d: %v", e.Code, err)
			}
			return
		}
		if r.K < 1 || r.K > MaxK || r.Target == "" {
			t.Fatalf("accepted bad request %+v", r)
		}
	})
}
