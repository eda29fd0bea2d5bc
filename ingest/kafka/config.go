package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// Config configures a Source. Zero values take the defaults named on each field.
type Config struct {
	Brokers []string // bootstrap "host:port" addresses; required
	Topic   string   // the posts topic; required
	Group   string   // consumer group id; required

	DLQTopic      string // dead letters, default Topic + ".dlq"
	AttemptsTopic string // the compacted delivery-history table, default Group + ".attempts"
	ClientID      string // default "xmodal"

	SASL SASL
	TLS  TLS

	// Fetching (per partition reader).
	MinBytes int           // default 1
	MaxBytes int           // per fetch, default 10 MiB
	MaxWait  time.Duration // broker long-poll wait, default 500ms
	// QueueSize bounds fetched messages buffered between the partition readers and
	// Fetch (across partitions), default 1024.
	QueueSize int

	// Group membership.
	SessionTimeout    time.Duration // default 10s; at least 6s (the broker's group.min.session.timeout.ms)
	HeartbeatInterval time.Duration // default SessionTimeout/10, at least 100ms
	RebalanceTimeout  time.Duration // how long a rebalance waits for members to rejoin, default 30s
	JoinBackoff       time.Duration // wait after a failed join (broker down), default 1s
	// StartOffset is where a partition without a committed offset starts:
	// "earliest" (default) or "latest".
	StartOffset string

	// CommitInterval is how often acknowledged offsets are committed, default 1s.
	// Offsets are also committed when partitions are revoked and on Close.
	CommitInterval time.Duration
	// Timeout bounds one request to the broker (metadata, writes of the attempts
	// table and dead letters, commits), default 10s.
	Timeout time.Duration

	Logger     *slog.Logger          // default slog.Default()
	Registerer prometheus.Registerer // nil: metrics are not registered
	// OnAssign, when set, is called with this member's partitions at the
	// start of every generation, before any of their messages is fetched
	// (an index writer fences: another member may have written the same
	// posts a moment ago).
	OnAssign func(partitions []int)
}

// SASL selects SASL authentication; an empty Mechanism disables it.
type SASL struct {
	Mechanism string // "plain", "scram-sha-256" or "scram-sha-512"
	User      string
	Password  string
}

// TLS enables TLS. Config, when set, is used as is; otherwise one is built from
// the files. Enable with no files uses the system roots.
type TLS struct {
	Enable             bool
	Config             *tls.Config
	CAFile             string // PEM roots to verify the brokers with (default: system roots)
	CertFile, KeyFile  string // client certificate (mutual TLS)
	InsecureSkipVerify bool   // do not verify the brokers' certificates (tests only)
	ServerName         string // overrides the name checked in the broker certificate
}

func (t TLS) enabled() bool {
	return t.Enable || t.Config != nil || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.InsecureSkipVerify
}

// ConfigError names the field of Config that is wrong.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string { return "kafka config " + e.Field + ": " + e.Reason }

