package milvus

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/milvus-io/milvus/client/v2/milvusclient"

	"github.com/xmodal/xmodal/internal/testutil"
)

// The test server: a real Milvus standalone started with scripts/milvus.sh on ports
// of its own (so that it does not collide with a developer's Milvus on 19530),
// shared by the package's tests and stopped after them when the tests started it.
// XMODAL_TEST_MILVUS_PORT moves it (it uses that port and the next ten).
//
// XMODAL_TEST_MILVUS_ADDR=host:port runs the tests against a Milvus that is already
// running (another version, a cluster) instead; the tests that restart the server
// then skip. XMODAL_TEST_MILVUS_LAYOUT forces a layout (single, split).
type testServer struct {
	once     sync.Once
	err      error
	root     string
	port     int
	external string
	started  bool // by these tests (so they stop it and remove its data)
}

// The port is derived from the checkout's path (20000 + 12·(hash mod 100)), so that
// test runs of two checkouts on one machine do not share a server.
var server = &testServer{}

func TestMain(m *testing.M) {
	code := m.Run()
	if server.started {
		if out, err := server.script(2*time.Minute, "stop"); err != nil {
			fmt.Fprintf(os.Stderr, "stopping the test Milvus: %v\n%s", err, out)
		}
		os.RemoveAll(server.dataDir())
	}
	os.Exit(code)
}

func (s *testServer) addr() string {
	if s.external != "" {
		return s.external
	}
	return "127.0.0.1:" + strconv.Itoa(s.port)
}

func (s *testServer) dataDir() string {
	return filepath.Join(s.root, ".cache", "milvus", "test-data-"+strconv.Itoa(s.port))
}

func (s *testServer) script(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(s.root, "scripts", "milvus.sh")}, args...)...)
	cmd.Env = append(os.Environ(), "MILVUS_PORT="+strconv.Itoa(s.port), "MILVUS_DATA="+s.dataDir())
	cmd.Dir = s.root
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// need returns the server's address, starting it on first use. A server that cannot
// start ends the test through testutil.Unavailable (a failure under CI=true).
func (s *testServer) need(t testing.TB) string {
	t.Helper()
	s.once.Do(func() {
		if a := os.Getenv("XMODAL_TEST_MILVUS_ADDR"); a != "" {
			s.external = a
			return
		}
		if p := os.Getenv("XMODAL_TEST_MILVUS_PORT"); p != "" {
			if s.port, s.err = strconv.Atoi(p); s.err != nil {
				return
			}
		}
		if s.root, s.err = testutil.RepoRoot(); s.err != nil {
			return
		}
		if s.port == 0 {
			h := fnv.New32a()
			h.Write([]byte(s.root))
			s.port = 20000 + 12*int(h.Sum32()%100)
		}
		// A server that a test run started carries this mark, so that one left behind
		// by a crashed run is stopped by the next; one started by hand is left running.
		mark := filepath.Join(s.dataDir(), "started-by-go-test")
		if _, err := s.script(30*time.Second, "status"); err == nil {
			_, err := os.Stat(mark)
			s.started = err == nil
			return
		}
		os.RemoveAll(s.dataDir())
		out, err := s.script(10*time.Minute, "start")
		if err != nil {
			s.err = fmt.Errorf("%v\n%s", err, out)
			return
		}
		s.started = true
		os.WriteFile(mark, nil, 0o644)
	})
	if s.err != nil {
		testutil.Unavailable(t, "Milvus", "`scripts/milvus.sh start` (MILVUS_PORT=%d) failed; it needs python3 with venv and pip, and PyPI (or a cached .cache/milvus): %v",
			s.port, s.err)
	}
	return s.addr()
}

// restart stops the server with the signal ("stop": TERM, "kill": KILL) and starts
// it again on the same data.
func (s *testServer) halt(t testing.TB, how string) {
	t.Helper()
	if s.external != "" {
		t.Skipf("XMODAL_TEST_MILVUS_ADDR=%s: this test stops and starts the server, which it can do only with scripts/milvus.sh", s.external)
	}
	if out, err := s.script(2*time.Minute, how); err != nil {
		t.Fatalf("scripts/milvus.sh %s: %v\n%s", how, err, out)
	}
}

func (s *testServer) start(t testing.TB) {
	t.Helper()
	if out, err := s.script(5*time.Minute, "start"); err != nil {
		t.Fatalf("scripts/milvus.sh start (restart on the same data): %v\n%s", err, out)
	}
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_]+`)

// testOptions returns options for a fresh base name of the test's own.
func testOptions(t testing.TB, dim int) Options {
	addr := server.need(t)
	name := unsafeName.ReplaceAllString(t.Name(), "_")
	if len(name) > 30 {
		name = name[len(name)-30:]
	}
	base := fmt.Sprintf("t_%s_%04x", strings.Trim(name, "_"), rand.IntN(1<<16))
	return Options{
		Address: addr, Collection: base, Dim: dim, ModelVersion: "test@1", Consistency: "Strong",
		StartTimeout: 20 * time.Second, CodeBits: 64, NList: 16, NProbe: 4, Layout: os.Getenv("XMODAL_TEST_MILVUS_LAYOUT"),
	}
}

// openTest opens an index on fresh collections and drops them after the test.
func openTest(t testing.TB, opt Options) *Index {
	t.Helper()
	ix, err := Open(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ix.Close()
		dropBase(t, opt)
	})
	return ix
}

// dropBase drops the alias and every collection under a base name.
func dropBase(t testing.TB, opt Options) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := milvusclient.New(ctx, &milvusclient.ClientConfig{Address: opt.Address})
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	defer c.Close(ctx)
	_ = c.DropAlias(ctx, milvusclient.NewDropAliasOption(opt.Collection))
	names, err := c.ListCollections(ctx, milvusclient.NewListCollectionOption())
	if err != nil {
		t.Logf("cleanup: %v", err)
		return
	}
	for _, n := range names {
		if strings.HasPrefix(n, opt.Collection+"_") {
			if err := c.DropCollection(ctx, milvusclient.NewDropCollectionOption(n)); err != nil {
				t.Logf("cleanup: drop %s: %v", n, err)
			}
		}
	}
}
