package clusters

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Buckets of the store, beside the caller's own in the same bbolt file.
var (
	bucketMembers = []byte("cl_members") // post id -> cluster, member id, time, signature
	bucketSets    = []byte("cl_sets")    // cluster | time | post id -> member id (members, oldest first)
	bucketInfos   = []byte("cl_infos")   // cluster -> size, first/last seen, representative, window counts
)

// Options configure a Store.
type Options struct {
	// Linker is the link relation (required).
	Linker Linker
	// Bucket is the granularity of the per-window counts (default 1 minute):
	// trending windows are whole buckets.
	Bucket time.Duration
	// Retention drops window counts older than this before a cluster's newest
	// member (default 48 hours).
	Retention time.Duration
	// SplitLimit: when a member leaves a cluster of at most this many members,
	// the cluster's connected components are recomputed and it splits where
	// the member was the only link; above it the cluster stays whole (a
	// batch rebuild, xmodal dedup --apply, splits it). Default 10,000.
	SplitLimit int
}

// Defaults.
const (
	DefaultBucket     = time.Minute
	DefaultRetention  = 48 * time.Hour
	DefaultSplitLimit = 10000
)

// Validate reports a bad option.
func (o *Options) Validate() error {
	var errs []error
	if o.Linker == nil {
		errs = append(errs, errors.New("a linker is required"))
	}
	if o.Bucket < 0 || o.Retention < 0 || o.SplitLimit < 0 {
		errs = append(errs, errors.New("bucket, retention and split limit must not be negative"))
	}
	if o.Bucket > 0 && o.Retention > 0 && o.Retention < o.Bucket {
		errs = append(errs, fmt.Errorf("retention %v is shorter than a bucket (%v)", o.Retention, o.Bucket))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("clusters: %w", err)
	}
	return nil
}

// WithDefaults returns o with the zero fields set to their defaults.
func (o Options) WithDefaults() Options {
	if o.Bucket == 0 {
		o.Bucket = DefaultBucket
	}
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.SplitLimit == 0 {
		o.SplitLimit = DefaultSplitLimit
	}
	return o
}

// Member is a post's place in a cluster.
type Member struct {
	Cluster uint64
	ID      uint64 // the member's id in the linker
	At      int64  // the post's creation time, Unix nanoseconds
	Sig     []byte // its signature (whole-image PDQ hash)
}

// Count is the number of members created in one bucket (start = Bucket × the
// store's bucket length since the Unix epoch).
type Count struct {
	Bucket int64
	N      int32
}

// Info is a row of the cluster table.
type Info struct {
	ID    uint64
	Size  int
	First int64 // creation time of the earliest member (Unix ns)
	Last  int64 // of the newest
	// Rep is the representative: the earliest member (ties: smallest post id).
	Rep    string
	Counts []Count // ascending buckets
}

// FirstSeen and LastSeen as times.
func (i *Info) FirstSeen() time.Time { return time.Unix(0, i.First).UTC() }

// LastSeen is the creation time of the newest member.
func (i *Info) LastSeen() time.Time { return time.Unix(0, i.Last).UTC() }

func (i *Info) clone() *Info {
	c := *i
	c.Counts = slices.Clone(i.Counts)
	return &c
}

// Store is the persisted cluster state: the member and cluster tables live
// in bbolt buckets written in the caller's transactions (a merge is atomic
// with the records that caused it), mirrored in memory for lookups. One
// transaction (Txn) writes at a time; lookups run concurrently with it and
// see its changes only after Commit.
type Store struct {
	opt Options

	wmu sync.Mutex // held by the open Txn

	mu      sync.RWMutex
	members map[string]*Member
	postOf  map[uint64]string
	infos   map[uint64]*Info
	multi   map[uint64]*Info // clusters of two or more members (trending candidates)

	merges, splits atomic.Uint64
}

// Init creates the store's buckets in tx (call it in the file's first
// update transaction).
func Init(tx *bolt.Tx) error {
	for _, b := range [][]byte{bucketMembers, bucketSets, bucketInfos} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	return nil
}

