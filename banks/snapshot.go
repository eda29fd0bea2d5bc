package banks

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/xmodal/xmodal/internal/hamming"
)

// A snapshot is the whole state in one binary stream, what a process
// loads at start before applying the operations logged since:
//
//	"XMBANKS" 0x02                      magic and version (0x01: no windows)
//	uvarint banks
//	per bank, by name:
//	  bytes   the Bank configuration (JSON)
//	  uvarint metas; per meta: uvarint tags, tags (bytes each), then
//	          bytes note, source, added_by, model_version
//	  uvarint entries; per entry: byte kind, byte flags (1 disabled,
//	          2 stale, 4 windows), varint added_at minus the previous
//	          entry's (Unix ns), uvarint meta, bytes value (pdq and md5 as
//	          raw bytes), for a pdq entry with windows bytes windows
//	          (Entry.Windows), and for embeddings uvarint dimension and the
//	          float32s (little-endian)
//	4 bytes CRC-32C (Castagnoli) of everything before, little-endian
//
// where bytes is a uvarint length and the bytes. A 10 million entry PDQ
// bank takes about 37 bytes an entry. Entries keep the state's slot order;
// a snapshot of a loaded snapshot is byte-identical.
var snapshotMagic = []byte("XMBANKS\x02")

// snapshotFlagWindows marks, in an entry's flags byte, a pdq entry whose
// stored windows follow its value (version 2).
const snapshotFlagWindows = 4

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// WriteSnapshot writes the whole state. It holds the read lock while it
// writes (Apply waits; lookups do not).
func (s *State) WriteSnapshot(w io.Writer) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	crc := crc32.New(castagnoli)
	bw := bufio.NewWriterSize(io.MultiWriter(w, crc), 1<<20)
	sw := snapWriter{w: bw}
	sw.raw(snapshotMagic)
	names := make([]string, 0, len(s.banks))
	for n := range s.banks {
		names = append(names, n)
	}
	slices.Sort(names)
	sw.uvarint(uint64(len(names)))
	for _, n := range names {
		if err := s.banks[n].write(&sw); err != nil {
			return err
		}
	}
	if sw.err != nil {
		return sw.err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	var sum [4]byte
	binary.LittleEndian.PutUint32(sum[:], crc.Sum32())
	_, err := w.Write(sum[:])
	return err
}

func (b *bankState) write(sw *snapWriter) error {
	cfg, err := json.Marshal(b.cfg)
	if err != nil {
		return err
	}
	sw.bytes(cfg)
	// Only the metas in use, renumbered in order of first use.
	renum := make(map[uint32]uint32)
	var used []uint32
	n := 0
	for i := range b.recs {
		r := &b.recs[i]
		if r.flags&flagLive == 0 {
			continue
		}
		n++
		if _, ok := renum[r.meta]; !ok {
			renum[r.meta] = uint32(len(used))
			used = append(used, r.meta)
		}
	}
	sw.uvarint(uint64(len(used)))
	for _, mi := range used {
		m := &b.metas[mi]
		sw.uvarint(uint64(len(m.tags)))
		for _, t := range m.tags {
			sw.str(t)
		}
		sw.str(m.note)
		sw.str(m.source)
		sw.str(m.addedBy)
		sw.str(m.modelVersion)
	}
	sw.uvarint(uint64(n))
	prev := int64(0)
	// The pdq values are read from the PDQ index a block of slots at a
	// time (GetBatch: one at a time, the index's lookups would take most
	// of the writing).
	const block = 4096
	var pdqSlots []uint64
	var pdqCodes []hamming.Code
	var found []bool
	next := 0 // pdqCodes[next] is the value of the next pdq entry
	var pv [32]byte
	for i := range b.recs {
		if i%block == 0 && b.pdq != nil {
			pdqSlots = pdqSlots[:0]
			for j := i; j < min(i+block, len(b.recs)); j++ {
				if r := &b.recs[j]; r.flags&flagLive != 0 && r.kind == kindPDQ {
					pdqSlots = append(pdqSlots, uint64(j))
				}
			}
			pdqCodes, found = slices.Grow(pdqCodes[:0], len(pdqSlots))[:len(pdqSlots)], slices.Grow(found[:0], len(pdqSlots))[:len(pdqSlots)]
			b.pdq.GetBatch(pdqSlots, pdqCodes, found)
			next = 0
			if k := slices.Index(found, false); k >= 0 {
				return fmt.Errorf("banks: bank %s: pdq entry in slot %d missing from the pdq index", b.cfg.Name, pdqSlots[k])
			}
		}
		r := &b.recs[i]
		if r.flags&flagLive == 0 {
			continue
		}
		flags := (r.flags &^ flagLive) >> 1
		wins, hasWins := b.winBytes[uint32(i)]
		if hasWins {
			flags |= snapshotFlagWindows
		}
		sw.raw([]byte{byte(r.kind), flags})
		sw.varint(r.addedAt - prev)
		prev = r.addedAt
		sw.uvarint(uint64(renum[r.meta]))
		if r.kind == kindPDQ {
			pv = pdqCodes[next].Bytes()
			next++
			sw.bytes(pv[:])
			if hasWins {
				sw.bytes(wins)
			}
		} else {
			sw.bytes(b.vals.get(r.off, r.n))
		}
		if r.kind == kindConcept || r.kind == kindExemplar {
			v := b.emb[embSlot(r.kind)].vector(uint32(i))
			sw.uvarint(uint64(len(v)))
			for _, x := range v {
				var f [4]byte
				binary.LittleEndian.PutUint32(f[:], math.Float32bits(x))
				sw.raw(f[:])
			}
		}
	}
	return sw.err
}

