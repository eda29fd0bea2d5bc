package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"

	"github.com/xmodal/xmodal/internal/testutil"
)

// The dashboard's shape: what Grafana needs to import it and what this test reads.
type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID      int     `json:"id"`
	Type    string  `json:"type"`
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	GridPos *struct{ H, W, X, Y int } `json:"gridPos"`
}

var metricName = regexp.MustCompile(`\b(?:xmodal|process|go)_[a-z0-9_]+\b`)

// dashboardMetrics parses deploy/grafana/xmodal.json and returns every metric
// name its queries use, with the panels that use it.
func dashboardMetrics(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.MustRepoRoot(t), "deploy", "grafana", "xmodal.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("deploy/grafana/xmodal.json: %v", err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard without title, uid or panels")
	}
	used := map[string][]string{}
	ids := map[int]bool{}
	var walk func(ps []panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d used twice", p.ID)
			}
			ids[p.ID] = true
			if p.GridPos == nil {
				t.Errorf("panel %q has no gridPos", p.Title)
			}
			if p.Type != "row" && len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") || strings.Count(tg.Expr, "{") != strings.Count(tg.Expr, "}") {
					t.Errorf("panel %q query %s: unbalanced brackets: %s", p.Title, tg.RefID, tg.Expr)
				}
				for _, m := range metricName.FindAllString(tg.Expr, -1) {
					used[m] = append(used[m], p.Title)
				}
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		for _, m := range metricName.FindAllString(v.Definition, -1) {
			used[m] = append(used[m], "variable "+v.Name)
		}
	}
	// The list: each has a panel.
	for _, want := range []string{"xmodal_kafka_lag", "xmodal_ingest_messages_total", "xmodal_batch_messages_bucket",
		"xmodal_stage_seconds_bucket", "xmodal_dead_letters_total", "xmodal_query_requests_total",
		"xmodal_query_seconds_bucket", "xmodal_query_cache_total"} {
		if len(used[want]) == 0 {
			t.Errorf("the dashboard does not query %s", want)
		}
	}
	return used
}

// running is an xmodal process started from the built layout.
type running struct {
	cmd  *exec.Cmd
	http string
	out  *lockedBuffer
	done chan error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startXmodal starts `xmodal <args>` from the built layout and waits for /readyz.
func startXmodal(t testing.TB, env []string, args ...string) *running {
	t.Helper()
	d := dist(t)
	r := &running{http: freeAddr(t), out: &lockedBuffer{}, done: make(chan error, 1)}
	args = append(args, "--http-listen", r.http, "--data-dir", t.TempDir(), "--log-level", "info")
	r.cmd = exec.Command(filepath.Join(d, "bin", "xmodal"), args...)
	r.cmd.Dir = "/"
	r.cmd.Env = append(cleanEnv(), append([]string{"XMODAL_ORT_LIB=" + filepath.Join(d, "lib", "libonnxruntime.so")}, env...)...)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		<-r.done
		r.done <- nil
		if t.Failed() {
			t.Logf("xmodal %v output:\n%s", args, r.out.String())
		}
	})
	r.waitFor(t, 90*time.Second, "/readyz 200", func() bool {
		code, _ := r.get("/readyz")
		return code == 200
	})
	return r
}

func (r *running) get(path string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + r.http + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (r *running) post(t *testing.T, path, body string) string {
	t.Helper()
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Post("http://"+r.http+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}

func (r *running) waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		select {
		case err := <-r.done:
			r.done <- err
			t.Fatalf("xmodal exited (%v) while waiting for %s", err, what)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %v", what, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// metrics scrapes /metrics: sample name -> summed value.
func (r *running) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	code, body := r.get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		name, rest := l, ""
		if i := strings.IndexAny(l, "{ "); i > 0 {
			name, rest = l[:i], l[i:]
		}
		v, _ := strconv.ParseFloat(rest[strings.LastIndex(rest, " ")+1:], 64)
		out[name] += v
	}
	return out
}

// stop sends SIGTERM and waits: a graceful stop exits 0 within shutdown_grace.
func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			t.Errorf("xmodal exited with %v after SIGTERM, want 0", err)
		}
	case <-time.After(45 * time.Second):
		t.Errorf("xmodal did not exit within 45s of SIGTERM")
	}
}

// traffic queries the gateway: searches (twice each: a miss, then a hit), a get.
func (r *running) traffic(t *testing.T, id string) {
	t.Helper()
	for range 2 {
		r.post(t, "/v1/search", `{"text":"two red stars","target":"image","k":3}`)
		r.post(t, "/v1/search", `{"text":"a blue disc","k":3}`)
	}
	r.post(t, "/v1/get", `{"post_ids":["`+id+`"]}`)
}

// badPosts are lines the indexer dead-letters (decode stage) and a tombstone of
// the post deleted.
func badPosts(deleted string) string {
	return `{"schema":1,"id":"bad-1","created_at":"not a time","text":"x"}
{"schema":9,"id":"bad-2","created_at":"2026-01-01T00:00:00Z","text":"x"}
{"id":"` + deleted + `","delete":true}
`
}

