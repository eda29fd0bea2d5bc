// Package dedup is the batch near-duplicate job (xmodal dedup): connected
// components of the link graph "whole-image PDQ hashes within a threshold"
// over a set of image posts, by exact multi-index-hashing range search
// (internal/hamming) and union-find (internal/clusters), with the search
// index's memory bounded (the posts are indexed in blocks that each fit),
// progress reports, and checkpoints to resume after a crash. The partition
// is the one the incremental clusters keep at the same threshold
// (docs/clusters.md). Manager runs jobs inside the serving process.
package dedup

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/xmodal/xmodal/internal/clusters"
	"github.com/xmodal/xmodal/internal/hamming"
)

// Item is an image post as the job reads it.
type Item struct {
	Post string
	At   int64 // creation time, Unix ns
	Sig  hamming.Code
	// Canon[:NCanon] are the image's canonical dihedral hashes
	// (encoders/pdq.HashCanonical): two posts link when any hash of one is
	// within the threshold of any hash of the other, as the incremental
	// clusters link them (clusters.PDQLinker), so that mirrored and rotated
	// copies join their original.
	Canon  [2]hamming.Code
	NCanon int
	// Regions are the hashes of the image's content rectangles
	// (domain.Record.PDQRegions: a meme's or a screenshot's picture), which
	// link as the canonical hashes do; nil for most images.
	Regions []hamming.Code
	// Windows is the image's stored near-duplicate window list
	// (domain.Record.Windows), for Options.Windows; nil for none.
	Windows []byte
}

