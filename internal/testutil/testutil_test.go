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

func TestEnvInt(t *testing.T) {
	const name = "XMODAL_TESTUTIL_ENVINT"
	for _, tc := range []struct {
		value     string
		set       bool
		want      int
		wantFatal bool
	}{
		{set: false, want: 7},
		{value: "100000", set: true, want: 100000},
		{value: "1_000_000", set: true, want: 1000000},
		{value: "0", set: true, want: 0},
		{value: "1e5", set: true, wantFatal: true},
	} {
		if tc.set {
			t.Setenv(name, tc.value)
		} else {
			os.Unsetenv(name)
		}
		r := &recorder{TB: t}
		got := EnvInt(r, name, 7)
		if tc.wantFatal {
			if !strings.Contains(r.fatal, name) {
				t.Errorf("%q: fatal %q, want one naming %s", tc.value, r.fatal, name)
			}
			continue
		}
		if r.fatal != "" || got != tc.want {
			t.Errorf("%q: %d (fatal %q), want %d", tc.value, got, r.fatal, tc.want)
		}
	}
}
