package query

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"image"
	"math"
	"testing"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/internal/denylist"
	"github.com/xmodal/xmodal/internal/testutil"
)

// sameDecode checks that Vector decodes b as encoding/json decodes it into
// a []float32: both fail, or both give the same floats, bit for bit.
func sameDecode(t *testing.T, b []byte) {
	t.Helper()
	var got struct {
		V Vector `json:"v"`
	}
	var want struct {
		V []float32 `json:"v"`
	}
	doc := append(append([]byte(`{"v":`), b...), '}')
	gerr, werr := json.Unmarshal(doc, &got), json.Unmarshal(doc, &want)
	if (gerr == nil) != (werr == nil) {
		t.Fatalf("%q: Vector error %v, []float32 error %v", b, gerr, werr)
	}
	if werr != nil {
		return
	}
	if (got.V == nil) != (want.V == nil) || len(got.V) != len(want.V) {
		t.Fatalf("%q: Vector %#v, []float32 %#v", b, got.V, want.V)
	}
	for i := range want.V {
		if math.Float32bits(got.V[i]) != math.Float32bits(want.V[i]) {
			t.Fatalf("%q: element %d is %v, want %v", b, i, got.V[i], want.V[i])
		}
	}
}

func TestVectorDecodesAsFloat32Slice(t *testing.T) {
	for _, s := range []string{
		`[]`, `[ ]`, `null`, `[0.1,0.2,-3e2]`, ` [ 1 , 2.5 ,	-0 ]`, "[\n1,\r\n2\n]", `[1e-50]`, `[3.4028235e38]`,
		`[0.30000000000000004]`, `[1.00000005960464477539]`, `[1,null,2]`, `[null]`, `[-1E+2,2e-3]`,
		// errors
		`[1e39]`, `[-1e39]`, `["1"]`, `[true]`, `[[1]]`, `[{}]`, `{}`, `"x"`, `1`, `true`, `[1,]`, `[,1]`, `[1 2]`, `[`, `[01]`,
		`[.5]`, `[1.]`, `[-]`, `[NaN]`, `[Infinity]`, `[0x10]`, `[1_000]`,
	} {
		sameDecode(t, []byte(s))
	}
	// Direct calls (not through encoding/json, which checks the syntax
	// first) refuse what is not an array of numbers.
	for _, s := range []string{``, `[`, `[1`, `[1,`, `[1 2]`, `[1]x`, `[1-2]`, `[nul]`, `x`} {
		var v Vector
		if err := v.UnmarshalJSON([]byte(s)); err == nil {
			t.Errorf("UnmarshalJSON(%q) accepted %v", s, v)
		}
	}
}

