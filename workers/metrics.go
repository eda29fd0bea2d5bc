package workers

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/ingest"
)

type metrics struct {
	messages    *prometheus.CounterVec
	dlq         *prometheus.CounterVec
	outcomes    *prometheus.CounterVec
	stage       *prometheus.HistogramVec
	batch       prometheus.Histogram
	encodeBatch *prometheus.HistogramVec
	encodeWait  *prometheus.HistogramVec
	sinkErrors  prometheus.Counter
	ackErrors   prometheus.Counter
	gauges      []prometheus.Collector
}

func newMetrics(reg prometheus.Registerer, p *Pipeline) (*metrics, error) {
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
			Name:    "xmodal_stage_seconds",
			Help:    "Time per call of each stage: fetch, decode and preprocess (per image), encode_text and encode_image (per model batch), sink (per write).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 14),
		}, []string{"stage"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "xmodal_batch_messages", Help: "Messages per sink write.", Buckets: prometheus.ExponentialBuckets(1, 2, 9),
		}),
		encodeBatch: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "xmodal_encode_batch_inputs", Help: "Inputs per model call, by modality (dynamic batching).", Buckets: prometheus.ExponentialBuckets(1, 2, 9),
		}, []string{"modality"}),
		encodeWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "xmodal_encode_queue_seconds",
			Help:    "Time an input waits in its modality's queue before its model call starts (the latency batching adds).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14),
		}, []string{"modality"}),
		sinkErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xmodal_sink_errors_total", Help: "Failed sink writes (each is retried).",
		}),
		ackErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xmodal_ack_errors_total", Help: "Acknowledgements the source refused (the message is redelivered; upserts are idempotent).",
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
	for _, s := range []string{"fetch", "decode", "preprocess", "encode_text", "encode_image", "sink"} {
		m.stage.WithLabelValues(s)
	}
	for _, mod := range modName {
		m.encodeBatch.WithLabelValues(mod)
		m.encodeWait.WithLabelValues(mod)
	}
	// Gauges read the running stages.
	gauge := func(name, help string, labels prometheus.Labels, f func(r *run) int) {
		m.gauges = append(m.gauges, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels}, func() float64 {
			if r := p.cur.Load(); r != nil {
				return float64(f(r))
			}
			return 0
		}))
	}
	gauge("xmodal_inflight_messages", "Messages between fetch and acknowledgement (at workers' MaxInFlight, fetching pauses).", nil,
		func(r *run) int { return r.posts() })
	gauge("xmodal_inflight_bytes", "Bytes of the messages between fetch and acknowledgement (at workers' MaxInFlightBytes, fetching pauses).", nil,
		func(r *run) int { return int(r.bytes.Load()) })
	const qhelp = "Items waiting in a pipeline queue: media (fetch/decode), text and image (encoder batchers), write (sink)."
	gauge("xmodal_queue_items", qhelp, prometheus.Labels{"queue": "media"}, func(r *run) int { return len(r.media) })
	gauge("xmodal_queue_items", qhelp, prometheus.Labels{"queue": "text"}, func(r *run) int { return len(r.queue[modText]) })
	gauge("xmodal_queue_items", qhelp, prometheus.Labels{"queue": "image"}, func(r *run) int { return len(r.queue[modImage]) })
	gauge("xmodal_queue_items", qhelp, prometheus.Labels{"queue": "write"}, func(r *run) int { return len(r.ready) })
	if reg != nil {
		cs := []prometheus.Collector{m.messages, m.dlq, m.outcomes, m.stage, m.batch, m.encodeBatch, m.encodeWait, m.sinkErrors, m.ackErrors}
		for _, c := range append(cs, m.gauges...) {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
