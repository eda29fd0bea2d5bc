package milvus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"strconv"
	"strings"

	"github.com/milvus-io/milvus-proto/go-api/v2/milvuspb"
	"github.com/milvus-io/milvus/client/v2/entity"
	"github.com/milvus-io/milvus/client/v2/index"
	"github.com/milvus-io/milvus/client/v2/milvusclient"
	"github.com/milvus-io/milvus/pkg/v2/util/merr"
)

// Field names. Every collection of a model version shares the scalar names.
const (
	fPK           = "pk"
	fPostID       = "post_id"
	fModality     = "modality"
	fAuthor       = "author"
	fCreatedAt    = "created_at" // Unix nanoseconds
	fModelVersion = "model_version"
	fLabels       = "labels"
	fText         = "text"
	fMediaURL     = "media_url"
	fThumbnail    = "thumbnail" // base64 of the JPEG
	fCodeHex      = "code_hex"
	fPDQHex       = "pdq_hex"
	fPDQQuality   = "pdq_quality"
	fVector       = "vector"
	fCode         = "code"
	fPDQ          = "pdq"
	fHasCode      = "has_code"
	fHasPDQ       = "has_pdq"
	fSeq          = "seq"
	fDeniedAt     = "denied_at"
	fDummy        = "v"             // Milvus 2.3 needs a vector field in every collection
	fMatches      = "matches"       // JSON of the post version's bank matches (schema 2)
	fMatchedBanks = "matched_banks" // the banks among them, for filters (schema 2)
)

// Schemas of a model version's collections. Schema 1 (collections from before
// 2026-12-03, whose description names none) has no bank matches; schema 2
// adds them. Milvus cannot add a field to a collection in place, so a schema 1
// collection is copied into a schema 2 one by Migrate.
const (
	schemaV1      = 1
	schemaMatches = 2
	schemaCurrent = schemaMatches
)

// Limits of the schema's strings (bytes).
const (
	maxAuthor    = 256
	maxLabel     = 256
	maxModelVer  = 256
	maxText      = 4096
	maxMediaURL  = 4096
	maxThumbnail = 65535 // base64; a larger thumbnail is left out (see docs/milvus.md)
	pdqBits      = 256
	maxMatches   = 16384 // bytes of a record's matches JSON; more are left out (logged)
	maxBanks     = 64    // banks in matched_banks
	maxBankName  = 64
)

// Kinds of collection.
const (
	kindRecords = "records"
	kindCode    = "code"
	kindPDQ     = "pdq"
	kindPosts   = "posts"
	kindDeny    = "deny"
)

// table is one collection this index uses.
type table struct {
	kind   string
	name   string
	schema *entity.Schema
	// vector fields with the index each gets (name → index)
	indexes map[string]index.Index
	// which vectors it holds
	hasVector, hasCode, hasPDQ bool
}

