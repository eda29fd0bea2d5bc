package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	kafkago "github.com/segmentio/kafka-go"

	"github.com/xmodal/xmodal/internal/natsserver"
	"github.com/xmodal/xmodal/internal/redisserver"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/query"
	"github.com/xmodal/xmodal/query/client"
)

// TestClusterSurvivesKill9 runs the split deployment on one machine: a real
// Kafka topic of 6 partitions, two `xmodal indexer` processes in one consumer
// group, two `xmodal serve` replicas (one NATS queue group), Milvus, Redis and
// a NATS server with JetStream. XMODAL_TEST_CLUSTER_POSTS posts (default
// 20,000: text posts, some taken down by tombstones, some malformed) flow in
// while a client searches without pause; one indexer and one serve replica are
// killed with SIGKILL mid-load. Ingest must rebalance and finish with every
// valid post indexed once and every taken-down post absent, and every query
// must be answered (the client's documented retry, query/client.Attempts,
// is the only allowance).
func TestClusterSurvivesKill9(t *testing.T) {
	n := 20000
	if s := os.Getenv("XMODAL_TEST_CLUSTER_POSTS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	milvusAddr := startTestMilvus(t)
	kafka := startTestKafka(t)
	topic := fmt.Sprintf("cluster%d", time.Now().Unix()%100000)
	createTopic(t, kafka, topic, 6)
	ns, err := natsserver.Start(natsserver.Options{Listen: "127.0.0.1:0", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)
	rs := testutil.StartRedis(t, redisserver.Options{})

	// The workload: text posts; every 97th is later taken down by a
	// tombstone; every 199th message is malformed (dead-lettered).
	r := rand.New(rand.NewPCG(5, 5))
	words := []string{"red", "blue", "square", "circle", "market", "storm", "river", "goal", "concert", "bridge"}
	var msgs []kafkago.Message
	valid := map[string]bool{}
	for i := range n {
		id := fmt.Sprintf("c%06d", i)
		if i%199 == 198 {
			msgs = append(msgs, kafkago.Message{Key: []byte(id), Value: []byte(`{"schema":1,"id":"` + id + `","text":`)})
			continue
		}
		text := fmt.Sprintf("%s %s %s #%d", words[r.IntN(len(words))], words[r.IntN(len(words))], words[r.IntN(len(words))], i)
		b, _ := json.Marshal(map[string]any{"schema": 1, "id": id, "author": "user" + strconv.Itoa(i%300),
			"created_at": time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second), "text": text})
		msgs = append(msgs, kafkago.Message{Key: []byte(id), Value: b})
		valid[id] = true
		if i%97 == 96 {
			msgs = append(msgs, kafkago.Message{Key: []byte(id)}) // tombstone
			delete(valid, id)
		}
	}
	w := &kafkago.Writer{Addr: kafkago.TCP(kafka), Topic: topic, Balancer: &kafkago.Murmur2Balancer{},
		RequiredAcks: kafkago.RequireAll, BatchSize: 500, BatchTimeout: time.Millisecond}
	defer w.Close()
	// The first quarter is there before the indexers start; the rest comes
	// while they run (and while one of them dies).
	produce := func(ms []kafkago.Message) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		for from := 0; from < len(ms); from += 2000 {
			if err := w.WriteMessages(ctx, ms[from:min(from+2000, len(ms))]...); err != nil {
				t.Errorf("produce: %v", err)
				return
			}
		}
	}
	produce(msgs[:len(msgs)/4])

	collection := "cluster_" + strconv.FormatInt(time.Now().Unix()%100000, 10)
	env := []string{"XMODAL_MILVUS_ADDRESS=" + milvusAddr, "XMODAL_MILVUS_COLLECTION=" + collection,
		"XMODAL_KAFKA_BROKERS=" + kafka, "XMODAL_KAFKA_TOPIC=" + topic, "XMODAL_KAFKA_GROUP=cluster",
		"XMODAL_KAFKA_SESSION_TIMEOUT=6s", "XMODAL_NATS_URL=" + ns.ClientURL(), "XMODAL_REDIS_ADDR=" + rs.Addr}
	ix1 := startXmodal(t, env, "indexer")
	ix2 := startXmodal(t, env, "indexer")
	sv1 := startXmodal(t, env, "serve")
	sv2 := startXmodal(t, env, "serve")

	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cl := client.New(nc)
	var queries, failures atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := range 2 {
		wg.Go(func() {
			qr := rand.New(rand.NewPCG(uint64(c), 9))
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := cl.Search(ctx, &query.SearchRequest{Text: words[qr.IntN(len(words))] + " " + words[qr.IntN(len(words))], Target: "text", K: 10})
				cancel()
				queries.Add(1)
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}

	count := func() int {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := cl.Stats(ctx)
		if err != nil {
			return -1
		}
		return st.Records["text"]
	}
	go produce(msgs[len(msgs)/4:])
	// Mid-load: once a third of the posts are in, kill one of each.
	sv2.waitFor(t, 10*time.Minute, "a third of the posts indexed", func() bool { return count() >= len(valid)/3 })
	t.Logf("killing one indexer and one serve replica at %d records", count())
	ix1.cmd.Process.Kill()
	sv1.cmd.Process.Kill()
	start := time.Now()
	sv2.waitFor(t, 15*time.Minute, "every valid post indexed", func() bool { return count() == len(valid) })
	t.Logf("all %d valid posts indexed %.0f s after the kills", len(valid), time.Since(start).Seconds())
	close(stop)
	wg.Wait()

	if f := failures.Load(); f > 0 {
		t.Errorf("%d of %d queries failed after the client's retry; first: %v", f, queries.Load(), firstErr.Load())
	}
	t.Logf("%d queries answered during the run", queries.Load())
	// Taken-down posts are absent; a sample of the others is present, once.
	var gone, kept []string
	for i := 96; i < n; i += 97 {
		gone = append(gone, fmt.Sprintf("c%06d", i))
	}
	for id := range valid {
		if len(kept) == 50 {
			break
		}
		kept = append(kept, id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for from := 0; from < len(gone); from += 300 {
		res, err := cl.Get(ctx, &query.GetRequest{PostIDs: gone[from:min(from+300, len(gone))]})
		if err == nil && len(res.Records) > 0 {
			t.Errorf("taken-down posts are indexed: %v", res.Records[0].PostID)
		} else if e := query.AsError(err); err != nil && e.Code != query.CodeNotFound {
			t.Errorf("get taken-down posts: %v", err)
		}
	}
	res, err := cl.Get(ctx, &query.GetRequest{PostIDs: kept, Limit: 1000})
	if err != nil || len(res.Records) != len(kept) {
		t.Errorf("get of %d indexed posts: %d records, %v", len(kept), len(res.Records), err)
	}
	_ = ix2
}
