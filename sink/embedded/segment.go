package embedded

import (
	"encoding/binary"
	"strings"

	"github.com/xmodal/xmodal/domain"
)

// segment holds the records of one modality in dense, parallel arrays: a
// scan of a modality touches nothing else and skips no holes. A delete moves
// the last record into the hole.
type segment struct {
	mod  domain.Modality
	recs []*domain.Record // what ranking and filtering read (Index.slim)
	vecs []float32        // dim per record
	// codes holds words uint64s per record: the binary code, big-endian
	// words of its bytes (MSB first), zero-padded. codeOK is false for a
	// record without a code (it never matches the hash plans).
	codes  []uint64
	codeOK []bool
	// pdq holds 4 words per record (nil until a record with a PDQ hash
	// arrives), pdqQ its quality, -1 for a record without one.
	pdq  []uint64
	pdqQ []int8
	// pdqC holds 8 words per record (nil until a record with canonical
	// dihedral hashes arrives): its canonical hashes
	// (domain.Record.PDQCanonical, one or two), zero words for none.
	pdqC []uint64
	// pkKey holds, per record, 8 bytes of its primary key after the prefix
	// that every key of the segment shares (cp bytes long, as in pkRef),
	// big-endian and zero-padded: comparing keys orders records as their
	// primary keys do, without reading the strings, except when two keys are
	// equal. Ties of the Hamming plans break by primary key, and clustered
	// codes tie by the thousand.
	pkKey []uint64
	pkRef string
	cp    int
}

// segIndex maps a modality to its segment.
func segIndex(m domain.Modality) int {
	switch m {
	case domain.ModalityImage:
		return 0
	case domain.ModalityText:
		return 1
	default:
		return 2
	}
}

func (s *segment) len() int { return len(s.recs) }

// grow appends an empty record and returns its position.
func (s *segment) grow(dim, words int) int {
	pos := len(s.recs)
	s.recs = append(s.recs, nil)
	s.pkKey = append(s.pkKey, 0)
	s.vecs = append(s.vecs, make([]float32, dim)...)
	if words > 0 {
		s.codes = append(s.codes, make([]uint64, words)...)
		s.codeOK = append(s.codeOK, false)
	}
	if s.pdq != nil {
		s.pdq = append(s.pdq, 0, 0, 0, 0)
		s.pdqQ = append(s.pdqQ, -1)
	}
	if s.pdqC != nil {
		s.pdqC = append(s.pdqC, make([]uint64, canonWords)...)
	}
	return pos
}

// ensureCodes allocates code arrays for the records already there (when
// the index adopts a code length after records without codes).
func (s *segment) ensureCodes(words int) {
	if words > 0 && len(s.codeOK) != len(s.recs) {
		s.codes = make([]uint64, len(s.recs)*words)
		s.codeOK = make([]bool, len(s.recs))
	}
}

func (s *segment) ensurePDQ() {
	if s.pdq == nil {
		s.pdq = make([]uint64, 4*len(s.recs), 4*cap(s.recs))
		s.pdqQ = make([]int8, len(s.recs), cap(s.recs))
		for i := range s.pdqQ {
			s.pdqQ[i] = -1
		}
	}
}

// canonSlots canonical dihedral hashes a record keeps (pdq.MaxCanonical),
// in canonWords words.
const (
	canonSlots = 2
	canonWords = 4 * canonSlots
)

// canonical returns the packed canonical dihedral hashes of the record at
// pos (4 words each), none when it has none (stored as zero words: no image
// with a PDQ hash of usable quality has an all-zero canonical hash).
func (s *segment) canonical(pos int) [][]uint64 {
	if s.pdqC == nil {
		return nil
	}
	var out [][]uint64
	for i := range canonSlots {
		c := s.pdqC[canonWords*pos+4*i : canonWords*pos+4*i+4]
		if c[0]|c[1]|c[2]|c[3] != 0 {
			out = append(out, c)
		}
	}
	return out
}

// canonicalBytes returns the canonical dihedral hashes of the record at
// pos, concatenated (as domain.Record.PDQCanonical).
func (s *segment) canonicalBytes(pos int) []byte {
	var out []byte
	for _, c := range s.canonical(pos) {
		out = append(out, unpackCode(c, domain.PDQBytes)...)
	}
	return out
}

// set writes r at pos, its metadata as meta (Index.slim).
func (s *segment) set(pos int, r, meta *domain.Record, dim, words, codeBytes int) {
	copy(s.vecs[pos*dim:(pos+1)*dim], r.Vector)
	if words > 0 {
		ok := len(r.Code) == codeBytes
		packCode(s.codes[pos*words:(pos+1)*words], r.Code, ok)
		s.codeOK[pos] = ok
	}
	if len(r.PDQ) == domain.PDQBytes {
		s.ensurePDQ()
		packCode(s.pdq[4*pos:4*pos+4], r.PDQ, true)
		s.pdqQ[pos] = int8(min(max(r.PDQQuality, 0), 100))
	} else if s.pdq != nil {
		clear(s.pdq[4*pos : 4*pos+4])
		s.pdqQ[pos] = -1
	}
	if n := len(r.PDQCanonical); n > 0 && n%domain.PDQBytes == 0 && len(r.PDQ) == domain.PDQBytes {
		if s.pdqC == nil {
			s.pdqC = make([]uint64, canonWords*len(s.recs), canonWords*cap(s.recs))
		}
		dst := s.pdqC[canonWords*pos : canonWords*(pos+1)]
		clear(dst)
		for i := 0; i < canonSlots && (i+1)*domain.PDQBytes <= n; i++ {
			packCode(dst[4*i:4*i+4], r.PDQCanonical[i*domain.PDQBytes:(i+1)*domain.PDQBytes], true)
		}
	} else if s.pdqC != nil {
		clear(s.pdqC[canonWords*pos : canonWords*(pos+1)])
	}
	s.recs[pos] = meta
	s.setKey(pos)
}

