package matching

import (
	"bufio"
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/pdq"
	"github.com/xmodal/xmodal/internal/atomicfile"
)

// Sweeper looks the posts already indexed up against new bank entries
// (retro sweeps, issue #18 item 4): each PDQ entry is searched in the index
// at the bank's threshold (an exact Hamming range search) and every image
// within it becomes an event with source "sweep" and version 0 (the id is
// still deterministic: a sweep run again adds no event within the duplicate
// window). Sweeps run one at a time, in the background, in the order they
// were asked for; Status shows their progress.
//
// With a directory, sweeps survive a crash: a sweep's bank and entries are
// written there when it is queued, and its progress (entries done, matches)
// is checkpointed every few entries, after the events of those entries are
// durable. A new Sweeper on the directory resumes every sweep that was
// queued or running from its checkpoint: the entries after it are looked up
// again, and the events of those that had been published before the crash
// come again with the same ids (dropped as duplicates by the stream).
//
// Text, URL, embedding and MD5 entries are swept too when the index can be
// scanned (domain.RecordScanner: the embedded index and Milvus): after the PDQ
// entries, every stored record is looked up once against all of them (a
// temporary banks.State holding the sweep's entries, matched as ingest
// matches a post, MatchAll over a chunk of records), checkpointed by the
// last primary key scanned. Matches are also added to the records when the
// index keeps them (domain.MatchRecorder), so hits carry them and the
// matched_banks filter lists the posts.
//
// An MD5 entry finds the records that kept their file's MD5 (the embedded
// index with image.keep_md5, or images indexed while a bank held md5
// entries). With Regions (banks.match_regions, embedded index), the scan
// also matches the PDQ entries against each image record's region hashes
// (domain.Record.PDQRegions, as ingest does with Deps.MatchRegions), so a
// meme, a screenshot or a watermarked copy of a banked picture indexed
// before its entry gets its event, with its region; an entry the image's
// own hash matches is left to the search above. Crops of an image added
// with its windows are found by the query service at the add, by the
// image's parts search, and given their events through Found (a queued
// sweep keeps no picture to search with). Not swept: rotated or
// mirrored copies (the index keeps one PDQ hash per image, in its original
// orientation), crops of entries without windows; on Milvus,
// MD5 entries find nothing (its records keep no MD5), nor do region hashes
// (nor are they kept), and the matches are not written to the records.
type Sweeper struct {
	cfg SweeperConfig

	mu     sync.Mutex
	queue  chan *sweep
	all    []*sweep
	nextID int

	progress *prometheus.CounterVec
	matched  *prometheus.CounterVec
	pending  prometheus.GaugeFunc

	// done is closed when the worker has returned (its context ended):
	// no checkpoint is written after that.
	done chan struct{}
}

// SweeperConfig configures a Sweeper.
type SweeperConfig struct {
	Index  domain.NearDupSearcher
	Events Publisher
	// Records, when set, lets text, URL and embedding entries be swept by
	// scanning the stored records (the embedded index).
	Records domain.RecordScanner
	// Recorder, when set, gets the sweep's matches onto the posts' records.
	Recorder domain.MatchRecorder
	// Regions, with Records, sweeps PDQ entries by the stored records'
	// region hashes too (domain.Record.PDQRegions: content rectangles and
	// the cleaned hash; banks.match_regions), as ingest matches them with
	// Deps.MatchRegions: memes, screenshots and watermarked copies of a
	// banked picture indexed before its entry.
	Regions bool
	// WindowBlockPixels is Deps.WindowBlockPixels for the events of Found:
	// a window match of a bank whose action is block, with a pixel value
	// under it, is an event with action review (0: the default).
	WindowBlockPixels float64
	// Dir keeps the sweeps and their checkpoints ("": in memory only; a
	// sweep in flight is lost with the process).
	Dir string
	// CheckpointEvery is how many entries a sweep looks up between
	// checkpoints (default 100; also at least once a second).
	CheckpointEvery int
	Logger          *slog.Logger
	Registerer      prometheus.Registerer
}