// meta is what a collection's description records, so that a later start can
// check it: written as JSON.
type meta struct {
	Xmodal       string `json:"xmodal"` // the kind
	ModelVersion string `json:"model_version,omitempty"`
	Dim          int    `json:"dim,omitempty"`
	CodeBits     int    `json:"code_bits,omitempty"`
	Layout       string `json:"layout,omitempty"`
	Schema       int    `json:"schema,omitempty"` // 0: schemaV1
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_]+`)

// VersionCollection returns the name of the records collection of a model version
// under a base name: base_<sanitised version>_<8 hex of a hash of the version>.
func VersionCollection(base, modelVersion string) string {
	s := strings.Trim(unsafeChars.ReplaceAllString(modelVersion, "_"), "_")
	if len(s) > 100 {
		s = s[:100]
	}
	h := fnv.New32a()
	h.Write([]byte(modelVersion))
	return fmt.Sprintf("%s_%s_%08x", base, s, h.Sum32())
}

func denyCollection(base string) string { return base + "_deny" }

// layout decides the tables of a model version.
type layout struct {
	single   bool
	schema   int
	records  *table
	code     *table // == records when single; nil without codes
	pdq      *table // == records when single; nil without PDQ
	posts    *table
	deny     *table
	codeBits int // 0: no codes
}

func (ix *Index) buildLayout(recordsName string, single bool, schema int) *layout {
	o := ix.opt
	l := &layout{single: single, schema: schema}
	if o.CodeBits > 0 {
		l.codeBits = o.CodeBits
	}
	varchar := func(name string, n int) *entity.Field {
		return entity.NewField().WithName(name).WithDataType(entity.FieldTypeVarChar).WithMaxLength(int64(n))
	}
	pkLen := o.MaxPostID + 16
	filterFields := func(s *entity.Schema) *entity.Schema {
		s.
			WithField(varchar(fPK, pkLen).WithIsPrimaryKey(true)).
			WithField(varchar(fPostID, o.MaxPostID)).
			WithField(varchar(fModality, 16)).
			WithField(varchar(fAuthor, maxAuthor)).
			WithField(entity.NewField().WithName(fCreatedAt).WithDataType(entity.FieldTypeInt64)).
			WithField(entity.NewField().WithName(fLabels).WithDataType(entity.FieldTypeArray).
				WithElementType(entity.FieldTypeVarChar).WithMaxLength(maxLabel).WithMaxCapacity(int64(o.MaxLabels)))
		if schema >= schemaMatches {
			s.WithField(entity.NewField().WithName(fMatchedBanks).WithDataType(entity.FieldTypeArray).
				WithElementType(entity.FieldTypeVarChar).WithMaxLength(maxBankName).WithMaxCapacity(maxBanks))
		}
		return s
	}
	desc := func(kind string) string {
		m := meta{Xmodal: kind, ModelVersion: o.ModelVersion, Dim: o.Dim, CodeBits: l.codeBits, Layout: map[bool]string{true: LayoutSingle, false: LayoutSplit}[single]}
		if schema > schemaV1 {
			m.Schema = schema
		}
		b, _ := json.Marshal(m)
		return string(b)
	}

	rec := &table{kind: kindRecords, name: recordsName, indexes: map[string]index.Index{}, hasVector: true}
	s := filterFields(entity.NewSchema().WithName(recordsName).WithDescription(desc(kindRecords))).
		WithField(varchar(fModelVersion, maxModelVer)).
		WithField(varchar(fText, maxText)).
		WithField(varchar(fMediaURL, maxMediaURL)).
		WithField(varchar(fThumbnail, maxThumbnail))
	if schema >= schemaMatches {
		s.WithField(varchar(fMatches, maxMatches))
	}
	if l.codeBits > 0 {
		s.WithField(varchar(fCodeHex, max(16, l.codeBits/4)))
	}
	if !o.DisablePDQ {
		s.WithField(varchar(fPDQHex, pdqBits/4)).
			WithField(entity.NewField().WithName(fPDQQuality).WithDataType(entity.FieldTypeInt64))
	}
	s.WithField(entity.NewField().WithName(fVector).WithDataType(entity.FieldTypeFloatVector).WithDim(int64(o.Dim)))
	rec.indexes[fVector] = ix.floatIndex()
	if single {
		if l.codeBits > 0 {
			s.WithField(entity.NewField().WithName(fHasCode).WithDataType(entity.FieldTypeBool)).
				WithField(entity.NewField().WithName(fCode).WithDataType(entity.FieldTypeBinaryVector).WithDim(int64(l.codeBits)))
			rec.indexes[fCode] = ix.binIndex()
			rec.hasCode = true
			l.code = rec
		}
		if !o.DisablePDQ {
			s.WithField(entity.NewField().WithName(fHasPDQ).WithDataType(entity.FieldTypeBool)).
				WithField(entity.NewField().WithName(fPDQ).WithDataType(entity.FieldTypeBinaryVector).WithDim(pdqBits))
			rec.indexes[fPDQ] = ix.binIndex()
			rec.hasPDQ = true
			l.pdq = rec
		}
	}
	rec.schema = s
	l.records = rec

	if !single && l.codeBits > 0 {
		name := recordsName + "_code"
		l.code = &table{kind: kindCode, name: name, hasCode: true, indexes: map[string]index.Index{fCode: ix.binIndex()},
			schema: filterFields(entity.NewSchema().WithName(name).WithDescription(desc(kindCode))).
				WithField(entity.NewField().WithName(fCode).WithDataType(entity.FieldTypeBinaryVector).WithDim(int64(l.codeBits)))}
	}
	if !single && !o.DisablePDQ {
		name := recordsName + "_pdq"
		l.pdq = &table{kind: kindPDQ, name: name, hasPDQ: true, indexes: map[string]index.Index{fPDQ: ix.binIndex()},
			schema: filterFields(entity.NewSchema().WithName(name).WithDescription(desc(kindPDQ))).
				WithField(entity.NewField().WithName(fPDQQuality).WithDataType(entity.FieldTypeInt64)).
				WithField(entity.NewField().WithName(fPDQ).WithDataType(entity.FieldTypeBinaryVector).WithDim(pdqBits))}
	}
	small := func(kind, name, field string) *table {
		b, _ := json.Marshal(meta{Xmodal: kind})
		return &table{kind: kind, name: name, indexes: map[string]index.Index{fDummy: index.NewFlatIndex(entity.L2)},
			schema: entity.NewSchema().WithName(name).WithDescription(string(b)).
				WithField(varchar(fPostID, o.MaxPostID).WithIsPrimaryKey(true)).
				WithField(entity.NewField().WithName(field).WithDataType(entity.FieldTypeInt64)).
				WithField(entity.NewField().WithName(fDummy).WithDataType(entity.FieldTypeFloatVector).WithDim(2))}
	}
	l.posts = small(kindPosts, recordsName+"_posts", fSeq)
	l.deny = small(kindDeny, denyCollection(o.Collection), fDeniedAt)
	return l
}

func (l *layout) tables() []*table {
	ts := []*table{l.records}
	if l.code != nil && l.code != l.records {
		ts = append(ts, l.code)
	}
	if l.pdq != nil && l.pdq != l.records {
		ts = append(ts, l.pdq)
	}
	return append(ts, l.posts, l.deny)
}

func (ix *Index) floatIndex() index.Index {
	switch ix.opt.FloatIndex {
	case IndexFlat:
		return index.NewFlatIndex(entity.IP)
	case IndexHNSW:
		return index.NewHNSWIndex(entity.IP, ix.opt.HNSWM, ix.opt.HNSWEfC)
	default:
		return index.NewIvfFlatIndex(entity.IP, ix.opt.NList)
	}
}

func (ix *Index) binIndex() index.Index {
	if ix.opt.CodeIndex == IndexBinIVFFlat {
		return index.NewBinIvfFlatIndex(entity.HAMMING, ix.opt.NList)
	}
	return index.NewBinFlatIndex(entity.HAMMING)
}

// serverSupportsMultiVector reports whether a server version (e.g. "v2.3.5") allows
// several vector fields in one collection (Milvus >= 2.4).
func serverSupportsMultiVector(version string) bool {
	v := strings.TrimPrefix(strings.TrimSpace(version), "v")
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return false
	}
	return major > 2 || (major == 2 && minor >= 4)
}

// ensure creates t if it does not exist (with its indexes), checks it against the
// expected schema if it does, and loads it.
func (ix *Index) ensure(ctx context.Context, t *table) error {
	var has bool
	err := ix.call(ctx, "has collection "+t.name, func(ctx context.Context) error {
		var err error
		has, err = ix.c.HasCollection(ctx, milvusclient.NewHasCollectionOption(t.name), noRetry)
		return err
	})
	if err != nil {
		return err
	}
	if !has {
		ix.log.Info("creating milvus collection", "collection", t.name, "kind", t.kind)
		err = ix.call(ctx, "create collection "+t.name, func(ctx context.Context) error {
			shards := int32(1)
			if t.kind != kindPosts && t.kind != kindDeny {
				shards = int32(ix.opt.Shards)
			}
			err := ix.c.CreateCollection(ctx, milvusclient.NewCreateCollectionOption(t.name, t.schema).
				WithShardNum(shards).WithConsistencyLevel(entity.ClBounded), noRetry)
			if err != nil && !retryable(err) {
				// Another process may have created it meanwhile: whether it exists
				// now decides (its schema is checked below), not the error's text.
				if has, herr := ix.c.HasCollection(ctx, milvusclient.NewHasCollectionOption(t.name), noRetry); herr == nil && has {
					return nil
				}
			}
			return err
		})
		if err != nil {
			return err
		}
	}
	var got *entity.Collection
	err = ix.call(ctx, "describe collection "+t.name, func(ctx context.Context) error {
		var err error
		got, err = ix.c.DescribeCollection(ctx, milvusclient.NewDescribeCollectionOption(t.name), noRetry)
		return err
	})
	if err != nil {
		return err
	}
	if err := checkSchema(t, got.Schema); err != nil {
		return err
	}
	for field, idx := range t.indexes {
		if err := ix.ensureIndex(ctx, t, field, idx); err != nil {
			return err
		}
	}
	ix.log.Debug("loading milvus collection", "collection", t.name)
	return retry(ctx, ix.opt, "load collection "+t.name, ix.opt.LoadTimeout, func(ctx context.Context) error {
		lo := milvusclient.NewLoadCollectionOption(t.name)
		if ix.opt.Replicas > 0 {
			lo.WithReplica(ix.opt.Replicas)
		}
		task, err := ix.c.LoadCollection(ctx, lo, noRetry)
		if err != nil {
			return err
		}
		return task.Await(ctx)
	}, nil)
}

// ensureIndex creates the index of a vector field unless one exists; an existing
// index of another type is used as it is (searches adapt to it) and logged.
func (ix *Index) ensureIndex(ctx context.Context, t *table, field string, want index.Index) error {
	var resp *milvuspb.DescribeIndexResponse
	err := ix.call(ctx, "describe index "+t.name+"."+field, func(ctx context.Context) error {
		var err error
		resp, err = ix.c.GetService().DescribeIndex(ctx, &milvuspb.DescribeIndexRequest{CollectionName: t.name, FieldName: field}, noRetry)
		err = merr.CheckRPCCall(resp, err)
		if indexMissing(err) {
			resp = nil
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, d := range resp.GetIndexDescriptions() {
		if d.GetFieldName() != field {
			continue
		}
		params := entity.KvPairsMap(d.GetParams())
		typ := params["index_type"]
		nlist := 0
		var extra map[string]any
		if p := params["params"]; p != "" && json.Unmarshal([]byte(p), &extra) == nil {
			if v, ok := extra["nlist"]; ok {
				nlist, _ = strconv.Atoi(fmt.Sprint(v))
			}
		}
		if v, ok := params["nlist"]; ok {
			nlist, _ = strconv.Atoi(v)
		}
		if typ != string(want.IndexType()) {
			ix.log.Warn("milvus index differs from the configured one; searching with the existing index", "collection", t.name, "field", field, "existing", typ, "configured", want.IndexType())
		}
		if t.kind != kindPosts && t.kind != kindDeny {
			ix.setIndexInfo(field, typ, nlist)
		}
		return nil
	}
	ix.log.Info("creating milvus index", "collection", t.name, "field", field, "type", want.IndexType())
	err = ix.call(ctx, "create index "+t.name+"."+field, func(ctx context.Context) error {
		_, err := ix.c.CreateIndex(ctx, milvusclient.NewCreateIndexOption(t.name, field, want), noRetry)
		return err
	})
	if err != nil {
		return err
	}
	if t.kind != kindPosts && t.kind != kindDeny {
		nlist := 0
		if strings.HasPrefix(string(want.IndexType()), "IVF") || strings.HasPrefix(string(want.IndexType()), "BIN_IVF") {
			nlist = ix.opt.NList
		}
		ix.setIndexInfo(field, string(want.IndexType()), nlist)
	}
	return nil
}

type indexInfo struct {
	typ   string
	nlist int
}

func (ix *Index) setIndexInfo(field, typ string, nlist int) {
	ix.indexMu.Lock()
	defer ix.indexMu.Unlock()
	if ix.indexes == nil {
		ix.indexes = map[string]indexInfo{}
	}
	ix.indexes[field] = indexInfo{typ: strings.ToUpper(typ), nlist: nlist}
}

func (ix *Index) indexOf(field string) indexInfo {
	ix.indexMu.Lock()
	defer ix.indexMu.Unlock()
	return ix.indexes[field]
}

// checkSchema compares an existing collection with the expected one and says every
// difference: missing or extra fields, types, dimensions, lengths, the primary key,
// and the model version / dimension recorded in the description.
func checkSchema(want *table, got *entity.Schema) error {
	var diffs []string
	gotFields := map[string]*entity.Field{}
	for _, f := range got.Fields {
		gotFields[f.Name] = f
	}
	for _, w := range want.schema.Fields {
		g, ok := gotFields[w.Name]
		if !ok {
			diffs = append(diffs, fmt.Sprintf("field %s (%s) is missing", w.Name, w.DataType.Name()))
			continue
		}
		delete(gotFields, w.Name)
		if g.DataType != w.DataType {
			diffs = append(diffs, fmt.Sprintf("field %s is %s, want %s", w.Name, g.DataType.Name(), w.DataType.Name()))
			continue
		}
		if g.PrimaryKey != w.PrimaryKey {
			diffs = append(diffs, fmt.Sprintf("field %s primary key is %v, want %v", w.Name, g.PrimaryKey, w.PrimaryKey))
		}
		if w.DataType == entity.FieldTypeFloatVector || w.DataType == entity.FieldTypeBinaryVector {
			gd, _ := g.GetDim()
			wd, _ := w.GetDim()
			if gd != wd {
				diffs = append(diffs, fmt.Sprintf("field %s has dimension %d, want %d", w.Name, gd, wd))
			}
		}
		if w.DataType == entity.FieldTypeVarChar || w.DataType == entity.FieldTypeArray {
			if gl, wl := g.TypeParams["max_length"], w.TypeParams["max_length"]; gl != wl && gl != "" {
				gn, _ := strconv.Atoi(gl)
				wn, _ := strconv.Atoi(wl)
				if gn < wn {
					diffs = append(diffs, fmt.Sprintf("field %s holds %d bytes, want %d", w.Name, gn, wn))
				}
			}
		}
	}
	for name, g := range gotFields {
		if g.DataType == entity.FieldTypeFloatVector || g.DataType == entity.FieldTypeBinaryVector || !g.Nullable {
			diffs = append(diffs, fmt.Sprintf("unexpected field %s (%s)", name, g.DataType.Name()))
		}
	}
	var gm, wm meta
	_ = json.Unmarshal([]byte(want.schema.Description), &wm)
	if err := json.Unmarshal([]byte(got.Description), &gm); err != nil || gm.Xmodal == "" {
		diffs = append(diffs, fmt.Sprintf("it was not created by xmodal (description %q)", got.Description))
	} else {
		if gm.Xmodal != wm.Xmodal {
			diffs = append(diffs, fmt.Sprintf("it holds %s, want %s", gm.Xmodal, wm.Xmodal))
		}
		if gm.ModelVersion != wm.ModelVersion {
			diffs = append(diffs, fmt.Sprintf("it was written by model %q, not %q", gm.ModelVersion, wm.ModelVersion))
		}
		if gm.Layout != wm.Layout {
			diffs = append(diffs, fmt.Sprintf("its layout is %q, want %q (set milvus.layout)", gm.Layout, wm.Layout))
		}
	}
	if len(diffs) == 0 {
		return nil
	}
	return &SchemaError{Collection: want.name, Diffs: diffs}
}

// indexMissing reports whether a DescribeIndex call failed because the field has
// no index. The status code decides: servers that answer with the legacy
// ErrorCode (IndexNotExist, Milvus 2.3) and those with the newer Code (700)
// both map to merr.ErrIndexNotFound.
func indexMissing(err error) bool {
	return errors.Is(err, merr.ErrIndexNotFound)
}

// SchemaError says how an existing collection disagrees with this build and model.
type SchemaError struct {
	Collection string
	Diffs      []string
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("milvus: collection %s disagrees with this model and build: %s (use another milvus.collection or drop it and re-index)",
		e.Collection, strings.Join(e.Diffs, "; "))
}
