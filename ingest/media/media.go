// Package media fetches post and query images over HTTP(S) without letting a
// URL reach the fetcher's own network (SSRF), exhaust its memory, or tie up
// its workers.
//
// Safety rules, all enforced by [Fetcher.Fetch]:
//
//   - Only http and https URLs, without user info, at most 8 KiB long; every
//     redirect is checked the same way and at most MaxRedirects are followed.
//   - Addresses are checked in the dialer, after DNS resolution, and the
//     connection goes to the address that was checked (the dialer resolves,
//     filters, then dials the IP literal), so DNS rebinding between check and
//     dial is impossible. A second check in net.Dialer.Control sees the exact
//     socket address before connect(2). Refused: loopback, RFC 1918 and
//     unique-local (fc00::/7) private ranges, link-local (169.254/16 with the
//     cloud metadata address 169.254.169.254, fe80::/10), multicast,
//     unspecified, CGNAT 100.64/10, 0.0.0.0/8, broadcast and the other
//     reserved ranges, and IPv4-mapped, NAT64 and 6to4 IPv6 forms of those.
//     Config.AllowPrivate lifts the rule for listed CIDRs or host names.
//     Environment proxies are ignored (a proxy would defeat the check).
//   - The body must sniff as image/* with [net/http.DetectContentType],
//     whatever Content-Type the server declares. Go sniffs image/png,
//     image/jpeg, image/gif, image/webp, image/bmp and image/x-icon; AVIF,
//     HEIC and TIFF sniff as application/octet-stream and SVG as text/xml, so
//     those are refused.
//   - A declared Content-Length over MaxBytes is refused before reading; the
//     body is read through io.LimitReader(MaxBytes+1). Transparent gzip is
//     off, so a compressed body cannot expand past the limit either.
//   - ReadTimeout bounds, for each response, everything after the connection
//     is ready: writing the request, the headers and the whole body, so a
//     server trickling bytes is cut off. ConnectTimeout bounds each dial and
//     TLS handshake; TotalTimeout bounds the call, queueing and retries
//     included.
//   - At most Concurrency fetches are in flight, at most PerHost per URL host
//     (the host of the URL passed to Fetch; redirect targets share its slot).
//     Waiting for a slot honours the context.
//
// The fetcher does not decode images: a small file declaring a huge size is
// returned as bytes; the decoder (encoders/imageprep) refuses it by its
// pixel cap before allocating.
package media

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for the zero values of [Config].
const (
	DefaultConnectTimeout = 3 * time.Second
	DefaultReadTimeout    = 10 * time.Second
	DefaultTotalTimeout   = 15 * time.Second
	DefaultMaxBytes       = 8 << 20
	DefaultMaxRedirects   = 3
	DefaultRetries        = 2
	DefaultRetryBackoff   = 200 * time.Millisecond
	DefaultConcurrency    = 32
	DefaultPerHost        = 4
	DefaultUserAgent      = "xmodal-media/1 (+https://github.com/xmodal/xmodal)"

	maxURLLength = 8 << 10
	sniffLen     = 512
)

// Config configures a [Fetcher]. Zero values take the defaults above.
type Config struct {
	ConnectTimeout time.Duration // each dial and TLS handshake; default 3s
	ReadTimeout    time.Duration // per response, from connection ready to the end of the body; default 10s
	TotalTimeout   time.Duration // whole Fetch call, queueing and retries included; default 15s

	MaxBytes     int64         // largest body accepted; default 8 MiB
	MaxRedirects int           // default 3; -1 follows none
	Retries      int           // extra attempts on network errors, 429 and 5xx; default 2; -1 for none
	RetryBackoff time.Duration // first backoff, doubled each retry, with jitter; default 200ms

	Concurrency int // fetches in flight in total; default 32
	PerHost     int // fetches in flight per URL host; default 4

	// AllowPrivate lists CIDRs ("127.0.0.0/8"), single addresses, or exact
	// host names ("cdn.internal") that may resolve to non-public addresses:
	// for tests and private CDNs. A listed host name allows whatever it
	// resolves to; a listed CIDR allows those addresses whatever the name.
	AllowPrivate []string
	// AllowOption names the setting that fills AllowPrivate (for example
	// "ingest.allow_private"); refusals of a non-public address name it, so
	// that the reason says how to allow a private host on purpose.
	AllowOption string

	Resolver  *net.Resolver         // nil: net.DefaultResolver
	UserAgent string                // default DefaultUserAgent
	Metrics   prometheus.Registerer // nil: metrics are kept but not registered
	Logger    *slog.Logger          // nil: slog.Default()
}

