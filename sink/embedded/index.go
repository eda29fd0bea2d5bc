// Package embedded is xmodal's in-process index: records persisted in a crash-safe
// bbolt file; vectors, binary codes and PDQ hashes held in compact in-memory
// arrays (one dense segment per modality) rebuilt from it on start. It serves
// one process; separate indexer and query processes need Milvus.
//
// Plans: exact (and ann, which falls back to it) scans every float vector;
// hash ranks by the Hamming distance of the binary codes; hybrid takes the
// Hamming top C and re-ranks those by exact cosine; NearDup finds PDQ hashes
// within a distance bound of any of the query's hashes. Filters apply to
// every plan. Ties break by score (or distance), then primary key.
package embedded

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/xmodal/xmodal/domain"
	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/internal/clusters"
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
	// Coder computes binary codes (encoders/hash.Coder implements it). With a
	// coder, records that arrive without a code of its length get one, and
	// when the store's codes came from another coder (another ID) every
	// record is re-coded on open. Without one, records keep the codes they
	// carry, which must all have one length.
	Coder Coder
	// HybridCandidates is C for hybrid queries that give none; 0 means
	// DefaultCandidates of the number of records searched.
	HybridCandidates int
	// Clusters, when set, keeps near-duplicate clusters of image posts at
	// ingest (clusters.go, docs/clusters.md).
	Clusters *ClusterOptions
	// NearDupSeedWindows is the near-duplicate window search's
	// neardup.IndexOptions.SeedWindows (0: every query window seeds).
	NearDupSeedWindows int
	// NearDupExactLookup is the window index's neardup.IndexOptions.
	// ExactLookup (false: the approximate first stage).
	NearDupExactLookup bool
	// NearDupWholeBand is the window index's neardup.IndexOptions.
	// WholeBand (0: neardup.WholeBandDistance; negative: off).
	NearDupWholeBand int
}

// Coder computes the binary code of a vector of a modality.
type Coder interface {
	Bits() int
	// ID identifies the parameters: codes of coders with other IDs are not
	// comparable.
	ID() string
	Code(vec []float32, m domain.Modality) []byte
}

// DefaultCandidates is the hybrid plan's C when neither the query nor the
// options set it: max(1,000, 1% of the n records searched). 1% keeps
// recall@10 against exact at 0.97-1.0 on the benchmarks (bench/results/hash.txt,
// hash-model.txt); the floor keeps small collections, where exact is cheap
// anyway, from short lists of a few records.
func DefaultCandidates(n int) int {
	return max(1000, (n+99)/100)
}

// Index is the embedded index. It is safe for concurrent use.
type Index struct {
	db  *bolt.DB
	dim int
	log *slog.Logger

	coder      Coder
	candidates int

	mu sync.RWMutex
	// codeBits is the length of the codes (0: none yet), words the uint64s
	// that hold one, codeID the coder that made them ("" when unknown).
	codeBits, words int
	codeID          string
	segs            [3]*segment // image, text, fused
	slotOf          map[string]loc
	strs            map[string]string // interned authors, labels, model versions (mu)

	cl    *clusters.Store // nil: clusters off
	clOpt ClusterOptions

	win *windowIndex // near-duplicate windows of image records (windows.go)
}

