package query

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/query/web"
)

// GatewayOptions configure the HTTP gateway.
type GatewayOptions struct {
	// AdminToken is required (Authorization: Bearer TOKEN) on /v1/admin/...;
	// empty disables the admin operations over HTTP (403).
	AdminToken string
	// NoPage turns the search page at / off.
	NoPage bool
	// PostURL links a post on its platform: {id} is replaced by the post id
	// (CheckPostURL). The page shows the link on each result.
	PostURL string
	// BodyTimeout bounds reading a request body from the end of its headers,
	// default 10s (HTTPConfig.BodyTimeout); past it the reply is 408 and
	// the connection closes.
	BodyTimeout time.Duration
	Logger      *slog.Logger
}

// Gateway serves the query API as JSON over HTTP, mirroring the NATS subjects:
// POST /v1/search is xmodal.v1.search, POST /v1/admin/delete is
// xmodal.v1.admin.delete, and so on; GET /v1/ lists the endpoints. Errors carry
// the same codes, as HTTP statuses, with a body {"error":{"code":N,"message":"..."}}.
// The search page is served at /.
type Gateway struct {
	s   *Service
	opt GatewayOptions
	mux *http.ServeMux
}

// NewGateway returns the gateway of s. Endpoints are those s registered in Start.
func NewGateway(s *Service, opt GatewayOptions) *Gateway {
	if opt.Logger == nil {
		opt.Logger = s.d.Logger
	}
	if opt.BodyTimeout <= 0 {
		opt.BodyTimeout = HTTPConfig{}.WithDefaults().BodyTimeout
	}
	g := &Gateway{s: s, opt: opt, mux: http.NewServeMux()}
	g.mux.HandleFunc("/v1/", g.api)
	if !opt.NoPage {
		static, _ := fs.Sub(web.FS, "static")
		files := http.FileServerFS(static)
		g.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/" && !strings.HasPrefix(r.URL.Path, "/static/") {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data: blob: https: http:; style-src 'self'; script-src 'self'")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			if r.URL.Path == "/" {
				http.ServeFileFS(w, r, static, "index.html")
				return
			}
			r.URL.Path = strings.TrimPrefix(r.URL.Path, "/static")
			files.ServeHTTP(w, r)
		})
	}
	return g
}

// GatewayIndex is the reply of GET /v1/: the endpoints, and what the search
// page needs to know of this server.
type GatewayIndex struct {
	Endpoints []string `json:"endpoints"`
	// PostURL links a post on its platform ({id}: the post id); "" when none.
	PostURL string `json:"post_url,omitempty"`
	// Admin says whether admin operations are enabled over HTTP.
	Admin bool `json:"admin"`
	// LowPDQQuality: a PDQ hash of lower quality gives unreliable matches.
	LowPDQQuality int `json:"pdq_low_quality"`
	// NearDupDistance is the default near-duplicate distance bound.
	NearDupDistance int `json:"neardup_distance"`
}

// CheckPostURL validates a post link template: an http(s) URL with {id}.
func CheckPostURL(t string) error {
	if t == "" {
		return nil
	}
	if !strings.Contains(t, "{id}") {
		return errors.New("must contain {id} (replaced by the post id)")
	}
	u, err := url.Parse(strings.ReplaceAll(t, "{id}", "x"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL", t)
	}
	return nil
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.mux.ServeHTTP(w, r) }

// ErrorBody is the JSON body of a gateway error.
type ErrorBody struct {
	Error struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeErr(w http.ResponseWriter, e *Error) {
	var b ErrorBody
	b.Error.Code, b.Error.Message = e.Code, e.Message
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Code)
	json.NewEncoder(w).Encode(&b)
}

func (g *Gateway) api(w http.ResponseWriter, r *http.Request) {
	name := strings.Trim(strings.TrimPrefix(r.URL.Path, "/v1/"), "/")
	if name == "" {
		if r.Method != http.MethodGet {
			writeErr(w, errorf(http.StatusMethodNotAllowed, "GET /v1/ lists the endpoints"))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(&GatewayIndex{Endpoints: g.s.Endpoints(), PostURL: g.opt.PostURL, Admin: g.opt.AdminToken != "",
			LowPDQQuality: domain.LowPDQQuality, NearDupDistance: DefaultNearDupDistance})
		return
	}
	endpoint := strings.ReplaceAll(name, "/", ".")
	if strings.HasPrefix(endpoint, "admin.") {
		if g.opt.AdminToken == "" {
			writeErr(w, errorf(http.StatusForbidden, "admin operations over HTTP are disabled (set http.admin_token)"))
			return
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(g.opt.AdminToken)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="xmodal admin"`)
			writeErr(w, errorf(http.StatusUnauthorized, "admin operations need Authorization: Bearer <http.admin_token>"))
			return
		}
	}
	var body []byte
	switch r.Method {
	case http.MethodPost:
		// The body has BodyTimeout from here, whatever the server's own
		// deadlines (a body trickled a byte at a time must not hold the
		// connection), and at most MaxRequestSize bytes.
		if err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(g.opt.BodyTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			g.opt.Logger.Debug("gateway: body deadline", "err", err)
		}
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestSize))
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				writeErr(w, errorf(CodeTooLarge, "request is over %d bytes", MaxRequestSize))
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				w.Header().Set("Connection", "close")
				writeErr(w, errorf(http.StatusRequestTimeout, "request body not received within %v", g.opt.BodyTimeout))
				return
			}
			writeErr(w, errorf(CodeBadRequest, "read request: %w", err))
			return
		}
		body = b
	case http.MethodGet:
		if endpoint != "stats" && endpoint != "banks.list" {
			writeErr(w, errorf(http.StatusMethodNotAllowed, "POST a JSON request to /v1/%s", name))
			return
		}
		body = []byte("{}")
	default:
		writeErr(w, errorf(http.StatusMethodNotAllowed, "POST a JSON request to /v1/%s", name))
		return
	}
	ctx := r.Context()
	if strings.HasPrefix(endpoint, "admin.") {
		ctx = WithRequester(ctx, "http admin token from "+r.RemoteAddr)
	}
	res, err := g.s.Call(ctx, endpoint, body)
	if err != nil {
		writeErr(w, AsError(err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if err := json.NewEncoder(w).Encode(res); err != nil {
		g.opt.Logger.Debug("gateway: write reply", "endpoint", endpoint, "err", err)
	}
}
