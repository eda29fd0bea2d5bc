package main

import (
	"os"
	"testing"

	"github.com/xmodal/xmodal/internal/testutil"
)

// TestMain lets tests run the binary's main by re-executing the test binary with
// XMODAL_TEST_MAIN=1, so that crash tests can kill a real process.
func TestMain(m *testing.M) {
	if os.Getenv("XMODAL_TEST_MAIN") == "1" {
		os.Args = append([]string{"xmodal"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	code := m.Run()
	milvusServer.Stop()
	os.Exit(code)
}

// milvusServer is the real Milvus of this package's tests that need one
// (testutil.MilvusServer; sink/milvus's tests run their own on other ports).
var milvusServer = &testutil.MilvusServer{Base: 21200}

// requireCrashBuild fails a test that kills the process at crash points when
// the test binary was built without them.
func requireCrashBuild(t *testing.T) {
	t.Helper()
	if !crashTestBuild {
		t.Fatal("this test needs crash points: run it with -tags crashtest (scripts/test.sh does)")
	}
}
