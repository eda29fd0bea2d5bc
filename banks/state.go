package banks

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/xmodal/xmodal/encoders/neardup"
	"github.com/xmodal/xmodal/internal/hamming"
	"github.com/xmodal/xmodal/internal/vecmath"
)

// State is the banks in memory: every bank's configuration, its entries
// and the indexes that match them. It is storage-agnostic: a process
// builds it from a snapshot (ReadSnapshot) and keeps it current by
// applying the operations logged since (Apply), in log order.
//
// Concurrency: Match and the read methods may run concurrently with each
// other and with Apply; Apply calls are serialised. A reader sees every op
// entirely or not at all. Index maintenance after an op (building and
// merging PDQ index segments) runs after the op is visible, without
// blocking readers.
type State struct {
	applyMu sync.Mutex // serialises Apply

	mu    sync.RWMutex
	banks map[string]*bankState
}

// NewState returns a state without banks.
func NewState() *State { return &State{banks: map[string]*bankState{}} }

// kind is the compact signal type of a stored entry (embeddings split by
// modality).
type kind uint8

const (
	kindPDQ kind = iota + 1
	kindMD5
	kindText
	kindURL
	kindConcept  // embedding, modality text
	kindExemplar // embedding, modality image
	numKinds
)

func kindOf(t SignalType, modality string) kind {
	switch t {
	case SignalPDQ:
		return kindPDQ
	case SignalMD5:
		return kindMD5
	case SignalText:
		return kindText
	case SignalURL:
		return kindURL
	case SignalEmbedding:
		if modality == "image" {
			return kindExemplar
		}
		return kindConcept
	}
	return 0
}

func (k kind) signal() (SignalType, string) {
	switch k {
	case kindPDQ:
		return SignalPDQ, ""
	case kindMD5:
		return SignalMD5, ""
	case kindText:
		return SignalText, ""
	case kindURL:
		return SignalURL, ""
	case kindConcept:
		return SignalEmbedding, "text"
	case kindExemplar:
		return SignalEmbedding, "image"
	}
	return "", ""
}

// Record flags.
const (
	flagLive uint8 = 1 << iota
	flagDisabled
	flagStale
)

// rec is a stored entry: its value is n bytes at off in the bank's value
// store (the canonical value, md5 as raw bytes rather than hex), except
// for pdq entries, whose 32 raw bytes only the bank's PDQ index holds (as
// the code of the entry's slot; off and n are 0).
// The fields shared by the entries of one import (tags, note, source,
// added by, model version) are kept once, in the bank's meta table. A rec
// holds no pointer, so the garbage collector never scans the records of a
// bank of millions.
type rec struct {
	off     uint64
	addedAt int64 // Unix nanoseconds
	n       uint32
	meta    uint32
	tag     uint32 // idTag of the entry's id (the id table's key)
	kind    kind
	flags   uint8
}

// valueStore holds values in chunks of bytes (appending never moves the
// bytes of existing values). Removed values stay until compact.
type valueStore struct {
	chunks  [][]byte
	live    int64
	garbage int64
}

const valueChunk = 1 << 20

func (v *valueStore) add(b []byte) (uint64, uint32) {
	if len(v.chunks) == 0 || len(v.chunks[len(v.chunks)-1])+len(b) > cap(v.chunks[len(v.chunks)-1]) {
		v.chunks = append(v.chunks, make([]byte, 0, max(valueChunk, len(b))))
	}
	i := len(v.chunks) - 1
	c := v.chunks[i]
	off := uint64(i)<<32 | uint64(len(c))
	v.chunks[i] = append(c, b...)
	v.live += int64(len(b))
	return off, uint32(len(b))
}

func (v *valueStore) get(off uint64, n uint32) []byte {
	c := v.chunks[off>>32]
	o := uint32(off)
	return c[o : o+n : o+n]
}

func (v *valueStore) drop(n uint32) {
	v.live -= int64(n)
	v.garbage += int64(n)
}

// value returns the stored bytes of the entry in slot: from the value
// store, or for a pdq entry from the PDQ index, written into buf.
func (b *bankState) value(slot uint32, buf *[32]byte) []byte {
	r := &b.recs[slot]
	if r.kind != kindPDQ {
		return b.vals.get(r.off, r.n)
	}
	c, ok := b.pdq.Get(uint64(slot))
	if !ok {
		panic(fmt.Sprintf("banks: pdq entry in slot %d missing from the pdq index", slot))
	}
	*buf = c.Bytes()
	return buf[:]
}

