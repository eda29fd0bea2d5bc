package milvus

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/milvus-io/milvus/client/v2/column"
	"github.com/milvus-io/milvus/client/v2/entity"
	"github.com/milvus-io/milvus/client/v2/milvusclient"

	"github.com/xmodal/xmodal/domain"
)

// migratedCollection names the records collection that Migrate copies a
// schema 1 collection into (its side collections add the usual suffixes).
func migratedCollection(base string) string {
	return base + "_s" + strconv.Itoa(schemaCurrent)
}

// modelCollection returns the records collection of a model version: the
// migrated one when it exists, else the one named after the version.
func modelCollection(ctx context.Context, c *milvusclient.Client, opt Options, modelVersion string) (string, error) {
	base := VersionCollection(opt.Collection, modelVersion)
	has, err := hasCollection(ctx, c, opt, migratedCollection(base))
	if err != nil {
		return "", err
	}
	if has {
		return migratedCollection(base), nil
	}
	return base, nil
}

// MigrateReport says what Migrate did.
type MigrateReport struct {
	From, To   string // records collections
	Records    int    // records copied (their code and PDQ rows are rebuilt from them)
	Versions   int    // versions rows copied (with the takedown marks and the fence row)
	AliasMoved bool   // the alias pointed to From and now points to To
	Dropped    bool   // From's collections were dropped
	Done       bool   // nothing to do: the model version's collections are current
}

