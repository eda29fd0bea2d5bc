package main

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xmodal/xmodal/domain"
)

// indexRecordsCollector exports xmodal_index_records{modality}: the records
// the index holds per modality, as Count reports them (xmodal.v1.stats
// answers the same). A count is at most countTTL old: counting Milvus is a
// query, and scrapes are frequent.
type indexRecordsCollector struct {
	ix   domain.Searcher
	desc *prometheus.Desc

	mu  sync.Mutex
	at  time.Time
	n   map[domain.Modality]int
	err error
}

const countTTL = 10 * time.Second

func newIndexRecordsCollector(ix domain.Searcher) *indexRecordsCollector {
	return &indexRecordsCollector{ix: ix, desc: prometheus.NewDesc("xmodal_index_records",
		"Records in the index by modality (image, text, fused); refreshed at most every 10s.", []string{"modality"}, nil)}
}

func (c *indexRecordsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *indexRecordsCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	if time.Since(c.at) > countTTL || c.n == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		n, err := c.ix.Count(ctx)
		cancel()
		c.at, c.err = time.Now(), err
		if err == nil {
			c.n = n
		}
	}
	n, err := c.n, c.err
	c.mu.Unlock()
	if n == nil {
		ch <- prometheus.NewInvalidMetric(c.desc, err)
		return
	}
	for _, m := range domain.Modalities {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n[m]), string(m))
	}
}

// windowImages is an index that keeps its images' near-duplicate windows in
// memory (the embedded index; Milvus with the shared windows).
type windowImages interface{ WindowImages() int }

// newWindowImagesGauge reports how many images' windows the index's
// window tables hold (nil when the index keeps none).
func newWindowImagesGauge(ix any) prometheus.Collector {
	w, ok := ix.(windowImages)
	if !ok {
		return nil
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "xmodal_neardup_window_images",
		Help: "Images whose near-duplicate windows this process's window tables hold (image.neardup_windows; 0 on an indexer, which builds none)."},
		func() float64 { return float64(w.WindowImages()) })
}
