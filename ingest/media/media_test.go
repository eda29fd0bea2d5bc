package media

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/xmodal/xmodal/encoders/imageprep"
)

// imgServer serves /img (a PNG), /redir?to=URL (302) and /chain/N (N
// redirects, then /img), counting requests per path.
type imgServer struct {
	*httptest.Server
	png  []byte
	mu   sync.Mutex
	hits map[string]int
}

func newImgServer(t *testing.T, png []byte) *imgServer {
	t.Helper()
	s := &imgServer{png: png, hits: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/img", func(w http.ResponseWriter, r *http.Request) {
		s.hit("/img")
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(s.png)
	})
	mux.HandleFunc("/redir", func(w http.ResponseWriter, r *http.Request) {
		s.hit("/redir")
		http.Redirect(w, r, r.URL.Query().Get("to"), http.StatusFound)
	})
	mux.HandleFunc("/chain/{n}", func(w http.ResponseWriter, r *http.Request) {
		s.hit("/chain")
		n, _ := strconv.Atoi(r.PathValue("n"))
		if n <= 0 {
			http.Redirect(w, r, "/img", http.StatusFound)
			return
		}
		http.Redirect(w, r, "/chain/"+strconv.Itoa(n-1), http.StatusFound)
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func (s *imgServer) hit(path string) {
	s.mu.Lock()
	s.hits[path]++
	s.mu.Unlock()
}

func (s *imgServer) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

func (s *imgServer) port() string {
	u, _ := url.Parse(s.URL)
	return u.Port()
}

// via returns the server's base URL with host in place of 127.0.0.1.
func (s *imgServer) via(host string) string { return "http://" + net.JoinHostPort(host, s.port()) }

// checkDials fails when the fetcher got as far as dialling a non-loopback
// address, or dialled at all when it should not have.
func checkDials(t *testing.T, log *dialLog, wantNone bool) {
	t.Helper()
	for _, a := range log.list() {
		ap := netip.MustParseAddrPort(a)
		if !ap.Addr().Unmap().IsLoopback() {
			t.Errorf("dialled non-loopback address %s", a)
		}
	}
	if wantNone && len(log.list()) > 0 {
		t.Errorf("dialled %v, want no dial at all", log.list())
	}
}

func asError(t *testing.T, err error) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *media.Error", err, err)
	}
	return e
}

func TestNew(t *testing.T) {
	f, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	c := f.cfg
	if c.ConnectTimeout != 3*time.Second || c.ReadTimeout != 10*time.Second || c.TotalTimeout != 15*time.Second ||
		c.MaxBytes != 8<<20 || c.MaxRedirects != 3 || c.Retries != 2 || c.RetryBackoff != 200*time.Millisecond ||
		c.Concurrency != 32 || c.PerHost != 4 || c.UserAgent == "" {
		t.Errorf("defaults: %+v", c)
	}
	f, err = New(Config{Retries: -1, MaxRedirects: -1})
	if err != nil || f.cfg.Retries != 0 || f.cfg.MaxRedirects != 0 {
		t.Errorf("-1 means none: %+v, %v", f.cfg, err)
	}
	for _, tc := range []struct {
		name  string
		cfg   Config
		field string
	}{
		{"negative connect", Config{ConnectTimeout: -1}, "ConnectTimeout"},
		{"negative read", Config{ReadTimeout: -time.Second}, "ReadTimeout"},
		{"negative total", Config{TotalTimeout: -time.Second}, "TotalTimeout"},
		{"read over total", Config{ReadTimeout: 20 * time.Second}, "ReadTimeout"},
		{"connect over total", Config{ConnectTimeout: 2 * time.Second, TotalTimeout: time.Second, ReadTimeout: time.Second}, "ConnectTimeout"},
		{"negative backoff", Config{RetryBackoff: -1}, "RetryBackoff"},
		{"negative max bytes", Config{MaxBytes: -1}, "MaxBytes"},
		{"huge max bytes", Config{MaxBytes: 2 << 30}, "MaxBytes"},
		{"redirects", Config{MaxRedirects: -2}, "MaxRedirects"},
		{"too many redirects", Config{MaxRedirects: 21}, "MaxRedirects"},
		{"retries", Config{Retries: 11}, "Retries"},
		{"concurrency", Config{Concurrency: -1}, "Concurrency"},
		{"per host", Config{PerHost: -1}, "PerHost"},
		{"user agent", Config{UserAgent: "x\r\nHost: evil"}, "UserAgent"},
		{"bad CIDR", Config{AllowPrivate: []string{"10.0.0.0/33"}}, "AllowPrivate[0]"},
		{"bad host", Config{AllowPrivate: []string{"127.0.0.0/8", "not a host"}}, "AllowPrivate[1]"},
		{"empty entry", Config{AllowPrivate: []string{""}}, "AllowPrivate[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Errorf("New(%+v) = %v, want an error naming %s", tc.cfg, err, tc.field)
			}
		})
	}
}

