package query

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xmodal/xmodal/banks"
	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/internal/vecmath"
)

// Encoder embeds query texts and images. *encoders.Model implements it.
type Encoder interface {
	EmbedTexts(ctx context.Context, texts []string) ([][]float32, error)
	EmbedImages(ctx context.Context, imgs []image.Image) ([][]float32, error)
	Version() string
	Dim() int
}

// DecodedImage is a decoded query image.
type DecodedImage struct {
	Image image.Image // embedded for a search; hashed for neardup unless HashInput is set
	// HashInput, when set, is the perceptual hash's input (a larger decode of
	// the same picture, when Image is too small for the hash).
	HashInput image.Image
	// Release, when set, is called once the pixels are no longer needed.
	Release func()
}

// DecodeFunc decodes a query image under the request's context. An *Error it
// returns keeps its code (413 for an image over the pixel cap, say); any
// other error is a 422, or the context's error.
type DecodeFunc func(ctx context.Context, data []byte) (DecodedImage, error)

// Fetcher downloads query images by URL behind the SSRF guard.
type Fetcher interface {
	Fetch(ctx context.Context, url string) ([]byte, error)
}

// Config of the service.
type Config struct {
	Name        string           // micro service name, default "xmodal"
	Timeout     time.Duration    // per-request deadline, default 5s
	Concurrency int              // requests handled at once, default 16; beyond that 429
	Now         func() time.Time // clock of the recency boost; default time.Now
}

// Deps are what the service runs on.
type Deps struct {
	Index   domain.Searcher
	Encoder Encoder
	// Decode decodes query images (see DecodeFunc). Decode them as the
	// indexer decodes posts' images, so that a query finds its own picture.
	Decode DecodeFunc
	// DecodeMode names how Decode decodes and preprocesses images (for
	// example "fast" or "exact"); it is part of the cache key.
	DecodeMode string
	Fetcher    Fetcher // nil: image_url queries get 400
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Cache of search replies (NewRedisCache or NewLRUCache); nil: none.
	Cache Cache
	// Writer applies admin deletes; nil: the Index when it is a domain.Writer.
	Writer domain.Writer
	// Deny is the replicated deny-list (required): every reply is computed
	// after syncing it and filtered through it, admin deletes record their
	// takedowns in it, and the cache generation is its position.
	Deny DenyList
	// Authors lists an author's posts for by-author deletes; nil: the Index when
	// it implements AuthorIndex.
	Authors AuthorIndex
	// Banks are the moderation banks (xmodal.v1.match, banks.*,
	// admin.banks.*); nil: those endpoints are not served.
	Banks Banks
	// Events reads the newest match events (banks.events); nil: none.
	Events MatchEvents
	// Sweeper runs retro sweeps of the index for entries added to enabled
	// banks; nil: none (admin.banks.sweep is 503).
	Sweeper Sweeper
	// Calibration holds the model's noise floors, below which a bank's
	// embedding thresholds are refused; nil: embedding thresholds are
	// refused (nothing to judge them by).
	Calibration *banks.Calibration
	// Dedup runs the batch near-duplicate job (xmodal.v1.admin.dedup); nil:
	// the endpoint answers 501.
	Dedup DedupRunner
	// Coder codes query vectors for the hash and hybrid plans; nil leaves it to
	// the index. The neardup endpoint needs an Index that is a
	// domain.NearDupSearcher.
	Coder Coder
}

// Service is the NATS query service.
type Service struct {
	cfg  Config
	d    Deps
	sem  chan struct{}
	svc  *microService
	nc   *nats.Conn
	reqs *prometheus.CounterVec
	lat  *prometheus.HistogramVec
	cs   cacheState

	// base is the parent of every request's context; Shutdown cancels it
	// when its grace is over.
	base   context.Context
	cancel context.CancelFunc
	// inflight counts the requests being served (NATS and Call); once
	// closing is set no request is admitted, so Shutdown can wait for them.
	inflight sync.WaitGroup
	mu       sync.Mutex
	closing  bool
}