// Sweep states.
const (
	SweepQueued  = "queued"
	SweepRunning = "running"
	SweepDone    = "done"
	SweepFailed  = "failed"
)

type sweep struct {
	st      banks.SweepStatus
	bank    banks.BankInfo
	entries []banks.Entry // PDQ entries first, then those swept by a record scan
	// scanAfter is the last primary key the record scan has done.
	scanAfter string
}

// sweepRecord is a sweep's checkpoint file.
type sweepRecord struct {
	Status    banks.SweepStatus `json:"status"`
	Bank      banks.BankInfo    `json:"bank"`
	ScanAfter string            `json:"scan_after,omitempty"`
}

// scanned reports whether entries of type t are swept by a record scan.
func scanned(t banks.SignalType) bool {
	return t == banks.SignalText || t == banks.SignalURL || t == banks.SignalEmbedding || t == banks.SignalMD5
}

// maxKept is how many sweeps Status lists (and the directory keeps).
const maxKept = 100

// NewSweeper resumes the unfinished sweeps of cfg.Dir and starts the
// sweeper's worker; it stops when ctx ends (a sweep running then resumes
// from its checkpoint in the next Sweeper on the directory).
func NewSweeper(ctx context.Context, cfg SweeperConfig) (*Sweeper, error) {
	if cfg.Index == nil || cfg.Events == nil {
		return nil, errors.New("matching: a sweeper needs the index and an event publisher")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CheckpointEvery <= 0 {
		cfg.CheckpointEvery = 100
	}
	s := &Sweeper{cfg: cfg, queue: make(chan *sweep, 1024), done: make(chan struct{}),
		progress: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xmodal_sweep_entries_total",
			Help: "Bank entries looked up in the index by retro sweeps, by bank."}, []string{"bank"}),
		matched: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "xmodal_sweep_matches_total",
			Help: "Indexed posts found by retro sweeps (match events with source sweep), by bank."}, []string{"bank"}),
	}
	s.pending = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "xmodal_sweep_pending_entries",
		Help: "Entries that queued and running retro sweeps have still to look up."}, s.pendingEntries)
	if cfg.Dir != "" {
		if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("matching: sweeps directory: %w", err)
		}
		if err := s.load(); err != nil {
			return nil, err
		}
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{s.progress, s.matched, s.pending} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	go s.run(ctx)
	return s, nil
}

func (s *Sweeper) pendingEntries() float64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, sw := range s.all {
		if sw.st.State == SweepQueued || sw.st.State == SweepRunning {
			n += sw.st.Entries - sw.st.Done
		}
	}
	return float64(n)
}

func (s *Sweeper) statusPath(id int) string {
	return filepath.Join(s.cfg.Dir, fmt.Sprintf("sweep-%08d.json", id))
}

func (s *Sweeper) entriesPath(id int) string {
	return filepath.Join(s.cfg.Dir, fmt.Sprintf("sweep-%08d.entries", id))
}