// TestRefused: every way of reaching a non-public address is refused
// unless allow-listed, and refused before any dial.
func TestRefused(t *testing.T) {
	srv := newImgServer(t, testPNG(t, 8, 8))
	dns := startDNS(t, map[string][]string{
		"media.test":   {"127.0.0.1"},
		"evil.test":    {"127.0.0.1"},
		"evil6.test":   {"::1"},
		"private.test": {"10.0.0.1", "192.168.0.1"},
		"meta.test":    {"169.254.169.254"},
		"mapped.test":  {"::ffff:10.0.0.1"},
		"2130706433":   {"127.0.0.1"}, // as a resolver that accepts inet_aton forms would answer
	})
	allowMedia := []string{"media.test"}
	redir := func(to string) string { return srv.via("media.test") + "/redir?to=" + url.QueryEscape(to) }
	for _, tc := range []struct {
		name   string
		url    string
		allow  []string
		reason string
		dialOK bool // the first hop is dialled (to the allowed server)
	}{
		{"loopback literal", srv.URL + "/img", nil, "address 127.0.0.1 is loopback", false},
		{"private literal", "http://10.0.0.1/img", nil, "address 10.0.0.1 is private", false},
		{"metadata literal", "http://169.254.169.254/latest/meta-data/", nil, "address 169.254.169.254 is link-local", false},
		{"IPv6 loopback literal", srv.via("::1") + "/img", nil, "address ::1 is loopback", false},
		{"IPv4-mapped loopback", "http://[::ffff:127.0.0.1]:" + srv.port() + "/img", nil, "address ::ffff:127.0.0.1 is loopback", false},
		{"NAT64 of private", "http://[64:ff9b::a00:1]/img", nil, "10.0.0.1, which is private", false},
		{"CGNAT", "http://100.64.1.2/img", nil, "shared address space", false},
		{"zero network", "http://0.0.0.0:" + srv.port() + "/img", nil, "address 0.0.0.0 is unspecified", false},
		{"broadcast", "http://255.255.255.255/img", nil, "broadcast", false},
		{"multicast", "http://224.0.0.1/img", nil, "multicast", false},
		{"unique local", "http://[fd00::1]/img", nil, "private (unique local)", false},
		{"link-local v6", "http://[fe80::1%25lo]/img", nil, "link-local", false},
		{"name to loopback", srv.via("evil.test") + "/img", nil, "address 127.0.0.1 is loopback", false},
		{"name to loopback, other name allowed", srv.via("evil.test") + "/img", allowMedia, "address 127.0.0.1 is loopback", false},
		{"name to v6 loopback", srv.via("evil6.test") + "/img", nil, "address ::1 is loopback", false},
		{"name to private", "http://private.test/img", nil, "address 10.0.0.1 is private", false},
		{"name to metadata", "http://meta.test/latest/meta-data/", nil, "address 169.254.169.254 is link-local", false},
		{"name to mapped private", "http://mapped.test/img", nil, "address ::ffff:10.0.0.1 is private", false},
		// Go's resolver rejects all-numeric names (it does not read them as
		// inet_aton IPs); a cgo resolver would return 127.0.0.1, which the
		// post-resolution check refuses like "name to loopback".
		{"decimal IP name", "http://2130706433:" + srv.port() + "/img", nil, "host 2130706433 not found", false},
		{"unknown name", "http://nowhere.test/img", nil, "host nowhere.test not found", false},
		{"redirect to 127.0.0.1", redir(srv.URL + "/img"), allowMedia, "redirect to " + srv.URL + "/img: address 127.0.0.1 is loopback", true},
		{"redirect to 10.0.0.1", redir("http://10.0.0.1/img"), allowMedia, "address 10.0.0.1 is private", true},
		{"redirect to metadata", redir("http://169.254.169.254/latest/meta-data/iam/"), allowMedia, "address 169.254.169.254 is link-local", true},
		{"redirect to [::1]", redir(srv.via("::1") + "/img"), allowMedia, "address ::1 is loopback", true},
		{"redirect to name of loopback", redir(srv.via("evil.test") + "/img"), allowMedia, "redirect to http://evil.test:" + srv.port() + "/img: address 127.0.0.1 is loopback", true},
		{"redirect to file", redir("file:///etc/passwd"), allowMedia, `scheme "file" is not http or https`, true},
		{"redirect to gopher", redir("gopher://media.test:70/"), allowMedia, `scheme "gopher"`, true},
		{"too many redirects", srv.via("media.test") + "/chain/4", allowMedia, "more than 3 redirects", true},
		{"scheme ftp", "ftp://media.test/img", allowMedia, `scheme "ftp"`, false},
		{"scheme file", "file:///etc/passwd", nil, `scheme "file"`, false},
		{"no host", "http:///img", nil, "no host", false},
		{"user info", "http://user:pw@media.test/img", allowMedia, "user info", false},
		{"garbage", "http://[::1/img", nil, "invalid URL", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, log := newTestFetcher(t, Config{AllowPrivate: tc.allow, Retries: 2, RetryBackoff: time.Millisecond}, dns)
			before := srv.count("/img")
			b, err := f.Fetch(context.Background(), tc.url)
			if err == nil {
				t.Fatalf("fetched %d bytes, want a refusal", len(b))
			}
			e := asError(t, err)
			if !strings.Contains(e.Reason, tc.reason) {
				t.Errorf("reason %q, want it to contain %q", e.Reason, tc.reason)
			}
			if e.Temporary {
				t.Errorf("refusal marked temporary: %v", e)
			}
			if e.URL != tc.url {
				t.Errorf("Error.URL %q, want %q", e.URL, tc.url)
			}
			if got := srv.count("/img"); got != before {
				t.Errorf("/img was served %d times", got-before)
			}
			checkDials(t, log, !tc.dialOK)
			if tc.dialOK && len(log.list()) != 1 { // one dial, to the allowed server; no retry
				t.Errorf("dials %v, want exactly one", log.list())
			}
		})
	}
}