// WithDefaults returns c with the zero fields set to their defaults, and
// MaxRedirects and Retries of -1 (none) set to 0.
func (c Config) WithDefaults() Config {
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
	}{
		{&c.ConnectTimeout, DefaultConnectTimeout},
		{&c.ReadTimeout, DefaultReadTimeout},
		{&c.TotalTimeout, DefaultTotalTimeout},
		{&c.RetryBackoff, DefaultRetryBackoff},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	switch c.MaxRedirects {
	case 0:
		c.MaxRedirects = DefaultMaxRedirects
	case -1:
		c.MaxRedirects = 0
	}
	switch c.Retries {
	case 0:
		c.Retries = DefaultRetries
	case -1:
		c.Retries = 0
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.PerHost == 0 {
		c.PerHost = DefaultPerHost
	}
	if c.UserAgent == "" {
		c.UserAgent = DefaultUserAgent
	}
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate checks a Config that WithDefaults returned; the error names the
// field.
func (c Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("media: Config.%s %s", field, fmt.Sprintf(format, args...))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ConnectTimeout", c.ConnectTimeout}, {"ReadTimeout", c.ReadTimeout}, {"TotalTimeout", c.TotalTimeout}, {"RetryBackoff", c.RetryBackoff}} {
		if d.v < 0 {
			return bad(d.name, "must not be negative (got %v)", d.v)
		}
	}
	switch {
	case c.ConnectTimeout > c.TotalTimeout:
		return bad("ConnectTimeout", "(%v) exceeds TotalTimeout (%v)", c.ConnectTimeout, c.TotalTimeout)
	case c.ReadTimeout > c.TotalTimeout:
		return bad("ReadTimeout", "(%v) exceeds TotalTimeout (%v)", c.ReadTimeout, c.TotalTimeout)
	case c.MaxBytes < 0:
		return bad("MaxBytes", "must not be negative (got %d)", c.MaxBytes)
	case c.MaxBytes > 1<<30:
		return bad("MaxBytes", "must be at most 1 GiB (got %d)", c.MaxBytes)
	case c.MaxRedirects < -1 || c.MaxRedirects > 20:
		return bad("MaxRedirects", "must be -1 (none), 0 (default %d) or up to 20 (got %d)", DefaultMaxRedirects, c.MaxRedirects)
	case c.Retries < -1 || c.Retries > 10:
		return bad("Retries", "must be -1 (none), 0 (default %d) or up to 10 (got %d)", DefaultRetries, c.Retries)
	case c.Concurrency < 0:
		return bad("Concurrency", "must not be negative (got %d)", c.Concurrency)
	case c.PerHost < 0:
		return bad("PerHost", "must not be negative (got %d)", c.PerHost)
	case strings.ContainsFunc(c.UserAgent, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return bad("UserAgent", "must not contain control characters")
	}
	return nil
}

// Fetcher downloads images. It is safe for concurrent use.
type Fetcher struct {
	cfg    Config
	allow  allowList
	client *http.Client
	tr     *http.Transport
	log    *slog.Logger
	m      *metrics

	global chan struct{}
	mu     sync.Mutex
	hosts  map[string]*hostSlots

	// dialHook, when set (tests), sees every socket address that passed the
	// checks just before connect(2); a non-nil error aborts the dial.
	dialHook func(network, address string) error
}

type hostSlots struct {
	ch   chan struct{}
	refs int
}

// New validates cfg and returns a Fetcher. Errors name the offending field.
func New(cfg Config) (*Fetcher, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	al, err := parseAllowList(cfg.AllowPrivate)
	if err != nil {
		return nil, err
	}
	al.option = cfg.AllowOption
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, fmt.Errorf("media: Config.Metrics: %w", err)
	}
	f := &Fetcher{
		cfg:    cfg,
		allow:  al,
		log:    cfg.Logger.With("component", "media"),
		m:      m,
		global: make(chan struct{}, cfg.Concurrency),
		hosts:  map[string]*hostSlots{},
	}
	f.tr = &http.Transport{
		Proxy:                  nil, // never an environment proxy: it would be dialled unchecked
		DialContext:            f.dialContext,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    cfg.ConnectTimeout,
		MaxResponseHeaderBytes: 64 << 10,
		DisableCompression:     true,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           cfg.Concurrency,
		MaxIdleConnsPerHost:    cfg.PerHost,
		IdleConnTimeout:        60 * time.Second,
	}
	f.client = &http.Client{Transport: f.tr, CheckRedirect: f.checkRedirect}
	return f, nil
}

// Close releases idle connections. The Fetcher stays usable.
func (f *Fetcher) Close() { f.tr.CloseIdleConnections() }

// Fetch downloads the image at rawURL and returns its bytes. Every error is
// an *[Error].
func (f *Fetcher) Fetch(ctx context.Context, rawURL string) ([]byte, error) {
	start := time.Now()
	b, e := f.fetch(ctx, rawURL)
	d := time.Since(start)
	if e != nil {
		e.URL = rawURL
		f.m.observe(e.kind, 0, d)
		level := slog.LevelDebug
		if e.kind == outcomeRefused {
			level = slog.LevelWarn // possible SSRF attempt
		}
		f.log.Log(ctx, level, "media fetch failed", "url", trimURL(rawURL), "reason", e.Reason,
			"temporary", e.Temporary, "elapsed", d)
		return nil, e
	}
	f.m.observe(outcomeOK, len(b), d)
	return b, nil
}

func (f *Fetcher) fetch(parent context.Context, rawURL string) ([]byte, *Error) {
	u, e := checkURL(rawURL)
	if e != nil {
		return nil, e
	}
	if ip, err := netip.ParseAddr(u.Hostname()); err == nil {
		if why := f.allow.refusal(ip, false); why != "" {
			return nil, refused(why) // fail fast; the dialer would refuse it too
		}
	}
	total, cancel := context.WithTimeoutCause(parent, f.cfg.TotalTimeout, errTotalTimeout)
	defer cancel()
	host := canonicalHost(u.Hostname())
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			if e := f.backoff(parent, total, attempt, e); e != nil {
				return nil, e
			}
		}
		var b []byte
		b, e = f.attempt(parent, total, host, u)
		if e == nil {
			return b, nil
		}
		if !e.retry || attempt >= f.cfg.Retries {
			return nil, e
		}
		f.log.DebugContext(parent, "media fetch retry", "url", trimURL(rawURL), "reason", e.Reason, "attempt", attempt+1)
	}
}

