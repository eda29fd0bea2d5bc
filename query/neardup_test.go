package query_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders"
	"github.com/xmodal/xmodal/encoders/hash"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
	"github.com/xmodal/xmodal/sink/embedded"
)

type hashStack struct {
	cl    *client.Client
	ix    *embedded.Index
	model *encoders.Model
	pdqs  map[string]pdq.Hash // post id -> indexed PDQ
	qual  map[string]int      // post id -> its quality
	files map[string][]byte   // post id -> image bytes
}

// newHashStack starts NATS, the parity model, an embedded index whose
// records carry binary codes (SimHash, 64 bits) and PDQ hashes, and the
// query service with the coder. withCoder false leaves codes out entirely.
func newHashStack(t testing.TB, withCoder bool) *hashStack {
	t.Helper()
	nc, model, deny := startNATSAndModel(t)
	var err error
	var coder *hash.Coder
	opt := embedded.Options{Path: filepath.Join(t.TempDir(), "ix.db"), Dim: model.Dim()}
	if withCoder {
		coder, err = hash.NewSimHash(model.Version(), model.Dim(), 64, 1)
		if err != nil {
			t.Fatal(err)
		}
		opt.Coder = coder
	}
	ix, err := embedded.Open(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	s := &hashStack{cl: client.New(nc), ix: ix, model: model, pdqs: map[string]pdq.Hash{}, qual: map[string]int{}, files: map[string][]byte{}}

	ctx := context.Background()
	var chs []domain.Change
	tvecs, err := model.EmbedTexts(ctx, sampleTexts)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range tvecs {
		id := fmt.Sprintf("t%d", i)
		chs = append(chs, domain.Change{PostID: id, Records: []domain.Record{{PK: domain.PrimaryKey(id, domain.ModalityText),
			PostID: id, Modality: domain.ModalityText, Author: fmt.Sprintf("user%d", i%2), Text: sampleTexts[i], Vector: v}}})
	}
	files, _ := filepath.Glob("../testdata/pdq/images/labelme-subset/*.jpg")
	files = append(files, "../testdata/pdq/images/dih/bridge-1-original.jpg")
	var imgs []image.Image
	var ids []string
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		img, err := decode(b)
		if err != nil {
			t.Fatal(err)
		}
		id := strings.TrimSuffix(filepath.Base(p), ".jpg")
		s.files[id] = b
		imgs = append(imgs, img)
		ids = append(ids, id)
	}
	ivecs, err := model.EmbedImages(ctx, imgs)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range ivecs {
		hs := pdq.Hasher{MaxSide: -1} // as xmodal ingests: full resolution
		h, q := hs.Hash(imgs[i])
		s.pdqs[ids[i]], s.qual[ids[i]] = h, q
		author := "photographer"
		if ids[i] == "bridge-1-original" {
			author = "lena"
		}
		// The windows, as ingest computes them (image.neardup_windows).
		var win []byte
		if ws, err := neardup.NewHasher(neardup.Options{PDQMaxSide: -1}).Windows(imgs[i]); err == nil {
			win = neardup.AppendWindows(nil, imgs[i].Bounds().Dx(), imgs[i].Bounds().Dy(), ws)
		}
		chs = append(chs, domain.Change{PostID: ids[i], Records: []domain.Record{{PK: domain.PrimaryKey(ids[i], domain.ModalityImage),
			PostID: ids[i], Modality: domain.ModalityImage, Author: author, Vector: v, PDQ: h[:], PDQQuality: q, Windows: win,
			CreatedAt: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)}}})
	}
	if _, err := ix.Apply(ctx, chs); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); !ix.WindowsReady(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("window tables not built within a minute")
		}
	}
	deps := query.Deps{Index: ix, Encoder: model, Decode: decodeQuery, Deny: deny}
	if coder != nil {
		deps.Coder = coder
	}
	// Region queries decode and hash a photo many times over: under the race
	// detector on a loaded 2-core machine one can take longer than the
	// default 5 s deadline, which these tests do not measure.
	svc, err := query.New(query.Config{Timeout: time.Minute}, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(nc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	return s
}

func (s *hashStack) neardup(t testing.TB, req any) (*query.NearDupResponse, error) {
	t.Helper()
	if r, ok := req.(*query.NearDupRequest); ok {
		return s.cl.NearDup(context.Background(), r)
	}
	body, ok := req.([]byte)
	if !ok {
		var err error
		if body, err = json.Marshal(req); err != nil {
			t.Fatal(err)
		}
	}
	var out query.NearDupResponse
	err := s.cl.Raw(context.Background(), "neardup", body, &out)
	return &out, err
}

func TestNearDupByImage(t *testing.T) {
	s := newHashStack(t, true)
	// Every dihedral transform of the bridge finds the indexed original.
	files, _ := filepath.Glob("../testdata/pdq/images/dih/*.jpg")
	if len(files) != 8 {
		t.Fatalf("%d dihedral test images, want 8", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.neardup(t, &query.NearDupRequest{Image: b})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Matches) == 0 || res.Matches[0].PostID != "bridge-1-original" || *res.Matches[0].Distance > 10 {
			t.Errorf("%s: matches %+v", filepath.Base(f), res.Matches)
			continue
		}
		m := res.Matches[0]
		t.Logf("%s: distance %d via %s, query quality %d", filepath.Base(f), *m.Distance, m.Transform, *res.Quality)
		if strings.Contains(f, "original") && (m.Transform != "original" || *m.Distance != 0) {
			t.Errorf("the original matched via %s at %d", m.Transform, *m.Distance)
		}
		if !strings.Contains(f, "original") && m.Transform == "original" {
			t.Errorf("%s matched without a transform", filepath.Base(f))
		}
		if m.Modality != domain.ModalityImage || m.Score != 1-float32(*m.Distance)/256 || len(res.PDQ) != 64 || res.MaxDistance != 31 {
			t.Errorf("%s: reply %+v", filepath.Base(f), res)
		}
	}
	// The photos of the labelme subset match themselves only, within the default bound.
	for id, b := range s.files {
		res, err := s.neardup(t, &query.NearDupRequest{Image: b})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Matches) != 1 || res.Matches[0].PostID != id {
			t.Errorf("%s: matches %+v", id, res.Matches)
		}
	}
}