// compactValues rewrites the value store without removed values when they
// hold more than half of it (the caller holds the write lock).
func (b *bankState) compactValues() {
	if b.vals.garbage < 16<<20 || b.vals.garbage < b.vals.live {
		return
	}
	var nv valueStore
	for i := range b.recs {
		r := &b.recs[i]
		if r.flags&flagLive != 0 && r.kind != kindPDQ {
			r.off, r.n = nv.add(b.vals.get(r.off, r.n))
		}
	}
	b.vals = nv
}

type meta struct {
	tags                                []string
	note, source, addedBy, modelVersion string
}

func (m *meta) key() string {
	return strings.Join(m.tags, " ") + "\x00" + m.note + "\x00" + m.source + "\x00" + m.addedBy + "\x00" + m.modelVersion
}

// bankState is a bank with its entries and indexes. Entries live in slots
// (recs); a removed entry's slot is reused.
type bankState struct {
	cfg    Bank
	recs   []rec
	vals   valueStore
	free   []uint32
	ids    idTable // entry id -> slot
	metas  []meta
	metaIx map[string]uint32
	counts [numKinds]int
	pdq    *hamming.Index // ids are slots
	emb    [2]*embIndex   // written concepts, exemplar images
	// wins holds the near-duplicate windows of the pdq entries that carry
	// them (Entry.Windows; ids are slots), winBytes their stored form.
	wins     *neardup.Index
	winBytes map[uint32][]byte
	// compact rebuilds pdq in one segment once writes pause (see
	// scheduleCompaction); compactFrom is when its wait began.
	compact     *time.Timer
	compactFrom time.Time
}

func newBankState(cfg Bank) *bankState {
	return &bankState{cfg: cfg, metaIx: map[string]uint32{}}
}

// embIndex holds the vectors of a bank's embedding entries of one
// modality, scanned exactly at lookup (banks of concepts are small). The
// vectors of one dimension are stored one after another (a lookup streams
// through them); entries of another model may have another dimension.
type embIndex struct {
	groups []*embGroup
	where  map[uint32]*embGroup // slot -> its group
}

// embGroup holds the vectors of one dimension. Besides the rows, it keeps
// them by column in blocks of 64 rows (cols, for vecmath.DotsColumns64:
// component d of row i is cols[(i/64)*64*dim + d*64 + i%64], the rows past
// the last being zero; the first hd components of a block are the rows'
// heads) and the norm of each row's components after its head (tail,
// rounded up). A scan screens the rows by bounds of their scores computed
// from these, scoring exactly only the rows that the bound cannot rule out
// (see scanMany). The columns double the memory of the vectors (banks of
// concepts are small: 10,000 of 512 dimensions take 20 MB a copy).
type embGroup struct {
	dim   int
	data  []float32 // row i is data[i*dim : (i+1)*dim]
	hd    int       // headDims(dim)
	cols  []float32 // the rows by column in blocks of 64 rows
	tail  []float32 // row i's |c[hd:]|, rounded up
	slots []uint32
	row   map[uint32]int
	// maxNorm bounds the norm of every row (of every row ever added: it
	// only grows), for the rounding slack of the screen.
	maxNorm float64
}

// headDims is the length of the heads of vectors of dim components: an
// eighth of them in multiples of 32, 0 (no screen) under 128 dimensions.
// Against random unit vectors a head of an eighth rules out nearly every
// row at thresholds of 0.9 and above, at an eighth of the full scan's cost.
func headDims(dim int) int {
	if dim < 128 {
		return 0
	}
	return max(32, dim/8/32*32)
}

func newEmbIndex() *embIndex { return &embIndex{where: map[uint32]*embGroup{}} }

func (x *embIndex) len() int { return len(x.where) }

func (x *embIndex) add(slot uint32, v []float32) {
	if g := x.where[slot]; g != nil {
		if g.dim == len(v) {
			g.set(g.row[slot], v)
			return
		}
		x.remove(slot)
	}
	var g *embGroup
	for _, h := range x.groups {
		if h.dim == len(v) {
			g = h
		}
	}
	if g == nil {
		g = &embGroup{dim: len(v), hd: headDims(len(v)), row: map[uint32]int{}}
		x.groups = append(x.groups, g)
	}
	i := len(g.slots)
	g.row[slot] = i
	g.slots = append(g.slots, slot)
	g.data = append(g.data, v...)
	if g.screened() {
		if i%64 == 0 {
			g.cols = append(g.cols, make([]float32, 64*g.dim)...)
		}
		g.tail = append(g.tail, 0)
	}
	g.set(i, v)
	x.where[slot] = g
}

