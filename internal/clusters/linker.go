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

// ErrBadSignature is returned for a signature the linker cannot read.
var ErrBadSignature = fmt.Errorf("clusters: bad signature")

// PDQLinker links two images when their whole-image PDQ hashes (32 bytes)
// are within Threshold bits, found by exact multi-index hashing
// (internal/hamming): symmetric and complete. A signature may also carry
// the image's canonical dihedral hash (64 bytes: PDQ, then the canonical
// variant, encoders/pdq.HashCanonical), so that a mirrored or rotated copy
// links too: two images link when any hash of one is within Threshold bits
// of any hash of the other. Each member is indexed under each of its
// hashes (entry ids 2×id and 2×id+1), so the relation stays symmetric and
// complete, and the batch job (internal/dedup) links the same pairs.
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

// PDQSignature is the signature of an image with PDQ hash h and canonical
// dihedral hash canon (nil or equal to h: h alone).
func PDQSignature(h, canon []byte) []byte {
	if len(canon) == 0 || string(canon) == string(h) {
		return h
	}
	return append(append(make([]byte, 0, len(h)+len(canon)), h...), canon...)
}

// pdqCodes returns the hashes of a PDQ signature (one or two).
func pdqCodes(sig []byte) ([]hamming.Code, error) {
	switch len(sig) {
	case pdqBytes:
		c, err := hamming.FromBytes(sig)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
		}
		return []hamming.Code{c}, nil
	case 2 * pdqBytes:
		a, err := hamming.FromBytes(sig[:pdqBytes])
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
		}
		b, err := hamming.FromBytes(sig[pdqBytes:])
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
		}
		if a == b {
			return []hamming.Code{a}, nil
		}
		return []hamming.Code{a, b}, nil
	}
	return nil, fmt.Errorf("%w: %d bytes, want %d or %d", ErrBadSignature, len(sig), pdqBytes, 2*pdqBytes)
}

// Add implements Linker.
func (l *PDQLinker) Add(id uint64, sig []byte) error {
	cs, err := pdqCodes(sig)
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ix.RemoveBatch([]uint64{2 * id, 2*id + 1}) == 0 {
		l.members++
	}
	for i, c := range cs {
		l.ix.Add(2*id+uint64(i), c)
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
			eids, codes = append(eids, 2*ids[i]+uint64(j)), append(codes, c)
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
	if l.ix.RemoveBatch([]uint64{2 * id, 2*id + 1}) > 0 {
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
		dst = append(dst, m.ID/2)
		twice = twice || m.ID%2 == 1
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