// TestDashboardMetricsExist scrapes /metrics of running processes built by
// scripts/build.sh and checks that every metric the dashboard queries exists:
//
//   - `xmodal run` on embedded defaults (JetStream ingest), fed the sample posts,
//     two bad posts (dead letters) and a tombstone, queried through the gateway;
//   - `xmodal run` ingesting from a real Kafka broker (scripts/kafka.sh), fed
//     with `xmodal ingest --to kafka`: the xmodal_kafka_* metrics exist only with
//     a Kafka source.
//
// Both are stopped with SIGTERM and must exit 0 (graceful shutdown). `up` is made
// by Prometheus, not exported, and is not checked.
func TestDashboardMetricsExist(t *testing.T) {
	used := dashboardMetrics(t)
	d := dist(t)
	samples := filepath.Join(d, "share", "samples", "posts.jsonl")
	ids := sampleIDs(t, samples)
	nSamples := len(ids)
	// One post whose image is a URL (a local server, allowed through the SSRF
	// guard by ingest.allow_private): the media fetch metrics.
	img := sampleImage(t, samples)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "image/jpeg")
		w.Write(img)
	}))
	t.Cleanup(srv.Close)
	urlPost := fmt.Sprintf(`{"schema":1,"id":"url-1","created_at":%q,"text":"fetched by URL","image":{"url":%q}}`,
		time.Now().UTC().Format(time.RFC3339), srv.URL+"/p/url-1.jpg")
	bad := filepath.Join(t.TempDir(), "extra.jsonl")
	os.WriteFile(bad, []byte(badPosts(ids[len(ids)-1])+urlPost+"\n"), 0o644)

	seen := map[string]bool{}

	t.Run("jetstream", func(t *testing.T) {
		nats := freeAddr(t)
		r := startXmodal(t, nil, "run", "--nats-listen", nats, "--ingest-batch-size", "4", "--ingest-allow-private", "127.0.0.1/32")
		if out, err := xmodal(t, nil, "post", "--nats-listen", nats, samples, bad); err != nil {
			t.Fatalf("xmodal post: %v\n%s", err, out)
		}
		want := float64(nSamples + 4)
		r.waitFor(t, 2*time.Minute, "every posted message processed", func() bool {
			m := r.metrics(t)
			pending, ok := m["xmodal_jetstream_pending"]
			return m["xmodal_ingest_messages_total"] >= want && ok && pending == 0 // acked: in the index
		})
		r.traffic(t, ids[0])
		// The moderation banks: a bank, an entry, lookups (the bank panels).
		h := strings.Repeat("0f", 32)
		for _, args := range [][]string{{"bank", "create", "dashboard"}, {"bank", "add", "dashboard", "--pdq", h, "--text", "dashboard match"},
			{"bank", "match", "--pdq", h}} {
			if out, err := xmodal(t, nil, append(args, "--nats-listen", nats)...); err != nil {
				t.Fatalf("xmodal %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
		// A post that matches the bank at ingest: a match event.
		matchPost := filepath.Join(t.TempDir(), "match.jsonl")
		os.WriteFile(matchPost, []byte(fmt.Sprintf(`{"schema":1,"id":"match-1","created_at":%q,"text":"Dashboard match!"}`+"\n",
			time.Now().UTC().Format(time.RFC3339))), 0o644)
		if out, err := xmodal(t, nil, "post", "--nats-listen", nats, matchPost); err != nil {
			t.Fatalf("xmodal post (a matching post): %v\n%s", err, out)
		}
		m := r.metrics(t)
		for _, name := range []string{"xmodal_bank_entries", "xmodal_bank_lookups_total", "xmodal_bank_lookup_seconds_bucket", "xmodal_bank_matches_total",
			"xmodal_match_events_total", "xmodal_match_seconds_bucket", "xmodal_match_blocked_posts_total"} {
			if _, ok := m[name]; !ok {
				t.Errorf("/metrics lacks %s", name)
			}
		}
		// The clusters row: the embedded index clusters image posts at ingest;
		// the bank entry added above was swept over the index.
		for _, name := range []string{"xmodal_clusters", "xmodal_cluster_members", "xmodal_cluster_largest_size", "xmodal_cluster_merges_total",
			"xmodal_cluster_splits_total", "xmodal_dedup_progress_ratio", "xmodal_dedup_jobs_total", "xmodal_sweep_entries_total"} {
			if _, ok := m[name]; !ok {
				t.Errorf("/metrics lacks %s", name)
			}
		}
		if m["xmodal_cluster_members"] == 0 {
			t.Errorf("xmodal_cluster_members is 0 after the samples' image posts were indexed")
		}
		for _, name := range []string{"xmodal_dead_letters_total", "xmodal_jetstream_pending", "xmodal_media_fetch_seconds_bucket", "xmodal_query_cache_total", "xmodal_build_info"} {
			if _, ok := m[name]; !ok {
				t.Errorf("/metrics lacks %s", name)
			}
		}
		if m["xmodal_ready"] != 1 {
			t.Errorf("xmodal_ready %v, want 1", m["xmodal_ready"])
		}
		for k := range m {
			seen[k] = true
		}
		r.stop(t)
	})

	t.Run("kafka", func(t *testing.T) {
		k := startTestKafka(t)
		createTopic(t, k, "posts", 3)
		if out, err := xmodal(t, []string{"XMODAL_KAFKA_BROKERS=" + k}, "ingest", "--from", samples, "--to", "kafka",
			"--data-dir", t.TempDir()); err != nil {
			t.Fatalf("xmodal ingest --to kafka: %v\n%s", err, out)
		}
		r := startXmodal(t, []string{"XMODAL_KAFKA_BROKERS=" + k}, "run", "--nats-listen", freeAddr(t))
		r.waitFor(t, 2*time.Minute, "the samples indexed from Kafka", func() bool {
			m := r.metrics(t)
			lag, ok := m["xmodal_kafka_lag"]
			return m["xmodal_ingest_messages_total"] >= float64(nSamples) && ok && lag == 0 // committed: in the index
		})
		r.traffic(t, ids[0])
		_, ready := r.get("/readyz")
		if !strings.Contains(ready, "source: ok kafka") {
			t.Errorf("/readyz does not report the Kafka source:\n%s", ready)
		}
		m := r.metrics(t)
		for _, name := range []string{"xmodal_kafka_lag", "xmodal_kafka_fetched_total"} {
			if _, ok := m[name]; !ok {
				t.Errorf("/metrics lacks %s", name)
			}
		}
		for k := range m {
			seen[k] = true
		}
		r.stop(t)
	})

	var missing []string
	for name, panels := range used {
		if !seen[name] {
			missing = append(missing, fmt.Sprintf("%s (panels %q)", name, slices.Compact(panels)))
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("the dashboard queries metrics that no scraped process exports:\n  %s", strings.Join(missing, "\n  "))
	}
}

// sampleImage returns the first inline image of the samples.
func sampleImage(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var p struct {
			Image *struct {
				Data []byte `json:"data"`
			} `json:"image"`
		}
		if json.Unmarshal(l, &p) == nil && p.Image != nil && len(p.Image.Data) > 0 {
			return p.Image.Data
		}
	}
	t.Fatalf("%s: no inline image", path)
	return nil
}

func sampleIDs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var p struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(l, &p); err != nil || p.ID == "" {
			t.Fatalf("%s: %q: %v", path, l, err)
		}
		ids = append(ids, p.ID)
	}
	if len(ids) < 2 {
		t.Fatalf("%s: %d sample posts", path, len(ids))
	}
	return ids
}