// screened reports whether g keeps columns and tail norms.
func (g *embGroup) screened() bool { return g.hd > 0 }

// set writes v as row i (which exists), with its head and tail norm.
func (g *embGroup) set(i int, v []float32) {
	copy(g.data[i*g.dim:(i+1)*g.dim], v)
	var ss, ts float64
	for j, a := range v {
		ss += float64(a) * float64(a)
		if j >= g.hd {
			ts += float64(a) * float64(a)
		}
	}
	g.maxNorm = max(g.maxNorm, math.Sqrt(ss))
	if g.screened() {
		g.setCols(i, v)
		g.tail[i] = roundUp32(math.Sqrt(ts))
	}
}

// setCols writes v as row i in the columns.
func (g *embGroup) setCols(i int, v []float32) {
	blk := g.cols[i/64*64*g.dim:]
	for d, a := range v {
		blk[d*64+i%64] = a
	}
}

// roundUp32 is the smallest float32 >= x (x >= 0, finite).
func roundUp32(x float64) float32 {
	f := float32(x)
	if float64(f) < x {
		f = math.Nextafter32(f, float32(math.Inf(1)))
	}
	return f
}

func (x *embIndex) remove(slot uint32) {
	g := x.where[slot]
	if g == nil {
		return
	}
	i, last := g.row[slot], len(g.slots)-1
	if i != last {
		copy(g.data[i*g.dim:(i+1)*g.dim], g.data[last*g.dim:])
		if g.screened() {
			g.setCols(i, g.data[i*g.dim:(i+1)*g.dim])
			g.tail[i] = g.tail[last]
		}
		g.slots[i] = g.slots[last]
		g.row[g.slots[i]] = i
	}
	g.slots, g.data = g.slots[:last], g.data[:last*g.dim]
	if g.screened() {
		g.setCols(last, make([]float32, g.dim))
		g.cols, g.tail = g.cols[:(last+63)/64*64*g.dim], g.tail[:last]
	}
	delete(g.row, slot)
	delete(x.where, slot)
}

func (x *embIndex) vector(slot uint32) []float32 {
	if x == nil {
		return nil
	}
	g := x.where[slot]
	if g == nil {
		return nil
	}
	i := g.row[slot]
	return g.data[i*g.dim : (i+1)*g.dim]
}

// scan calls f for every vector of q's dimension whose dot product with q
// is at least thr (scanMany for one query).
func (x *embIndex) scan(q []float32, thr float32, f func(slot uint32, score float32)) {
	x.scanMany([][]float32{q}, []float32{thr}, func(_ int, slot uint32, score float32) { f(slot, score) })
}

