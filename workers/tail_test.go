package workers_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/workers"
)

// noisePNG is a PNG of random pixels: it does not compress, so a post that
// carries it inline is a large message (about 4·side² bytes).
func noisePNG(seed uint64, side int) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	img := image.NewNRGBA(image.Rect(0, 0, side, side))
	for i := range img.Pix {
		img.Pix[i] = byte(rng.UintN(256))
	}
	for i := 3; i < len(img.Pix); i += 4 {
		img.Pix[i] = 255
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// TestImageBurstHasNoTailStall (issue #15 item 8): every post of a burst of
// large image posts is delivered to the pipeline once and indexed without
// waiting for the ack-wait redelivery. The ack wait is 60 s and the test
// gives up after 30 s, so a post that the source handed out but that never
// reached the pipeline fails it, and the consumer must report zero
// redeliveries.
func TestImageBurstHasNoTailStall(t *testing.T) {
	const ackWait = 60 * time.Second
	e := newEnvAckWait(t, ackWait)
	const posts = 48
	for i := range posts {
		id := fmt.Sprint("img", i)
		e.publish(t, id, post(id, "", noisePNG(uint64(i), 160)))
	}
	p := newPipeline(t, e, nil, nil, workers.Config{BatchSize: 8, KeepAlive: ackWait / 3})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(ackWait / 2)
	for e.count(domain.ModalityImage) < posts {
		if time.Now().After(deadline) {
			_, ackPending := e.pending(t)
			t.Fatalf("%d of %d image posts indexed after %v (%d delivered and not acknowledged): the tail waits for the %v ack-wait redelivery",
				e.count(domain.ModalityImage), posts, ackWait/2, ackPending, ackWait)
		}
		time.Sleep(20 * time.Millisecond)
	}
	testutil.Eventually(t, 30*time.Second, func() error {
		if !e.allAcked(t) {
			return errors.New("not every message acknowledged yet")
		}
		return nil
	})
	cons, err := e.js.Consumer(context.Background(), "XMODAL_POSTS", "indexer")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumRedelivered != 0 || info.Delivered.Consumer != posts {
		t.Errorf("%d deliveries, %d redelivered; want %d and 0", info.Delivered.Consumer, info.NumRedelivered, posts)
	}
}

// TestInflightGaugeCountsPosts (issue #15 item 8): xmodal_inflight_messages
// counts posts between fetch and acknowledgement, not the slots a fetch in
// progress reserves: an idle pipeline whose fetch loop is polling reads 0.
func TestInflightGaugeCountsPosts(t *testing.T) {
	e := newEnv(t)
	const posts = 5
	for i := range posts {
		id := fmt.Sprint("t", i)
		e.publish(t, id, post(id, fmt.Sprint("text post ", i), nil))
	}
	reg := prometheus.NewRegistry()
	p, err := workers.New(workers.Config{BatchSize: 32, FetchWait: 20 * time.Millisecond},
		workers.Deps{Source: e.src, DeadLetter: e.src, Sink: e.ix, Deny: e.deny, Embedder: e.model, Decode: decode, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	testutil.Eventually(t, 30*time.Second, func() error {
		if !e.allAcked(t) {
			return errors.New("not every message acknowledged yet")
		}
		return nil
	})
	// Idle now: the fetch loop keeps asking for up to 32 messages at a time.
	highest := 0.0
	for range 50 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "xmodal_inflight_messages" {
				highest = max(highest, mf.GetMetric()[0].GetGauge().GetValue())
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	if highest != 0 {
		t.Errorf("xmodal_inflight_messages read up to %v while every post was acknowledged; want 0", highest)
	}
}
