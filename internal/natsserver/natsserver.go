// Package natsserver starts the embedded NATS server (with JetStream) that the
// embedded defaults use, and that tests start in-process.
package natsserver

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options for the embedded server.
type Options struct {
	// Listen is host:port; port 0 picks a free port.
	Listen string
	// StoreDir holds JetStream's data; empty disables JetStream.
	StoreDir string
	// User and Password, when set, are required from clients.
	User, Password string
	// MaxPayload caps a message (default 8 MiB: posts may carry inline images).
	MaxPayload int32
	// ConfigFile is a nats-server configuration file (users with passwords or
	// nkeys, permissions, tls {...}; see docs/security.md). Listen, StoreDir and
	// the settings above override what it says about the same things.
	ConfigFile string
}

// Start runs the server and waits until it accepts connections.
func Start(o Options) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("nats listen address %q: %w", o.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("nats listen port %q: %w", portStr, err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{}
	if o.ConfigFile != "" {
		if opts, err = server.ProcessConfigFile(o.ConfigFile); err != nil {
			return nil, fmt.Errorf("nats server config %s: %w", o.ConfigFile, err)
		}
	}
	if o.MaxPayload == 0 {
		o.MaxPayload = max(opts.MaxPayload, 8<<20)
	}
	opts.ServerName, opts.Host, opts.Port = "xmodal-embedded", host, port
	opts.NoSigs, opts.NoLog = true, true
	opts.MaxPayload = o.MaxPayload
	// Max pending must hold at least one max payload per client.
	opts.MaxPending = max(opts.MaxPending, int64(o.MaxPayload)*8)
	if o.User != "" {
		opts.Username, opts.Password = o.User, o.Password
	}
	if o.StoreDir != "" {
		opts.JetStream = true
		opts.StoreDir = o.StoreDir
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("embedded nats did not start on %s (port in use?)", o.Listen)
	}
	return s, nil
}
