package embedded

import (
	"encoding/json"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/xmodal/xmodal/domain"
)

// withCodes gives every record a code of the coder's length (computing the
// missing ones), copying the changes it alters rather than writing into the
// caller's records.
func (ix *Index) withCodes(changes []domain.Change) ([]domain.Change, error) {
	if ix.coder == nil {
		return changes, nil
	}
	n := ix.coder.Bits() / 8
	copied := false
	for i := range changes {
		recCopied := false
		for j := range changes[i].Records {
			r := &changes[i].Records[j]
			if len(r.Code) == n {
				continue
			}
			if !copied {
				changes = slices.Clone(changes)
				copied = true
			}
			if !recCopied {
				changes[i].Records = slices.Clone(changes[i].Records)
				recCopied = true
				r = &changes[i].Records[j]
			}
			r.Code = ix.coder.Code(r.Vector, r.Modality)
			if len(r.Code) != n {
				return nil, fmt.Errorf("embedded index: the coder gave record %q a code of %d bytes, want %d", r.PK, len(r.Code), n)
			}
		}
	}
	return changes, nil
}

// checkCodeLengths (without a coder) checks that every code has the store's
// length; the first code into a store without codes sets it. It returns the
// length adopted, if any, after writing it to the store's meta.
func (ix *Index) checkCodeLengths(tx *bolt.Tx, changes []domain.Change) (codeMeta, error) {
	if ix.coder != nil {
		return codeMeta{}, nil
	}
	meta := tx.Bucket(bucketMeta)
	var cm codeMeta
	if v := meta.Get(keyCode); v != nil {
		if err := json.Unmarshal(v, &cm); err != nil {
			return codeMeta{}, fmt.Errorf("meta code: %w", err)
		}
	}
	adopted := false
	for i := range changes {
		for j := range changes[i].Records {
			r := &changes[i].Records[j]
			bits := 8 * len(r.Code)
			switch {
			case bits == 0:
			case cm.Bits == 0:
				if bits > maxCodeBits {
					return codeMeta{}, fmt.Errorf("record %q has a %d-bit code, over %d", r.PK, bits, maxCodeBits)
				}
				cm.Bits, adopted = bits, true
			case bits != cm.Bits:
				return codeMeta{}, fmt.Errorf("record %q has a %d-bit code, the index holds %d-bit codes", r.PK, bits, cm.Bits)
			}
		}
	}
	if !adopted {
		return codeMeta{}, nil
	}
	js, _ := json.Marshal(cm)
	return cm, meta.Put(keyCode, js)
}

// queryCodes returns the query's code as words for each segment searched:
// q.Code when given (of the index's length), else the coder's code of the
// query vector as a vector of that segment's modality.
func (ix *Index) queryCodes(q *domain.VectorQuery, segs []*segment) ([][]uint64, error) {
	if ix.codeBits == 0 {
		return nil, fmt.Errorf("%w: plan %s needs binary codes and the index holds none (configure a hash coder)", domain.ErrInvalidQuery, q.Plan)
	}
	out := make([][]uint64, len(segs))
	if len(q.Code) > 0 {
		if len(q.Code)*8 != ix.codeBits {
			return nil, fmt.Errorf("%w: query code has %d bits, the index holds %d-bit codes", domain.ErrInvalidQuery, len(q.Code)*8, ix.codeBits)
		}
		w := make([]uint64, ix.words)
		packCode(w, q.Code, true)
		for i := range out {
			out[i] = w
		}
		return out, nil
	}
	if ix.coder == nil {
		return nil, fmt.Errorf("%w: plan %s needs the query's binary code (VectorQuery.Code)", domain.ErrInvalidQuery, q.Plan)
	}
	for i, s := range segs {
		w := make([]uint64, ix.words)
		packCode(w, ix.coder.Code(q.Vector, s.mod), true)
		out[i] = w
	}
	return out, nil
}
