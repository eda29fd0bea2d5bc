package main

// The serving side's wiring: the query cache (Redis or an in-process LRU),
// the TLS and credential keys of the Redis and NATS clients, and the HTTP
// gateway.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
)

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