// load reads the sweeps of the directory and queues the unfinished ones
// from their checkpoints.
func (s *Sweeper) load() error {
	names, err := filepath.Glob(filepath.Join(s.cfg.Dir, "sweep-*.json"))
	if err != nil {
		return err
	}
	slices.Sort(names)
	for _, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			return fmt.Errorf("matching: sweep checkpoint: %w", err)
		}
		var rec sweepRecord
		if err := json.Unmarshal(b, &rec); err != nil || rec.Status.ID <= 0 {
			s.cfg.Logger.Warn("retro sweep: unreadable checkpoint; skipped", "file", name, "err", err)
			continue
		}
		sw := &sweep{st: rec.Status, bank: rec.Bank, scanAfter: rec.ScanAfter}
		s.nextID = max(s.nextID, sw.st.ID)
		if sw.st.State == SweepQueued || sw.st.State == SweepRunning {
			if sw.entries, err = readEntries(s.entriesPath(sw.st.ID)); err != nil {
				sw.st.State, sw.st.Error = SweepFailed, "cannot resume: "+err.Error()
			} else if len(sw.entries) != sw.st.Entries {
				sw.st.State, sw.st.Error = SweepFailed, fmt.Sprintf("cannot resume: %d entries saved, want %d", len(sw.entries), sw.st.Entries)
			} else {
				sw.st.State, sw.st.Resumed = SweepQueued, sw.st.Done
				select {
				case s.queue <- sw:
					s.cfg.Logger.Info("retro sweep: resuming from its checkpoint", "id", sw.st.ID, "bank", sw.st.Bank, "done", sw.st.Done, "entries", sw.st.Entries)
				default:
					sw.st.State, sw.st.Error = SweepFailed, "cannot resume: too many sweeps queued"
				}
			}
		}
		s.all = append(s.all, sw)
	}
	s.prune()
	return nil
}

