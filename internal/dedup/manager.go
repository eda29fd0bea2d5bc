package dedup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xmodal/xmodal/internal/hamming"
)

// Source is the index a job reads.
type Source interface {
	// DedupItems lists the image posts created in [since, until) (zero:
	// unbounded) whose hashes may link, in a deterministic order.
	DedupItems(ctx context.Context, since, until time.Time) ([]Item, error)
	// Thumbnails returns the posts' thumbnails (JPEG) that exist.
	Thumbnails(ctx context.Context, posts []string) (map[string][]byte, error)
	// ClusterPartition returns the incremental clusters (post id ->
	// cluster) and their threshold; ok false when the index keeps none.
	ClusterPartition() (part map[string]uint64, threshold int, ok bool)
}

// Request starts (or resumes) a job.
type Request struct {
	Threshold int       `json:"threshold"`
	Since     time.Time `json:"since,omitzero"`
	Until     time.Time `json:"until,omitzero"`
	// MaxMemoryMB bounds the search index's memory (0: unbounded).
	MaxMemoryMB int `json:"max_memory_mb,omitempty"`
	// MinSize is the smallest cluster written (default 2).
	MinSize int `json:"min_size,omitempty"`
	// Resume names a job to resume from its checkpoint (its request is reused).
	Resume string `json:"resume,omitempty"`
	// Rebuild: when the job covers the whole index at the incremental
	// clusters' threshold and finds drift, rebuild the incremental clusters
	// (the source must be a Rebuilder).
	Rebuild bool `json:"rebuild,omitempty"`
}

// Rebuilder rebuilds a source's incremental clusters.
type Rebuilder interface {
	RebuildClusters(ctx context.Context) (int, error)
}

// Job states.
const (
	StateRunning  = "running"
	StateDone     = "done"
	StateFailed   = "failed"
	StateCanceled = "canceled"
)

