package milvus

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/milvus-io/milvus/client/v2/column"
	"github.com/milvus-io/milvus/client/v2/entity"
	"github.com/milvus-io/milvus/client/v2/milvusclient"

	"github.com/xmodal/xmodal/domain"
)

// maxTopK is Milvus's limit on a search's topk (and offset + limit).
const maxTopK = 16384

// displayFields are what a hit needs (and its bank matches, schema 2).
var displayFields = []string{fPostID, fModality, fAuthor, fCreatedAt, fLabels, fText, fMediaURL, fThumbnail}

func (ix *Index) displayFields() []string {
	if ix.l.schema >= schemaMatches {
		return append(slices.Clip(displayFields), fMatches)
	}
	return displayFields
}

// checkMatchFilter refuses matched_banks on a collection that predates
// bank matches.
func (ix *Index) checkMatchFilter(f domain.Filter) error {
	if len(f.MatchedBanks) > 0 && ix.l.schema < schemaMatches {
		return fmt.Errorf("%w: filter.matched_banks: the milvus collection %s predates bank matches; migrate it (xmodal milvus migrate)", domain.ErrInvalidQuery, ix.recordsC)
	}
	return nil
}

// KeepsMatches reports whether records keep their bank matches (collections
// of schema 2: hits carry matches and filters read matched_banks).
func (ix *Index) KeepsMatches() bool { return ix.l.schema >= schemaMatches }

// errNoClusters refuses cluster filters: the Milvus index keeps no
// near-duplicate clusters of its own; a deployment's shared clusters
// (sink/sharedclusters, clusters.enabled) turn such a filter into the
// members' post ids before it gets here (docs/clusters.md, "Milvus").
var errNoClusters = fmt.Errorf("%w: cluster filters need near-duplicate clusters (clusters.enabled), which this deployment does not keep", domain.ErrInvalidQuery)

// FilterExpr turns a modality and a filter into a Milvus boolean expression ("" when
// nothing filters). Strings are quoted as Go literals, which Milvus's parser reads.
func FilterExpr(m domain.Modality, f domain.Filter) string {
	var parts []string
	if m != "" {
		parts = append(parts, fModality+" == "+strconv.Quote(string(m)))
	}
	if len(f.Authors) > 0 {
		parts = append(parts, fAuthor+" in "+quoteList(f.Authors))
	}
	if len(f.Posts) > 0 {
		parts = append(parts, fPostID+" in "+quoteList(f.Posts))
	}
	if !f.Since.IsZero() {
		parts = append(parts, fCreatedAt+" >= "+strconv.FormatInt(encodeTime(f.Since), 10))
	}
	if !f.Until.IsZero() {
		parts = append(parts, fCreatedAt+" < "+strconv.FormatInt(encodeTime(f.Until), 10))
	}
	if len(f.Labels) > 0 {
		parts = append(parts, "array_contains_any("+fLabels+", "+quoteList(f.Labels)+")")
	}
	if len(f.MatchedBanks) > 0 {
		parts = append(parts, "array_contains_any("+fMatchedBanks+", "+quoteList(f.MatchedBanks)+")")
	}
	return strings.Join(parts, " && ")
}

func and(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return "(" + a + ") && (" + b + ")"
}

// cand is a search candidate: its key, raw Milvus score (IP, or Hamming distance)
// and, when asked for, its fields.
type cand struct {
	pk    string
	raw   float32
	score float32
	row   int
	rs    *milvusclient.ResultSet
	// binary: raw is a Hamming distance, reported as Hit.Distance
	binary bool
}

func (c *cand) distance() *int {
	if !c.binary {
		return nil
	}
	d := int(c.raw)
	return &d
}

