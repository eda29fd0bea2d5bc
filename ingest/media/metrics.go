package media

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	fetches  *prometheus.CounterVec
	bytes    prometheus.Histogram
	latency  *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xmodal_media_fetches_total",
			Help: "Media fetches by outcome: ok, bad_url, refused, too_large, not_image, http_error, http_retryable, timeout, network, tls, canceled.",
		}, []string{"outcome"}),
		bytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "xmodal_media_fetch_bytes",
			Help:    "Size of successfully fetched media bodies.",
			Buckets: prometheus.ExponentialBuckets(1024, 4, 9), // 1 KiB .. 64 MiB
		}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "xmodal_media_fetch_seconds",
			Help:    "Wall time of a media fetch (queueing, retries and backoff included), by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 13),
		}, []string{"outcome"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "xmodal_media_fetches_in_flight",
			Help: "Media fetches holding a concurrency slot.",
		}),
	}
	for _, o := range allOutcomes {
		m.fetches.WithLabelValues(o)
	}
	if reg == nil {
		return m, nil
	}
	// Two fetchers (pipeline and query service) may share one registry:
	// reuse collectors that are already registered.
	var err error
	m.fetches, err = register(reg, m.fetches)
	if err == nil {
		m.bytes, err = register(reg, m.bytes)
	}
	if err == nil {
		m.latency, err = register(reg, m.latency)
	}
	if err == nil {
		m.inFlight, err = register(reg, m.inFlight)
	}
	return m, err
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

func (m *metrics) observe(outcome string, n int, d time.Duration) {
	m.fetches.WithLabelValues(outcome).Inc()
	m.latency.WithLabelValues(outcome).Observe(d.Seconds())
	if outcome == outcomeOK {
		m.bytes.Observe(float64(n))
	}
}
