package milvus

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/milvus-io/milvus/client/v2/column"
	"github.com/milvus-io/milvus/client/v2/entity"
	"github.com/milvus-io/milvus/client/v2/milvusclient"

	"github.com/xmodal/xmodal/domain"
)

// ErrClosed is returned by Apply after Close.
var ErrClosed = errors.New("milvus index: closed")

// The writer coalesces concurrent Apply calls into rounds. A round reads the
// versions and deny-list entries of its posts (Strong), works out every change's
// outcome exactly as the embedded index does, then writes: deletes, upserts of the
// records (and codes, PDQ hashes), and last the version rows and deny-list rows.
// Every RPC is retried on Unavailable/ResourceExhausted (bounded); a round that fails
// fails every Apply call in it, and since every write is idempotent the caller's
// redelivery converges. Apply returns only after Milvus acknowledged every write.
type writer struct {
	ix     *Index
	reqs   chan *applyReq
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	rounds, rows atomic.Int64
}

type applyReq struct {
	changes []domain.Change
	out     []domain.Outcome
	err     error
	done    chan struct{}
}

func newWriter(ix *Index) *writer {
	ctx, cancel := context.WithCancel(context.Background())
	w := &writer{ix: ix, reqs: make(chan *applyReq), ctx: ctx, cancel: cancel}
	w.wg.Add(1)
	go w.loop()
	return w
}

func (w *writer) close() {
	w.cancel()
	w.wg.Wait()
}

func rowsOf(r *applyReq) int {
	n := 0
	for i := range r.changes {
		n += max(1, len(r.changes[i].Records))
	}
	return n
}

func (w *writer) loop() {
	defer w.wg.Done()
	o := w.ix.opt
	for {
		var first *applyReq
		select {
		case first = <-w.reqs:
		case <-w.ctx.Done():
			return
		}
		batch := []*applyReq{first}
		n := rowsOf(first)
		if o.Linger > 0 {
			t := time.NewTimer(o.Linger)
		collect:
			for n < o.BatchSize {
				select {
				case r := <-w.reqs:
					batch = append(batch, r)
					n += rowsOf(r)
				case <-t.C:
					break collect
				case <-w.ctx.Done():
					break collect
				}
			}
			t.Stop()
		} else {
		drain:
			for n < o.BatchSize {
				select {
				case r := <-w.reqs:
					batch = append(batch, r)
					n += rowsOf(r)
				default:
					break drain
				}
			}
		}
		err := w.round(w.ctx, batch)
		for _, r := range batch {
			if err != nil {
				r.err = err
				r.out = nil
			}
			close(r.done)
		}
	}
}

// Apply writes the changes (see domain.Writer): it returns when Milvus acknowledged
// every write of the round that carried them.
func (ix *Index) Apply(ctx context.Context, changes []domain.Change) ([]domain.Outcome, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(changes) == 0 {
		return []domain.Outcome{}, nil
	}
	if err := ix.validate(changes); err != nil {
		return nil, err
	}
	r := &applyReq{changes: changes, out: make([]domain.Outcome, len(changes)), done: make(chan struct{})}
	select {
	case ix.w.reqs <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-ix.w.ctx.Done():
		return nil, ErrClosed
	}
	select {
	case <-r.done:
		return r.out, r.err
	case <-ctx.Done():
		// The round goes on; its writes are idempotent, and the caller will not ack.
		return nil, ctx.Err()
	}
}

