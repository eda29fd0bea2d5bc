package query_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/xmodal/xmodal/query"
)

const testToken = "0123456789abcdef-admin"

func newGateway(t *testing.T) (*stack, *httptest.Server) {
	t.Helper()
	s := newStackWith(t, query.Config{}, nil, func(d *query.Deps) { d.Cache = query.NewLRUCache(100, time.Minute) })
	srv := httptest.NewServer(query.NewGateway(s.svc, query.GatewayOptions{AdminToken: testToken}))
	t.Cleanup(srv.Close)
	return s, srv
}

func post(t *testing.T, url, body string, hdr map[string]string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func TestGatewaySearchMirrorsNATS(t *testing.T) {
	s, srv := newGateway(t)
	code, b := post(t, srv.URL+"/v1/search", `{"text":"`+s.texts[0]+`","target":"text","k":2}`, nil)
	if code != 200 {
		t.Fatalf("search: %d %s", code, b)
	}
	var res query.SearchResponse
	if err := json.Unmarshal(b, &res); err != nil || len(res.Hits) != 2 || res.Hits[0].PostID != "t0" || res.Cached {
		t.Fatalf("search reply %s (%v)", b, err)
	}
	// The HTTP and NATS paths share the cache.
	nres, err := s.cl.Search(t.Context(), &query.SearchRequest{Text: s.texts[0], Target: "text", K: 2})
	if err != nil || !nres.Cached {
		t.Errorf("NATS after HTTP: cached=%v err=%v", nres.Cached, err)
	}
	for _, path := range []string{"/v1/stats", "/v1/"} {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !json.Valid(b) {
			t.Errorf("GET %s: %d %s", path, res.StatusCode, b)
		}
		if path == "/v1/" && !strings.Contains(string(b), `"admin.delete"`) {
			t.Errorf("endpoint list %s lacks admin.delete", b)
		}
	}
	if code, b := post(t, srv.URL+"/v1/get", `{"post_ids":["t1"]}`, nil); code != 200 || !strings.Contains(string(b), `"t1#text"`) {
		t.Errorf("get: %d %s", code, b)
	}
}

func TestGatewayErrors(t *testing.T) {
	s, srv := newGateway(t)
	auth := map[string]string{"Authorization": "Bearer " + testToken}
	big := `{"text":"` + strings.Repeat("a", query.MaxRequestSize) + `"}`
	tests := []struct {
		name, path, body string
		hdr              map[string]string
		code             int
	}{
		{"malformed json", "/v1/search", `{"text":`, nil, 400},
		{"unknown field", "/v1/search", `{"text":"x","colour":1}`, nil, 400},
		{"wrong type", "/v1/search", `{"k":"ten","text":"x"}`, nil, 400},
		{"huge k", "/v1/search", `{"text":"x","k":1e12}`, nil, 400},
		{"oversized body", "/v1/search", big, nil, 413},
		{"unknown endpoint", "/v1/nope", `{}`, nil, 404},
		{"not found", "/v1/get", `{"pks":["zz#text"]}`, nil, 404},
		{"admin without token", "/v1/admin/delete", `{"post_ids":["t0"]}`, nil, 401},
		{"admin with a wrong token", "/v1/admin/delete", `{"post_ids":["t0"]}`, map[string]string{"Authorization": "Bearer nope"}, 401},
		{"admin bad request", "/v1/admin/delete", `{}`, auth, 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, b := post(t, srv.URL+tc.path, tc.body, tc.hdr)
			var eb query.ErrorBody
			if code != tc.code || json.Unmarshal(b, &eb) != nil || eb.Error.Code != tc.code || eb.Error.Message == "" {
				t.Fatalf("got %d %s, want %d with an error body", code, trunc(string(b)), tc.code)
			}
		})
	}
	res, err := http.Get(srv.URL + "/v1/search")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 405 {
		t.Errorf("GET /v1/search: %d, want 405", res.StatusCode)
	}
	// With the token the delete goes through and the post is gone.
	if code, b := post(t, srv.URL+"/v1/admin/delete", `{"post_ids":["t0"]}`, auth); code != 200 || !strings.Contains(string(b), `"count":1`) {
		t.Fatalf("admin delete: %d %s", code, b)
	}
	if _, err := s.cl.Get(t.Context(), &query.GetRequest{PostIDs: []string{"t0"}}); query.AsError(err).Code != 404 {
		t.Errorf("t0 still there: %v", err)
	}
	// No token configured: admin over HTTP is off.
	off := httptest.NewServer(query.NewGateway(s.svc, query.GatewayOptions{}))
	defer off.Close()
	if code, _ := post(t, off.URL+"/v1/admin/delete", `{"post_ids":["t1"]}`, auth); code != 403 {
		t.Errorf("admin with no token configured: %d, want 403", code)
	}
}