func FuzzVector(f *testing.F) {
	for _, s := range []string{`[]`, `[0.1,0.2]`, `[1e39]`, `[1,null]`, `["a"]`, `null`, `[-0,1E5]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sameDecode(t, b)
		var v Vector
		_ = v.UnmarshalJSON(b) // must not panic on anything
	})
}

type stubEncoder struct{}

func (stubEncoder) EmbedTexts(context.Context, []string) ([][]float32, error) { return nil, nil }
func (stubEncoder) EmbedImages(context.Context, []image.Image) ([][]float32, error) {
	return nil, nil
}
func (stubEncoder) Version() string { return "stub@1" }
func (stubEncoder) Dim() int        { return 4 }

type stubIndex struct{}

func (stubIndex) Search(context.Context, domain.VectorQuery) ([]domain.Hit, error) { return nil, nil }
func (stubIndex) Get(context.Context, []string) ([]domain.Record, error)           { return nil, nil }
func (stubIndex) Count(context.Context) (map[domain.Modality]int, error)           { return nil, nil }

// TestCacheKey: requests that mean the same get one key, others differ.
func TestCacheKey(t *testing.T) {
	_, js := testutil.ConnectJS(t, testutil.StartNATS(t, "").ClientURL())
	deny, err := denylist.Open(context.Background(), js, denylist.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(deny.Close)
	s, err := New(Config{}, Deps{Index: stubIndex{}, Encoder: stubEncoder{}, Decode: func(context.Context, []byte) (DecodedImage, error) { return DecodedImage{}, nil }, Deny: deny})
	if err != nil {
		t.Fatal(err)
	}
	parse := func(body string) *SearchRequest {
		t.Helper()
		r, err := ParseSearch([]byte(body))
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		return r
	}
	same := [][]string{
		{`{"vector":[1,2,3,4]}`, `{"vector":[0.5,1,1.5,2]}`, `{"vector":[1,2,3,4],"plan":"exact","k":10,"target":"any"}`},
		{`{"text":"two  red stars"}`, `{"text":" two red\tstars "}`},
		{`{"text":"x","filter":{"authors":["b","a","a"]}}`, `{"text":"x","filter":{"authors":["a","b"]}}`},
		{`{"vector":[1,0,0,0],"plan":"hybrid","candidates":500}`, `{"vector":[2,0,0,0],"plan":"hybrid","candidates":500}`},
	}
	seen := map[string]string{}
	for _, group := range same {
		key := s.CacheKey(parse(group[0]))
		for _, body := range group[1:] {
			if k := s.CacheKey(parse(body)); k != key {
				t.Errorf("%s and %s: keys %s and %s, want one", group[0], body, key, k)
			}
		}
		if prev, ok := seen[key]; ok {
			t.Errorf("%s and %s share a key", prev, group[0])
		}
		seen[key] = group[0]
	}
	for _, body := range []string{
		`{"vector":[1,2,3,5]}`, `{"vector":[-1,2,3,4]}`, `{"vector":[1,2,3,4],"k":11}`, `{"vector":[1,2,3,4],"plan":"hybrid"}`,
		`{"vector":[1,0,0,0],"plan":"hybrid","candidates":501}`, `{"vector":[1,0,0,0],"plan":"hybrid"}`,
		`{"text":"two red star"}`, `{"vector":[1,2,3,4],"target":"image"}`,
	} {
		key := s.CacheKey(parse(body))
		if prev, ok := seen[key]; ok {
			t.Errorf("%s and %s share a key", prev, body)
		}
		seen[key] = body
	}

	// An image query's vector depends on how the image is decoded: a service
	// decoding in another mode must not share its cached replies.
	img := parse(`{"image":"` + base64.StdEncoding.EncodeToString([]byte("jpeg bytes")) + `"}`)
	keys := map[string]string{}
	for _, mode := range []string{"", "fast", "exact"} {
		d := s.d
		d.DecodeMode = mode
		other := &Service{d: d}
		k := other.CacheKey(img)
		if prev, ok := keys[k]; ok {
			t.Errorf("decode modes %q and %q share a cache key", prev, mode)
		}
		keys[k] = mode
		if again := other.CacheKey(img); again != k {
			t.Errorf("mode %q: key not stable", mode)
		}
	}
}

// A vector query without a direction (all zeros, or a norm that is not
// finite) is a bad request, not hits at score 0.
func TestVectorWithoutDirectionIs400(t *testing.T) {
	_, js := testutil.ConnectJS(t, testutil.StartNATS(t, "").ClientURL())
	deny, err := denylist.Open(context.Background(), js, denylist.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(deny.Close)
	s, err := New(Config{}, Deps{Index: stubIndex{}, Encoder: stubEncoder{}, Decode: func(context.Context, []byte) (DecodedImage, error) { return DecodedImage{}, nil }, Deny: deny})
	if err != nil {
		t.Fatal(err)
	}
	dim := stubEncoder{}.Dim()
	zero := make([]float32, dim)
	inf := make([]float32, dim)
	inf[0] = float32(math.Inf(1))
	for _, v := range [][]float32{zero, inf} {
		_, err := s.queryVector(context.Background(), &SearchRequest{Vector: v})
		if AsError(err).Code != CodeBadRequest {
			t.Errorf("vector %v...: %v, want 400", v[:2], err)
		}
	}
	// Components near float32's largest have a direction (the norm is
	// accumulated in float64).
	big := make([]float32, dim)
	for i := range big {
		big[i] = 3e38
	}
	if v, err := s.queryVector(context.Background(), &SearchRequest{Vector: big}); err != nil || math.Abs(float64(v[0])-0.5) > 1e-6 {
		t.Errorf("vector of 3e38s: %v, %v; want it normalised to 0.5s", v, err)
	}
}