// startTestKafka starts a Kafka broker of its own with scripts/kafka.sh (ports
// 19592-19594, XMODAL_TEST_DEPLOY_KAFKA_PORT moves them) and stops it after the
// test. Without java and mvn (or a cached .cache/kafka) the test fails naming Kafka.
func startTestKafka(t testing.TB) string {
	t.Helper()
	root := testutil.MustRepoRoot(t)
	port := 19592
	if p := os.Getenv("XMODAL_TEST_DEPLOY_KAFKA_PORT"); p != "" {
		var err error
		if port, err = strconv.Atoi(p); err != nil {
			t.Fatalf("XMODAL_TEST_DEPLOY_KAFKA_PORT=%q: %v", p, err)
		}
	}
	data := filepath.Join(root, ".cache", "kafka", "test-data-deploy-"+strconv.Itoa(port))
	script := func(timeout time.Duration, arg string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "kafka.sh"), arg)
		cmd.Env = append(os.Environ(), "KAFKA_PORT="+strconv.Itoa(port), "KAFKA_SASL_PORT="+strconv.Itoa(port+1),
			"KAFKA_CONTROLLER_PORT="+strconv.Itoa(port+2), "KAFKA_DATA="+data)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	script(time.Minute, "stop") // one left by a crashed run
	os.RemoveAll(data)
	if out, err := script(10*time.Minute, "start"); err != nil {
		testutil.Unavailable(t, "Kafka broker", "`scripts/kafka.sh start` (KAFKA_PORT=%d) failed; it needs java >= 17, mvn and Maven Central (or a cached .cache/kafka): %v\n%s", port, err, out)
	}
	t.Cleanup(func() {
		if out, err := script(time.Minute, "stop"); err != nil {
			t.Errorf("scripts/kafka.sh stop: %v\n%s", err, out)
		}
		os.RemoveAll(data)
	})
	return "127.0.0.1:" + strconv.Itoa(port)
}

func createTopic(t testing.TB, broker, topic string, partitions int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		last = func() error {
			c, err := kafkago.Dial("tcp", broker)
			if err != nil {
				return err
			}
			defer c.Close()
			ctrl, err := c.Controller()
			if err != nil {
				return err
			}
			cc, err := kafkago.Dial("tcp", net.JoinHostPort(ctrl.Host, strconv.Itoa(ctrl.Port)))
			if err != nil {
				return err
			}
			defer cc.Close()
			err = cc.CreateTopics(kafkago.TopicConfig{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1})
			if errors.Is(err, kafkago.TopicAlreadyExists) {
				return nil
			}
			return err
		}()
		if last == nil {
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("create topic %s: %v", topic, last)
}
