package workers

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	messages   *prometheus.CounterVec
	dlq        *prometheus.CounterVec
	outcomes   *prometheus.CounterVec
	stage      *prometheus.HistogramVec
	batch      prometheus.Histogram
	sinkErrors prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xmodal_ingest_messages_total", Help: "Messages processed by outcome: indexed, partial, dead_letter, delete, denied.",
		}, []string{"outcome"}),
		dlq: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xmodal_dead_letters_total", Help: "Dead letters written, by failing stage.",
		}, []string{"stage"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xmodal_sink_changes_total", Help: "Post changes applied by the sink, by outcome: applied, stale, denied, deleted.",
		}, []string{"outcome"}),
		stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "xmodal_stage_seconds", Help: "Time per batch call of each stage: fetch, decode, encode_text, encode_image, sink.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 14),
		}, []string{"stage"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "xmodal_batch_messages", Help: "Messages per processed batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 9),
		}),
		sinkErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xmodal_sink_errors_total", Help: "Failed sink writes (each is retried).",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.messages, m.dlq, m.outcomes, m.stage, m.batch, m.sinkErrors} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