// Migrate copies a model version's collections of an older schema (schema 1:
// no bank matches) into collections of the current schema, then moves the
// alias to them if it pointed to the old ones, and with dropOld drops the old
// collections. Milvus cannot add a field to a collection in place; this is
// the new layout plus alias swap that a field needs.
//
// Stop the indexers of this model version first: a write to the old
// collections after its rows were copied is not carried over (the copy
// counts the rows before and after and fails if they moved). Query processes
// keep answering from the old collections until they restart; restart them
// before dropping the old ones. Rows are copied in pages in primary-key order
// at Strong consistency; a failed run leaves the old collections untouched
// and can be run again (it upserts).
//
// The dimension, code length, PDQ and layout are read from the existing
// collection (an operator runs it without the model).
func Migrate(ctx context.Context, opt Options, dropOld bool, progress func(done int)) (MigrateReport, error) {
	opt.FollowAlias = false
	if err := shapeFromCollection(ctx, &opt); err != nil {
		return MigrateReport{}, err
	}
	old, err := Open(ctx, opt)
	if err != nil {
		return MigrateReport{}, err
	}
	defer old.Close()
	rep := MigrateReport{From: old.recordsC, To: old.recordsC}
	if old.l.schema >= schemaCurrent {
		rep.Done = true
		return rep, nil
	}
	before, err := old.countRows(ctx, old.l.records.name)
	if err != nil {
		return rep, err
	}
	nw := &Index{opt: old.opt, log: old.log, cl: old.cl, c: old.c, server: old.server, recordsC: migratedCollection(old.recordsC)}
	nw.l = nw.buildLayout(nw.recordsC, old.l.single, schemaCurrent)
	rep.To = nw.recordsC
	for _, t := range nw.l.tables() {
		if err := nw.ensure(ctx, t); err != nil {
			return rep, err
		}
	}
	// Records: the code and PDQ rows of the split layout are rebuilt from
	// the records' code_hex and pdq_hex.
	fields := []string{fPK, fPostID, fModality, fAuthor, fCreatedAt, fModelVersion, fLabels, fText, fMediaURL, fThumbnail, fVector}
	if old.l.codeBits > 0 {
		fields = append(fields, fCodeHex)
	}
	if !old.opt.DisablePDQ {
		fields = append(fields, fPDQHex, fPDQQuality)
	}
	err = old.pageRows(ctx, old.l.records.name, fPK, fields, 256, func(r rowReader, n int) error {
		recs := make([]*domain.Record, n)
		for i := range n {
			rec := r.record(i)
			recs[i] = &rec
		}
		fns := []func() error{func() error { return nw.upsert(ctx, nw.l.records.name, nw.recordColumns(recs)) }}
		if !nw.l.single {
			for _, t := range []struct {
				t     *table
				field string
			}{{nw.l.code, fCode}, {nw.l.pdq, fPDQ}} {
				if t.t == nil {
					continue
				}
				if cols := nw.sideColumns(recs, t.field); cols != nil {
					fns = append(fns, func() error { return nw.upsert(ctx, t.t.name, cols) })
				}
			}
		}
		if err := parallel(fns...); err != nil {
			return err
		}
		rep.Records += n
		if progress != nil {
			progress(rep.Records)
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("milvus: copying %s into %s: %w", old.l.records.name, nw.l.records.name, err)
	}
	err = old.pageRows(ctx, old.l.posts.name, fPostID, []string{fPostID, fSeq}, 4096, func(r rowReader, n int) error {
		ids, seqs := make([]string, n), make([]int64, n)
		for i := range n {
			ids[i], seqs[i] = r.str(fPostID, i), r.i64(fSeq, i)
		}
		if err := nw.upsert(ctx, nw.l.posts.name, []column.Column{
			column.NewColumnVarChar(fPostID, ids), column.NewColumnInt64(fSeq, seqs), dummyColumn(n)}); err != nil {
			return err
		}
		rep.Versions += n
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("milvus: copying %s into %s: %w", old.l.posts.name, nw.l.posts.name, err)
	}
	after, err := old.countRows(ctx, old.l.records.name)
	if err != nil {
		return rep, err
	}
	if before != after || after != rep.Records {
		return rep, fmt.Errorf("milvus: %s held %d records before the copy and %d after it, and %d were copied: was an indexer still writing? Stop it and run the migration again", old.l.records.name, before, after, rep.Records)
	}
	copied, err := nw.countRows(ctx, nw.l.records.name)
	if err != nil {
		return rep, err
	}
	if copied != rep.Records {
		return rep, fmt.Errorf("milvus: %s holds %d records after the copy, want %d", nw.l.records.name, copied, rep.Records)
	}
	live, err := old.resolveAlias(ctx, opt.Collection)
	if err != nil {
		return rep, err
	}
	if live == old.recordsC {
		err := old.call(ctx, "alter alias "+opt.Collection, func(ctx context.Context) error {
			return old.c.AlterAlias(ctx, milvusclient.NewAlterAliasOption(opt.Collection, nw.recordsC), noRetry)
		})
		if err != nil {
			return rep, err
		}
		rep.AliasMoved = true
	}
	if dropOld {
		if err := dropCollections(ctx, old.c, old.opt, old.recordsC); err != nil {
			return rep, err
		}
		rep.Dropped = true
	}
	return rep, nil
}

// countRows counts a collection's rows at Strong consistency.
func (ix *Index) countRows(ctx context.Context, coll string) (int, error) {
	var n int64
	err := ix.call(ctx, "count "+coll, func(ctx context.Context) error {
		rs, err := ix.c.Query(ctx, milvusclient.NewQueryOption(coll).WithOutputFields("count(*)").WithConsistencyLevel(entity.ClStrong), noRetry)
		if err != nil {
			return err
		}
		c := rs.GetColumn("count(*)")
		if c == nil || c.Len() != 1 {
			return fmt.Errorf("milvus: count(*) of %s came back without a count", coll)
		}
		n, err = c.GetAsInt64(0)
		return err
	})
	return int(n), err
}

// pageRows calls fn with every row of a collection, in pages of at most page
// rows in key order (Milvus returns a limited query's rows by primary key; a
// page that is not is an error, never a silent skip), at Strong consistency.
func (ix *Index) pageRows(ctx context.Context, coll, key string, fields []string, page int, fn func(r rowReader, n int) error) error {
	return ix.pageRowsWhere(ctx, coll, key, "", fields, page, fn)
}

// shapeFromCollection sets opt's dimension, code length, PDQ and layout from
// the existing records collection of its model version; a model version
// without collections is refused (there is nothing to migrate).
func shapeFromCollection(ctx context.Context, opt *Options) error {
	c, o, err := adminClient(ctx, *opt, opt.ModelVersion)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	name, err := modelCollection(ctx, c, o, o.ModelVersion)
	if err != nil {
		return err
	}
	var coll *entity.Collection
	err = retry(ctx, o, "describe collection "+name, o.CallTimeout, func(ctx context.Context) error {
		var err error
		coll, err = c.DescribeCollection(ctx, milvusclient.NewDescribeCollectionOption(name), noRetry)
		return err
	}, nil)
	if err != nil {
		if collectionGone(err) {
			return fmt.Errorf("milvus: model %q has no collection %s: nothing to migrate", o.ModelVersion, name)
		}
		return err
	}
	var m meta
	if err := json.Unmarshal([]byte(coll.Schema.Description), &m); err != nil || m.Xmodal != kindRecords {
		return fmt.Errorf("milvus: collection %s was not created by xmodal (description %q)", name, coll.Schema.Description)
	}
	opt.Dim, opt.CodeBits, opt.Layout = m.Dim, m.CodeBits, m.Layout
	if m.CodeBits == 0 {
		opt.CodeBits = -1
	}
	opt.DisablePDQ = !slices.ContainsFunc(coll.Schema.Fields, func(f *entity.Field) bool { return f.Name == fPDQHex })
	return nil
}
