package main

// Delivery tests of `xmodal run` against a real Apache Kafka 4 broker (started with
// scripts/kafka.sh): kill -9 at every crash point and at seeded random moments,
// two indexers in one group with one killed, a broker restart, SASL/PLAIN. Each
// checks the same end state: every valid, non-deleted post's latest version is
// indexed once, the dead-letter topic holds exactly the malformed messages (by
// source partition and offset) with reasons, deleted posts are absent and
// deny-listed, and the group's committed offsets are the partitions' ends.
//
// XMODAL_E2E_POSTS sets the number of messages (default 2000; the figure
// is 10000), XMODAL_E2E_SEED the workload and kill seed (logged),
// XMODAL_TEST_KAFKA_E2E_PORT the broker's first port (default: three free ports;
// SASL +1, controller +2).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/ingest"
	kafkasrc "github.com/xmodal/xmodal/ingest/kafka"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/sink/embedded"
)

// e2eDefaultPosts is the default workload size. XMODAL_E2E_POSTS=10000 runs the
// issue's size: measured on the shared 2-core machine, the three delivery tests
// then take 3m42s (kill -9 95 s, two indexers 51 s, broker restart 76 s), and the
// kill -9 test alone up to 146 s when the machine is busy, which would push this
// file past 5 minutes; at 2000 the file takes about 3 minutes.
const e2eDefaultPosts = 2000

const e2ePartitions = 6

// ---- the broker ----

// kafkaBroker is a broker started for one test (testutil.StartKafka: ports and
// a data dir of its own, stopped and removed when the test ends) with the
// queries these tests make of it.
type kafkaBroker struct{ *testutil.Kafka }

// startKafka starts a fresh broker for t (XMODAL_TEST_KAFKA_E2E_PORT fixes its
// first port). Without java >= 17 and mvn (or a cached .cache/kafka) the test
// fails, naming Kafka; it is never skipped.
func startKafka(t testing.TB) *kafkaBroker {
	t.Helper()
	t0 := time.Now()
	b := &kafkaBroker{testutil.StartKafka(t)}
	t.Logf("Kafka broker on %s (SASL %s) started in %v", b.Plain(), b.SASL(), time.Since(t0).Round(time.Millisecond))
	return b
}

// writer returns a producer to topic (murmur2 partitioner, acks=all) with a
// transport of its own (the default one may hold metadata of an earlier broker
// on the same port); closing it closes the transport's connections.
func (b *kafkaBroker) writer(topic string) *kafkaWriter {
	tr := &kafkago.Transport{DialTimeout: 10 * time.Second, MetadataTTL: time.Second}
	return &kafkaWriter{Writer: &kafkago.Writer{Addr: kafkago.TCP(b.Plain()), Topic: topic, RequiredAcks: kafkago.RequireAll,
		Balancer: &kafkago.Murmur2Balancer{}, BatchTimeout: time.Millisecond, BatchSize: 100, MaxAttempts: 10, Transport: tr}, tr: tr}
}

type kafkaWriter struct {
	*kafkago.Writer
	tr *kafkago.Transport
}

func (w *kafkaWriter) Close() error {
	err := w.Writer.Close()
	w.tr.CloseIdleConnections()
	return err
}

// partitions returns the number of partitions of a topic (0 when it does not exist).
func (b *kafkaBroker) partitions(t testing.TB, topic string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, done := b.Client()
	defer done()
	md, err := cl.Metadata(ctx, &kafkago.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return 0
	}
	return len(md.Topics[0].Partitions)
}

// endOffsets returns each partition's end offset (high-water mark).
func (b *kafkaBroker) endOffsets(t testing.TB, topic string, n int) (map[int]int64, error) {
	req := make([]kafkago.OffsetRequest, n)
	for p := range req {
		req[p] = kafkago.LastOffsetOf(p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, done := b.Client()
	defer done()
	res, err := cl.ListOffsets(ctx, &kafkago.ListOffsetsRequest{Topics: map[string][]kafkago.OffsetRequest{topic: req}})
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	out := map[int]int64{}
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("list offsets of %s/%d: %w", topic, p.Partition, p.Error)
		}
		out[p.Partition] = p.LastOffset
	}
	return out, nil
}

// committed reads the group's committed offsets (-1: none) with kafka-go's client.
func (b *kafkaBroker) committed(topic, group string, n int) (map[int]int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, done := b.Client()
	defer done()
	res, err := cl.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: allParts(n)}})
	if err != nil {
		return nil, fmt.Errorf("offset fetch for group %s: %w", group, err)
	}
	if res.Error != nil {
		return nil, fmt.Errorf("offset fetch for group %s: %w", group, res.Error)
	}
	out := map[int]int64{}
	for _, p := range res.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("offset fetch for group %s partition %d: %w", group, p.Partition, p.Error)
		}
		out[p.Partition] = p.CommittedOffset
	}
	return out, nil
}

// members describes the group: member id -> assigned partitions of topic.
func (b *kafkaBroker) members(group, topic string) (map[string][]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, done := b.Client()
	defer done()
	res, err := cl.DescribeGroups(ctx, &kafkago.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return nil, err
	}
	out := map[string][]int{}
	for _, g := range res.Groups {
		if g.Error != nil {
			return nil, g.Error
		}
		if g.GroupState != "Stable" {
			return nil, fmt.Errorf("group %s is %s", group, g.GroupState)
		}
		for _, m := range g.Members {
			var ps []int
			for _, tp := range m.MemberAssignments.Topics {
				if tp.Topic == topic {
					ps = append(ps, tp.Partitions...)
				}
			}
			slices.Sort(ps)
			out[m.MemberID] = ps
		}
	}
	return out, nil
}

func allParts(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func sumOffsets(m map[int]int64) int64 {
	var s int64
	for _, v := range m {
		s += max(v, 0)
	}
	return s
}

// readTopic reads every message of every partition of topic, up to the ends.
func (b *kafkaBroker) readTopic(t testing.TB, topic string) []kafkago.Message {
	t.Helper()
	n := b.partitions(t, topic)
	ends, err := b.endOffsets(t, topic, n)
	if err != nil {
		t.Fatal(err)
	}
	var out []kafkago.Message
	for p := range n {
		if ends[p] == 0 {
			continue
		}
		r := kafkago.NewReader(kafkago.ReaderConfig{Brokers: []string{b.Plain()}, Topic: topic, Partition: p,
			MinBytes: 1, MaxBytes: 8 << 20, MaxWait: 100 * time.Millisecond})
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				cancel()
				r.Close()
				t.Fatalf("read %s/%d: %v", topic, p, err)
			}
			out = append(out, m)
			if m.Offset+1 >= ends[p] {
				break
			}
		}
		cancel()
		r.Close()
	}
	return out
}

// ---- the workload ----

// e2eMsg is one message of the workload.
type e2eMsg struct {
	key     string
	value   []byte // nil: tombstone
	id      string // the post it concerns ("" for malformed messages without one)
	version int
	stage   ingest.Stage // the dead letter it must produce ("": none)
	kind    string
	at      float64 // ordering position (messages of one key keep their order)
	// Set after producing:
	part int
	off  int64
}

// e2eState is a post's expected final state.
type e2eState struct {
	version int
	author  string
	text    string
	mods    []domain.Modality
}

