package ingest

import (
	"context"
	"errors"
	"time"
)

// Message is one record from a source: a post's bytes (or a tombstone) with what
// is needed to dead-letter it and to acknowledge it.
type Message struct {
	// Key is the post id the source carries beside the value (Kafka key, JetStream header).
	Key string
	// NoKey says the source message had no key at all (a Kafka record with a
	// null key), as opposed to an empty one: a dead letter keeps it null.
	NoKey bool
	// Value is the post JSON; nil with Tombstone set deletes the post.
	Value     []byte
	Tombstone bool
	Headers   map[string]string
	// Origin says where the message came from, for dead letters and logs
	// ("stream XMODAL_POSTS seq 42", "partition 3 offset 17").
	Origin string
	// Seq orders versions of one post (stream sequence or partition offset).
	Seq uint64
	// Attempt counts deliveries of this message, 1 on the first.
	Attempt int

	ack        func(context.Context) error
	inProgress func(context.Context) error
}

// KeepAlive tells the source that the message is still being worked on, so that
// it is not redelivered while a slow batch (a stalled sink, say) is in flight.
func (m *Message) KeepAlive(ctx context.Context) error {
	if m.inProgress == nil {
		return nil
	}
	return m.inProgress(ctx)
}

// NewMessage builds a message whose Ack calls ack (sources and tests use it).
func NewMessage(key string, value []byte, ack func(context.Context) error) *Message {
	return &Message{Key: key, Value: value, Tombstone: value == nil, Attempt: 1, ack: ack}
}

// Ack confirms the message is done (durably indexed or dead-lettered). It blocks
// until the source confirms, so that nothing is acknowledged twice in the mind of
// the caller but once on the server.
func (m *Message) Ack(ctx context.Context) error {
	if m.ack == nil {
		return nil
	}
	return m.ack(ctx)
}

// Source yields messages. Fetch returns up to max messages, waiting at most wait
// for the first; it returns an empty slice and no error when none arrived. A
// finite source (a backfill) returns ErrExhausted once it has handed out its
// last message.
type Source interface {
	Fetch(ctx context.Context, max int, wait time.Duration) ([]*Message, error)
}

// Stage names where a post failed, for dead letters and metrics.
type Stage string

// The stages a post can fail at.
const (
	StageDecode Stage = "decode" // bad JSON or failed validation
	StageFetch  Stage = "fetch"  // image could not be fetched
	StageImage  Stage = "image"  // image could not be decoded
	StageEncode Stage = "encode" // the model failed
	StagePoison Stage = "poison" // delivered too many times without completing
	// StageFile: a client (xmodal ingest) could not read the local image a
	// line of a post file named (image_file); the line was never sent.
	StageFile Stage = "file"
)

// DeadLetter is where posts that cannot be indexed go, with the reason. Send
// returns only when the dead letter is durable.
type DeadLetter interface {
	Send(ctx context.Context, m *Message, stage Stage, reason string) error
}

// Dead-letter headers, on every backend.
const (
	HeaderKey     = "Xmodal-Key"
	HeaderReason  = "Xmodal-Reason"
	HeaderStage   = "Xmodal-Stage"
	HeaderOrigin  = "Xmodal-Origin"
	HeaderAttempt = "Xmodal-Attempt"
	HeaderFailed  = "Xmodal-Failed-At"
)

// ErrExhausted is what a finite Source's Fetch returns when it has nothing more
// to hand out.
var ErrExhausted = errors.New("ingest: source exhausted")