func bad(field, format string, args ...any) error {
	return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// MinSessionTimeout is the smallest session timeout brokers accept by default
// (group.min.session.timeout.ms).
const MinSessionTimeout = 6 * time.Second

// WithDefaults returns c with every zero field set to its default.
func (c Config) WithDefaults() Config {
	if c.DLQTopic == "" && c.Topic != "" {
		c.DLQTopic = c.Topic + ".dlq"
	}
	if c.AttemptsTopic == "" && c.Group != "" {
		c.AttemptsTopic = c.Group + ".attempts"
	}
	if c.ClientID == "" {
		c.ClientID = "xmodal"
	}
	if c.MinBytes == 0 {
		c.MinBytes = 1
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 10 << 20
	}
	if c.MaxWait == 0 {
		c.MaxWait = 500 * time.Millisecond
	}
	if c.QueueSize == 0 {
		c.QueueSize = 1024
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 10 * time.Second
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = max(c.SessionTimeout/10, 100*time.Millisecond)
	}
	if c.RebalanceTimeout == 0 {
		c.RebalanceTimeout = 30 * time.Second
	}
	if c.JoinBackoff == 0 {
		c.JoinBackoff = time.Second
	}
	if c.StartOffset == "" {
		c.StartOffset = "earliest"
	}
	if c.CommitInterval == 0 {
		c.CommitInterval = time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate checks c (after defaults), naming the first bad field.
func (c Config) Validate() error {
	c = c.WithDefaults()
	if len(c.Brokers) == 0 {
		return bad("Brokers", "at least one broker address is required")
	}
	for i, b := range c.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			return bad(fmt.Sprintf("Brokers[%d]", i), "%q is not host:port", b)
		}
	}
	if err := validTopic(c.Topic); err != nil {
		return bad("Topic", "%v", err)
	}
	if c.Group == "" {
		return bad("Group", "a consumer group id is required")
	}
	if err := validTopic(c.DLQTopic); err != nil {
		return bad("DLQTopic", "%v", err)
	}
	if c.DLQTopic == c.Topic {
		return bad("DLQTopic", "must differ from Topic (%q)", c.Topic)
	}
	if err := validTopic(c.AttemptsTopic); err != nil {
		return bad("AttemptsTopic", "%v (it defaults to Group + \".attempts\")", err)
	}
	if c.AttemptsTopic == c.Topic || c.AttemptsTopic == c.DLQTopic {
		return bad("AttemptsTopic", "must differ from Topic and DLQTopic")
	}
	switch strings.ToLower(c.SASL.Mechanism) {
	case "":
		if c.SASL.User != "" || c.SASL.Password != "" {
			return bad("SASL.Mechanism", "a user or password is set but no mechanism (plain, scram-sha-256, scram-sha-512)")
		}
	case "plain", "scram-sha-256", "scram-sha-512":
		if c.SASL.User == "" {
			return bad("SASL.User", "required with mechanism %s", c.SASL.Mechanism)
		}
	default:
		return bad("SASL.Mechanism", "%q is not one of plain, scram-sha-256, scram-sha-512", c.SASL.Mechanism)
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return bad("TLS.CertFile", "CertFile and KeyFile go together")
	}
	if c.TLS.Config != nil && (c.TLS.CAFile != "" || c.TLS.CertFile != "") {
		return bad("TLS.Config", "set either Config or the files, not both")
	}
	switch {
	case c.MinBytes < 1:
		return bad("MinBytes", "must be at least 1")
	case c.MaxBytes < c.MinBytes:
		return bad("MaxBytes", "must be at least MinBytes (%d)", c.MinBytes)
	case c.MaxWait < time.Millisecond:
		return bad("MaxWait", "must be at least 1ms")
	case c.QueueSize < 1:
		return bad("QueueSize", "must be at least 1")
	case c.SessionTimeout < MinSessionTimeout:
		return bad("SessionTimeout", "must be at least %v (got %v)", MinSessionTimeout, c.SessionTimeout)
	case c.HeartbeatInterval <= 0 || c.HeartbeatInterval >= c.SessionTimeout/2:
		return bad("HeartbeatInterval", "must be positive and under half of SessionTimeout (got %v)", c.HeartbeatInterval)
	case c.RebalanceTimeout < time.Second:
		return bad("RebalanceTimeout", "must be at least 1s")
	case c.JoinBackoff < 0:
		return bad("JoinBackoff", "must not be negative")
	case c.StartOffset != "earliest" && c.StartOffset != "latest":
		return bad("StartOffset", "%q is not earliest or latest", c.StartOffset)
	case c.CommitInterval < time.Millisecond:
		return bad("CommitInterval", "must be at least 1ms")
	case c.Timeout < 100*time.Millisecond:
		return bad("Timeout", "must be at least 100ms")
	}
	return nil
}

func validTopic(t string) error {
	if t == "" {
		return errors.New("required")
	}
	if len(t) > 249 || t == "." || t == ".." {
		return fmt.Errorf("%q is not a valid topic name", t)
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("%q is not a valid topic name (letters, digits, . _ -)", t)
		}
	}
	return nil
}

func (c *Config) mechanism() (sasl.Mechanism, error) {
	switch strings.ToLower(c.SASL.Mechanism) {
	case "":
		return nil, nil
	case "plain":
		return plain.Mechanism{Username: c.SASL.User, Password: c.SASL.Password}, nil
	case "scram-sha-256":
		return scram.Mechanism(scram.SHA256, c.SASL.User, c.SASL.Password)
	case "scram-sha-512":
		return scram.Mechanism(scram.SHA512, c.SASL.User, c.SASL.Password)
	}
	return nil, bad("SASL.Mechanism", "%q is not supported", c.SASL.Mechanism)
}

func (c *Config) tlsConfig() (*tls.Config, error) {
	t := c.TLS
	if !t.enabled() {
		return nil, nil
	}
	if t.Config != nil {
		return t.Config.Clone(), nil
	}
	out := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify, ServerName: t.ServerName} //nolint:gosec // the flag is the user's choice
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, bad("TLS.CAFile", "%v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, bad("TLS.CAFile", "%s holds no PEM certificate", t.CAFile)
		}
		out.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, bad("TLS.CertFile", "%v", err)
		}
		out.Certificates = []tls.Certificate{cert}
	}
	return out, nil
}

// Connection holds what every kafka-go object needs to reach the brokers with
// Config's SASL and TLS settings: a dialer (consumer groups, partition
// readers), a transport (writers) and a client on it (metadata, offsets).
type Connection struct {
	Dialer    *kafkago.Dialer
	Transport *kafkago.Transport
	Client    *kafkago.Client
}

// Connect builds the Connection of c (after defaults); it dials nothing.
func (c Config) Connect() (*Connection, error) {
	c = c.WithDefaults()
	mech, err := c.mechanism()
	if err != nil {
		return nil, err
	}
	tc, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	d := &kafkago.Dialer{ClientID: c.ClientID, Timeout: c.Timeout, DualStack: true, SASLMechanism: mech, TLS: tc}
	tr := &kafkago.Transport{ClientID: c.ClientID, DialTimeout: c.Timeout, SASL: mech, TLS: tc, MetadataTTL: 10 * time.Second}
	return &Connection{Dialer: d, Transport: tr,
		Client: &kafkago.Client{Addr: kafkago.TCP(c.Brokers...), Transport: tr, Timeout: c.Timeout}}, nil
}

// Close closes the transport's idle connections.
func (c *Connection) Close() { c.Transport.CloseIdleConnections() }