func (ix *Index) validate(changes []domain.Change) error {
	o := ix.opt
	for i := range changes {
		ch := &changes[i]
		if ch.PostID == "" || len(ch.PostID) > o.MaxPostID {
			return fmt.Errorf("milvus index: post id %q: want 1..%d bytes", ch.PostID, o.MaxPostID)
		}
		for j := range ch.Records {
			r := &ch.Records[j]
			switch {
			case len(r.Vector) != o.Dim:
				return fmt.Errorf("milvus index: record %q has dimension %d, want %d", r.PK, len(r.Vector), o.Dim)
			case r.PostID != ch.PostID || r.PK != domain.PrimaryKey(r.PostID, r.Modality) || !r.Modality.Valid():
				return fmt.Errorf("milvus index: record %q does not belong to post %q", r.PK, ch.PostID)
			case len(r.Code) > 0 && o.CodeBits <= 0:
				return fmt.Errorf("milvus index: record %q carries a hash code but milvus.code_bits is off", r.PK)
			case len(r.Code) > 0 && len(r.Code)*8 != o.CodeBits:
				return fmt.Errorf("milvus index: record %q has a %d-bit code, the collection holds %d-bit codes", r.PK, len(r.Code)*8, o.CodeBits)
			case len(r.PDQ) > 0 && len(r.PDQ) != pdqBits/8:
				return fmt.Errorf("milvus index: record %q has a %d-byte PDQ hash, want %d", r.PK, len(r.PDQ), pdqBits/8)
			case len(r.Author) > maxAuthor:
				return fmt.Errorf("milvus index: record %q: author longer than %d bytes", r.PK, maxAuthor)
			case len(r.Labels) > o.MaxLabels:
				return fmt.Errorf("milvus index: record %q has %d labels, the collection holds at most %d (milvus.max_labels)", r.PK, len(r.Labels), o.MaxLabels)
			case len(r.Text) > maxText:
				return fmt.Errorf("milvus index: record %q: text longer than %d bytes", r.PK, maxText)
			case len(r.MediaURL) > maxMediaURL:
				return fmt.Errorf("milvus index: record %q: media URL longer than %d bytes", r.PK, maxMediaURL)
			case len(r.ModelVersion) > maxModelVer:
				return fmt.Errorf("milvus index: record %q: model version longer than %d bytes", r.PK, maxModelVer)
			}
			for _, l := range r.Labels {
				if len(l) > maxLabel {
					return fmt.Errorf("milvus index: record %q: label longer than %d bytes", r.PK, maxLabel)
				}
			}
		}
	}
	return nil
}

// postState is what a round knows of a post while it works out outcomes.
type postState struct {
	seq     uint64
	exists  bool // a version row exists
	denied  bool
	newDeny bool
	final   int // 0 untouched, 1 upsert, 2 delete
	records []domain.Record
}

const (
	finalNone = iota
	finalUpsert
	finalDelete
)