// TestAllowed: allow-listed names and ranges are reachable, directly and
// through redirects, and a name with both refused and allowed addresses is
// dialled only at the allowed one.
func TestAllowed(t *testing.T) {
	img := testPNG(t, 8, 8)
	srv := newImgServer(t, img)
	dns := startDNS(t, map[string][]string{
		"media.test": {"127.0.0.1"},
		"mixed.test": {"10.0.0.1", "169.254.169.254", "127.0.0.1"},
	})
	for _, tc := range []struct {
		name  string
		url   string
		allow []string
	}{
		{"CIDR", srv.URL + "/img", []string{"127.0.0.0/8"}},
		{"single address", srv.URL + "/img", []string{"127.0.0.1"}},
		{"host name", srv.via("media.test") + "/img", []string{"media.test"}},
		{"host name, any case and trailing dot", srv.via("MEDIA.test.") + "/img", []string{"Media.Test"}},
		{"redirect within allowed range", srv.URL + "/redir?to=" + url.QueryEscape(srv.via("media.test")+"/img"), []string{"127.0.0.0/8"}},
		{"two redirects", srv.URL + "/chain/2", []string{"127.0.0.0/8"}},
		{"mixed answers: only the allowed address is dialled", srv.via("mixed.test") + "/img", []string{"127.0.0.0/8"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, log := newTestFetcher(t, Config{AllowPrivate: tc.allow}, dns)
			b, err := f.Fetch(context.Background(), tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != string(img) {
				t.Errorf("got %d bytes, want the %d-byte image", len(b), len(img))
			}
			checkDials(t, log, false)
		})
	}
}

func TestBodyLimits(t *testing.T) {
	const limit = 1000
	img := testPNG(t, 20, 20) // > 1000 bytes
	if len(img) <= limit {
		t.Fatalf("test image only %d bytes", len(img))
	}
	exact := append(append([]byte(nil), img[:limit-1]...), 0)
	mux := http.NewServeMux()
	var streamed atomic.Int64
	mux.HandleFunc("/declared", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(img)))
		_, _ = w.Write(img)
	})
	mux.HandleFunc("/undeclared", func(w http.ResponseWriter, r *http.Request) {
		// Chunked, no Content-Length: keep writing until the client hangs up.
		fl := w.(http.Flusher)
		for i := 0; i < 1<<15 && r.Context().Err() == nil; i++ { // ~50 MB if nobody hangs up
			n, err := w.Write(img)
			streamed.Add(int64(n))
			if err != nil {
				return
			}
			fl.Flush()
		}
	})
	mux.HandleFunc("/exact", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(exact) })
	mux.HandleFunc("/lying", func(w http.ResponseWriter, r *http.Request) {
		// Declares a small length, then sends more: Go's server refuses to
		// send more than declared, so hijack and write raw.
		c, bw, _ := w.(http.Hijacker).Hijack()
		defer c.Close()
		fmt.Fprintf(bw, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", 600)
		_, _ = bw.Write(img)
		_ = bw.Flush()
	})
	srv := httptest.NewServer(mux)
	f, _ := newTestFetcher(t, Config{MaxBytes: limit, AllowPrivate: []string{"127.0.0.1"}}, nil)
	for _, tc := range []struct {
		path, reason string
		size         int
	}{
		{"/declared", fmt.Sprintf("body over 1000 bytes (Content-Length %d)", len(img)), 0},
		{"/undeclared", "body over 1000 bytes", 0},
		{"/exact", "", limit},
		{"/lying", "", 600}, // the transport stops at the declared length
	} {
		t.Run(tc.path, func(t *testing.T) {
			b, err := f.Fetch(context.Background(), srv.URL+tc.path)
			if tc.reason == "" {
				if err != nil || len(b) != tc.size {
					t.Fatalf("got %d bytes, %v; want %d bytes", len(b), err, tc.size)
				}
				return
			}
			e := asError(t, err)
			if e.Reason != tc.reason || e.Temporary {
				t.Errorf("got %q (temporary %v), want %q", e.Reason, e.Temporary, tc.reason)
			}
		})
	}
	srv.Close() // waits for the streaming handler to see the hang-up
	// Loopback socket buffers absorb a few MB before the writer blocks.
	if n := streamed.Load(); n > 16<<20 {
		t.Errorf("server streamed %d bytes before the client hung up", n)
	}
}