// Search answers a vector query with the plan it names (see docs/milvus.md).
func (ix *Index) Search(ctx context.Context, q domain.VectorQuery) ([]domain.Hit, error) {
	if q.K <= 0 {
		return nil, fmt.Errorf("%w: k must be positive, got %d", domain.ErrInvalidQuery, q.K)
	}
	if q.K > maxTopK {
		return nil, fmt.Errorf("%w: k %d exceeds Milvus's limit of %d", domain.ErrInvalidQuery, q.K, maxTopK)
	}
	if q.Modality != "" && !q.Modality.Valid() {
		return nil, fmt.Errorf("%w: unknown modality %q", domain.ErrInvalidQuery, q.Modality)
	}
	if q.Candidates < 0 {
		return nil, fmt.Errorf("%w: candidates must not be negative, got %d", domain.ErrInvalidQuery, q.Candidates)
	}
	if q.Filter.HasClusters() {
		return nil, errNoClusters
	}
	if err := ix.checkMatchFilter(q.Filter); err != nil {
		return nil, err
	}
	expr := FilterExpr(q.Modality, q.Filter)
	switch q.Plan {
	case "", domain.PlanExact, domain.PlanANN:
		if len(q.Vector) != ix.opt.Dim {
			return nil, fmt.Errorf("%w: query vector has dimension %d, the index holds %d", domain.ErrInvalidQuery, len(q.Vector), ix.opt.Dim)
		}
		cands, err := ix.searchTies(ctx, ix.l.records, fVector, entity.FloatVector(q.Vector), q.K, expr, q.Plan == domain.PlanANN, ix.displayFields())
		if err != nil {
			return nil, err
		}
		return hitsFrom(cands)
	case domain.PlanHash:
		cands, err := ix.codeSearch(ctx, q, q.K, expr)
		if err != nil {
			return nil, err
		}
		if ix.l.single {
			return hitsFrom(cands)
		}
		return ix.hydrate(ctx, cands)
	case domain.PlanHybrid:
		if len(q.Vector) != ix.opt.Dim {
			return nil, fmt.Errorf("%w: query vector has dimension %d, the index holds %d", domain.ErrInvalidQuery, len(q.Vector), ix.opt.Dim)
		}
		c := q.Candidates
		if c <= 0 {
			c = ix.opt.Candidates
		}
		c = max(min(c, maxTopK), q.K)
		cands, err := ix.codeSearch(ctx, q, c, expr)
		if err != nil {
			return nil, err
		}
		return ix.rerank(ctx, q, cands)
	default:
		return nil, fmt.Errorf("%w: plan %q is not supported by the Milvus index (exact, ann, hash, hybrid)", domain.ErrInvalidQuery, q.Plan)
	}
}

func (ix *Index) codeSearch(ctx context.Context, q domain.VectorQuery, k int, expr string) ([]cand, error) {
	if ix.l.code == nil {
		return nil, fmt.Errorf("%w: plan %s needs hash codes; this index has none (milvus.code_bits is off)", domain.ErrInvalidQuery, q.Plan)
	}
	if len(q.Code)*8 != ix.l.codeBits {
		return nil, fmt.Errorf("%w: query code has %d bits, the index holds %d-bit codes", domain.ErrInvalidQuery, len(q.Code)*8, ix.l.codeBits)
	}
	var out []string
	if ix.l.single {
		expr = and(fHasCode+" == true", expr)
		out = ix.displayFields()
	}
	return ix.searchTies(ctx, ix.l.code, fCode, entity.BinaryVector(q.Code), k, expr, false, out)
}

// searchParams returns the search parameters of a field's index for a plan.
func (ix *Index) searchParams(field string, k int, approximate bool) map[string]string {
	info := ix.indexOf(field)
	p := map[string]string{}
	switch info.typ {
	case IndexIVFFlat, IndexBinIVFFlat, "IVF_SQ8", "IVF_PQ":
		nlist := info.nlist
		if nlist <= 0 {
			nlist = ix.opt.NList
		}
		np := nlist // exact: every list
		if approximate {
			np = min(ix.opt.NProbe, nlist)
		}
		p["nprobe"] = strconv.Itoa(np)
	case IndexHNSW:
		ef := ix.opt.ExactEF
		if approximate {
			ef = ix.opt.EF
		}
		p["ef"] = strconv.Itoa(min(max(ef, k), 32768))
	}
	return p
}

