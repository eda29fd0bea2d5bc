package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xmodal/xmodal/internal/testutil"
)

// userRun is `xmodal run` started as README's "Using it" starts it, as a
// separate process (the test binary re-executed).
type userRun struct {
	t    *testing.T
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
	nats string
	http string
}

func startUserRun(t *testing.T, data, natsAddr, httpAddr string, extra ...string) *userRun {
	t.Helper()
	args := append([]string{"run", "--data-dir", data, "--nats-listen", natsAddr, "--http-listen", httpAddr, "--log-level", "info"}, extra...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = testutil.MustRepoRoot(t) // the bundled model is found from the repository root, as for a user
	cmd.Env = append(os.Environ(), "XMODAL_TEST_MAIN=1")
	buf := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = buf, buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &userRun{t: t, cmd: cmd, out: buf, done: make(chan error, 1), nats: natsAddr, http: httpAddr}
	go func() { r.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-r.done
		r.done <- nil
		if t.Failed() {
			t.Logf("xmodal run output:\n%s", buf.text())
		}
	})
	// Ready when its log names the search page (after the service started).
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(buf.text(), "search page: http://"+httpAddr+"/") {
		select {
		case err := <-r.done:
			r.done <- err
			t.Fatalf("xmodal run exited: %v\n%s", err, buf.text())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("xmodal run did not announce its search page:\n%s", buf.text())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return r
}

// stop sends SIGTERM and waits for a clean exit.
func (r *userRun) stop() {
	r.t.Helper()
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			r.t.Fatalf("xmodal run exited with %v after SIGTERM", err)
		}
	case <-time.After(60 * time.Second):
		r.t.Fatal("xmodal run did not stop within 60s of SIGTERM")
	}
}

// cli runs one xmodal command against the running instance.
func (r *userRun) cli(args ...string) (string, error) {
	r.t.Helper()
	return runXmodal(r.t, 3*time.Minute, nil, append(args, "--nats-listen", r.nats)...)
}

