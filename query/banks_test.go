package query_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"image"
	"image/color"
	"image/draw"
	_ "image/jpeg"
	"image/png"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
	"github.com/xmodal/xmodal/query"
)

func readImage(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The bank endpoints over NATS: create, add by upload and by hash, match
// an image (rotated copies too), its MD5, a PDQ hex, a text and its URLs;
// every change in the audit log with its actor; get, remove, delete.
func TestBankEndpoints(t *testing.T) {
	var logBuf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logBuf, nil))
	s := newStackWith(t, query.Config{}, nil, func(d *query.Deps) { d.Logger = logger })
	ctx := context.Background()
	var ch query.BankChangeResponse
	if err := s.cl.Call(ctx, "admin.banks.create", query.BankRequest{Name: "known-bridges", Labels: []string{"test", "bridge"},
		Action: banks.ActionBlock, Actor: "alice"}, &ch); err != nil {
		t.Fatal(err)
	}
	orig := readImage(t, "../testdata/pdq/images/dih/bridge-1-original.jpg")
	if err := s.cl.Call(ctx, "admin.banks.add", query.BankAddRequest{Bank: "known-bridges", Image: orig, Note: "upload", Actor: "alice",
		Entries: []banks.Entry{{Type: banks.SignalText, Value: "Buy followers now!!"}, {Type: banks.SignalURL, Value: "https://spam.example/offer"}}}, &ch); err != nil {
		t.Fatal(err)
	}
	if ch.Result.Added != 4 {
		t.Fatalf("add: %+v, want 4 entries (pdq and md5 of the image, a text, a URL)", ch.Result)
	}
	var lr query.BanksListResponse
	if err := s.cl.Call(ctx, "banks.list", struct{}{}, &lr); err != nil {
		t.Fatal(err)
	}
	if len(lr.Banks) != 1 || lr.Banks[0].Entries != 4 || !lr.Banks[0].Enabled || lr.Banks[0].CreatedBy != "alice" {
		t.Fatalf("banks.list: %+v", lr.Banks)
	}

	match := func(req query.MatchRequest) query.MatchResponse {
		t.Helper()
		var mr query.MatchResponse
		if err := s.cl.Call(ctx, "match", req, &mr); err != nil {
			t.Fatalf("match %+v: %v", req, err)
		}
		return mr
	}
	// A rotated copy matches by PDQ (the 90° rotation's variant), not by MD5.
	rot := readImage(t, "../testdata/pdq/images/dih/bridge-2-rotate-90.jpg")
	mr := match(query.MatchRequest{Image: rot})
	if len(mr.Matches) != 1 || mr.Matches[0].SignalType != banks.SignalPDQ || *mr.Matches[0].Distance > 31 ||
		mr.Matches[0].Action != banks.ActionBlock || strings.Join(mr.Matches[0].Labels, ",") != "bridge,test" || mr.Matches[0].Transform == "" {
		t.Fatalf("rotated copy: %+v", mr.Matches)
	}
	// The original matches by PDQ (distance 0) and by MD5.
	mr = match(query.MatchRequest{Image: orig})
	if len(mr.Matches) != 2 || mr.Matches[0].SignalType != banks.SignalPDQ || *mr.Matches[0].Distance != 0 || mr.Matches[1].SignalType != banks.SignalMD5 {
		t.Fatalf("original: %+v", mr.Matches)
	}
	sum := md5.Sum(orig)
	if mr.MD5 != hex.EncodeToString(sum[:]) {
		t.Fatalf("reply md5 %s", mr.MD5)
	}
	if got := match(query.MatchRequest{PDQ: mr.PDQ}); len(got.Matches) != 1 || *got.Matches[0].Distance != 0 {
		t.Fatalf("pdq hex: %+v", got.Matches)
	}
	if got := match(query.MatchRequest{MD5: strings.ToUpper(mr.MD5)}); len(got.Matches) != 1 || got.Matches[0].SignalType != banks.SignalMD5 {
		t.Fatalf("md5: %+v", got.Matches)
	}
	got := match(query.MatchRequest{Text: "BUY followers now... see spam.example/offer"})
	if len(got.Matches) != 1 || got.Matches[0].SignalType != banks.SignalURL {
		t.Fatalf("text with a URL: %+v (want the URL entry; the text differs)", got.Matches)
	}
	if got := match(query.MatchRequest{Text: "buy followers NOW"}); len(got.Matches) != 1 || got.Matches[0].SignalType != banks.SignalText {
		t.Fatalf("normalised text: %+v", got.Matches)
	}
	if got := match(query.MatchRequest{Text: "nothing here"}); len(got.Matches) != 0 {
		t.Fatalf("unrelated text: %+v", got.Matches)
	}
	// Disabled bank: no match; enabled again: matches.
	if err := s.cl.Call(ctx, "admin.banks.update", json.RawMessage(`{"name":"known-bridges","enabled":false,"actor":"bob"}`), &ch); err != nil {
		t.Fatal(err)
	}
	if got := match(query.MatchRequest{PDQ: mr.PDQ}); len(got.Matches) != 0 {
		t.Fatalf("a disabled bank matched: %+v", got.Matches)
	}
	var gr query.BankGetResponse
	if err := s.cl.Call(ctx, "banks.get", query.BankNameRequest{Name: "known-bridges", Entries: true}, &gr); err != nil {
		t.Fatal(err)
	}
	if gr.Bank.Enabled || gr.Bank.Action != banks.ActionBlock || len(gr.Entries) != 4 || gr.Bank.UpdatedBy != "bob" {
		t.Fatalf("banks.get after a partial update: %+v", gr)
	}
	if err := s.cl.Call(ctx, "admin.banks.update", json.RawMessage(`{"name":"known-bridges","enabled":true}`), &ch); err != nil {
		t.Fatal(err)
	}
	var pdqID string
	for _, e := range gr.Entries {
		if e.Type == banks.SignalPDQ {
			pdqID = e.ID
		}
	}
	if err := s.cl.Call(ctx, "admin.banks.remove", query.BankRemoveRequest{Bank: "known-bridges", IDs: []string{pdqID}, Actor: "carol"}, &ch); err != nil {
		t.Fatal(err)
	}
	if got := match(query.MatchRequest{Image: rot}); len(got.Matches) != 0 {
		t.Fatalf("a removed entry matched: %+v", got.Matches)
	}
	if err := s.cl.Call(ctx, "admin.banks.delete", query.BankNameRequest{Name: "known-bridges", Actor: "dave"}, &ch); err != nil {
		t.Fatal(err)
	}
	if err := s.cl.Call(ctx, "banks.get", query.BankNameRequest{Name: "known-bridges"}, &gr); codeOf(err) != 404 {
		t.Fatalf("get a deleted bank: %v, want 404", err)
	}
	audit := logBuf.String()
	for _, want := range []string{"op=create_bank bank=known-bridges actor=alice", "op=add_entries bank=known-bridges actor=alice added=4",
		"op=update_bank bank=known-bridges actor=bob", "op=update_bank bank=known-bridges actor=anonymous", "op=remove_entries bank=known-bridges actor=carol added=0 replaced=0 removed=1",
		"op=delete_bank bank=known-bridges actor=dave"} {
		if !strings.Contains(audit, "audit: bank change\" "+want) {
			t.Errorf("audit log lacks %q:\n%s", want, audit)
		}
	}
}

