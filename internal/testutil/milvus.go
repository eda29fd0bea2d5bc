package testutil

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// MilvusServer is a test package's real Milvus standalone, started with
// scripts/milvus.sh on ports of its own (so that it does not collide with a
// developer's Milvus on 19530, or with another package's test server),
// shared by the package's tests and stopped after them (Stop, from
// TestMain) when the tests started it.
//
// Base picks the ports: the server's gRPC port is Base + 12·(hash of the
// checkout's path mod 100), so that test runs of two checkouts on one
// machine do not share a server, and it uses that port and the next
// eleven. XMODAL_TEST_MILVUS_PORT moves every package's server to that
// port. XMODAL_TEST_MILVUS_ADDR=host:port runs the tests against a Milvus
// that is already running (another version, a cluster) instead.
type MilvusServer struct {
	Base int

	once     sync.Once
	err      error
	root     string
	port     int
	external string
	started  bool // by these tests (so they stop it and remove its data)
}

// Addr is the server's gRPC address (after Need).
func (s *MilvusServer) Addr() string {
	if s.external != "" {
		return s.external
	}
	return "127.0.0.1:" + strconv.Itoa(s.port)
}

// External reports whether the tests run against XMODAL_TEST_MILVUS_ADDR.
func (s *MilvusServer) External() bool { return s.external != "" }

// DataDir is where the started server keeps its data ("" when it is not
// known: an external server, or before Need).
func (s *MilvusServer) DataDir() string {
	if s.root == "" {
		return ""
	}
	return filepath.Join(s.root, ".cache", "milvus", "test-data-"+strconv.Itoa(s.port))
}

// Script runs scripts/milvus.sh with args on the server's ports and data.
func (s *MilvusServer) Script(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(s.root, "scripts", "milvus.sh")}, args...)...)
	cmd.Env = append(os.Environ(), "MILVUS_PORT="+strconv.Itoa(s.port), "MILVUS_DATA="+s.DataDir())
	cmd.Dir = s.root
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Need returns the server's address, starting it on first use. A server
// that cannot start ends the test through Unavailable (a failure under
// CI=true).
func (s *MilvusServer) Need(t TB) string {
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
		if s.root, s.err = RepoRoot(); s.err != nil {
			return
		}
		if s.port == 0 {
			h := fnv.New32a()
			h.Write([]byte(s.root))
			s.port = s.Base + 12*int(h.Sum32()%100)
		}
		// A server that a test run started carries this mark, so that one left behind
		// by a crashed run is stopped by the next; one started by hand is left running.
		mark := filepath.Join(s.DataDir(), "started-by-go-test")
		if _, err := s.Script(30*time.Second, "status"); err == nil {
			_, err := os.Stat(mark)
			s.started = err == nil
			return
		}
		os.RemoveAll(s.DataDir())
		out, err := s.Script(10*time.Minute, "start")
		if err != nil {
			s.err = fmt.Errorf("%v\n%s", err, out)
			return
		}
		s.started = true
		os.WriteFile(mark, nil, 0o644)
	})
	if s.err != nil {
		Unavailable(t, "Milvus", "`scripts/milvus.sh start` (MILVUS_PORT=%d) failed; it needs python3 with venv and pip, and PyPI (or a cached .cache/milvus): %v",
			s.port, s.err)
	}
	return s.Addr()
}

// Stop stops the server and removes its data when these tests started it
// (call it from TestMain after the tests).
func (s *MilvusServer) Stop() {
	if !s.started {
		return
	}
	if out, err := s.Script(2*time.Minute, "stop"); err != nil {
		fmt.Fprintf(os.Stderr, "stopping the test Milvus: %v\n%s", err, out)
	}
	os.RemoveAll(s.DataDir())
}
