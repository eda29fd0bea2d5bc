package testutil

import "github.com/xmodal/xmodal/internal/redisserver"

// StartRedis starts Debian's redis-server for a test (in t.TempDir() unless
// opt.Dir is set) and stops it at cleanup; a missing redis-server ends the
// test through Unavailable, naming it (a failure under CI=true).
func StartRedis(t T, opt redisserver.Options) *redisserver.Server {
	t.Helper()
	if opt.Dir == "" {
		opt.Dir = t.TempDir()
	}
	s, err := redisserver.Start(opt)
	if err != nil {
		Unavailable(t, "redis-server", "%v (scripts/deps.sh installs it: apt-get install -y redis-server)", err)
	}
	t.Cleanup(s.Close)
	return s
}