// Start queues a sweep of the index for the entries of bank (entries that
// are not disabled: PDQ, and with a record scanner text, URL, embedding
// and MD5 entries that are not stale) and returns its status.
func (s *Sweeper) Start(bank banks.BankInfo, entries []banks.Entry) banks.SweepStatus {
	var pdqs, others []banks.Entry
	for _, e := range entries {
		switch {
		case e.Disabled:
		case e.Type == banks.SignalPDQ:
			pdqs = append(pdqs, banks.Entry{ID: e.ID, Type: e.Type, Value: e.Value})
		case s.cfg.Records != nil && scanned(e.Type) && !e.Stale:
			others = append(others, e)
		}
	}
	pdqs = append(pdqs, others...)
	now := time.Now().UTC()
	if len(pdqs) == 0 {
		// Nothing to sweep (or an index that cannot be scanned: its text,
		// URL, embedding and MD5 entries are matched at ingest only).
		return banks.SweepStatus{Bank: bank.Name, State: SweepDone, Queued: now, Finished: now}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	sw := &sweep{bank: bank, entries: pdqs, st: banks.SweepStatus{ID: s.nextID, Bank: bank.Name, Entries: len(pdqs),
		State: SweepQueued, Queued: now}}
	if err := s.save(sw, true); err != nil {
		sw.st.State, sw.st.Error = SweepFailed, "cannot record the sweep: "+err.Error()
	} else {
		select {
		case s.queue <- sw:
		default:
			sw.st.State, sw.st.Error = SweepFailed, "too many sweeps queued; ask again later"
			s.save(sw, false)
		}
	}
	s.all = append(s.all, sw)
	s.prune()
	return sw.st
}

// prune keeps the newest maxKept sweeps (and their files); s.mu is held or
// the worker has not started.
func (s *Sweeper) prune() {
	if len(s.all) <= maxKept {
		return
	}
	for _, sw := range s.all[:len(s.all)-maxKept] {
		if s.cfg.Dir != "" && (sw.st.State == SweepDone || sw.st.State == SweepFailed) {
			os.Remove(s.entriesPath(sw.st.ID))
			os.Remove(s.statusPath(sw.st.ID))
		}
	}
	s.all = slices.Delete(s.all, 0, len(s.all)-maxKept)
}

// save writes the sweep's checkpoint (and, when queued, its entries) durably.
func (s *Sweeper) save(sw *sweep, withEntries bool) error {
	if s.cfg.Dir == "" {
		return nil
	}
	if withEntries {
		if err := atomicfile.Write(s.entriesPath(sw.st.ID), func(w io.Writer) error {
			enc := json.NewEncoder(w)
			for _, e := range sw.entries {
				if err := enc.Encode(e); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	b, err := json.Marshal(sweepRecord{Status: sw.st, Bank: sw.bank, ScanAfter: sw.scanAfter})
	if err != nil {
		return err
	}
	return atomicfile.Write(s.statusPath(sw.st.ID), func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// readEntries reads a sweep's entries file: a JSON entry a line, or (files
// written before other signal types were swept) "id value" PDQ lines.
func readEntries(path string) ([]banks.Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []banks.Entry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 16<<20) // embedding entries carry their vector
	for n := 1; sc.Scan(); n++ {
		if strings.HasPrefix(sc.Text(), "{") {
			var e banks.Entry
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				return nil, fmt.Errorf("%s: line %d: %w", path, n, err)
			}
			out = append(out, e)
			continue
		}
		id, value, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			return nil, fmt.Errorf("%s: line %d is malformed", path, n)
		}
		out = append(out, banks.Entry{ID: id, Type: banks.SignalPDQ, Value: value})
	}
	return out, sc.Err()
}

// Status lists the latest sweeps (at most 100), newest last.
func (s *Sweeper) Status() []banks.SweepStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]banks.SweepStatus, len(s.all))
	for i, sw := range s.all {
		out[i] = sw.st
	}
	return out
}

func (s *Sweeper) set(sw *sweep, f func(st *banks.SweepStatus)) {
	s.mu.Lock()
	f(&sw.st)
	s.mu.Unlock()
}

// Done is closed once the worker has stopped after its context ended; a
// caller that removes or reuses the sweeps' directory waits for it.
func (s *Sweeper) Done() <-chan struct{} { return s.done }

func (s *Sweeper) run(ctx context.Context) {
	defer close(s.done)
	for {
		select {
		case <-ctx.Done():
			return
		case sw := <-s.queue:
			start := time.Now()
			s.set(sw, func(st *banks.SweepStatus) { st.State, st.Started = SweepRunning, start.UTC() })
			err := s.sweep(ctx, sw)
			if err != nil && ctx.Err() != nil {
				// Stopped with the process: the checkpoint says running, and
				// the next Sweeper on the directory resumes it.
				s.cfg.Logger.Info("retro sweep stopped; it resumes from its checkpoint at the next start", "id", sw.st.ID, "bank", sw.st.Bank,
					"done", sw.st.Done, "entries", sw.st.Entries)
				return
			}
			s.mu.Lock()
			sw.st.Finished = time.Now().UTC()
			if err != nil {
				sw.st.State, sw.st.Error = SweepFailed, err.Error()
			} else {
				sw.st.State = SweepDone
			}
			if serr := s.save(sw, false); serr != nil {
				s.cfg.Logger.Warn("retro sweep: cannot record its end", "id", sw.st.ID, "err", serr)
			}
			s.mu.Unlock()
			s.cfg.Logger.Info("retro sweep", "id", sw.st.ID, "bank", sw.st.Bank, "entries", sw.st.Entries, "matches", sw.st.Matches, "state", sw.st.State,
				"resumed_at", sw.st.Resumed, "err", sw.st.Error, "took", time.Since(start).Round(time.Millisecond))
		}
	}
}

// sweep looks each entry up from the checkpoint on; the events of an
// entry are published before the next is looked up, and the progress is
// checkpointed every CheckpointEvery entries or second.
func (s *Sweeper) sweep(ctx context.Context, sw *sweep) error {
	thr := sw.bank.Thresholds.PDQThreshold()
	now := time.Now().UTC()
	lastSave := time.Now()
	sinceSave := 0
	checkpoint := func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		sinceSave, lastSave = 0, time.Now()
		return s.save(sw, false)
	}
	if err := checkpoint(); err != nil { // state running
		return fmt.Errorf("checkpoint: %w", err)
	}
	// The bank's series exist from its first sweep on, at 0 until it finds something.
	s.progress.WithLabelValues(sw.bank.Name)
	s.matched.WithLabelValues(sw.bank.Name)
	nPDQ := 0
	for nPDQ < len(sw.entries) && sw.entries[nPDQ].Type == banks.SignalPDQ {
		nPDQ++
	}
	for i := sw.st.Done; i < nPDQ; i++ {
		e := sw.entries[i]
		h, err := hex.DecodeString(e.Value)
		if err != nil || len(h) != domain.PDQBytes {
			return fmt.Errorf("entry %s: not a PDQ hash", e.ID)
		}
		hits, err := s.cfg.Index.NearDup(ctx, domain.NearDupQuery{Hashes: [][]byte{h}, MaxDistance: thr})
		if err != nil {
			return fmt.Errorf("entry %s: %w", e.ID, err)
		}
		known := 0
		if len(hits) > 0 {
			evs := make([]Event, 0, len(hits))
			for _, hit := range hits {
				if carries(hit.Matches, sw.bank.Name, e.ID) {
					known++
					continue
				}
				evs = append(evs, Event{ID: EventID(hit.PostID, 0, e.ID), PostID: hit.PostID, Author: hit.Author, CreatedAt: hit.CreatedAt,
					Modality: hit.Modality, Bank: sw.bank.Name, EntryID: e.ID, SignalType: banks.SignalPDQ, Distance: hit.Distance,
					Labels: sw.bank.Labels, Action: sw.bank.Action, MatchedAt: now, Source: SourceSweep})
			}
			if err := s.record(ctx, evs); err != nil {
				return err
			}
		}
		s.progress.WithLabelValues(sw.bank.Name).Inc()
		s.set(sw, func(st *banks.SweepStatus) {
			st.Done, st.Matches, st.Known = i+1, st.Matches+len(hits)-known, st.Known+known
		})
		if sinceSave++; sinceSave >= s.cfg.CheckpointEvery || time.Since(lastSave) >= time.Second {
			if err := checkpoint(); err != nil {
				return fmt.Errorf("checkpoint: %w", err)
			}
		}
	}
	// With regions, the PDQ entries are matched against the stored
	// records' region hashes in the scan too.
	regions := s.cfg.Regions && s.cfg.Records != nil && nPDQ > 0
	scanFrom := nPDQ
	if regions {
		scanFrom = 0
	}
	if scanFrom == len(sw.entries) {
		return nil
	}
	return s.scan(ctx, sw, sw.entries[scanFrom:], regions, now, checkpoint)
}

