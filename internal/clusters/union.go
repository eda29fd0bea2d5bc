package clusters

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// Union links two members when either of two relations links them: the
// whole-image PDQ relation (A, PDQLinker) or the near-duplicate window
// relation (B, encoders/neardup.Linker), so that crops join their
// picture's cluster. Both are symmetric and complete, so their union is.
// Its signatures are UnionSignature's: A's signature and B's, framed; a
// member with no B part (an image without stored windows) lives in A only.
type Union struct {
	A, B Linker
}

const unionTag = 'U'

// UnionSignature frames a signature of A (non-empty) and one of B (may be
// empty) as one: a tag byte, A's length (uvarint), A's bytes, B's bytes.
// The tag and framing keep it apart from PDQ signatures (multiples of 32
// bytes, read by A only after unframing) and text signatures (Either).
func UnionSignature(a, b []byte) []byte {
	out := make([]byte, 0, 1+binary.MaxVarintLen64+len(a)+len(b))
	out = append(out, unionTag)
	out = binary.AppendUvarint(out, uint64(len(a)))
	out = append(out, a...)
	return append(out, b...)
}

// SplitUnion returns the two parts of a UnionSignature.
func SplitUnion(sig []byte) (a, b []byte, err error) {
	if len(sig) < 2 || sig[0] != unionTag {
		return nil, nil, fmt.Errorf("%w: not a union signature", ErrBadSignature)
	}
	n, k := binary.Uvarint(sig[1:])
	if k <= 0 || n == 0 || n > uint64(len(sig)-1-k) {
		return nil, nil, fmt.Errorf("%w: union signature of %d bytes frames %d", ErrBadSignature, len(sig), n)
	}
	rest := sig[1+k:]
	return rest[:n], rest[n:], nil
}

// Add implements Linker.
func (u Union) Add(id uint64, sig []byte) error {
	a, b, err := SplitUnion(sig)
	if err != nil {
		return err
	}
	if err := u.A.Add(id, a); err != nil {
		return err
	}
	if len(b) == 0 {
		u.B.Remove(id)
		return nil
	}
	if err := u.B.Add(id, b); err != nil {
		u.A.Remove(id)
		return err
	}
	return nil
}

// Remove implements Linker.
func (u Union) Remove(id uint64) {
	u.A.Remove(id)
	u.B.Remove(id)
}

// Neighbours implements Linker: the members either relation links, each once.
func (u Union) Neighbours(sig []byte, dst []uint64) ([]uint64, error) {
	a, b, err := SplitUnion(sig)
	if err != nil {
		return dst, err
	}
	start := len(dst)
	if dst, err = u.A.Neighbours(a, dst); err != nil {
		return dst, err
	}
	if len(b) > 0 {
		if dst, err = u.B.Neighbours(b, dst); err != nil {
			return dst, err
		}
	}
	found := dst[start:]
	slices.Sort(found)
	return append(dst[:start], slices.Compact(found)...), nil
}

// Linked implements Linker.
func (u Union) Linked(x, y []byte) (bool, error) {
	xa, xb, err := SplitUnion(x)
	if err != nil {
		return false, err
	}
	ya, yb, err := SplitUnion(y)
	if err != nil {
		return false, err
	}
	if ok, err := u.A.Linked(xa, ya); err != nil || ok {
		return ok, err
	}
	if len(xb) == 0 || len(yb) == 0 {
		return false, nil
	}
	return u.B.Linked(xb, yb)
}

// Len implements Linker: the members of A (every member has an A part).
func (u Union) Len() int { return u.A.Len() }

// AddBatch adds many members at once (loading): A's parts in one batch
// when A takes batches, B's one by one.
func (u Union) AddBatch(ids []uint64, sigs [][]byte) error {
	as := make([][]byte, len(sigs))
	for i, s := range sigs {
		a, _, err := SplitUnion(s)
		if err != nil {
			return err
		}
		as[i] = a
	}
	if b, ok := u.A.(interface {
		AddBatch([]uint64, [][]byte) error
	}); ok {
		if err := b.AddBatch(ids, as); err != nil {
			return err
		}
	} else {
		for i := range ids {
			if err := u.A.Add(ids[i], as[i]); err != nil {
				return err
			}
		}
	}
	for i, s := range sigs {
		if _, b, _ := SplitUnion(s); len(b) > 0 {
			if err := u.B.Add(ids[i], b); err != nil {
				return err
			}
		}
	}
	return nil
}

// NeighboursSkip implements SkipLinker: A's neighbours (cheap: hash
// distances), then B's candidates that skip does not leave out.
func (u Union) NeighboursSkip(sig []byte, skip func(id uint64) bool, found func(id uint64)) error {
	a, b, err := SplitUnion(sig)
	if err != nil {
		return err
	}
	if err := neighboursSkip(u.A, a, skip, found); err != nil {
		return err
	}
	if len(b) == 0 {
		return nil
	}
	return neighboursSkip(u.B, b, skip, found)
}
