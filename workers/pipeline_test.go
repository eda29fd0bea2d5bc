package workers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders"
	"github.com/xmodal/xmodal/encoders/imageprep"
	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/internal/denylist"
	"github.com/xmodal/xmodal/internal/natsserver"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/sink/embedded"
	"github.com/xmodal/xmodal/workers"
)

// testAckWait is the ack wait of the test stream: short, so that a message the
// pipeline lost is redelivered within a test's patience. newPipeline keeps
// messages in flight alive at a third of it, as xmodal run does.
const testAckWait = 2 * time.Second

type env struct {
	js    jetstream.JetStream
	src   *ingest.JetStream
	ix    *embedded.Index
	deny  *denylist.List
	model *encoders.Model
}

// openDenyList opens the replicated deny-list on the server at url.
func openDenyList(t testing.TB, url string) *denylist.List {
	t.Helper()
	_, js := testutil.ConnectJS(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := denylist.Open(ctx, js, denylist.Config{})
	if err != nil {
		t.Fatalf("deny-list: %v", err)
	}
	t.Cleanup(l.Close)
	return l
}

// newDenyList starts a NATS server of its own for a deny-list.
func newDenyList(t testing.TB) *denylist.List {
	return openDenyList(t, testutil.StartNATS(t, "").ClientURL())
}

func newEnv(t testing.TB) *env { return newEnvAckWait(t, testAckWait) }

// newEnvAckWait is newEnv with the ingest consumer's ack wait set.
func newEnvAckWait(t testing.TB, ackWait time.Duration) *env {
	t.Helper()
	ns, err := natsserver.Start(natsserver.Options{Listen: "127.0.0.1:0", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	src, err := ingest.NewJetStream(context.Background(), nc, ingest.JetStreamConfig{AckWait: ackWait})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler) // load-time INFO lines would break benchmark output lines
	model, err := encoders.Load("../testdata/models/parity", encoders.Options{Logger: quiet})
	if err != nil {
		if errors.Is(err, encoders.ErrORTNotFound) {
			testutil.Unavailable(t, "ONNX Runtime library", "%v", err)
		}
		t.Fatalf("load the parity model: %v", err)
	}
	t.Cleanup(func() { model.Close() })
	ix, err := embedded.Open(context.Background(), embedded.Options{Path: filepath.Join(t.TempDir(), "ix.db"), Dim: model.Dim(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ix.Close() })
	return &env{js: js, src: src, ix: ix, deny: openDenyList(t, ns.ClientURL()), model: model}
}

// decode is the pipeline's decoder in these tests: exact mode, a budget.
var decode = func() workers.DecodeFunc {
	d, err := imageprep.NewDecoder(imageprep.DecoderOptions{Mode: imageprep.ModeExact, Budget: imageprep.NewBudget(256 << 20)})
	if err != nil {
		panic(err)
	}
	return func(ctx context.Context, b []byte) (workers.Decoded, error) {
		dec, err := d.Decode(ctx, b)
		if err != nil {
			return workers.Decoded{}, err
		}
		return workers.Decoded{Image: dec.Image, Mode: string(dec.Mode), Release: dec.Release}, nil
	}
}()

func pngBytes(c color.RGBA) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 32, 32))
	for i := 0; i < len(img.Pix); i += 4 {
		img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3] = c.R, c.G, c.B, 255
	}
	var b bytes.Buffer
	png.Encode(&b, img)
	return b.Bytes()
}

func post(id, text string, img []byte) []byte {
	p := domain.Post{Schema: 1, ID: id, Text: text, CreatedAt: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	if img != nil {
		p.Image = &domain.ImageRef{Data: img}
	}
	b, _ := json.Marshal(p)
	return b
}

func (e *env) publish(t testing.TB, key string, value []byte) {
	t.Helper()
	if err := ingest.Publish(context.Background(), e.js, "xmodal.posts", key, value); err != nil {
		t.Fatal(err)
	}
}

// runUntil runs the pipeline until cond holds or the deadline passes.
func runUntil(t *testing.T, p *workers.Pipeline, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) deadLetters(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	s, err := e.js.Stream(ctx, "XMODAL_DLQ")
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(ctx)
	out := map[string]string{}
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		out[m.Header.Get(ingest.HeaderKey)] = m.Header.Get(ingest.HeaderStage) + ": " + m.Header.Get(ingest.HeaderReason)
	}
	return out
}