// record publishes a sweep's events (durable when it returns) and, with a
// recorder, adds them to the posts' records.
func (s *Sweeper) record(ctx context.Context, evs []Event) error {
	if err := s.cfg.Events.Publish(ctx, evs); err != nil {
		return err
	}
	if s.cfg.Recorder != nil {
		var posts []domain.PostMatches
		at := map[string]int{}
		for _, e := range evs {
			i, ok := at[e.PostID]
			if !ok {
				i = len(posts)
				at[e.PostID] = i
				posts = append(posts, domain.PostMatches{PostID: e.PostID})
			}
			posts[i].Matches = append(posts[i].Matches, domain.RecordMatch{Bank: e.Bank, EntryID: e.EntryID, SignalType: string(e.SignalType),
				Modality: e.Modality, Distance: e.Distance, Score: e.Score})
		}
		if err := s.cfg.Recorder.AddMatches(ctx, posts); err != nil {
			return fmt.Errorf("matches on records: %w", err)
		}
	}
	if len(evs) > 0 {
		s.matched.WithLabelValues(evs[0].Bank).Add(float64(len(evs)))
	}
	return nil
}

// scanChunk is how many records a record scan matches at once.
const scanChunk = 512

// regionWhole marks, in a record scan with regions, the lookup of an
// image's own PDQ hash, whose matches the near-dup search made.
const regionWhole = "whole"