// WithDefaults returns c with the zero (or negative) fields set to their
// defaults.
func (c Config) WithDefaults() Config {
	if c.Name == "" {
		c.Name = "xmodal"
	}
	c.Timeout = positiveOr(c.Timeout, 5*time.Second)
	c.Concurrency = positiveOr(c.Concurrency, 16)
	return c
}

// positiveOr is v, or d when v is zero or negative (an unset option).
func positiveOr[T int | time.Duration](v, d T) T {
	if v <= 0 {
		return d
	}
	return v
}

// New checks the dependencies; Start registers the endpoints.
func New(cfg Config, d Deps) (*Service, error) {
	cfg = cfg.WithDefaults()
	if d.Index == nil || d.Encoder == nil || d.Decode == nil || d.Deny == nil {
		return nil, errors.New("query: index, encoder, decoder and deny-list are required")
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	s := &Service{cfg: cfg, d: d, sem: make(chan struct{}, cfg.Concurrency),
		reqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "xmodal_query_requests_total", Help: "Query requests by endpoint and code (200 for success).",
		}, []string{"endpoint", "code"}),
		lat: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "xmodal_query_seconds", Help: "Query latency by endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
		}, []string{"endpoint"}),
	}
	s.base, s.cancel = context.WithCancel(context.Background())
	if d.Registerer != nil {
		for _, c := range []prometheus.Collector{s.reqs, s.lat} {
			if err := d.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	if err := s.initCache(); err != nil {
		return nil, err
	}
	return s, nil
}

// Start registers the service on nc (the NATS services protocol that
// `nats micro` speaks; see micro.go). Stop it with Stop.
func (s *Service) Start(nc *nats.Conn) error {
	svc, err := newMicroService(nc, s.cfg.Name, "1.0.0", "xmodal cross-modal search")
	if err != nil {
		return fmt.Errorf("query: add service: %w", err)
	}
	s.nc = nc
	eps := []struct {
		name string
		h    func(context.Context, []byte) (any, error)
	}{
		{"search", s.search},
		{"get", s.get},
		{"stats", s.stats},
		{"neardup", s.neardup},
		{"cluster", s.cluster},
		{"trending", s.trending},
	}
	for _, ep := range eps {
		s.register(ep.name, ep.h)
		if err := svc.add(ep.name, SubjectPrefix+"."+ep.name, s.handler(ep.name, ep.h)); err != nil {
			svc.stop()
			return fmt.Errorf("query: endpoint %s: %w", ep.name, err)
		}
	}
	if err := s.startAdmin(svc); err != nil {
		svc.stop()
		return fmt.Errorf("query: admin endpoints: %w", err)
	}
	if err := s.startBanks(svc); err != nil {
		svc.stop()
		return fmt.Errorf("query: bank endpoints: %w", err)
	}
	// Every subscription is at the server before Start returns, so that a
	// request sent afterwards from another connection finds the service
	// (otherwise, on a loaded machine, it could get "no responders").
	if err := nc.FlushTimeout(30 * time.Second); err != nil {
		svc.stop()
		return fmt.Errorf("query: registering the endpoints with the NATS server: %w", err)
	}
	s.svc = svc
	return nil
}

// Stop is Shutdown without a grace of its own: the requests in flight end
// by their deadline (Config.Timeout).
func (s *Service) Stop() error { return s.Shutdown(context.Background()) }

// Shutdown stops taking requests and waits for those in flight: the NATS
// subscriptions are drained (requests already received are still answered),
// then no request is admitted (Call answers 503), and the requests in flight
// may finish until ctx ends, when their contexts are cancelled. When it
// returns no handler runs, so the index, the model and the connection can be
// closed.
func (s *Service) Shutdown(ctx context.Context) error {
	var err error
	if s.svc != nil {
		err = s.svc.stopAndWait(ctx)
	}
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.cancel()
		<-done
	}
	s.cancel()
	return err
}

