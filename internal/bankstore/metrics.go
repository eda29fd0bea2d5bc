package bankstore

import (
	"context"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/encoders/neardup"
)

// metrics are the store's Prometheus metrics: bank sizes (a collector read
// at scrape time), lookups and their latency by signal type.
type metrics struct {
	lookups *prometheus.CounterVec
	matches *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

func newMetrics() *metrics {
	return &metrics{
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xmodal_bank_lookups_total",
			Help: "Bank lookups by signal type (pdq, pdq_windows: an image's windows against entries with windows, md5, text, url, embedding) and outcome (match, none, error)."}, []string{"signal_type", "outcome"}),
		matches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xmodal_bank_matches_total",
			Help: "Entries matched by lookups, by bank and signal type."}, []string{"bank", "signal_type"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "xmodal_bank_lookup_seconds",
			Help:    "Latency of one signal type's part of a bank lookup, across every enabled bank (batch: a write batch's lookups at once, MatchAll).",
			Buckets: prometheus.ExponentialBuckets(0.00001, 2, 18)}, []string{"signal_type"}),
	}
}

// Register adds the store's metrics to reg: the lookup counters and
// latencies, and at scrape time xmodal_bank_entries (per bank and signal
// type), xmodal_banks (banks, by enabled) and the follower's position.
func (s *Store) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{s.m.lookups, s.m.matches, s.m.latency, sizeCollector{s}} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

type sizeCollector struct{ s *Store }

var (
	entriesDesc = prometheus.NewDesc("xmodal_bank_entries", "Entries of each bank by signal type (embedding_text: written concepts; embedding_image: exemplars), in this process's copy.",
		[]string{"bank", "signal_type", "enabled"}, nil)
	banksDesc = prometheus.NewDesc("xmodal_banks", "Banks in this process's copy.", nil, nil)
	seqDesc   = prometheus.NewDesc("xmodal_banks_seq", "Stream sequence of the last bank change this process's copy holds.", nil, nil)
	syncFails = prometheus.NewDesc("xmodal_banks_sync_failures_total", "Bank read barriers that failed (lookups failed closed).", nil, nil)
)

func (c sizeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- entriesDesc
	ch <- banksDesc
	ch <- seqDesc
	ch <- syncFails
}

func (c sizeCollector) Collect(ch chan<- prometheus.Metric) {
	bs := c.s.State().Banks()
	for _, b := range bs {
		en := "false"
		if b.Enabled {
			en = "true"
		}
		for t, n := range b.Counts {
			ch <- prometheus.MustNewConstMetric(entriesDesc, prometheus.GaugeValue, float64(n), b.Name, t, en)
		}
	}
	ch <- prometheus.MustNewConstMetric(banksDesc, prometheus.GaugeValue, float64(len(bs)))
	st := c.s.Stats()
	ch <- prometheus.MustNewConstMetric(seqDesc, prometheus.GaugeValue, float64(st.Applied))
	ch <- prometheus.MustNewConstMetric(syncFails, prometheus.CounterValue, float64(st.SyncFailures))
}

// split breaks a query into one per signal type (each timed and counted on
// its own); the text part carries the URLs found in the text.
func split(q banks.Query) []struct {
	t banks.SignalType
	q banks.Query
} {
	var out []struct {
		t banks.SignalType
		q banks.Query
	}
	add := func(t banks.SignalType, p banks.Query) {
		p.Banks = q.Banks
		out = append(out, struct {
			t banks.SignalType
			q banks.Query
		}{t, p})
	}
	if len(q.PDQ) > 0 {
		add(banks.SignalPDQ, banks.Query{PDQ: q.PDQ})
	}
	if q.MD5 != "" {
		add(banks.SignalMD5, banks.Query{MD5: q.MD5})
	}
	if q.Text != "" {
		add(banks.SignalText, banks.Query{Text: q.Text})
	}
	if len(q.URLs) > 0 {
		add(banks.SignalURL, banks.Query{URLs: q.URLs})
	}
	if len(q.Vector) > 0 {
		add(banks.SignalEmbedding, banks.Query{Vector: q.Vector, Modality: q.Modality, ModelVersion: q.ModelVersion})
	}
	return out
}

