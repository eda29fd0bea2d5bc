package milvus

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/milvus-io/milvus/client/v2/entity"
	"github.com/milvus-io/milvus/client/v2/milvusclient"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/internal/dedup"
	"github.com/xmodal/xmodal/internal/hamming"
)

// The batch near-duplicate job (xmodal dedup --milvus) reads the image
// records' PDQ hashes from the records collection, page by page in primary
// key order (as the migration does), at Strong consistency. Milvus keeps no
// incremental clusters, so there is no drift to report.

// ErrNoPDQ is returned by DedupItems for collections made without PDQ
// hashes (milvus.disable_pdq).
var ErrNoPDQ = errors.New("milvus: the collection keeps no PDQ hashes")

// dedupPage is the rows one query of DedupItems reads.
const dedupPage = 4096

// DedupItems lists the image posts created in [since, until) (zero:
// unbounded) whose PDQ quality is at least domain.LowPDQQuality, sorted by
// post id: the batch job's input (implements dedup.Source).
func (ix *Index) DedupItems(ctx context.Context, since, until time.Time) ([]dedup.Item, error) {
	if ix.opt.DisablePDQ {
		return nil, ErrNoPDQ
	}
	filter := fmt.Sprintf("%s == %s && %s >= %d", fModality, strconv.Quote(string(domain.ModalityImage)), fPDQQuality, domain.LowPDQQuality)
	if !since.IsZero() {
		filter += fmt.Sprintf(" && %s >= %d", fCreatedAt, since.UnixNano())
	}
	if !until.IsZero() {
		filter += fmt.Sprintf(" && %s < %d", fCreatedAt, until.UnixNano())
	}
	var out []dedup.Item
	err := ix.pageRowsWhere(ctx, ix.l.records.name, fPK, filter, []string{fPK, fPostID, fCreatedAt, fPDQHex}, dedupPage, func(r rowReader, n int) error {
		for i := range n {
			h, err := hex.DecodeString(r.str(fPDQHex, i))
			if err != nil || len(h) != domain.PDQBytes {
				return fmt.Errorf("milvus: record %q has a bad PDQ hash %q", r.str(fPK, i), r.str(fPDQHex, i))
			}
			c, err := hamming.FromBytes(h)
			if err != nil {
				return err
			}
			out = append(out, dedup.Item{Post: r.str(fPostID, i), At: r.i64(fCreatedAt, i), Sig: c})
		}
		return ctx.Err()
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b dedup.Item) int { return strings.Compare(a.Post, b.Post) })
	return out, nil
}

// Thumbnails returns the thumbnails of the posts' image records that have
// one (implements dedup.Source).
func (ix *Index) Thumbnails(ctx context.Context, posts []string) (map[string][]byte, error) {
	pks := make([]string, len(posts))
	for i, p := range posts {
		pks[i] = domain.PrimaryKey(p, domain.ModalityImage)
	}
	rows, err := ix.fetch(ctx, pks, []string{fPK, fPostID, fModality, fCreatedAt, fThumbnail}, ix.cl)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(rows))
	for pk, row := range rows {
		r, i := row()
		if h := r.hit(i, pk, 0); len(h.Thumbnail) > 0 {
			out[h.PostID] = h.Thumbnail
		}
	}
	return out, nil
}

// ClusterPartition implements dedup.Source: Milvus keeps no incremental
// clusters.
func (ix *Index) ClusterPartition() (map[string]uint64, int, bool) { return nil, 0, false }

var _ dedup.Source = (*Index)(nil)

// scanPage is the records one query of ScanRecords reads (each carries its
// vector).
const scanPage = 512

