package clusters

import (
	"crypto/sha256"
	"sync"
)

// Text clusters: text-only posts whose normalised texts are equal (the
// same copypasta, a slogan, a spam text re-posted) form a cluster, so that
// they can trend as image re-posts do. The signature of such a post is a
// tag byte and the first 16 bytes of the SHA-256 of its normalised text;
// PDQ signatures are 32 bytes, so the two kinds never collide, and Either
// keeps them apart.

// TextSigLen is the length of a text signature.
const TextSigLen = 1 + 16

const textTag = 'T'

// TextSignature returns the signature of a post's normalised text (the
// caller normalises: banks.NormalizeText is the project's one rule); nil
// for an empty text, which joins no cluster.
func TextSignature(normalised string) []byte {
	if normalised == "" {
		return nil
	}
	sum := sha256.Sum256([]byte(normalised))
	sig := make([]byte, TextSigLen)
	sig[0] = textTag
	copy(sig[1:], sum[:TextSigLen-1])
	return sig
}

// IsTextSignature reports whether sig is a text signature.
func IsTextSignature(sig []byte) bool { return len(sig) == TextSigLen && sig[0] == textTag }

// ExactLinker links members whose signatures are equal (text signatures):
// symmetric and complete, a map lookup.
type ExactLinker struct {
	mu    sync.Mutex
	byKey map[string][]uint64
	keyOf map[uint64]string
}

// NewExactLinker returns an empty exact linker.
func NewExactLinker() *ExactLinker {
	return &ExactLinker{byKey: map[string][]uint64{}, keyOf: map[uint64]string{}}
}

// Add implements Linker.
func (l *ExactLinker) Add(id uint64, sig []byte) error {
	if len(sig) == 0 {
		return ErrBadSignature
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.removeLocked(id)
	k := string(sig)
	l.byKey[k] = append(l.byKey[k], id)
	l.keyOf[id] = k
	return nil
}

// Remove implements Linker.
func (l *ExactLinker) Remove(id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.removeLocked(id)
}

func (l *ExactLinker) removeLocked(id uint64) {
	k, ok := l.keyOf[id]
	if !ok {
		return
	}
	delete(l.keyOf, id)
	ids := l.byKey[k]
	for i, x := range ids {
		if x == id {
			ids[i] = ids[len(ids)-1]
			ids = ids[:len(ids)-1]
			break
		}
	}
	if len(ids) == 0 {
		delete(l.byKey, k)
	} else {
		l.byKey[k] = ids
	}
}

// Neighbours implements Linker.
func (l *ExactLinker) Neighbours(sig []byte, dst []uint64) ([]uint64, error) {
	if len(sig) == 0 {
		return dst, ErrBadSignature
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return append(dst, l.byKey[string(sig)]...), nil
}

// Linked implements Linker.
func (l *ExactLinker) Linked(a, b []byte) (bool, error) {
	if len(a) == 0 || len(b) == 0 {
		return false, ErrBadSignature
	}
	return string(a) == string(b), nil
}

// Len implements Linker.
func (l *ExactLinker) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keyOf)
}

// Either routes each signature by its kind: text signatures
// (IsTextSignature) to Text, every other to Image. Signatures of different
// kinds never link, so a text cluster and an image cluster never merge.
type Either struct {
	Image, Text Linker
}

func (e Either) route(sig []byte) Linker {
	if IsTextSignature(sig) {
		return e.Text
	}
	return e.Image
}

// Add implements Linker.
func (e Either) Add(id uint64, sig []byte) error {
	// A member id is never reused, so it lives in one linker only.
	return e.route(sig).Add(id, sig)
}

// AddBatch adds many members at once (loading), in batches per kind.
func (e Either) AddBatch(ids []uint64, sigs [][]byte) error {
	var ti, ii []uint64
	var ts, is [][]byte
	for i, s := range sigs {
		if IsTextSignature(s) {
			ti, ts = append(ti, ids[i]), append(ts, s)
		} else {
			ii, is = append(ii, ids[i]), append(is, s)
		}
	}
	for _, part := range []struct {
		l    Linker
		ids  []uint64
		sigs [][]byte
	}{{e.Image, ii, is}, {e.Text, ti, ts}} {
		if len(part.ids) == 0 {
			continue
		}
		if b, ok := part.l.(interface {
			AddBatch([]uint64, [][]byte) error
		}); ok {
			if err := b.AddBatch(part.ids, part.sigs); err != nil {
				return err
			}
			continue
		}
		for i := range part.ids {
			if err := part.l.Add(part.ids[i], part.sigs[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// Remove implements Linker.
func (e Either) Remove(id uint64) {
	e.Image.Remove(id)
	e.Text.Remove(id)
}

// NeighboursSkip implements SkipLinker.
func (e Either) NeighboursSkip(sig []byte, skip func(id uint64) bool, found func(id uint64)) error {
	return neighboursSkip(e.route(sig), sig, skip, found)
}

// Neighbours implements Linker.
func (e Either) Neighbours(sig []byte, dst []uint64) ([]uint64, error) {
	return e.route(sig).Neighbours(sig, dst)
}

// Linked implements Linker.
func (e Either) Linked(a, b []byte) (bool, error) {
	if IsTextSignature(a) != IsTextSignature(b) {
		return false, nil
	}
	return e.route(a).Linked(a, b)
}

// Len implements Linker.
func (e Either) Len() int { return e.Image.Len() + e.Text.Len() }