type e2eWorkload struct {
	seed    uint64
	msgs    []*e2eMsg
	want    map[string]*e2eState // post id -> final state (absent: not indexed)
	deleted map[string]bool      // ids that must be absent and deny-listed
	ids     []string             // every id that any message names
	bad     map[[2]int64]*e2eMsg // (partition, offset) -> malformed message (after produce)
	counts  map[domain.Modality]int
	kinds   map[string]int
}

func e2ePostCount(t testing.TB, def int) int {
	if s := os.Getenv("XMODAL_E2E_POSTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 100 {
			t.Fatalf("XMODAL_E2E_POSTS=%q: want an integer >= 100", s)
		}
		return n
	}
	return def
}

func e2eSeed(t testing.TB) uint64 {
	if s := os.Getenv("XMODAL_E2E_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("XMODAL_E2E_SEED=%q: %v", s, err)
		}
		return n
	}
	return uint64(time.Now().UnixNano())
}

var e2eWords = []string{"sunset", "bridge", "harbour", "street", "market", "dog", "cat", "mountain", "river",
	"concert", "crowd", "protest", "storm", "beach", "train", "garden", "city", "night", "festival", "snow"}

// newE2EWorkload builds about n messages: posts that are text-only, image-only
// (small inline PNGs) or both; edits (a later version, sometimes of another
// modality); tombstones, some followed by a re-post that must stay deleted,
// and some of posts never seen; and 2% malformed messages of many kinds, each
// under a key of its own. Messages of one key keep their order.
func newE2EWorkload(seed uint64, n int) *e2eWorkload {
	r := rand.New(rand.NewPCG(seed, 0x6b61666b61))
	w := &e2eWorkload{seed: seed, want: map[string]*e2eState{}, deleted: map[string]bool{}, kinds: map[string]int{}}
	created := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	text := func(i, v int) string {
		return fmt.Sprintf("post %d v%d: %s %s at the %s", i, v, e2eWords[r.IntN(len(e2eWords))],
			e2eWords[r.IntN(len(e2eWords))], e2eWords[r.IntN(len(e2eWords))])
	}
	add := func(m *e2eMsg) { w.msgs = append(w.msgs, m); w.kinds[m.kind]++ }
	post := func(i, v int, kind int, at float64) *e2eMsg {
		id := fmt.Sprintf("p-%05d", i)
		p := domain.Post{Schema: 1, ID: id, Author: fmt.Sprintf("user%d/v%d", i%50, v),
			CreatedAt: created.Add(time.Duration(i) * time.Minute), Labels: []string{e2eWords[i%len(e2eWords)]}}
		names := []string{"text", "image", "both"}
		if kind != 1 {
			p.Text = text(i, v)
		}
		if kind != 0 {
			p.Image = &domain.ImageRef{Data: tinyPNG(i*7 + v), MIME: "image/png"}
		}
		b, _ := json.Marshal(p)
		return &e2eMsg{key: id, value: b, id: id, version: v, kind: names[kind], at: at}
	}
	nBad := max(n/50, 20)
	nPosts := n - nBad
	// Of the non-malformed messages: edits ~6%, tombstones ~3%, re-posts after a
	// tombstone ~0.6%, tombstones of unknown posts ~0.3%; the rest are first versions.
	nFirst := nPosts * 90 / 100
	for i := range nFirst {
		at := r.Float64() * 0.8
		add(post(i, 0, r.IntN(3), at))
		last := at
		switch x := r.Float64(); {
		case x < 0.067: // edit, maybe of another modality, maybe twice
			last += r.Float64() * (1 - last) / 2
			add(post(i, 1, r.IntN(3), last))
			w.kinds["edit"]++
			if r.IntN(4) == 0 {
				last += r.Float64() * (1 - last) / 2
				add(post(i, 2, r.IntN(3), last))
				w.kinds["edit"]++
			}
		case x < 0.10: // tombstone, sometimes followed by a re-post
			last += r.Float64() * (1 - last) / 2
			id := fmt.Sprintf("p-%05d", i)
			add(&e2eMsg{key: id, id: id, kind: "tombstone", at: last})
			if r.IntN(5) == 0 {
				last += r.Float64() * (1 - last) / 2
				m := post(i, 3, r.IntN(3), last)
				m.kind = "repost-after-delete"
				add(m)
			}
		}
	}
	for j := range max(nPosts/300, 2) {
		id := fmt.Sprintf("gone-%05d", j)
		add(&e2eMsg{key: id, id: id, kind: "tombstone-unknown", at: r.Float64()})
	}
	// Malformed messages, varied; each its own key.
	png := tinyPNG(1)
	bads := []struct {
		kind  string
		stage ingest.Stage
		make  func(key string) (val []byte, id string)
	}{
		{"bad-json", ingest.StageDecode, func(string) ([]byte, string) { return []byte(`{"schema":1,"id":`), "" }},
		{"not-json", ingest.StageDecode, func(string) ([]byte, string) { return []byte("hello, world"), "" }},
		{"trailing-data", ingest.StageDecode, func(k string) ([]byte, string) {
			return []byte(`{"schema":1,"id":"` + k + `","created_at":"2025-06-01T00:00:00Z","text":"x"} {}`), ""
		}},
		{"unknown-field", ingest.StageDecode, func(k string) ([]byte, string) {
			return []byte(`{"schema":1,"id":"` + k + `","created_at":"2025-06-01T00:00:00Z","text":"x","colour":"red"}`), ""
		}},
		{"schema-9", ingest.StageDecode, func(k string) ([]byte, string) {
			return []byte(`{"schema":9,"id":"` + k + `","created_at":"2025-06-01T00:00:00Z","text":"from the future"}`), ""
		}},
		{"no-created-at", ingest.StageDecode, func(k string) ([]byte, string) {
			return []byte(`{"schema":1,"id":"` + k + `","text":"when?"}`), ""
		}},
		{"far-future", ingest.StageDecode, func(k string) ([]byte, string) {
			return []byte(`{"schema":1,"id":"` + k + `","created_at":"2999-01-01T00:00:00Z","text":"later"}`), ""
		}},
		{"empty-post", ingest.StageDecode, func(k string) ([]byte, string) {
			return []byte(`{"schema":1,"id":"` + k + `","created_at":"2025-06-01T00:00:00Z","text":"   "}`), ""
		}},
		{"bad-id", ingest.StageDecode, func(string) ([]byte, string) {
			return []byte(`{"schema":1,"id":"has space!","created_at":"2025-06-01T00:00:00Z","text":"x"}`), ""
		}},
		{"key-differs", ingest.StageDecode, func(k string) ([]byte, string) {
			return []byte(`{"schema":1,"id":"other-` + k + `","created_at":"2025-06-01T00:00:00Z","text":"whose?"}`), ""
		}},
		{"invalid-utf8", ingest.StageDecode, func(k string) ([]byte, string) {
			return []byte("{\"schema\":1,\"id\":\"" + k + "\",\"created_at\":\"2025-06-01T00:00:00Z\",\"text\":\"caf\xe9\"}"), ""
		}},
		{"replacement-char", ingest.StageDecode, func(k string) ([]byte, string) {
			return []byte(`{"schema":1,"id":"` + k + `","created_at":"2025-06-01T00:00:00Z","text":"bad \ufffd upstream"}`), ""
		}},
		{"url-and-data", ingest.StageDecode, func(k string) ([]byte, string) {
			b, _ := json.Marshal(domain.Post{Schema: 1, ID: k, CreatedAt: created,
				Image: &domain.ImageRef{URL: "https://example.com/a.png", Data: png}})
			return b, ""
		}},
		{"ftp-url", ingest.StageDecode, func(k string) ([]byte, string) {
			return []byte(`{"schema":1,"id":"` + k + `","created_at":"2025-06-01T00:00:00Z","image":{"url":"ftp://example.com/a.png"}}`), ""
		}},
		{"bad-base64", ingest.StageDecode, func(k string) ([]byte, string) {
			return []byte(`{"schema":1,"id":"` + k + `","created_at":"2025-06-01T00:00:00Z","image":{"data":"***"}}`), ""
		}},
		{"not-an-image", ingest.StageImage, func(k string) ([]byte, string) {
			b, _ := json.Marshal(domain.Post{Schema: 1, ID: k, CreatedAt: created, Image: &domain.ImageRef{Data: []byte("GIF89a but not really")}})
			return b, ""
		}},
		{"truncated-png", ingest.StageImage, func(k string) ([]byte, string) {
			b, _ := json.Marshal(domain.Post{Schema: 1, ID: k, CreatedAt: created, Image: &domain.ImageRef{Data: png[:len(png)/2]}})
			return b, ""
		}},
		{"private-url", ingest.StageFetch, func(k string) ([]byte, string) {
			b, _ := json.Marshal(domain.Post{Schema: 1, ID: k, CreatedAt: created, Image: &domain.ImageRef{URL: "http://127.0.0.1:9/x.png"}})
			return b, ""
		}},
		// Text and a bad image: the text is indexed, the image dead-lettered.
		{"text-with-bad-image", ingest.StageImage, func(k string) ([]byte, string) {
			b, _ := json.Marshal(domain.Post{Schema: 1, ID: k, Author: "partial/v0", CreatedAt: created, Text: "caption of a broken image " + k,
				Image: &domain.ImageRef{Data: []byte("\x89PNG\r\n\x1a\nbroken")}})
			return b, k
		}},
		{"tombstone-bad-key", ingest.StageDecode, func(string) ([]byte, string) { return nil, "" }},
	}
	for j := range nBad {
		bd := bads[j%len(bads)]
		key := fmt.Sprintf("bad-%05d", j)
		val, id := bd.make(key)
		if bd.kind == "tombstone-bad-key" {
			key = fmt.Sprintf("bad key %05d!", j)
		}
		if bd.kind == "bad-id" {
			id = ""
		}
		m := &e2eMsg{key: key, value: val, id: id, stage: bd.stage, kind: bd.kind, at: r.Float64()}
		add(m)
	}
	slices.SortStableFunc(w.msgs, func(a, b *e2eMsg) int {
		switch {
		case a.at < b.at:
			return -1
		case a.at > b.at:
			return 1
		}
		return 0
	})
	// The final state: replay in order, as the index must (per key, offsets keep
	// this order: a key always goes to one partition).
	ids := map[string]bool{}
	for _, m := range w.msgs {
		if m.id != "" {
			ids[m.id] = true
		}
		if m.stage != "" && m.kind != "text-with-bad-image" {
			continue
		}
		switch {
		case m.value == nil:
			w.deleted[m.id] = true
			delete(w.want, m.id)
		case w.deleted[m.id]:
		default:
			var p domain.Post
			if err := json.Unmarshal(m.value, &p); err != nil {
				panic(err)
			}
			st := &e2eState{version: m.version, author: p.Author, text: p.Text}
			if p.Text != "" {
				st.mods = append(st.mods, domain.ModalityText)
			}
			if p.Image != nil && m.stage == "" {
				st.mods = append(st.mods, domain.ModalityImage)
				if p.Text != "" {
					st.mods = append(st.mods, domain.ModalityFused)
				}
			}
			w.want[m.id] = st
		}
	}
	w.ids = slices.Sorted(maps.Keys(ids))
	w.counts = map[domain.Modality]int{}
	for _, st := range w.want {
		for _, m := range st.mods {
			w.counts[m]++
		}
	}
	return w
}