func TestNearDupByPDQ(t *testing.T) {
	s := newHashStack(t, true)
	h := s.pdqs["q0122"]
	// Upper-case hex is accepted; the bound and k apply.
	res, err := s.neardup(t, map[string]any{"pdq": strings.ToUpper(h.String()), "max_distance": 0})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Matches) != 1 || res.Matches[0].PostID != "q0122" || *res.Matches[0].Distance != 0 || res.Matches[0].Transform != "" || res.Quality != nil {
		t.Fatalf("matches %+v", res)
	}
	// Bound 256 matches every indexed image, nearest first, then by primary key.
	res, err = s.neardup(t, map[string]any{"pdq": h.String(), "max_distance": 256, "k": 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Matches) != len(s.pdqs) {
		t.Fatalf("bound 256: %d matches, want %d", len(res.Matches), len(s.pdqs))
	}
	for i := 1; i < len(res.Matches); i++ {
		a, b := res.Matches[i-1], res.Matches[i]
		if *a.Distance > *b.Distance || (*a.Distance == *b.Distance && a.PK > b.PK) {
			t.Errorf("matches out of order at %d: %s/%d then %s/%d", i, a.PK, *a.Distance, b.PK, *b.Distance)
		}
		if want := pdq.Distance(h, s.pdqs[b.PostID]); *b.Distance != want {
			t.Errorf("%s: distance %d, want %d", b.PostID, *b.Distance, want)
		}
	}
	res, err = s.neardup(t, map[string]any{"pdq": h.String(), "max_distance": 256, "k": 2})
	if err != nil || len(res.Matches) != 2 {
		t.Errorf("k=2: %v %v", res, err)
	}
	// Filters and the quality floor.
	bridge := s.pdqs["bridge-1-original"]
	low := "bridge-1-original" // the image of lowest quality
	for id, q := range s.qual {
		if q < s.qual[low] || (q == s.qual[low] && id < low) {
			low = id
		}
	}
	if s.qual[low] == 100 {
		t.Fatal("every test image has quality 100")
	}
	for _, tc := range []struct {
		req  map[string]any
		want int
	}{
		{map[string]any{"pdq": bridge.String(), "filter": domain.Filter{Authors: []string{"lena"}}}, 1},
		{map[string]any{"pdq": bridge.String(), "filter": domain.Filter{Authors: []string{"marco"}}}, 0},
		{map[string]any{"pdq": bridge.String(), "filter": domain.Filter{Since: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)}}, 0},
		{map[string]any{"pdq": s.pdqs[low].String(), "min_quality": s.qual[low]}, 1},
		{map[string]any{"pdq": s.pdqs[low].String(), "min_quality": s.qual[low] + 1}, 0},
	} {
		res, err := s.neardup(t, tc.req)
		if err != nil || len(res.Matches) != tc.want {
			t.Errorf("%v: %v matches (%v), want %d", tc.req, len(res.Matches), err, tc.want)
		}
	}
}