// TestSlowLoris: a server trickling 1 byte every 200ms is cut off by the
// read deadline, and not retried.
func TestSlowLoris(t *testing.T) {
	img := testPNG(t, 8, 8)
	var hits atomic.Int32
	trickle := func(headersFirst bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			fl := w.(http.Flusher)
			if headersFirst {
				w.Header().Set("Content-Length", strconv.Itoa(len(img)))
				w.WriteHeader(http.StatusOK)
				fl.Flush()
			}
			for i := range img {
				select {
				case <-r.Context().Done():
					return
				case <-time.After(200 * time.Millisecond):
				}
				_, _ = w.Write(img[i : i+1])
				fl.Flush()
			}
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/body", trickle(true))
	mux.Handle("/headers", trickle(false)) // headers only after the first byte: they come late
	mux.HandleFunc("/stall", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		<-r.Context().Done()
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	f, _ := newTestFetcher(t, Config{ReadTimeout: time.Second, AllowPrivate: []string{"127.0.0.1"}}, nil)
	for _, path := range []string{"/body", "/headers", "/stall"} {
		t.Run(path, func(t *testing.T) {
			hits.Store(0)
			start := time.Now()
			_, err := f.Fetch(context.Background(), srv.URL+path)
			took := time.Since(start)
			e := asError(t, err)
			if !strings.Contains(e.Reason, "read deadline 1s exceeded") && !strings.Contains(e.Reason, "timeout") {
				t.Errorf("reason %q, want the read deadline", e.Reason)
			}
			// Without the read deadline only the 15s total timeout would end it; the
			// bound is loose so that a loaded machine does not fail the test.
			if took > 5*time.Second {
				t.Errorf("took %v, want about 1s", took)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("%v does not unwrap to context.DeadlineExceeded", err)
			}
			if n := hits.Load(); n != 1 {
				t.Errorf("%d requests, want 1 (no retry after a read deadline)", n)
			}
		})
	}
}

func TestContentSniffing(t *testing.T) {
	png := testPNG(t, 4, 4)
	webp := []byte("RIFF\x24\x00\x00\x00WEBPVP8 \x18\x00\x00\x00" + strings.Repeat("\x00", 24))
	for _, tc := range []struct {
		name, declared string
		body           []byte
		reason         string // "" = accepted
	}{
		{"png", "image/png", png, ""},
		{"png declared as html", "text/html", png, ""},
		{"png undeclared", "", png, ""},
		{"jpeg", "image/jpeg", []byte("\xff\xd8\xff\xe0\x00\x10JFIF\x00" + strings.Repeat("\x00", 40)), ""},
		{"gif", "image/gif", []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"), ""},
		{"webp", "image/webp", webp, ""},
		{"bmp", "image/bmp", []byte("BM" + strings.Repeat("\x00", 60)), ""},
		{"html declared as png", "image/png", []byte("<!DOCTYPE html><html><body>hi</body></html>"), "content type text/html; charset=utf-8 is not an image"},
		{"html", "text/html", []byte("<html><script>alert(1)</script></html>"), "is not an image"},
		{"svg", "image/svg+xml", []byte(`<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>`), "content type text/xml; charset=utf-8 is not an image"},
		{"avif (Go does not sniff it)", "image/avif", []byte("\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf"), "application/octet-stream is not an image"},
		{"json", "image/png", []byte(`{"a":1}`), "is not an image"},
		{"empty", "image/png", nil, "empty body"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Content-Type"] = []string{tc.declared}
				_, _ = w.Write(tc.body)
			}))
			defer srv.Close()
			f, _ := newTestFetcher(t, Config{AllowPrivate: []string{"127.0.0.1"}}, nil)
			b, err := f.Fetch(context.Background(), srv.URL)
			if tc.reason == "" {
				if err != nil || string(b) != string(tc.body) {
					t.Fatalf("got %d bytes, %v; want the body", len(b), err)
				}
				return
			}
			e := asError(t, err)
			if !strings.Contains(e.Reason, tc.reason) || e.Temporary {
				t.Errorf("got %q (temporary %v), want %q", e.Reason, e.Temporary, tc.reason)
			}
		})
	}
}