// searchTies searches t's vector field for the k best candidates, ranked by score and
// then primary key. Milvus breaks ties in its own order, so when the k-th score ties
// with the last one returned, the search is repeated with a larger limit until the
// whole tie group is in (or Milvus's topk limit is reached).
func (ix *Index) searchTies(ctx context.Context, t *table, field string, vec entity.Vector, k int, expr string, approximate bool, output []string) ([]cand, error) {
	return ix.searchTiesWithin(ctx, t, field, vec, k, expr, approximate, output, -1)
}

// searchTiesWithin is searchTies for binary vectors within Hamming distance
// maxDist (a range search: the server returns only those, not the topk
// nearest whatever their distance); maxDist < 0 is searchTies.
func (ix *Index) searchTiesWithin(ctx context.Context, t *table, field string, vec entity.Vector, k int, expr string, approximate bool, output []string, maxDist int) ([]cand, error) {
	binary := field != fVector
	bits := 0
	if binary {
		bits = len(vec.(entity.BinaryVector)) * 8
	}
	limit := min(k+8, maxTopK)
	if binary {
		limit = min(2*k+16, maxTopK)
	}
	for {
		params := ix.searchParams(field, limit, approximate)
		if maxDist >= 0 {
			// Milvus's range search keeps range_filter <= distance < radius.
			params["radius"] = strconv.Itoa(maxDist + 1)
			params["range_filter"] = "0"
		}
		var rss []milvusclient.ResultSet
		err := ix.call(ctx, "search "+t.name, func(ctx context.Context) error {
			opt := milvusclient.NewSearchOption(t.name, limit, []entity.Vector{vec}).WithANNSField(field).
				WithConsistencyLevel(ix.cl).WithOutputFields(output...)
			if expr != "" {
				opt.WithFilter(expr)
			}
			if len(params) > 0 {
				opt.WithAnnParam(annParams(params))
			}
			var err error
			rss, err = ix.c.Search(ctx, opt, noRetry)
			return err
		})
		if err != nil {
			return nil, err
		}
		if len(rss) != 1 {
			return nil, fmt.Errorf("milvus: search returned %d result sets for one query", len(rss))
		}
		rs := &rss[0]
		if rs.Err != nil {
			return nil, fmt.Errorf("milvus: search %s: %w", t.name, rs.Err)
		}
		n := rs.ResultCount
		cands := make([]cand, n)
		for i := 0; i < n; i++ {
			pk, err := rs.IDs.GetAsString(i)
			if err != nil {
				return nil, err
			}
			raw := rs.Scores[i]
			score := raw
			if binary {
				score = 1 - 2*raw/float32(bits)
			}
			cands[i] = cand{pk: pk, raw: raw, score: score, row: i, rs: rs, binary: binary}
		}
		sortCands(cands)
		if n < limit || limit >= maxTopK || n <= k || cands[k-1].score != cands[n-1].score {
			if limit >= maxTopK && n > k && cands[k-1].score == cands[n-1].score {
				ix.log.Warn("milvus: tie group larger than the topk limit; ties at the cut are not ordered by key", "collection", t.name, "limit", limit)
			}
			if len(cands) > k {
				cands = cands[:k]
			}
			return cands, nil
		}
		limit = min(limit*4, maxTopK)
	}
}

// annParams passes raw search parameters.
type annParams map[string]string

func (p annParams) Params() map[string]any {
	out := make(map[string]any, len(p))
	for k, v := range p {
		if n, err := strconv.Atoi(v); err == nil {
			out[k] = n
		} else {
			out[k] = v
		}
	}
	return out
}

func sortCands(c []cand) {
	sort.Slice(c, func(i, j int) bool {
		if c[i].score != c[j].score {
			return c[i].score > c[j].score
		}
		return c[i].pk < c[j].pk
	})
}

