package milvus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/milvus-io/milvus/client/v2/entity"
	"github.com/milvus-io/milvus/client/v2/milvusclient"
	"github.com/milvus-io/milvus/pkg/v2/util/merr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/xmodal/xmodal/domain"
)

// Index is xmodal's index in Milvus. It is safe for concurrent use.
type Index struct {
	opt      Options
	log      *slog.Logger
	c        *milvusclient.Client
	l        *layout
	cl       entity.ConsistencyLevel
	server   string // the server's version, e.g. "v2.3.5"
	recordsC string // the records collection in use

	indexMu sync.Mutex
	indexes map[string]indexInfo // vector field → its index

	w *writer

	metrics struct {
		retries atomic.Int64
		retry   func()
	}
	closeOnce sync.Once
}

// Open connects to Milvus (a bounded wait: StartTimeout), creates the collections
// of the model version on first use, checks them when they exist (dimension, fields,
// model version: a disagreement is refused with a message saying what differs), and
// loads them.
func Open(ctx context.Context, opt Options) (*Index, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	opt = opt.WithDefaults()
	cl, _ := parseConsistency(opt.Consistency)
	ix := &Index{opt: opt, log: opt.Logger.With("component", "milvus"), cl: cl}
	ix.metrics.retry = func() { ix.metrics.retries.Add(1) }
	c, err := dial(ctx, opt)
	if err != nil {
		return nil, err
	}
	ix.c = c
	if err := ix.init(ctx); err != nil {
		c.Close(context.Background())
		return nil, err
	}
	ix.w = newWriter(ix)
	// Mark the takedowns in the versions collection now rather than in the
	// first write round (a one-time copy per collection; a Bounded read of
	// the marker row afterwards). A process that cannot write here leaves it
	// to its first round, which retries it.
	if err := ix.w.ensureDenyMarks(ctx); err != nil {
		ix.log.Warn("milvus: marking the deny-list's posts failed at open; the first write round will retry", "err", err)
	}
	return ix, nil
}

