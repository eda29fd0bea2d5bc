package query_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/xmodal/xmodal/ingest/media"
	"github.com/xmodal/xmodal/query"
)

// TestMicroStatsTimeWholeRequests: `nats micro stats xmodal` reports the time
// a request took from arrival to reply (issue #19: it reported microseconds
// for searches of hundreds of milliseconds, because the handler returned
// before the work finished), counts errors, and requests still run
// concurrently.
func TestMicroStatsTimeWholeRequests(t *testing.T) {
	const delay = 300 * time.Millisecond
	const n = 4
	var inFlight, most atomic.Int32
	var img []byte
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := most.Load()
			if c <= m || most.CompareAndSwap(m, c) {
				break
			}
		}
		time.Sleep(delay)
		w.Header().Set("Content-Type", "image/jpeg")
		w.Write(img)
	}))
	defer slow.Close()
	f, err := media.New(media.Config{AllowPrivate: []string{"127.0.0.0/8"}, Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	s := newStack(t, query.Config{Concurrency: 8, Timeout: 30 * time.Second}, f)
	for _, b := range s.imgs {
		img = b
		break
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var res query.SearchResponse
			errs <- s.cl.Raw(context.Background(), "search", []byte(`{"image_url":"`+slow.URL+`/`+string(rune('a'+i))+`.jpg","k":3}`), &res)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if most.Load() < 2 {
		t.Errorf("at most %d searches fetched at once: requests no longer run concurrently", most.Load())
	}
	if err := s.cl.Raw(context.Background(), "search", []byte(`{"k":3}`), nil); err == nil {
		t.Fatal("a search without a query succeeded")
	}

	msg, err := s.nc.Request("$SRV.STATS.xmodal", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var st micro.Stats
	if err := json.Unmarshal(msg.Data, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type != micro.StatsResponseType || st.Name != "xmodal" || st.ID == "" {
		t.Fatalf("stats reply %+v", st)
	}
	var search *micro.EndpointStats
	for _, e := range st.Endpoints {
		if e.Name == "search" {
			search = e
		}
	}
	if search == nil {
		t.Fatalf("no search endpoint in %s", msg.Data)
	}
	t.Logf("search: %d requests, %d errors, average %v, last error %q", search.NumRequests, search.NumErrors, search.AverageProcessingTime, search.LastError)
	if search.NumRequests != n+1 || search.NumErrors != 1 || search.Subject != "xmodal.v1.search" || search.QueueGroup != "q" {
		t.Errorf("search stats %+v, want %d requests, 1 error", search, n+1)
	}
	// Each of the n image searches waited for the slow server: the total is
	// at least n delays, however fast the rest was.
	if search.ProcessingTime < n*delay {
		t.Errorf("processing time %v for %d searches that each waited %v for their image", search.ProcessingTime, n, delay)
	}
	if search.LastError == "" {
		t.Error("the failed search left no last_error")
	}

	// Discovery: ping and info answer as micro's do.
	msg, err = s.nc.Request("$SRV.INFO.xmodal", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info micro.Info
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		t.Fatal(err)
	}
	subjects := map[string]bool{}
	for _, e := range info.Endpoints {
		subjects[e.Subject] = true
	}
	for _, want := range []string{"xmodal.v1.search", "xmodal.v1.get", "xmodal.v1.stats", "xmodal.v1.neardup", "xmodal.v1.admin.delete"} {
		if !subjects[want] {
			t.Errorf("info lacks endpoint %s: %s", want, msg.Data)
		}
	}
	msg, err = s.nc.Request("$SRV.PING", nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var ping micro.Ping
	if err := json.Unmarshal(msg.Data, &ping); err != nil || ping.Type != micro.PingResponseType || ping.ID != st.ID {
		t.Errorf("ping %s (%v)", msg.Data, err)
	}
}
