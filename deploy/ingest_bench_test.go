package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/xmodal/xmodal/internal/natsserver"
	"github.com/xmodal/xmodal/internal/testutil"
)

// BenchmarkIndexerMilvusVsEmbedded measures text posts/s (image posts with
// XMODAL_BENCH_IMAGES=1: 512 distinct 160x160 JPEGs, inline) from Kafka into
// the index, end to end (fetch, decode, encode with the bundled model, write,
// commit), for `xmodal indexer` into Milvus and for `xmodal run` into the
// embedded index, in interleaved rounds on the same broker and the same
// posts: a backlog of XMODAL_BENCH_POSTS (default 10,000) per round, timed
// from the process being ready to the group's committed offsets reaching the
// end of the topic. Reported: both rates and the median of the per-round
// ratios Milvus / embedded. XMODAL_BENCH_ROUNDS sets the number of rounds
// (default 3); XMODAL_BENCH_MILVUS_ENV adds NAME=value pairs (separated by
// spaces) to the indexer's environment (e.g. XMODAL_MILVUS_ROUNDS=2);
// XMODAL_BENCH_MILVUS_ENV_B, when set, adds a second indexer run to every
// round with that environment instead (variant B, e.g.
// XMODAL_MILVUS_UPSERT_ONLY=true), so that two settings are compared in the
// same interleaved rounds. Each run also reports the CPU it cost per post,
// the xmodal process's and the Milvus server's (all its threads, from /proc).
// Every run starts with the Milvus server idle (its work after an ingest,
// sealing, index builds and compaction, is waited out and reported).
//
//	go test -run '^$' -bench IndexerMilvusVsEmbedded -benchtime 1x -timeout 60m ./deploy/
func BenchmarkIndexerMilvusVsEmbedded(b *testing.B) {
	n := testutil.EnvInt(b, "XMODAL_BENCH_POSTS", 10000)
	rounds := testutil.EnvInt(b, "XMODAL_BENCH_ROUNDS", 3)
	milvusAddr := startTestMilvus(b)
	kafka := startTestKafka(b)
	ns, err := natsserver.Start(natsserver.Options{Listen: "127.0.0.1:0", StoreDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(ns.Shutdown)
	images := os.Getenv("XMODAL_BENCH_IMAGES") == "1"
	var pics [][]byte
	if images {
		pics = distinctPictures(b, 512)
	}
	kindOfPosts := "text"
	if images {
		kindOfPosts = "image"
	}
	posts := func(tag string) []kafkago.Message {
		out := make([]kafkago.Message, n)
		for i := range out {
			id := fmt.Sprintf("%s-%06d", tag, i)
			p := map[string]any{"schema": 1, "id": id, "author": "u" + strconv.Itoa(i%100), "created_at": "2026-11-01T00:00:00Z"}
			if images {
				p["image"] = map[string]any{"data": pics[i%len(pics)], "mime": "image/jpeg"}
			} else {
				p["text"] = fmt.Sprintf("a post about shapes and colours number %d", i)
			}
			v, _ := json.Marshal(p)
			out[i] = kafkago.Message{Key: []byte(id), Value: v}
		}
		return out
	}
	envB := os.Getenv("XMODAL_BENCH_MILVUS_ENV_B")
	run := func(round int, milvus bool, milvusEnv string) (rate, xCPU, mCPU float64) {
		kind := "embedded"
		if milvus {
			kind = "milvus"
		}
		topic := fmt.Sprintf("bench-%s-%d-%d", kind, round, time.Now().UnixNano()%1e6)
		createTopic(b, kafka, topic, 6)
		w := &kafkago.Writer{Addr: kafkago.TCP(kafka), Topic: topic, Balancer: &kafkago.Murmur2Balancer{},
			RequiredAcks: kafkago.RequireAll, BatchSize: 500, BatchTimeout: time.Millisecond}
		ms := posts(topic)
		ctx := context.Background()
		for from := 0; from < len(ms); from += 2000 {
			// A topic just created may not be known to the broker's metadata yet.
			for try := 0; ; try++ {
				err := w.WriteMessages(ctx, ms[from:min(from+2000, len(ms))]...)
				if err == nil {
					break
				}
				if try == 60 {
					b.Fatal(err)
				}
				time.Sleep(500 * time.Millisecond)
			}
		}
		w.Close()
		env := []string{"XMODAL_KAFKA_BROKERS=" + kafka, "XMODAL_KAFKA_TOPIC=" + topic, "XMODAL_KAFKA_GROUP=" + topic,
			"XMODAL_KAFKA_COMMIT_INTERVAL=200ms", "XMODAL_LOG_LEVEL=warn"}
		role := "run"
		if milvus {
			role = "indexer"
			env = append(env, strings.Fields(milvusEnv)...)
			env = append(env, "XMODAL_MILVUS_ADDRESS="+milvusAddr, "XMODAL_MILVUS_COLLECTION=bench_"+strconv.Itoa(round)+"_"+strconv.FormatInt(time.Now().Unix()%100000, 10),
				"XMODAL_NATS_URL="+ns.ClientURL())
		} else {
			env = append(env, "XMODAL_NATS_LISTEN=127.0.0.1:0")
		}
		// The Milvus server works on after an ingest (sealing, index
		// builds, compaction): wait until it is idle, so that no run pays
		// for the one before it; that work is reported as the run's
		// server CPU after it.
		settleMilvus()
		p := startXmodal(b, env, role)
		start := time.Now()
		x0, m0 := procCPU(p.cmd.Process.Pid), milvusServerCPU()
		for !committedAll(kafka, topic, topic, int64(n)) {
			if time.Since(start) > 20*time.Minute {
				b.Fatalf("%s: not every post committed after 20 minutes", kind)
			}
			time.Sleep(100 * time.Millisecond)
		}
		el := time.Since(start)
		x1, m1 := procCPU(p.cmd.Process.Pid), milvusServerCPU()
		xCPU, mCPU = float64((x1-x0).Microseconds())/1e3/float64(n), float64((m1-m0).Microseconds())/1e3/float64(n)
		if milvus && os.Getenv("XMODAL_BENCH_METRICS") != "" {
			// What the rounds spent, for diagnosis (XMODAL_BENCH_METRICS=1).
			_, body := p.get("/metrics")
			for _, line := range strings.Split(body, "\n") {
				if strings.HasPrefix(line, "xmodal_milvus_") || strings.HasPrefix(line, "xmodal_stage_seconds_sum") || strings.HasPrefix(line, "xmodal_batch_messages_sum") ||
					strings.HasPrefix(line, "xmodal_stage_seconds_count") || strings.HasPrefix(line, "xmodal_batch_messages_count") {
					fmt.Println("  " + line)
				}
			}
		}
		p.cmd.Process.Kill()
		if milvus {
			m2 := milvusServerCPU()
			settleMilvus()
			after := float64((milvusServerCPU() - m2).Microseconds()) / 1e3 / float64(n)
			fmt.Printf("  %s run: the server's CPU after the run until idle: %.3f ms per post\n", kind, after)
		}
		return float64(n) / el.Seconds(), xCPU, mCPU
	}
	for range b.N {
		var mil, emb, ratio, milB, ratioB []float64
		for round := range rounds {
			e, ex, em := run(round, false, "")
			m, mx, mm := run(round, true, os.Getenv("XMODAL_BENCH_MILVUS_ENV"))
			mil, emb, ratio = append(mil, m), append(emb, e), append(ratio, m/e)
			fmt.Printf("round %d: embedded %.0f posts/s, milvus %.0f posts/s, ratio %.2f; CPU ms per post: embedded xmodal %.3f (server %.3f while idle), milvus xmodal %.3f + server %.3f\n",
				round+1, e, m, m/e, ex, em, mx, mm)
			if envB != "" {
				mb, bx, bm := run(round, true, envB)
				milB, ratioB = append(milB, mb), append(ratioB, mb/e)
				fmt.Printf("round %d: milvus B (%s) %.0f posts/s, ratio %.2f; CPU ms per post: xmodal %.3f + server %.3f\n", round+1, envB, mb, mb/e, bx, bm)
			}
		}
		fmt.Printf("%d %s posts per round from Kafka (6 partitions); median embedded %.0f posts/s, milvus %.0f posts/s; ratio milvus/embedded median %.2f (min %.2f, max %.2f)\n",
			n, kindOfPosts, med(emb), med(mil), med(ratio), slices.Min(ratio), slices.Max(ratio))
		if envB != "" {
			fmt.Printf("milvus B (%s): median %.0f posts/s; ratio B/embedded median %.2f (min %.2f, max %.2f)\n",
				envB, med(milB), med(ratioB), slices.Min(ratioB), slices.Max(ratioB))
			b.ReportMetric(med(ratioB), "ratio-B")
		}
		b.ReportMetric(med(ratio), "ratio")
		b.ReportMetric(med(mil), "milvus-posts/s")
		b.ReportMetric(med(emb), "embedded-posts/s")
	}
}

// procCPU is the CPU time (user + system) a process has used, 0 when it
// cannot be read.
func procCPU(pid int) time.Duration {
	st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The fields after the command name (which may hold spaces), from 3.
	f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * time.Second / 100 // USER_HZ
}

// milvusServerCPU sums procCPU over the Milvus server processes of the
// machine (the benchmark's own server is the only one when nothing else runs).
func milvusServerCPU() time.Duration {
	var sum time.Duration
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if cl, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && strings.Contains(string(cl), "milvus\x00run\x00standalone") {
			sum += procCPU(pid)
		}
	}
	return sum
}

// settleMilvus waits until the Milvus server uses under 15% of a core over
// 2 s (an idle server uses 2-6%), at most a minute.
func settleMilvus() {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		c0 := milvusServerCPU()
		time.Sleep(2 * time.Second)
		if milvusServerCPU()-c0 < 300*time.Millisecond {
			return
		}
	}
}

func med(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// committedAll reports whether the group committed every one of the topic's
// n messages (offsets summed over partitions).
func committedAll(broker, topic, group string, n int64) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := &kafkago.Client{Addr: kafkago.TCP(broker)}
	res, err := c.OffsetFetch(ctx, &kafkago.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0, 1, 2, 3, 4, 5}}})
	if err != nil || res.Error != nil {
		return false
	}
	var sum int64
	for _, p := range res.Topics[topic] {
		if p.CommittedOffset > 0 {
			sum += p.CommittedOffset
		}
	}
	return sum >= n
}

// distinctPictures makes n distinct 160x160 JPEGs (testutil.SmoothPictureJPEG):
// no two are near-duplicates, so the embedded index's clusters stay
// singletons, as a stream of unrelated photos would leave them.
func distinctPictures(tb testing.TB, n int) [][]byte {
	rng := rand.New(rand.NewPCG(13, 18))
	out := make([][]byte, n)
	for k := range out {
		out[k] = testutil.SmoothPictureJPEG(tb, rng, 160, nil)
	}
	return out
}