// Status is a job's state and progress.
type Status struct {
	ID       string    `json:"id"`
	State    string    `json:"state"`
	Phase    string    `json:"phase,omitempty"` // reading, searching, writing
	Done     int64     `json:"done"`            // searches done
	Total    int64     `json:"total"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	Error    string    `json:"error,omitempty"`
	// Dir holds the outputs on the server: clusters.jsonl, summary.json, report.html.
	Dir     string   `json:"dir"`
	Request Request  `json:"request"`
	Summary *Summary `json:"summary,omitempty"`
}

// Errors of the manager.
var (
	ErrBusy       = errors.New("dedup: a job is running")
	ErrUnknownJob = errors.New("dedup: no such job")
	ErrBadRequest = errors.New("dedup: bad request")
)

// Manager runs one job at a time inside the serving process, in the
// background; clients start it and follow its Status.
type Manager struct {
	src Source
	dir string
	log *slog.Logger

	mu      sync.Mutex
	jobs    map[string]*job
	running *job
	wg      sync.WaitGroup

	progress prometheus.Gauge
	finished *prometheus.CounterVec
}

type job struct {
	st     Status
	cancel context.CancelFunc
}

// NewManager returns a manager writing job folders under dir.
func NewManager(src Source, dir string, log *slog.Logger, reg prometheus.Registerer) (*Manager, error) {
	if log == nil {
		log = slog.Default()
	}
	m := &Manager{src: src, dir: dir, log: log, jobs: map[string]*job{},
		progress: prometheus.NewGauge(prometheus.GaugeOpts{Name: "xmodal_dedup_progress_ratio",
			Help: "Progress of the running dedup job (searches done / total; 1 when none runs)."}),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xmodal_dedup_jobs_total",
			Help: "Dedup jobs finished, by state (done, failed, canceled)."}, []string{"state"}),
	}
	m.progress.Set(1)
	// Every final state is exported from the start (at 0), so that a
	// dashboard's increase() sees the first job finish.
	for _, st := range []string{StateDone, StateFailed, StateCanceled} {
		m.finished.WithLabelValues(st)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.progress, m.finished} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

var jobID = regexp.MustCompile(`^dedup-[0-9A-Za-z-]{1,64}$`)

// Start starts a job (or resumes one after a crash) and returns its status.
func (m *Manager) Start(req Request) (Status, error) {
	id := req.Resume
	if id != "" {
		if !jobID.MatchString(id) {
			return Status{}, fmt.Errorf("%w: job id %q", ErrBadRequest, id)
		}
		b, err := os.ReadFile(filepath.Join(m.dir, id, "request.json"))
		if err != nil {
			return Status{}, fmt.Errorf("%w: %s (%v)", ErrUnknownJob, id, err)
		}
		if err := json.Unmarshal(b, &req); err != nil {
			return Status{}, fmt.Errorf("dedup: %s/request.json: %w", id, err)
		}
		req.Resume = id
	}
	if req.Threshold < 0 || req.Threshold > hamming.Bits {
		return Status{}, fmt.Errorf("%w: threshold %d is outside 0..%d", ErrBadRequest, req.Threshold, hamming.Bits)
	}
	if req.MaxMemoryMB < 0 || req.MinSize < 0 {
		return Status{}, fmt.Errorf("%w: max_memory_mb and min_size must not be negative", ErrBadRequest)
	}
	if !req.Since.IsZero() && !req.Until.IsZero() && !req.Since.Before(req.Until) {
		return Status{}, fmt.Errorf("%w: since must be before until", ErrBadRequest)
	}
	if req.MinSize == 0 {
		req.MinSize = 2
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.running != nil {
		return Status{}, fmt.Errorf("%w (%s)", ErrBusy, m.running.st.ID)
	}
	if id == "" {
		var b [3]byte
		_, _ = rand.Read(b[:])
		id = "dedup-" + time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
	}
	dir := filepath.Join(m.dir, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Status{}, err
	}
	if req.Resume == "" {
		b, _ := json.MarshalIndent(req, "", "  ")
		if err := os.WriteFile(filepath.Join(dir, "request.json"), b, 0o644); err != nil {
			return Status{}, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	j := &job{st: Status{ID: id, State: StateRunning, Phase: "reading", Started: time.Now().UTC(), Dir: dir, Request: req}, cancel: cancel}
	m.jobs[id], m.running = j, j
	m.progress.Set(0)
	m.wg.Add(1)
	go m.run(ctx, j)
	return j.st, nil
}

// Status returns a job's status.
func (m *Manager) Status(id string) (Status, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok {
		// A job of an earlier process: its final status, if it finished.
		if jobID.MatchString(id) {
			if b, err := os.ReadFile(filepath.Join(m.dir, id, "status.json")); err == nil {
				var st Status
				if json.Unmarshal(b, &st) == nil {
					return st, nil
				}
			}
		}
		return Status{}, fmt.Errorf("%w: %s", ErrUnknownJob, id)
	}
	return j.st, nil
}

// Cancel stops a running job (its checkpoint stays: it can be resumed).
func (m *Manager) Cancel(id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownJob, id)
	}
	j.cancel()
	return nil
}

// Close cancels the running job and waits for it.
func (m *Manager) Close() {
	m.mu.Lock()
	if m.running != nil {
		m.running.cancel()
	}
	m.mu.Unlock()
	m.wg.Wait()
}

func (m *Manager) update(j *job, f func(*Status)) {
	m.mu.Lock()
	f(&j.st)
	m.mu.Unlock()
}

func (m *Manager) run(ctx context.Context, j *job) {
	defer m.wg.Done()
	start := time.Now()
	sum, err := m.execute(ctx, j)
	m.mu.Lock()
	j.st.Finished = time.Now().UTC()
	switch {
	case err == nil:
		j.st.State, j.st.Summary = StateDone, sum
	case errors.Is(err, context.Canceled):
		j.st.State, j.st.Error = StateCanceled, "canceled (resume it with its id)"
	default:
		j.st.State, j.st.Error = StateFailed, err.Error()
	}
	j.st.Phase = ""
	st := j.st
	m.running = nil
	m.mu.Unlock()
	j.cancel()
	m.progress.Set(1)
	m.finished.WithLabelValues(st.State).Inc()
	if b, err := json.MarshalIndent(st, "", "  "); err == nil {
		_ = os.WriteFile(filepath.Join(st.Dir, "status.json"), b, 0o644)
	}
	m.log.Info("dedup job finished", "id", st.ID, "state", st.State, "err", st.Error, "took", time.Since(start).Round(time.Millisecond))
}

func (m *Manager) execute(ctx context.Context, j *job) (*Summary, error) {
	req, dir := j.st.Request, j.st.Dir
	start := time.Now()
	items, err := m.src.DedupItems(ctx, req.Since, req.Until)
	if err != nil {
		return nil, err
	}
	opt := Options{Threshold: req.Threshold, MaxIndexBytes: int64(req.MaxMemoryMB) << 20, Checkpoint: filepath.Join(dir, "checkpoint"),
		Progress: func(done, total int64) {
			m.update(j, func(s *Status) { s.Done, s.Total = done, total })
			if total > 0 {
				m.progress.Set(float64(done) / float64(total))
			}
		}}
	if ws, ok := m.src.(WindowSource); ok {
		opt.Windows = ws.DedupWindowLinker()
	}
	total := opt.TotalSearchesOf(items)
	m.update(j, func(s *Status) { s.Phase, s.Total = "searching", total })
	m.log.Info("dedup job started", "id", j.st.ID, "posts", len(items), "threshold", req.Threshold, "searches", total, "resume", req.Resume != "")
	uf, err := Components(ctx, items, opt)
	if err != nil {
		return nil, err
	}
	m.update(j, func(s *Status) { s.Phase, s.Done = "writing", total })
	cs := Group(items, uf, req.MinSize)
	sum := &Summary{Threshold: req.Threshold, Since: req.Since, Until: req.Until, Posts: len(items), Searches: total,
		IndexBytes: opt.MaxIndexBytes, Drift: -1}
	sum.BySize, sum.Clustered, sum.Largest = Summarise(cs, 20)
	for _, c := range cs {
		if c.Size >= 2 {
			sum.Clusters++
		}
	}
	if part, thr, ok := m.src.ClusterPartition(); ok && thr == req.Threshold && req.Since.IsZero() && req.Until.IsZero() {
		sum.Drift = Drift(items, uf, part)
		if rb, ok := m.src.(Rebuilder); ok && req.Rebuild && sum.Drift > 0 {
			m.update(j, func(s *Status) { s.Phase = "rebuilding" })
			if sum.Rebuilt, err = rb.RebuildClusters(ctx); err != nil {
				return nil, err
			}
			part, _, _ = m.src.ClusterPartition()
			after := Drift(items, uf, part)
			sum.DriftAfter = &after
			m.log.Info("dedup job rebuilt the incremental clusters", "id", j.st.ID, "drift", sum.Drift, "rejoined", sum.Rebuilt, "drift_after", after)
		}
	}
	if err := writeFile(filepath.Join(dir, "clusters.jsonl"), func(f *os.File) error { return WriteJSONL(f, cs) }); err != nil {
		return nil, err
	}
	var posts []string
	for _, c := range sum.Largest {
		posts = append(posts, c.Members...)
	}
	thumbs, err := m.src.Thumbnails(ctx, posts)
	if err != nil {
		return nil, err
	}
	sum.TookSec = time.Since(start).Seconds()
	if err := writeFile(filepath.Join(dir, "report.html"), func(f *os.File) error { return WriteHTML(f, sum, thumbs) }); err != nil {
		return nil, err
	}
	b, _ := json.MarshalIndent(sum, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "summary.json"), b, 0o644); err != nil {
		return nil, err
	}
	return sum, nil
}

// Drift counts the posts whose incremental cluster groups them otherwise
// than the components do: a post is counted when the component and the
// incremental cluster of its component's first post disagree about it.
func Drift(items []Item, uf interface{ Find(int) int }, part map[string]uint64) int {
	compOf := map[int]uint64{} // component root -> the cluster its first post is in
	clusterOf := map[uint64]int{}
	n := 0
	for i := range items {
		r := uf.Find(i)
		c := part[items[i].Post]
		want, ok := compOf[r]
		if !ok {
			compOf[r] = c
			if prev, seen := clusterOf[c]; seen && prev != r && c != 0 {
				n++ // this cluster already belongs to another component
				continue
			}
			clusterOf[c] = r
			want = c
		}
		if c != want || c == 0 {
			n++
		}
	}
	return n
}

func writeFile(path string, fn func(*os.File) error) error {
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	if err := fn(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}