// rowReader reads typed values from a result set's columns.
type rowReader struct {
	cols map[string]column.Column
}

func newRowReader(rs *milvusclient.ResultSet) rowReader {
	r := rowReader{cols: map[string]column.Column{}}
	for _, c := range rs.Fields {
		r.cols[c.Name()] = c
	}
	return r
}

func (r rowReader) str(name string, i int) string {
	c := r.cols[name]
	if c == nil {
		return ""
	}
	s, _ := c.GetAsString(i)
	return s
}

func (r rowReader) i64(name string, i int) int64 {
	c := r.cols[name]
	if c == nil {
		return 0
	}
	n, _ := c.GetAsInt64(i)
	return n
}

func (r rowReader) strs(name string, i int) []string {
	c := r.cols[name]
	if c == nil {
		return nil
	}
	v, err := c.Get(i)
	if err != nil {
		return nil
	}
	s, _ := v.([]string)
	if len(s) == 0 {
		return nil
	}
	return append([]string(nil), s...)
}

func (r rowReader) floats(name string, i int) []float32 {
	c := r.cols[name]
	if c == nil {
		return nil
	}
	v, err := c.Get(i)
	if err != nil {
		return nil
	}
	switch f := v.(type) {
	case entity.FloatVector:
		return append([]float32(nil), f...)
	case []float32:
		return append([]float32(nil), f...)
	}
	return nil
}

func (r rowReader) hit(i int, pk string, score float32) domain.Hit {
	m := domain.Modality(r.str(fModality, i))
	h := domain.Hit{
		PK: pk, PostID: r.str(fPostID, i), Modality: m, Score: score,
		Author: r.str(fAuthor, i), CreatedAt: decodeTime(r.i64(fCreatedAt, i)), Labels: r.strs(fLabels, i),
		Text: r.str(fText, i), MediaURL: r.str(fMediaURL, i),
	}
	if t := r.str(fThumbnail, i); t != "" {
		h.Thumbnail, _ = base64.StdEncoding.DecodeString(t)
	}
	if m := r.str(fMatches, i); m != "" {
		// Written by recordColumns; a row that does not decode has none.
		_ = json.Unmarshal([]byte(m), &h.Matches)
	}
	return h
}

func (r rowReader) record(i int) domain.Record {
	h := r.hit(i, r.str(fPK, i), 0)
	rec := domain.Record{
		PK: h.PK, PostID: h.PostID, Modality: h.Modality, Author: h.Author, CreatedAt: h.CreatedAt,
		ModelVersion: r.str(fModelVersion, i), Labels: h.Labels, Text: h.Text, MediaURL: h.MediaURL,
		Thumbnail: h.Thumbnail, Vector: r.floats(fVector, i), PDQQuality: int(r.i64(fPDQQuality, i)),
		Matches: h.Matches,
	}
	if s := r.str(fCodeHex, i); s != "" {
		rec.Code, _ = hex.DecodeString(s)
	}
	if s := r.str(fPDQHex, i); s != "" {
		rec.PDQ, _ = hex.DecodeString(s)
	}
	return rec
}

func hitsFrom(cands []cand) ([]domain.Hit, error) {
	hits := make([]domain.Hit, len(cands))
	var r rowReader
	var last *milvusclient.ResultSet
	for i, c := range cands {
		if c.rs != last {
			r, last = newRowReader(c.rs), c.rs
		}
		hits[i] = r.hit(c.row, c.pk, c.score)
		hits[i].Distance = c.distance()
	}
	return hits, nil
}