// scan sweeps the text, URL and embedding entries, and with regions the
// PDQ entries by the records' region hashes: every stored record after the
// checkpoint's key is matched against them (as ingest matches a post's
// records) a chunk at a time; each chunk's events are durable, and its
// last key checkpointed, before the next.
func (s *Sweeper) scan(ctx context.Context, sw *sweep, entries []banks.Entry, regions bool, now time.Time, checkpoint func() error) error {
	if s.cfg.Records == nil {
		return errors.New("text, URL and embedding entries cannot be swept: this index cannot be scanned")
	}
	st := banks.NewState()
	cfg := sw.bank.Bank
	cfg.Enabled = true
	if _, err := st.Apply(banks.Op{Version: banks.OpVersion, Kind: banks.OpCreateBank, Bank: cfg.Name, At: now, Config: &cfg}); err != nil {
		return fmt.Errorf("sweep state: %w", err)
	}
	for len(entries) > 0 {
		n := min(len(entries), banks.MaxOpEntries)
		add := entries[:n]
		if slices.ContainsFunc(add, func(e banks.Entry) bool { return e.AddedAt.IsZero() }) {
			// PDQ entries are kept as id, type and value (Start).
			add = slices.Clone(add)
			for i := range add {
				if add[i].AddedAt.IsZero() {
					add[i].AddedAt = now
				}
			}
		}
		if _, err := st.Apply(banks.Op{Version: banks.OpVersion, Kind: banks.OpAddEntries, Bank: cfg.Name, At: now, Entries: add}); err != nil {
			return fmt.Errorf("sweep state: %w", err)
		}
		entries = entries[n:]
	}
	var chunk []*domain.Record
	flush := func() error {
		if len(chunk) == 0 {
			return nil
		}
		var qs []banks.Query
		var owners []recQuery
		add := func(r *domain.Record, q banks.Query, region string) {
			qs, owners = append(qs, q), append(owners, recQuery{rec: r, region: region})
		}
		for _, r := range chunk {
			if q, ok := recordQuery(r); ok {
				q.PDQ = nil // PDQ entries were swept by hash
				if q.Text != "" || len(q.URLs) > 0 || len(q.Vector) > 0 || q.MD5 != "" {
					add(r, q, "")
				}
			}
			if !regions {
				continue
			}
			rqs := regionQueries(r)
			if len(rqs) == 0 {
				continue
			}
			if len(r.PDQ) == domain.PDQBytes {
				// The image's own hash first: the entries it matches were
				// found by the search above, and are not reported again
				// by a region.
				add(r, banks.Query{PDQ: []pdq.Hash{pdq.Hash(r.PDQ)}}, regionWhole)
			}
			for _, rq := range rqs {
				add(r, rq.q, rq.region)
			}
		}
		res, err := st.MatchAll(ctx, qs)
		if err != nil {
			return err
		}
		var evs []Event
		seen := map[string]bool{}
		known := 0
		for i, mr := range res {
			if mr.Err != nil {
				continue // a record whose lookup is malformed matches nothing, as at ingest
			}
			r, region := owners[i].rec, owners[i].region
			for _, m := range mr.Matches {
				id := EventID(r.PostID, 0, m.EntryID)
				if seen[id] {
					continue // the post's image and text both matched the entry, or a region the whole image's match
				}
				seen[id] = true
				if region == regionWhole {
					continue
				}
				if carries(r.Matches, sw.bank.Name, m.EntryID) {
					known++
					continue
				}
				evs = append(evs, Event{ID: id, PostID: r.PostID, Author: r.Author, CreatedAt: r.CreatedAt, Modality: r.Modality,
					Bank: sw.bank.Name, EntryID: m.EntryID, SignalType: m.SignalType, Distance: m.Distance, Score: m.Score,
					Labels: sw.bank.Labels, Action: sw.bank.Action, MatchedAt: now, Source: SourceSweep, Region: region})
			}
		}
		if len(evs) > 0 {
			if err := s.record(ctx, evs); err != nil {
				return err
			}
		}
		last := chunk[len(chunk)-1].PK
		s.set(sw, func(st *banks.SweepStatus) {
			st.Records, st.Matches, st.Known = st.Records+len(chunk), st.Matches+len(evs), st.Known+known
		})
		s.mu.Lock()
		sw.scanAfter = last
		s.mu.Unlock()
		chunk = chunk[:0]
		if err := checkpoint(); err != nil { // a chunk's work is durable: its last key is the checkpoint
			return fmt.Errorf("checkpoint: %w", err)
		}
		return nil
	}
	err := s.cfg.Records.ScanRecords(ctx, sw.scanAfter, func(r *domain.Record) error {
		chunk = append(chunk, r)
		if len(chunk) == scanChunk {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return err
	}
	s.progress.WithLabelValues(sw.bank.Name).Add(float64(len(sw.entries) - sw.st.Done))
	s.set(sw, func(st *banks.SweepStatus) { st.Done = len(sw.entries) })
	return nil
}

// carries reports whether a record (or hit) already carries a bank entry's
// match: the post version was matched to it at ingest, after the entry was
// added, or by an earlier sweep, and its event was made then. A sweep makes
// none, so a post gets one event per (version, entry) even when a sweep
// that was queued or resumed late finds posts indexed after its entries.
func carries(ms []domain.RecordMatch, bank, entryID string) bool {
	return slices.ContainsFunc(ms, func(m domain.RecordMatch) bool { return m.Bank == bank && m.EntryID == entryID })
}

// Found makes the events of posts already indexed that the query service
// found for a bank's new entry by a search the sweeps cannot run: the
// crops of an image banked with its windows (banks.Entry.Windows), found
// by the parts search of the image itself (the entry keeps its windows,
// not the picture a parts search needs), and the posts that show it by
// windows. Each window hit of hits becomes an event with source "sweep",
// version 0, region "window", Shown the part of the banked image (w x h
// pixels) the post shows, Windows and Pixels; a post that already carries
// the entry's match gets none (counted in known). The events are
// published, and added to the records, before it returns.
func (s *Sweeper) Found(ctx context.Context, bank banks.BankInfo, entry banks.Entry, hits []domain.NearDupHit, w, h int) (found, known int, err error) {
	if w <= 0 || h <= 0 {
		return 0, 0, fmt.Errorf("found: image size %d x %d", w, h)
	}
	now := time.Now().UTC()
	var evs []Event
	for _, hit := range hits {
		wm := hit.Windows
		if wm == nil || wm.Whole || wm.Area || wm.Cleaned {
			continue // a whole-image hash's match: the PDQ sweep's
		}
		if carries(hit.Matches, bank.Name, entry.ID) {
			known++
			continue
		}
		shown := [4]float32{float32(wm.QueryRect[0]) / float32(w), float32(wm.QueryRect[1]) / float32(h),
			float32(wm.QueryRect[2]) / float32(w), float32(wm.QueryRect[3]) / float32(h)}
		for i := range shown {
			shown[i] = min(max(shown[i], 0), 1)
		}
		e := Event{ID: EventID(hit.PostID, 0, entry.ID), PostID: hit.PostID, Author: hit.Author, CreatedAt: hit.CreatedAt,
			Modality: hit.Modality, Bank: bank.Name, EntryID: entry.ID, SignalType: entry.Type, Distance: hit.Distance,
			Labels: bank.Labels, Action: bank.Action, MatchedAt: now, Source: SourceSweep, Region: "window",
			Shown: &shown, Windows: wm.Windows, Pixels: wm.Pixels}
		if e.Action == banks.ActionBlock && wm.Pixels < cmp.Or(s.cfg.WindowBlockPixels, DefaultWindowBlockPixels) {
			e.Action = banks.ActionReview // as at ingest
		}
		evs = append(evs, e)
	}
	if len(evs) == 0 {
		return 0, known, nil
	}
	if err := s.record(ctx, evs); err != nil {
		return 0, known, err
	}
	return len(evs), known, nil
}
