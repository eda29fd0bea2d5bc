package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/eval/reposts"
	"github.com/xmodal/xmodal/internal/natsserver"
	"github.com/xmodal/xmodal/internal/testutil"
)

// startTestMilvus starts a Milvus standalone of its own with scripts/milvus.sh
// (gRPC 19830 and the next ten ports; XMODAL_TEST_DEPLOY_MILVUS_PORT moves them)
// and stops it after the test. Without python3/pip and PyPI (or a cached
// .cache/milvus) the test fails naming Milvus.
func startTestMilvus(t testing.TB) string {
	t.Helper()
	root := testutil.MustRepoRoot(t)
	port := 19830
	if p := os.Getenv("XMODAL_TEST_DEPLOY_MILVUS_PORT"); p != "" {
		var err error
		if port, err = strconv.Atoi(p); err != nil {
			t.Fatalf("XMODAL_TEST_DEPLOY_MILVUS_PORT=%q: %v", p, err)
		}
	}
	data := filepath.Join(root, ".cache", "milvus", "test-data-deploy-"+strconv.Itoa(port))
	script := func(timeout time.Duration, arg string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "milvus.sh"), arg)
		cmd.Env = append(os.Environ(), "MILVUS_PORT="+strconv.Itoa(port), "MILVUS_DATA="+data)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	script(2*time.Minute, "stop") // one left by a crashed run
	os.RemoveAll(data)
	t.Cleanup(func() { // also after a start that failed half-way
		if out, err := script(2*time.Minute, "stop"); err != nil {
			t.Errorf("scripts/milvus.sh stop: %v\n%s", err, out)
		}
		os.RemoveAll(data)
	})
	if out, err := script(10*time.Minute, "start"); err != nil {
		testutil.Unavailable(t, "Milvus", "`scripts/milvus.sh start` (MILVUS_PORT=%d) failed; it needs python3 with venv and pip, and PyPI (or a cached .cache/milvus): %v\n%s", port, err, out)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

// TestSplitRolesOnMilvus runs the deployment's shape on real services: Kafka
// (scripts/kafka.sh), Milvus (scripts/milvus.sh), a NATS server, one
// `xmodal indexer` and one `xmodal serve` built by scripts/build.sh. The sample
// posts go to Kafka; the indexer writes them to Milvus; the query role answers
// from Milvus. Readiness follows the dependencies; a query role whose model does
// not match the collection the alias serves refuses to start, naming both; the
// indexer stops on SIGTERM with exit 0.
func TestSplitRolesOnMilvus(t *testing.T) {
	d := dist(t)
	samples := filepath.Join(d, "share", "samples", "posts.jsonl")
	ids := sampleIDs(t, samples)
	milvusAddr := startTestMilvus(t)
	kafka := startTestKafka(t)
	createTopic(t, kafka, "posts", 3)
	ns, err := natsserver.Start(natsserver.Options{Listen: "127.0.0.1:0", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Shutdown)

	collection := "deploy_" + strconv.FormatInt(time.Now().Unix()%100000, 10)
	common := []string{"XMODAL_MILVUS_ADDRESS=" + milvusAddr, "XMODAL_MILVUS_COLLECTION=" + collection,
		"XMODAL_MILVUS_CONSISTENCY=Strong", "XMODAL_MILVUS_INDEX_TYPE=FLAT", "XMODAL_IMAGE_NEARDUP_WINDOWS=true"}
	copies := writeCopies(t, filepath.Dir(samples), ids[0])
	photo, crop := writePhotoAndCrop(t)
	for _, from := range []string{samples, copies, photo} {
		if out, err := xmodal(t, []string{"XMODAL_KAFKA_BROKERS=" + kafka}, "ingest", "--from", from, "--to", "kafka", "--data-dir", t.TempDir()); err != nil {
			t.Fatalf("xmodal ingest --to kafka: %v\n%s", err, out)
		}
	}
	// A text bank that the second sample post matches, made through the query
	// role before the indexer starts: on Milvus its records keep the match
	// (schema 2 collections).
	serve := startXmodal(t, append(common, "XMODAL_NATS_URL="+ns.ClientURL()), "serve")
	known := sampleText(t, samples, ids[1])
	for _, args := range [][]string{{"bank", "create", "known"}, {"bank", "add", "known", "--text", known}} {
		if out, err := xmodal(t, []string{"XMODAL_NATS_URL=" + ns.ClientURL()}, args...); err != nil {
			t.Fatalf("xmodal %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	indexer := startXmodal(t, append(common, "XMODAL_KAFKA_BROKERS="+kafka, "XMODAL_NATS_URL="+ns.ClientURL()), "indexer")
	_, ready := indexer.get("/readyz")
	for _, want := range []string{"role indexer: running", "index: ok milvus", "source: ok kafka", "denylist: ok", "clusters: ok",
		"windows: ok appended only"} {
		if !strings.Contains(ready, want) {
			t.Errorf("indexer /readyz lacks %q:\n%s", want, ready)
		}
	}
	serve.waitFor(t, 2*time.Minute, "every sample post in Milvus", func() bool {
		code, body := serve.get("/metrics")
		if code != 200 {
			return false
		}
		var st struct {
			Records map[string]int `json:"records"`
		}
		b := serve.post(t, "/v1/stats", `{}`)
		return json.Unmarshal([]byte(b), &st) == nil && st.Records["text"] >= len(ids) && strings.Contains(body, "xmodal_query")
	})
	var res struct {
		Hits []struct {
			PostID string `json:"post_id"`
		} `json:"hits"`
	}
	if err := json.Unmarshal([]byte(serve.post(t, "/v1/search", `{"text":"two red stars","target":"image","k":3}`)), &res); err != nil || len(res.Hits) != 3 {
		t.Errorf("search through the query role: %v, %d hits", err, len(res.Hits))
	}
	// The bank match is on the Milvus records: hits carry it, and the
	// matched_banks filter lists exactly the matching post.
	var matched struct {
		Hits []struct {
			PostID  string `json:"post_id"`
			Matches []struct {
				Bank string `json:"bank"`
			} `json:"matches"`
		} `json:"hits"`
	}
	body, _ := json.Marshal(map[string]any{"text": known, "target": "text", "k": 10, "filter": map[string]any{"matched_banks": []string{"known"}}})
	reply := serve.post(t, "/v1/search", string(body))
	if err := json.Unmarshal([]byte(reply), &matched); err != nil || len(matched.Hits) != 1 || matched.Hits[0].PostID != ids[1] ||
		len(matched.Hits[0].Matches) != 1 || matched.Hits[0].Matches[0].Bank != "known" {
		t.Errorf("search with matched_banks [known] on Milvus: %v; want only %s with its match\n%s", err, ids[1], reply)
	}
	checkSharedClusters(t, serve, ids[0])
	checkCropOnMilvus(t, serve, crop)

	// The roles export their own metrics.
	im, sm := indexer.metrics(t), serve.metrics(t)
	for name, m := range map[string]map[string]float64{"indexer": im, "serve": sm} {
		if m["xmodal_cluster_members"] < 4 {
			t.Errorf("the %s role's xmodal_cluster_members is %v; want at least the 4 copies", name, m["xmodal_cluster_members"])
		}
	}
	if im["xmodal_neardup_window_images"] != 0 || sm["xmodal_neardup_window_images"] < 1 {
		t.Errorf("xmodal_neardup_window_images: indexer %v (keeps no copy), serve %v (the photo's windows at least)",
			im["xmodal_neardup_window_images"], sm["xmodal_neardup_window_images"])
	}
	if _, ok := im["xmodal_kafka_lag"]; !ok {
		t.Error("the indexer does not export xmodal_kafka_lag")
	}
	if _, ok := im["xmodal_query_requests_total"]; ok {
		t.Error("the indexer exports query metrics")
	}
	if _, ok := sm["xmodal_query_requests_total"]; !ok {
		t.Error("the query role does not export xmodal_query_requests_total")
	}
	if _, ok := sm["xmodal_ingest_messages_total"]; ok {
		t.Error("the query role exports ingest metrics")
	}

	// The batch near-duplicate job runs in the CLI's process against Milvus
	// (a Milvus deployment's serving processes run none): it reads the image
	// records of the alias's collection and writes its folder under --out.
	jobs := t.TempDir()
	dout, err := xmodal(t, common, "dedup", "--milvus", "--out", jobs)
	m := regexp.MustCompile(`(\d+) image posts, threshold 31 bits`).FindStringSubmatch(dout)
	if err != nil || m == nil || !regexp.MustCompile(`job dedup-\S+: done`).MatchString(dout) {
		t.Errorf("xmodal dedup --milvus: %v\n%s", err, dout)
	} else if n, _ := strconv.Atoi(m[1]); n < 1 || n > len(ids)+4 {
		t.Errorf("xmodal dedup --milvus read %d image posts; the samples, the copies and the photo have %d posts", n, len(ids)+4)
	}
	if files, _ := filepath.Glob(filepath.Join(jobs, "dedup-*", "clusters.jsonl")); len(files) != 1 {
		t.Errorf("xmodal dedup --milvus wrote %v under --out", files)
	}

	// A text entry added after the posts were indexed is swept on Milvus too:
	// the serving process scans the records in key order (one match, its
	// event); before ScanRecords on Milvus, such a sweep failed.
	natsEnv := []string{"XMODAL_NATS_URL=" + ns.ClientURL()}
	for _, args := range [][]string{{"bank", "create", "later"}, {"bank", "add", "later", "--text", sampleText(t, samples, ids[2])}} {
		if out, err := xmodal(t, natsEnv, args...); err != nil {
			t.Fatalf("xmodal %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	var sweep []string
	serve.waitFor(t, 2*time.Minute, "the sweep of bank later to end", func() bool {
		out, _ := xmodal(t, natsEnv, "bank", "sweep-status")
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) >= 6 && f[1] == "later" && f[2] != "queued" && f[2] != "running" {
				sweep = f
				return true
			}
		}
		return false
	})
	if sweep[2] != "done" || sweep[4] == "-" || sweep[5] != "1" {
		t.Errorf("the sweep of bank later on Milvus: %v; want done, records scanned, 1 match", sweep)
	}

	// A query process following the alias with another model is refused.
	other := filepath.Join(t.TempDir(), "other-model")
	copyModel(t, d, other, "999")
	out, err := xmodal(t, append(common, "XMODAL_NATS_URL="+ns.ClientURL(), "XMODAL_MODEL="+other, "XMODAL_MILVUS_FOLLOW_ALIAS=true",
		"XMODAL_HTTP_LISTEN="+freeAddr(t), "XMODAL_DATA_DIR="+t.TempDir()), "serve")
	last := lastLine(out)
	t.Logf("refusal: %s", last)
	if err == nil || !strings.Contains(last, "milvus.follow_alias") || !strings.Contains(last, "@999") {
		t.Errorf("serve with a model the alias does not hold: %v; last line %q (want one naming milvus.follow_alias and the model)", err, last)
	}

	// Readiness follows NATS: the query role is not ready without it.
	ns.Shutdown()
	serve.waitFor(t, 30*time.Second, "/readyz 503 with NATS down", func() bool {
		code, body := serve.get("/readyz")
		return code == 503 && strings.Contains(body, "nats: FAIL")
	})
	if code, _ := serve.get("/healthz"); code != 200 {
		t.Errorf("/healthz %d with NATS down; liveness must not follow dependencies", code)
	}
	indexer.stop(t)
	serve.stop(t)
}

// writePhotoAndCrop writes a posts file with one committed photo
// (astronaut.jpg, by image_file) and returns it with a 75 % crop of the
// photo (PNG bytes), which whole-image PDQ misses.
func writePhotoAndCrop(t *testing.T) (string, []byte) {
	t.Helper()
	src := filepath.Join(testutil.MustRepoRoot(t), "testdata", "neardup", "photos", "astronaut.jpg")
	line, _ := json.Marshal(map[string]any{"schema": 1, "id": "photo-astronaut", "author": "skimage",
		"created_at": "2026-11-02T10:00:00Z", "text": "a photo", "image_file": src})
	path := filepath.Join(t.TempDir(), "photo.jsonl")
	if err := os.WriteFile(path, append(line, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	img := testutil.DecodeImage(t, src)
	rp, err := reposts.Apply(img, []reposts.Kind{reposts.Crop75}, rand.New(rand.NewPCG(4, 11)))
	if err != nil {
		t.Fatal(err)
	}
	orig, _ := (&pdq.Hasher{MaxSide: -1}).Hash(img)
	if h, _ := (&pdq.Hasher{MaxSide: -1}).Hash(rp.Image); pdq.Distance(h, orig) <= 31 {
		t.Fatalf("the crop is within PDQ's bound of the photo (%d bits): the test shows nothing", pdq.Distance(h, orig))
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, rp.Image); err != nil {
		t.Fatal(err)
	}
	return path, buf.Bytes()
}

// checkCropOnMilvus asks the query role for the near-duplicates of a crop
// of the photo the indexer (another process) wrote to Milvus: the windows
// the indexer computed at ingest reached the query role through JetStream
// (Milvus rows keep whole-image PDQ only), and it finds the photo by them.
func checkCropOnMilvus(t *testing.T, serve *running, crop []byte) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"image": crop, "k": 5})
	var res struct {
		Windows string `json:"windows"`
		Matches []struct {
			PostID string `json:"post_id"`
			Kind   string `json:"kind"`
		} `json:"matches"`
	}
	var reply string
	serve.waitFor(t, time.Minute, "the photo found by its crop's windows", func() bool {
		reply = serve.post(t, "/v1/neardup", string(body))
		return json.Unmarshal([]byte(reply), &res) == nil && len(res.Matches) > 0
	})
	if res.Windows != "searched" || res.Matches[0].PostID != "photo-astronaut" || res.Matches[0].Kind != "window" {
		t.Errorf("neardup of a 75%% crop of a posted photo on Milvus: %s", reply)
	}
}

// writeCopies writes a posts file of three re-posts of post orig's picture
// (the same image, later, by other authors) and returns its path.
func writeCopies(t *testing.T, sampleDir, orig string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sampleDir, "posts.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var image json.RawMessage
	for _, l := range strings.Split(string(b), "\n") {
		var p struct {
			ID    string          `json:"id"`
			Image json.RawMessage `json:"image"`
		}
		if json.Unmarshal([]byte(l), &p) == nil && p.ID == orig {
			image = p.Image
		}
	}
	if len(image) == 0 {
		t.Fatalf("sample post %s has no image", orig)
	}
	var out bytes.Buffer
	for i, at := range []string{"12:10", "12:20", "12:30"} {
		line, _ := json.Marshal(map[string]any{"schema": 1, "id": fmt.Sprintf("copy-%d", i+1), "author": fmt.Sprintf("reposter%d", i),
			"created_at": "2026-11-01T" + at + ":00Z", "text": "look at this", "image": image})
		out.Write(append(line, '\n'))
	}
	path := filepath.Join(t.TempDir(), "copies.jsonl")
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkSharedClusters checks, through the query role, the clusters the
// indexer (another process) built on Milvus: the three re-posts of orig's
// picture and orig form one cluster whose representative is orig; hits
// carry it, a cluster filter keeps its members, and it trends first in the
// hour of the re-posts.
func checkSharedClusters(t *testing.T, serve *running, orig string) {
	t.Helper()
	type hit struct {
		PostID  string `json:"post_id"`
		Cluster *struct {
			ID   uint64 `json:"id"`
			Size int    `json:"size"`
		} `json:"cluster"`
	}
	var cl struct {
		Cluster struct {
			ID             uint64 `json:"id"`
			Size           int    `json:"size"`
			Representative *hit   `json:"representative"`
		} `json:"cluster"`
		Members []hit `json:"members"`
	}
	serve.waitFor(t, 2*time.Minute, "the re-posts' cluster", func() bool {
		resp, err := http.Post("http://"+serve.http+"/v1/cluster", "application/json", strings.NewReader(`{"post_id":"copy-3","limit":10}`))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && json.Unmarshal(b, &cl) == nil && cl.Cluster.Size >= 4
	})
	members := map[string]bool{}
	for _, m := range cl.Members {
		members[m.PostID] = true
	}
	for _, want := range []string{orig, "copy-1", "copy-2", "copy-3"} {
		if !members[want] {
			t.Errorf("cluster %d lacks %s: members %v", cl.Cluster.ID, want, members)
		}
	}
	if len(cl.Members) < 2 || cl.Members[0].PostID != "copy-3" {
		t.Errorf("cluster members are not newest first: %+v", cl.Members)
	}
	if r := cl.Cluster.Representative; r == nil || r.PostID != orig {
		t.Errorf("representative %+v; want the earliest member %s", r, orig)
	}
	// A search filtered by the cluster returns its members only, each
	// carrying the cluster.
	var res struct {
		Hits []hit `json:"hits"`
	}
	body := fmt.Sprintf(`{"text":"look at this","target":"image","k":20,"filter":{"cluster":%d}}`, cl.Cluster.ID)
	if err := json.Unmarshal([]byte(serve.post(t, "/v1/search", body)), &res); err != nil || len(res.Hits) != len(members) {
		t.Fatalf("search filtered by cluster %d: %v, %d hits; want its %d members", cl.Cluster.ID, err, len(res.Hits), len(members))
	}
	for _, h := range res.Hits {
		if !members[h.PostID] || h.Cluster == nil || h.Cluster.ID != cl.Cluster.ID || h.Cluster.Size != cl.Cluster.Size {
			t.Errorf("hit %+v of the cluster filter; want a member carrying cluster %d of size %d", h, cl.Cluster.ID, cl.Cluster.Size)
		}
	}
	var tr struct {
		Clusters []struct {
			ID      uint64 `json:"id"`
			Current int    `json:"current"`
		} `json:"clusters"`
	}
	if err := json.Unmarshal([]byte(serve.post(t, "/v1/trending", `{"window":"1h","now":"2026-11-01T12:45:00Z","min_count":2}`)), &tr); err != nil ||
		len(tr.Clusters) == 0 || tr.Clusters[0].ID != cl.Cluster.ID || tr.Clusters[0].Current < 3 {
		t.Errorf("trending in the hour of the re-posts: %v %+v; want cluster %d first", err, tr.Clusters, cl.Cluster.ID)
	}
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}

// copyModel copies the bundled model of the build to dir with another version.
func copyModel(t *testing.T, dist, dir, version string) {
	t.Helper()
	src, _ := filepath.Glob(filepath.Join(dist, "testdata", "models", "*", "model.json"))
	if len(src) != 1 {
		t.Fatalf("bundled model: %v", src)
	}
	from := filepath.Dir(src[0])
	os.MkdirAll(dir, 0o755)
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() || e.Name() == "hash.json" { // fitted for the original version
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if e.Name() == "model.json" {
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			m["version"] = version
			b, _ = json.Marshal(m)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// sampleText returns the text of the sample post id.
func sampleText(t *testing.T, path, id string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var p struct {
			ID   string `json:"id"`
			Text string `json:"text"`
		}
		if json.Unmarshal(l, &p) == nil && p.ID == id && p.Text != "" {
			return p.Text
		}
	}
	t.Fatalf("%s: no text for %s", path, id)
	return ""
}
