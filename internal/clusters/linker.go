package clusters

import (
	"fmt"
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
// (internal/hamming): symmetric and complete.
type PDQLinker struct {
	threshold int
	mu        sync.Mutex // guards bufs
	ix        *hamming.Index
	bufs      []hamming.Match
}

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

func code(sig []byte) (hamming.Code, error) {
	c, err := hamming.FromBytes(sig)
	if err != nil {
		return c, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return c, nil
}

// Add implements Linker.
func (l *PDQLinker) Add(id uint64, sig []byte) error {
	c, err := code(sig)
	if err != nil {
		return err
	}
	l.ix.Add(id, c)
	return nil
}

// AddBatch adds many members at once (loading).
func (l *PDQLinker) AddBatch(ids []uint64, sigs [][]byte) error {
	cs := make([]hamming.Code, len(sigs))
	for i, s := range sigs {
		c, err := code(s)
		if err != nil {
			return err
		}
		cs[i] = c
	}
	l.ix.AddBatch(ids, cs)
	return nil
}

// Remove implements Linker.
func (l *PDQLinker) Remove(id uint64) { l.ix.Remove(id) }

// Neighbours implements Linker.
func (l *PDQLinker) Neighbours(sig []byte, dst []uint64) ([]uint64, error) {
	c, err := code(sig)
	if err != nil {
		return dst, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bufs, err = l.ix.Search([]hamming.Code{c}, l.threshold, l.bufs[:0])
	if err != nil {
		return dst, err
	}
	for _, m := range l.bufs {
		dst = append(dst, m.ID)
	}
	return dst, nil
}

// Linked implements Linker.
func (l *PDQLinker) Linked(a, b []byte) (bool, error) {
	ca, err := code(a)
	if err != nil {
		return false, err
	}
	cb, err := code(b)
	if err != nil {
		return false, err
	}
	return hamming.Distance(ca, cb) <= l.threshold, nil
}

// Len implements Linker.
func (l *PDQLinker) Len() int { return l.ix.Len() }