func (w *writer) round(ctx context.Context, batch []*applyReq) error {
	ix := w.ix
	w.rounds.Add(1)
	var ids []string
	states := map[string]*postState{}
	for _, r := range batch {
		for i := range r.changes {
			id := r.changes[i].PostID
			if states[id] == nil {
				states[id] = &postState{}
				ids = append(ids, id)
			}
		}
	}
	// 1. what Milvus holds: versions, deny-list entries and the records present
	// (Strong reads, in parallel: each waits for the server's time tick).
	var seqs, denied map[string]int64
	present := map[string]bool{}
	err := parallel(
		func() (err error) { seqs, err = ix.queryInt64(ctx, ix.l.posts.name, fPostID, fSeq, ids); return },
		func() (err error) { denied, err = ix.queryInt64(ctx, ix.l.deny.name, fPostID, fDeniedAt, ids); return },
		func() error {
			// By primary key (the three a post may have): a key lookup, where a
			// post_id filter would scan the collection.
			cands := make([]string, 0, 3*len(ids))
			for _, id := range ids {
				for _, m := range domain.Modalities {
					cands = append(cands, domain.PrimaryKey(id, m))
				}
			}
			pks, err := ix.queryStrings(ctx, ix.l.records.name, fPK, fPK, cands)
			for _, pk := range pks {
				present[pk] = true
			}
			return err
		},
	)
	if err != nil {
		return err
	}
	for id, st := range states {
		if s, ok := seqs[id]; ok {
			st.exists, st.seq = true, uint64(s)
		}
		_, st.denied = denied[id]
	}
	// 2. outcomes, in order, as the embedded index decides them.
	for _, r := range batch {
		for i := range r.changes {
			ch := &r.changes[i]
			st := states[ch.PostID]
			switch {
			case ch.Delete:
				st.exists, st.seq, st.final, st.records = false, 0, finalDelete, nil
				if ch.Deny && !st.denied {
					st.denied, st.newDeny = true, true
				}
				r.out[i] = domain.Deleted
			case st.denied:
				r.out[i] = domain.Denied
			case ch.Seq != 0 && st.exists && st.seq != 0 && ch.Seq < st.seq:
				r.out[i] = domain.Stale
			default:
				st.exists, st.seq, st.final, st.records = true, ch.Seq, finalUpsert, ch.Records
				r.out[i] = domain.Applied
			}
		}
	}
	// 3. the writes.
	var (
		recs                              []*domain.Record
		delRec, delCode, delPDQ, delPosts []string
		postIDs                           []string
		postSeqs                          []int64
		denyIDs                           []string
	)
	for _, id := range ids {
		st := states[id]
		switch st.final {
		case finalDelete:
			for _, m := range domain.Modalities {
				pk := domain.PrimaryKey(id, m)
				delRec, delCode, delPDQ = append(delRec, pk), append(delCode, pk), append(delPDQ, pk)
			}
			delPosts = append(delPosts, id)
		case finalUpsert:
			has := map[domain.Modality]*domain.Record{}
			for j := range st.records {
				has[st.records[j].Modality] = &st.records[j]
				recs = append(recs, &st.records[j])
			}
			// Remove what the post had and the new version lacks (a code or PDQ
			// row exists only while its record does: see the write order below).
			for _, m := range domain.Modalities {
				pk := domain.PrimaryKey(id, m)
				if !present[pk] {
					continue
				}
				r := has[m]
				if r == nil {
					delRec = append(delRec, pk)
				}
				if r == nil || len(r.Code) == 0 {
					delCode = append(delCode, pk)
				}
				if r == nil || len(r.PDQ) == 0 {
					delPDQ = append(delPDQ, pk)
				}
			}
			postIDs = append(postIDs, id)
			postSeqs = append(postSeqs, int64(st.seq))
		}
		if st.newDeny {
			denyIDs = append(denyIDs, id)
		}
	}
	// The write order keeps one invariant through a crash at any point: a code or
	// PDQ row exists only while the record row of its key does (side rows are
	// deleted before records and written after them). Version and deny-list rows
	// come last; a round that fails is redone whole by the caller's redelivery.
	l := ix.l
	side := func(t *table) bool { return t != nil && !l.single }
	err = parallel(
		func() error {
			if !side(l.code) {
				return nil
			}
			return ix.deleteIn(ctx, l.code.name, fPK, delCode)
		},
		func() error {
			if !side(l.pdq) {
				return nil
			}
			return ix.deleteIn(ctx, l.pdq.name, fPK, delPDQ)
		},
		func() error { return ix.deleteIn(ctx, l.posts.name, fPostID, delPosts) },
	)
	if err != nil {
		return err
	}
	if err := ix.deleteIn(ctx, l.records.name, fPK, delRec); err != nil {
		return err
	}
	bs := ix.opt.BatchSize
	for from := 0; from < len(recs); from += bs {
		chunk := recs[from:min(from+bs, len(recs))]
		if err := ix.upsert(ctx, l.records.name, ix.recordColumns(chunk)); err != nil {
			return err
		}
		w.rows.Add(int64(len(chunk)))
	}
	sideUpserts := func(t *table, field string) func() error {
		return func() error {
			if !side(t) {
				return nil
			}
			for from := 0; from < len(recs); from += bs {
				if cols := ix.sideColumns(recs[from:min(from+bs, len(recs))], field); cols != nil {
					if err := ix.upsert(ctx, t.name, cols); err != nil {
						return err
					}
				}
			}
			return nil
		}
	}
	if err := parallel(sideUpserts(l.code, fCode), sideUpserts(l.pdq, fPDQ)); err != nil {
		return err
	}
	now := time.Now().UnixNano()
	return parallel(
		func() error {
			for from := 0; from < len(postIDs); from += bs {
				to := min(from+bs, len(postIDs))
				err := ix.upsert(ctx, l.posts.name, []column.Column{
					column.NewColumnVarChar(fPostID, postIDs[from:to]),
					column.NewColumnInt64(fSeq, postSeqs[from:to]),
					dummyColumn(to - from),
				})
				if err != nil {
					return err
				}
			}
			return nil
		},
		func() error {
			for from := 0; from < len(denyIDs); from += bs {
				to := min(from+bs, len(denyIDs))
				ts := make([]int64, to-from)
				for i := range ts {
					ts[i] = now
				}
				err := ix.upsert(ctx, l.deny.name, []column.Column{
					column.NewColumnVarChar(fPostID, denyIDs[from:to]),
					column.NewColumnInt64(fDeniedAt, ts),
					dummyColumn(to - from),
				})
				if err != nil {
					return err
				}
			}
			return nil
		},
	)
}