// Open loads the store from tx (buckets made by Init) and indexes every
// member's signature in the linker.
func Open(tx *bolt.Tx, opt Options) (*Store, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	s := &Store{opt: opt.WithDefaults(), members: map[string]*Member{}, postOf: map[uint64]string{},
		infos: map[uint64]*Info{}, multi: map[uint64]*Info{}}
	mb, ib := tx.Bucket(bucketMembers), tx.Bucket(bucketInfos)
	if mb == nil || ib == nil {
		return nil, errors.New("clusters: the store's buckets are missing (call Init)")
	}
	var ids []uint64
	var sigs [][]byte
	flush := func() error {
		if len(ids) == 0 {
			return nil
		}
		var err error
		if pl, ok := s.opt.Linker.(interface {
			AddBatch([]uint64, [][]byte) error
		}); ok {
			err = pl.AddBatch(ids, sigs)
		} else {
			for i := range ids {
				if err = s.opt.Linker.Add(ids[i], sigs[i]); err != nil {
					break
				}
			}
		}
		ids, sigs = ids[:0], sigs[:0]
		return err
	}
	err := mb.ForEach(func(k, v []byte) error {
		m, err := decodeMember(v)
		if err != nil {
			return fmt.Errorf("clusters: member %q: %w", k, err)
		}
		post := string(k)
		s.members[post] = m
		s.postOf[m.ID] = post
		ids, sigs = append(ids, m.ID), append(sigs, m.Sig)
		if len(ids) == 65536 {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return nil, err
	}
	err = ib.ForEach(func(k, v []byte) error {
		in, err := decodeInfo(v)
		if err != nil {
			return fmt.Errorf("clusters: cluster %x: %w", k, err)
		}
		in.ID = binary.BigEndian.Uint64(k)
		s.infos[in.ID] = in
		if in.Size >= 2 {
			s.multi[in.ID] = in
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Lookup returns the cluster of a post.
func (s *Store) Lookup(post string) (Info, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m, ok := s.members[post]
	if !ok {
		return Info{}, false
	}
	in, ok := s.infos[m.Cluster]
	if !ok {
		return Info{}, false
	}
	return Info{ID: in.ID, Size: in.Size, First: in.First, Last: in.Last, Rep: in.Rep}, true
}

// ClusterOf returns the cluster id of a post (0: none).
func (s *Store) ClusterOf(post string) uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if m, ok := s.members[post]; ok {
		return m.Cluster
	}
	return 0
}

// Get returns a cluster's row.
func (s *Store) Get(id uint64) (Info, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	in, ok := s.infos[id]
	if !ok {
		return Info{}, false
	}
	return *in.clone(), true
}

// Stats describe the store.
type Stats struct {
	Members, Clusters, Multi, Largest int
	Merges, Splits                    uint64
}

// Stats returns the store's statistics (Largest walks the clusters of two
// or more members).
func (s *Store) Stats() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := Stats{Members: len(s.members), Clusters: len(s.infos), Multi: len(s.multi), Merges: s.merges.Load(), Splits: s.splits.Load()}
	if len(s.infos) > 0 {
		st.Largest = 1
	}
	for _, in := range s.multi {
		st.Largest = max(st.Largest, in.Size)
	}
	return st
}

// Partition returns every member's cluster (post id -> cluster id).
func (s *Store) Partition() map[string]uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]uint64, len(s.members))
	for p, m := range s.members {
		out[p] = m.Cluster
	}
	return out
}

// Bucket is the length of a window-count bucket.
func (s *Store) Bucket() time.Duration { return s.opt.Bucket }

// Txn changes the store inside the caller's bbolt update transaction. Call
// Commit after the bbolt transaction committed, or Abort when it did not.
type Txn struct {
	s       *Store
	tx      *bolt.Tx
	members map[string]*Member // overlay of s.members (nil: deleted)
	posts   map[uint64]string  // overlay of s.postOf ("": deleted)
	infos   map[uint64]*Info   // overlay of s.infos (nil: deleted)
	changed map[string]uint64  // post -> its cluster now (0: none)
	added   []uint64
	removed []Member
	merges  int
	splits  int
	done    bool
	reset   bool
}

// Begin starts changing the store in tx (a bbolt update transaction of the
// file the store was opened from). Only one Txn is open at a time: Begin
// waits for the previous one's Commit or Abort.
func (s *Store) Begin(tx *bolt.Tx) *Txn {
	s.wmu.Lock()
	return &Txn{s: s, tx: tx, members: map[string]*Member{}, posts: map[uint64]string{},
		infos: map[uint64]*Info{}, changed: map[string]uint64{}}
}

func (t *Txn) member(post string) *Member {
	if m, ok := t.members[post]; ok {
		return m
	}
	if t.reset {
		return nil
	}
	return t.s.members[post] // only the Txn's holder writes s.members
}

// Reset empties the store (a rebuild follows: Join every post again).
// Readers keep seeing the old clusters until Commit.
func (t *Txn) Reset() error {
	// Ids are never reused: the sequences survive the drop.
	mseq, iseq := t.tx.Bucket(bucketMembers).Sequence(), t.tx.Bucket(bucketInfos).Sequence()
	if err := Drop(t.tx); err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketMembers).SetSequence(mseq); err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketInfos).SetSequence(iseq); err != nil {
		return err
	}
	for post, m := range t.s.members {
		if _, ok := t.members[post]; ok {
			continue
		}
		t.s.opt.Linker.Remove(m.ID)
		t.removed = append(t.removed, *m)
		t.changed[post] = 0
	}
	for post, m := range t.members {
		if m != nil {
			t.s.opt.Linker.Remove(m.ID)
			t.changed[post] = 0
		}
	}
	t.members, t.posts, t.infos = map[string]*Member{}, map[uint64]string{}, map[uint64]*Info{}
	t.reset = true
	return nil
}

