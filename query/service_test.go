package query_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders"
	"github.com/xmodal/xmodal/encoders/imageprep"
	"github.com/xmodal/xmodal/ingest/media"
	"github.com/xmodal/xmodal/internal/bankstore"
	"github.com/xmodal/xmodal/internal/denylist"
	"github.com/xmodal/xmodal/internal/natsserver"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
	"github.com/xmodal/xmodal/sink/embedded"
)

type stack struct {
	svc   *query.Service
	nc    *nats.Conn
	cl    *client.Client
	model *encoders.Model
	ix    *embedded.Index
	deny  *denylist.List
	banks *bankstore.Store
	texts []string
	imgs  map[string][]byte
}

var sampleTexts = []string{
	"sunset over the old bridge #goldenhour",
	"breaking: council approves new bike lanes",
	"homemade ramen night 🍜",
	"first marathon done!!! 42km",
	"weather alert: heavy rain this weekend",
}

func decode(b []byte) (image.Image, error) {
	img, _, err := imageprep.Decode(b, imageprep.Limits{MaxPixels: 4e6})
	if errors.Is(err, imageprep.ErrTooLarge) {
		return nil, &query.Error{Code: query.CodeTooLarge, Message: err.Error()}
	}
	return img, err
}

// decodeQuery is the service's decoder in these tests: the same decode as
// the indexed images', so that a query finds its own picture.
func decodeQuery(_ context.Context, b []byte) (query.DecodedImage, error) {
	img, err := decode(b)
	return query.DecodedImage{Image: img}, err
}

// startNATSAndModel starts an embedded NATS server (with JetStream) and
// connects to it, opens the replicated deny-list on it, and loads the parity
// model; all end with the test.
func startNATSAndModel(t testing.TB) (*nats.Conn, *encoders.Model, *denylist.List) {
	t.Helper()
	ns := testutil.StartNATS(t, "")
	nc, _ := testutil.ConnectJS(t, ns.ClientURL())
	model, err := encoders.Load("../testdata/models/parity", encoders.Options{})
	if err != nil {
		if errors.Is(err, encoders.ErrORTNotFound) {
			testutil.Unavailable(t, "ONNX Runtime library", "%v", err)
		}
		t.Fatalf("load the parity model: %v", err)
	}
	t.Cleanup(func() { model.Close() })
	return nc, model, openDenyList(t, ns.ClientURL())
}

