package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/internal/testutil"
	"github.com/xmodal/xmodal/query/client"
)

// TestReadOnlyDataDirIsNamedAtOnce (issue #15 item 7): `xmodal run` on a
// data dir it cannot write exits at once with an error naming the dir; it
// used to wait 10 s and blame the NATS port ("port in use?") with the port
// free.
func TestReadOnlyDataDirIsNamedAtOnce(t *testing.T) {
	dir := testutil.ReadOnlyDir(t)
	c := startChild(t, dir, freePort(t))
	select {
	case err := <-c.done:
		c.done <- err
		if err == nil {
			t.Fatal("xmodal run on a read-only data dir exited 0")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("xmodal run on a read-only data dir still runs after 60s")
	}
	out := c.out.String()
	if !strings.Contains(out, "data_dir: "+dir+" is not writable") || strings.Contains(out, "port in use") {
		t.Errorf("output %q; want the data dir named as not writable, and no port blamed", out)
	}
}

// readyz fetches /readyz: its status and body.
func readyz(t *testing.T, addr string) (int, string) {
	t.Helper()
	res, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestReadyzWhileIndexWritesFail (issue #15 item 7): while the embedded
// index's writes fail on the disk (here the process's file-size limit,
// RLIMIT_FSIZE, set under it with prlimit: every write past 4 KiB gets
// EFBIG, as a full disk gives ENOSPC), /readyz reports not ready and says
// why; once writes succeed again it is ready and the post is indexed.
// NATS runs in the test process, so that only the index writes to the
// child's disk.
func TestReadyzWhileIndexWritesFail(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an xmodal process")
	}
	ns := testutil.StartNATS(t, "")
	nc, js := testutil.ConnectJS(t, ns.ClientURL())
	httpAddr := freePort(t)
	c := startChildHTTP(t, t.TempDir(), freePort(t), httpAddr, "XMODAL_NATS_URL="+ns.ClientURL())
	waitService(t, nc)
	ready := func(want int, what string) string {
		t.Helper()
		var code int
		var body string
		deadline := time.Now().Add(30 * time.Second)
		for {
			if code, body = readyz(t, httpAddr); code == want {
				return body
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /readyz %d %q after 30s, want %d", what, code, body, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	ready(200, "at start")
	cl := client.New(nc)
	ctx := context.Background()
	publish := func(id string) {
		b, _ := json.Marshal(domain.Post{Schema: 1, ID: id, CreatedAt: time.Now().UTC().Add(-time.Minute), Text: "post " + id})
		if err := ingest.Publish(ctx, js, "xmodal.posts", id, b); err != nil {
			t.Fatal(err)
		}
	}
	indexed := func(n int) bool {
		st, err := cl.Stats(ctx)
		return err == nil && st.Records[domain.ModalityText] == n
	}
	publish("before")
	waitFor(t, "the first post indexed", func() bool { return indexed(1) })

	pid := c.cmd.Process.Pid
	var old unix.Rlimit
	if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: 4096, Max: unix.RLIM_INFINITY}, &old); err != nil {
		t.Fatalf("prlimit RLIMIT_FSIZE of the child: %v", err)
	}
	publish("during")
	body := ready(503, "with index writes failing")
	if !strings.Contains(body, "index writes: FAIL") || !strings.Contains(body, "file too large") {
		t.Errorf("/readyz body %q; want the failing index writes and their error", body)
	}
	if indexed(2) {
		t.Fatal("the post was indexed although every write should fail")
	}
	if err := unix.Prlimit(pid, unix.RLIMIT_FSIZE, &old, nil); err != nil {
		t.Fatal(err)
	}
	ready(200, "after the disk recovered")
	waitFor(t, "the post indexed after the disk recovered", func() bool { return indexed(2) })
	if _, b := readyz(t, httpAddr); !strings.Contains(b, "index writes: ok") {
		t.Errorf("/readyz body %q; want index writes ok", b)
	}
}

// waitFor polls cond every 50 ms for up to 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
