package clusters

import (
	"fmt"
	"slices"
	"sync"

	"github.com/xmodal/xmodal/internal/hamming"
)

// Linker is the link relation of clusters: members are indexed by a
// signature, and Neighbours returns every indexed member linked to a
// signature (all of them, not the top k). The relation must be symmetric:
// a ~ b exactly when b ~ a, so that clusters are the connected components
// of the link graph whatever the order members arrive in. PDQLinker is the
// whole-image PDQ relation; a region method (encoders/neardup) plugs in here.
type Linker interface {
	// Add indexes member id under sig (replacing what id had).
	Add(id uint64, sig []byte) error
	// Remove drops member id; removing an absent id is a no-op.
	Remove(id uint64)
	// Neighbours appends to dst the ids of indexed members linked to sig.
	Neighbours(sig []byte, dst []uint64) ([]uint64, error)
	// Linked reports whether two signatures are linked (the relation itself,
	// for members not indexed).
	Linked(a, b []byte) (bool, error)
	// Len is the number of indexed members.
	Len() int
}

// SkipLinker is a Linker whose search can leave out candidates the caller
// does not need: NeighboursSkip calls found with members linked to sig,
// except candidates for which skip reports true when their turn comes
// (those are not checked). Join skips the members of clusters it already
// links, a split the members of the component being built: one link per
// group is all they need, and a costly relation (the window relation
// verifies each candidate) then checks one copy of a popular picture, not
// all of them.
type SkipLinker interface {
	NeighboursSkip(sig []byte, skip func(id uint64) bool, found func(id uint64)) error
}

// neighboursSkip is l's NeighboursSkip, or its Neighbours filtered by skip.
func neighboursSkip(l Linker, sig []byte, skip func(id uint64) bool, found func(id uint64)) error {
	if sl, ok := l.(SkipLinker); ok {
		return sl.NeighboursSkip(sig, skip, found)
	}
	nb, err := l.Neighbours(sig, nil)
	if err != nil {
		return err
	}
	for _, id := range nb {
		if !skip(id) {
			found(id)
		}
	}
	return nil
}

// ErrBadSignature is returned for a signature the linker cannot read.
var ErrBadSignature = fmt.Errorf("clusters: bad signature")

// PDQLinker links two images when their whole-image PDQ hashes (32 bytes)
// are within Threshold bits, found by exact multi-index hashing
// (internal/hamming): symmetric and complete. A signature may also carry
// the image's canonical dihedral hashes (encoders/pdq.HashCanonical), so
// that a mirrored or rotated copy links too, and the hashes of its content
// rectangles (the picture inside a meme's caption band or a screenshot's
// frame), so that a meme links to its picture: two images link when any
// hash of one is within Threshold bits of any hash of the other. Each
// member is indexed under each of its hashes (entry ids entryStride×id +
// j), so the relation stays symmetric and complete, and the batch job
// (internal/dedup) links the same pairs.
type PDQLinker struct {
	threshold int
	mu        sync.Mutex // guards bufs and members
	ix        *hamming.Index
	bufs      []hamming.Match
	members   int
}

// pdqBytes is the length of a PDQ hash.
const pdqBytes = 32

// NewPDQLinker returns a linker at threshold bits (0..256).
func NewPDQLinker(threshold int) (*PDQLinker, error) {
	if threshold < 0 || threshold > hamming.Bits {
		return nil, fmt.Errorf("clusters: threshold %d is outside 0..%d", threshold, hamming.Bits)
	}
	ix, err := hamming.New(hamming.Options{})
	if err != nil {
		return nil, err
	}
	return &PDQLinker{threshold: threshold, ix: ix}, nil
}

// Threshold is the link distance.
func (l *PDQLinker) Threshold() int { return l.threshold }

// maxPDQCodes is the most hashes a PDQ signature holds: the PDQ hash, two
// canonical dihedral hashes (encoders/pdq.MaxCanonical), the hashes of two
// content rectangles with two canonical hashes each and the cleaned hash
// (domain.Record.PDQRegions).
const maxPDQCodes = 10

// entryStride spaces members' index entries: member id's hashes are
// entries entryStride×id + j.
const entryStride = 16