// backoff sleeps before retry number attempt (1-based), or returns the
// error to give up with.
func (f *Fetcher) backoff(parent, total context.Context, attempt int, last *Error) *Error {
	d := f.cfg.RetryBackoff << (attempt - 1)
	d = d/2 + rand.N(d/2+1) // "equal jitter"
	if last.retryAfter > d {
		d = last.retryAfter
	}
	if dl, ok := total.Deadline(); ok && time.Until(dl) < d {
		return last // would not get another try in time
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-total.Done():
		if parent.Err() != nil {
			return ctxError(parent)
		}
		return last
	}
}

func checkURL(rawURL string) (*url.URL, *Error) {
	badURL := func(reason string) (*url.URL, *Error) { return nil, &Error{Reason: reason, kind: outcomeBadURL} }
	if len(rawURL) > maxURLLength {
		return badURL(fmt.Sprintf("URL longer than %d bytes", maxURLLength))
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return badURL("invalid URL: " + err.Error())
	}
	if e := checkScheme(u); e != nil {
		e.kind = outcomeBadURL
		return nil, e
	}
	return u, nil
}

// checkScheme applies the URL rules shared by the first request and
// every redirect.
func checkScheme(u *url.URL) *Error {
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return refused(fmt.Sprintf("scheme %q is not http or https", u.Scheme))
	case u.User != nil:
		return refused("URL has user info")
	case u.Hostname() == "":
		return refused("URL has no host")
	}
	return nil
}

func (f *Fetcher) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > f.cfg.MaxRedirects {
		return refused(fmt.Sprintf("more than %d redirects", f.cfg.MaxRedirects))
	}
	if e := checkScheme(req.URL); e != nil {
		e.Reason = "redirect to " + trimURL(req.URL.String()) + ": " + e.Reason
		return e
	}
	// IP literals are refused here for a clear message; names are checked
	// by the dialer after resolution.
	if ip, err := netip.ParseAddr(req.URL.Hostname()); err == nil {
		if why := f.allow.refusal(ip, false); why != "" {
			return refused("redirect to " + trimURL(req.URL.String()) + ": " + why)
		}
	}
	return nil
}