// TestDecompressionBombPNG: the fetcher returns a small PNG declaring
// 50,000 x 50,000 pixels as bytes (it does not decode); the decoder refuses
// it by its pixel cap before allocating.
func TestDecompressionBombPNG(t *testing.T) {
	bomb := hugePNG(50_000, 50_000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(bomb) }))
	defer srv.Close()
	f, _ := newTestFetcher(t, Config{AllowPrivate: []string{"127.0.0.1"}}, nil)
	b, err := f.Fetch(context.Background(), srv.URL)
	if err != nil || string(b) != string(bomb) {
		t.Fatalf("got %d bytes, %v; want the %d-byte file", len(b), err, len(bomb))
	}
	_, _, err = imageprep.Decode(b, imageprep.DefaultLimits())
	if !errors.Is(err, imageprep.ErrTooLarge) {
		t.Errorf("imageprep.Decode = %v, want ErrTooLarge", err)
	}
}

func TestStatusAndRetries(t *testing.T) {
	img := testPNG(t, 4, 4)
	for _, tc := range []struct {
		name      string
		retries   int
		statuses  []int // per request, the last one repeats; 0 = serve the image; -1 = drop the connection
		header    map[string]string
		wantErr   string
		wantTemp  bool
		wantCalls int
	}{
		{"404 not retried", 0, []int{404}, nil, "HTTP 404", false, 1},
		{"400 not retried", 0, []int{400}, nil, "HTTP 400", false, 1},
		{"403 not retried", 0, []int{403}, nil, "HTTP 403", false, 1},
		{"503 retried then succeeds", 0, []int{503, 503, 0}, nil, "", false, 3},
		{"500 retried, gives up", 0, []int{500}, nil, "HTTP 500", true, 3},
		{"429 retried (Retry-After)", 0, []int{429, 0}, map[string]string{"Retry-After": "0"}, "", false, 2},
		{"dropped connection retried", 0, []int{-1, 0}, nil, "", false, 2},
		{"retries off", -1, []int{503, 0}, nil, "HTTP 503", true, 1},
		{"304 leftover", 0, []int{304}, nil, "HTTP 304", false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				i := int(calls.Add(1)) - 1
				st := tc.statuses[min(i, len(tc.statuses)-1)]
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				switch st {
				case 0:
					_, _ = w.Write(img)
				case -1:
					c, _, _ := w.(http.Hijacker).Hijack()
					c.Close()
				default:
					http.Error(w, "no", st)
				}
			}))
			defer srv.Close()
			f, _ := newTestFetcher(t, Config{Retries: tc.retries, RetryBackoff: 5 * time.Millisecond, AllowPrivate: []string{"127.0.0.1"}}, nil)
			b, err := f.Fetch(context.Background(), srv.URL)
			if n := int(calls.Load()); n != tc.wantCalls {
				t.Errorf("%d requests, want %d", n, tc.wantCalls)
			}
			if tc.wantErr == "" {
				if err != nil || len(b) != len(img) {
					t.Fatalf("got %d bytes, %v", len(b), err)
				}
				return
			}
			e := asError(t, err)
			if e.Reason != tc.wantErr || e.Temporary != tc.wantTemp {
				t.Errorf("got %q temporary=%v, want %q temporary=%v", e.Reason, e.Temporary, tc.wantErr, tc.wantTemp)
			}
		})
	}
}