// extra returns the canonical and region hashes of it that the job
// searches besides its Sig: those that differ from Sig and from each other.
func (it *Item) extra() []hamming.Code {
	var out []hamming.Code
	for _, c := range it.Canon[:min(it.NCanon, len(it.Canon))] {
		if c != it.Sig && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	for _, c := range it.Regions {
		if c != it.Sig && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// nodes returns the codes the job searches: every item's Sig at its
// position, then the canonical hashes that differ from their item's Sig,
// with owner[j] the item of code n+j.
func nodes(items []Item) (codes []hamming.Code, owner []int32) {
	codes = make([]hamming.Code, len(items), len(items)+len(items)/2)
	for i := range items {
		codes[i] = items[i].Sig
	}
	for i := range items {
		for _, c := range items[i].extra() {
			codes = append(codes, c)
			owner = append(owner, int32(i))
		}
	}
	return codes, owner
}

// Options of Components.
type Options struct {
	// Threshold: two posts link when their hashes differ in at most this
	// many bits (0..256).
	Threshold int
	// MaxIndexBytes bounds the memory of the search index (0: one index of
	// every post). Posts are indexed in blocks of at most
	// MaxIndexBytes/BytesPerEntry; each block is searched by every post
	// after its start, so a smaller bound costs more passes.
	MaxIndexBytes int64
	// Workers searching at once (default GOMAXPROCS).
	Workers int
	// Checkpoint is the file the state is saved to and resumed from ("":
	// none); saved every CheckpointEvery (default 10 s).
	Checkpoint      string
	CheckpointEvery time.Duration
	// Progress, when set, is called with the searches done and their total.
	Progress func(done, total int64)
	// Windows, when set, is an empty linker of the near-duplicate window
	// relation (encoders/neardup.Linker, as the incremental clusters'
	// clusters.Union uses): after the hash search, the items with Windows
	// join it in order, each linking with those before it that the relation
	// links, so that crops join their picture's component. It holds every
	// such item's windows (memory not bounded by MaxIndexBytes), and the
	// phase is not checkpointed midway: a resumed job runs it again.
	Windows clusters.Linker
}

// WindowSource is a Source whose clusters also link by windows: it gives
// the window relation's linker (nil when its clusters do not).
type WindowSource interface {
	DedupWindowLinker() clusters.Linker
}

// BytesPerEntry is the measured memory of one entry of a built hamming
// index (bench/results/hamming.txt: 124 to 141 bytes per entry).
const BytesPerEntry = 140

// minBlock is the smallest block, whatever the memory bound.
const minBlock = 4096

// Validate reports a bad option.
func (o *Options) Validate() error {
	if o.Threshold < 0 || o.Threshold > hamming.Bits {
		return fmt.Errorf("dedup: threshold %d is outside 0..%d", o.Threshold, hamming.Bits)
	}
	if o.MaxIndexBytes < 0 || o.Workers < 0 || o.CheckpointEvery < 0 {
		return errors.New("dedup: memory bound, workers and checkpoint interval must not be negative")
	}
	return nil
}

// blockSize is the number of posts per indexed block.
func (o *Options) blockSize(n int) int {
	if o.MaxIndexBytes == 0 {
		return max(n, 1)
	}
	return max(minBlock, int(o.MaxIndexBytes/BytesPerEntry))
}

// TotalSearches is the number of searches Components runs over n posts.
func (o *Options) TotalSearches(n int) int64 {
	b := o.blockSize(n)
	var t int64
	for lo := 0; lo < n; lo += b {
		t += int64(n - lo)
	}
	return t
}

// TotalSearchesOf is the number of searches Components runs over items
// (their hashes and canonical hashes).
func (o *Options) TotalSearchesOf(items []Item) int64 {
	n := len(items)
	for i := range items {
		n += len(items[i].extra())
	}
	return o.TotalSearches(n) + o.windowSearches(items)
}

// windowSearches is the number of window searches (items with windows,
// when Windows is set).
func (o *Options) windowSearches(items []Item) int64 {
	if o.Windows == nil {
		return 0
	}
	var w int64
	for i := range items {
		if len(items[i].Windows) > 0 {
			w++
		}
	}
	return w
}

// Components returns the connected components of items: a union-find over
// their positions (positions from len(items) up are the items' canonical
// hashes; read Find of an item's position). Items must be in the same order
// on a resumed run (the checkpoint records a fingerprint of them and is
// ignored when it differs).
func Components(ctx context.Context, items []Item, opt Options) (*clusters.UnionFind, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	if opt.Workers == 0 {
		opt.Workers = runtime.GOMAXPROCS(0)
	}
	if opt.CheckpointEvery == 0 {
		opt.CheckpointEvery = 10 * time.Second
	}
	codes, owner := nodes(items)
	n := len(codes)
	block := opt.blockSize(n)
	fp := fingerprint(items, opt.Threshold, opt.Windows != nil)
	uf := clusters.NewUnionFind(n)
	for j, o := range owner {
		uf.Union(int(o), len(items)+j)
	}
	var lo, pos int // the block being searched and the next post to search it with
	if opt.Checkpoint != "" {
		if cp, err := loadCheckpoint(opt.Checkpoint, fp, n); err == nil {
			uf, lo, pos = cp.uf, cp.lo, cp.pos
		} else if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, errStale) {
			return nil, err
		}
	}
	// Posts with identical hashes have the same neighbours: only the first
	// of each searches; the others join it.
	first := make([]int32, n)
	{
		seen := make(map[hamming.Code]int32, n)
		for i := range codes {
			f, ok := seen[codes[i]]
			if !ok {
				f = int32(i)
				seen[codes[i]] = f
			}
			first[i] = f
			if f != int32(i) {
				uf.Union(int(f), i)
			}
		}
	}
	total := opt.TotalSearches(n) + opt.windowSearches(items)
	done := func() int64 { // searches finished before (lo, pos)
		var d int64
		for b := 0; b < lo; b += block {
			d += int64(n - b)
		}
		return d + int64(pos-lo)
	}
	lastSave := time.Now()
	for ; lo < n; lo, pos = lo+block, lo+block {
		hi := min(lo+block, n)
		if pos < lo {
			pos = lo
		}
		ix, err := hamming.New(hamming.Options{DeferMaintenance: true, Workers: opt.Workers})
		if err != nil {
			return nil, err
		}
		ids := make([]uint64, hi-lo)
		bcodes := make([]hamming.Code, hi-lo)
		for i := lo; i < hi; i++ {
			ids[i-lo], bcodes[i-lo] = uint64(i), codes[i]
		}
		ix.AddBatch(ids, bcodes)
		ix.Build(nil)
		ids, bcodes = nil, nil
		const chunk = 2048
		for pos < n {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			end := min(pos+chunk*opt.Workers, n)
			pairs := searchRange(ix, codes, first, pos, end, opt)
			for _, p := range pairs {
				uf.Union(int(p[0]), int(p[1]))
			}
			pos = end
			if opt.Progress != nil {
				opt.Progress(done(), total)
			}
			if opt.Checkpoint != "" && time.Since(lastSave) >= opt.CheckpointEvery {
				if err := saveCheckpoint(opt.Checkpoint, fp, uf, lo, pos); err != nil {
					return nil, err
				}
				lastSave = time.Now()
			}
		}
	}
	if opt.Checkpoint != "" {
		if err := saveCheckpoint(opt.Checkpoint, fp, uf, n, n); err != nil {
			return nil, err
		}
	}
	if opt.Windows != nil {
		if err := linkWindows(ctx, items, uf, opt, total-opt.windowSearches(items), total); err != nil {
			return nil, err
		}
		if opt.Checkpoint != "" {
			if err := saveCheckpoint(opt.Checkpoint, fp, uf, n, n); err != nil {
				return nil, err
			}
		}
	}
	return uf, nil
}

// linkWindows is the window phase: the items with windows join
// opt.Windows in order, each first linking with the members it finds.
func linkWindows(ctx context.Context, items []Item, uf *clusters.UnionFind, opt Options, done, total int64) error {
	var nb []uint64
	for i := range items {
		if len(items[i].Windows) == 0 {
			continue
		}
		if done%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			if opt.Progress != nil {
				opt.Progress(done, total)
			}
		}
		// Items already in i's component (by hashes, or by windows of
		// copies before it) need no check.
		var err error
		if sl, ok := opt.Windows.(clusters.SkipLinker); ok {
			err = sl.NeighboursSkip(items[i].Windows, func(id uint64) bool { return uf.Find(int(id)) == uf.Find(i) },
				func(id uint64) { uf.Union(i, int(id)) })
		} else if nb, err = opt.Windows.Neighbours(items[i].Windows, nb[:0]); err == nil {
			for _, j := range nb {
				uf.Union(i, int(j))
			}
		}
		if err != nil {
			return fmt.Errorf("dedup: windows of %s: %w", items[i].Post, err)
		}
		if err := opt.Windows.Add(uint64(i), items[i].Windows); err != nil {
			return fmt.Errorf("dedup: windows of %s: %w", items[i].Post, err)
		}
		done++
	}
	if opt.Progress != nil {
		opt.Progress(done, total)
	}
	return nil
}

// searchRange searches the posts pos..end-1 in ix, Workers at once, and
// returns the linked pairs.
func searchRange(ix *hamming.Index, codes []hamming.Code, first []int32, pos, end int, opt Options) [][2]int32 {
	var wg sync.WaitGroup
	per := (end - pos + opt.Workers - 1) / opt.Workers
	out := make([][][2]int32, opt.Workers)
	for w := range opt.Workers {
		a, b := pos+w*per, min(pos+(w+1)*per, end)
		if a >= b {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []hamming.Match
			var q [1]hamming.Code
			for i := a; i < b; i++ {
				if first[i] != int32(i) {
					continue // a copy: its first searches for both
				}
				q[0] = codes[i]
				buf, _ = ix.Search(q[:], opt.Threshold, buf[:0]) // errors only for a radius out of range (validated)
				for _, m := range buf {
					if int(m.ID) != i {
						out[w] = append(out[w], [2]int32{int32(i), int32(m.ID)})
					}
				}
			}
		}()
	}
	wg.Wait()
	var all [][2]int32
	for _, o := range out {
		all = append(all, o...)
	}
	return all
}

func fingerprint(items []Item, thr int, windows bool) [32]byte {
	h := sha256.New()
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(thr))
	h.Write(b[:])
	if windows {
		h.Write([]byte("windows"))
	}
	for i := range items {
		h.Write([]byte(items[i].Post))
		h.Write([]byte{0})
		for _, w := range items[i].Sig {
			binary.LittleEndian.PutUint64(b[:], w)
			h.Write(b[:])
		}
		for _, c := range items[i].extra() {
			h.Write([]byte{1})
			for _, w := range c {
				binary.LittleEndian.PutUint64(b[:], w)
				h.Write(b[:])
			}
		}
		if windows {
			binary.LittleEndian.PutUint64(b[:], uint64(len(items[i].Windows)))
			h.Write(b[:])
			h.Write(items[i].Windows)
		}
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

var errStale = errors.New("dedup: the checkpoint is of other posts or another threshold")

const checkpointMagic = "XMDEDUP1"

type checkpoint struct {
	uf      *clusters.UnionFind
	lo, pos int
}

// saveCheckpoint writes the state atomically (temporary file, fsync, rename).
func saveCheckpoint(path string, fp [32]byte, uf *clusters.UnionFind, lo, pos int) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	parent, size := uf.Parents()
	hdr := []any{[]byte(checkpointMagic), fp, uint64(len(parent)), uint64(lo), uint64(pos), parent, size}
	for _, v := range hdr {
		if err := binary.Write(w, binary.LittleEndian, v); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func loadCheckpoint(path string, fp [32]byte, n int) (*checkpoint, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	magic := make([]byte, len(checkpointMagic))
	var got [32]byte
	var cn, lo, pos uint64
	for _, v := range []any{magic, &got, &cn, &lo, &pos} {
		if err := binary.Read(r, binary.LittleEndian, v); err != nil {
			return nil, fmt.Errorf("dedup: checkpoint %s: %w", path, err)
		}
	}
	if string(magic) != checkpointMagic {
		return nil, fmt.Errorf("dedup: %s is not a checkpoint", path)
	}
	if got != fp || cn != uint64(n) || lo > cn || pos > cn {
		return nil, errStale
	}
	parent, size := make([]int32, n), make([]int32, n)
	if err := binary.Read(r, binary.LittleEndian, parent); err != nil {
		return nil, fmt.Errorf("dedup: checkpoint %s: %w", path, err)
	}
	if err := binary.Read(r, binary.LittleEndian, size); err != nil {
		return nil, fmt.Errorf("dedup: checkpoint %s: %w", path, err)
	}
	if _, err := r.ReadByte(); err != io.EOF {
		return nil, fmt.Errorf("dedup: checkpoint %s: trailing data", path)
	}
	for _, p := range parent {
		if p < 0 || int(p) >= n {
			return nil, fmt.Errorf("dedup: checkpoint %s: corrupt", path)
		}
	}
	return &checkpoint{uf: clusters.RestoreUnionFind(parent, size), lo: int(lo), pos: int(pos)}, nil
}