func (ix *Index) init(ctx context.Context) error {
	o := ix.opt
	err := ix.call(ctx, "server version", func(ctx context.Context) error {
		var err error
		ix.server, err = ix.c.GetServerVersion(ctx, milvusclient.NewGetServerVersionOption(), noRetry)
		if s, ok := status.FromError(err); ok && s.Code() == codes.Unimplemented {
			ix.server, err = "", nil // milvus-lite: the version is unknown
		}
		return err
	})
	if err != nil {
		return err
	}
	own, err := modelCollection(ctx, ix.c, o, o.ModelVersion)
	if err != nil {
		return err
	}
	live, err := ix.resolveAlias(ctx, o.Collection)
	if err != nil {
		return err
	}
	ix.recordsC = own
	if o.FollowAlias {
		if live == "" {
			return &AliasError{Alias: o.Collection, msg: fmt.Sprintf("milvus: alias %s does not exist yet: start an indexer first (it creates the alias), or turn milvus.follow_alias off", o.Collection)}
		}
		ix.recordsC = live
	}

	single := o.Layout == LayoutSingle
	schema := schemaCurrent
	existing, exists, err := ix.describeMeta(ctx, ix.recordsC)
	if err != nil {
		return err
	}
	if exists {
		// An existing collection keeps the layout and schema it was created
		// with (a schema 1 collection keeps no bank matches until Migrate).
		schema = max(existing.Schema, schemaV1)
	}
	if o.Layout == LayoutAuto {
		single = serverSupportsMultiVector(ix.server)
		if exists && existing.Layout != "" {
			single = existing.Layout == LayoutSingle
		}
	}
	if single && ix.server != "" && !serverSupportsMultiVector(ix.server) {
		return fmt.Errorf("milvus: layout single needs several vector fields per collection (Milvus >= 2.4); the server is %s: use layout split or auto", ix.server)
	}
	ix.l = ix.buildLayout(ix.recordsC, single, schema)
	if schema < schemaCurrent {
		ix.log.Warn("this milvus collection predates bank matches: hits carry no matches and the matched_banks filter is refused until it is migrated (xmodal milvus migrate)", "collection", ix.recordsC, "schema", schema)
	}
	if o.FollowAlias {
		if m, ok, err := ix.describeMeta(ctx, live); err != nil {
			return err
		} else if ok && m.ModelVersion != o.ModelVersion {
			return &AliasError{Alias: o.Collection, Collection: live, msg: fmt.Sprintf("milvus: alias %s points to %s, which holds model %q; this process encodes queries with model %q (deploy the alias's model, or swap the alias with SwapAlias)",
				o.Collection, live, m.ModelVersion, o.ModelVersion)}
		}
	}
	for _, t := range ix.l.tables() {
		if err := ix.ensure(ctx, t); err != nil {
			return err
		}
	}
	if live == "" {
		ix.log.Info("creating milvus alias", "alias", o.Collection, "collection", own)
		err := ix.call(ctx, "create alias "+o.Collection, func(ctx context.Context) error {
			return ix.c.CreateAlias(ctx, milvusclient.NewCreateAliasOption(own, o.Collection), noRetry)
		})
		if s, ok := status.FromError(errors.Unwrap(err)); ok && s.Code() == codes.Unimplemented {
			ix.log.Warn("this Milvus has no aliases (milvus-lite): the collection is reached by its model version's name only", "collection", own)
		} else if err != nil && !errors.Is(err, merr.ErrAliasAlreadyExist) {
			// Another process may have created the alias meanwhile (servers that
			// answer so without the typed code): the alias's state decides.
			if now, rerr := ix.resolveAlias(ctx, o.Collection); rerr != nil || now == "" {
				return err
			}
		}
	} else if live != ix.recordsC {
		ix.log.Info("the milvus alias serves another collection; this index uses its model version's own", "alias", o.Collection, "live", live, "this", ix.recordsC)
	}
	ix.log.Info("milvus index ready", "server", ix.server, "address", o.Address, "collection", ix.recordsC,
		"layout", map[bool]string{true: LayoutSingle, false: LayoutSplit}[single], "float_index", ix.indexOf(fVector).typ)
	return nil
}

// describeMeta reads the xmodal description of a collection (ok false when it does
// not exist).
func (ix *Index) describeMeta(ctx context.Context, name string) (meta, bool, error) {
	var m meta
	var has bool
	err := ix.call(ctx, "has collection "+name, func(ctx context.Context) error {
		var err error
		has, err = ix.c.HasCollection(ctx, milvusclient.NewHasCollectionOption(name), noRetry)
		return err
	})
	if err != nil || !has {
		return m, false, err
	}
	var coll *entity.Collection
	err = ix.call(ctx, "describe collection "+name, func(ctx context.Context) error {
		var err error
		coll, err = ix.c.DescribeCollection(ctx, milvusclient.NewDescribeCollectionOption(name), noRetry)
		return err
	})
	if err != nil {
		return m, false, err
	}
	if err := json.Unmarshal([]byte(coll.Schema.Description), &m); err != nil || m.Xmodal == "" {
		return m, true, fmt.Errorf("milvus: collection %s was not created by xmodal (description %q)", name, coll.Schema.Description)
	}
	return m, true, nil
}

// resolveAlias returns the collection an alias points to, "" when there is no such alias.
func (ix *Index) resolveAlias(ctx context.Context, alias string) (string, error) {
	return resolveAlias(ctx, ix.c, ix.opt, alias)
}