// parallel runs the functions concurrently and joins their errors.
func parallel(fns ...func() error) error {
	errs := make([]error, len(fns))
	var wg sync.WaitGroup
	for i, f := range fns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func dummyColumn(n int) column.Column {
	v := make([][]float32, n)
	for i := range v {
		v[i] = []float32{0, 0}
	}
	return column.NewColumnFloatVector(fDummy, 2, v)
}

// encodeTime stores a time as Unix nanoseconds; the zero time as MinInt64 (before
// every Since, so filters treat it as the embedded index does).
func encodeTime(t time.Time) int64 {
	if t.IsZero() {
		return math.MinInt64
	}
	return t.UnixNano()
}

func decodeTime(n int64) time.Time {
	if n == math.MinInt64 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func labelsOf(r *domain.Record) []string {
	if r.Labels == nil {
		return []string{}
	}
	return r.Labels
}

func (ix *Index) recordColumns(recs []*domain.Record) []column.Column {
	n := len(recs)
	var (
		pk, post, mod, author, mv, text, url, thumb, codeHex, pdqHex = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		created, pdqQ                                                = make([]int64, n), make([]int64, n)
		labels                                                       = make([][]string, n)
		vecs                                                         = make([][]float32, n)
		codes, pdqs                                                  = make([][]byte, n), make([][]byte, n)
		hasCode, hasPDQ                                              = make([]bool, n), make([]bool, n)
	)
	codeBytes := max(ix.l.codeBits/8, 0)
	for i, r := range recs {
		pk[i], post[i], mod[i], author[i], mv[i] = r.PK, r.PostID, string(r.Modality), r.Author, r.ModelVersion
		text[i], url[i] = r.Text, r.MediaURL
		if len(r.Thumbnail) > 0 {
			if s := base64.StdEncoding.EncodeToString(r.Thumbnail); len(s) <= maxThumbnail {
				thumb[i] = s
			} else {
				ix.log.Warn("thumbnail too large for milvus, left out", "pk", r.PK, "bytes", len(r.Thumbnail))
			}
		}
		codeHex[i], pdqHex[i] = hex.EncodeToString(r.Code), hex.EncodeToString(r.PDQ)
		created[i], pdqQ[i] = encodeTime(r.CreatedAt), int64(r.PDQQuality)
		labels[i], vecs[i] = labelsOf(r), r.Vector
		hasCode[i], hasPDQ[i] = len(r.Code) > 0, len(r.PDQ) > 0
		codes[i], pdqs[i] = r.Code, r.PDQ
		if !hasCode[i] {
			codes[i] = make([]byte, codeBytes)
		}
		if !hasPDQ[i] {
			pdqs[i] = make([]byte, pdqBits/8)
		}
	}
	cols := []column.Column{
		column.NewColumnVarChar(fPK, pk), column.NewColumnVarChar(fPostID, post), column.NewColumnVarChar(fModality, mod),
		column.NewColumnVarChar(fAuthor, author), column.NewColumnInt64(fCreatedAt, created),
		column.NewColumnVarCharArray(fLabels, labels), column.NewColumnVarChar(fModelVersion, mv),
		column.NewColumnVarChar(fText, text), column.NewColumnVarChar(fMediaURL, url), column.NewColumnVarChar(fThumbnail, thumb),
		column.NewColumnFloatVector(fVector, ix.opt.Dim, vecs),
	}
	if ix.l.codeBits > 0 {
		cols = append(cols, column.NewColumnVarChar(fCodeHex, codeHex))
	}
	if !ix.opt.DisablePDQ {
		cols = append(cols, column.NewColumnVarChar(fPDQHex, pdqHex), column.NewColumnInt64(fPDQQuality, pdqQ))
	}
	if ix.l.single {
		if ix.l.codeBits > 0 {
			cols = append(cols, column.NewColumnBool(fHasCode, hasCode), column.NewColumnBinaryVector(fCode, ix.l.codeBits, codes))
		}
		if !ix.opt.DisablePDQ {
			cols = append(cols, column.NewColumnBool(fHasPDQ, hasPDQ), column.NewColumnBinaryVector(fPDQ, pdqBits, pdqs))
		}
	}
	return cols
}

// sideColumns builds the rows of the code or PDQ collection (split layout) for the
// records that carry one; nil when none does.
func (ix *Index) sideColumns(recs []*domain.Record, field string) []column.Column {
	var pk, post, mod, author []string
	var created, quality []int64
	var labels [][]string
	var vecs [][]byte
	for _, r := range recs {
		v := r.Code
		if field == fPDQ {
			v = r.PDQ
		}
		if len(v) == 0 {
			continue
		}
		pk, post, mod, author = append(pk, r.PK), append(post, r.PostID), append(mod, string(r.Modality)), append(author, r.Author)
		created, labels, vecs = append(created, encodeTime(r.CreatedAt)), append(labels, labelsOf(r)), append(vecs, v)
		quality = append(quality, int64(r.PDQQuality))
	}
	if len(pk) == 0 {
		return nil
	}
	dim := ix.l.codeBits
	if field == fPDQ {
		dim = pdqBits
	}
	cols := []column.Column{
		column.NewColumnVarChar(fPK, pk), column.NewColumnVarChar(fPostID, post), column.NewColumnVarChar(fModality, mod),
		column.NewColumnVarChar(fAuthor, author), column.NewColumnInt64(fCreatedAt, created),
		column.NewColumnVarCharArray(fLabels, labels), column.NewColumnBinaryVector(field, dim, vecs),
	}
	if field == fPDQ {
		cols = append(cols, column.NewColumnInt64(fPDQQuality, quality))
	}
	return cols
}

func (ix *Index) upsert(ctx context.Context, coll string, cols []column.Column) error {
	return ix.call(ctx, "upsert into "+coll, func(ctx context.Context) error {
		_, err := ix.c.Upsert(ctx, milvusclient.NewColumnBasedInsertOption(coll, cols...), noRetry)
		return err
	})
}

// inChunk is how many values one `in [...]` expression carries.
const inChunk = 1000

func quoteList(vals []string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, v := range vals {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Quote(v))
	}
	b.WriteByte(']')
	return b.String()
}

func (ix *Index) deleteIn(ctx context.Context, coll, field string, vals []string) error {
	for from := 0; from < len(vals); from += inChunk {
		expr := field + " in " + quoteList(vals[from:min(from+inChunk, len(vals))])
		err := ix.call(ctx, "delete from "+coll, func(ctx context.Context) error {
			_, err := ix.c.Delete(ctx, milvusclient.NewDeleteOption(coll).WithExpr(expr), noRetry)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// queryInt64 returns key → value of an int64 field for the keys present (Strong).
func (ix *Index) queryInt64(ctx context.Context, coll, keyField, valField string, keys []string) (map[string]int64, error) {
	out := map[string]int64{}
	for from := 0; from < len(keys); from += inChunk {
		chunk := keys[from:min(from+inChunk, len(keys))]
		var rs milvusclient.ResultSet
		err := ix.call(ctx, "query "+coll, func(ctx context.Context) error {
			var err error
			rs, err = ix.c.Query(ctx, milvusclient.NewQueryOption(coll).WithFilter(keyField+" in "+quoteList(chunk)).
				WithOutputFields(keyField, valField).WithConsistencyLevel(entity.ClStrong), noRetry)
			return err
		})
		if err != nil {
			return nil, err
		}
		kc, vc := rs.GetColumn(keyField), rs.GetColumn(valField)
		if kc == nil || vc == nil {
			if rs.ResultCount == 0 {
				continue
			}
			return nil, fmt.Errorf("milvus: query %s returned no %s/%s column", coll, keyField, valField)
		}
		for i := 0; i < kc.Len(); i++ {
			k, err := kc.GetAsString(i)
			if err != nil {
				return nil, err
			}
			v, err := vc.GetAsInt64(i)
			if err != nil {
				return nil, err
			}
			out[k] = v
		}
	}
	return out, nil
}

// queryStrings returns the values of field out of the rows whose keyField is one
// of keys (Strong).
func (ix *Index) queryStrings(ctx context.Context, coll, keyField, out string, keys []string) ([]string, error) {
	var vals []string
	for from := 0; from < len(keys); from += inChunk {
		chunk := keys[from:min(from+inChunk, len(keys))]
		var rs milvusclient.ResultSet
		err := ix.call(ctx, "query "+coll, func(ctx context.Context) error {
			var err error
			rs, err = ix.c.Query(ctx, milvusclient.NewQueryOption(coll).WithFilter(keyField+" in "+quoteList(chunk)).
				WithOutputFields(out).WithConsistencyLevel(entity.ClStrong), noRetry)
			return err
		})
		if err != nil {
			return nil, err
		}
		c := rs.GetColumn(out)
		if c == nil {
			continue
		}
		for i := 0; i < c.Len(); i++ {
			v, err := c.GetAsString(i)
			if err != nil {
				return nil, err
			}
			vals = append(vals, v)
		}
	}
	return vals, nil
}

// IsDenied reports whether the post id is on the deny-list (Strong).
func (ix *Index) IsDenied(ctx context.Context, postID string) (bool, error) {
	m, err := ix.queryInt64(ctx, ix.l.deny.name, fPostID, fDeniedAt, []string{postID})
	if err != nil {
		return false, err
	}
	_, ok := m[postID]
	return ok, nil
}

// DeleteAuthor removes every post of an author (a takedown), deny-listing each when
// deny is set, and returns the post ids it removed. It goes through Apply, so the
// versions and the deny-list stay consistent.
func (ix *Index) DeleteAuthor(ctx context.Context, author string, deny bool) ([]string, error) {
	var removed []string
	seen := map[string]bool{}
	for round := 0; round < 1000; round++ {
		var rs milvusclient.ResultSet
		err := ix.call(ctx, "query "+ix.l.records.name, func(ctx context.Context) error {
			var err error
			rs, err = ix.c.Query(ctx, milvusclient.NewQueryOption(ix.l.records.name).
				WithFilter(fAuthor+" == "+strconv.Quote(author)).WithOutputFields(fPostID).
				WithLimit(4096).WithConsistencyLevel(entity.ClStrong), noRetry)
			return err
		})
		if err != nil {
			return removed, err
		}
		col := rs.GetColumn(fPostID)
		if col == nil || col.Len() == 0 {
			return removed, nil
		}
		var changes []domain.Change
		for i := 0; i < col.Len(); i++ {
			id, _ := col.GetAsString(i)
			if !seen[id] {
				seen[id] = true
				changes = append(changes, domain.Change{PostID: id, Delete: true, Deny: deny})
			}
		}
		if len(changes) == 0 {
			return removed, fmt.Errorf("milvus: records of author %q are still visible after their deletion", author)
		}
		if _, err := ix.Apply(ctx, changes); err != nil {
			return removed, err
		}
		for _, c := range changes {
			removed = append(removed, c.PostID)
		}
	}
	return removed, fmt.Errorf("milvus: author %q has too many posts for one call", author)
}