// TestConcurrencyLimits counts handlers running at once.
func TestConcurrencyLimits(t *testing.T) {
	img := testPNG(t, 4, 4)
	dns := startDNS(t, map[string][]string{"a.test": {"127.0.0.1"}, "b.test": {"127.0.0.1"}, "c.test": {"127.0.0.1"}})
	for _, tc := range []struct {
		name                  string
		perHost, global       int
		hosts                 []string
		wantPerHost, wantBoth int
	}{
		{"per host", 2, 32, []string{"a.test"}, 2, 2},
		{"per host, three hosts", 2, 32, []string{"a.test", "b.test", "c.test"}, 2, 6},
		{"global", 4, 3, []string{"a.test", "b.test", "c.test"}, 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			cur, peak := map[string]int{}, map[string]int{}
			total, peakTotal := 0, 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h, _, _ := net.SplitHostPort(r.Host)
				mu.Lock()
				cur[h]++
				total++
				peak[h] = max(peak[h], cur[h])
				peakTotal = max(peakTotal, total)
				mu.Unlock()
				time.Sleep(60 * time.Millisecond)
				mu.Lock()
				cur[h]--
				total--
				mu.Unlock()
				_, _ = w.Write(img)
			}))
			defer srv.Close()
			_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "http://"))
			f, _ := newTestFetcher(t, Config{PerHost: tc.perHost, Concurrency: tc.global, AllowPrivate: []string{"127.0.0.0/8"}}, dns)
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for i := range 8 * len(tc.hosts) {
				host := tc.hosts[i%len(tc.hosts)]
				wg.Go(func() {
					if _, err := f.Fetch(context.Background(), "http://"+net.JoinHostPort(host, port)+"/"); err != nil {
						errs <- err
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			for h, p := range peak {
				if p > tc.wantPerHost {
					t.Errorf("host %s: %d concurrent, limit %d", h, p, tc.wantPerHost)
				}
			}
			if peakTotal > tc.wantBoth {
				t.Errorf("%d concurrent in total, limit %d", peakTotal, tc.wantBoth)
			}
			if peakTotal < tc.wantBoth {
				t.Logf("peak %d below the limit %d (slow machine?)", peakTotal, tc.wantBoth)
			}
			f.mu.Lock()
			if len(f.hosts) != 0 {
				t.Errorf("per-host slots leaked: %v", f.hosts)
			}
			f.mu.Unlock()
		})
	}
}

