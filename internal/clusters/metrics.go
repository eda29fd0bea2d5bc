package clusters

import "github.com/prometheus/client_golang/prometheus"

// Collector exports a store's statistics: xmodal_cluster_members,
// xmodal_clusters{kind="all"|"multi"}, xmodal_cluster_largest_size,
// xmodal_cluster_merges_total and xmodal_cluster_splits_total.
type Collector struct {
	s                                   interface{ Stats() Stats }
	members, clusters, largest, mg, spl *prometheus.Desc
}

// NewCollector returns the collector of s (a Store, or anything that
// reports a store's statistics).
func NewCollector(s interface{ Stats() Stats }) *Collector {
	return &Collector{s: s,
		members:  prometheus.NewDesc("xmodal_cluster_members", "Image posts in a near-duplicate cluster (every clustered post, singletons included).", nil, nil),
		clusters: prometheus.NewDesc("xmodal_clusters", "Near-duplicate clusters: all, or multi (two or more members).", []string{"kind"}, nil),
		largest:  prometheus.NewDesc("xmodal_cluster_largest_size", "Members of the largest cluster.", nil, nil),
		mg:       prometheus.NewDesc("xmodal_cluster_merges_total", "Clusters merged into another at ingest since start.", nil, nil),
		spl:      prometheus.NewDesc("xmodal_cluster_splits_total", "Clusters split off by takedowns since start.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.members, c.clusters, c.largest, c.mg, c.spl} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, float64(st.Members))
	ch <- prometheus.MustNewConstMetric(c.clusters, prometheus.GaugeValue, float64(st.Clusters), "all")
	ch <- prometheus.MustNewConstMetric(c.clusters, prometheus.GaugeValue, float64(st.Multi), "multi")
	ch <- prometheus.MustNewConstMetric(c.largest, prometheus.GaugeValue, float64(st.Largest))
	ch <- prometheus.MustNewConstMetric(c.mg, prometheus.CounterValue, float64(st.Merges))
	ch <- prometheus.MustNewConstMetric(c.spl, prometheus.CounterValue, float64(st.Splits))
}
