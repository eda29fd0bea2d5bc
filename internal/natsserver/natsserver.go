// Package natsserver starts the embedded NATS server (with JetStream) that the
// embedded defaults use, and that tests start in-process.
package natsserver

import (
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/xmodal/xmodal/internal/fsprobe"
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
		// A store the server cannot write makes it wait, then fail without
		// a word (its log is off): say so at once, naming the directory.
		if err := fsprobe.Writable(o.StoreDir); err != nil {
			return nil, fmt.Errorf("embedded nats: jetstream store: %w", err)
		}
		opts.JetStream = true
		opts.StoreDir = o.StoreDir
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	errs := &errorLog{}
	s.SetLoggerV2(errs, false, false, false)
	go s.Start()
	if !ready(s, errs, 10*time.Second) {
		s.Shutdown()
		if e := errs.last(); e != "" {
			return nil, fmt.Errorf("embedded nats did not start on %s: %s", o.Listen, e)
		}
		if port != server.RANDOM_PORT {
			ln, err := net.Listen("tcp", o.Listen)
			if err != nil {
				return nil, fmt.Errorf("embedded nats did not start on %s: %w", o.Listen, err)
			}
			ln.Close()
		}
		return nil, fmt.Errorf("embedded nats did not start on %s within 10s", o.Listen)
	}
	return s, nil
}

// ready waits until s accepts connections, for at most d, and gives up at
// once when the server logs a fatal error (it does not exit: the logger is
// ours).
func ready(s *server.Server, errs *errorLog, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if s.ReadyForConnections(50 * time.Millisecond) {
			return true
		}
		if errs.isFatal() {
			return false
		}
	}
	return false
}

// errorLog keeps the last error the server logged (its log is otherwise
// off), for the message of a server that did not start.
type errorLog struct {
	mu    sync.Mutex
	msg   string
	fatal bool
}

func (l *errorLog) isFatal() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}

func (l *errorLog) last() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.msg
}

func (l *errorLog) keep(fatal bool, format string, v ...any) {
	l.mu.Lock()
	l.msg = fmt.Sprintf(format, v...)
	l.fatal = l.fatal || fatal
	l.mu.Unlock()
}

func (l *errorLog) Noticef(string, ...any)         {}
func (l *errorLog) Warnf(string, ...any)           {}
func (l *errorLog) Debugf(string, ...any)          {}
func (l *errorLog) Tracef(string, ...any)          {}
func (l *errorLog) Errorf(format string, v ...any) { l.keep(false, format, v...) }
func (l *errorLog) Fatalf(format string, v ...any) { l.keep(true, format, v...) }