// openDenyList opens the replicated deny-list on the server at url, as
// another process of the deployment would.
func openDenyList(t testing.TB, url string) *denylist.List {
	t.Helper()
	_, js := testutil.ConnectJS(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := denylist.Open(ctx, js, denylist.Config{})
	if err != nil {
		t.Fatalf("deny-list: %v", err)
	}
	t.Cleanup(l.Close)
	return l
}

// newStack starts an embedded NATS server, the parity model, an embedded index
// holding sample texts and photos, and the query service.
func newStack(t testing.TB, cfg query.Config, fetcher query.Fetcher) *stack {
	t.Helper()
	return newStackWith(t, cfg, fetcher, nil)
}

// newStackWith is newStack with a hook that adjusts the service's dependencies
// (a cache, a wrapped encoder or index) before it starts.
func newStackWith(t testing.TB, cfg query.Config, fetcher query.Fetcher, mod func(*query.Deps)) *stack {
	t.Helper()
	nc, model, deny := startNATSAndModel(t)
	ix, err := embedded.Open(context.Background(), embedded.Options{Path: filepath.Join(t.TempDir(), "ix.db"), Dim: model.Dim()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	s := &stack{nc: nc, cl: client.New(nc), model: model, ix: ix, deny: deny, texts: sampleTexts, imgs: map[string][]byte{}}

	ctx := context.Background()
	vecs, err := model.EmbedTexts(ctx, sampleTexts)
	if err != nil {
		t.Fatal(err)
	}
	var chs []domain.Change
	for i, v := range vecs {
		id := fmt.Sprintf("t%d", i)
		chs = append(chs, domain.Change{PostID: id, Records: []domain.Record{{PK: domain.PrimaryKey(id, domain.ModalityText),
			PostID: id, Modality: domain.ModalityText, Author: fmt.Sprintf("user%d", i%2), Text: sampleTexts[i],
			CreatedAt: time.Date(2026, 1, 1+i, 0, 0, 0, 0, time.UTC), Vector: v}}})
	}
	photos, _ := filepath.Glob("../testdata/pdq/images/labelme-subset/*.jpg")
	var imgs []image.Image
	for _, p := range photos {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		img, err := decode(b)
		if err != nil {
			t.Fatal(err)
		}
		s.imgs[filepath.Base(p)] = b
		imgs = append(imgs, img)
	}
	ivecs, err := model.EmbedImages(ctx, imgs)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range ivecs {
		id := strings.TrimSuffix(filepath.Base(photos[i]), ".jpg")
		chs = append(chs, domain.Change{PostID: id, Records: []domain.Record{{PK: domain.PrimaryKey(id, domain.ModalityImage),
			PostID: id, Modality: domain.ModalityImage, Vector: v, CreatedAt: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)}}})
	}
	if _, err := ix.Apply(ctx, chs); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s.banks, err = bankstore.Open(ctx, js, bankstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.banks.Close)
	deps := query.Deps{Index: ix, Encoder: model, Decode: decodeQuery, Fetcher: fetcher, Deny: deny, Banks: s.banks}
	if mod != nil {
		mod(&deps)
	}
	svc, err := query.New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(nc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Stop() })
	s.svc = svc
	return s
}

func TestSelfRetrieval(t *testing.T) {
	s := newStack(t, query.Config{}, nil)
	ctx := context.Background()
	for i, text := range s.texts {
		res, err := s.cl.Search(ctx, &query.SearchRequest{Text: text, Target: "text", K: 3})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Hits) == 0 || res.Hits[0].PostID != fmt.Sprintf("t%d", i) || res.Hits[0].Text != text {
			t.Errorf("text %q: first hit %+v", text, res.Hits)
		}
		if res.Hits[0].Score < 0.999 {
			t.Errorf("self-similarity %.4f, want ~1", res.Hits[0].Score)
		}
	}
	for name, b := range s.imgs {
		res, err := s.cl.Search(ctx, &query.SearchRequest{Image: b, Target: "image", K: 3})
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.TrimSuffix(name, ".jpg"); len(res.Hits) == 0 || res.Hits[0].PostID != want {
			t.Errorf("image %s: first hit %+v", name, res.Hits)
		}
	}
	// target any merges by rank: the self match leads, both modalities appear.
	res, err := s.cl.Search(ctx, &query.SearchRequest{Text: s.texts[2], K: 4})
	if err != nil {
		t.Fatal(err)
	}
	mods := map[domain.Modality]bool{}
	for _, h := range res.Hits {
		mods[h.Modality] = true
	}
	if res.Hits[0].PostID != "t2" || !mods[domain.ModalityImage] || !mods[domain.ModalityText] {
		t.Errorf("target any: %+v", res.Hits)
	}
}