// loc is where a record lives: its segment and position.
type loc struct {
	seg uint8
	pos int32
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
	ix := &Index{db: db, dim: opt.Dim, log: opt.Logger, coder: opt.Coder, candidates: opt.HybridCandidates, slotOf: map[string]loc{}, strs: map[string]string{}, win: newWindowIndex(neardup.IndexOptions{SeedWindows: opt.NearDupSeedWindows, ExactLookup: opt.NearDupExactLookup, WholeBand: opt.NearDupWholeBand})}
	for i, m := range domain.Modalities {
		ix.segs[i] = &segment{mod: m}
	}
	if opt.Coder != nil {
		if b := opt.Coder.Bits(); b <= 0 || b%8 != 0 || b > maxCodeBits {
			db.Close()
			return nil, fmt.Errorf("embedded index: coder of %d bits (want a multiple of 8 up to %d)", b, maxCodeBits)
		}
	}
	if err := ix.init(opt); err != nil {
		db.Close()
		return nil, err
	}
	rebuild := false
	if opt.Clusters != nil {
		if rebuild, err = ix.openClusters(*opt.Clusters); err != nil {
			db.Close()
			return nil, err
		}
	}
	if err := ix.load(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if rebuild {
		if err := ix.rebuildClusters(ctx); err != nil {
			db.Close()
			return nil, fmt.Errorf("embedded index: build clusters: %w", err)
		}
	}
	ix.startWindows()
	return ix, nil
}

func (ix *Index) init(opt Options) error {
	return ix.db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketRecords, bucketPosts, bucketDeny, bucketMeta, bucketThumbs} {
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
			if err := meta.Put([]byte("model_version"), []byte(opt.ModelVersion)); err != nil {
				return err
			}
		}
		if v := meta.Get(keyCode); v != nil {
			var cm codeMeta
			if err := json.Unmarshal(v, &cm); err != nil {
				return fmt.Errorf("embedded index: meta code: %w", err)
			}
			ix.codeBits, ix.codeID = cm.Bits, cm.ID
		}
		if opt.Coder != nil && ix.codeBits != opt.Coder.Bits() {
			// Codes of another length are recomputed on load; until then none match.
			ix.codeID = ""
		}
		if opt.Coder != nil {
			ix.codeBits = opt.Coder.Bits()
		}
		ix.words = (ix.codeBits + 63) / 64
		return nil
	})
}

var keyCode = []byte("code")

// maxCodeBits bounds the binary code length.
const maxCodeBits = 4096

// codeMeta is what the store remembers of its codes.
type codeMeta struct {
	Bits int    `json:"bits"`
	ID   string `json:"id,omitempty"`
}

func (ix *Index) load(ctx context.Context) error {
	start := time.Now()
	// With a coder, a record whose code is missing, of another length, or
	// from another coder is re-coded and written back.
	recodeAll := ix.coder != nil && ix.codeID != ix.coder.ID()
	var recoded []string
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
			if !r.Modality.Valid() {
				return fmt.Errorf("record %q has modality %q", k, r.Modality)
			}
			if ix.coder != nil && (recodeAll || len(r.Code) != ix.codeBits/8) {
				r.Code = ix.coder.Code(r.Vector, r.Modality)
				recoded = append(recoded, r.PK)
			}
			ix.putMem(r)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("embedded index: load: %w", err)
	}
	if err := ix.persistRecoded(ctx, recoded); err != nil {
		return fmt.Errorf("embedded index: re-code: %w", err)
	}
	// Loading read every record: drop those file pages from the resident set
	// and hand the loading's garbage back to the system, so that RSS is what
	// the index holds (vectors, codes, hashes, ranking metadata).
	ix.releaseMapped()
	debug.FreeOSMemory()
	ix.log.Info("embedded index loaded", "records", len(ix.slotOf), "code_bits", ix.codeBits, "recoded", len(recoded),
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

// persistRecoded writes the codes computed on load back to the store, in
// batches, then records the coder's ID (so a crash midway re-codes again).
func (ix *Index) persistRecoded(ctx context.Context, pks []string) error {
	if ix.coder == nil {
		return nil
	}
	if len(pks) > 0 {
		ix.log.Info("embedded index: writing re-computed binary codes", "records", len(pks), "coder", ix.coder.ID(), "previous", ix.codeID)
	}
	const batch = 4096
	for len(pks) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(batch, len(pks))
		err := ix.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketRecords)
			for _, pk := range pks[:n] {
				l, ok := ix.slotOf[pk]
				if !ok {
					continue
				}
				// The stored record with the new code (memory does not hold
				// what only a reply shows).
				old := b.Get([]byte(pk))
				if old == nil {
					continue
				}
				r, postThumb, err := decodeStored(old)
				if err != nil {
					return err
				}
				mem := ix.segs[l.seg].record(int(l.pos), ix.dim, ix.words, ix.codeBits/8)
				r.Code = mem.Code
				enc, err := encodeStored(r, postThumb)
				if err != nil {
					return err
				}
				if err := b.Put([]byte(pk), enc); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		pks = pks[n:]
	}
	ix.codeID = ix.coder.ID()
	return ix.db.Update(func(tx *bolt.Tx) error {
		js, _ := json.Marshal(codeMeta{Bits: ix.codeBits, ID: ix.codeID})
		return tx.Bucket(bucketMeta).Put(keyCode, js)
	})
}