type snapWriter struct {
	w   *bufio.Writer
	err error
	buf [binary.MaxVarintLen64]byte
}

func (w *snapWriter) raw(b []byte) {
	if w.err == nil {
		_, w.err = w.w.Write(b)
	}
}
func (w *snapWriter) uvarint(x uint64) { w.raw(w.buf[:binary.PutUvarint(w.buf[:], x)]) }
func (w *snapWriter) varint(x int64)   { w.raw(w.buf[:binary.PutVarint(w.buf[:], x)]) }
func (w *snapWriter) bytes(b []byte)   { w.uvarint(uint64(len(b))); w.raw(b) }
func (w *snapWriter) str(s string) {
	w.uvarint(uint64(len(s)))
	if w.err == nil {
		_, w.err = w.w.WriteString(s)
	}
}

// ReadOptions configure ReadSnapshot.
type ReadOptions struct {
	// Logger receives progress (every few seconds) and a summary; nil
	// logs nothing.
	Logger *slog.Logger
}

// Snapshot limits: a corrupt length must not allocate without bound.
const (
	maxSnapshotBanks   = 1 << 20
	maxSnapshotEntries = 1 << 32
	maxSnapshotString  = 16 << 20
)

// ReadSnapshot loads a state written by WriteSnapshot, building every
// index. A truncated, corrupt (checksum) or unknown-version stream is
// ErrSnapshot.
func ReadSnapshot(r io.Reader, opt ReadOptions) (*State, error) {
	t0 := time.Now()
	sr := &snapReader{r: r, crc: crc32.New(castagnoli), buf: make([]byte, 0, 1<<20)}
	magic, err := sr.take(len(snapshotMagic))
	if err != nil {
		return nil, err
	}
	if string(magic[:7]) != string(snapshotMagic[:7]) {
		return nil, fmt.Errorf("%w: not a banks snapshot", ErrSnapshot)
	}
	version := magic[7]
	if version != 1 && version != snapshotMagic[7] {
		return nil, fmt.Errorf("%w: version %d (this build reads 1 and %d)", ErrSnapshot, version, snapshotMagic[7])
	}
	nb, err := sr.count(maxSnapshotBanks, "banks")
	if err != nil {
		return nil, err
	}
	s := NewState()
	prog := &progress{log: opt.Logger, last: time.Now()}
	for range nb {
		b, err := readBank(sr, prog, version)
		if err != nil {
			return nil, err
		}
		if s.banks[b.cfg.Name] != nil {
			return nil, fmt.Errorf("%w: bank %s twice", ErrSnapshot, b.cfg.Name)
		}
		s.banks[b.cfg.Name] = b
	}
	want := sr.crc32()
	sum, err := sr.takeRaw(4)
	if err != nil {
		return nil, err
	}
	if got := binary.LittleEndian.Uint32(sum); got != want {
		return nil, fmt.Errorf("%w: checksum %08x, want %08x (corrupt)", ErrSnapshot, got, want)
	}
	if _, err := sr.takeRaw(1); err == nil {
		return nil, fmt.Errorf("%w: data after the checksum", ErrSnapshot)
	}
	if opt.Logger != nil {
		opt.Logger.Info("banks loaded", "banks", len(s.banks), "entries", prog.entries, "took", time.Since(t0).Round(time.Millisecond))
	}
	return s, nil
}