func (t *Txn) postOf(id uint64) string {
	if p, ok := t.posts[id]; ok {
		return p
	}
	if t.reset {
		return ""
	}
	return t.s.postOf[id]
}

func (t *Txn) info(id uint64) *Info {
	if in, ok := t.infos[id]; ok {
		return in
	}
	if t.reset {
		return nil
	}
	in := t.s.infos[id]
	if in == nil {
		return nil
	}
	c := in.clone()
	t.infos[id] = c
	return c
}

// Tx is the bbolt transaction the Txn writes in.
func (t *Txn) Tx() *bolt.Tx { return t.tx }

// Changed lists the posts whose cluster changed in this Txn, with the
// cluster each is in now (0: none).
func (t *Txn) Changed() map[string]uint64 { return t.changed }

// Merges and Splits count this Txn's merges and splits.
func (t *Txn) Merges() int { return t.merges }

// Splits counts this Txn's splits.
func (t *Txn) Splits() int { return t.splits }

// Join places post (created at, with signature sig) in the cluster of its
// linked members, merging their clusters when it links several (the smaller
// clusters are relabelled into the largest), or in a new cluster. Joining
// again with the same signature and time changes nothing; with another, the
// post leaves its cluster first. It returns the post's cluster.
func (t *Txn) Join(post string, at time.Time, sig []byte) (uint64, error) {
	ns := at.UnixNano()
	if m := t.member(post); m != nil {
		if m.At == ns && bytes.Equal(m.Sig, sig) {
			return m.Cluster, nil
		}
		if err := t.Leave(post); err != nil {
			return 0, err
		}
	}
	// The clusters sig links to: one linked member of each is enough, so
	// the members of a cluster already found are not checked.
	var cids []uint64
	clusterOf := func(id uint64) (uint64, bool) {
		if p := t.postOf(id); p != "" {
			if m := t.member(p); m != nil {
				return m.Cluster, true
			}
		}
		return 0, false
	}
	err := neighboursSkip(t.s.opt.Linker, sig, func(id uint64) bool {
		c, ok := clusterOf(id)
		return !ok || slices.Contains(cids, c)
	}, func(id uint64) {
		if c, ok := clusterOf(id); ok && !slices.Contains(cids, c) {
			cids = append(cids, c)
		}
	})
	if err != nil {
		return 0, err
	}
	mb := t.tx.Bucket(bucketMembers)
	mid, err := mb.NextSequence()
	if err != nil {
		return 0, err
	}
	var target *Info
	if len(cids) == 0 {
		cid, err := t.tx.Bucket(bucketInfos).NextSequence()
		if err != nil {
			return 0, err
		}
		target = &Info{ID: cid}
		t.infos[cid] = target
	} else {
		infos := make([]*Info, 0, len(cids))
		for _, c := range cids {
			in := t.info(c)
			if in == nil {
				return 0, fmt.Errorf("clusters: cluster %d of a member is missing", c)
			}
			infos = append(infos, in)
		}
		slices.SortFunc(infos, func(a, b *Info) int {
			if a.Size != b.Size {
				return b.Size - a.Size
			}
			return cmpU64(a.ID, b.ID)
		})
		target = infos[0]
		for _, from := range infos[1:] {
			if err := t.relabel(from, target); err != nil {
				return 0, err
			}
			t.merges++
		}
	}
	m := &Member{Cluster: target.ID, ID: mid, At: ns, Sig: slices.Clone(sig)}
	if err := t.s.opt.Linker.Add(mid, sig); err != nil {
		return 0, err
	}
	t.added = append(t.added, mid)
	if err := t.putMember(post, m); err != nil {
		return 0, err
	}
	t.add(target, post, ns)
	return target.ID, t.putInfo(target)
}