// enter admits a request unless the service is shutting down; the caller
// calls s.inflight.Done when the request is over.
func (s *Service) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.inflight.Add(1)
	return true
}

// errShuttingDown answers the requests that arrive during Shutdown.
func errShuttingDown() *Error {
	return errorf(CodeUnavailable, "the query service is shutting down; retry (another instance answers)")
}

// replyHeadroom is what a reply leaves of max_payload for its headers.
const replyHeadroom = 4096

// handler runs h on a bounded pool so that slow requests do not block the
// subscription, turns errors into error headers, and reports each request's
// outcome when its reply is sent (so the service statistics time the whole
// request).
func (s *Service) handler(name string, h func(context.Context, []byte) (any, error)) msgHandler {
	return func(msg *nats.Msg, done func(error)) {
		if !s.enter() {
			err := errShuttingDown()
			s.respondErr(name, msg, err)
			done(err)
			return
		}
		select {
		case s.sem <- struct{}{}:
		default:
			s.inflight.Done()
			err := errorf(CodeTooManyRequest, "too many requests in flight (%d); retry later", s.cfg.Concurrency)
			s.respondErr(name, msg, err)
			done(err)
			return
		}
		go func() {
			defer s.inflight.Done()
			defer func() { <-s.sem }()
			done(s.serve(name, h, msg))
		}()
	}
}

// serve answers one request; it returns the error it replied with.
func (s *Service) serve(name string, h func(context.Context, []byte) (any, error), msg *nats.Msg) error {
	res, err := s.run(WithRequester(s.base, natsRequester(msg.Reply)), name, h, msg.Data)
	if err != nil {
		e := AsError(err)
		if rerr := respondError(msg, e); rerr != nil {
			s.d.Logger.Warn("query: respond error", "endpoint", name, "err", rerr)
		}
		return e
	}
	var b []byte
	if raw, ok := res.(json.RawMessage); ok {
		b = raw // a cached reply, encoded already
	} else if b, err = json.Marshal(res); err != nil {
		e := errorf(CodeInternal, "encode the reply: %w", err)
		s.respondErr(name, msg, e)
		return e
	}
	if s.nc != nil && int64(len(b)) > s.nc.MaxPayload()-replyHeadroom {
		e := errorf(CodeTooLarge, "the reply is %d bytes, over this NATS server's max_payload (%d): "+
			"ask for less (a smaller k or limit, no thumbnails) or raise max_payload", len(b), s.nc.MaxPayload())
		s.respondErr(name, msg, e)
		return e
	}
	if msg.Reply == "" {
		return nil // a publish, not a request: nobody waits for an answer
	}
	if err := msg.Respond(b); err != nil {
		s.d.Logger.Warn("query: respond", "endpoint", name, "err", err)
	}
	return nil
}

func (s *Service) respondErr(name string, msg *nats.Msg, err error) {
	e := AsError(err)
	s.reqs.WithLabelValues(name, fmt.Sprint(e.Code)).Inc()
	if e.Code >= 500 {
		s.d.Logger.Warn("query failed", "endpoint", name, "code", e.Code, "err", e.Message)
	}
	if rerr := respondError(msg, e); rerr != nil {
		s.d.Logger.Warn("query: respond error", "endpoint", name, "err", rerr)
	}
}