func resolveAlias(ctx context.Context, c *milvusclient.Client, o Options, alias string) (string, error) {
	var name string
	err := retry(ctx, o, "describe alias "+alias, o.CallTimeout, func(ctx context.Context) error {
		a, err := c.DescribeAlias(ctx, milvusclient.NewDescribeAliasOption(alias), noRetry)
		if err == nil {
			name = a.CollectionName
			return nil
		}
		if retryable(err) {
			return err
		}
		// Servers without DescribeAlias (or that say "not found"): describing the
		// alias as a collection names the collection it points to.
		coll, err2 := c.DescribeCollection(ctx, milvusclient.NewDescribeCollectionOption(alias), noRetry)
		if err2 != nil {
			if retryable(err2) {
				return err2
			}
			return nil // neither an alias nor a collection
		}
		if coll.Name == alias {
			return &AliasError{Alias: alias, Collection: alias, NotAlias: true, msg: fmt.Sprintf("%s is a collection, not an alias: choose another milvus.collection", alias)}
		}
		name = coll.Name
		return nil
	}, nil)
	return name, err
}

// SwapAlias points the alias Options.Collection at the collections of modelVersion:
// the last step of a model upgrade (re-embed into the new version's collections with
// an indexer running the new model, check them, then swap). Processes opened with
// FollowAlias pick the new collection up when they restart (with the new model);
// Open refuses to follow an alias to another model's vectors.
func SwapAlias(ctx context.Context, opt Options, modelVersion string) error {
	c, opt, err := adminClient(ctx, opt, modelVersion)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	target, err := modelCollection(ctx, c, opt, modelVersion)
	if err != nil {
		return err
	}
	has, err := hasCollection(ctx, c, opt, target)
	if err != nil {
		return err
	}
	if !has {
		return fmt.Errorf("milvus: model %q has no collection %s yet: index it first", modelVersion, target)
	}
	cur, err := resolveAlias(ctx, c, opt, opt.Collection)
	if err != nil {
		return err
	}
	return retry(ctx, opt, "alter alias "+opt.Collection, opt.CallTimeout, func(ctx context.Context) error {
		if cur == "" {
			return c.CreateAlias(ctx, milvusclient.NewCreateAliasOption(target, opt.Collection), noRetry)
		}
		return c.AlterAlias(ctx, milvusclient.NewAlterAliasOption(opt.Collection, target), noRetry)
	}, nil)
}

// Collection returns the records collection this index uses.
func (ix *Index) Collection() string { return ix.recordsC }

// ServerVersion returns the version the server reported.
func (ix *Index) ServerVersion() string { return ix.server }

// Layout returns "single" or "split".
func (ix *Index) Layout() string {
	if ix.l.single {
		return LayoutSingle
	}
	return LayoutSplit
}

// Stats are counters of the index's work.
type Stats struct {
	Retries int64 // RPC attempts retried after Unavailable/ResourceExhausted
	Rounds  int64 // write rounds
	Rows    int64 // record rows written
	// InsertedPosts are the posts new to Milvus whose rows were inserted
	// rather than upserted (Options.UpsertOnly).
	InsertedPosts int64
	// StrongRounds are the rounds that read past Bounded: at the fence
	// timestamp (within FenceWindow of a Fence) or Strong (WriteConsistency
	// Strong).
	StrongRounds int64
	// ReadTime and WriteTime are the rounds' time reading what Milvus holds
	// and writing, summed.
	ReadTime, WriteTime time.Duration
	// WriteWait is the rounds' time between their read and their write,
	// waiting for a write slot (the rounds ahead of them writing), summed.
	WriteWait time.Duration
}

// Stats returns the counters.
func (ix *Index) Stats() Stats {
	return Stats{Retries: ix.metrics.retries.Load(), Rounds: ix.w.rounds.Load(), Rows: ix.w.rows.Load(), StrongRounds: ix.w.strongRounds.Load(),
		InsertedPosts: ix.w.insertedPosts.Load(),
		ReadTime:      time.Duration(ix.w.readNanos.Load()), WriteTime: time.Duration(ix.w.writeNanos.Load()),
		WriteWait: time.Duration(ix.w.waitNanos.Load())}
}

