package workers

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/ingest"
)

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
	// Every known series exists from the start: a dashboard shows 0, not "No data",
	// and rate() has a first sample before the first event.
	for _, o := range []string{"indexed", "partial", "dead_letter", "delete", "denied"} {
		m.messages.WithLabelValues(o)
	}
	for _, s := range []ingest.Stage{ingest.StageDecode, ingest.StageFetch, ingest.StageImage, ingest.StageEncode, ingest.StagePoison} {
		m.dlq.WithLabelValues(string(s))
	}
	for _, o := range []domain.Outcome{domain.Applied, domain.Stale, domain.Denied, domain.Deleted} {
		m.outcomes.WithLabelValues(string(o))
	}
	for _, s := range []string{"fetch", "decode", "encode_text", "encode_image", "sink"} {
		m.stage.WithLabelValues(s)
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