func (e *env) count(m domain.Modality) int {
	n, _ := e.ix.Count(context.Background())
	return n[m]
}

func (e *env) pending(t *testing.T) (uint64, int) {
	cons, err := e.js.Consumer(context.Background(), "XMODAL_POSTS", "indexer")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.NumPending, info.NumAckPending
}

// allAcked reports whether every message published so far is acknowledged.
// waitAllAcked waits up to 30 s for every published message to be
// acknowledged.
func (e *env) waitAllAcked(t *testing.T) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, func() error {
		if !e.allAcked(t) {
			_, unacked := e.pending(t)
			return fmt.Errorf("every message acknowledged: %d not yet", unacked)
		}
		return nil
	})
}

func (e *env) allAcked(t testing.TB) bool {
	ctx := context.Background()
	st, err := e.js.Stream(ctx, "XMODAL_POSTS")
	if err != nil {
		t.Fatal(err)
	}
	si, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := e.js.Consumer(ctx, "XMODAL_POSTS", "indexer")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ci.AckFloor.Stream == si.State.LastSeq && ci.NumAckPending == 0 && ci.NumPending == 0
}

func newPipeline(t *testing.T, e *env, sink domain.Writer, emb workers.Embedder, cfg workers.Config) *workers.Pipeline {
	t.Helper()
	if sink == nil {
		sink = e.ix
	}
	if emb == nil {
		emb = e.model
	}
	if cfg.FetchWait == 0 {
		cfg.FetchWait = 20 * time.Millisecond
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = testAckWait / 3
	}
	p, err := workers.New(cfg, workers.Deps{Source: e.src, DeadLetter: e.src, Sink: sink, Deny: e.deny, Embedder: emb, Decode: decode})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPartialFailureIndexesTheRest(t *testing.T) {
	e := newEnv(t)
	e.publish(t, "both-ok", post("both-ok", "a red square", pngBytes(color.RGBA{255, 0, 0, 255})))
	e.publish(t, "bad-image", post("bad-image", "caption survives", []byte("GIF89a-but-not-really")))
	e.publish(t, "url-image", post("url-image", "", nil)[:0]) // empty value = tombstone for a never-seen post
	p := newPipeline(t, e, nil, nil, workers.Config{})
	runUntil(t, p, func() bool { return e.allAcked(t) })

	if got := e.count(domain.ModalityText); got != 2 {
		t.Errorf("text records %d, want 2 (both-ok, bad-image)", got)
	}
	if got := e.count(domain.ModalityImage); got != 1 {
		t.Errorf("image records %d, want 1", got)
	}
	if got := e.count(domain.ModalityFused); got != 1 {
		t.Errorf("fused records %d, want 1", got)
	}
	dl := e.deadLetters(t)
	if !strings.HasPrefix(dl["bad-image"], "image:") || len(dl) != 1 {
		t.Errorf("dead letters %v, want one for bad-image at stage image", dl)
	}
	// The fused vector is the normalised sum of the two towers' vectors.
	recs, _ := e.ix.Get(context.Background(), []string{"both-ok#image", "both-ok#text", "both-ok#fused"})
	var dot, norm float64
	for i := range recs[2].Vector {
		s := float64(recs[0].Vector[i] + recs[1].Vector[i])
		dot += s * float64(recs[2].Vector[i])
		norm += s * s
	}
	if cos := dot / (sqrt(norm)); cos < 0.9999 {
		t.Errorf("fused vector is not normalise(image+text): cosine %.5f", cos)
	}
}

func sqrt(x float64) float64 {
	z := x
	for range 50 {
		z = (z + x/z) / 2
	}
	return z
}

func TestEditsAndDeletesInOneBatch(t *testing.T) {
	e := newEnv(t)
	e.publish(t, "p1", post("p1", "first version", pngBytes(color.RGBA{0, 0, 255, 255})))
	e.publish(t, "p1", post("p1", "second version, text only", nil))
	e.publish(t, "p2", post("p2", "will be deleted", nil))
	e.publish(t, "p2", nil)
	e.publish(t, "p2", post("p2", "comes back? no: deny-listed", nil))
	p := newPipeline(t, e, nil, nil, workers.Config{BatchSize: 16})
	runUntil(t, p, func() bool { return e.allAcked(t) })

	recs, _ := e.ix.Get(context.Background(), []string{"p1#text", "p1#image", "p2#text"})
	if len(recs) != 1 || recs[0].Text != "second version, text only" {
		t.Errorf("records %+v, want only p1's second version", recs)
	}
	if d, _ := e.ix.IsDenied(context.Background(), "p2"); !d {
		t.Error("p2 not deny-listed")
	}
}

// flakySink fails its first n writes, as a database outage would.
type flakySink struct {
	domain.Writer
	fails atomic.Int32
}

func (f *flakySink) Apply(ctx context.Context, chs []domain.Change) ([]domain.Outcome, error) {
	if f.fails.Add(-1) >= 0 {
		return nil, errors.New("sink unavailable")
	}
	return f.Writer.Apply(ctx, chs)
}

func TestSinkOutageAcksNothingUntilRecovery(t *testing.T) {
	e := newEnv(t)
	for i := range 5 {
		e.publish(t, fmt.Sprint("p", i), post(fmt.Sprint("p", i), fmt.Sprint("post ", i), nil))
	}
	sink := &flakySink{Writer: e.ix}
	sink.fails.Store(4)
	p := newPipeline(t, e, sink, nil, workers.Config{})
	sawUnacked := false
	runUntil(t, p, func() bool {
		n, u := e.pending(t)
		if sink.fails.Load() >= 0 && u > 0 {
			sawUnacked = true
			if e.count(domain.ModalityText) != 0 {
				t.Fatal("records appeared while the sink was failing")
			}
		}
		return n == 0 && u == 0 && e.allAcked(t)
	})
	if !sawUnacked {
		t.Error("never observed messages held unacked during the outage")
	}
	if got := e.count(domain.ModalityText); got != 5 {
		t.Errorf("after recovery %d records, want 5", got)
	}
}

// pickyEmbedder fails any text batch that contains "POISON", as a model that
// chokes on one input would.
type pickyEmbedder struct{ *encoders.Model }

func (p pickyEmbedder) EmbedTexts(ctx context.Context, texts []string) ([][]float32, error) {
	for _, s := range texts {
		if strings.Contains(s, "POISON") {
			return nil, errors.New("model failed on this input")
		}
	}
	return p.Model.EmbedTexts(ctx, texts)
}

func TestEncoderFailureIsIsolated(t *testing.T) {
	e := newEnv(t)
	e.publish(t, "ok1", post("ok1", "fine", nil))
	e.publish(t, "bad", post("bad", "POISON pill", nil))
	e.publish(t, "ok2", post("ok2", "also fine", nil))
	p := newPipeline(t, e, nil, pickyEmbedder{e.model}, workers.Config{})
	runUntil(t, p, func() bool { return e.allAcked(t) })
	if got := e.count(domain.ModalityText); got != 2 {
		t.Errorf("%d text records, want 2", got)
	}
	if dl := e.deadLetters(t); !strings.HasPrefix(dl["bad"], "encode:") {
		t.Errorf("dead letters %v, want bad at stage encode", dl)
	}
}

func TestPoisonAfterMaxAttempts(t *testing.T) {
	e := newEnv(t)
	e.publish(t, "crasher", post("crasher", "this post crashes the indexer", nil))
	// Simulate two crashed deliveries: fetch without acking and let the ack wait pass.
	for range 2 {
		msgs, err := e.src.Fetch(context.Background(), 1, 5*time.Second)
		if err != nil || len(msgs) != 1 {
			t.Fatalf("fetch: %v %d", err, len(msgs))
		}
	}
	p := newPipeline(t, e, nil, nil, workers.Config{MaxAttempts: 2})
	runUntil(t, p, func() bool { return e.allAcked(t) })
	if dl := e.deadLetters(t); !strings.HasPrefix(dl["crasher"], "poison:") {
		t.Errorf("dead letters %v, want crasher as poison", dl)
	}
	if e.count(domain.ModalityText) != 0 {
		t.Error("a poison post was indexed")
	}
}