// relabel moves every member of from into to and drops from.
func (t *Txn) relabel(from, to *Info) error {
	entries, err := t.entries(from.ID)
	if err != nil {
		return err
	}
	for _, e := range entries {
		m := *t.member(e.post)
		m.Cluster = to.ID
		if err := t.putMember(e.post, &m); err != nil {
			return err
		}
	}
	to.Size += from.Size
	to.mergeCounts(from.Counts)
	if from.First < to.First || (from.First == to.First && from.Rep < to.Rep) {
		to.First, to.Rep = from.First, from.Rep
	}
	to.Last = max(to.Last, from.Last)
	to.prune(t.s.opt)
	return t.delInfo(from.ID)
}

// entry is a member as the cluster's set lists it.
type entry struct {
	post string
	at   int64
	id   uint64
}

// entries lists a cluster's members, oldest first.
func (t *Txn) entries(cid uint64) ([]entry, error) {
	var out []entry
	c := t.tx.Bucket(bucketSets).Cursor()
	var pre [8]byte
	binary.BigEndian.PutUint64(pre[:], cid)
	for k, v := c.Seek(pre[:]); k != nil && bytes.HasPrefix(k, pre[:]); k, v = c.Next() {
		if len(k) < 16 || len(v) != 8 {
			return nil, fmt.Errorf("clusters: bad set key %x", k)
		}
		out = append(out, entry{post: string(k[16:]), at: unflipTime(k[8:16]), id: binary.BigEndian.Uint64(v)})
	}
	return out, nil
}

// Leave removes post from its cluster (a takedown, a delete, or a new
// version without an image). When the cluster has at most SplitLimit
// members its connected components are recomputed: where the post was the
// only link, the cluster splits; the largest part keeps the id (ties: the
// part with the earliest member) and the others get new ids.
func (t *Txn) Leave(post string) error {
	m := t.member(post)
	if m == nil {
		return nil
	}
	if err := t.delMember(post, m); err != nil {
		return err
	}
	t.s.opt.Linker.Remove(m.ID)
	t.removed = append(t.removed, *m)
	in := t.info(m.Cluster)
	if in == nil {
		return fmt.Errorf("clusters: cluster %d of %q is missing", m.Cluster, post)
	}
	if in.Size <= 1 {
		return t.delInfo(in.ID)
	}
	entries, err := t.entries(in.ID)
	if err != nil {
		return err
	}
	if len(entries) > t.s.opt.SplitLimit {
		*in = *infoOf(in.ID, entries, t.s.opt)
		return t.putInfo(in)
	}
	return t.split(in, entries)
}

// split recomputes the components of a cluster's members.
func (t *Txn) split(in *Info, entries []entry) error {
	idx := make(map[uint64]int, len(entries))
	for i, e := range entries {
		idx[e.id] = i
	}
	uf := NewUnionFind(len(entries))
	for i, e := range entries {
		// Members already in i's component need no check.
		err := neighboursSkip(t.s.opt.Linker, t.member(e.post).Sig, func(id uint64) bool {
			j, ok := idx[id]
			return !ok || uf.Find(j) == uf.Find(i)
		}, func(id uint64) { uf.Union(i, idx[id]) })
		if err != nil {
			return err
		}
	}
	parts := map[int][]entry{}
	var roots []int
	for i, e := range entries {
		r := uf.Find(i)
		if _, ok := parts[r]; !ok {
			roots = append(roots, r) // in order of each part's earliest member
		}
		parts[r] = append(parts[r], e)
	}
	if len(roots) == 1 {
		*in = *infoOf(in.ID, entries, t.s.opt)
		return t.putInfo(in)
	}
	// The largest part keeps the id; ties go to the part with the earliest member.
	slices.SortStableFunc(roots, func(a, b int) int { return len(parts[b]) - len(parts[a]) })
	*in = *infoOf(in.ID, parts[roots[0]], t.s.opt)
	if err := t.putInfo(in); err != nil {
		return err
	}
	for _, r := range roots[1:] {
		cid, err := t.tx.Bucket(bucketInfos).NextSequence()
		if err != nil {
			return err
		}
		for _, e := range parts[r] {
			m := *t.member(e.post)
			m.Cluster = cid
			if err := t.putMember(e.post, &m); err != nil {
				return err
			}
		}
		ni := infoOf(cid, parts[r], t.s.opt)
		t.infos[cid] = ni
		if err := t.putInfo(ni); err != nil {
			return err
		}
		t.splits++
	}
	return nil
}

