package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

func TestEventuallyReportsTheLastError(t *testing.T) {
	calls := 0
	r := &recorder{TB: t}
	Eventually(r, 50*time.Millisecond, func() error {
		calls++
		return fmt.Errorf("attempt %d: not yet", calls)
	})
	if calls < 2 || !strings.Contains(r.fatal, fmt.Sprintf("attempt %d: not yet", calls)) {
		t.Fatalf("after %d calls the failure says %q; want the last error", calls, r.fatal)
	}
	r = &recorder{TB: t}
	n := 0
	Eventually(r, 5*time.Second, func() error {
		if n++; n < 3 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	if r.fatal != "" || n != 3 {
		t.Fatalf("a condition met on the third call: %d calls, failure %q", n, r.fatal)
	}
}

func TestMustRepoRoot(t *testing.T) {
	root := MustRepoRoot(t)
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatal(err)
	}
}
