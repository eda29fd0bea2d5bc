package milvus

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/milvus-io/milvus/client/v2/milvusclient"

	"github.com/xmodal/xmodal/internal/testutil"
)

// The test server: a real Milvus standalone started with scripts/milvus.sh
// (internal/testutil.MilvusServer) on ports of its own (20000 + 12·(hash of
// the checkout's path mod 100) and the next eleven), shared by the package's
// tests and stopped after them when the tests started it.
// XMODAL_TEST_MILVUS_PORT moves it; XMODAL_TEST_MILVUS_ADDR=host:port runs
// the tests against a Milvus that is already running (another version, a
// cluster) instead, and the tests that restart the server then skip.
// XMODAL_TEST_MILVUS_LAYOUT forces a layout (single, split).
type testServer struct{ testutil.MilvusServer }

var server = &testServer{testutil.MilvusServer{Base: 20000}}

func TestMain(m *testing.M) {
	code := m.Run()
	server.Stop()
	os.Exit(code)
}

func (s *testServer) need(t testing.TB) string { return s.Need(t) }

// restart stops the server with the signal ("stop": TERM, "kill": KILL) and starts
// it again on the same data.
func (s *testServer) halt(t testing.TB, how string) {
	t.Helper()
	if s.External() {
		t.Skipf("XMODAL_TEST_MILVUS_ADDR=%s: this test stops and starts the server, which it can do only with scripts/milvus.sh", s.Addr())
	}
	if out, err := s.Script(2*time.Minute, how); err != nil {
		t.Fatalf("scripts/milvus.sh %s: %v\n%s", how, err, out)
	}
}

func (s *testServer) start(t testing.TB) {
	t.Helper()
	if out, err := s.Script(5*time.Minute, "start"); err != nil {
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