func TestContextCancellation(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	f, _ := newTestFetcher(t, Config{PerHost: 1, AllowPrivate: []string{"127.0.0.1"}}, nil)

	t.Run("in flight", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		start := time.Now()
		_, err := f.Fetch(ctx, srv.URL)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err %v, want context.Canceled", err)
		}
		if e := asError(t, err); e.Temporary || !strings.HasPrefix(e.Reason, "canceled") {
			t.Errorf("got %+v", e)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("returned after %v", d)
		}
	})
	t.Run("waiting for a slot", func(t *testing.T) {
		// A server of its own that counts arrivals: the second fetch must end
		// while queued for the host's only slot, never reaching the server (a
		// fetch in flight to this server would end with DeadlineExceeded too).
		arrived := make(chan struct{}, 8)
		var requests atomic.Int32
		slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			arrived <- struct{}{}
			select {
			case <-r.Context().Done():
			case <-release:
			}
		}))
		defer slow.Close()
		hold, cancelHold := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _, _ = f.Fetch(hold, slow.URL) }() // takes the only slot
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the first fetch never reached the server")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, err := f.Fetch(ctx, slow.URL)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err %v, want context.DeadlineExceeded", err)
		}
		if n := requests.Load(); n != 1 {
			t.Errorf("the server saw %d requests while the host's only slot was taken, want 1: PerHost 1 did not hold the second fetch back", n)
		}
		cancelHold()
		<-done
	})
	t.Run("already canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := f.Fetch(ctx, srv.URL); !errors.Is(err, context.Canceled) {
			t.Errorf("err %v, want context.Canceled", err)
		}
	})
}

func TestTotalTimeoutStopsRetries(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", "5")
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	f, _ := newTestFetcher(t, Config{TotalTimeout: time.Second, ReadTimeout: time.Second, ConnectTimeout: time.Second,
		AllowPrivate: []string{"127.0.0.1"}}, nil)
	start := time.Now()
	_, err := f.Fetch(context.Background(), srv.URL)
	if e := asError(t, err); e.Reason != "HTTP 503" || !e.Temporary {
		t.Errorf("got %+v", e)
	}
	if calls.Load() != 1 || time.Since(start) > 900*time.Millisecond { // waiting out Retry-After would take the whole 1s
		t.Errorf("%d calls in %v: a Retry-After past the total timeout should end the fetch at once", calls.Load(), time.Since(start))
	}
}

