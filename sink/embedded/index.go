// Package embedded is xmodal's in-process index: records persisted in a crash-safe
// bbolt file, vectors held in compact in-memory arrays rebuilt from it on start.
// It serves one process; separate indexer and query processes need Milvus.
package embedded

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/xmodal/xmodal/domain"
)

var (
	bucketRecords = []byte("records")
	bucketPosts   = []byte("posts")
	bucketDeny    = []byte("deny")
	bucketMeta    = []byte("meta")
)

// Options configure an embedded index.
type Options struct {
	// Path of the bbolt file; its folder is created.
	Path string
	// Dim is the embedding dimension; a store written with another dimension is refused.
	Dim int
	// ModelVersion is recorded on first use; a store written by another model is refused
	// unless AllowModelChange is set.
	ModelVersion     string
	AllowModelChange bool
	Logger           *slog.Logger
}

// Index is the embedded index. It is safe for concurrent use.
type Index struct {
	db  *bolt.DB
	dim int
	log *slog.Logger

	mu       sync.RWMutex
	vecs     []float32        // slot-major, dim floats per slot
	recs     []*domain.Record // metadata per slot (Vector nil); nil marks a free slot
	slotOf   map[string]int
	free     []int
	perModal map[domain.Modality]int
}

// ErrLocked is returned when another process holds the store.
var ErrLocked = errors.New("embedded index: the store is locked by another process (the embedded index serves one process; use Milvus for separate roles)")

// Open opens or creates the store and loads every record into memory.
func Open(ctx context.Context, opt Options) (*Index, error) {
	if opt.Dim <= 0 {
		return nil, fmt.Errorf("embedded index: dimension %d must be positive", opt.Dim)
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if err := os.MkdirAll(filepath.Dir(opt.Path), 0o755); err != nil {
		return nil, fmt.Errorf("embedded index: %w", err)
	}
	db, err := bolt.Open(opt.Path, 0o644, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, opt.Path)
		}
		return nil, fmt.Errorf("embedded index: open %s: %w", opt.Path, err)
	}
	ix := &Index{db: db, dim: opt.Dim, log: opt.Logger, slotOf: map[string]int{}, perModal: map[domain.Modality]int{}}
	if err := ix.init(opt); err != nil {
		db.Close()
		return nil, err
	}
	if err := ix.load(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return ix, nil
}

func (ix *Index) init(opt Options) error {
	return ix.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRecords, bucketPosts, bucketDeny, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if d := meta.Get([]byte("dim")); d != nil {
			var dim int
			if err := json.Unmarshal(d, &dim); err != nil {
				return fmt.Errorf("embedded index: meta dim: %w", err)
			}
			if dim != opt.Dim {
				return fmt.Errorf("embedded index: store %s holds %d-dimensional vectors, the model gives %d (use another data dir or re-index)", opt.Path, dim, opt.Dim)
			}
		} else {
			d, _ := json.Marshal(opt.Dim)
			if err := meta.Put([]byte("dim"), d); err != nil {
				return err
			}
		}
		if v := meta.Get([]byte("model_version")); v != nil && opt.ModelVersion != "" && string(v) != opt.ModelVersion && !opt.AllowModelChange {
			return fmt.Errorf("embedded index: store %s was written by model %q, not %q (use another data dir or re-index)", opt.Path, v, opt.ModelVersion)
		}
		if opt.ModelVersion != "" {
			return meta.Put([]byte("model_version"), []byte(opt.ModelVersion))
		}
		return nil
	})
}