// infoOf builds a cluster's row from its members (oldest first).
func infoOf(id uint64, es []entry, opt Options) *Info {
	in := &Info{ID: id, Size: len(es)}
	if len(es) == 0 {
		return in
	}
	in.First, in.Rep = es[0].at, es[0].post
	for _, e := range es {
		if e.at == in.First && e.post < in.Rep {
			in.Rep = e.post
		}
		in.Last = max(in.Last, e.at)
		in.addCount(e.at, opt.Bucket)
	}
	in.prune(opt)
	return in
}

// add counts a new member in a cluster's row.
func (t *Txn) add(in *Info, post string, at int64) {
	if in.Size == 0 || at < in.First || (at == in.First && post < in.Rep) {
		in.First, in.Rep = at, post
	}
	if in.Size == 0 {
		in.Last = at
	}
	in.Last = max(in.Last, at)
	in.Size++
	in.addCount(at, t.s.opt.Bucket)
	in.prune(t.s.opt)
}

func bucketOf(at int64, g time.Duration) int64 {
	b := at / int64(g)
	if at < 0 && at%int64(g) != 0 {
		b--
	}
	return b
}

func (in *Info) addCount(at int64, g time.Duration) {
	b := bucketOf(at, g)
	i, ok := slices.BinarySearchFunc(in.Counts, b, func(c Count, b int64) int { return cmpI64(c.Bucket, b) })
	if ok {
		in.Counts[i].N++
		return
	}
	in.Counts = slices.Insert(in.Counts, i, Count{Bucket: b, N: 1})
}

func (in *Info) mergeCounts(cs []Count) {
	out := make([]Count, 0, len(in.Counts)+len(cs))
	a, b := in.Counts, cs
	for len(a) > 0 || len(b) > 0 {
		switch {
		case len(b) == 0 || (len(a) > 0 && a[0].Bucket < b[0].Bucket):
			out, a = append(out, a[0]), a[1:]
		case len(a) == 0 || b[0].Bucket < a[0].Bucket:
			out, b = append(out, b[0]), b[1:]
		default:
			out = append(out, Count{Bucket: a[0].Bucket, N: a[0].N + b[0].N})
			a, b = a[1:], b[1:]
		}
	}
	in.Counts = out
}

// prune drops counts older than the retention before the newest member.
func (in *Info) prune(opt Options) {
	lo := bucketOf(in.Last-int64(opt.Retention), opt.Bucket)
	i := 0
	for i < len(in.Counts) && in.Counts[i].Bucket < lo {
		i++
	}
	if i > 0 {
		in.Counts = slices.Delete(in.Counts, 0, i)
	}
}

func (t *Txn) putMember(post string, m *Member) error {
	old := t.member(post)
	sets := t.tx.Bucket(bucketSets)
	if old != nil && (old.Cluster != m.Cluster || old.At != m.At) {
		if err := sets.Delete(setKey(old.Cluster, old.At, post)); err != nil {
			return err
		}
	}
	var v [8]byte
	binary.BigEndian.PutUint64(v[:], m.ID)
	if err := sets.Put(setKey(m.Cluster, m.At, post), v[:]); err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketMembers).Put([]byte(post), encodeMember(m)); err != nil {
		return err
	}
	t.members[post] = m
	t.posts[m.ID] = post
	t.changed[post] = m.Cluster
	return nil
}

func (t *Txn) delMember(post string, m *Member) error {
	if err := t.tx.Bucket(bucketSets).Delete(setKey(m.Cluster, m.At, post)); err != nil {
		return err
	}
	if err := t.tx.Bucket(bucketMembers).Delete([]byte(post)); err != nil {
		return err
	}
	t.members[post] = nil
	t.posts[m.ID] = ""
	t.changed[post] = 0
	return nil
}