func TestNearDupErrors(t *testing.T) {
	s := newHashStack(t, true)
	good := s.pdqs["q0003"].String()
	tests := []struct {
		name string
		body string
		code int
		want string
	}{
		{"empty", ``, 400, "empty request"},
		{"nothing", `{}`, 400, "give one of image, image_url or pdq"},
		{"two sources", `{"pdq":"` + good + `","image":"aGVsbG8="}`, 400, "give only one"},
		{"short hex", `{"pdq":"abc123"}`, 400, `pdq: malformed hash "abc123": length 6, want 64`},
		{"long hex", `{"pdq":"` + good + `00"}`, 400, "length 66, want 64"},
		{"non-hex", `{"pdq":"` + strings.Repeat("zz", 32) + `"}`, 400, `malformed hash "zzzz`},
		{"bound -1", `{"pdq":"` + good + `","max_distance":-1}`, 400, "max_distance -1 is outside 0..256"},
		{"bound 257", `{"pdq":"` + good + `","max_distance":257}`, 400, "max_distance 257 is outside 0..256"},
		{"k", `{"pdq":"` + good + `","k":5000}`, 400, "k must be between 1 and 1000, got 5000"},
		{"zero k", `{"pdq":"` + good + `","k":0}`, 400, "k must be between 1 and 1000, got 0"},
		{"quality", `{"pdq":"` + good + `","min_quality":101}`, 400, "min_quality 101 is outside 0..100"},
		{"unknown field", `{"pdq":"` + good + `","bound":3}`, 400, `unknown field "bound"`},
		{"undecodable image", `{"image":"aGVsbG8gd29ybGQ="}`, 422, "image:"},
		{"image_url without a fetcher", `{"image_url":"http://example.com/a.jpg"}`, 400, "image_url queries are not enabled"},
		{"parts of a hash", `{"pdq":"` + good + `","parts":true}`, 400, "parts: give an image query with windows"},
		{"parts without windows", `{"image":"aGVsbG8=","parts":true,"windows":false}`, 400, "parts: give an image query with windows"},
		{"filter order", `{"pdq":"` + good + `","filter":{"since":"2026-02-01T00:00:00Z","until":"2026-01-01T00:00:00Z"}}`, 400, "since must be before until"},
	}
	for _, tc := range tests {
		_, err := s.neardup(t, []byte(tc.body))
		var e *query.Error
		if !errors.As(err, &e) || e.Code != tc.code || !strings.Contains(e.Message, tc.want) {
			t.Errorf("%s: %v, want %d with %q", tc.name, err, tc.code, tc.want)
		}
		if e != nil && strings.Contains(e.Message, "pdq: pdq:") {
			t.Errorf("%s: %q says pdq twice", tc.name, e.Message)
		}
	}
}

// TestGetRepliesInHexThatNearDupTakes: get gives an image record's PDQ hash
// (and binary code) in hex, the form neardup takes: the hash from get finds
// its own image at distance 0.
func TestGetRepliesInHexThatNearDupTakes(t *testing.T) {
	s := newHashStack(t, true)
	ctx := context.Background()
	ids := slices.Sorted(maps.Keys(s.pdqs))
	id := ids[0]
	pk := domain.PrimaryKey(id, domain.ModalityImage)
	stored, err := s.ix.Get(ctx, []string{pk})
	if err != nil || len(stored) != 1 || len(stored[0].Code) == 0 {
		t.Fatalf("stored record %s: %+v %v", pk, stored, err)
	}
	got, err := s.cl.Get(ctx, &query.GetRequest{PKs: []string{pk}})
	if err != nil {
		t.Fatal(err)
	}
	r := got.Records[0]
	if r.PDQ != s.pdqs[id].String() || r.Code != hex.EncodeToString(stored[0].Code) || r.PDQQuality != s.qual[id] {
		t.Fatalf("get %s: pdq %q code %q quality %d; want pdq %s, code %x, quality %d in hex",
			pk, r.PDQ, r.Code, r.PDQQuality, s.pdqs[id], stored[0].Code, s.qual[id])
	}
	res, err := s.neardup(t, map[string]any{"pdq": r.PDQ, "max_distance": 0})
	if err != nil {
		t.Fatalf("neardup with the pdq get returned: %v", err)
	}
	if len(res.Matches) == 0 || res.Matches[0].PK != pk || *res.Matches[0].Distance != 0 {
		t.Errorf("neardup with the pdq of %s: %+v", pk, res.Matches)
	}
}