func TestFilters(t *testing.T) {
	s := newStack(t, query.Config{}, nil)
	ctx := context.Background()
	res, err := s.cl.Search(ctx, &query.SearchRequest{Text: s.texts[0], Target: "text", K: 10,
		Filter: domain.Filter{Authors: []string{"user1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Hits) != 2 {
		t.Fatalf("author filter: %d hits, want 2", len(res.Hits))
	}
	for _, h := range res.Hits {
		if h.Author != "user1" {
			t.Errorf("hit by %s passed the author filter", h.Author)
		}
	}
	res, err = s.cl.Search(ctx, &query.SearchRequest{Text: s.texts[0], Target: "text", K: 10,
		Filter: domain.Filter{Since: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), Until: time.Date(2026, 1, 4, 0, 0, 0, 0, time.UTC)}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Hits) != 2 {
		t.Errorf("time filter: %d hits, want 2 (t1, t2)", len(res.Hits))
	}
}

// TestMatchedBanksFilter: hits carry the bank matches their records keep,
// filter.matched_banks keeps the posts that matched one of the banks, and an
// index whose records keep no matches refuses the filter with the reason.
func TestMatchedBanksFilter(t *testing.T) {
	s := newStack(t, query.Config{}, nil)
	ctx := context.Background()
	recs, err := s.ix.Get(ctx, []string{domain.PrimaryKey("t1", domain.ModalityText)})
	if err != nil || len(recs) != 1 {
		t.Fatalf("t1: %v", err)
	}
	r := recs[0]
	r.Matches = []domain.RecordMatch{{Bank: "spam", EntryID: "text-0123", SignalType: "text", Modality: domain.ModalityText}}
	if _, err := s.ix.Apply(ctx, []domain.Change{{PostID: "t1", Records: []domain.Record{r}}}); err != nil {
		t.Fatal(err)
	}
	res, err := s.cl.Search(ctx, &query.SearchRequest{Text: s.texts[0], Target: "text", K: 10, Filter: domain.Filter{MatchedBanks: []string{"spam"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Hits) != 1 || res.Hits[0].PostID != "t1" || len(res.Hits[0].Matches) != 1 || res.Hits[0].Matches[0].EntryID != "text-0123" {
		t.Fatalf("matched_banks spam: %+v", res.Hits)
	}
	got, err := s.cl.Get(ctx, &query.GetRequest{PostIDs: []string{"t1"}})
	if err != nil || len(got.Records) != 1 || len(got.Records[0].Matches) != 1 || got.Records[0].Matches[0].Bank != "spam" {
		t.Fatalf("get t1: %+v %v", got, err)
	}
	res, err = s.cl.Search(ctx, &query.SearchRequest{Text: s.texts[0], Target: "text", K: 10})
	if err != nil || len(res.Hits) < 2 {
		t.Fatalf("unfiltered: %+v %v", res, err)
	}

	noMatches := newStackWith(t, query.Config{}, nil, func(d *query.Deps) { d.Index = struct{ domain.Searcher }{d.Index} })
	_, err = noMatches.cl.Search(ctx, &query.SearchRequest{Text: s.texts[0], Target: "text", K: 10, Filter: domain.Filter{MatchedBanks: []string{"spam"}}})
	if e := query.AsError(err); e == nil || e.Code != 400 || !strings.Contains(e.Message, "filter.matched_banks needs an index whose records keep their bank matches") {
		t.Fatalf("an index without matches: %v, want 400 naming filter.matched_banks", err)
	}
}

// pngHeader returns a valid PNG signature and IHDR declaring w x h pixels.
func pngHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2
	binary.Write(&b, binary.BigEndian, uint32(13))
	chunk := append([]byte("IHDR"), ihdr...)
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

func TestErrorCodes(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(3 * time.Second):
		}
	}))
	defer slow.Close()
	f, err := media.New(media.Config{AllowPrivate: []string{"127.0.0.0/8"}, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, query.Config{Timeout: 500 * time.Millisecond}, f)
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	tests := []struct {
		name, endpoint, body string
		code                 int
	}{
		{"malformed json", "search", `{"text":`, 400},
		{"empty body", "search", ``, 400},
		{"unknown field", "search", `{"text":"x","colour":"red"}`, 400},
		{"wrong type", "search", `{"text":42}`, 400},
		{"no query", "search", `{"k":5}`, 400},
		{"two queries", "search", `{"text":"x","vector":[1,2]}`, 400},
		{"blank text", "search", `{"text":"   "}`, 400},
		{"k too large", "search", `{"text":"x","k":1001}`, 400},
		{"negative k", "search", `{"text":"x","k":-1}`, 400},
		{"zero k", "search", `{"text":"x","k":0}`, 400},
		{"huge k", "search", `{"text":"x","k":99999999999}`, 400},
		{"bad target", "search", `{"text":"x","target":"video"}`, 400},
		{"bad plan", "search", `{"text":"x","plan":"magic"}`, 400},
		{"candidates without hybrid", "search", `{"text":"x","candidates":100}`, 400},
		{"candidates with plan exact", "search", `{"text":"x","plan":"exact","candidates":100}`, 400},
		{"negative candidates", "search", `{"text":"x","plan":"hybrid","candidates":-1}`, 400},
		{"too many candidates", "search", `{"text":"x","plan":"hybrid","candidates":1000001}`, 400},
		{"fractional candidates", "search", `{"text":"x","plan":"hybrid","candidates":1.5}`, 400},
		{"bad filter range", "search", `{"text":"x","filter":{"since":"2026-02-01T00:00:00Z","until":"2026-01-01T00:00:00Z"}}`, 400},
		{"invalid base64", "search", `{"image":"!!!not base64"}`, 400},
		{"wrong vector dimension", "search", `{"vector":[1,2,3]}`, 400},
		{"text too long", "search", `{"text":"` + strings.Repeat("a", query.MaxQueryText+1) + `"}`, 413},
		{"not an image", "search", `{"image":"` + b64([]byte("definitely not an image")) + `"}`, 422},
		{"truncated jpeg", "search", `{"image":"` + b64(s.imgs["q0003.jpg"][:500]) + `"}`, 422},
		{"over the pixel cap", "search", `{"image":"` + b64(pngHeader(50000, 50000)) + `"}`, 413},
		{"refused image url", "search", `{"image_url":"http://10.0.0.1/x.jpg"}`, 422},
		{"timeout", "search", `{"image_url":"` + slow.URL + `/x.jpg"}`, 504},
		{"get without ids", "get", `{}`, 400},
		{"get unknown id", "get", `{"post_ids":["nope"]}`, 404},
		{"get unknown field", "get", `{"ids":["t1"]}`, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := s.cl.Raw(ctx, tc.endpoint, []byte(tc.body), nil)
			if err == nil {
				t.Fatalf("no error, want %d", tc.code)
			}
			e := query.AsError(err)
			if e.Code != tc.code || e.Message == "" {
				t.Fatalf("got %d %q, want %d", e.Code, e.Message, tc.code)
			}
		})
	}
	// The service keeps serving after all of that.
	if _, err := s.cl.Search(context.Background(), &query.SearchRequest{Text: "still here"}); err != nil {
		t.Fatal(err)
	}
}

// A query error keeps its code when its cause is a deadline of its own: an
// image_url whose server misses the fetcher's read deadline is a 422 (the
// image could not be had), not the request's 504, although the cause that
// query.Error now carries is context.DeadlineExceeded.
func TestFetchDeadlineKeepsItsCode(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	f, err := media.New(media.Config{AllowPrivate: []string{"127.0.0.0/8"}, Retries: -1, ReadTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, query.Config{Timeout: 20 * time.Second}, f)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err = s.cl.Raw(ctx, "search", []byte(`{"image_url":"`+slow.URL+`/x.jpg"}`), nil)
	if e := query.AsError(err); err == nil || e.Code != query.CodeUnprocessable {
		t.Fatalf("fetch past its read deadline: %v, want %d", err, query.CodeUnprocessable)
	}
}

func TestTooManyRequests(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer slow.Close()
	defer close(release)
	f, _ := media.New(media.Config{AllowPrivate: []string{"127.0.0.0/8"}, Retries: -1})
	s := newStack(t, query.Config{Concurrency: 1, Timeout: 30 * time.Second}, f)
	first := make(chan error, 1)
	go func() {
		first <- s.cl.Raw(context.Background(), "search", []byte(`{"image_url":"`+slow.URL+`/a.jpg"}`), nil)
	}()
	// Once the slow server has the fetch, the search holds the only slot until
	// release: any other request must get 429.
	select {
	case <-arrived:
	case err := <-first:
		t.Fatalf("the slow search ended before reaching the server: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the slow search never reached the server")
	}
	err := s.cl.Raw(context.Background(), "stats", []byte(`{}`), nil)
	if e := query.AsError(err); err == nil || e.Code != query.CodeTooManyRequest {
		t.Fatalf("stats while the only slot is busy: %v, want 429", err)
	}
}

func TestStatsAndGet(t *testing.T) {
	s := newStack(t, query.Config{}, nil)
	ctx := context.Background()
	st, err := s.cl.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Records[domain.ModalityText] != len(sampleTexts) || st.Records[domain.ModalityImage] != len(s.imgs) || st.Dim != s.model.Dim() {
		t.Errorf("stats %+v", st)
	}
	got, err := s.cl.Get(ctx, &query.GetRequest{PostIDs: []string{"t1", "missing"}, PKs: []string{"q0003#image"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Records) != 2 || got.Records[0].PK != "q0003#image" || got.Records[1].Text != sampleTexts[1] {
		t.Errorf("get: %+v", got.Records)
	}
	var raw map[string][]map[string]any
	if err := s.cl.Raw(ctx, "get", []byte(`{"pks":["q0003#image"]}`), &raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw["records"][0]["vector"]; ok {
		t.Error("get returned vectors")
	}
}

func TestNoResponders(t *testing.T) {
	ns, err := natsserver.Start(natsserver.Options{Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Shutdown()
	nc, _ := nats.Connect(ns.ClientURL())
	defer nc.Close()
	_, err = client.New(nc).Stats(context.Background())
	if e := query.AsError(err); e.Code != query.CodeUnavailable {
		t.Fatalf("got %v, want 503 when no service listens", err)
	}
}

// get pages through the records a request names; thumbnails only on request.
func TestGetPages(t *testing.T) {
	s := newStack(t, query.Config{}, nil)
	ctx := context.Background()
	if _, err := s.ix.Apply(ctx, []domain.Change{{PostID: "thumbed", Records: []domain.Record{{PK: "thumbed#text", PostID: "thumbed",
		Modality: domain.ModalityText, Text: "with a thumbnail", Thumbnail: []byte{0xff, 0xd8, 1, 2}, Vector: make([]float32, s.model.Dim())}}}}); err != nil {
		t.Fatal(err)
	}
	ids := []string{"t0", "t1", "t2", "t3", "t4", "thumbed"}
	var got []string
	req := &query.GetRequest{PostIDs: ids, Limit: 2}
	pages := 0
	for {
		res, err := s.cl.Get(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(res.Records) > 2 {
			t.Fatalf("page of %d records with limit 2", len(res.Records))
		}
		for _, r := range res.Records {
			got = append(got, r.PostID)
			if len(r.Thumbnail) != 0 {
				t.Error("a thumbnail came back without thumbnails: true")
			}
		}
		if res.NextCursor == "" {
			break
		}
		req.Cursor = res.NextCursor
	}
	if !slices.Equal(got, ids) || pages != 3 {
		t.Fatalf("paged through %v in %d pages, want %v in 3", got, pages, ids)
	}
	res, err := s.cl.Get(ctx, &query.GetRequest{PostIDs: []string{"thumbed"}, Thumbnails: true})
	if err != nil || len(res.Records) != 1 || len(res.Records[0].Thumbnail) != 4 {
		t.Fatalf("get with thumbnails: %+v %v", res, err)
	}
	for _, body := range []string{`{"post_ids":["t0"],"cursor":"x"}`, `{"post_ids":["t0"],"cursor":"99"}`, `{"post_ids":["t0"],"limit":-1}`, `{"post_ids":["t0"],"limit":100000}`} {
		if err := s.cl.Raw(ctx, "get", []byte(body), nil); query.AsError(err).Code != 400 {
			t.Errorf("%s: %v, want 400", body, err)
		}
	}
}

// A reply larger than the NATS server takes is a 413 with a message, never a
// reply the server drops while the client times out.
func TestReplyOverMaxPayloadIs413(t *testing.T) {
	ns, err := natsserver.Start(natsserver.Options{Listen: "127.0.0.1:0", MaxPayload: 6000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	s := newStackOn(t, ns.ClientURL(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 4 {
		id := fmt.Sprint("big", i)
		v, _ := s.model.EmbedTexts(ctx, []string{"bridge"})
		if _, err := s.ix.Apply(ctx, []domain.Change{{PostID: id, Records: []domain.Record{{PK: id + "#text", PostID: id,
			Modality: domain.ModalityText, Thumbnail: make([]byte, 3000), Vector: v[0]}}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.cl.Search(ctx, &query.SearchRequest{Text: "bridge", Target: "text", K: 10}); err != nil {
		t.Fatalf("a small reply: %v", err)
	}
	_, err = s.cl.Search(ctx, &query.SearchRequest{Text: "bridge", Target: "text", K: 10, Thumbnails: true})
	if err == nil {
		t.Fatal("a reply over max_payload came back")
	}
	if e := query.AsError(err); e.Code != query.CodeTooLarge || !strings.Contains(e.Message, "max_payload") {
		t.Fatalf("a reply over max_payload: %v, want 413 naming max_payload", err)
	}
}