// progress logs a load's progress every few seconds.
type progress struct {
	log     *slog.Logger
	last    time.Time
	entries int
}

func (p *progress) tick(msg string, args ...any) {
	if p.log != nil && time.Since(p.last) >= 5*time.Second {
		p.log.Info(msg, args...)
		p.last = time.Now()
	}
}

func readBank(sr *snapReader, prog *progress, version byte) (*bankState, error) {
	cfgJSON, err := sr.bytes()
	if err != nil {
		return nil, err
	}
	var cfg Bank
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		return nil, fmt.Errorf("%w: bank configuration: %v", ErrSnapshot, err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: bank configuration: %w", ErrSnapshot, err)
	}
	b := newBankState(cfg)
	nm, err := sr.count(maxSnapshotEntries, "metas")
	if err != nil {
		return nil, err
	}
	for range nm {
		var m meta
		nt, err := sr.count(MaxTags, "tags")
		if err != nil {
			return nil, err
		}
		for range nt {
			t, err := sr.str()
			if err != nil {
				return nil, err
			}
			m.tags = append(m.tags, t)
		}
		for _, f := range []*string{&m.note, &m.source, &m.addedBy, &m.modelVersion} {
			if *f, err = sr.str(); err != nil {
				return nil, err
			}
		}
		if _, dup := b.metaIx[m.key()]; !dup {
			b.metaIx[m.key()] = uint32(len(b.metas))
		}
		b.metas = append(b.metas, m)
	}
	n, err := sr.count(maxSnapshotEntries, "entries")
	if err != nil {
		return nil, err
	}
	// Grown as entries are read rather than sized by the count: a corrupt
	// count then fails on the missing data instead of allocating it. Each
	// growth doubles, up to the count, so the records end in a slice of
	// their size (append would leave up to a quarter of it unused).
	b.recs = make([]rec, 0, min(n, 1<<20))
	// The pdq values, in slot order, until the PDQ index holds them (the
	// index is their only holder once loaded).
	var pdqCodes []hamming.Code
	type slotWindows struct {
		slot uint32
		b    []byte
	}
	var wins []slotWindows
	maxFlags := byte(3)
	if version >= 2 {
		maxFlags |= snapshotFlagWindows
	}
	prev := int64(0)
	for i := range n {
		hdr, err := sr.take(2)
		if err != nil {
			return nil, err
		}
		k, flags := kind(hdr[0]), hdr[1]
		if k < kindPDQ || k >= numKinds || flags&^maxFlags != 0 || (flags&snapshotFlagWindows != 0 && k != kindPDQ) {
			return nil, fmt.Errorf("%w: bank %s entry %d: kind %d flags %d", ErrSnapshot, cfg.Name, i, k, flags)
		}
		d, err := sr.varint()
		if err != nil {
			return nil, err
		}
		prev += d
		mi, err := sr.uvarint()
		if err != nil {
			return nil, err
		}
		if mi >= uint64(len(b.metas)) {
			return nil, fmt.Errorf("%w: bank %s entry %d: meta %d of %d", ErrSnapshot, cfg.Name, i, mi, len(b.metas))
		}
		v, err := sr.bytes()
		if err != nil {
			return nil, err
		}
		switch {
		case k == kindPDQ && len(v) != 32, k == kindMD5 && len(v) != 16, len(v) == 0:
			return nil, fmt.Errorf("%w: bank %s entry %d: a %d-byte value", ErrSnapshot, cfg.Name, i, len(v))
		}
		var off uint64
		var vn uint32
		if k == kindPDQ {
			// Until the index holds it, off is the value's place in pdqCodes.
			if len(pdqCodes) == cap(pdqCodes) {
				grown := make([]hamming.Code, len(pdqCodes), len(pdqCodes)+min(n-i, max(1024, len(pdqCodes))))
				copy(grown, pdqCodes)
				pdqCodes = grown
			}
			off = uint64(len(pdqCodes))
			c, _ := hamming.FromBytes(v)
			pdqCodes = append(pdqCodes, c)
			if flags&snapshotFlagWindows != 0 {
				wb, err := sr.bytes()
				if err != nil {
					return nil, err
				}
				if err := checkWindows(SignalPDQ, wb); err != nil {
					return nil, fmt.Errorf("%w: bank %s entry %d: %w", ErrSnapshot, cfg.Name, i, err)
				}
				wins = append(wins, slotWindows{uint32(i), slices.Clone(wb)})
			}
		} else {
			off, vn = b.vals.add(v)
		}
		if len(b.recs) == cap(b.recs) {
			grown := make([]rec, len(b.recs), min(n, 2*len(b.recs)))
			copy(grown, b.recs)
			b.recs = grown
		}
		b.recs = append(b.recs, rec{off: off, n: vn, addedAt: prev, meta: uint32(mi), kind: k, flags: flagLive | (flags&3)<<1})
		b.counts[k]++
		if k == kindConcept || k == kindExemplar {
			dim, err := sr.count(MaxVectorDim, "vector dimensions")
			if err != nil {
				return nil, err
			}
			raw, err := sr.take(4 * dim)
			if err != nil {
				return nil, err
			}
			vec := make([]float32, dim)
			for j := range vec {
				vec[j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:]))
			}
			b.embIndex(k).add(uint32(i), vec)
		}
		prog.entries++
		if i&0xffff == 0 {
			prog.tick("loading banks", "bank", cfg.Name, "entries", i, "of", n)
		}
	}
	if err := b.index(prog, pdqCodes); err != nil {
		return nil, err
	}
	for _, w := range wins {
		b.addWindows(w.slot, w.b)
	}
	if b.wins != nil {
		b.wins.Finish()
	}
	return b, nil
}

