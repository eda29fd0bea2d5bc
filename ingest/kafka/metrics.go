package kafka

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	fetched      *prometheus.CounterVec
	committed    *prometheus.GaugeVec
	lag          *prometheus.GaugeVec
	commitTime   prometheus.Histogram
	commitErrors prometheus.Counter
	generations  prometheus.Counter
	groupErrors  prometheus.Counter
	deadLetters  *prometheus.CounterVec
	historyTime  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		fetched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xmodal_kafka_fetched_total", Help: "Messages handed out by the Kafka source (redeliveries included).",
		}, []string{"topic"}),
		committed: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "xmodal_kafka_committed_offset", Help: "Last offset committed by this member, per owned partition (the next offset to read).",
		}, []string{"topic", "partition"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "xmodal_kafka_lag", Help: "High-water mark minus committed offset, per owned partition.",
		}, []string{"topic", "partition"}),
		commitTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "xmodal_kafka_commit_seconds", Help: "Latency of one offset commit to the group coordinator.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xmodal_kafka_commit_errors_total", Help: "Failed offset commits (retried on the next interval).",
		}),
		generations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xmodal_kafka_generations_total", Help: "Consumer-group generations joined (each is a rebalance).",
		}),
		groupErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "xmodal_kafka_group_errors_total", Help: "Failed attempts to join or sync the consumer group.",
		}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xmodal_kafka_dead_letters_total", Help: "Dead letters written to the DLQ topic, by stage.",
		}, []string{"stage"}),
		historyTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "xmodal_kafka_attempts_write_seconds", Help: "Latency of recording a fetched batch in the attempts table before it is handed out.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.fetched, m.committed, m.lag, m.commitTime, m.commitErrors,
			m.generations, m.groupErrors, m.deadLetters, m.historyTime} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