// attempt makes one request (following redirects) and reads the body.
func (f *Fetcher) attempt(parent, total context.Context, host string, u *url.URL) ([]byte, *Error) {
	release, err := f.acquire(total, host)
	if err != nil {
		return nil, f.classify(parent, total, total, u, err)
	}
	defer release()

	ctx, cancel := context.WithCancelCause(total)
	defer cancel(nil)
	var (
		tmu   sync.Mutex
		timer *time.Timer
	)
	defer func() {
		tmu.Lock()
		if timer != nil {
			timer.Stop()
		}
		tmu.Unlock()
	}()
	trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) {
		// The read deadline starts when a connection is ready, once per
		// hop, and covers the request, the headers and the whole body.
		tmu.Lock()
		defer tmu.Unlock()
		if timer == nil {
			timer = time.AfterFunc(f.cfg.ReadTimeout, func() { cancel(errReadTimeout) })
		} else {
			timer.Reset(f.cfg.ReadTimeout)
		}
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, &Error{Reason: "invalid URL: " + err.Error(), kind: outcomeBadURL}
	}
	req.Header.Set("User-Agent", f.cfg.UserAgent)
	req.Header.Set("Accept", "image/*")
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, f.classify(parent, total, ctx, u, err)
	}
	defer resp.Body.Close()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10) // let a small error page keep the connection
		e := &Error{Reason: "HTTP " + strconv.Itoa(resp.StatusCode), kind: outcomeHTTP}
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
			e.Temporary, e.retry, e.kind = true, true, outcomeHTTPRetry
			e.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"))
		}
		return nil, e
	}
	limit := f.cfg.MaxBytes
	if resp.ContentLength > limit {
		return nil, &Error{Reason: fmt.Sprintf("body over %d bytes (Content-Length %d)", limit, resp.ContentLength), kind: outcomeTooLarge}
	}
	body := io.LimitReader(resp.Body, limit+1)
	head := make([]byte, sniffLen)
	n, err := io.ReadFull(body, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return nil, f.classify(parent, total, ctx, u, err)
	}
	if n == 0 {
		return nil, &Error{Reason: "empty body", kind: outcomeNotImage}
	}
	if ct := http.DetectContentType(head[:n]); !strings.HasPrefix(ct, "image/") {
		return nil, &Error{Reason: fmt.Sprintf("content type %s is not an image (declared %q)", ct, resp.Header.Get("Content-Type")),
			kind: outcomeNotImage}
	}
	size := int64(64 << 10)
	if resp.ContentLength > 0 {
		size = resp.ContentLength + 1 // +1: ReadFrom then sees EOF without growing
	}
	buf := bytes.NewBuffer(make([]byte, 0, min(size, limit+1)))
	buf.Write(head[:n])
	if n == sniffLen {
		if _, err := buf.ReadFrom(body); err != nil {
			return nil, f.classify(parent, total, ctx, u, err)
		}
	}
	if int64(buf.Len()) > limit {
		return nil, &Error{Reason: fmt.Sprintf("body over %d bytes", limit), kind: outcomeTooLarge}
	}
	return buf.Bytes(), nil
}