// setKey computes the key of the record at pos, first narrowing the shared
// prefix (and recomputing every key) when its primary key leaves it.
func (s *segment) setKey(pos int) {
	pk := s.recs[pos].PK
	if s.pkRef == "" {
		s.pkRef, s.cp = pk, len(pk)
	}
	if n := commonPrefix(s.pkRef, pk); n < s.cp {
		s.cp = n
		for i, r := range s.recs {
			if r != nil {
				s.pkKey[i] = keyAfter(r.PK, s.cp)
			}
		}
		return
	}
	s.pkKey[pos] = keyAfter(pk, s.cp)
}

func commonPrefix(a, b string) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// keyAfter returns the 8 bytes of pk from cp, big-endian, zero-padded.
func keyAfter(pk string, cp int) uint64 {
	var k uint64
	for i := 0; i < 8; i++ {
		k <<= 8
		if j := cp + i; j < len(pk) {
			k |= uint64(pk[j])
		}
	}
	return k
}

// comparePK orders the records at positions i and j by primary key.
func (s *segment) comparePK(i, j int) int {
	if a, b := s.pkKey[i], s.pkKey[j]; a != b {
		if a < b {
			return -1
		}
		return 1
	}
	return strings.Compare(s.recs[i].PK, s.recs[j].PK)
}

// remove deletes pos by moving the last record into it; it returns the
// primary key of the moved record ("" when pos was the last).
func (s *segment) remove(pos, dim, words int) string {
	last := len(s.recs) - 1
	moved := ""
	if pos != last {
		s.recs[pos] = s.recs[last]
		s.pkKey[pos] = s.pkKey[last]
		moved = s.recs[pos].PK
		copy(s.vecs[pos*dim:(pos+1)*dim], s.vecs[last*dim:(last+1)*dim])
		if words > 0 {
			copy(s.codes[pos*words:(pos+1)*words], s.codes[last*words:(last+1)*words])
			s.codeOK[pos] = s.codeOK[last]
		}
		if s.pdq != nil {
			copy(s.pdq[4*pos:4*pos+4], s.pdq[4*last:4*last+4])
			s.pdqQ[pos] = s.pdqQ[last]
		}
		if s.pdqC != nil {
			copy(s.pdqC[canonWords*pos:canonWords*(pos+1)], s.pdqC[canonWords*last:canonWords*(last+1)])
		}
	}
	s.recs[last] = nil
	s.recs = s.recs[:last]
	s.pkKey = s.pkKey[:last]
	s.vecs = s.vecs[:last*dim]
	if words > 0 {
		s.codes = s.codes[:last*words]
		s.codeOK = s.codeOK[:last]
	}
	if s.pdq != nil {
		s.pdq = s.pdq[:4*last]
		s.pdqQ = s.pdqQ[:last]
	}
	if s.pdqC != nil {
		s.pdqC = s.pdqC[:canonWords*last]
	}
	return moved
}

// record rebuilds the record at pos from memory (without what only a reply
// shows: see full).
func (s *segment) record(pos, dim, words, codeBytes int) domain.Record {
	r := *s.recs[pos]
	r.Vector = append([]float32(nil), s.vecs[pos*dim:(pos+1)*dim]...)
	if words > 0 && s.codeOK[pos] {
		r.Code = unpackCode(s.codes[pos*words:(pos+1)*words], codeBytes)
	}
	if s.pdq != nil && s.pdqQ[pos] >= 0 {
		r.PDQ = unpackCode(s.pdq[4*pos:4*pos+4], domain.PDQBytes)
		r.PDQQuality = int(s.pdqQ[pos])
	}
	for _, c := range s.canonical(pos) {
		r.PDQCanonical = append(r.PDQCanonical, unpackCode(c, domain.PDQBytes)...)
	}
	return r
}

// packCode stores code bytes as big-endian words (zero-padded); ok false
// stores zeros.
func packCode(dst []uint64, code []byte, ok bool) {
	clear(dst)
	if !ok {
		return
	}
	var buf [8]byte
	for w := range dst {
		lo := w * 8
		if lo >= len(code) {
			break
		}
		n := copy(buf[:], code[lo:])
		clear(buf[n:])
		dst[w] = binary.BigEndian.Uint64(buf[:])
	}
}

// unpackCode is the inverse of packCode for a code of n bytes.
func unpackCode(src []uint64, n int) []byte {
	out := make([]byte, 0, len(src)*8)
	for _, w := range src {
		out = binary.BigEndian.AppendUint64(out, w)
	}
	return out[:n]
}
