package main

// The serving side's wiring: the query cache (Redis or an in-process LRU),
// the TLS and credential keys of the Redis and NATS clients, and the HTTP
// gateway.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
)

// validateCache checks the query cache, Redis and security keys.
func (c *Config) validateCache() error {
	bad := func(key, format string, args ...any) error {
		return fmt.Errorf("config %s: %s", key, fmt.Sprintf(format, args...))
	}
	if c.Query.CacheTTL <= 0 {
		return bad("query.cache_ttl", "must be positive")
	}
	if c.Query.CacheSize < 1 {
		return bad("query.cache_size", "must be at least 1")
	}
	if c.Redis.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Redis.Addr); err != nil {
			return bad("redis.addr", "%v", err)
		}
	}
	if c.Redis.Timeout <= 0 {
		return bad("redis.timeout", "must be positive")
	}
	if c.Redis.DB < 0 {
		return bad("redis.db", "must not be negative")
	}
	if (c.Redis.TLSCertFile == "") != (c.Redis.TLSKeyFile == "") {
		return bad("redis.tls_cert_file", "set both redis.tls_cert_file and redis.tls_key_file, or neither")
	}
	if (c.NATS.TLSCertFile == "") != (c.NATS.TLSKeyFile == "") {
		return bad("nats.tls_cert_file", "set both nats.tls_cert_file and nats.tls_key_file, or neither")
	}
	if c.NATS.NkeySeedFile != "" && c.NATS.User != "" {
		return bad("nats.nkey_seed_file", "use either an nkey or nats.user, not both")
	}
	if t := c.HTTP.AdminToken; t != "" && len(t) < 16 {
		return bad("http.admin_token", "is %d characters; use at least 16 (e.g. openssl rand -hex 16)", len(t))
	}
	if err := query.CheckPostURL(c.HTTP.PostURL); err != nil {
		return bad("http.post_url", "%v", err)
	}
	return nil
}

// newQueryCache returns the search cache the config asks for: Redis when
// redis.addr is set (checked with a PING), else an in-process LRU; nil when off.
func newQueryCache(ctx context.Context, cfg *Config) (query.Cache, error) {
	if !cfg.Query.Cache {
		return nil, nil
	}
	if cfg.Redis.Addr == "" {
		return query.NewLRUCache(cfg.Query.CacheSize, cfg.Query.CacheTTL), nil
	}
	r := cfg.Redis
	c, err := query.NewRedisCache(query.RedisOptions{Addr: r.Addr, Username: r.Username, Password: r.Password, DB: r.DB,
		TLS: r.TLS, CAFile: r.TLSCAFile, CertFile: r.TLSCertFile, KeyFile: r.TLSKeyFile, TTL: cfg.Query.CacheTTL, Timeout: r.Timeout})
	if err != nil {
		return nil, fmt.Errorf("config redis: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Ping(pctx); err != nil {
		// Redis may come later: queries are answered without it meanwhile.
		// Bad credentials are a configuration error worth stopping for.
		if errors.Is(err, query.ErrCacheAuth) {
			c.Close()
			return nil, fmt.Errorf("redis %s: %w (check redis.username / redis.password)", r.Addr, err)
		}
	}
	return c, nil
}

// inboxPrefix is the prefix of this connection's reply inboxes: nats.inbox_prefix,
// else the user's own (client.InboxPrefix) when a user is set, else "" (nats.go's
// default, _INBOX).
func (cfg *Config) inboxPrefix() (string, error) {
	if p := cfg.NATS.InboxPrefix; p != "" {
		return p, nil
	}
	if cfg.NATS.User == "" {
		return "", nil
	}
	p, err := client.InboxPrefix(cfg.NATS.User)
	if err != nil {
		return "", fmt.Errorf("config nats.user: %w (set nats.inbox_prefix)", err)
	}
	return p, nil
}

// natsSecurityOptions are the client options for nkey auth and TLS.
func natsSecurityOptions(cfg *Config) ([]nats.Option, error) {
	var opts []nats.Option
	if f := cfg.NATS.NkeySeedFile; f != "" {
		o, err := nats.NkeyOptionFromSeed(f)
		if err != nil {
			return nil, fmt.Errorf("config nats.nkey_seed_file: %w", err)
		}
		opts = append(opts, o)
	}
	if cfg.NATS.TLSCAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.NATS.TLSCAFile))
	}
	if cfg.NATS.TLSCertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.NATS.TLSCertFile, cfg.NATS.TLSKeyFile))
	}
	return opts, nil
}

// mountGateway serves the JSON gateway under /v1/ and the search page at /.
func (a *app) mountGateway(mux *http.ServeMux) {
	if a.svc == nil {
		return
	}
	g := query.NewGateway(a.svc, query.GatewayOptions{AdminToken: a.cfg.HTTP.AdminToken, PostURL: a.cfg.HTTP.PostURL,
		BodyTimeout: a.cfg.HTTP.BodyTimeout, Logger: a.log})
	mux.Handle("/v1/", g)
	mux.Handle("/", g)
}