// PDQSignature is the signature of an image with PDQ hash h and more
// hashes (each a concatenation of 32-byte hashes: its canonical dihedral
// hashes, as domain.Record.PDQCanonical, and the hashes of its content
// rectangles, as domain.Record.PDQRegions): h, then each further hash that
// differs from the hashes before it, at most maxPDQCodes in all.
func PDQSignature(h []byte, more ...[]byte) []byte {
	sig := h
	for _, hs := range more {
		for i := 0; i+pdqBytes <= len(hs) && len(sig) < maxPDQCodes*pdqBytes; i += pdqBytes {
			c := hs[i : i+pdqBytes]
			dup := false
			for j := 0; j < len(sig); j += pdqBytes {
				dup = dup || string(sig[j:j+pdqBytes]) == string(c)
			}
			if !dup {
				if len(sig) == len(h) {
					sig = append(make([]byte, 0, len(h)+len(hs)), h...)
				}
				sig = append(sig, c...)
			}
		}
	}
	return sig
}

// pdqCodes returns the hashes of a PDQ signature (one to maxPDQCodes).
func pdqCodes(sig []byte) ([]hamming.Code, error) {
	if len(sig) == 0 || len(sig)%pdqBytes != 0 || len(sig) > maxPDQCodes*pdqBytes {
		return nil, fmt.Errorf("%w: %d bytes, want a multiple of %d up to %d", ErrBadSignature, len(sig), pdqBytes, maxPDQCodes*pdqBytes)
	}
	cs := make([]hamming.Code, 0, len(sig)/pdqBytes)
	for i := 0; i < len(sig); i += pdqBytes {
		c, err := hamming.FromBytes(sig[i : i+pdqBytes])
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
		}
		if !slices.Contains(cs, c) {
			cs = append(cs, c)
		}
	}
	return cs, nil
}

// entryIDs are the index entries of member id.
func entryIDs(id uint64) []uint64 {
	out := make([]uint64, maxPDQCodes)
	for j := range out {
		out[j] = entryStride*id + uint64(j)
	}
	return out
}

// Add implements Linker.
func (l *PDQLinker) Add(id uint64, sig []byte) error {
	cs, err := pdqCodes(sig)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ix.RemoveBatch(entryIDs(id)) == 0 {
		l.members++
	}
	for i, c := range cs {
		l.ix.Add(entryStride*id+uint64(i), c)
	}
	return nil
}

// AddBatch adds many members at once (loading); ids must not be indexed yet.
func (l *PDQLinker) AddBatch(ids []uint64, sigs [][]byte) error {
	eids := make([]uint64, 0, len(ids))
	codes := make([]hamming.Code, 0, len(sigs))
	for i, s := range sigs {
		cs, err := pdqCodes(s)
		if err != nil {
			return err
		}
		for j, c := range cs {
			eids, codes = append(eids, entryStride*ids[i]+uint64(j)), append(codes, c)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ix.AddBatch(eids, codes)
	l.members += len(ids)
	return nil
}

// Remove implements Linker.
func (l *PDQLinker) Remove(id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ix.RemoveBatch(entryIDs(id)) > 0 {
		l.members--
	}
}

// Neighbours implements Linker.
func (l *PDQLinker) Neighbours(sig []byte, dst []uint64) ([]uint64, error) {
	cs, err := pdqCodes(sig)
	if err != nil {
		return dst, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bufs, err = l.ix.Search(cs, l.threshold, l.bufs[:0])
	if err != nil {
		return dst, err
	}
	from, twice := len(dst), false
	for _, m := range l.bufs {
		dst = append(dst, m.ID/entryStride)
		twice = twice || m.ID%entryStride != 0
	}
	if twice { // a member may be found under both of its hashes
		slices.Sort(dst[from:])
		dst = append(dst[:from], slices.Compact(dst[from:])...)
	}
	return dst, nil
}

// Linked implements Linker.
func (l *PDQLinker) Linked(a, b []byte) (bool, error) {
	ca, err := pdqCodes(a)
	if err != nil {
		return false, err
	}
	cb, err := pdqCodes(b)
	if err != nil {
		return false, err
	}
	for _, x := range ca {
		for _, y := range cb {
			if hamming.Distance(x, y) <= l.threshold {
				return true, nil
			}
		}
	}
	return false, nil
}

// Len implements Linker: the number of indexed members.
func (l *PDQLinker) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.members
}