func (w *e2eWorkload) String() string {
	bad := 0
	for _, m := range w.msgs {
		if m.stage != "" {
			bad++
		}
	}
	return fmt.Sprintf("%d messages (seed %d): %d malformed, %d posts to index (%d text, %d image, %d fused records), %d deleted; kinds %v",
		len(w.msgs), w.seed, bad, len(w.want), w.counts[domain.ModalityText], w.counts[domain.ModalityImage],
		w.counts[domain.ModalityFused], len(w.deleted), w.kinds)
}

// produce writes the workload to topic (key -> partition by murmur2, as the Java
// client and `xmodal ingest --to kafka` do), then reads the topic back to learn
// every message's partition and offset.
func (w *e2eWorkload) produce(t testing.TB, b *kafkaBroker, topic string) {
	t.Helper()
	w.write(t, b, topic, 0, len(w.msgs))
	w.locate(t, b, topic)
}

// write produces messages lo..hi-1 of the workload, in order.
func (w *e2eWorkload) write(t testing.TB, b *kafkaBroker, topic string, lo, hi int) {
	t.Helper()
	wr := b.writer(topic)
	defer wr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for i := lo; i < hi; i += 500 {
		chunk := w.msgs[i:min(i+500, hi)]
		out := make([]kafkago.Message, len(chunk))
		for j, m := range chunk {
			out[j] = kafkago.Message{Key: []byte(m.key), Value: m.value,
				Headers: []kafkago.Header{{Key: "e2e-idx", Value: []byte(strconv.Itoa(i + j))}}}
		}
		if err := wr.WriteMessages(ctx, out...); err != nil {
			t.Fatalf("produce to %s: %v", topic, err)
		}
	}
}

// locate reads the topic back once the whole workload is written, to learn
// every message's partition and offset.
func (w *e2eWorkload) locate(t testing.TB, b *kafkaBroker, topic string) {
	t.Helper()
	got := b.readTopic(t, topic)
	if len(got) != len(w.msgs) {
		t.Fatalf("topic %s holds %d messages, produced %d", topic, len(got), len(w.msgs))
	}
	w.bad = map[[2]int64]*e2eMsg{}
	for _, km := range got {
		var idx = -1
		for _, h := range km.Headers {
			if h.Key == "e2e-idx" {
				idx, _ = strconv.Atoi(string(h.Value))
			}
		}
		if idx < 0 || idx >= len(w.msgs) {
			t.Fatalf("message %d/%d has no e2e-idx header", km.Partition, km.Offset)
		}
		m := w.msgs[idx]
		m.part, m.off = km.Partition, km.Offset
		if m.stage != "" {
			w.bad[[2]int64{int64(m.part), m.off}] = m
		}
	}
	// Versions of one key must be in order in their partition.
	last := map[string]*e2eMsg{}
	for _, m := range w.msgs {
		if p := last[m.key]; p != nil && (p.part != m.part || p.off > m.off) {
			t.Fatalf("key %s: %d/%d after %d/%d", m.key, m.part, m.off, p.part, p.off)
		}
		last[m.key] = m
	}
}

// ---- the indexer processes ----

type indexer struct {
	name  string
	dir   string
	http  string // the --http-listen address (/healthz, /metrics)
	cmd   *exec.Cmd
	out   *syncBuffer
	done  chan error
	exit  error
	ended bool
}

type indexerOpts struct {
	brokers     string
	topic       string
	group       string
	maxAttempts int
	config      string // YAML file
	httpListen  string
	extra       []string
	env         []string
}