func TestHashAndHybridPlans(t *testing.T) {
	s := newHashStack(t, true)
	ctx := context.Background()
	for i, text := range sampleTexts {
		for _, plan := range []string{"hash", "hybrid"} {
			res, err := s.cl.Search(ctx, &query.SearchRequest{Text: text, Target: "text", K: 3, Plan: plan})
			if err != nil {
				t.Fatal(err)
			}
			if res.Plan != plan || len(res.Hits) == 0 || res.Hits[0].PostID != fmt.Sprintf("t%d", i) || *res.Hits[0].Distance != 0 {
				t.Errorf("%s %q: %+v", plan, text, res.Hits)
			}
		}
		// With C (default at least 1,000) above the records searched, hybrid is exact.
		ex, err := s.cl.Search(ctx, &query.SearchRequest{Text: text, K: 5})
		if err != nil {
			t.Fatal(err)
		}
		hy, err := s.cl.Search(ctx, &query.SearchRequest{Text: text, K: 5, Plan: "hybrid"})
		if err != nil {
			t.Fatal(err)
		}
		for j := range ex.Hits {
			if ex.Hits[j].PK != hy.Hits[j].PK || ex.Hits[j].Score != hy.Hits[j].Score {
				t.Errorf("%q rank %d: exact %s %v, hybrid %s %v", text, j, ex.Hits[j].PK, ex.Hits[j].Score, hy.Hits[j].PK, hy.Hits[j].Score)
			}
		}
	}
	// candidates sets C: with C = k, hybrid re-ranks the hash plan's top k.
	differs := false
	for _, text := range sampleTexts {
		ha, err := s.cl.Search(ctx, &query.SearchRequest{Text: text, Target: "image", K: 4, Plan: "hash"})
		if err != nil {
			t.Fatal(err)
		}
		hy, err := s.cl.Search(ctx, &query.SearchRequest{Text: text, Target: "image", K: 4, Plan: "hybrid", Candidates: 4})
		if err != nil {
			t.Fatal(err)
		}
		ex, err := s.cl.Search(ctx, &query.SearchRequest{Text: text, Target: "image", K: 4})
		if err != nil {
			t.Fatal(err)
		}
		set := func(hs []domain.Hit) []string {
			var out []string
			for _, h := range hs {
				out = append(out, h.PK)
			}
			slices.Sort(out)
			return out
		}
		if !slices.Equal(set(ha.Hits), set(hy.Hits)) {
			t.Errorf("%q: hybrid with candidates 4 returned %v, the hash plan's top 4 are %v", text, set(hy.Hits), set(ha.Hits))
		}
		for j := 1; j < len(hy.Hits); j++ {
			if hy.Hits[j].Score > hy.Hits[j-1].Score {
				t.Errorf("%q: hybrid hits not by score: %+v", text, hy.Hits)
			}
		}
		differs = differs || !slices.Equal(set(hy.Hits), set(ex.Hits))
	}
	if !differs {
		t.Error("hybrid with candidates 4 matched exact on every query: the option had no visible effect")
	}
	for id, b := range s.files {
		res, err := s.cl.Search(ctx, &query.SearchRequest{Image: b, Target: "image", K: 1, Plan: "hash"})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Hits) != 1 || res.Hits[0].PostID != id || *res.Hits[0].Distance != 0 {
			t.Errorf("image %s, plan hash: %+v", id, res.Hits)
		}
	}
	// A raw vector is coded as a vector of the modality searched.
	recs, err := s.ix.Get(ctx, []string{"t3#text"})
	if err != nil || len(recs) != 1 {
		t.Fatal(recs, err)
	}
	res, err := s.cl.Search(ctx, &query.SearchRequest{Vector: recs[0].Vector, Target: "text", K: 1, Plan: "hash"})
	if err != nil || len(res.Hits) != 1 || res.Hits[0].PK != "t3#text" {
		t.Errorf("vector query, plan hash: %v %v", res, err)
	}
}

func TestHashPlanWithoutCodes(t *testing.T) {
	s := newHashStack(t, false)
	_, err := s.cl.Search(context.Background(), &query.SearchRequest{Text: sampleTexts[0], Plan: "hash"})
	var e *query.Error
	if !errors.As(err, &e) || e.Code != 400 || !strings.Contains(e.Message, "index holds none") {
		t.Errorf("plan hash on an index without codes: %v", err)
	}
	// Near duplicates need no coder.
	res, err := s.neardup(t, &query.NearDupRequest{PDQ: s.pdqs["q0746"].String()})
	if err != nil || len(res.Matches) != 1 {
		t.Errorf("neardup without a coder: %v %v", res, err)
	}
}