// Close stops the writer (waiting for the round in flight) and closes the connection.
func (ix *Index) Close() error {
	var err error
	ix.closeOnce.Do(func() {
		if ix.w != nil {
			ix.w.close()
		}
		err = ix.c.Close(context.Background())
	})
	return err
}

// DropModel drops every collection of a model version (not the deny-list, which is
// shared by all versions). It refuses to drop the collection the alias points to.
func DropModel(ctx context.Context, opt Options, modelVersion string) error {
	c, opt, err := adminClient(ctx, opt, modelVersion)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	base := VersionCollection(opt.Collection, modelVersion)
	live, err := resolveAlias(ctx, c, opt, opt.Collection)
	if err != nil {
		return err
	}
	bases := []string{base, migratedCollection(base)}
	if slices.Contains(bases, live) {
		return fmt.Errorf("milvus: alias %s points to %s: swap it to another model before dropping %q", opt.Collection, live, modelVersion)
	}
	return dropCollections(ctx, c, opt, bases...)
}

// dropCollections drops the collections of a model version's layouts whose
// records collections are named (those that exist).
func dropCollections(ctx context.Context, c *milvusclient.Client, opt Options, bases ...string) error {
	var names []string
	for _, b := range bases {
		names = append(names, b, b+"_code", b+"_pdq", b+"_posts")
	}
	var errs []error
	for _, name := range names {
		// Only the collections that exist are dropped (a layout has some of the
		// four), so that every error a drop returns is a real one.
		has, err := hasCollection(ctx, c, opt, name)
		if err == nil && has {
			err = retry(ctx, opt, "drop collection "+name, opt.CallTimeout, func(ctx context.Context) error {
				return c.DropCollection(ctx, milvusclient.NewDropCollectionOption(name), noRetry)
			}, nil)
		}
		if err != nil && !collectionGone(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// AliasError says that the alias Options.Collection names cannot serve this
// process: it does not exist yet while FollowAlias asks for it, it points to
// another model's collection, or the name is a collection's, not an alias's
// (NotAlias). Open returns it (wrapped); match it with errors.As.
type AliasError struct {
	Alias      string // the alias (Options.Collection)
	Collection string // the collection it points to; "" when it does not exist
	NotAlias   bool   // the name is a collection's
	msg        string
}

func (e *AliasError) Error() string {
	if e.msg == "" {
		return fmt.Sprintf("milvus: alias %s cannot serve this process", e.Alias)
	}
	return e.msg
}

// adminClient validates opt for SwapAlias and DropModel of modelVersion and
// connects; the caller closes the client.
func adminClient(ctx context.Context, opt Options, modelVersion string) (*milvusclient.Client, Options, error) {
	opt.ModelVersion = modelVersion
	if err := opt.validateAdmin(); err != nil {
		return nil, opt, err
	}
	opt = opt.WithDefaults()
	c, err := dial(ctx, opt)
	return c, opt, err
}

// hasCollection reports whether the collection name exists.
func hasCollection(ctx context.Context, c *milvusclient.Client, opt Options, name string) (bool, error) {
	var has bool
	err := retry(ctx, opt, "has collection "+name, opt.CallTimeout, func(ctx context.Context) error {
		var err error
		has, err = c.HasCollection(ctx, milvusclient.NewHasCollectionOption(name), noRetry)
		return err
	}, nil)
	return has, err
}

// validateAdmin checks what SwapAlias and DropModel need (no model dimension:
// they touch collections by name only).
func (o Options) validateAdmin() error {
	if o.Dim == 0 {
		o.Dim = 1 // any valid dimension: unused here
	}
	return o.Validate()
}

// collectionGone reports whether a call failed because the collection does not
// exist (dropped by another process between the check and the drop): by the
// status code (legacy CollectionNotExists or Code 100), never by the text.
func collectionGone(err error) bool {
	return errors.Is(err, merr.ErrCollectionNotFound)
}

var _ domain.Index = (*Index)(nil)
