package query

import (
	"errors"
	"net/http"
	"time"
)

// HTTPConfig bounds how long one HTTP client may hold a connection of the
// server that carries the gateway (and /metrics, /healthz, /readyz): a
// client that trickles its headers or body, or never reads the reply, is cut
// off at these deadlines instead of holding a connection and a goroutine for
// as long as it likes. Zero values take the defaults.
type HTTPConfig struct {
	// ReadHeaderTimeout bounds reading the request line and headers,
	// default 5s.
	ReadHeaderTimeout time.Duration
	// BodyTimeout bounds reading a request body once the headers are in,
	// default 10s (an 8 MiB body at 1 MB/s). The gateway answers 408 past it.
	BodyTimeout time.Duration
	// RequestTimeout is the query service's per-request deadline (the
	// service's Config.Timeout), default 5s; WriteTimeout leaves room for it.
	RequestTimeout time.Duration
	// WriteTimeout bounds the time from the end of the headers to the end of
	// the reply, default BodyTimeout + RequestTimeout + 10s.
	WriteTimeout time.Duration
	// IdleTimeout closes a kept-alive connection with no request, default
	// 2m.
	IdleTimeout time.Duration
	// MaxHeaderBytes caps the request line and headers, default 64 KiB.
	MaxHeaderBytes int
}

// WithDefaults returns c with the zero fields set to their defaults.
func (c HTTPConfig) WithDefaults() HTTPConfig {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ReadHeaderTimeout, 5*time.Second)
	def(&c.BodyTimeout, 10*time.Second)
	def(&c.RequestTimeout, 5*time.Second)
	def(&c.WriteTimeout, c.BodyTimeout+c.RequestTimeout+10*time.Second)
	def(&c.IdleTimeout, 2*time.Minute)
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	return c
}

// Validate reports a configuration the server cannot run with.
func (c *HTTPConfig) Validate() error {
	if c.ReadHeaderTimeout < 0 || c.BodyTimeout < 0 || c.RequestTimeout < 0 || c.WriteTimeout < 0 || c.IdleTimeout < 0 || c.MaxHeaderBytes < 0 {
		return errors.New("http: timeouts and the header limit must not be negative")
	}
	if c.WriteTimeout != 0 && c.BodyTimeout != 0 && c.WriteTimeout < c.BodyTimeout+c.RequestTimeout {
		return errors.New("http: WriteTimeout must leave room for reading the body and answering (BodyTimeout + RequestTimeout)")
	}
	return nil
}

// NewHTTPServer returns a server of h with c's deadlines (defaults filled).
// ReadTimeout, the whole request's, is ReadHeaderTimeout + BodyTimeout: a
// backstop for handlers that do not set their own body deadline (the
// gateway does, per request, from the end of the headers).
func NewHTTPServer(h http.Handler, c HTTPConfig) (*http.Server, error) {
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		ReadTimeout:       c.ReadHeaderTimeout + c.BodyTimeout,
		WriteTimeout:      c.WriteTimeout,
		IdleTimeout:       c.IdleTimeout,
		MaxHeaderBytes:    c.MaxHeaderBytes,
	}, nil
}