func codeOf(err error) int {
	var e *query.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// Bad input: each a clear error code naming the problem; nothing applied.
func TestBankBadInput(t *testing.T) {
	s := newStack(t, query.Config{}, nil)
	ctx := context.Background()
	if err := s.cl.Call(ctx, "admin.banks.create", query.BankRequest{Name: "b1"}, nil); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 70<<10)
	cases := []struct {
		name, endpoint, body string
		code                 int
		says                 string
	}{
		{"malformed hex", "admin.banks.add", `{"bank":"b1","entries":[{"signal_type":"pdq","signal":"abc"}]}`, 400, "want 64 hex"},
		{"wrong-length md5", "admin.banks.add", `{"bank":"b1","entries":[{"signal_type":"md5","signal":"0123"}]}`, 400, "want 32 hex"},
		{"unknown signal type", "admin.banks.add", `{"bank":"b1","entries":[{"signal_type":"sha1","signal":"ab"}]}`, 400, "unknown signal type"},
		{"name collision", "admin.banks.create", `{"name":"b1"}`, 409, "already exists"},
		{"name not subject-safe", "admin.banks.create", `{"name":"a.b>"}`, 400, "invalid bank name"},
		{"threshold out of range", "admin.banks.create", `{"name":"b2","thresholds":{"pdq":99}}`, 400, "outside 0..64"},
		{"embedding threshold without a calibration", "admin.banks.create", `{"name":"b3","thresholds":{"embedding":{"text_image":0.2}}}`, 400, "no model calibration"},
		{"bad action", "admin.banks.create", `{"name":"b4","action":"nuke"}`, 400, "want review, block or log"},
		{"missing bank", "admin.banks.add", `{"bank":"nope","entries":[{"signal_type":"md5","signal":"0123456789abcdef0123456789abcdef"}]}`, 404, "not found"},
		{"a 70 KB text signal", "admin.banks.add", `{"bank":"b1","entries":[{"signal_type":"text","signal":"` + big + `"}]}`, 413, "signal too long"},
		{"lookup with no signal", "match", `{}`, 400, "no signal"},
		{"lookup with bad pdq", "match", `{"pdq":"zz"}`, 400, "pdq"},
		{"lookup with bad md5", "match", `{"md5":"zz"}`, 400, "md5"},
		{"lookup of a bad image", "match", `{"image":"aGVsbG8="}`, 422, "image"},
		{"empty import", "admin.banks.import", `{"bank":"b1","data":""}`, 400, "empty import file"},
		{"binary import", "admin.banks.import", `{"bank":"b1","data":"pdq \u0000\u0001"}`, 400, "binary import file"},
		{"CSV without a signal column", "admin.banks.import", `{"bank":"b1","data":"sig,signal_type\nab,pdq\n","format":"csv"}`, 400, "missing CSV column"},
		{"unknown field", "admin.banks.create", `{"name":"b5","colour":"red"}`, 400, "unknown field"},
		{"update of a missing bank", "admin.banks.update", `{"name":"nope","enabled":false}`, 404, "not found"},
		{"bad cursor", "banks.get", `{"name":"b1","entries":true,"cursor":"x"}`, 400, "cursor"},
	}
	for _, c := range cases {
		err := s.cl.Raw(ctx, c.endpoint, []byte(c.body), nil)
		if codeOf(err) != c.code || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want %d naming %q", c.name, err, c.code, c.says)
		}
	}
	var gr query.BankGetResponse
	if err := s.cl.Call(ctx, "banks.get", query.BankNameRequest{Name: "b1"}, &gr); err != nil {
		t.Fatal(err)
	}
	if gr.Bank.Entries != 0 {
		t.Fatalf("bad requests left %d entries in the bank", gr.Bank.Entries)
	}
}