// fetch reads records by primary key from the records collection: pk → reader + row.
func (ix *Index) fetch(ctx context.Context, pks []string, fields []string, cl entity.ConsistencyLevel) (map[string]func() (rowReader, int), error) {
	out := map[string]func() (rowReader, int){}
	for from := 0; from < len(pks); from += inChunk {
		chunk := pks[from:min(from+inChunk, len(pks))]
		var rs milvusclient.ResultSet
		err := ix.call(ctx, "query "+ix.l.records.name, func(ctx context.Context) error {
			var err error
			rs, err = ix.c.Query(ctx, milvusclient.NewQueryOption(ix.l.records.name).WithFilter(fPK+" in "+quoteList(chunk)).
				WithOutputFields(fields...).WithConsistencyLevel(cl), noRetry)
			return err
		})
		if err != nil {
			return nil, err
		}
		r := newRowReader(&rs)
		for i := 0; i < rs.ResultCount; i++ {
			i := i
			out[r.str(fPK, i)] = func() (rowReader, int) { return r, i }
		}
	}
	return out, nil
}

// hydrate fills hits of the code collection (split layout) with the display fields
// of their records; a candidate whose record is gone is dropped.
func (ix *Index) hydrate(ctx context.Context, cands []cand) ([]domain.Hit, error) {
	pks := make([]string, len(cands))
	for i, c := range cands {
		pks[i] = c.pk
	}
	rows, err := ix.fetch(ctx, pks, append([]string{fPK}, ix.displayFields()...), ix.cl)
	if err != nil {
		return nil, err
	}
	hits := make([]domain.Hit, 0, len(cands))
	for _, c := range cands {
		if f := rows[c.pk]; f != nil {
			r, i := f()
			h := r.hit(i, c.pk, c.score)
			h.Distance = c.distance()
			hits = append(hits, h)
		}
	}
	return hits, nil
}

// rerank computes exact cosine over the candidates' float vectors (fetched from the
// records collection) and returns the k best, by score then primary key.
func (ix *Index) rerank(ctx context.Context, q domain.VectorQuery, cands []cand) ([]domain.Hit, error) {
	pks := make([]string, len(cands))
	for i, c := range cands {
		pks[i] = c.pk
	}
	rows, err := ix.fetch(ctx, pks, append([]string{fPK, fVector}, ix.displayFields()...), ix.cl)
	if err != nil {
		return nil, err
	}
	type scored struct {
		pk    string
		score float32
		dist  *int
		get   func() (rowReader, int)
	}
	var ss []scored
	for _, c := range cands {
		f := rows[c.pk]
		if f == nil {
			continue
		}
		r, i := f()
		v := r.floats(fVector, i)
		if len(v) != len(q.Vector) {
			continue
		}
		ss = append(ss, scored{pk: c.pk, score: dot(q.Vector, v), dist: c.distance(), get: f})
	}
	sort.Slice(ss, func(i, j int) bool {
		if ss[i].score != ss[j].score {
			return ss[i].score > ss[j].score
		}
		return ss[i].pk < ss[j].pk
	})
	if len(ss) > q.K {
		ss = ss[:q.K]
	}
	hits := make([]domain.Hit, len(ss))
	for i, s := range ss {
		r, row := s.get()
		hits[i] = r.hit(row, s.pk, s.score)
		hits[i].Distance = s.dist
	}
	return hits, nil
}