// startIndexer runs `xmodal run` (the test binary re-executed) ingesting from Kafka
// into the embedded index under dir, with the parity model. The ports it
// listens on are picked free just before it starts, and another process on
// the machine can take one first: when it ends on a port in use before its
// HTTP endpoints answer, it starts again on new ports (up to four times).
func startIndexer(t testing.TB, name, dir string, o indexerOpts) *indexer {
	t.Helper()
	requireORT(t)
	auto := o.httpListen == ""
	for attempt := 1; ; attempt++ {
		if auto {
			o.httpListen = freePort(t)
		}
		ix := launchIndexer(t, name, dir, o)
		if attempt == 4 || !ix.portTaken(time.Minute) {
			return ix
		}
		t.Logf("%s: a port was taken before it could listen; starting it again on new ports:\n%s", name, ix.tail(500))
	}
}

// portTaken waits until ix answers on its HTTP address (false) or ends,
// and reports whether it ended on a port in use.
func (ix *indexer) portTaken(d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get("http://" + ix.http + "/healthz"); err == nil {
			resp.Body.Close()
			return false
		}
		if !ix.running() {
			return strings.Contains(ix.tail(4000), "address already in use")
		}
	}
	return false
}

// launchIndexer starts one `xmodal run` process (startIndexer).
func launchIndexer(t testing.TB, name, dir string, o indexerOpts) *indexer {
	t.Helper()
	args := []string{"run", "--data-dir", dir, "--nats-listen", freePort(t), "--http-listen", o.httpListen,
		"--model", filepath.Join(testutil.MustRepoRoot(t), "testdata", "models", "parity"),
		"--ingest-batch-size", "32", "--ingest-fetch-wait", "50ms", "--log-level", "warn",
		"--kafka-topic", o.topic, "--kafka-group", o.group,
		"--kafka-session-timeout", "6s", "--kafka-commit-interval", "200ms"}
	if o.brokers != "" {
		args = append(args, "--kafka-brokers", o.brokers)
	}
	if o.maxAttempts > 0 {
		args = append(args, "--ingest-max-attempts", strconv.Itoa(o.maxAttempts))
	}
	if o.config != "" {
		args = append(args, "--config", o.config)
	}
	args = append(args, o.extra...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = testutil.MustRepoRoot(t)
	cmd.Env = append(os.Environ(), append([]string{"XMODAL_TEST_MAIN=1"}, o.env...)...)
	buf := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ix := &indexer{name: name, dir: dir, http: o.httpListen, cmd: cmd, out: buf, done: make(chan error, 1)}
	go func() { ix.done <- cmd.Wait() }()
	t.Cleanup(func() {
		ix.kill()
		if t.Failed() {
			t.Logf("%s output (tail):\n%s", name, ix.tail(6000))
		}
	})
	return ix
}

func (ix *indexer) tail(n int) string {
	ix.out.mu.Lock()
	defer ix.out.mu.Unlock()
	s := ix.out.String()
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}

// wait returns the exit error once the process has ended, or false after d.
func (ix *indexer) wait(d time.Duration) (error, bool) {
	if ix.ended {
		return ix.exit, true
	}
	if d <= 0 {
		select {
		case err := <-ix.done:
			ix.exit, ix.ended = err, true
			return err, true
		default:
			return nil, false
		}
	}
	select {
	case err := <-ix.done:
		ix.exit, ix.ended = err, true
		return err, true
	case <-time.After(d):
		return nil, false
	}
}

func (ix *indexer) running() bool {
	_, ended := ix.wait(0)
	return !ended
}

func (ix *indexer) kill() {
	if ix.running() {
		ix.cmd.Process.Kill()
		ix.wait(time.Minute)
	}
}

// stop ends the process with SIGTERM (it commits what is safe) and checks it exits 0.
func (ix *indexer) stop(t testing.TB) {
	t.Helper()
	if !ix.running() {
		t.Fatalf("%s is not running (exit %v)", ix.name, ix.exit)
	}
	// A run that has nothing left to do is stopped right after it starts; it
	// must have started (its HTTP endpoints answer) for SIGTERM to test the
	// graceful path rather than the start-up.
	ix.waitHealthy(t, time.Minute)
	ix.cmd.Process.Signal(syscall.SIGTERM)
	err, ok := ix.wait(60 * time.Second)
	if !ok {
		t.Fatalf("%s did not stop within 60s of SIGTERM", ix.name)
	}
	if err != nil {
		t.Fatalf("%s exited with %v after SIGTERM", ix.name, err)
	}
}

// waitHealthy waits until the process answers /healthz on its HTTP address.
func (ix *indexer) waitHealthy(t testing.TB, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		resp, err := http.Get("http://" + ix.http + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if !ix.running() {
			t.Fatalf("%s ended (%v) before it answered /healthz\n%s", ix.name, ix.exit, ix.tail(4000))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: /healthz on %s did not answer 200 within %v (last error %v)", ix.name, ix.http, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func killedBySIGKILL(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// ---- waiting and checking ----

// committedSum returns the group's committed offsets summed over the partitions.
func committedSum(b *kafkaBroker, topic, group string) int64 {
	c, err := b.committed(topic, group, e2ePartitions)
	if err != nil {
		return -1
	}
	return sumOffsets(c)
}

// waitProgress waits until the group has committed more than from in total,
// failing if the indexers die.
func waitProgress(t testing.TB, b *kafkaBroker, topic, group string, from int64, d time.Duration, ixs ...*indexer) int64 {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if p := committedSum(b, topic, group); p > from {
			return p
		}
		for _, ix := range ixs {
			if !ix.running() {
				t.Fatalf("%s exited (%v) while waiting for progress past %d", ix.name, ix.exit, from)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no commit past %d within %v", from, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitDone waits until the committed offsets equal the end offsets.
func waitDone(t testing.TB, b *kafkaBroker, topic, group string, d time.Duration, ixs ...*indexer) time.Duration {
	t.Helper()
	t0 := time.Now()
	var ends, last map[int]int64
	var err error
	for {
		// Both reads retry: after a broker restart, partitions lack leaders for a while.
		if ends == nil {
			ends, err = b.endOffsets(t, topic, e2ePartitions)
		}
		c, err2 := b.committed(topic, group, e2ePartitions)
		if ends != nil && err2 == nil {
			last = c
			done := true
			for p, end := range ends {
				done = done && (c[p] == end || end == 0 && c[p] < 0)
			}
			if done {
				return time.Since(t0)
			}
		}
		alive := len(ixs) == 0
		for _, ix := range ixs {
			alive = alive || ix.running()
		}
		if !alive {
			t.Fatalf("every indexer exited before the group committed the ends %v (committed %v)", ends, last)
		}
		if time.Since(t0) > d {
			t.Fatalf("committed offsets %v did not reach the ends %v within %v (%v, %v)", last, ends, d, err, err2)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// e2eIndex is what an index held at the end, read after its process exited.
type e2eIndex struct {
	name   string
	counts map[domain.Modality]int
	recs   map[string][]domain.Record // post id -> records
	denied map[string]bool
}

func parityDim(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.MustRepoRoot(t), "testdata", "models", "parity", "model.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Dim int `json:"dim"`
	}
	if err := json.Unmarshal(b, &m); err != nil || m.Dim <= 0 {
		t.Fatalf("parity model.json: dim %d, %v", m.Dim, err)
	}
	return m.Dim
}

// readIndex opens the embedded index under dir (its process has exited) and reads
// the records of every id the workload names, and the deny-list.
func readIndex(t testing.TB, name, dir string, w *e2eWorkload) *e2eIndex {
	t.Helper()
	ctx := context.Background()
	ix, err := embedded.Open(ctx, embedded.Options{Path: filepath.Join(dir, "index.db"), Dim: parityDim(t)})
	if err != nil {
		t.Fatalf("open the index of %s: %v", name, err)
	}
	defer ix.Close()
	out := &e2eIndex{name: name, recs: map[string][]domain.Record{}, denied: map[string]bool{}}
	out.counts, _ = ix.Count(ctx)
	var pks []string
	for _, id := range w.ids {
		for _, m := range []domain.Modality{domain.ModalityText, domain.ModalityImage, domain.ModalityFused} {
			pks = append(pks, domain.PrimaryKey(id, m))
		}
		if d, err := ix.IsDenied(ctx, id); err != nil {
			t.Fatal(err)
		} else if d {
			out.denied[id] = true
		}
	}
	recs, err := ix.Get(ctx, pks)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, r := range recs {
		out.recs[r.PostID] = append(out.recs[r.PostID], r)
	}
	for _, n := range out.counts {
		total += n
	}
	if total != len(recs) {
		t.Errorf("%s: the index holds %d records, %d of them under the workload's ids (records of unknown ids)", name, total, len(recs))
	}
	return out
}

// version returns the version of a post's records in one index (-1: none), and
// checks that they agree.
func (x *e2eIndex) version(t testing.TB, id string) int {
	rs := x.recs[id]
	if len(rs) == 0 {
		return -1
	}
	v := -1
	for _, r := range rs {
		_, vs, _ := strings.Cut(r.Author, "/v")
		n, err := strconv.Atoi(vs)
		if err != nil {
			t.Errorf("%s: record %s has author %q (no version)", x.name, r.PK, r.Author)
			return -1
		}
		if v >= 0 && n != v {
			t.Errorf("%s: post %s has records of versions %d and %d", x.name, id, v, n)
		}
		v = n
	}
	return v
}

// checkState compares one post's records with its expected state; "" when equal.
func checkState(id string, rs []domain.Record, st *e2eState) string {
	if st == nil {
		if len(rs) > 0 {
			return fmt.Sprintf("post %s must be absent; holds %d records", id, len(rs))
		}
		return ""
	}
	var mods []domain.Modality
	for _, r := range rs {
		mods = append(mods, r.Modality)
		if r.Author != st.author || r.Text != st.text {
			return fmt.Sprintf("post %s record %s is author %q text %q; want the latest version %d: author %q text %q",
				id, r.Modality, r.Author, r.Text, st.version, st.author, st.text)
		}
		if r.ModelVersion == "" || r.PK != domain.PrimaryKey(id, r.Modality) {
			return fmt.Sprintf("post %s record %+v is malformed", id, r.PK)
		}
	}
	slices.Sort(mods)
	want := slices.Clone(st.mods)
	slices.Sort(want)
	if !slices.Equal(mods, want) {
		return fmt.Sprintf("post %s has records %v, want %v (version %d)", id, mods, want, st.version)
	}
	return ""
}

// checkIndex checks that one index holds exactly the workload's end state: the
// counts per modality equal the expected ones and every expected post holds its
// latest version in each expected modality, so no post is held twice or stale;
// deleted posts are absent and deny-listed.
func checkIndex(t testing.TB, x *e2eIndex, w *e2eWorkload) {
	t.Helper()
	if !maps.Equal(x.counts, w.counts) {
		t.Errorf("%s: records per modality %v, want %v", x.name, x.counts, w.counts)
	}
	bad := 0
	for _, id := range w.ids {
		if diff := checkState(id, x.recs[id], w.want[id]); diff != "" {
			if bad++; bad <= 10 {
				t.Errorf("%s: %s", x.name, diff)
			}
		}
		if w.deleted[id] && !x.denied[id] {
			if bad++; bad <= 10 {
				t.Errorf("%s: deleted post %s is not deny-listed", x.name, id)
			}
		}
	}
	if bad > 10 {
		t.Errorf("%s: %d posts differ in all", x.name, bad)
	}
}

// checkDLQ reads the dead-letter topic and checks that its distinct (source
// partition, source offset) set is the malformed set, each with a reason and the
// expected stage. It returns the number of dead letters and of distinct ones.
func checkDLQ(t testing.TB, b *kafkaBroker, topic string, w *e2eWorkload) (total, distinct int) {
	t.Helper()
	dlq := topic + ".dlq"
	if b.partitions(t, dlq) == 0 {
		t.Fatalf("dead-letter topic %s does not exist", dlq)
	}
	seen := map[[2]int64]bool{}
	msgs := b.readTopic(t, dlq)
	errs := 0
	fail := func(format string, args ...any) {
		if errs++; errs <= 10 {
			t.Errorf(format, args...)
		}
	}
	for _, km := range msgs {
		h := map[string]string{}
		for _, x := range km.Headers {
			h[x.Key] = string(x.Value)
		}
		part, err1 := strconv.Atoi(h[kafkasrc.HeaderSourcePartition])
		off, err2 := strconv.ParseInt(h[kafkasrc.HeaderSourceOffset], 10, 64)
		if err1 != nil || err2 != nil || h[kafkasrc.HeaderSourceTopic] != topic {
			fail("dead letter %d/%d has no source topic/partition/offset: %v", km.Partition, km.Offset, h)
			continue
		}
		at := [2]int64{int64(part), off}
		m := w.bad[at]
		switch {
		case m == nil:
			fail("dead letter for %s/%d/%d (stage %s, reason %q): not a malformed message", topic, part, off,
				h[ingest.HeaderStage], h[ingest.HeaderReason])
			continue
		case h[ingest.HeaderReason] == "":
			fail("dead letter for %d/%d (%s) has no reason", part, off, m.kind)
		case h[ingest.HeaderStage] != string(m.stage):
			fail("dead letter for %d/%d (%s): stage %q, want %q (reason %q)", part, off, m.kind, h[ingest.HeaderStage], m.stage, h[ingest.HeaderReason])
		case !bytes.Equal(km.Value, m.value) || string(km.Key) != m.key:
			fail("dead letter for %d/%d (%s) does not carry the original key and bytes", part, off, m.kind)
		}
		seen[at] = true
	}
	for at, m := range w.bad {
		if !seen[at] {
			fail("no dead letter for %s/%d/%d (%s)", topic, at[0], at[1], m.kind)
		}
	}
	if errs > 10 {
		t.Errorf("%d dead-letter differences in all", errs)
	}
	return len(msgs), len(seen)
}

// checkCommitted checks that the group's committed offsets are the ends.
func checkCommitted(t testing.TB, b *kafkaBroker, topic, group string) {
	t.Helper()
	ends, err := b.endOffsets(t, topic, e2ePartitions)
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.committed(topic, group, e2ePartitions)
	if err != nil {
		t.Fatal(err)
	}
	for p, end := range ends {
		if c[p] != end && !(end == 0 && c[p] < 0) {
			t.Errorf("partition %d: committed %d, end %d", p, c[p], end)
		}
	}
}

// e2eSetup starts a broker, creates a 6-partition topic and builds a workload.
func e2eSetup(t *testing.T, n int) (*kafkaBroker, string, *e2eWorkload) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a Kafka broker and xmodal processes")
	}
	b := startKafka(t)
	topic := "posts-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	b.CreateTopic(t, topic, e2ePartitions)
	seed := e2eSeed(t)
	w := newE2EWorkload(seed, n)
	t.Logf("workload: %s", w)
	return b, topic, w
}

func checkEndState(t *testing.T, b *kafkaBroker, topic, group string, w *e2eWorkload, ixs ...*e2eIndex) {
	t.Helper()
	checkCommitted(t, b, topic, group)
	total, distinct := checkDLQ(t, b, topic, w)
	t.Logf("dead letters: %d written, %d distinct (partition, offset), %d malformed messages", total, distinct, len(w.bad))
	for _, x := range ixs {
		checkIndex(t, x, w)
	}
}

// ---- the tests ----

// TestKafkaKill9 kills the indexer with SIGKILL at each deterministic crash
// point (after fetch, after encode, between the two halves of a sink write, after
// the write before the ack) and at seeded random moments, restarting it each
// time, then checks the end state.
func TestKafkaKill9(t *testing.T) {
	requireCrashBuild(t)
	n := e2ePostCount(t, e2eDefaultPosts)
	b, topic, w := e2eSetup(t, n)
	group := "xmodal-" + topic
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(w.seed, 0x6b696c6c))
	t0 := time.Now()
	w.produce(t, b, topic)
	t.Logf("produced %d messages in %v", len(w.msgs), time.Since(t0).Round(time.Millisecond))
	// Every kill redelivers a batch and counts an attempt for each of its
	// messages; the limit stays above the number of kills so that only real
	// poison would be dead-lettered as such.
	const kills = 7
	opts := indexerOpts{brokers: b.Plain(), topic: topic, group: group, maxAttempts: kills + 3}
	start := time.Now()
	run := 0
	for _, point := range []string{"after-fetch", "after-encode", "mid-write", "after-write"} {
		run++
		at := 1 + r.IntN(6)
		before := committedSum(b, topic, group)
		ix := startIndexer(t, fmt.Sprintf("run %d (crash at %s #%d)", run, point, at), dir,
			indexerOpts{brokers: opts.brokers, topic: topic, group: group, maxAttempts: opts.maxAttempts,
				env: []string{"XMODAL_CRASH_AT=" + point + ":" + strconv.Itoa(at)}})
		err, ok := ix.wait(3 * time.Minute)
		if !ok {
			t.Fatalf("%s: not killed within 3 minutes", ix.name)
		}
		if !killedBySIGKILL(err) || !strings.Contains(ix.tail(1<<20), "XMODAL_CRASH_AT: killing") {
			t.Fatalf("%s ended with %v, want SIGKILL at %s\n%s", ix.name, err, point, ix.tail(4000))
		}
		t.Logf("%s: killed; committed %d -> %d of %d", ix.name, before, committedSum(b, topic, group), len(w.msgs))
	}
	for range kills - 4 {
		before := committedSum(b, topic, group)
		if before >= int64(len(w.msgs)) {
			// A run outpaced its kill and committed everything: a further
			// run would have nothing to do before its kill.
			t.Logf("everything committed after run %d; the remaining random kills have nothing to interrupt", run)
			break
		}
		run++
		// Up to 2 s per 2000 messages after the run's first commit, so that the
		// kills fall across the run whatever its size.
		delay := time.Duration(r.IntN(2000*max(1, n/2000))) * time.Millisecond
		ix := startIndexer(t, fmt.Sprintf("run %d (SIGKILL %v after its first commit)", run, delay), dir, opts)
		waitProgress(t, b, topic, group, before, 2*time.Minute, ix)
		time.Sleep(delay)
		ix.cmd.Process.Kill()
		err, _ := ix.wait(time.Minute)
		if !killedBySIGKILL(err) {
			t.Fatalf("%s ended with %v before it was killed", ix.name, err)
		}
		t.Logf("%s: killed; committed %d -> %d of %d", ix.name, before, committedSum(b, topic, group), len(w.msgs))
	}
	run++
	ix := startIndexer(t, fmt.Sprintf("run %d (to the end)", run), dir, opts)
	took := waitDone(t, b, topic, group, 10*time.Minute, ix)
	t.Logf("run %d caught up in %v; %d runs in %v", run, took.Round(time.Millisecond), run, time.Since(start).Round(time.Millisecond))
	ix.stop(t)
	checkEndState(t, b, topic, group, w, readIndex(t, "index", dir, w))
}

// TestKafkaTwoIndexers runs two indexers in one consumer group, kills one with
// SIGKILL mid-run and checks that the survivor takes its partitions over.
//
// Each `xmodal run` has its own embedded index (a shared index needs Milvus), so
// "indexed exactly once" is checked as a shared sink would see it: the two
// indexes are merged as the sink's idempotent upserts would merge them (a post
// deny-listed in either is deleted; otherwise the version with the higher offset
// wins, which is the version ordering the sink applies), and the merge must equal
// the end state exactly. What the two files hold twice is the killed indexer's
// uncommitted tail, redelivered to the survivor; it is reported and checked to
// lie at or above the offsets committed when it was killed.
func TestKafkaTwoIndexers(t *testing.T) {
	n := e2ePostCount(t, e2eDefaultPosts)
	b, topic, w := e2eSetup(t, n)
	group := "xmodal-" + topic
	dirA, dirB := t.TempDir(), t.TempDir()
	opts := indexerOpts{brokers: b.Plain(), topic: topic, group: group}
	a := startIndexer(t, "indexer A", dirA, opts)
	bb := startIndexer(t, "indexer B", dirB, opts)
	// Produce once both own partitions, so that only the kill moves partitions.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ms, err := b.members(group, topic)
		if err == nil && len(ms) == 2 {
			var all []int
			for _, ps := range ms {
				all = append(all, ps...)
			}
			slices.Sort(all)
			if slices.Equal(all, allParts(e2ePartitions)) {
				t.Logf("group members and partitions: %v", ms)
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the two indexers did not join one group within 2 minutes: %v %v", ms, err)
		}
		if !a.running() || !bb.running() {
			t.Fatalf("an indexer exited during start")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The workload goes in two halves around the kill: the pipeline is fast
	// enough to commit a whole workload before a kill could land, and then
	// the survivor would have nothing of A's to take over. The second half
	// lands on every partition, so reaching the ends needs the takeover.
	half := len(w.msgs) / 2
	w.write(t, b, topic, 0, half)
	waitProgress(t, b, topic, group, int64(half/2), 5*time.Minute, a, bb)
	a.cmd.Process.Kill()
	if err, _ := a.wait(time.Minute); !killedBySIGKILL(err) {
		t.Fatalf("indexer A ended with %v", err)
	}
	atKill, err := b.committed(topic, group, e2ePartitions)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("indexer A killed; committed offsets then: %v (sum %d of %d written, %d in all)", atKill, sumOffsets(atKill), half, len(w.msgs))
	w.write(t, b, topic, half, len(w.msgs))
	w.locate(t, b, topic)
	for p, end := range atKill {
		if n := countPart(w.msgs[half:], p); n == 0 {
			t.Fatalf("the second half has no message on partition %d (committed %d at the kill): the takeover would go untested", p, end)
		}
	}
	took := waitDone(t, b, topic, group, 10*time.Minute, bb)
	t.Logf("the survivor reached the ends %v after the kill", took.Round(time.Millisecond))
	ms, err := b.members(group, topic)
	if err != nil || len(ms) != 1 {
		t.Fatalf("group members after the kill: %v, %v; want the survivor alone", ms, err)
	}
	for _, ps := range ms {
		if !slices.Equal(ps, allParts(e2ePartitions)) {
			t.Fatalf("the survivor owns %v, want every partition", ps)
		}
	}
	bb.stop(t)
	xa, xb := readIndex(t, "index A", dirA, w), readIndex(t, "index B", dirB, w)
	checkCommitted(t, b, topic, group)
	total, distinct := checkDLQ(t, b, topic, w)
	t.Logf("dead letters: %d written, %d distinct, %d malformed messages", total, distinct, len(w.bad))

	// Offsets of each (post, version), to place a record in its partition.
	where := map[string]*e2eMsg{}
	for _, m := range w.msgs {
		if m.id != "" && m.value != nil {
			where[fmt.Sprintf("%s/v%d", m.id, m.version)] = m
		}
	}
	merged := &e2eIndex{name: "A+B merged", counts: map[domain.Modality]int{}, recs: map[string][]domain.Record{}, denied: map[string]bool{}}
	both, redelivered := 0, 0
	for _, id := range w.ids {
		va, vb := xa.version(t, id), xb.version(t, id)
		if va >= 0 && vb >= 0 {
			both++
		}
		if va >= 0 {
			if m := where[fmt.Sprintf("%s/v%d", id, va)]; m != nil && m.off >= atKill[m.part] && vb >= 0 {
				redelivered++
			}
		}
		if xa.denied[id] || xb.denied[id] {
			merged.denied[id] = true
			continue
		}
		src := xa
		if vb > va {
			src = xb
		}
		if rs := src.recs[id]; len(rs) > 0 {
			merged.recs[id] = rs
			for _, r := range rs {
				merged.counts[r.Modality]++
			}
		}
	}
	t.Logf("index A: %v records, index B: %v; %d posts in both (%d of them from A's uncommitted tail, redelivered to B)",
		xa.counts, xb.counts, both, redelivered)
	if len(xa.recs) == 0 || len(xb.recs) == 0 {
		t.Errorf("one indexer indexed nothing (A %d posts, B %d): the test did not split the work", len(xa.recs), len(xb.recs))
	}
	checkIndex(t, merged, w)
	// A post that A indexed below the offsets committed at the kill is not
	// indexed again by B at the same version (no redelivery below a commit).
	for _, id := range w.ids {
		va, vb := xa.version(t, id), xb.version(t, id)
		if va < 0 || va != vb {
			continue
		}
		if m := where[fmt.Sprintf("%s/v%d", id, va)]; m != nil && m.off < atKill[m.part] {
			t.Errorf("post %s v%d (%d/%d) is in both indexes though its offset was committed (%d) when A was killed",
				id, va, m.part, m.off, atKill[m.part])
		}
	}
}

// TestKafkaBrokerRestart stops the broker mid-run and starts it again on the same
// data: the indexer keeps running, reconnects and reaches the same end state.
func TestKafkaBrokerRestart(t *testing.T) {
	n := e2ePostCount(t, e2eDefaultPosts)
	b, topic, w := e2eSetup(t, n)
	group := "xmodal-" + topic
	dir := t.TempDir()
	w.produce(t, b, topic)
	ix := startIndexer(t, "indexer", dir, indexerOpts{brokers: b.Plain(), topic: topic, group: group})
	p := waitProgress(t, b, topic, group, int64(len(w.msgs)/5), 5*time.Minute, ix)
	t0 := time.Now()
	b.Stop(t)
	t.Logf("broker stopped at %d of %d committed", p, len(w.msgs))
	time.Sleep(3 * time.Second)
	if !ix.running() {
		t.Fatalf("the indexer exited while the broker was down: %v", ix.exit)
	}
	b.Restart(t)
	t.Logf("broker back after %v", time.Since(t0).Round(time.Millisecond))
	took := waitDone(t, b, topic, group, 10*time.Minute, ix)
	t.Logf("the indexer reached the ends %v after the restart", took.Round(time.Millisecond))
	ix.stop(t)
	checkEndState(t, b, topic, group, w, readIndex(t, "index", dir, w))
}

// TestKafkaSASL ingests through the SASL/PLAIN listener, configured in the YAML
// file of `xmodal run`; wrong credentials make `xmodal run` fail at start.
func TestKafkaSASL(t *testing.T) {
	b, topic, w := e2eSetup(t, 200)
	group := "xmodal-" + topic
	w.produce(t, b, topic)
	cfgDir := t.TempDir()
	writeCfg := func(name, password string) string {
		p := filepath.Join(cfgDir, name)
		y := fmt.Sprintf("kafka:\n  brokers: [%q]\n  sasl_mechanism: plain\n  sasl_user: xmodal\n  sasl_password: %q\n", b.SASL(), password)
		if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("wrong-password", func(t *testing.T) {
		ix := startIndexer(t, "indexer (wrong password)", t.TempDir(), indexerOpts{topic: topic, group: group + "-wrong",
			config: writeCfg("wrong.yaml", "not-the-password")})
		err, ok := ix.wait(time.Minute)
		if !ok {
			t.Fatalf("xmodal run with a wrong SASL password still runs after a minute")
		}
		out := ix.tail(1 << 20)
		if err == nil || !strings.Contains(out, "SASL plain authentication as \"xmodal\"") || !strings.Contains(out, "failed") {
			t.Fatalf("exit %v; want a failure naming SASL authentication; output:\n%s", err, out)
		}
		if i := strings.LastIndex(out, "xmodal: "); i >= 0 {
			t.Logf("xmodal run refused to start: %s", strings.TrimSpace(out[i:]))
		}
	})
	t.Run("plain", func(t *testing.T) {
		dir := t.TempDir()
		ix := startIndexer(t, "indexer (SASL/PLAIN)", dir, indexerOpts{topic: topic, group: group,
			config: writeCfg("good.yaml", "xmodal-secret")})
		waitDone(t, b, topic, group, 3*time.Minute, ix)
		ix.stop(t)
		checkEndState(t, b, topic, group, w, readIndex(t, "index", dir, w))
	})
}

// ---- benchmark ----

// benchPosts builds n valid posts of one kind ("text", "image" or "mixed").
func benchPosts(kind string, first, n int) []kafkago.Message {
	created := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	out := make([]kafkago.Message, n)
	for j := range out {
		i := first + j
		id := fmt.Sprintf("b-%06d", i)
		p := domain.Post{Schema: 1, ID: id, Author: fmt.Sprintf("user%d/v0", i%50), CreatedAt: created.Add(time.Duration(i) * time.Second)}
		k := kind
		if kind == "mixed" {
			k = []string{"text", "image", "both"}[i%3]
		}
		if k != "image" {
			p.Text = fmt.Sprintf("post %d: %s %s at the %s", i, e2eWords[i%len(e2eWords)], e2eWords[(i/3)%len(e2eWords)], e2eWords[(i/7)%len(e2eWords)])
		}
		if k != "text" {
			p.Image = &domain.ImageRef{Data: tinyPNG(i), MIME: "image/png"}
		}
		v, _ := json.Marshal(p)
		out[j] = kafkago.Message{Key: []byte(id), Value: v}
	}
	return out
}

// scrapeCommits reads the indexer's commit-latency histogram from /metrics:
// the count, the mean and the bucket bound under which 50% and 99% fall.
func scrapeCommits(url string) (n int, mean, p50, p99 time.Duration, err error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	var sum float64
	type bucket struct {
		le    float64
		count float64
	}
	var bs []bucket
	for _, l := range strings.Split(string(body), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch {
		case f[0] == "xmodal_kafka_commit_seconds_sum":
			sum = v
		case f[0] == "xmodal_kafka_commit_seconds_count":
			n = int(v)
		case strings.HasPrefix(f[0], `xmodal_kafka_commit_seconds_bucket{le="`):
			le, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(f[0], `xmodal_kafka_commit_seconds_bucket{le="`), `"}`), 64)
			bs = append(bs, bucket{le, v}) // +Inf parses as +Inf
		}
	}
	if n == 0 {
		return 0, 0, 0, 0, errors.New("no commits recorded")
	}
	q := func(frac float64) time.Duration {
		for _, b := range bs {
			if b.count >= frac*float64(n) {
				return time.Duration(b.le * float64(time.Second))
			}
		}
		return -1
	}
	return n, time.Duration(sum / float64(n) * float64(time.Second)), q(0.5), q(0.99), nil
}

// BenchmarkKafkaE2E measures `xmodal run` (parity model, embedded index) consuming
// a 6-partition topic on a real broker, and reports posts/s, the consumer lag
// (end offsets minus committed offsets, summed over the partitions, sampled every
// 250 ms) and the offset commit latency (the indexer's xmodal_kafka_commit_seconds).
//
//   - backlog/KIND: XMODAL_E2E_BENCH_POSTS posts (default 5000) of one kind are
//     produced first; the clock starts when the indexer owns the partitions and
//     stops when the group has committed every offset: posts/s is the rate at
//     which a backlog moves from Kafka into the index.
//   - paced-R/mixed: the indexer runs first; posts are produced at R posts/s for
//     20 s (XMODAL_E2E_BENCH_RATES, default "100,200"); the lag shows whether it
//     keeps up.
func BenchmarkKafkaE2E(b *testing.B) {
	n := 5000
	if s := os.Getenv("XMODAL_E2E_BENCH_POSTS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	rates := []int{100, 200}
	if s := os.Getenv("XMODAL_E2E_BENCH_RATES"); s != "" {
		rates = nil
		for _, f := range strings.Split(s, ",") {
			r, _ := strconv.Atoi(f)
			rates = append(rates, r)
		}
	}
	type scenario struct {
		name string
		kind string
		rate int // 0: backlog
	}
	scenarios := []scenario{{"backlog/text", "text", 0}, {"backlog/image", "image", 0}, {"backlog/mixed", "mixed", 0}}
	for _, r := range rates {
		scenarios = append(scenarios, scenario{fmt.Sprintf("paced-%d/mixed", r), "mixed", r})
	}
	kb := startKafka(b)
	first := 0
	for _, c := range scenarios {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				benchKafkaRun(b, kb, c.kind, c.rate, n, &first)
			}
		})
	}
}

func benchKafkaRun(b *testing.B, kb *kafkaBroker, kind string, rate, n int, first *int) {
	b.StopTimer()
	topic := fmt.Sprintf("bench-%s-%d-%d", kind, rate, *first)
	group := "xmodal-" + topic
	kb.CreateTopic(b, topic, e2ePartitions)
	total := n
	if rate > 0 {
		total = rate * 20
	}
	msgs := benchPosts(kind, *first, total)
	*first += total
	w := kb.writer(topic)
	defer w.Close()
	ctx := context.Background()
	produce := func(ms []kafkago.Message) error {
		for i := 0; i < len(ms); i += 500 {
			if err := w.WriteMessages(ctx, ms[i:min(i+500, len(ms))]...); err != nil {
				return err
			}
		}
		return nil
	}
	if rate == 0 {
		if err := produce(msgs); err != nil {
			b.Fatalf("produce: %v", err)
		}
	}
	listen := freePort(b)
	ix := startIndexer(b, "indexer", b.TempDir(), indexerOpts{brokers: kb.Plain(), topic: topic, group: group, httpListen: listen})
	for deadline := time.Now().Add(2 * time.Minute); ; {
		if ms, err := kb.members(group, topic); err == nil && len(ms) == 1 {
			break
		}
		if time.Now().After(deadline) || !ix.running() {
			b.Fatalf("the indexer did not join the group")
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.StartTimer()
	t0 := time.Now()
	produced := make(chan error, 1)
	if rate == 0 {
		close(produced)
	} else {
		go func() {
			defer close(produced)
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			per := max(rate/10, 1)
			for i := 0; i < len(msgs); i += per {
				<-tick.C
				if err := produce(msgs[i:min(i+per, len(msgs))]); err != nil {
					produced <- err
					return
				}
			}
		}()
	}
	var samples []string
	var maxLag, sumLag int64
	nLag := 0
	var tProduced time.Duration = -1
	for done := false; !done; {
		time.Sleep(250 * time.Millisecond)
		if tProduced < 0 {
			select {
			case err, ok := <-produced:
				if err != nil {
					b.Fatalf("produce: %v", err)
				}
				if !ok {
					tProduced = time.Since(t0)
				}
			default:
			}
		}
		ends, err1 := kb.endOffsets(b, topic, e2ePartitions)
		com, err2 := kb.committed(topic, group, e2ePartitions)
		if err1 != nil || err2 != nil {
			continue
		}
		lag := sumOffsets(ends) - sumOffsets(com)
		maxLag = max(maxLag, lag)
		sumLag += lag
		nLag++
		el := time.Since(t0)
		samples = append(samples, fmt.Sprintf("%.1fs:%d", el.Seconds(), lag))
		done = tProduced >= 0 && lag == 0 && sumOffsets(ends) == int64(total)
		if el > 10*time.Minute {
			b.Fatalf("not caught up after 10 minutes; lag %d", lag)
		}
		if !ix.running() {
			b.Fatalf("the indexer exited: %v", ix.exit)
		}
	}
	el := time.Since(t0)
	b.StopTimer()
	cn, mean, p50, p99, err := scrapeCommits("http://" + listen + "/metrics")
	if err != nil {
		b.Fatalf("metrics: %v", err)
	}
	ix.stop(b)
	// Every 4th sample (one a second) for long runs.
	if len(samples) > 40 {
		var every []string
		for i := 0; i < len(samples); i += 4 {
			every = append(every, samples[i])
		}
		samples = every
	}
	b.ReportMetric(float64(total)/el.Seconds(), "posts/s")
	b.ReportMetric(float64(maxLag), "max-lag")
	b.ReportMetric(float64(sumLag)/float64(max(nLag, 1)), "mean-lag")
	b.ReportMetric(float64(mean.Microseconds())/1000, "commit-ms")
	what := "backlog"
	if rate > 0 {
		what = fmt.Sprintf("produced at %d/s", rate)
	}
	b.Logf("%d %s posts (%s) indexed in %v; %d commits: mean %v, p50 <= %v, p99 <= %v; lag (time:messages) %s",
		total, kind, what, el.Round(time.Millisecond), cn, mean.Round(10*time.Microsecond), p50, p99, strings.Join(samples, " "))
}

// countPart counts the messages of ms that lie in partition p (after locate).
func countPart(ms []*e2eMsg, p int) int {
	n := 0
	for _, m := range ms {
		if m.part == p {
			n++
		}
	}
	return n
}