// putMem places r (with its vector, code and PDQ) in memory; callers hold mu
// for writing (or own the index, while loading).
func (ix *Index) putMem(r *domain.Record) {
	si := segIndex(r.Modality)
	if l, ok := ix.slotOf[r.PK]; ok && int(l.seg) != si {
		ix.delMem(r.PK)
	}
	seg := ix.segs[si]
	seg.ensureCodes(ix.words)
	l, ok := ix.slotOf[r.PK]
	if !ok {
		l = loc{seg: uint8(si), pos: int32(seg.grow(ix.dim, ix.words))}
		ix.slotOf[r.PK] = l
	}
	seg.set(int(l.pos), r, ix.slim(r), ix.dim, ix.words, ix.codeBits/8)
	if r.Modality == domain.ModalityImage && ix.win.put(r) {
		ix.win.bad++
		if ix.win.bad <= 3 {
			ix.log.Warn("embedded index: a record's stored near-duplicate windows do not parse; it is found by whole-image PDQ only", "pk", r.PK)
		}
	}
}

func (ix *Index) delMem(pk string) {
	l, ok := ix.slotOf[pk]
	if !ok {
		return
	}
	delete(ix.slotOf, pk)
	ix.win.del(pk)
	if moved := ix.segs[l.seg].remove(int(l.pos), ix.dim, ix.words); moved != "" {
		ix.slotOf[moved] = l
	}
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
			if !r.Modality.Valid() {
				return nil, fmt.Errorf("embedded index: record %q has modality %q (want image, text or fused)", r.PK, r.Modality)
			}
			if r.PostID != changes[i].PostID || r.PK != domain.PrimaryKey(r.PostID, r.Modality) {
				return nil, fmt.Errorf("embedded index: record %q does not belong to post %q", r.PK, changes[i].PostID)
			}
			if n := len(r.PDQ); n != 0 && n != domain.PDQBytes {
				return nil, fmt.Errorf("embedded index: record %q has a PDQ hash of %d bytes, want %d", r.PK, n, domain.PDQBytes)
			}
		}
	}
	changes, err := ix.withCodes(changes)
	if err != nil {
		return nil, err
	}
	outcomes := make([]domain.Outcome, len(changes))
	type memOp struct {
		put []*domain.Record
		del []string
	}
	ops := make([]memOp, len(changes))
	var adopt codeMeta
	var ct *clusters.Txn
	err = ix.db.Update(func(tx *bolt.Tx) error {
		recs, posts, deny, thumbs := tx.Bucket(bucketRecords), tx.Bucket(bucketPosts), tx.Bucket(bucketDeny), tx.Bucket(bucketThumbs)
		var err error
		if adopt, err = ix.checkCodeLengths(tx, changes); err != nil {
			return err
		}
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
				if err := thumbs.Delete(id); err != nil {
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
			// One thumbnail per post, whatever its records carry.
			var thumb []byte
			for j := range ch.Records {
				if t := ch.Records[j].Thumbnail; len(t) > 0 && thumb == nil {
					thumb = t
				}
			}
			if thumb != nil {
				if err := thumbs.Put(id, thumb); err != nil {
					return err
				}
			} else if err := thumbs.Delete(id); err != nil {
				return err
			}
			for j := range ch.Records {
				r := &ch.Records[j]
				// The post's thumbnail is stored once; a record whose
				// own differs (none do in the pipeline) keeps it inline.
				b, err := encodeStored(r, len(r.Thumbnail) > 0 && bytes.Equal(r.Thumbnail, thumb))
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
		// The clusters change in the same transaction as the records (after
		// them: Begin waits for another Apply's clusters to be published).
		if ix.cl != nil {
			ct = ix.cl.Begin(tx)
			for i := range changes {
				if err := ix.clusterChange(ct, &changes[i], outcomes[i]); err != nil {
					return fmt.Errorf("clusters: post %q: %w", changes[i].PostID, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		if ct != nil {
			ct.Abort()
		}
		return nil, fmt.Errorf("embedded index: apply: %w", err)
	}
	if ct != nil {
		ct.Commit()
	}
	ix.mu.Lock()
	if adopt.Bits != 0 && ix.codeBits == 0 {
		ix.codeBits, ix.words = adopt.Bits, (adopt.Bits+63)/64
	}
	for _, op := range ops {
		for _, pk := range op.del {
			ix.delMem(pk)
		}
		for _, r := range op.put {
			ix.putMem(r)
		}
	}
	if ct != nil {
		ix.setClusters(ct.Changed())
	}
	ix.mu.Unlock()
	ix.win.poke()
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

// AnyDenied reports whether any of the post ids is on the deny-list, in one
// read transaction (the query service checks every hit of a cached reply).
func (ix *Index) AnyDenied(ctx context.Context, postIDs []string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	var denied bool
	err := ix.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDeny)
		for _, id := range postIDs {
			if b.Get([]byte(id)) != nil {
				denied = true
				return nil
			}
		}
		return nil
	})
	return denied, err
}

// DeniedIDs calls fn for every post id on the index's deny-list with the time
// it was denied (internal/denylist seeds a new replicated list from it).
func (ix *Index) DeniedIDs(ctx context.Context, fn func(postID string, at time.Time) error) error {
	// Collect first: fn may block on the network, and a read transaction held
	// meanwhile would keep bbolt from reusing pages.
	type entry struct {
		id string
		at time.Time
	}
	var all []entry
	err := ix.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDeny).ForEach(func(k, v []byte) error {
			var at time.Time
			_ = at.UnmarshalText(v)
			all = append(all, entry{string(k), at})
			return ctx.Err()
		})
	})
	if err != nil {
		return err
	}
	for _, e := range all {
		if err := fn(e.id, e.at); err != nil {
			return err
		}
	}
	return nil
}

// Get returns the records with the given primary keys, in order, skipping unknown keys.
func (ix *Index) Get(ctx context.Context, pks []string) ([]domain.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ix.mu.RLock()
	out := make([]domain.Record, 0, len(pks))
	for _, pk := range pks {
		l, ok := ix.slotOf[pk]
		if !ok {
			continue
		}
		out = append(out, ix.segs[l.seg].record(int(l.pos), ix.dim, ix.words, ix.codeBits/8))
	}
	ix.mu.RUnlock()
	err := ix.db.View(func(tx *bolt.Tx) error {
		for i := range out {
			full(tx, &out[i])
		}
		return nil
	})
	return out, err
}

// Count returns the number of records per modality.
func (ix *Index) Count(ctx context.Context) (map[domain.Modality]int, error) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	out := make(map[domain.Modality]int, len(ix.segs))
	for _, seg := range ix.segs {
		if n := seg.len(); n > 0 {
			out[seg.mod] = n
		}
	}
	return out, nil
}

// Dim returns the embedding dimension.
func (ix *Index) Dim() int { return ix.dim }

// CodeBits returns the length of the binary codes the index holds (0: none).
func (ix *Index) CodeBits() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.codeBits
}

// Close closes the store.
func (ix *Index) Close() error {
	ix.stopWindows()
	return ix.db.Close()
}

var _ domain.Index = (*Index)(nil)