// scanMany is scan for several queries at once: f(j, slot, score) for
// every vector whose dot product with qs[j] is at least thrs[j]. The rows
// are read a block at a time and every query of the block's dimension is
// scored against it while it is in the cache, so a batch of queries reads
// the vectors from memory once, not once per query.
//
// In a group with columns, each block of rows is screened first: a bound
// of each row's score is computed from the columns (vecmath.DotsColumns64,
// with a rounding slack), and only the rows whose bound reaches the
// threshold are scored exactly (vecmath.Dots at their positions: the same
// bits as vecmath.DotsSeq over every row, so the matches and scores are
// exactly those of a full scan). The bound is first the dot product of the
// heads plus |q_tail| |c_tail| (Cauchy-Schwarz: an eighth of the work, and
// at high thresholds it rules out nearly every row); once it passes most
// rows of a block (a low threshold), the query's bound is the dot product
// of all the columns (AVX2 where the CPU has it; where it has not, the
// query is scored by DotsSeq).
func (x *embIndex) scanMany(qs [][]float32, thrs []float32, f func(j int, slot uint32, score float32)) {
	const block = 64 // rows: 128 KB at 512 dimensions, well inside L2; a block of columns
	var scores [block]float32
	var bound [64]float32
	var pos [block]int32
	// How a query screens a block.
	const (
		screenHead = iota // heads and tail norms
		screenFull        // every column
		screenNone        // every row scored exactly
	)
	type query struct {
		j      int
		screen int
		tail   float32 // |q_tail|, rounded up
		slack  float32
	}
	var js []query
	for _, g := range x.groups {
		js = js[:0]
		for j, q := range qs {
			if len(q) != g.dim {
				continue
			}
			qj := query{j: j, screen: screenNone}
			if g.screened() {
				var ss, ts float64
				for i, a := range q {
					ss += float64(a) * float64(a)
					if i >= g.hd {
						ts += float64(a) * float64(a)
					}
				}
				// The float32 dot products (the bound's and the exact
				// score's) are within n·2^-24·|q|·|c| of the exact ones (n
				// terms, n <= dim); four times that, over both, is the slack.
				qj.screen = screenHead
				qj.tail = roundUp32(math.Sqrt(ts))
				qj.slack = roundUp32(8 * float64(g.dim) * 0x1p-24 * math.Sqrt(ss) * g.maxNorm)
			}
			js = append(js, qj)
		}
		if len(js) == 0 {
			continue
		}
		d := g.dim
		for lo := 0; lo < len(g.slots); lo += block {
			m := min(block, len(g.slots)-lo)
			rows := g.data[lo*d : (lo+m)*d]
			for k := range js {
				qj := &js[k]
				q, thr := qs[qj.j], thrs[qj.j]
				if qj.screen == screenNone {
					vecmath.DotsSeq(q, rows, scores[:m])
					for i, a := range scores[:m] {
						if a >= thr {
							f(qj.j, g.slots[lo+i], a)
						}
					}
					continue
				}
				n := 0
				if qj.screen == screenHead {
					vecmath.DotsColumns64(q[:g.hd], g.cols[lo*d:lo*d+64*g.hd], &bound)
					for i, h := range bound[:m] {
						if h+qj.tail*g.tail[lo+i]+qj.slack >= thr {
							pos[n] = int32(i)
							n++
						}
					}
					if 2*n > m { // it rules out too few rows to pay
						qj.screen = screenNone
						if vecmath.HasAVX2DotsColumns() {
							qj.screen = screenFull
						}
					}
				} else {
					vecmath.DotsColumns64(q, g.cols[lo*d:(lo+64)*d], &bound)
					for i, h := range bound[:m] {
						if h+qj.slack >= thr {
							pos[n] = int32(i)
							n++
						}
					}
				}
				if n == 0 {
					continue
				}
				vecmath.Dots(q, rows, pos[:n], scores[:n])
				for i, a := range scores[:n] {
					if a >= thr {
						f(qj.j, g.slots[lo+int(pos[i])], a)
					}
				}
			}
		}
	}
}

// slotsOf returns every slot with a vector.
func (x *embIndex) slotsOf() []uint32 {
	var out []uint32
	for _, g := range x.groups {
		out = append(out, g.slots...)
	}
	return out
}

// Result says what an Apply changed.
type Result struct {
	Added    int `json:"added"`
	Replaced int `json:"replaced"`
	Removed  int `json:"removed"`
	Updated  int `json:"updated"`
	// Missing lists ids of remove_entries or set_entries not in the bank
	// (at most 100).
	Missing []string `json:"missing,omitempty"`
}

// Apply applies op to the state, entirely or (with an error) not at all.
// The outcome depends only on the state and the op, so every process
// applying the same log holds the same banks; an op that fails here fails
// everywhere (for example adding entries to a bank deleted just before by
// another writer). Adding an entry whose id exists replaces it; removing
// or flagging ids that are absent changes nothing (they are reported).
func (s *State) Apply(op Op) (Result, error) {
	if err := op.Validate(); err != nil {
		return Result{}, err
	}
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	// Only Apply writes, and it is serialised: it may read the state
	// without s.mu.
	b := s.banks[op.Bank]
	var res Result
	switch op.Kind {
	case OpCreateBank:
		if b != nil {
			return res, fmt.Errorf("%w: %s", ErrBankExists, op.Bank)
		}
		cfg, err := bankConfig(op, nil)
		if err != nil {
			return res, err
		}
		s.mu.Lock()
		s.banks[op.Bank] = newBankState(cfg)
		s.mu.Unlock()
		res.Added = 1
	case OpUpdateBank:
		if b == nil {
			return res, fmt.Errorf("%w: %s", ErrBankNotFound, op.Bank)
		}
		cfg, err := bankConfig(op, &b.cfg)
		if err != nil {
			return res, err
		}
		s.mu.Lock()
		b.cfg = cfg
		s.mu.Unlock()
		res.Updated = 1
	case OpDeleteBank:
		if b == nil {
			return res, fmt.Errorf("%w: %s", ErrBankNotFound, op.Bank)
		}
		s.mu.Lock()
		delete(s.banks, op.Bank)
		s.mu.Unlock()
		res.Removed = 1
	case OpAddEntries:
		if b == nil {
			return res, fmt.Errorf("%w: %s", ErrBankNotFound, op.Bank)
		}
		entries, err := normalizeAll(op.Entries)
		if err != nil {
			return res, err
		}
		s.mu.Lock()
		res = b.addEntries(entries)
		s.mu.Unlock()
	case OpRemoveEntries, OpSetEntries:
		if b == nil {
			return res, fmt.Errorf("%w: %s", ErrBankNotFound, op.Bank)
		}
		if op.Kind == OpSetEntries && op.Stale != nil {
			if err := b.checkStaleIDs(op.IDs); err != nil {
				return res, err
			}
		}
		s.mu.Lock()
		if op.Kind == OpRemoveEntries {
			res = b.removeEntries(op.IDs)
		} else {
			res = b.setEntries(op.IDs, op.Disabled, op.Stale)
		}
		s.mu.Unlock()
	}
	if b != nil && b.pdq != nil {
		if op.Kind == OpDeleteBank {
			if b.compact != nil {
				b.compact.Stop()
			}
		} else {
			b.pdq.Maintain()
			b.scheduleCompaction(time.Now())
			if b.wins != nil {
				b.wins.Maintain()
			}
		}
	}
	return res, nil
}