// ScanRecords visits the records in primary-key order after the key after
// (implements domain.RecordScanner: a retro sweep of text, URL and
// embedding bank entries reads it), a page at a time at Strong consistency;
// records carry what matching reads (ids, author, time, labels, text, media
// URL, vector), not their thumbnails. Milvus keeps no record matches from
// sweeps (a full-row upsert could race an indexer's newer version): a sweep
// there emits its events only.
func (ix *Index) ScanRecords(ctx context.Context, after string, fn func(r *domain.Record) error) error {
	fields := []string{fPK, fPostID, fModality, fAuthor, fCreatedAt, fModelVersion, fLabels, fText, fMediaURL, fVector}
	return ix.pageRowsAfter(ctx, ix.l.records.name, fPK, after, "", fields, scanPage, func(r rowReader, n int) error {
		for i := range n {
			rec := r.record(i)
			if err := fn(&rec); err != nil {
				return err
			}
		}
		return ctx.Err()
	})
}

var _ domain.RecordScanner = (*Index)(nil)

// pageRowsWhere calls fn with the rows of coll that pass filter, page rows
// at a time in key order (see pageRows).
func (ix *Index) pageRowsWhere(ctx context.Context, coll, key, filter string, fields []string, page int, fn func(r rowReader, n int) error) error {
	return ix.pageRowsAfter(ctx, coll, key, "", filter, fields, page, fn)
}

// pageRowsAfter is pageRowsWhere from the first key after after ("": from
// the first).
func (ix *Index) pageRowsAfter(ctx context.Context, coll, key, after, filter string, fields []string, page int, fn func(r rowReader, n int) error) error {
	last, first := after, after == ""
	for {
		expr := key + ` != "~none~"`
		if !first {
			expr = key + " > " + strconv.Quote(last)
		}
		if filter != "" {
			expr += " && " + filter
		}
		var rs milvusclient.ResultSet
		err := ix.call(ctx, "query "+coll, func(ctx context.Context) error {
			var err error
			rs, err = ix.c.Query(ctx, milvusclient.NewQueryOption(coll).WithFilter(expr).
				WithOutputFields(fields...).WithLimit(page).WithConsistencyLevel(entity.ClStrong), noRetry)
			return err
		})
		if err != nil {
			return err
		}
		r := newRowReader(&rs)
		n := rs.ResultCount
		for i := range n {
			k := r.str(key, i)
			if !first && k <= last {
				return fmt.Errorf("milvus: rows of %s came back out of key order (%q after %q): cannot page through them", coll, k, last)
			}
			last, first = k, false
		}
		if n == 0 {
			return nil
		}
		if err := fn(r, n); err != nil {
			return err
		}
		if n < page {
			return nil
		}
	}
}

// OpenExisting opens the collections of an existing model version for a
// batch job, reading the dimension, code length, PDQ and layout from the
// collection (no model needed). An empty opt.ModelVersion takes the model
// of the collection the alias opt.Collection points to.
func OpenExisting(ctx context.Context, opt Options) (*Index, error) {
	if opt.ModelVersion == "" {
		c, o, err := adminClient(ctx, opt, "(from the alias)") // any version: the alias names the collection
		if err != nil {
			return nil, err
		}
		live, err := resolveAlias(ctx, c, o, o.Collection)
		var coll *entity.Collection
		if err == nil && live != "" {
			err = retry(ctx, o, "describe collection "+live, o.CallTimeout, func(ctx context.Context) error {
				var err error
				coll, err = c.DescribeCollection(ctx, milvusclient.NewDescribeCollectionOption(live), noRetry)
				return err
			}, nil)
		}
		c.Close(context.Background())
		if err != nil {
			return nil, err
		}
		if live == "" {
			return nil, fmt.Errorf("milvus: alias %s does not exist: no indexer has written yet (or name the model version)", o.Collection)
		}
		var m meta
		if err := json.Unmarshal([]byte(coll.Schema.Description), &m); err != nil || m.Xmodal != kindRecords || m.ModelVersion == "" {
			return nil, fmt.Errorf("milvus: collection %s (alias %s) was not created by xmodal (description %q)", live, o.Collection, coll.Schema.Description)
		}
		opt.ModelVersion = m.ModelVersion
	}
	opt.FollowAlias = false
	if err := shapeFromCollection(ctx, &opt); err != nil {
		return nil, err
	}
	return Open(ctx, opt)
}