func dot(a, b []float32) float32 {
	var s float32
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// Get returns the records with the given primary keys, in order, skipping unknown keys.
func (ix *Index) Get(ctx context.Context, pks []string) ([]domain.Record, error) {
	fields := []string{fPK, fPostID, fModality, fAuthor, fCreatedAt, fModelVersion, fLabels, fText, fMediaURL, fThumbnail, fVector}
	if ix.l.codeBits > 0 {
		fields = append(fields, fCodeHex)
	}
	if !ix.opt.DisablePDQ {
		fields = append(fields, fPDQHex, fPDQQuality)
	}
	if ix.l.schema >= schemaMatches {
		fields = append(fields, fMatches)
	}
	rows, err := ix.fetch(ctx, pks, fields, ix.cl)
	if err != nil {
		return nil, err
	}
	out := make([]domain.Record, 0, len(pks))
	for _, pk := range pks {
		if f := rows[pk]; f != nil {
			r, i := f()
			out = append(out, r.record(i))
		}
	}
	return out, nil
}

// Count returns the number of records per modality.
func (ix *Index) Count(ctx context.Context) (map[domain.Modality]int, error) {
	out := map[domain.Modality]int{}
	for _, m := range domain.Modalities {
		var rs milvusclient.ResultSet
		err := ix.call(ctx, "count "+ix.l.records.name, func(ctx context.Context) error {
			var err error
			rs, err = ix.c.Query(ctx, milvusclient.NewQueryOption(ix.l.records.name).
				WithFilter(fModality+" == "+strconv.Quote(string(m))).WithOutputFields("count(*)").
				WithConsistencyLevel(ix.cl), noRetry)
			return err
		})
		if err != nil {
			return nil, err
		}
		c := rs.GetColumn("count(*)")
		if c == nil || c.Len() == 0 {
			return nil, fmt.Errorf("milvus: count of %s returned no count(*) column", ix.l.records.name)
		}
		n, err := c.GetAsInt64(0)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			out[m] = int(n)
		}
	}
	return out, nil
}

// MaxNearDupHashes bounds the hashes of one near-duplicate query (as the embedded index).
const MaxNearDupHashes = domain.MaxNearDupHashes

// NearDup returns the records whose PDQ hash is within q.MaxDistance bits of any
// of q.Hashes, nearest first, ties by primary key; at most q.K (0: all, up to
// Milvus's topk limit of 16384 per hash). Distance is the smallest distance to a
// query hash, Variant the index of that hash (the first on ties), Score
// 1 - distance/256 — as the embedded index.
func (ix *Index) NearDup(ctx context.Context, q domain.NearDupQuery) ([]domain.NearDupHit, error) {
	if err := q.Validate(); err != nil {
		return nil, err
	}
	if ix.l.pdq == nil {
		return nil, fmt.Errorf("%w: near-duplicate lookup needs PDQ hashes; this index keeps none (milvus.pdq off)", domain.ErrInvalidQuery)
	}
	k := q.K
	if k == 0 || k > maxTopK {
		k = maxTopK
	}
	if q.Filter.HasClusters() {
		return nil, errNoClusters
	}
	if err := ix.checkMatchFilter(q.Filter); err != nil {
		return nil, err
	}
	expr := FilterExpr("", q.Filter)
	if q.MinQuality > 0 {
		expr = and(expr, fPDQQuality+" >= "+strconv.Itoa(min(q.MinQuality, 100)))
	}
	if ix.l.single {
		expr = and(fHasPDQ+" == true", expr)
	}
	type best struct {
		c       cand
		variant int
	}
	found := map[string]best{}
	seen := map[string]bool{}
	for vi, h := range q.Hashes {
		if seen[string(h)] {
			continue
		}
		seen[string(h)] = true
		cands, err := ix.searchTiesWithin(ctx, ix.l.pdq, fPDQ, entity.BinaryVector(h), k, expr, false, nil, q.MaxDistance)
		if err != nil {
			return nil, err
		}
		for _, c := range cands {
			if int(c.raw) > q.MaxDistance {
				continue
			}
			if b, ok := found[c.pk]; !ok || c.raw < b.c.raw {
				found[c.pk] = best{c, vi}
			}
		}
	}
	cands := make([]cand, 0, len(found))
	for _, b := range found {
		c := b.c
		c.score = 1 - c.raw/pdqBits
		cands = append(cands, c)
	}
	sortCands(cands)
	if q.K > 0 && len(cands) > q.K {
		cands = cands[:q.K]
	}
	hits, err := ix.hydrate(ctx, cands)
	if err != nil {
		return nil, err
	}
	out := make([]domain.NearDupHit, len(hits))
	for i, h := range hits {
		out[i] = domain.NearDupHit{Hit: h, Variant: found[h.PK].variant}
	}
	return out, nil
}

var _ domain.NearDupSearcher = (*Index)(nil)