func (t *Txn) putInfo(in *Info) error {
	t.infos[in.ID] = in
	return t.tx.Bucket(bucketInfos).Put(u64key(in.ID), encodeInfo(in))
}

func (t *Txn) delInfo(id uint64) error {
	t.infos[id] = nil
	return t.tx.Bucket(bucketInfos).Delete(u64key(id))
}

// Commit publishes the Txn's changes to the store's memory; call it after
// the bbolt transaction committed.
func (t *Txn) Commit() {
	if t.done {
		return
	}
	t.done = true
	s := t.s
	s.mu.Lock()
	if t.reset {
		s.members, s.postOf, s.infos, s.multi = map[string]*Member{}, map[uint64]string{}, map[uint64]*Info{}, map[uint64]*Info{}
	}
	for p, m := range t.members {
		if m == nil {
			delete(s.members, p)
		} else {
			s.members[p] = m
		}
	}
	for id, p := range t.posts {
		if p == "" {
			delete(s.postOf, id)
		} else {
			s.postOf[id] = p
		}
	}
	for id, in := range t.infos {
		if in == nil {
			delete(s.infos, id)
			delete(s.multi, id)
			continue
		}
		s.infos[id] = in
		if in.Size >= 2 {
			s.multi[id] = in
		} else {
			delete(s.multi, id)
		}
	}
	s.mu.Unlock()
	s.merges.Add(uint64(t.merges))
	s.splits.Add(uint64(t.splits))
	s.wmu.Unlock()
}

// Abort undoes the Txn's changes to the linker (the bbolt transaction rolled
// back the rest); memory is as before Begin.
func (t *Txn) Abort() {
	if t.done {
		return
	}
	t.done = true
	for _, id := range t.added {
		t.s.opt.Linker.Remove(id)
	}
	for _, m := range t.removed {
		_ = t.s.opt.Linker.Add(m.ID, m.Sig) // it was accepted before
	}
	t.s.wmu.Unlock()
}

// Page is one page of a cluster's members, newest first.
type Page struct {
	Info    Info
	Members []PageMember
	// Next is the cursor of the next page ("" at the end).
	Next []byte
}

// PageMember is a member in a page.
type PageMember struct {
	Post string
	At   time.Time
}

// ErrNoCluster is returned for an unknown cluster.
var ErrNoCluster = errors.New("clusters: no such cluster")

// ErrBadCursor is returned for a cursor that is not one of the cluster's pages.
var ErrBadCursor = errors.New("clusters: bad cursor")

// Members reads a page of up to limit members of cluster id, newest first
// (ties: greater post id first), from tx (a read transaction); cursor is a
// previous page's Next (nil: the first page).
func (s *Store) Members(tx *bolt.Tx, id uint64, limit int, cursor []byte) (Page, error) {
	in, ok := s.Get(id)
	if !ok {
		return Page{}, ErrNoCluster
	}
	pg := Page{Info: in}
	pre := u64key(id)
	c := tx.Bucket(bucketSets).Cursor()
	var k []byte
	if cursor == nil {
		// The last key of the prefix: seek past it and step back.
		if id == math.MaxUint64 {
			k, _ = c.Last()
		} else if k, _ = c.Seek(u64key(id + 1)); k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
	} else {
		if !bytes.HasPrefix(cursor, pre) || len(cursor) < 16 {
			return Page{}, ErrBadCursor
		}
		k, _ = c.Seek(cursor)
		if k == nil || !bytes.Equal(k, cursor) {
			// The member was removed since: the page goes on before it.
			if k == nil {
				k, _ = c.Last()
			} else {
				k, _ = c.Prev()
			}
		}
	}
	for ; k != nil && bytes.HasPrefix(k, pre); k, _ = c.Prev() {
		if len(pg.Members) == limit {
			pg.Next = slices.Clone(k)
			break
		}
		pg.Members = append(pg.Members, PageMember{Post: string(k[16:]), At: time.Unix(0, unflipTime(k[8:16])).UTC()})
	}
	return pg, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpI64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Drop deletes the store's buckets in tx and creates them empty (a rebuild
// follows). Open the Store again afterwards.
func Drop(tx *bolt.Tx) error {
	for _, b := range [][]byte{bucketMembers, bucketSets, bucketInfos} {
		if tx.Bucket(b) != nil {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
	}
	return Init(tx)
}