// Import reports every bad line by number and reason and imports the good
// ones; export pages write a file that imports back to the same entries.
func TestBankImportExportRoundTrip(t *testing.T) {
	s := newStack(t, query.Config{}, nil)
	ctx := context.Background()
	for _, name := range []string{"src", "dst"} {
		if err := s.cl.Call(ctx, "admin.banks.create", query.BankRequest{Name: name}, nil); err != nil {
			t.Fatal(err)
		}
	}
	data := "pdq " + strings.Repeat("ab", 32) + "\n" +
		"pdq 12\n" + // bad: line 2
		"video_md5 0123456789abcdef0123456789abcdef\n" +
		"raw_text Hello, World\n" +
		"sha1 ffff\n" + // bad: line 5
		"url https://example.com/a?utm_source=x\n"
	var ir query.BankImportResponse
	if err := s.cl.Call(ctx, "admin.banks.import", query.BankImportRequest{Bank: "src", Data: data, Actor: "alice"}, &ir); err != nil {
		t.Fatal(err)
	}
	if ir.Lines != 4 || ir.Added != 4 || ir.Bad != 2 || len(ir.Errors) != 2 || ir.Errors[0].Line != 2 || ir.Errors[1].Line != 5 ||
		!strings.Contains(ir.Errors[1].Reason, "unknown signal type") {
		t.Fatalf("import: %+v", ir)
	}
	for _, f := range []banks.Format{banks.FormatLines, banks.FormatCSV} {
		var all strings.Builder
		cursor := ""
		for {
			var er query.BankExportResponse
			if err := s.cl.Call(ctx, "admin.banks.export", query.BankExportRequest{Bank: "src", Format: f, Limit: 3, Cursor: cursor}, &er); err != nil {
				t.Fatal(err)
			}
			all.WriteString(er.Data)
			if cursor = er.NextCursor; cursor == "" {
				break
			}
		}
		if err := s.cl.Call(ctx, "admin.banks.import", query.BankImportRequest{Bank: "dst", Data: all.String(), Format: f}, &ir); err != nil {
			t.Fatal(err)
		}
		if ir.Bad != 0 || ir.Lines != 4 {
			t.Fatalf("%s re-import: %+v\n%s", f, ir, all.String())
		}
	}
	ids := func(bank string) string {
		var gr query.BankGetResponse
		if err := s.cl.Call(ctx, "banks.get", query.BankNameRequest{Name: bank, Entries: true}, &gr); err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range gr.Entries {
			out = append(out, e.ID)
		}
		return strings.Join(sorted(out), " ")
	}
	if a, b := ids("src"), ids("dst"); a != b {
		t.Fatalf("round trip: src %s, dst %s", a, b)
	}
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// The HTTP gateway serves the same endpoints; bank changes need the admin
// token.
func TestBankGateway(t *testing.T) {
	s := newStack(t, query.Config{}, nil)
	srv := httptest.NewServer(query.NewGateway(s.svc, query.GatewayOptions{AdminToken: "sekret"}))
	t.Cleanup(srv.Close)
	post := func(path, token, body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	if code, _ := post("/v1/admin/banks/create", "", `{"name":"web"}`); code != 403 && code != 401 {
		t.Fatalf("create without the token: %d", code)
	}
	if code, body := post("/v1/admin/banks/create", "sekret", `{"name":"web","actor":"http"}`); code != 200 {
		t.Fatalf("create: %d %s", code, body)
	}
	h := strings.Repeat("0f", 32)
	if code, body := post("/v1/admin/banks/add", "sekret", `{"bank":"web","entries":[{"signal_type":"pdq","signal":"`+h+`"}]}`); code != 200 {
		t.Fatalf("add: %d %s", code, body)
	}
	code, body := post("/v1/match", "", `{"pdq":"`+h+`"}`)
	if code != 200 || !strings.Contains(body, `"bank":"web"`) {
		t.Fatalf("match: %d %s", code, body)
	}
	if code, body := post("/v1/match", "", `{"pdq":"nothex"}`); code != 400 {
		t.Fatalf("bad match: %d %s", code, body)
	}
	resp, err := http.Get(srv.URL + "/v1/banks/list")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /v1/banks/list: %d", resp.StatusCode)
	}
}

// ParseMatch refuses every malformed request with a 400/413 query.Error,
// and what it accepts has a signal and a valid PDQ when one is given.
func FuzzParseMatch(f *testing.F) {
	h := strings.Repeat("0f", 32)
	for _, s := range []string{
		`{"pdq":"` + h + `"}`, `{"md5":"0123456789abcdef0123456789abcdef"}`, `{"text":"buy now","urls":["x.example"]}`,
		`{"image":"aGVsbG8="}`, `{"image_url":"http://x/y.jpg","banks":["a"]}`, `{"pdq":"xyz"}`, `{}`, `[]`, `null`,
		`{"banks":["A.B"],"text":"x"}`, `{"image":"aGVsbG8=","pdq":"` + h + `"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := query.ParseMatch(data)
		if err != nil {
			var e *query.Error
			if !errors.As(err, &e) || (e.Code != query.CodeBadRequest && e.Code != query.CodeTooLarge) || e.Message == "" {
				t.Fatalf("error %v is not a 400/413 query.Error", err)
			}
			return
		}
		if len(r.Image) == 0 && r.ImageURL == "" && r.PDQ == "" && r.MD5 == "" && strings.TrimSpace(r.Text) == "" && len(r.URLs) == 0 {
			t.Fatalf("accepted a request without a signal: %s", data)
		}
		for _, b := range r.Banks {
			if banks.ValidateName(b) != nil {
				t.Fatalf("accepted bank name %q", b)
			}
		}
	})
}

// Embedding entries: thresholds below the calibration's noise floor are
// refused; written concepts are embedded by the service; an exemplar image
// is added by its vector; lookups by text and by image match them by cosine.
func TestBankEmbeddings(t *testing.T) {
	var version string
	s := newStackWith(t, query.Config{}, nil, func(d *query.Deps) {
		version = d.Encoder.Version()
		d.Calibration = &banks.Calibration{ModelVersion: version, Quantile: banks.NoiseQuantile,
			Floors: map[banks.Pair]float32{banks.PairImageImage: 0.9, banks.PairTextText: 0.9, banks.PairTextImage: 0.2, banks.PairImageText: 0.2}}
	})
	ctx := context.Background()
	err := s.cl.Call(ctx, "admin.banks.create", json.RawMessage(`{"name":"loose","thresholds":{"embedding":{"text_text":0.5}}}`), nil)
	if codeOf(err) != 400 || !strings.Contains(err.Error(), "threshold below the noise floor") || !strings.Contains(err.Error(), "0.9000") {
		t.Fatalf("a threshold below the floor: %v", err)
	}
	if err := s.cl.Call(ctx, "admin.banks.create", json.RawMessage(`{"name":"concepts","thresholds":{"embedding":{"text_text":0.97,"image_image":0.97}}}`), nil); err != nil {
		t.Fatal(err)
	}
	concept := s.texts[0]
	var ch query.BankChangeResponse
	if err := s.cl.Call(ctx, "admin.banks.add", query.BankAddRequest{Bank: "concepts", Entries: []banks.Entry{{Type: banks.SignalEmbedding, Modality: "text", Value: concept}}}, &ch); err != nil {
		t.Fatal(err)
	}
	var name string
	var img []byte
	for n, b := range s.imgs {
		name, img = n, b
		break
	}
	if err := s.cl.Call(ctx, "admin.banks.add", query.BankAddRequest{Bank: "concepts", Image: img, Exemplar: true, Note: name}, &ch); err != nil {
		t.Fatal(err)
	}
	var gr query.BankGetResponse
	if err := s.cl.Call(ctx, "banks.get", query.BankNameRequest{Name: "concepts", Entries: true}, &gr); err != nil {
		t.Fatal(err)
	}
	if gr.Bank.Counts["embedding_text"] != 1 || gr.Bank.Counts["embedding_image"] != 1 {
		t.Fatalf("bank counts %v, want one concept and one exemplar", gr.Bank.Counts)
	}
	for _, e := range gr.Entries {
		if e.ModelVersion != version {
			t.Fatalf("entry %s has model version %q, want %q", e.ID, e.ModelVersion, version)
		}
	}
	var mr query.MatchResponse
	if err := s.cl.Call(ctx, "match", query.MatchRequest{Text: concept}, &mr); err != nil {
		t.Fatal(err)
	}
	if len(mr.Matches) != 1 || mr.Matches[0].SignalType != banks.SignalEmbedding || mr.Matches[0].Modality != "text" || *mr.Matches[0].Score < 0.99 {
		t.Fatalf("the concept's own text: %+v", mr.Matches)
	}
	if err := s.cl.Call(ctx, "match", query.MatchRequest{Image: img}, &mr); err != nil {
		t.Fatal(err)
	}
	if len(mr.Matches) != 1 || mr.Matches[0].Modality != "image" || *mr.Matches[0].Score < 0.99 {
		t.Fatalf("the exemplar itself: %+v", mr.Matches)
	}
	// A concept without its text, an exemplar sent as an entry: 400.
	for _, body := range []string{`{"bank":"concepts","entries":[{"signal_type":"embedding","modality":"text","signal":"  "}]}`,
		`{"bank":"concepts","entries":[{"signal_type":"embedding","modality":"image","signal":"x"}]}`,
		`{"bank":"concepts","entries":[{"signal_type":"embedding","signal":"no modality"}]}`} {
		if err := s.cl.Raw(ctx, "admin.banks.add", []byte(body), nil); codeOf(err) != 400 {
			t.Errorf("%s: %v, want 400", body, err)
		}
	}
}

// A meme (caption band) or a screenshot of a banked image matches its PDQ
// entry through the picture inside it, and the match says where in the
// query the picture was; the whole re-post is beyond PDQ's bound, and the
// banked image itself matches as a whole (no region), by PDQ and MD5.
func TestBankMatchContentRegion(t *testing.T) {
	s := newStack(t, query.Config{}, nil)
	ctx := context.Background()
	var ch query.BankChangeResponse
	if err := s.cl.Call(ctx, "admin.banks.create", query.BankRequest{Name: "memes", Action: banks.ActionReview}, &ch); err != nil {
		t.Fatal(err)
	}
	orig := readImage(t, "../testdata/pdq/images/dih/bridge-1-original.jpg")
	if err := s.cl.Call(ctx, "admin.banks.add", query.BankAddRequest{Bank: "memes", Image: orig}, &ch); err != nil {
		t.Fatal(err)
	}
	match := func(img []byte) query.MatchResponse {
		t.Helper()
		var mr query.MatchResponse
		if err := s.cl.Call(ctx, "match", query.MatchRequest{Image: img}, &mr); err != nil {
			t.Fatal(err)
		}
		return mr
	}
	mr := match(orig)
	if len(mr.Matches) != 2 || mr.Matches[0].SignalType != banks.SignalPDQ || mr.Matches[0].Region != nil || mr.Matches[1].SignalType != banks.SignalMD5 {
		t.Fatalf("the banked image: %+v, want PDQ (whole) then MD5", mr.Matches)
	}
	entryPDQ, err := pdq.ParseHex(mr.Matches[0].Signal)
	if err != nil {
		t.Fatal(err)
	}
	src, err := decode(orig)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []reposts.Kind{reposts.Caption, reposts.Screenshot} {
		for seed := range uint64(2) {
			rp, err := reposts.Apply(src, []reposts.Kind{k}, rand.New(rand.NewPCG(seed, 5)))
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := png.Encode(&buf, rp.Image); err != nil {
				t.Fatal(err)
			}
			if h, _ := pdq.FromImage(rp.Image); pdq.Distance(h, entryPDQ) <= 31 {
				t.Fatalf("%s seed %d: the whole re-post is within PDQ's bound; the test shows nothing", k, seed)
			}
			mr := match(buf.Bytes())
			if len(mr.Matches) != 1 || mr.Matches[0].SignalType != banks.SignalPDQ || *mr.Matches[0].Distance > 31 {
				t.Errorf("%s seed %d: matches %+v, want the bridge's PDQ entry", k, seed, mr.Matches)
				continue
			}
			pl := rp.Placed
			want := []int{pl.Min.X, pl.Min.Y, pl.Max.X, pl.Max.Y}
			got := mr.Matches[0].Region
			if len(got) != 4 {
				t.Errorf("%s seed %d: region %v, want about %v", k, seed, got, want)
				continue
			}
			for i := range want {
				if d := got[i] - want[i]; d < -4 || d > 4 {
					t.Errorf("%s seed %d: region %v, picture placed at %v", k, seed, got, want)
					break
				}
			}
		}
	}
	// Another photo matches nothing, through no region either.
	if mr := match(readImage(t, "../testdata/pdq/images/labelme-subset/q0004.jpg")); len(mr.Matches) != 0 {
		t.Errorf("another photo: %+v", mr.Matches)
	}
}

// A watermark across a smooth generated landscape moves its whole-image
// PDQ hash past the bound; xmodal.v1.match finds the banked picture by the
// query's cleaned hash and says so ("cleaned", no region).
func TestBankMatchWatermark(t *testing.T) {
	s := newStack(t, query.Config{}, nil)
	ctx := context.Background()
	var ch query.BankChangeResponse
	if err := s.cl.Call(ctx, "admin.banks.create", query.BankRequest{Name: "pictures", Action: banks.ActionReview}, &ch); err != nil {
		t.Fatal(err)
	}
	pic := reposts.Photo(0, 1000, 640, 480)
	if err := s.cl.Call(ctx, "admin.banks.add", query.BankAddRequest{Bank: "pictures", Image: pngOf(t, pic)}, &ch); err != nil {
		t.Fatal(err)
	}
	rp, err := reposts.Apply(pic, []reposts.Kind{reposts.Watermark}, rand.New(rand.NewPCG(0, 9)))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := pdq.FromImage(pic)
	if b, _ := pdq.FromImage(rp.Image); pdq.Distance(a, b) <= 31 {
		t.Fatal("the watermarked copy is within PDQ's bound; the test shows nothing")
	}
	var mr query.MatchResponse
	if err := s.cl.Call(ctx, "match", query.MatchRequest{Image: pngOf(t, rp.Image)}, &mr); err != nil {
		t.Fatal(err)
	}
	if len(mr.Matches) != 1 || mr.Matches[0].SignalType != banks.SignalPDQ || !mr.Matches[0].Cleaned || mr.Matches[0].Region != nil || *mr.Matches[0].Distance > 31 {
		t.Errorf("matches %+v, want the picture's PDQ entry by the cleaned hash", mr.Matches)
	}
}

// Hostile image queries against a bank of photos' PDQ entries: plain white
// and black pictures, an 8 x 8 image, a picture that is all caption band
// and a text-only picture answer with no match (and no error), whole or
// through a content rectangle; an image over the pixel cap is refused 413.
func TestBankMatchAdversarialImages(t *testing.T) {
	s := newStack(t, query.Config{}, nil)
	ctx := context.Background()
	var ch query.BankChangeResponse
	if err := s.cl.Call(ctx, "admin.banks.create", query.BankRequest{Name: "photos", Action: banks.ActionReview}, &ch); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"../testdata/pdq/images/dih/bridge-1-original.jpg", "../testdata/pdq/images/labelme-subset/q0004.jpg"} {
		if err := s.cl.Call(ctx, "admin.banks.add", query.BankAddRequest{Bank: "photos", Image: readImage(t, f)}, &ch); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		img  image.Image
	}{
		{"white", plainImage(640, 480, color.White)}, {"black", plainImage(300, 300, color.Black)},
		{"tiny", plainImage(8, 8, color.RGBA{200, 30, 30, 255})}, {"caption band only", captionBandImage()},
	} {
		var mr query.MatchResponse
		if err := s.cl.Call(ctx, "match", query.MatchRequest{Image: pngOf(t, tc.img)}, &mr); err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if len(mr.Matches) != 0 {
			t.Errorf("%s: matched %+v", tc.name, mr.Matches)
		}
	}
	// Over the pixel cap (a PNG header claiming 20000 x 20000): 413, not a decode.
	err := s.cl.Call(ctx, "match", query.MatchRequest{Image: overPixelCapPNG(t)}, nil)
	if code := codeOf(err); code != 413 {
		t.Errorf("an image over the pixel cap: %v, want 413", err)
	}
}

// An image added with crops keeps its windows: a 75 % crop of it, which
// its whole-image hash misses, matches with the part of the entry it
// shows; the listing leaves the windows out and counts them. Hostile
// images and another photo match nothing; crops need a PDQ image of some
// size.
func TestBankMatchCrops(t *testing.T) {
	s := newStack(t, query.Config{}, nil)
	ctx := context.Background()
	var ch query.BankChangeResponse
	if err := s.cl.Call(ctx, "admin.banks.create", query.BankRequest{Name: "photos", Action: banks.ActionBlock}, &ch); err != nil {
		t.Fatal(err)
	}
	coffee := "../testdata/neardup/photos/coffee.jpg"
	for _, f := range []string{coffee, "../testdata/pdq/images/dih/bridge-1-original.jpg"} {
		if err := s.cl.Call(ctx, "admin.banks.add", query.BankAddRequest{Bank: "photos", Image: readImage(t, f), Crops: true}, &ch); err != nil {
			t.Fatal(err)
		}
	}
	var got query.BankGetResponse
	if err := s.cl.Call(ctx, "banks.get", query.BankNameRequest{Name: "photos", Entries: true}, &got); err != nil {
		t.Fatal(err)
	}
	if got.Bank.Windows != 2 || len(got.Entries) != 4 {
		t.Fatalf("banks.get: %d entries with windows, %d entries; want 2 and 4", got.Bank.Windows, len(got.Entries))
	}
	for _, e := range got.Entries {
		if e.Windows != nil {
			t.Errorf("entry %s listed with its windows", e.ID)
		}
	}
	src, _, err := image.Decode(bytes.NewReader(readImage(t, coffee)))
	if err != nil {
		t.Fatal(err)
	}
	b := src.Bounds()
	crop := image.NewRGBA(image.Rect(0, 0, b.Dx()*3/4, b.Dy()*3/4))
	draw.Draw(crop, crop.Bounds(), src, image.Pt(b.Min.X+b.Dx()/5, b.Min.Y+b.Dy()/8), draw.Src)
	ph := pdq.Hasher{MaxSide: query.PDQMaxSide}
	a, _ := ph.Hash(src)
	if c, _ := ph.Hash(crop); pdq.Distance(a, c) <= 31 {
		t.Fatal("the crop is within PDQ's bound; the test shows nothing")
	}
	var mr query.MatchResponse
	if err := s.cl.Call(ctx, "match", query.MatchRequest{Image: pngOf(t, crop)}, &mr); err != nil {
		t.Fatal(err)
	}
	if len(mr.Matches) != 1 || mr.Matches[0].Signal != a.String() || len(mr.Matches[0].Shown) != 4 || mr.Matches[0].Windows < 2 ||
		!slices.Equal(mr.Matches[0].Region, []int{0, 0, crop.Bounds().Dx(), crop.Bounds().Dy()}) {
		t.Fatalf("matches %+v, want coffee's PDQ entry by its windows", mr.Matches)
	}
	if mr.Matches[0].Pixels < 0.9 {
		t.Errorf("pixels %.3f for an exact crop", mr.Matches[0].Pixels)
	}
	if sh := mr.Matches[0].Shown; sh[0] < 0.15 || sh[0] > 0.25 || sh[2] < 0.9 || sh[2] > 1 {
		t.Errorf("shown %v, want about [0.2 0.125 0.95 0.875]", sh)
	}
	others := map[string]image.Image{
		"white": plainImage(640, 480, color.White), "black": plainImage(300, 300, color.Black),
		"tiny": plainImage(8, 8, color.RGBA{200, 30, 30, 255}), "caption band only": captionBandImage(),
	}
	if other, _, err := image.Decode(bytes.NewReader(readImage(t, "../testdata/neardup/photos/chelsea.jpg"))); err == nil {
		others["another photo"] = other
	}
	for name, img := range others {
		var mr query.MatchResponse
		if err := s.cl.Call(ctx, "match", query.MatchRequest{Image: pngOf(t, img)}, &mr); err != nil || len(mr.Matches) != 0 {
			t.Errorf("%s: %+v, %v", name, mr.Matches, err)
		}
	}
	for name, req := range map[string]query.BankAddRequest{
		"exemplar":  {Bank: "photos", Image: readImage(t, coffee), Crops: true, Exemplar: true},
		"no image":  {Bank: "photos", Entries: []banks.Entry{{Type: banks.SignalPDQ, Value: a.String()}}, Crops: true},
		"too small": {Bank: "photos", Image: pngOf(t, plainImage(8, 8, color.White)), Crops: true},
		"too flat":  {Bank: "photos", Image: pngOf(t, plainImage(200, 200, color.White)), Crops: true},
	} {
		if err := s.cl.Call(ctx, "admin.banks.add", req, &ch); query.AsError(err) == nil || query.AsError(err).Code != query.CodeBadRequest {
			t.Errorf("%s: %v, want 400", name, err)
		}
	}
}
