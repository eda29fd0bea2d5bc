package testutil

import (
	"fmt"
	"strings"
	"testing"
)

// recorder is a testing.TB that records how a helper ended the test.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
}
func (r *recorder) Skipf(format string, args ...any) {
	r.skip = fmt.Sprintf(format, args...)
}

func TestUnavailable(t *testing.T) {
	for _, tc := range []struct {
		ci        string
		wantFatal bool
	}{
		{"true", true}, {"1", true}, {"TRUE", true},
		{"", false}, {"false", false}, {"0", false}, {"yes-please", false},
	} {
		t.Run("CI="+tc.ci, func(t *testing.T) {
			t.Setenv(EnvCI, tc.ci)
			r := &recorder{TB: t}
			Unavailable(r, "redis-server", "not on PATH (apt-get install -y %s)", "redis-server")
			got := r.skip
			if tc.wantFatal {
				got = r.fatal
			}
			if got == "" || (r.fatal != "" && r.skip != "") {
				t.Fatalf("fatal %q, skip %q; want only the %s", r.fatal, r.skip, map[bool]string{true: "failure", false: "skip"}[tc.wantFatal])
			}
			if !strings.HasPrefix(got, "redis-server unavailable: not on PATH (apt-get install -y redis-server)") {
				t.Errorf("message %q does not name the service and the cause", got)
			}
		})
	}
}
