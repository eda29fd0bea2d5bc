package query

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/xmodal/xmodal/domain"
)

func TestCacheEntryRoundTrip(t *testing.T) {
	res := &SearchResponse{Hits: []domain.Hit{{PK: "a#text", PostID: "a"}, {PK: "bé#image", PostID: "bé"}}, Plan: "exact", Model: "m@1", TookMS: 9, Cached: false}
	b, err := encodeCached(res)
	if err != nil {
		t.Fatal(err)
	}
	ids, body, err := decodeCached(b)
	if err != nil || !slices.Equal(ids, []string{"a", "bé"}) {
		t.Fatalf("ids %v, %v", ids, err)
	}
	var got SearchResponse
	if err := json.Unmarshal(cachedReply(body, 0.25), &got); err != nil {
		t.Fatal(err)
	}
	if !got.Cached || got.TookMS != 0.25 || len(got.Hits) != 2 || got.Plan != "exact" || got.Model != "m@1" {
		t.Fatalf("reply %+v", got)
	}
}

func FuzzDecodeCached(f *testing.F) {
	good, _ := encodeCached(&SearchResponse{Hits: []domain.Hit{{PostID: "x"}}})
	for _, s := range [][]byte{good, nil, {0}, {5, 1, 'a'}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, {1, 3, 'a', 'b'}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, body, err := decodeCached(b)
		if err != nil {
			return
		}
		if len(body) < 2 || body[0] != '{' || len(ids) > len(b) {
			t.Fatalf("accepted a malformed entry: ids %d body %q", len(ids), body)
		}
	})
}
