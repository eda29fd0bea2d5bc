package ingest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStreamConfig names the ingest stream, its consumer and the dead-letter stream.
type JetStreamConfig struct {
	Stream     string // default XMODAL_POSTS
	Subject    string // default xmodal.posts
	Consumer   string // durable consumer name, default indexer
	DLQStream  string // default XMODAL_DLQ
	DLQSubject string // default xmodal.dlq
	// AckWait is how long an unacknowledged message waits before redelivery
	// (after a crash, say); default 30s. Batches in flight are kept alive.
	AckWait    time.Duration
	MaxAge     time.Duration // retention of the ingest stream, default 7 days
	MaxPending int           // max unacked messages, default 4096
}

// WithDefaults returns c with the zero fields set to their defaults.
func (c JetStreamConfig) WithDefaults() JetStreamConfig {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Stream, "XMODAL_POSTS")
	def(&c.Subject, "xmodal.posts")
	def(&c.Consumer, "indexer")
	def(&c.DLQStream, "XMODAL_DLQ")
	def(&c.DLQSubject, "xmodal.dlq")
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.MaxAge == 0 {
		c.MaxAge = 7 * 24 * time.Hour
	}
	if c.MaxPending == 0 {
		c.MaxPending = 4096
	}
	return c
}

// JetStream is the embedded-mode source: a durable pull consumer over the ingest
// stream with explicit, confirmed acks, and a dead-letter stream.
type JetStream struct {
	cfg  JetStreamConfig
	js   jetstream.JetStream
	cons jetstream.Consumer
}

// EnsureStreams creates or updates the ingest and dead-letter streams.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg JetStreamConfig) error {
	cfg = cfg.WithDefaults()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: cfg.Stream, Subjects: []string{cfg.Subject}, Storage: jetstream.FileStorage,
		MaxAge: cfg.MaxAge, Description: "xmodal ingest: one post JSON per message, key in the Xmodal-Key header",
	}); err != nil {
		return fmt.Errorf("jetstream stream %s: %w", cfg.Stream, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: cfg.DLQStream, Subjects: []string{cfg.DLQSubject}, Storage: jetstream.FileStorage,
		Description: "xmodal dead letters: original bytes, reason and stage in headers",
	}); err != nil {
		return fmt.Errorf("jetstream stream %s: %w", cfg.DLQStream, err)
	}
	return nil
}

// NewJetStream connects the source to the ingest stream, creating the streams and
// the durable consumer when missing.
func NewJetStream(ctx context.Context, nc *nats.Conn, cfg JetStreamConfig) (*JetStream, error) {
	cfg = cfg.WithDefaults()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	if err := EnsureStreams(ctx, js, cfg); err != nil {
		return nil, err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, cfg.Stream, jetstream.ConsumerConfig{
		Durable:       cfg.Consumer,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxAckPending: cfg.MaxPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Description:   "xmodal indexer",
	})
	if err != nil {
		return nil, fmt.Errorf("jetstream consumer %s: %w", cfg.Consumer, err)
	}
	return &JetStream{cfg: cfg, js: js, cons: cons}, nil
}

// Fetch pulls up to max messages, waiting up to wait for them.
//
// The pull request's expiry is the server's to enforce: the server ends the
// request with a status message after the last message it delivers, and
// Fetch reads until that status, even when ctx ends meanwhile. A client-side
// cancellation (nats.go's FetchContext) would unsubscribe the request's inbox
// while messages the server already counts as delivered are still on the
// wire or queued unread; those are lost to this process and sit in ack
// pending until the ack wait redelivers them (issue #15 item 8: the tail of an
// image burst, whose large messages take longest to arrive, waited 30 s).
// So a Fetch in progress when ctx ends still takes at most wait (plus the
// client's one-second grace for a lost status).
func (s *JetStream) Fetch(ctx context.Context, max int, wait time.Duration) ([]*Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	batch, err := s.cons.Fetch(max, jetstream.FetchMaxWait(max1ms(wait)))
	if err != nil {
		return nil, err
	}
	var out []*Message
	for m := range batch.Messages() {
		out = append(out, s.wrap(m))
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		return out, err
	}
	return out, ctx.Err()
}

func max1ms(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return time.Millisecond
	}
	return d
}

func (s *JetStream) wrap(m jetstream.Msg) *Message {
	msg := &Message{Key: m.Headers().Get(HeaderKey), Value: m.Data(), Headers: map[string]string{}, Attempt: 1}
	for k, v := range m.Headers() {
		if len(v) > 0 {
			msg.Headers[k] = v[0]
		}
	}
	if len(msg.Value) == 0 {
		msg.Value, msg.Tombstone = nil, true
	}
	if md, err := m.Metadata(); err == nil {
		msg.Seq = md.Sequence.Stream
		msg.Attempt = int(md.NumDelivered)
		msg.Origin = fmt.Sprintf("stream %s seq %d", md.Stream, md.Sequence.Stream)
	}
	msg.ack = func(ctx context.Context) error { return m.DoubleAck(ctx) }
	msg.inProgress = func(context.Context) error { return m.InProgress() }
	return msg
}

// Send writes a dead letter to the dead-letter stream and waits for the server's ack.
func (s *JetStream) Send(ctx context.Context, m *Message, stage Stage, reason string) error {
	return PublishDeadLetter(ctx, s.js, s.cfg.DLQSubject, m, stage, reason)
}

// PublishDeadLetter publishes m's original bytes with the dead-letter headers.
func PublishDeadLetter(ctx context.Context, js jetstream.JetStream, subject string, m *Message, stage Stage, reason string) error {
	out := nats.NewMsg(subject)
	out.Data = m.Value
	for k, v := range m.Headers {
		out.Header.Set(k, v)
	}
	out.Header.Set(HeaderKey, m.Key)
	out.Header.Set(HeaderReason, reason)
	out.Header.Set(HeaderStage, string(stage))
	out.Header.Set(HeaderOrigin, m.Origin)
	out.Header.Set(HeaderAttempt, strconv.Itoa(m.Attempt))
	out.Header.Set(HeaderFailed, time.Now().UTC().Format(time.RFC3339Nano))
	if m.Origin != "" {
		// A redelivered message dead-lettered again within the duplicate window is
		// stored once.
		out.Header.Set(nats.MsgIdHdr, m.Origin+"/"+string(stage))
	}
	if _, err := js.PublishMsg(ctx, out); err != nil {
		return fmt.Errorf("dead letter for %s: %w", QuoteID(m.Key), err)
	}
	return nil
}

// Publish appends one post (or a tombstone when value is nil) to the ingest stream
// and waits for the server's ack.
func Publish(ctx context.Context, js jetstream.JetStream, subject, key string, value []byte) error {
	if why := ValidID(key); why != "" {
		return fmt.Errorf("post key %s: %s", QuoteID(key), why)
	}
	m := nats.NewMsg(subject)
	m.Header.Set(HeaderKey, key)
	m.Data = value
	if _, err := js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("publish post %s: %w", QuoteID(key), err)
	}
	return nil
}