// The PDQ index's compaction: the index grows by segments (hamming.Index
// merges them only while each is under twice the next), and a lookup
// probes every segment, so an index loaded by many add_entries ops (an
// import: ops of 10,000 entries) answers in about twice the time of the
// same entries in one segment (1 million entries: segments of 640,000,
// 320,000 and 40,000). Once the entries outside the largest segment reach
// a sixteenth of the index (and a tail's worth), the index is rebuilt in
// one segment when no op has added to it for compactQuiet, or at the
// latest compactMaxWait after the first op that waited. The rebuild runs
// on a timer's goroutine; searches go on meanwhile (hamming.Index.Build),
// and Apply's writes to the index wait for it.
const (
	compactQuiet   = time.Second
	compactMaxWait = 30 * time.Second
)

// scheduleCompaction (called by Apply after an op, which serialises the
// calls) starts or postpones the compaction of b's PDQ index when it is
// fragmented.
func (b *bankState) scheduleCompaction(now time.Time) {
	if !fragmented(b.pdq.Stats()) {
		return
	}
	if b.compact == nil || !b.compact.Stop() {
		b.compactFrom = now // no compaction was waiting
	}
	wait := max(0, min(compactQuiet, b.compactFrom.Add(compactMaxWait).Sub(now)))
	if b.compact == nil {
		ix := b.pdq
		b.compact = time.AfterFunc(wait, func() { ix.Build(nil) })
		return
	}
	b.compact.Reset(wait)
}

// fragmented reports whether an index with statistics st holds enough
// entries outside its largest segment to be rebuilt.
func fragmented(st hamming.Stats) bool {
	largest, total := 0, st.Tail
	for _, g := range st.Segments {
		largest = max(largest, g.Entries)
		total += g.Entries
	}
	outside := total - largest
	return outside >= hamming.DefaultTailSize && outside*16 >= total
}

// bankConfig is the configuration of a create or update op, validated;
// an update keeps the creation fields of prev.
func bankConfig(op Op, prev *Bank) (Bank, error) {
	cfg := op.Config.WithDefaults()
	if prev == nil {
		cfg.CreatedAt, cfg.CreatedBy = op.At.UTC(), op.Actor
	} else {
		cfg.CreatedAt, cfg.CreatedBy = prev.CreatedAt, prev.CreatedBy
	}
	cfg.UpdatedAt, cfg.UpdatedBy = op.At.UTC(), op.Actor
	if err := cfg.Validate(); err != nil {
		return Bank{}, err
	}
	return cfg, nil
}