func TestHTTPS(t *testing.T) {
	img := testPNG(t, 4, 4)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(img) }))
	defer srv.Close()

	f, log := newTestFetcher(t, Config{AllowPrivate: []string{"127.0.0.1"}}, nil)
	_, err := f.Fetch(context.Background(), srv.URL)
	if e := asError(t, err); !strings.HasPrefix(e.Reason, "TLS: ") || e.Temporary {
		t.Errorf("untrusted certificate: got %+v", e)
	}
	if n := len(log.list()); n != 1 {
		t.Errorf("%d dials, want 1 (TLS failures are not retried)", n)
	}

	f, _ = newTestFetcher(t, Config{AllowPrivate: []string{"127.0.0.1"}}, nil)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	f.tr.TLSClientConfig.RootCAs = pool
	b, err := f.Fetch(context.Background(), srv.URL)
	if err != nil || len(b) != len(img) {
		t.Fatalf("got %d bytes, %v", len(b), err)
	}
}

func TestMetrics(t *testing.T) {
	srv := newImgServer(t, testPNG(t, 4, 4))
	reg := prometheus.NewRegistry()
	f, _ := newTestFetcher(t, Config{Metrics: reg, AllowPrivate: []string{"127.0.0.1"}}, nil)
	// A second fetcher on the same registry shares the collectors.
	g, _ := newTestFetcher(t, Config{Metrics: reg}, nil)
	if _, err := f.Fetch(context.Background(), srv.URL+"/img"); err != nil {
		t.Fatal(err)
	}
	_, _ = g.Fetch(context.Background(), srv.URL+"/img")
	_, _ = g.Fetch(context.Background(), "ftp://x/")
	for outcome, want := range map[string]float64{outcomeOK: 1, outcomeRefused: 1, outcomeBadURL: 1, outcomeNetwork: 0} {
		if got := metricValue(t, f.m.fetches.WithLabelValues(outcome)); got != want {
			t.Errorf("fetches{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]int{}
	for _, mf := range families {
		names[mf.GetName()] = len(mf.GetMetric())
	}
	if names["xmodal_media_fetches_total"] != len(allOutcomes) || names["xmodal_media_fetch_bytes"] != 1 ||
		names["xmodal_media_fetch_seconds"] != 3 || names["xmodal_media_fetches_in_flight"] != 1 {
		t.Errorf("gathered series: %v", names)
	}
	if got := metricValue(t, f.m.inFlight); got != 0 {
		t.Errorf("in flight = %v after all fetches", got)
	}
}

func TestErrorText(t *testing.T) {
	e := &Error{URL: "http://10.0.0.1/x", Reason: "address 10.0.0.1 is private"}
	if got := e.Error(); got != `media: fetch "http://10.0.0.1/x": address 10.0.0.1 is private` {
		t.Errorf("Error() = %s", got)
	}
	long := &Error{URL: "http://x/" + strings.Repeat("a", 1000), Reason: "r"}
	if len(long.Error()) > 300 {
		t.Errorf("long URL not trimmed: %d bytes", len(long.Error()))
	}
}

func metricValue(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	t.Fatalf("not a counter or gauge: %v", &m)
	return 0
}

// TestRefusalNamesTheAllowOption: a refused private address says which
// setting allows it (issue #19: the user must not have to read the source).
func TestRefusalNamesTheAllowOption(t *testing.T) {
	for _, tc := range []struct {
		option, url, want string
	}{
		{"ingest.allow_private", "http://127.0.0.1:1/x.jpg", "address 127.0.0.1 is loopback (to fetch from it on purpose, add 127.0.0.1 or the URL's host name to ingest.allow_private)"},
		{"ingest.allow_private", "http://[::ffff:10.1.2.3]/x.jpg", "add 10.1.2.3 or the URL's host name to ingest.allow_private"},
		{"", "http://10.1.2.3/x.jpg", "address 10.1.2.3 is private"},
	} {
		f, _ := newTestFetcher(t, Config{AllowOption: tc.option}, nil)
		_, err := f.Fetch(context.Background(), tc.url)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("option %q, %s: err %v, want it to contain %q", tc.option, tc.url, err, tc.want)
		}
		if tc.option == "" && err != nil && strings.Contains(err.Error(), "to fetch from it") {
			t.Errorf("no option configured, yet the refusal names one: %v", err)
		}
	}
}