// index builds the id table and the PDQ index of freshly read records,
// the pdq entries' values being pdqCodes[r.off] (in slot order).
func (b *bankState) index(prog *progress, pdqCodes []hamming.Code) error {
	n := len(b.recs)
	// Ids are hashes of the values: compute their tags on every core.
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				r := &b.recs[i]
				if r.kind == kindPDQ {
					v := pdqCodes[r.off].Bytes()
					r.tag = idTag(storedHash(r.kind, v[:]))
				} else {
					r.tag = idTag(storedHash(r.kind, b.vals.get(r.off, r.n)))
				}
			}
		}()
	}
	wg.Wait()
	// The PDQ index becomes the values' holder.
	if len(pdqCodes) > 0 {
		ix := b.pdqIndex()
		ix.Reserve(len(pdqCodes))
		const batch = 1 << 16
		ids := make([]uint64, 0, batch)
		for i := range b.recs {
			r := &b.recs[i]
			if r.kind != kindPDQ {
				continue
			}
			r.off = 0
			ids = append(ids, uint64(i))
			if len(ids) == batch {
				ix.AddBatch(ids, pdqCodes[:batch])
				pdqCodes = pdqCodes[batch:]
				ids = ids[:0]
				prog.tick("adding entries to the pdq index", "bank", b.cfg.Name, "entries", i, "of", n)
			}
		}
		ix.AddBatch(ids, pdqCodes)
	}
	b.ids = idTable{}
	b.ids.reserve(b.recs, n)
	for i := range b.recs {
		r := &b.recs[i]
		// The values are compared only for entries whose tags are equal
		// (reading a pdq value from the index costs a lookup there).
		same := func(slot uint32) bool {
			var x, y [32]byte
			return b.recs[slot].kind == r.kind && bytes.Equal(b.value(slot, &x), b.value(uint32(i), &y))
		}
		if _, dup := b.ids.find(b.recs, r.tag, same); dup {
			return fmt.Errorf("%w: bank %s: entry %d repeats an id", ErrSnapshot, b.cfg.Name, i)
		}
		b.ids.insert(b.recs, uint32(i))
		if i&0xffff == 0 {
			prog.tick("indexing entry ids", "bank", b.cfg.Name, "entries", i, "of", n)
		}
	}
	if b.counts[kindPDQ] == 0 {
		return nil
	}
	ix := b.pdq
	t0 := time.Now()
	ix.Build(func(done, total int) {
		prog.tick("building the pdq index", "bank", b.cfg.Name, "tables", done, "of", total)
	})
	if prog.log != nil {
		prog.log.Info("pdq index built", "bank", b.cfg.Name, "entries", b.counts[kindPDQ], "took", time.Since(t0).Round(time.Millisecond))
	}
	return nil
}