// decodeStrict parses a JSON request, refusing unknown fields and trailing data.
func decodeStrict(data []byte, v any) error {
	if len(data) > MaxRequestSize {
		return errorf(CodeTooLarge, "request is %d bytes, over %d", len(data), MaxRequestSize)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return errorf(CodeBadRequest, "empty request: send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errorf(CodeBadRequest, "malformed request: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errorf(CodeBadRequest, "malformed request: trailing data after the JSON object")
	}
	return nil
}

// orDefault is *p, or def when the request did not give the field (absent or
// null): request fields whose zero is not a valid value decode into a pointer,
// so that an explicit 0 is refused rather than taken for "absent".
func orDefault(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

// ParseSearch decodes and validates a search request (exported for the fuzz test
// and the HTTP gateway).
func ParseSearch(data []byte) (*SearchRequest, error) {
	var w struct {
		SearchRequest
		K *int `json:"k"` // shadows SearchRequest.K: absent (nil) is not 0
	}
	if err := decodeStrict(data, &w); err != nil {
		return nil, err
	}
	r := w.SearchRequest
	r.K = orDefault(w.K, DefaultK)
	if err := oneOf("text, image, image_url or vector", r.Text != "", len(r.Image) > 0, r.ImageURL != "", len(r.Vector) > 0); err != nil {
		return nil, err
	}
	if r.Text != "" {
		if strings.TrimSpace(r.Text) == "" {
			return nil, errorf(CodeBadRequest, "text is blank")
		}
		if len(r.Text) > MaxQueryText {
			return nil, errorf(CodeTooLarge, "text is %d bytes, over %d", len(r.Text), MaxQueryText)
		}
		if !utf8.ValidString(r.Text) || strings.ContainsRune(r.Text, utf8.RuneError) {
			return nil, errorf(CodeBadRequest, "text is not valid UTF-8")
		}
	}
	if err := checkImageSize(r.Image); err != nil {
		return nil, err
	}
	if err := checkList("vector", len(r.Vector), MaxVectorDim); err != nil {
		return nil, err
	}
	if r.K < 1 || r.K > MaxK {
		return nil, errorf(CodeBadRequest, "k must be between 1 and %d, got %d", MaxK, r.K)
	}
	if r.Target == "" {
		r.Target = "any"
	}
	if r.Target != "any" {
		if _, err := domain.ParseModality(r.Target); err != nil {
			return nil, errorf(CodeBadRequest, "target: %w (or any)", err)
		}
	}
	switch domain.Plan(r.Plan) {
	case "", domain.PlanExact, domain.PlanANN, domain.PlanHash, domain.PlanHybrid:
	default:
		return nil, errorf(CodeBadRequest, "plan %q is unknown (exact, ann, hash, hybrid)", r.Plan)
	}
	if r.Candidates != 0 {
		if domain.Plan(r.Plan) != domain.PlanHybrid {
			return nil, errorf(CodeBadRequest, "candidates applies to plan hybrid only (plan is %q)", r.Plan)
		}
		if r.Candidates < 1 || r.Candidates > MaxCandidates {
			return nil, errorf(CodeBadRequest, "candidates must be between 1 and %d, got %d", MaxCandidates, r.Candidates)
		}
	}
	if err := validateFilter(&r.Filter); err != nil {
		return nil, err
	}
	if err := r.Recency.validate(); err != nil {
		return nil, err
	}
	if err := r.Trending.validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

func (s *Service) search(ctx context.Context, data []byte) (any, error) {
	start := time.Now()
	r, err := ParseSearch(data)
	if err != nil {
		return nil, err
	}
	if err := s.checkIndexFilter(&r.Filter); err != nil {
		return nil, err
	}
	return s.cachedSearch(ctx, r, start, func(ctx context.Context) (*SearchResponse, error) { return s.searchUncached(ctx, r, start) })
}

func (s *Service) searchUncached(ctx context.Context, r *SearchRequest, start time.Time) (*SearchResponse, error) {
	vec, err := s.queryVector(ctx, r)
	if err != nil {
		return nil, err
	}
	plan := domain.Plan(r.Plan)
	if plan == "" {
		plan = domain.PlanExact
	}
	if r.Trending != nil {
		rr := *r
		ok, err := s.trendingFilter(ctx, r.Trending, &rr.Filter)
		if err != nil {
			return nil, err
		}
		if !ok {
			return &SearchResponse{Hits: []domain.Hit{}, Plan: string(plan), Model: s.d.Encoder.Version(),
				TookMS: float64(time.Since(start).Microseconds()) / 1000}, nil
		}
		r = &rr
	}
	hits, err := s.searchTargets(ctx, vec, r, plan)
	if err != nil {
		return nil, err
	}
	if !r.Thumbnails {
		for i := range hits {
			hits[i].Thumbnail = nil
		}
	}
	return &SearchResponse{Hits: hits, Plan: string(plan), Model: s.d.Encoder.Version(),
		TookMS: float64(time.Since(start).Microseconds()) / 1000}, nil
}

func (s *Service) queryVector(ctx context.Context, r *SearchRequest) ([]float32, error) {
	switch {
	case len(r.Vector) > 0:
		if len(r.Vector) != s.d.Encoder.Dim() {
			return nil, errorf(CodeBadRequest, "vector has %d dimensions, the model has %d", len(r.Vector), s.d.Encoder.Dim())
		}
		v := slices.Clone(r.Vector)
		if !vecmath.Normalize(v) {
			return nil, errorf(CodeBadRequest, "vector has no direction: it is all zeros, or its norm is not finite (NaN, Inf or overflow)")
		}
		return v, nil
	case r.Text != "":
		v, err := s.d.Encoder.EmbedTexts(ctx, []string{r.Text})
		if err != nil {
			return nil, errorf(CodeInternal, "encode text: %w", err)
		}
		return v[0], nil
	}
	dec, err := s.queryImage(ctx, r.Image, r.ImageURL)
	if err != nil {
		return nil, err
	}
	v, err := s.d.Encoder.EmbedImages(ctx, []image.Image{dec.Image})
	dec.Release()
	if err != nil {
		return nil, errorf(CodeInternal, "encode image: %w", err)
	}
	return v[0], nil
}

// searchTargets runs the query on one modality, or on each and merges by rank.
// Hits of taken-down posts are left out: an index may still show a post
// deleted a moment ago (Milvus at Bounded consistency), so the list is asked
// for as many more as were left out, a few times at most.
func (s *Service) searchTargets(ctx context.Context, vec []float32, r *SearchRequest, plan domain.Plan) ([]domain.Hit, error) {
	k := r.K
	for attempt := 0; ; attempt++ {
		hits, err := s.searchTargetsK(ctx, vec, r, plan, k)
		if err != nil {
			return nil, err
		}
		kept := hits[:0]
		for _, h := range hits {
			if !s.d.Deny.Denied(h.PostID) {
				kept = append(kept, h)
			}
		}
		removed := len(hits) - len(kept)
		if removed == 0 || len(hits) < k || attempt == 3 || k >= MaxK {
			return kept[:min(len(kept), r.K)], nil
		}
		k = min(k+removed*(attempt+1), MaxK)
	}
}

func (s *Service) searchTargetsK(ctx context.Context, vec []float32, r *SearchRequest, plan domain.Plan, k int) ([]domain.Hit, error) {
	q := domain.VectorQuery{Vector: vec, K: k, Filter: r.Filter, Plan: plan, Candidates: r.Candidates}
	if r.Target != "any" {
		q.Modality = domain.Modality(r.Target)
		hits, err := s.searchCoded(ctx, q, r)
		if err != nil {
			return nil, indexErr(err)
		}
		return hits, nil
	}
	var lists [][]domain.Hit
	for _, m := range domain.Modalities {
		q.Modality = m
		hits, err := s.searchCoded(ctx, q, r)
		if err != nil {
			return nil, indexErr(err)
		}
		lists = append(lists, hits)
	}
	return MergeByRank(lists, k), nil
}

func indexErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return err
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if bad := invalidQuery(err); bad != nil {
		return bad
	}
	return errorf(CodeUnavailable, "index: %w", err)
}

// MergeByRank merges per-modality result lists by rank, not raw score
// (same-modality scores run higher than cross-modal ones): all first-ranked hits
// come before all second-ranked ones; within a rank, higher score then smaller
// primary key first.
func MergeByRank(lists [][]domain.Hit, k int) []domain.Hit {
	type ranked struct {
		rank int
		hit  domain.Hit
	}
	var all []ranked
	for _, l := range lists {
		for i, h := range l {
			all = append(all, ranked{i, h})
		}
	}
	slices.SortFunc(all, func(a, b ranked) int {
		if a.rank != b.rank {
			return a.rank - b.rank
		}
		if a.hit.Score != b.hit.Score {
			if a.hit.Score > b.hit.Score {
				return -1
			}
			return 1
		}
		return strings.Compare(a.hit.PK, b.hit.PK)
	})
	out := make([]domain.Hit, 0, min(k, len(all)))
	for _, r := range all {
		if len(out) == k {
			break
		}
		out = append(out, r.hit)
	}
	return out
}

// ParseGet decodes and validates a get request, filling the default limit
// (exported for the HTTP gateway and tests).
func ParseGet(data []byte) (*GetRequest, error) {
	var w struct {
		GetRequest
		Limit *int `json:"limit"` // shadows GetRequest.Limit: absent (nil) is not 0
	}
	if err := decodeStrict(data, &w); err != nil {
		return nil, err
	}
	r := w.GetRequest
	r.Limit = orDefault(w.Limit, DefaultGetLimit)
	if len(r.PKs)+len(r.PostIDs) == 0 {
		return nil, errorf(CodeBadRequest, "give pks or post_ids")
	}
	if n := len(r.PKs) + len(r.PostIDs)*len(domain.Modalities); n > MaxK {
		return nil, errorf(CodeTooLarge, "pks and post_ids name %d records (a post id counts %d), at most %d",
			n, len(domain.Modalities), MaxK)
	}
	if r.Limit < 1 || r.Limit > MaxK {
		return nil, errorf(CodeBadRequest, "limit %d: want 1..%d", r.Limit, MaxK)
	}
	return &r, nil
}

func (s *Service) get(ctx context.Context, data []byte) (any, error) {
	r, err := ParseGet(data)
	if err != nil {
		return nil, err
	}
	limit := r.Limit
	pks := slices.Clone(r.PKs)
	for _, id := range r.PostIDs {
		for _, m := range domain.Modalities {
			pks = append(pks, domain.PrimaryKey(id, m))
		}
	}
	// The cursor is the position in the asked-for keys where the page starts.
	from := 0
	if r.Cursor != "" {
		n, err := strconv.Atoi(r.Cursor)
		if err != nil || n <= 0 || n > len(pks) {
			return nil, errorf(CodeBadRequest, "cursor %q is not one this request's pages gave", r.Cursor)
		}
		from = n
	}
	if err := s.syncDeny(ctx); err != nil {
		return nil, err
	}
	recs, err := s.d.Index.Get(ctx, pks[from:])
	if err != nil {
		return nil, indexErr(err)
	}
	// Where each record's key is among the asked-for ones, for the cursor.
	pos := make(map[string]int, len(pks)-from)
	for i := len(pks) - 1; i >= from; i-- {
		pos[pks[i]] = i
	}
	res := &GetResponse{Records: []Record{}}
	for i := range recs {
		if s.d.Deny.Denied(recs[i].PostID) {
			continue
		}
		if len(res.Records) == limit {
			res.NextCursor = strconv.Itoa(pos[recs[i].PK])
			break
		}
		if !r.Thumbnails {
			recs[i].Thumbnail = nil
		}
		res.Records = append(res.Records, recordReply(&recs[i]))
	}
	if len(res.Records) == 0 && r.Cursor == "" && res.NextCursor == "" {
		return nil, errorf(CodeNotFound, "no record with those ids")
	}
	return res, nil
}

func (s *Service) stats(ctx context.Context, _ []byte) (any, error) {
	n, err := s.d.Index.Count(ctx)
	if err != nil {
		return nil, indexErr(err)
	}
	return &StatsResponse{Records: n, Model: s.d.Encoder.Version(), Dim: s.d.Encoder.Dim()}, nil
}