func (ix *Index) load(ctx context.Context) error {
	start := time.Now()
	err := ix.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketRecords).Cursor()
		n := 0
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if n%4096 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			n++
			r, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("record %q: %w", k, err)
			}
			if len(r.Vector) != ix.dim {
				return fmt.Errorf("record %q has dimension %d, want %d", k, len(r.Vector), ix.dim)
			}
			ix.putMem(r)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("embedded index: load: %w", err)
	}
	ix.log.Info("embedded index loaded", "records", len(ix.slotOf), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// putMem places r (with its vector) in memory; callers hold mu for writing.
func (ix *Index) putMem(r *domain.Record) {
	slot, ok := ix.slotOf[r.PK]
	if !ok {
		if n := len(ix.free); n > 0 {
			slot = ix.free[n-1]
			ix.free = ix.free[:n-1]
		} else {
			slot = len(ix.recs)
			ix.recs = append(ix.recs, nil)
			ix.vecs = append(ix.vecs, make([]float32, ix.dim)...)
		}
		ix.slotOf[r.PK] = slot
		ix.perModal[r.Modality]++
	} else if old := ix.recs[slot]; old.Modality != r.Modality {
		ix.perModal[old.Modality]--
		ix.perModal[r.Modality]++
	}
	copy(ix.vecs[slot*ix.dim:(slot+1)*ix.dim], r.Vector)
	meta := *r
	meta.Vector = nil
	ix.recs[slot] = &meta
}

func (ix *Index) delMem(pk string) {
	slot, ok := ix.slotOf[pk]
	if !ok {
		return
	}
	ix.perModal[ix.recs[slot].Modality]--
	delete(ix.slotOf, pk)
	ix.recs[slot] = nil
	clear(ix.vecs[slot*ix.dim : (slot+1)*ix.dim])
	ix.free = append(ix.free, slot)
}

// Apply writes the changes in one durable transaction (bbolt fsyncs on commit),
// then mirrors them in memory.
func (ix *Index) Apply(ctx context.Context, changes []domain.Change) ([]domain.Outcome, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i := range changes {
		for j := range changes[i].Records {
			r := &changes[i].Records[j]
			if len(r.Vector) != ix.dim {
				return nil, fmt.Errorf("embedded index: record %q has dimension %d, want %d", r.PK, len(r.Vector), ix.dim)
			}
			if r.PostID != changes[i].PostID || r.PK != domain.PrimaryKey(r.PostID, r.Modality) {
				return nil, fmt.Errorf("embedded index: record %q does not belong to post %q", r.PK, changes[i].PostID)
			}
		}
	}
	outcomes := make([]domain.Outcome, len(changes))
	type memOp struct {
		put []*domain.Record
		del []string
	}
	ops := make([]memOp, len(changes))
	err := ix.db.Update(func(tx *bolt.Tx) error {
		recs, posts, deny := tx.Bucket(bucketRecords), tx.Bucket(bucketPosts), tx.Bucket(bucketDeny)
		for i, ch := range changes {
			id := []byte(ch.PostID)
			var prev postEntry
			if v := posts.Get(id); v != nil {
				if err := json.Unmarshal(v, &prev); err != nil {
					return fmt.Errorf("post %q entry: %w", ch.PostID, err)
				}
			}
			if ch.Delete {
				for _, pk := range prev.PKs {
					if err := recs.Delete([]byte(pk)); err != nil {
						return err
					}
					ops[i].del = append(ops[i].del, pk)
				}
				if err := posts.Delete(id); err != nil {
					return err
				}
				if ch.Deny {
					ts, _ := time.Now().UTC().MarshalText()
					if err := deny.Put(id, ts); err != nil {
						return err
					}
				}
				outcomes[i] = domain.Deleted
				continue
			}
			if deny.Get(id) != nil {
				outcomes[i] = domain.Denied
				continue
			}
			if ch.Seq != 0 && prev.Seq != 0 && ch.Seq < prev.Seq {
				outcomes[i] = domain.Stale
				continue
			}
			next := postEntry{Seq: ch.Seq}
			keep := map[string]bool{}
			for j := range ch.Records {
				r := &ch.Records[j]
				b, err := encodeRecord(r)
				if err != nil {
					return err
				}
				if err := recs.Put([]byte(r.PK), b); err != nil {
					return err
				}
				keep[r.PK] = true
				next.PKs = append(next.PKs, r.PK)
				ops[i].put = append(ops[i].put, r)
			}
			for _, pk := range prev.PKs {
				if !keep[pk] {
					if err := recs.Delete([]byte(pk)); err != nil {
						return err
					}
					ops[i].del = append(ops[i].del, pk)
				}
			}
			js, _ := json.Marshal(next)
			if err := posts.Put(id, js); err != nil {
				return err
			}
			outcomes[i] = domain.Applied
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("embedded index: apply: %w", err)
	}
	ix.mu.Lock()
	for _, op := range ops {
		for _, pk := range op.del {
			ix.delMem(pk)
		}
		for _, r := range op.put {
			ix.putMem(r)
		}
	}
	ix.mu.Unlock()
	return outcomes, nil
}

// IsDenied reports whether the post id is on the deny-list.
func (ix *Index) IsDenied(ctx context.Context, postID string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	var denied bool
	err := ix.db.View(func(tx *bolt.Tx) error {
		denied = tx.Bucket(bucketDeny).Get([]byte(postID)) != nil
		return nil
	})
	return denied, err
}

// Search answers a vector query. The embedded index computes exact cosine for the
// exact and ann plans (ann falls back to exact here).
func (ix *Index) Search(ctx context.Context, q domain.VectorQuery) ([]domain.Hit, error) {
	if len(q.Vector) != ix.dim {
		return nil, fmt.Errorf("query vector has dimension %d, the index holds %d", len(q.Vector), ix.dim)
	}
	if q.K <= 0 {
		return nil, fmt.Errorf("k must be positive, got %d", q.K)
	}
	switch q.Plan {
	case "", domain.PlanExact, domain.PlanANN:
	default:
		return nil, fmt.Errorf("plan %q is not supported by the embedded index yet", q.Plan)
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	top := &topK{k: q.K}
	filter := !q.Filter.Empty()
	dim := ix.dim
	for slot, r := range ix.recs {
		if r == nil || (q.Modality != "" && r.Modality != q.Modality) {
			continue
		}
		if slot%16384 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if filter && !q.Filter.Match(r) {
			continue
		}
		s := dot(q.Vector, ix.vecs[slot*dim:(slot+1)*dim])
		top.offer(scored{slot: slot, score: s, pk: r.PK})
	}
	res := top.sorted()
	hits := make([]domain.Hit, len(res))
	for i, c := range res {
		hits[i] = domain.HitFromRecord(ix.recs[c.slot], c.score)
	}
	return hits, nil
}

// Get returns the records with the given primary keys, in order, skipping unknown keys.
func (ix *Index) Get(ctx context.Context, pks []string) ([]domain.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make([]domain.Record, 0, len(pks))
	for _, pk := range pks {
		slot, ok := ix.slotOf[pk]
		if !ok {
			continue
		}
		r := *ix.recs[slot]
		r.Vector = append([]float32(nil), ix.vecs[slot*ix.dim:(slot+1)*ix.dim]...)
		out = append(out, r)
	}
	return out, nil
}

// Count returns the number of records per modality.
func (ix *Index) Count(ctx context.Context) (map[domain.Modality]int, error) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make(map[domain.Modality]int, len(ix.perModal))
	for m, n := range ix.perModal {
		if n > 0 {
			out[m] = n
		}
	}
	return out, nil
}

// Dim returns the embedding dimension.
func (ix *Index) Dim() int { return ix.dim }

// Close closes the store.
func (ix *Index) Close() error { return ix.db.Close() }

var _ domain.Index = (*Index)(nil)