// Match runs q against the local copy (Sync first to include changes made
// elsewhere just now): every entry of an enabled bank that matches, in
// banks.State.Match's order. Each signal type is timed and counted
// (xmodal_bank_lookup_seconds, xmodal_bank_lookups_total).
func (s *Store) Match(ctx context.Context, q banks.Query) ([]banks.Match, error) {
	st := s.State()
	parts := split(q)
	if len(parts) == 0 {
		// No signal: let the state say so (banks.ErrNoSignal).
		return st.Match(ctx, q)
	}
	if len(parts) == 1 {
		return s.timed(ctx, st, parts[0].t, q)
	}
	// Validate the whole query first, so that a bad part fails it all.
	if err := banks.ValidateQuery(q); err != nil {
		return nil, err
	}
	var all []banks.Match
	for _, p := range parts {
		ms, err := s.timed(ctx, st, p.t, p.q)
		if err != nil {
			return nil, err
		}
		all = append(all, ms...)
	}
	banks.SortMatches(all)
	return dedupe(all), nil
}

// dedupe drops repeats of one entry (a URL entry found both in the text and
// among the URLs).
func dedupe(ms []banks.Match) []banks.Match {
	out := ms[:0]
	for i, m := range ms {
		if i > 0 && m.Bank == ms[i-1].Bank && m.EntryID == ms[i-1].EntryID {
			continue
		}
		out = append(out, m)
	}
	return out
}

// MatchAll runs a batch of queries against the local copy at once
// (banks.State.MatchAll: the embedding entries are scanned once for the
// whole batch); out[i] is what Match(ctx, qs[i]) returns, matches or error.
// Each query's signal types are counted as Match counts them
// (xmodal_bank_lookups_total, xmodal_bank_matches_total); the batch's time
// is observed once under signal_type "batch".
func (s *Store) MatchAll(ctx context.Context, qs []banks.Query) ([]banks.MatchResult, error) {
	start := time.Now()
	res, err := s.State().MatchAll(ctx, qs)
	s.m.latency.WithLabelValues("batch").Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, err
	}
	for i, q := range qs {
		for _, p := range split(q) {
			outcome := "none"
			switch {
			case res[i].Err != nil:
				outcome = "error"
			case slices.ContainsFunc(res[i].Matches, func(m banks.Match) bool { return partOf(m, p.t) }):
				outcome = "match"
			}
			s.m.lookups.WithLabelValues(string(p.t), outcome).Inc()
		}
		for _, m := range res[i].Matches {
			s.m.matches.WithLabelValues(m.Bank, string(m.SignalType)).Inc()
		}
	}
	return res, nil
}

// MatchWindows matches an image query's windows against the local copy's
// entries with windows (banks.State.MatchWindows), timed under signal type
// "pdq_windows" and counted as a pdq lookup's matches are.
func (s *Store) MatchWindows(ctx context.Context, q *neardup.Query) ([]banks.RegionMatch, error) {
	start := time.Now()
	ms, err := s.State().MatchWindows(ctx, q, nil)
	plain := make([]banks.Match, len(ms))
	for i, m := range ms {
		plain[i] = m.Match
	}
	s.observe("pdq_windows", start, plain, err)
	return ms, err
}

// partOf reports whether m was found by a query's part of signal type t
// (split: the text part finds text entries and the URLs in the text; the
// URL part finds URL entries).
func partOf(m banks.Match, t banks.SignalType) bool {
	switch t {
	case banks.SignalText:
		return m.SignalType == banks.SignalText || m.SignalType == banks.SignalURL
	default:
		return m.SignalType == t
	}
}

func (s *Store) timed(ctx context.Context, st *banks.State, t banks.SignalType, q banks.Query) ([]banks.Match, error) {
	start := time.Now()
	ms, err := st.Match(ctx, q)
	s.observe(string(t), start, ms, err)
	return ms, err
}

// observe records one lookup of signal type t that began at start: its
// latency, its outcome (match, none, error) and the entries it matched.
func (s *Store) observe(t string, start time.Time, ms []banks.Match, err error) {
	s.m.latency.WithLabelValues(t).Observe(time.Since(start).Seconds())
	outcome := "none"
	switch {
	case err != nil:
		outcome = "error"
	case len(ms) > 0:
		outcome = "match"
	}
	s.m.lookups.WithLabelValues(t, outcome).Inc()
	for _, m := range ms {
		s.m.matches.WithLabelValues(m.Bank, string(m.SignalType)).Inc()
	}
}