// classify turns a transport error into an *Error.
func (f *Fetcher) classify(parent, total, attempt context.Context, u *url.URL, err error) *Error {
	var me *Error
	if errors.As(err, &me) {
		e := *me
		// A refusal in the dialer while following a redirect: say so.
		var ue *url.Error
		if errors.As(err, &ue) && ue.URL != u.String() && !strings.HasPrefix(e.Reason, "redirect to ") {
			e.Reason = "redirect to " + trimURL(ue.URL) + ": " + e.Reason
		}
		return &e
	}
	switch {
	case parent.Err() != nil:
		return ctxError(parent)
	case context.Cause(total) == errTotalTimeout:
		return &Error{Reason: fmt.Sprintf("total timeout %v exceeded", f.cfg.TotalTimeout), Temporary: true,
			kind: outcomeTimeout, err: context.DeadlineExceeded}
	case context.Cause(attempt) == errReadTimeout:
		// Not retried: a server that cannot deliver within the deadline
		// would hold a slot again for as long.
		return &Error{Reason: fmt.Sprintf("read deadline %v exceeded", f.cfg.ReadTimeout), Temporary: true,
			kind: outcomeTimeout, err: context.DeadlineExceeded}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var (
		cve *tls.CertificateVerificationError
		uae x509.UnknownAuthorityError
		hne x509.HostnameError
		cie x509.CertificateInvalidError
		rhe tls.RecordHeaderError
	)
	if errors.As(err, &cve) || errors.As(err, &uae) || errors.As(err, &hne) || errors.As(err, &cie) || errors.As(err, &rhe) {
		return &Error{Reason: "TLS: " + err.Error(), kind: outcomeTLS, err: err}
	}
	return &Error{Reason: "network: " + err.Error(), Temporary: true, retry: true, kind: outcomeNetwork, err: err}
}

func ctxError(ctx context.Context) *Error {
	cause := context.Cause(ctx)
	return &Error{Reason: "canceled: " + cause.Error(), kind: outcomeCanceled, err: cause}
}

func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(min(s, 3600)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// acquire takes a per-host slot, then a global one (in that order, so a
// fetch queued behind a busy host does not hold a global slot).
func (f *Fetcher) acquire(ctx context.Context, host string) (release func(), err error) {
	f.mu.Lock()
	hs := f.hosts[host]
	if hs == nil {
		hs = &hostSlots{ch: make(chan struct{}, f.cfg.PerHost)}
		f.hosts[host] = hs
	}
	hs.refs++
	f.mu.Unlock()
	dropHost := func() {
		f.mu.Lock()
		if hs.refs--; hs.refs == 0 {
			delete(f.hosts, host)
		}
		f.mu.Unlock()
	}
	select {
	case hs.ch <- struct{}{}:
	case <-ctx.Done():
		dropHost()
		return nil, ctx.Err()
	}
	select {
	case f.global <- struct{}{}:
	case <-ctx.Done():
		<-hs.ch
		dropHost()
		return nil, ctx.Err()
	}
	f.m.inFlight.Inc()
	return func() {
		f.m.inFlight.Dec()
		<-f.global
		<-hs.ch
		dropHost()
	}, nil
}

// dialContext resolves the host, refuses non-public addresses (unless
// allow-listed) and dials only the addresses it checked.
func (f *Fetcher) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("invalid port %q", portStr)
	}
	byName := false
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		byName = f.allow.hostAllowed(host)
		lookup := "ip"
		switch network {
		case "tcp4":
			lookup = "ip4"
		case "tcp6":
			lookup = "ip6"
		}
		// The transport may dial on a context that outlives the request:
		// bound the lookup by the connect timeout.
		lctx, cancel := context.WithTimeout(ctx, f.cfg.ConnectTimeout)
		ips, err = f.cfg.Resolver.LookupNetIP(lctx, lookup, host)
		cancel()
		if err != nil {
			var de *net.DNSError
			if errors.As(err, &de) && de.IsNotFound {
				return nil, &Error{Reason: "host " + host + " not found", kind: outcomeNetwork, err: err}
			}
			return nil, err // network error: retried
		}
	}
	var ok []netip.Addr
	var why string
	for _, ip := range ips {
		if r := f.allow.refusal(ip, byName); r != "" {
			if why == "" {
				why = r
			}
			continue
		}
		ok = append(ok, ip.WithZone("").Unmap())
	}
	if len(ok) == 0 {
		if why == "" {
			why = "host " + host + " has no addresses"
		}
		return nil, refused(why)
	}
	d := net.Dialer{
		Timeout:   f.cfg.ConnectTimeout,
		KeepAlive: 30 * time.Second,
		Control: func(network, address string, _ syscall.RawConn) error {
			// Second line of defence: the exact socket address, just before connect(2).
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return refused("unparsable socket address " + address)
			}
			if r := f.allow.refusal(ap.Addr(), byName); r != "" {
				return refused(r)
			}
			if f.dialHook != nil {
				return f.dialHook(network, address)
			}
			return nil
		},
	}
	var lastErr error
	for _, ip := range ok {
		c, err := d.DialContext(ctx, network, netip.AddrPortFrom(ip, uint16(port)).String())
		if err == nil {
			return c, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func trimURL(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