func (r *userRun) mustCLI(args ...string) string {
	r.t.Helper()
	out, err := r.cli(args...)
	if err != nil {
		r.t.Fatalf("xmodal %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// TestNewUserJourney is issue #19's "done when", step by step through the
// binary as README and docs tell a new user: run; post the demo's sample file
// and see every post indexed; post one's own JSONL with a local image file and
// an image URL on a private host; see the dead letter name the option;
// restart with it and replay; find posts by text, image, author and time
// window; take one down with a reason that reaches the audit log. (The page
// does the same in TestSearchPageInChromium.)
func TestNewUserJourney(t *testing.T) {
	if testing.Short() {
		t.Skip("runs xmodal processes")
	}
	root := testutil.MustRepoRoot(t)
	data := t.TempDir()
	natsAddr, httpAddr := freePort(t), freePort(t)
	run := startUserRun(t, data, natsAddr, httpAddr)
	if !strings.Contains(run.out.text(), "bundled demo model") {
		t.Error("xmodal run on the bundled model does not say what the model knows")
	}

	// The demo's own sample file: every post indexed.
	out := run.mustCLI("post", filepath.Join(root, "testdata", "demo", "posts.jsonl"))
	if !strings.Contains(out, "published 24 posts") || !strings.Contains(out, "outcomes of 24 posts: 24 indexed") {
		t.Fatalf("posting the sample file:\n%s", out)
	}

	// One's own file: a local picture, a picture on a private host, a line
	// without an id, a post without a schema.
	img, err := os.ReadFile(filepath.Join(root, "testdata", "demo", "images", "demo-000013.jpg"))
	if err != nil {
		t.Fatal(err)
	}
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/jpeg")
		w.Write(img)
	}))
	defer cdn.Close()
	mine := t.TempDir()
	if err := os.MkdirAll(filepath.Join(mine, "pics"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mine, "pics", "mine.jpg"), img, 0o644); err != nil {
		t.Fatal(err)
	}
	lines := []string{
		`{"schema":1,"id":"mine-1","author":"me","created_at":"2026-11-20T10:00:00Z","text":"my own picture of shapes","image_file":"pics/mine.jpg","labels":["mine"]}`,
		fmt.Sprintf(`{"schema":1,"id":"mine-2","author":"me","created_at":"2026-11-20T11:00:00Z","text":"the same picture from our CDN","image":{"url":"%s/p/2.jpg"}}`, cdn.URL),
		`{"author":"me","text":"a line without an id"}`,
		`{"id":"mine-3","created_at":"2026-11-20T12:00:00Z","text":"no schema"}`,
	}
	postsFile := filepath.Join(mine, "mine.jsonl")
	if err := os.WriteFile(postsFile, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = run.cli("post", postsFile)
	if err == nil {
		t.Errorf("xmodal post with an unsendable line exited 0:\n%s", out)
	}
	for _, want := range []string{
		"mine.jsonl line 3: not sent: id: missing",
		"published 3 posts; 1 lines not sent",
		"outcomes of 3 posts: 1 indexed, 1 dead-lettered, 1 partly indexed",
		`line 2 (post "mine-2"): partly indexed: text; dead-lettered at fetch:`,
		"add 127.0.0.1 or the URL's host name to ingest.allow_private",
		`line 4 (post "mine-3"): dead-lettered: at decode: invalid post: schema: missing`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("xmodal post of one's own file: output lacks %q:\n%s", want, out)
		}
	}
	out = run.mustCLI("dlq", "ls")
	if !strings.Contains(out, "2 dead letters") || !regexp.MustCompile(`\d+\s+\S+ \S+\s+fetch\s+mine-2\s+media: fetch`).MatchString(out) {
		t.Fatalf("xmodal dlq ls:\n%s", out)
	}

	// While run holds the data dir, a direct backfill refuses before reading
	// anything and points at --to nats, which works.
	out, err = runXmodal(t, time.Minute, nil, "ingest", "--from", postsFile, "--to", "direct", "--data-dir", data)
	if err == nil || !strings.Contains(out, "is in use") || !strings.Contains(out, "--to nats") || strings.Contains(out, "stopped after") {
		t.Errorf("ingest --to direct while run holds the data dir: %v\n%s", err, out)
	}
	if cps, _ := filepath.Glob(filepath.Join(data, "backfill", "*")); len(cps) != 0 {
		t.Errorf("the refused backfill left checkpoints %v", cps)
	}

	// The hinted option, then replay.
	run.stop()
	run = startUserRun(t, data, natsAddr, httpAddr, "--ingest-allow-private", "127.0.0.1")
	out = run.mustCLI("dlq", "replay", "--all", "--stage", "fetch")
	if !strings.Contains(out, "replayed 1 dead letters") {
		t.Fatalf("xmodal dlq replay:\n%s", out)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		out = run.mustCLI("get", "mine-2")
		if strings.Contains(out, "mine-2#image") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the replay mine-2 has no image record:\n%s", out)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if out = run.mustCLI("dlq", "ls", "--stage", "fetch"); !strings.Contains(out, "0 dead letters") {
		t.Errorf("the replayed dead letter is still listed:\n%s", out)
	}
	// The other dead letter: shown in full, then purged.
	out = run.mustCLI("dlq", "ls", "--json")
	var dls []dlqView
	if err := json.Unmarshal([]byte(out), &dls); err != nil || len(dls) != 1 || dls[0].Key != "mine-3" || dls[0].Stage != "decode" {
		t.Fatalf("dlq ls --json: %v\n%s", err, out)
	}
	out = run.mustCLI("dlq", "show", dls[0].ID)
	if !strings.Contains(out, "Xmodal-Reason: invalid post: schema: missing") || !strings.Contains(out, `"text": "no schema"`) {
		t.Errorf("dlq show:\n%s", out)
	}
	if out = run.mustCLI("dlq", "purge", dls[0].ID); !strings.Contains(out, "purged 1") {
		t.Errorf("dlq purge:\n%s", out)
	}
	if out = run.mustCLI("dlq", "ls"); !strings.Contains(out, "0 dead letters") {
		t.Errorf("after the purge:\n%s", out)
	}

	// A backfill into the running instance: --to nats, resumable.
	bf := filepath.Join(mine, "backfill.jsonl")
	os.WriteFile(bf, []byte(`{"schema":1,"id":"bf-1","author":"archive","created_at":"2026-10-01T10:00:00Z","text":"from the archive","image_file":"pics/mine.jpg"}
{"schema":1,"id":"bf-2","author":"archive","created_at":"2026-10-01T11:00:00Z","text":"more from the archive"}
`), 0o644)
	cpDir := t.TempDir()
	out, err = runXmodal(t, time.Minute, nil, "ingest", "--from", bf, "--to", "nats", "--nats-listen", natsAddr, "--data-dir", cpDir)
	if err != nil || !strings.Contains(out, "ingest: done: 2 lines") {
		t.Fatalf("ingest --to nats: %v\n%s", err, out)
	}
	if out, _ = runXmodal(t, time.Minute, nil, "ingest", "--from", bf, "--to", "nats", "--nats-listen", natsAddr, "--data-dir", cpDir); !strings.Contains(out, "nothing to do") {
		t.Errorf("ingest --to nats again:\n%s", out)
	}
	for deadline := time.Now().Add(time.Minute); ; {
		out = run.mustCLI("get", "bf-1", "bf-2")
		if strings.Contains(out, "bf-1#image") && strings.Contains(out, "bf-2#text") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the backfill was not indexed:\n%s", out)
		}
		time.Sleep(300 * time.Millisecond)
	}

	// Find posts by text, image, author and time window.
	out = run.mustCLI("query", "--text", "my own picture of shapes", "--target", "text", "-k", "3")
	if !regexp.MustCompile(`(?m)^\s+1\s+\S+\s+text\s+mine-1\s+me\s+2026-11-20 10:00Z\s+mine\s`).MatchString(out) {
		t.Errorf("query by text: mine-1 is not first:\n%s", out)
	}
	out = run.mustCLI("query", "--image", filepath.Join(mine, "pics", "mine.jpg"), "--target", "image", "-k", "3")
	if !regexp.MustCompile(`(?m)^\s+[12]\s+1\.0000\s+image\s+mine-[12]\s`).MatchString(out) {
		t.Errorf("query by image: its own picture is not first:\n%s", out)
	}
	out = run.mustCLI("query", "--text", "shapes", "--author", "me", "-k", "20")
	if !strings.Contains(out, "target any: the image, text and fused lists merged by rank") {
		t.Errorf("query --target any does not say how lists merge:\n%s", out)
	}
	for _, l := range hitLines(out) {
		if l.author != "me" {
			t.Errorf("query --author me returned %s by %s", l.post, l.author)
		}
	}
	out = run.mustCLI("query", "--text", "a red star", "--since", "2026-11-01T10:00:00Z", "--until", "2026-11-01T12:00:01Z", "-k", "50")
	hits := hitLines(out)
	if len(hits) == 0 {
		t.Fatalf("query in a time window found nothing:\n%s", out)
	}
	for _, l := range hits {
		if l.created < "2026-11-01 10:00Z" || l.created > "2026-11-01 12:00Z" {
			t.Errorf("query --since/--until returned %s created %s", l.post, l.created)
		}
	}
	out = run.mustCLI("neardup", "--image", filepath.Join(mine, "pics", "mine.jpg"))
	if !strings.Contains(out, "of 256 bits") || !regexp.MustCompile(`(?m)^\s+1\s+whole\s+0\s+original\s+(bf-1|mine-1|mine-2|post-demo-000013)\s`).MatchString(out) {
		t.Errorf("neardup of one's own picture:\n%s", out)
	}

	// Take one down with a reason: gone from search, reason in the audit log.
	const reason = "posted without consent (ticket 77)"
	out = run.mustCLI("delete", "mine-1", "--reason", reason)
	if !strings.Contains(out, "took down 1 posts") {
		t.Fatalf("xmodal delete:\n%s", out)
	}
	// The server logs the audit line as it answers: the reply can reach the
	// CLI before the line reaches the output pipe.
	audit := regexp.MustCompile(`msg="audit: takedown".*post_ids=mine-1 .*reason="` + regexp.QuoteMeta(reason) + `"`)
	testutil.Eventually(t, 10*time.Second, func() error {
		if !audit.MatchString(run.out.text()) {
			return fmt.Errorf("the audit log has no takedown of mine-1 with the reason:\n%s", run.out.text())
		}
		return nil
	})
	out = run.mustCLI("query", "--text", "my own picture of shapes", "-k", "30")
	for _, l := range hitLines(out) {
		if l.post == "mine-1" {
			t.Errorf("mine-1 was taken down, yet search returns it:\n%s", out)
		}
	}
	if out, _ := run.cli("get", "mine-1"); !strings.Contains(out, "not indexed") {
		t.Errorf("xmodal get of a taken-down post:\n%s", out)
	}
	// Posting it again: the outcome says it is denied.
	again := filepath.Join(mine, "again.jsonl")
	os.WriteFile(again, []byte(lines[0]+"\n"), 0o644)
	if out = run.mustCLI("post", again); !strings.Contains(out, "1 denied") || !strings.Contains(out, "deny-list") {
		t.Errorf("posting a taken-down post again:\n%s", out)
	}

	// Records per modality in /metrics.
	res, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, m := range []string{"image", "text", "fused"} {
		if !regexp.MustCompile(`xmodal_index_records\{modality="` + m + `"\} 2[5-9]\b`).Match(b) {
			t.Errorf("/metrics: no xmodal_index_records for %s of 25..29 records:\n%s", m, grep(string(b), "xmodal_index_records"))
		}
	}
	run.stop()
}

type hitLine struct{ post, author, created string }

// hitLines parses printHits' table.
func hitLines(out string) []hitLine {
	var hs []hitLine
	re := regexp.MustCompile(`(?m)^\s+\d+\s+-?\d\.\d{4}\s+(image|text|fused)\s+(\S+)\s+(\S*)\s+(\d{4}-\d\d-\d\d \d\d:\d\dZ)\s`)
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		hs = append(hs, hitLine{post: m[2], author: m[3], created: m[4]})
	}
	return hs
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