func FuzzParseNearDup(f *testing.F) {
	h := strings.Repeat("0f", 32)
	for _, s := range []string{
		`{"pdq":"` + h + `"}`,
		`{"pdq":"` + h + `","max_distance":0,"k":1,"min_quality":50}`,
		`{"image":"aGVsbG8="}`,
		`{"image_url":"http://x/y.jpg","max_distance":256}`,
		`{"pdq":"` + h + `","filter":{"authors":["a"],"labels":["l"]}}`,
		`{"pdq":"xyz"}`, `{}`, `[]`, `null`, `{"pdq":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := query.ParseNearDup(data)
		if err != nil {
			var e *query.Error
			if !errors.As(err, &e) || (e.Code != query.CodeBadRequest && e.Code != query.CodeTooLarge) || e.Message == "" {
				t.Fatalf("error %v is not a 400/413 query.Error", err)
			}
			return
		}
		n := 0
		if len(r.Image) > 0 {
			n++
		}
		if r.ImageURL != "" {
			n++
		}
		if r.PDQ != "" {
			n++
			if _, err := pdq.ParseHex(r.PDQ); err != nil {
				t.Fatalf("accepted pdq %q: %v", r.PDQ, err)
			}
		}
		if n != 1 || r.MaxDistance == nil || *r.MaxDistance < 0 || *r.MaxDistance > 256 || r.K < 1 || r.K > query.MaxK ||
			r.MinQuality < 0 || r.MinQuality > 100 {
			t.Fatalf("accepted an invalid request %+v", r)
		}
	})
}

// A meme (caption band) or a screenshot of an indexed photo is found
// through the picture inside it, and the reply says where in the query the
// picture was; the plain whole-image hash alone misses both.
func TestNearDupCaptionAndScreenshot(t *testing.T) {
	s := newHashStack(t, true)
	src, err := decode(s.files["bridge-1-original"])
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []reposts.Kind{reposts.Caption, reposts.Screenshot} {
		for seed := range uint64(3) {
			rp, err := reposts.Apply(src, []reposts.Kind{k}, rand.New(rand.NewPCG(seed, 3)))
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := png.Encode(&buf, rp.Image); err != nil {
				t.Fatal(err)
			}
			res, err := s.neardup(t, &query.NearDupRequest{Image: buf.Bytes()})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Matches) != 1 || res.Matches[0].PostID != "bridge-1-original" {
				t.Errorf("%s seed %d: matches %+v", k, seed, res.Matches)
				continue
			}
			m := res.Matches[0]
			pl := rp.Placed
			want := []int{pl.Min.X, pl.Min.Y, pl.Max.X, pl.Max.Y}
			if len(m.Region) != 4 {
				t.Errorf("%s seed %d: region %v, want about %v", k, seed, m.Region, want)
				continue
			}
			for i := range want {
				if d := m.Region[i] - want[i]; d < -4 || d > 4 {
					t.Errorf("%s seed %d: region %v, picture placed at %v", k, seed, m.Region, want)
					break
				}
			}
			if h, _ := pdq.FromImage(rp.Image); pdq.Distance(h, s.pdqs["bridge-1-original"]) <= 31 {
				t.Errorf("%s seed %d: the whole re-post is within PDQ's bound; the test shows nothing", k, seed)
			}
		}
	}
}

// A crop of an indexed photo, which whole-image PDQ misses, is found by
// the indexed images' windows: the reply says so (kind window, how many
// windows agree, which part of the original the query shows); asking for
// no windows finds nothing. The photos and edits are encoders/neardup's
// TestEditsFound's.
func TestNearDupFindsCrops(t *testing.T) {
	s := newHashStack(t, false)
	photos := indexNearDupPhotos(t, s, "astronaut", "coffee", "chelsea")
	cases := []struct {
		kinds []reposts.Kind
		seed  uint64
	}{{[]reposts.Kind{reposts.Crop90}, 3}, {[]reposts.Kind{reposts.Crop75}, 4}, {[]reposts.Kind{reposts.FlipH, reposts.Crop75}, 13}}
	windowMatches := 0
	for _, name := range []string{"astronaut", "coffee", "chelsea"} {
		src := photos[name]
		W, H := float32(src.Bounds().Dx()), float32(src.Bounds().Dy())
		for _, c := range cases {
			rp, err := reposts.Apply(src, c.kinds, rand.New(rand.NewPCG(c.seed, 11)))
			if err != nil {
				t.Fatal(err)
			}
			label := name + "/" + reposts.Name(c.kinds)
			buf, res := neardupOnceIndexed(t, s, rp.Image)
			if res.Windows != query.WindowsSearched {
				t.Errorf("%s: windows %q, want %q", label, res.Windows, query.WindowsSearched)
			}
			if len(res.Matches) != 1 || res.Matches[0].PostID != name {
				t.Errorf("%s: matches %+v", label, res.Matches)
				continue
			}
			m := res.Matches[0]
			if m.Kind != "window" {
				continue // a mild crop can stay within PDQ's bound
			}
			windowMatches++
			sh := rp.Shown
			want := []float32{float32(sh.Min.X) / W, float32(sh.Min.Y) / H, float32(sh.Max.X) / W, float32(sh.Max.Y) / H}
			for i := range want {
				if len(m.Shown) != 4 || m.Shown[i]-want[i] > 0.05 || want[i]-m.Shown[i] > 0.05 {
					t.Errorf("%s: shown %v, want %v", label, m.Shown, want)
					break
				}
			}
			if m.Windows < 2 || m.Visible < m.Windows || m.Transform != rp.Dihedral.String() {
				t.Errorf("%s: %d windows, transform %q (want >= 2, %q)", label, m.Windows, m.Transform, rp.Dihedral)
			}
			// The pixel check ran (the records' windows carry patches).
			if m.Pixels < neardup.MinPixelCorr || m.Pixels > 1 || (m.Detail != 0 && m.Detail < neardup.MinPixelDetail) {
				t.Errorf("%s: pixels %.3f, pixel_detail %.3f: the pixel check did not run or let it through below its thresholds", label, m.Pixels, m.Detail)
			}
			off := false
			res, err = s.neardup(t, &query.NearDupRequest{Image: buf, Windows: &off})
			if err != nil {
				t.Fatal(err)
			}
			if res.Windows != query.WindowsOff || len(res.Matches) != 0 {
				t.Errorf("%s: windows=false gave %q, %+v", label, res.Windows, res.Matches)
			}
		}
	}
	if windowMatches < 6 {
		t.Errorf("%d of 9 crops found by windows; want at least 6 (the rest within PDQ's bound)", windowMatches)
	}
}

// Hostile near-dup queries against an index holding windows: plain white
// and black pictures, an 8 x 8 image, a picture that is all caption band
// and a picture of text only match nothing (and fail with no error); an
// image over the pixel cap is refused 413 before any hashing.
func TestNearDupWindowsAdversarial(t *testing.T) {
	s := newHashStack(t, false)
	text := plainImage(800, 300, color.White)
	rng := rand.New(rand.NewPCG(9, 9))
	for y := 20; y < 280; y += 30 {
		for x := 20; x < 780; x += 9 + rng.IntN(6) {
			draw.Draw(text, image.Rect(x, y, x+5+rng.IntN(3), y+14+rng.IntN(6)), &image.Uniform{color.Black}, image.Point{}, draw.Src)
		}
	}
	for _, tc := range []struct {
		name string
		img  image.Image
	}{
		{"white", plainImage(640, 480, color.White)}, {"black", plainImage(300, 300, color.Black)},
		{"tiny", plainImage(8, 8, color.RGBA{200, 30, 30, 255})}, {"caption band only", captionBandImage()}, {"text only", text},
	} {
		res, err := s.neardup(t, &query.NearDupRequest{Image: pngOf(t, tc.img)})
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if len(res.Matches) != 0 {
			t.Errorf("%s: matched %+v", tc.name, res.Matches)
		}
	}
	if _, err := s.neardup(t, &query.NearDupRequest{Image: overPixelCapPNG(t)}); codeOf(err) != 413 {
		t.Errorf("an image over the pixel cap: %v, want 413", err)
	}
}

// indexNearDupPhotos indexes committed photos (testdata/neardup/photos,
// without the extension) as image posts named after them, with their PDQ
// hashes and windows, as ingest writes them.
func indexNearDupPhotos(t *testing.T, s *hashStack, names ...string) map[string]image.Image {
	t.Helper()
	h := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	photos := map[string]image.Image{}
	for i, name := range names {
		var img image.Image
		if fam, seed, ok := genName(name); ok { // a generated picture (eval/reposts)
			img = reposts.Photo(fam, seed, 640, 480)
		} else {
			b, err := os.ReadFile(filepath.Join("../testdata/neardup/photos", name+".jpg"))
			if errors.Is(err, fs.ErrNotExist) { // a labelme photo of the ThreatExchange set
				b, err = os.ReadFile(filepath.Join("../testdata/pdq/images/labelme-subset", name+".jpg"))
			}
			if err != nil {
				t.Fatal(err)
			}
			if img, err = decode(b); err != nil {
				t.Fatal(err)
			}
		}
		photos[name] = img
		indexImagePost(t, s, h, name, img, i)
	}
	return photos
}

// indexImagePost indexes img as the image post id with its windows (the
// i-th second of 2026-02-02 its time).
func indexImagePost(t *testing.T, s *hashStack, h *neardup.Hasher, id string, img image.Image, i int) {
	t.Helper()
	ctx := context.Background()
	vs, err := s.model.EmbedImages(ctx, []image.Image{img})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := h.Signatures(img)
	if err != nil {
		t.Fatal(err)
	}
	s.pdqs[id] = sig[0].Hash
	win := neardup.AppendWindows(nil, img.Bounds().Dx(), img.Bounds().Dy(), sig)
	if _, err := s.ix.Apply(ctx, []domain.Change{{PostID: id, Records: []domain.Record{{PK: domain.PrimaryKey(id, domain.ModalityImage),
		PostID: id, Modality: domain.ModalityImage, Author: "skimage", Vector: vs[0], PDQ: sig[0].Hash[:], PDQQuality: sig[0].Quality,
		Windows: win, CreatedAt: time.Date(2026, 2, 2, 0, 0, i, 0, time.UTC)}}}}); err != nil {
		t.Fatal(err)
	}
}

// With "parts": true a known image finds the posts that show a part of
// it: 75 % and 90 % crops of three photos indexed as posts, each photo
// queried finds its own crops (kind "part", region where in the photo the
// crop lies, shown the whole post, the pixel check's figures) and no other
// photo's; without parts it finds none of its 75 % crops.
func TestNearDupParts(t *testing.T) {
	s := newHashStack(t, false)
	h := neardup.NewHasher(neardup.Options{PDQMaxSide: -1})
	names := []string{"astronaut", "coffee", "chelsea"}
	photos := map[string]image.Image{}
	type crop struct {
		photo string
		at    image.Rectangle
	}
	crops := map[string]crop{}
	n := 0
	for pi, name := range names {
		b, err := os.ReadFile(filepath.Join("../testdata/neardup/photos", name+".jpg"))
		if err != nil {
			t.Fatal(err)
		}
		if photos[name], err = decode(b); err != nil {
			t.Fatal(err)
		}
		for ki, k := range []reposts.Kind{reposts.Crop75, reposts.Crop90} {
			rp, err := reposts.Apply(photos[name], []reposts.Kind{k}, rand.New(rand.NewPCG(uint64(pi), uint64(ki)+5)))
			if err != nil {
				t.Fatal(err)
			}
			id := fmt.Sprintf("%s-%s", k, name)
			indexImagePost(t, s, h, id, rp.Image, n)
			crops[id] = crop{name, rp.Shown}
			n++
		}
	}
	iou := func(a, b image.Rectangle) float64 {
		i := a.Intersect(b)
		u := a.Dx()*a.Dy() + b.Dx()*b.Dy() - i.Dx()*i.Dy()
		return float64(i.Dx()*i.Dy()) / float64(u)
	}
	for _, name := range names {
		var buf bytes.Buffer
		if err := png.Encode(&buf, photos[name]); err != nil {
			t.Fatal(err)
		}
		ask := func(parts bool) *query.NearDupResponse {
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				res, err := s.neardup(t, &query.NearDupRequest{Image: buf.Bytes(), Parts: parts})
				if err != nil {
					t.Fatal(err)
				}
				if res.Windows == query.WindowsSearched || time.Now().After(deadline) {
					return res
				}
			}
		}
		found := 0
		for _, m := range ask(true).Matches {
			c, ok := crops[m.PostID]
			if !ok || c.photo != name {
				t.Errorf("%s: matched %s (%s)", name, m.PostID, m.Kind)
				continue
			}
			if m.Kind != "part" {
				t.Errorf("%s: %s found as %q, want a part", name, m.PostID, m.Kind)
				continue
			}
			found++
			if len(m.Region) != 4 || iou(image.Rect(m.Region[0], m.Region[1], m.Region[2], m.Region[3]), c.at) < 0.8 {
				t.Errorf("%s: %s reported at %v, cut from %v", name, m.PostID, m.Region, c.at)
			}
			if !slices.Equal(m.Shown, []float32{0, 0, 1, 1}) || m.Windows < 1 || m.Pixels < neardup.MinPixelCorr {
				t.Errorf("%s: %s shown %v, %d windows, pixels %.3f", name, m.PostID, m.Shown, m.Windows, m.Pixels)
			}
		}
		if found != 2 {
			t.Errorf("%s: %d of its 2 crops found as parts", name, found)
		}
		for _, m := range ask(false).Matches {
			if m.Kind == "part" || strings.HasPrefix(m.PostID, string(reposts.Crop75)) {
				t.Errorf("%s without parts: matched %s (%s)", name, m.PostID, m.Kind)
			}
		}
	}
}

// Copies whose whole-image hash moved beyond PDQ's threshold and which keep
// no window are found without windows: a brightened copy of a dark photo
// through the pixel-verified band (kind "whole" with the pixel check's
// figures), a 25 % copy of a textured 256-pixel photo (its PDQ hash 70
// bits away) by its area hash (kind "area" within the threshold), and
// watermarked copies of generated pictures by their cleaned hashes (kind
// "cleaned").
func TestNearDupWindowlessReplies(t *testing.T) {
	for _, c := range []struct {
		name, photo string
		edit        reposts.Kind
		seed        [2]uint64
		check       func(m query.NearDupMatch) bool
	}{
		{"band", "clock", reposts.Bright, [2]uint64{0, 5}, func(m query.NearDupMatch) bool {
			return m.Kind == "whole" && *m.Distance > neardup.WholeDistance &&
				m.Pixels >= neardup.MinPixelCorr && m.Detail >= neardup.MinPixelDetail
		}},
		{"area", "q0122", reposts.Down25, [2]uint64{1, 1}, func(m query.NearDupMatch) bool {
			return m.Kind == "area" && *m.Distance <= neardup.WholeDistance
		}},
		// A watermark across a smooth generated landscape: the cleaned
		// hash of the copy lies near the picture's PDQ hash (found with
		// the whole-image matches) ...
		{"cleaned/pdq", "gen-0-1000", reposts.Watermark, [2]uint64{0, 9}, func(m query.NearDupMatch) bool {
			return m.Kind == "cleaned" && *m.Distance <= neardup.WholeDistance
		}},
		// ... or near its cleaned hash only
		// (found with the window matches).
		{"cleaned/stored", "gen-2-1027", reposts.Watermark, [2]uint64{27, 9}, func(m query.NearDupMatch) bool {
			return m.Kind == "cleaned" && *m.Distance <= neardup.WholeDistance
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newHashStack(t, false)
			photos := indexNearDupPhotos(t, s, c.photo, "coffee")
			rp, err := reposts.Apply(photos[c.photo], []reposts.Kind{c.edit}, rand.New(rand.NewPCG(c.seed[0], c.seed[1])))
			if err != nil {
				t.Fatal(err)
			}
			_, res := neardupOnceIndexed(t, s, rp.Image)
			if len(res.Matches) != 1 || res.Matches[0].PostID != c.photo {
				t.Fatalf("matches %+v, want post %s", res.Matches, c.photo)
			}
			m := res.Matches[0]
			if m.Distance == nil || m.Windows != 0 || m.Shown != nil || m.Transform != "original" || m.Region != nil || !c.check(m) {
				t.Errorf("match %+v (distance %v), want a %s match without windows", m, m.Distance, c.name)
			}
		})
	}
}

// genName reads a generated picture's name, gen-FAMILY-SEED.
func genName(name string) (fam int, seed uint64, ok bool) {
	_, err := fmt.Sscanf(name, "gen-%d-%d", &fam, &seed)
	return fam, seed, err == nil
}

// neardupOnceIndexed sends img (as PNG) to xmodal.v1.neardup until it
// matches something or 10 s pass: the window tables take writes
// asynchronously, so the first query may come before the writes have
// landed. It returns the PNG and the last reply.
func neardupOnceIndexed(t *testing.T, s *hashStack, img image.Image) ([]byte, *query.NearDupResponse) {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		res, err := s.neardup(t, &query.NearDupRequest{Image: buf.Bytes()})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Matches) > 0 || time.Now().After(deadline) {
			return buf.Bytes(), res
		}
	}
}

// A 75 % crop of a generated picture saved at JPEG quality 30 whose
// windows all moved beyond the window radius is found by their lowest
// frequencies: a window match with low_frequency set, its distance beyond
// the radius, on several agreeing windows, with the pixel check's figures.
func TestNearDupLowFrequencyReply(t *testing.T) {
	const name = "gen-0-11400714819323198546" // the eval's generated picture 30
	s := newHashStack(t, false)
	photos := indexNearDupPhotos(t, s, name, "coffee")
	rp, err := reposts.Apply(photos[name], []reposts.Kind{reposts.Crop75, reposts.JPEG30}, rand.New(rand.NewPCG(30, 17)))
	if err != nil {
		t.Fatal(err)
	}
	_, res := neardupOnceIndexed(t, s, rp.Image)
	if len(res.Matches) != 1 || res.Matches[0].PostID != name {
		t.Fatalf("matches %+v, want post %s", res.Matches, name)
	}
	m := res.Matches[0]
	if m.Kind != "window" || !m.LowFrequency || m.Distance == nil || *m.Distance <= neardup.WindowDistance || m.Windows < 2 ||
		m.Pixels < 0.95 || m.Detail < 0.93 {
		t.Errorf("match %+v (distance %v), want a low-frequency window match", m, m.Distance)
	}
}