// normalizeAll normalises copies of entries; on any error nothing is
// applied and the error names the bad entries (the first 10).
func normalizeAll(in []Entry) ([]Entry, error) {
	out := make([]Entry, len(in))
	var errs []error
	bad := 0
	for i, e := range in {
		e.Tags = slices.Clone(e.Tags)
		if err := e.Normalize(); err != nil {
			if bad++; bad <= 10 {
				errs = append(errs, fmt.Errorf("entry %d: %w", i, err))
			}
			continue
		}
		out[i] = e
	}
	if bad > 10 {
		errs = append(errs, fmt.Errorf("and %d more bad entries", bad-10))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// storedValue is the stored form of a canonical value: raw bytes for pdq
// and md5.
func storedValue(k kind, canonical string) []byte {
	if k == kindPDQ || k == kindMD5 {
		b, _ := hex.DecodeString(canonical) // canonical: valid hex
		return b
	}
	return []byte(canonical)
}

func canonicalValue(k kind, stored []byte) string {
	if k == kindPDQ || k == kindMD5 {
		return hex.EncodeToString(stored)
	}
	return string(stored)
}

// storedHash is entryHash of a stored value, without allocating for pdq
// and md5.
func storedHash(k kind, stored []byte) [16]byte {
	t, m := k.signal()
	if k == kindPDQ || k == kindMD5 {
		var hx [64]byte
		n := hex.Encode(hx[:], stored)
		return entryHashBytes(t, m, hx[:n])
	}
	return entryHashBytes(t, m, stored)
}

func (b *bankState) metaIndex(m meta) uint32 {
	k := m.key()
	if i, ok := b.metaIx[k]; ok {
		return i
	}
	i := uint32(len(b.metas))
	b.metas = append(b.metas, m)
	b.metaIx[k] = i
	return i
}

// addEntries adds normalised entries (the caller holds the write lock).
func (b *bankState) addEntries(entries []Entry) Result {
	var res Result
	for _, e := range entries {
		k := kindOf(e.Type, e.Modality)
		h := entryHash(e.Type, e.Modality, e.Value)
		var flags uint8 = flagLive
		if e.Disabled {
			flags |= flagDisabled
		}
		if e.Stale {
			flags |= flagStale
		}
		sv := storedValue(k, e.Value)
		r := rec{
			addedAt: e.AddedAt.UnixNano(),
			meta:    b.metaIndex(meta{tags: e.Tags, note: e.Note, source: e.Source, addedBy: e.AddedBy, modelVersion: e.ModelVersion}),
			kind:    k,
			flags:   flags,
		}
		slot, exists := b.findID(h)
		if exists {
			res.Replaced++
			// The value is the same (the id is its hash): keep its bytes
			// (and a pdq entry's code in the index).
			r.off, r.n = b.recs[slot].off, b.recs[slot].n
		} else {
			if k != kindPDQ {
				r.off, r.n = b.vals.add(sv)
			}
			res.Added++
			if n := len(b.free); n > 0 {
				slot = b.free[n-1]
				b.free = b.free[:n-1]
			} else {
				slot = uint32(len(b.recs))
				b.recs = append(b.recs, rec{})
			}
			b.counts[k]++
		}
		r.tag = idTag(h)
		b.recs[slot] = r
		if !exists {
			b.ids.insert(b.recs, slot)
		}
		switch k {
		case kindPDQ:
			// Added at once, not in one batch at the end: the index holds
			// the value that a later entry of the op with the same id is
			// compared with. Searches see the op entirely or not at all
			// all the same: they run under the state's read lock.
			if !exists {
				c, _ := hamming.FromBytes(sv)
				b.pdqIndex().Add(uint64(slot), c)
			}
			if len(e.Windows) > 0 {
				b.addWindows(slot, e.Windows)
			}
		case kindConcept, kindExemplar:
			b.embIndex(k).add(slot, e.Vector)
		}
	}
	return res
}

// addWindows indexes the stored windows of the pdq entry in slot
// (validated by Entry.Normalize), replacing any it had.
func (b *bankState) addWindows(slot uint32, stored []byte) {
	w, h, sig, err := neardup.ParseWindows(stored)
	if err != nil {
		return // Normalize refused such windows
	}
	if b.wins == nil {
		b.wins = neardup.NewIndexWith(neardup.NewSmallMIHSearcher(true, winsTail), neardup.NewSmallMIHSearcher(true, winsTail))
		b.winBytes = map[uint32][]byte{}
	}
	b.wins.Add(int64(slot), w, h, sig)
	b.winBytes[slot] = slices.Clone(stored)
}

// dropWindows removes the windows of the entry in slot, if it had any.
func (b *bankState) dropWindows(slot uint32) {
	if _, ok := b.winBytes[slot]; ok {
		b.wins.Remove(int64(slot))
		delete(b.winBytes, slot)
	}
}

// pdqBucketLoad is the PDQ index's directory bucket load. Buckets of 2
// looked about 15% cheaper on a loaded machine, but on a quiet one, through
// TestBanksBench at 10 million entries, they gave the same p50 and a worse
// p99 (4.3-5.0 ms against 3.3-3.5 ms) for 10% more index memory, so the
// default of 4 stays (docs/moderation.md).
const pdqBucketLoad = 4

func (b *bankState) pdqIndex() *hamming.Index {
	if b.pdq == nil {
		// Maintenance is deferred: Apply runs it after publishing. The
		// index is tuned for the bank's threshold (searches at any other
		// stay exact).
		b.pdq, _ = hamming.New(hamming.Options{
			DeferMaintenance: true,
			Radius:           b.cfg.Thresholds.PDQThreshold(),
			BucketLoad:       pdqBucketLoad,
		})
	}
	return b.pdq
}

// embSlot is the index in bankState.emb of an embedding kind.
func embSlot(k kind) int {
	if k == kindExemplar {
		return 1
	}
	return 0
}

func (b *bankState) embIndex(k kind) *embIndex {
	i := embSlot(k)
	if b.emb[i] == nil {
		b.emb[i] = newEmbIndex()
	}
	return b.emb[i]
}

// lookupID returns the slot of an entry id.
func (b *bankState) lookupID(id string) (uint32, bool) {
	h, ok := parseEntryID(id)
	if !ok {
		return 0, false
	}
	return b.findID(h)
}

// findID returns the slot of the entry whose id hashes to h.
func (b *bankState) findID(h [16]byte) (uint32, bool) {
	return b.ids.find(b.recs, idTag(h), func(slot uint32) bool {
		var buf [32]byte
		return storedHash(b.recs[slot].kind, b.value(slot, &buf)) == h
	})
}

// findValue returns the slot of the entry of kind k whose stored value is
// sv, tag being the tag of its id.
func (b *bankState) findValue(k kind, sv []byte, tag uint32) (uint32, bool) {
	return b.ids.find(b.recs, tag, func(slot uint32) bool {
		var buf [32]byte
		return b.recs[slot].kind == k && bytes.Equal(b.value(slot, &buf), sv)
	})
}

func (b *bankState) removeEntries(ids []string) Result {
	var res Result
	var pdqIDs []uint64
	for _, id := range ids {
		slot, ok := b.lookupID(id)
		if !ok {
			if len(res.Missing) < 100 {
				res.Missing = append(res.Missing, id)
			}
			continue
		}
		r := &b.recs[slot]
		switch r.kind {
		case kindPDQ:
			pdqIDs = append(pdqIDs, uint64(slot))
			b.dropWindows(slot)
		case kindConcept, kindExemplar:
			b.embIndex(r.kind).remove(slot)
		}
		b.counts[r.kind]--
		b.ids.remove(b.recs, slot)
		b.vals.drop(r.n)
		*r = rec{}
		b.free = append(b.free, slot)
		res.Removed++
	}
	if len(pdqIDs) > 0 {
		b.pdq.RemoveBatch(pdqIDs)
	}
	b.compactValues()
	return res
}

// checkStaleIDs refuses stale flags on entries that are not embeddings.
func (b *bankState) checkStaleIDs(ids []string) error {
	for _, id := range ids {
		if slot, ok := b.lookupID(id); ok {
			if k := b.recs[slot].kind; k != kindConcept && k != kindExemplar {
				t, _ := k.signal()
				return fmt.Errorf("%w: entry %s is a %s entry; only embeddings can be stale", ErrInvalidOp, id, t)
			}
		}
	}
	return nil
}

func (b *bankState) setEntries(ids []string, disabled, stale *bool) Result {
	var res Result
	for _, id := range ids {
		slot, ok := b.lookupID(id)
		if !ok {
			if len(res.Missing) < 100 {
				res.Missing = append(res.Missing, id)
			}
			continue
		}
		r := &b.recs[slot]
		if disabled != nil {
			r.flags = setFlag(r.flags, flagDisabled, *disabled)
		}
		if stale != nil {
			r.flags = setFlag(r.flags, flagStale, *stale)
		}
		res.Updated++
	}
	return res
}

func setFlag(f, bit uint8, on bool) uint8 {
	if on {
		return f | bit
	}
	return f &^ bit
}

// entry returns the entry in slot (live).
func (b *bankState) entry(slot uint32) Entry {
	r := &b.recs[slot]
	t, modality := r.kind.signal()
	m := &b.metas[r.meta]
	var buf [32]byte
	v := canonicalValue(r.kind, b.value(slot, &buf))
	e := Entry{
		ID: EntryID(t, modality, v), Type: t, Value: v, Modality: modality,
		ModelVersion: m.modelVersion, Stale: r.flags&flagStale != 0, Disabled: r.flags&flagDisabled != 0,
		Tags: slices.Clone(m.tags), Note: m.note, Source: m.source,
		AddedAt: time.Unix(0, r.addedAt).UTC(), AddedBy: m.addedBy,
	}
	if r.kind == kindConcept || r.kind == kindExemplar {
		e.Vector = slices.Clone(b.emb[embSlot(r.kind)].vector(slot))
	}
	if w, ok := b.winBytes[slot]; ok {
		e.Windows = slices.Clone(w)
	}
	return e
}

// BankInfo is a bank's configuration and its number of entries per signal
// type (embeddings split into written concepts and exemplar images).
type BankInfo struct {
	Bank
	Entries int            `json:"entries"`
	Counts  map[string]int `json:"counts,omitempty"`
	// Windows is the number of pdq entries that carry near-duplicate
	// windows (Entry.Windows): crops of their images match.
	Windows int `json:"windows,omitempty"`
}

func (b *bankState) info() BankInfo {
	bi := BankInfo{Bank: b.cfg, Counts: map[string]int{}, Windows: len(b.winBytes)}
	bi.Labels = slices.Clone(b.cfg.Labels)
	for k := kindPDQ; k < numKinds; k++ {
		if n := b.counts[k]; n > 0 {
			t, m := k.signal()
			name := string(t)
			if m != "" {
				name += "_" + m
			}
			bi.Counts[name] = n
			bi.Entries += n
		}
	}
	return bi
}

// Banks returns every bank, by name.
func (s *State) Banks() []BankInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]BankInfo, 0, len(s.banks))
	for _, b := range s.banks {
		out = append(out, b.info())
	}
	slices.SortFunc(out, func(a, b BankInfo) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Bank returns one bank.
func (s *State) Bank(name string) (BankInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b := s.banks[name]
	if b == nil {
		return BankInfo{}, fmt.Errorf("%w: %s", ErrBankNotFound, name)
	}
	return b.info(), nil
}

// Entry returns one entry of a bank by id.
func (s *State) Entry(bank, id string) (Entry, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b := s.banks[bank]
	if b == nil {
		return Entry{}, false, fmt.Errorf("%w: %s", ErrBankNotFound, bank)
	}
	slot, ok := b.lookupID(id)
	if !ok {
		return Entry{}, false, nil
	}
	return b.entry(slot), true, nil
}

// Entries returns up to limit entries of a bank from cursor on (0 for the
// first page) and the cursor of the next page (0 after the last). Each
// page is read under the lock on its own: a listing concurrent with
// changes may miss or repeat entries that changed meanwhile.
func (s *State) Entries(bank string, cursor, limit int) ([]Entry, int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	b := s.banks[bank]
	if b == nil {
		return nil, 0, fmt.Errorf("%w: %s", ErrBankNotFound, bank)
	}
	limit = max(limit, 1)
	var out []Entry
	i := max(cursor, 0)
	for ; i < len(b.recs) && len(out) < limit; i++ {
		if b.recs[i].flags&flagLive != 0 {
			out = append(out, b.entry(uint32(i)))
		}
	}
	if i >= len(b.recs) {
		i = 0
	}
	return out, i, nil
}

// StaleEmbeddings returns, per bank, the embedding entries whose model
// version is not model: after a model change, written concepts are to be
// embedded again (add_entries with the new vector and version replaces
// them) and exemplar images without stored media marked stale
// (set_entries with stale) — the caller, which owns the model, does both.
func (s *State) StaleEmbeddings(model string) map[string][]Entry {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := map[string][]Entry{}
	for name, b := range s.banks {
		for _, x := range b.emb {
			if x == nil {
				continue
			}
			for _, slot := range x.slotsOf() {
				if b.metas[b.recs[slot].meta].modelVersion != model {
					out[name] = append(out[name], b.entry(slot))
				}
			}
		}
		slices.SortFunc(out[name], func(a, b Entry) int { return strings.Compare(a.ID, b.ID) })
	}
	return out
}

// HasWindows reports whether an enabled bank holds pdq entries with
// windows (Entry.Windows): only then is an image's query worth its windows
// (neardup.Hasher.Query rather than QueryRects; at ingest,
// domain.Record.NearDupQuery).
func (s *State) HasWindows() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, b := range s.banks {
		if b.cfg.Enabled && len(b.winBytes) > 0 {
			return true
		}
	}
	return false
}

// HasEnabled reports whether an enabled bank holds live entries of signal
// type t (the pipeline computes an image's MD5 only when one does).
func (s *State) HasEnabled(t SignalType) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, b := range s.banks {
		if !b.cfg.Enabled {
			continue
		}
		for k := kindPDQ; k < numKinds; k++ {
			if kt, _ := k.signal(); kt == t && b.counts[k] > 0 {
				return true
			}
		}
	}
	return false
}

// winsTail is the unindexed tail of a bank's window searchers
// (neardup.NewSmallMIHSearcher): a query's ~800 windows each scan it. In
// TestBankCropsBench at 300 entries, MatchRegions took p50 6.8 ms with
// the default tail (4,096), 5.1 with 256, 4.6 with 64; the rest is the
// verified search itself.
const winsTail = 256
