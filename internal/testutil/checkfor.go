package testutil

import "time"

// CheckFor calls f every sleep until it returns nil or total has passed; then
// it fails the test with f's last error (nats.go's checkFor).
func CheckFor(t TB, total, sleep time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(total)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", total, err)
			return
		}
		time.Sleep(sleep)
	}
}