func TestGatewayPage(t *testing.T) {
	_, srv := newGateway(t)
	for _, tc := range []struct{ path, want, ctype string }{
		{"/", `id="drop"`, "text/html"},
		{"/static/app.js", "neardup", "javascript"},
		{"/static/style.css", ".grid", "text/css"},
	} {
		res, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !bytes.Contains(b, []byte(tc.want)) || !strings.Contains(res.Header.Get("Content-Type"), tc.ctype) {
			t.Errorf("GET %s: %d %s %q", tc.path, res.StatusCode, res.Header.Get("Content-Type"), trunc(string(b)))
		}
		if res.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s: no CSP", tc.path)
		}
	}
	if res, _ := http.Get(srv.URL + "/etc/passwd"); res.StatusCode != 404 {
		t.Errorf("unknown path: %d", res.StatusCode)
	}
}

// TestGatewayIndexTellsThePage: GET /v1/ lists the endpoints and what the
// page needs: whether admin is on, the post link, the PDQ quality line.
func TestGatewayIndexTellsThePage(t *testing.T) {
	s, _ := newGateway(t)
	for _, tc := range []struct {
		opt       query.GatewayOptions
		admin     bool
		postURL   string
		endpoints []string
	}{
		{query.GatewayOptions{}, false, "", []string{"admin.banks.add", "admin.banks.create", "admin.banks.delete", "admin.banks.export", "admin.banks.import", "admin.banks.remove", "admin.banks.sweep", "admin.banks.update", "admin.dedup", "admin.delete", "banks.events", "banks.get", "banks.list", "banks.sweeps", "cluster", "get", "match", "neardup", "search", "stats", "trending"}},
		{query.GatewayOptions{AdminToken: testToken, PostURL: "https://social.example/p/{id}"}, true, "https://social.example/p/{id}", nil},
	} {
		srv := httptest.NewServer(query.NewGateway(s.svc, tc.opt))
		res, err := http.Get(srv.URL + "/v1/")
		if err != nil {
			t.Fatal(err)
		}
		var idx query.GatewayIndex
		err = json.NewDecoder(res.Body).Decode(&idx)
		res.Body.Close()
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		if idx.Admin != tc.admin || idx.PostURL != tc.postURL || idx.LowPDQQuality != 50 || idx.NearDupDistance != query.DefaultNearDupDistance {
			t.Errorf("GET /v1/ with %+v: %+v", tc.opt, idx)
		}
		if tc.endpoints != nil && strings.Join(idx.Endpoints, " ") != strings.Join(tc.endpoints, " ") {
			t.Errorf("endpoints %v, want %v", idx.Endpoints, tc.endpoints)
		}
	}
}

func TestCheckPostURL(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"", true},
		{"https://social.example/p/{id}", true},
		{"http://intranet:8080/post?id={id}&x=1", true},
		{"https://social.example/p/", false},
		{"ftp://social.example/{id}", false},
		{"/relative/{id}", false},
		{"javascript:alert({id})", false},
	} {
		if err := query.CheckPostURL(tc.in); (err == nil) != tc.ok {
			t.Errorf("CheckPostURL(%q) = %v, want ok %v", tc.in, err, tc.ok)
		}
	}
}
