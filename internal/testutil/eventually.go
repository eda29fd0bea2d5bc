package testutil

import "time"

// Eventually calls f until it returns nil, and fails the test with f's last
// error when timeout passes first (nats.go's checkFor style): the message says
// what did not happen, not only that something timed out. f is polled every
// 10 ms at first, backing off to once a second.
func Eventually(t TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 10 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return
		}
		if !time.Now().Before(deadline) {
			t.Fatalf("not within %v: %v", timeout, err)
			return
		}
		time.Sleep(min(wait, time.Until(deadline)+time.Millisecond))
		wait = min(2*wait, time.Second)
	}
}
