package testutil

import (
	"testing"

	"github.com/xmodal/xmodal/internal/redisserver"
)

// StartRedis starts Debian's redis-server for a test (in t.TempDir() unless
// opt.Dir is set) and stops it at cleanup; a missing redis-server fails the
// test, naming it.
func StartRedis(t testing.TB, opt redisserver.Options) *redisserver.Server {
	t.Helper()
	if opt.Dir == "" {
		opt.Dir = t.TempDir()
	}
	s, err := redisserver.Start(opt)
	if err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}
