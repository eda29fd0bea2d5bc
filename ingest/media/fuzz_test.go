package media

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// FuzzFetchURL feeds arbitrary URLs to a fetcher with no allow-list whose
// resolver answers every name with non-public addresses (and one public
// name). Properties: no panic, every error is a *Error, and no address that
// is not public ever reaches the dialer. The dial hook also refuses every
// dial, so nothing leaves the machine, not even to a public address.
func FuzzFetchURL(f *testing.F) {
	for _, s := range []string{
		"http://127.0.0.1/", "http://[::1]:80/", "https://10.0.0.1/x", "http://169.254.169.254/latest/meta-data/",
		"http://[::ffff:169.254.169.254]/", "http://[64:ff9b::a9fe:a9fe]/", "http://0/", "http://0x7f000001/",
		"http://2130706433/", "http://017700000001/", "http://127.1/", "http://evil.test/", "http://public.test/img.png",
		"http://[fe80::1%25eth0]/", "http://user@evil.test/", "HTTP://EVIL.TEST/", "http://evil.test./",
		"http://evil.test:99999/", "http://[::]/", "file:///etc/passwd", "gopher://x/", "//evil.test/", "http:evil.test",
		"http://\u0661\u0662\u0667.0.0.1/", "http://%31%32%37.0.0.1/", "http://8.8.8.8/", "http://a.b.c.d.e.f/",
	} {
		f.Add(s)
	}
	dns := startDNS(f, map[string][]string{
		"*":           {"10.0.0.1", "127.0.0.1", "169.254.169.254", "::1", "fd00::1", "::ffff:192.168.1.1", "100.64.0.1"},
		"public.test": {"93.184.216.34"},
	})
	f.Fuzz(func(t *testing.T, rawURL string) {
		var mu sync.Mutex
		var bad []string
		fe, err := New(Config{
			Retries: -1, MaxRedirects: -1,
			ConnectTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, TotalTimeout: 500 * time.Millisecond,
			Resolver: dns.resolver(), Logger: discardLogger(),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer fe.Close()
		fe.dialHook = func(_, address string) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || nonPublic(ap.Addr()) != "" {
				mu.Lock()
				bad = append(bad, address)
				mu.Unlock()
			}
			return fmt.Errorf("fuzz: no dialling")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		b, err := fe.Fetch(ctx, rawURL)
		if err == nil {
			t.Fatalf("fetched %d bytes from %q with every dial refused", len(b), rawURL)
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("error %v (%T) is not a *Error", err, err)
		}
		if len(bad) > 0 {
			t.Fatalf("%q reached the dialer with non-public addresses %v", rawURL, bad)
		}
	})
}
