package media

import (
	"errors"
	"fmt"
	"time"
)

// Error is the error returned by [Fetcher.Fetch] for every failure.
//
// Reason is a short human-readable cause, for example
// "address 10.0.0.1 is private", "body over 8388608 bytes",
// "content type text/html; charset=utf-8 is not an image" or "HTTP 404".
// Temporary reports whether the same fetch may succeed later (network
// errors, timeouts, HTTP 429 and 5xx); refused addresses and URLs, 4xx
// statuses, oversized bodies and non-images are permanent.
// Errors caused by the caller's context unwrap to its cause, so
// errors.Is(err, context.Canceled) works.
type Error struct {
	URL       string
	Reason    string
	Temporary bool

	kind       string        // metric outcome
	retry      bool          // Fetch may retry it itself
	retryAfter time.Duration // server's Retry-After hint
	err        error         // cause, for Unwrap
}

func (e *Error) Error() string {
	u := e.URL
	if len(u) > 200 {
		u = u[:200] + "..."
	}
	return fmt.Sprintf("media: fetch %q: %s", u, e.Reason)
}

// Unwrap returns the underlying cause, when there is one.
func (e *Error) Unwrap() error { return e.err }

// Outcomes, used as the metric label and by the classification below.
const (
	outcomeOK        = "ok"
	outcomeBadURL    = "bad_url"
	outcomeRefused   = "refused"
	outcomeTooLarge  = "too_large"
	outcomeNotImage  = "not_image"
	outcomeHTTP      = "http_error"
	outcomeHTTPRetry = "http_retryable"
	outcomeTimeout   = "timeout"
	outcomeNetwork   = "network"
	outcomeTLS       = "tls"
	outcomeCanceled  = "canceled"
)

var allOutcomes = []string{outcomeOK, outcomeBadURL, outcomeRefused, outcomeTooLarge, outcomeNotImage,
	outcomeHTTP, outcomeHTTPRetry, outcomeTimeout, outcomeNetwork, outcomeTLS, outcomeCanceled}

var (
	errTotalTimeout = errors.New("media: total timeout")
	errReadTimeout  = errors.New("media: read deadline")
)

func refused(reason string) *Error {
	return &Error{Reason: reason, kind: outcomeRefused}
}