// snapReader reads a snapshot from a buffer it refills, hashing the bytes
// consumed.
type snapReader struct {
	r      io.Reader
	crc    hash.Hash32
	buf    []byte
	pos    int // next byte to consume
	hashed int // bytes of buf already hashed
	eof    bool
}

var errTruncated = fmt.Errorf("%w: truncated", ErrSnapshot)

// fill makes n bytes available from pos (n <= maxSnapshotString + 16).
func (r *snapReader) fill(n int) error {
	for len(r.buf)-r.pos < n {
		if r.eof {
			return errTruncated
		}
		r.crc.Write(r.buf[r.hashed:r.pos])
		rest := copy(r.buf[:cap(r.buf)], r.buf[r.pos:])
		r.buf, r.pos, r.hashed = r.buf[:rest], 0, 0
		if cap(r.buf) < n {
			nb := make([]byte, rest, n+1<<20)
			copy(nb, r.buf)
			r.buf = nb
		}
		m, err := r.r.Read(r.buf[rest:cap(r.buf)])
		r.buf = r.buf[:rest+m]
		if errors.Is(err, io.EOF) {
			r.eof = true
		} else if err != nil {
			return fmt.Errorf("reading the snapshot: %w", err)
		}
	}
	return nil
}

// take consumes n bytes (valid until the next call).
func (r *snapReader) take(n int) ([]byte, error) {
	if err := r.fill(n); err != nil {
		return nil, err
	}
	b := r.buf[r.pos : r.pos+n]
	r.pos += n
	return b, nil
}

// crc32 is the checksum of the bytes consumed so far.
func (r *snapReader) crc32() uint32 {
	r.crc.Write(r.buf[r.hashed:r.pos])
	r.hashed = r.pos
	return r.crc.Sum32()
}

// takeRaw consumes n bytes that are not part of the checksum (the
// trailer).
func (r *snapReader) takeRaw(n int) ([]byte, error) {
	b, err := r.take(n)
	r.hashed = r.pos
	return b, err
}

func (r *snapReader) uvarint() (uint64, error) {
	if err := r.fill(1); err != nil {
		return 0, err
	}
	// Most varints are short: decode from what is buffered when it holds
	// a whole one.
	x, n := binary.Uvarint(r.buf[r.pos:])
	if n > 0 {
		r.pos += n
		return x, nil
	}
	if n < 0 || len(r.buf)-r.pos >= binary.MaxVarintLen64 {
		return 0, fmt.Errorf("%w: a malformed varint", ErrSnapshot)
	}
	if err := r.fill(binary.MaxVarintLen64); err != nil && !r.eof {
		return 0, err
	}
	x, n = binary.Uvarint(r.buf[r.pos:])
	if n <= 0 {
		return 0, fmt.Errorf("%w: a malformed varint", ErrSnapshot)
	}
	r.pos += n
	return x, nil
}

func (r *snapReader) varint() (int64, error) {
	ux, err := r.uvarint()
	x := int64(ux >> 1)
	if ux&1 != 0 {
		x = ^x
	}
	return x, err
}

func (r *snapReader) count(max uint64, what string) (int, error) {
	n, err := r.uvarint()
	if err != nil {
		return 0, err
	}
	if n > max {
		return 0, fmt.Errorf("%w: %d %s (at most %d)", ErrSnapshot, n, what, max)
	}
	return int(n), nil
}

func (r *snapReader) bytes() ([]byte, error) {
	n, err := r.count(maxSnapshotString, "bytes in a string")
	if err != nil {
		return nil, err
	}
	return r.take(n)
}

func (r *snapReader) str() (string, error) {
	b, err := r.bytes()
	return string(b), err
}
