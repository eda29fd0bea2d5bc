package embedded

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/xmodal/xmodal/domain"
)

// A stored record is: a 1-byte format version, a uvarint length and the JSON of the
// record without its vector, then the vector as little-endian float32s. JSON keeps the
// metadata readable and evolvable; the raw vector keeps loading 1M records fast.
const recordFormat = 1

// storedRecord is the JSON part of a stored record.
type storedRecord struct {
	domain.Record
	// PostThumb: the record's thumbnail is its post's, stored once in the
	// thumbs bucket (Thumbnail is then empty here).
	PostThumb bool `json:"post_thumb,omitempty"`
	// Windows is the record's near-duplicate windows (domain.Record.Windows,
	// which replies leave out).
	Windows []byte `json:"windows,omitempty"`
	// PDQCanonical is the record's canonical dihedral hash
	// (domain.Record.PDQCanonical, which replies leave out).
	PDQCanonical []byte `json:"pdq_canonical,omitempty"`
	// PDQRegions is the PDQ hashes of the record's content rectangles
	// (domain.Record.PDQRegions, which replies leave out).
	PDQRegions []byte `json:"pdq_regions,omitempty"`
	PDQFramed  bool   `json:"pdq_framed,omitempty"`
	// MD5 is the image file's MD5 when it was computed (domain.Record.MD5):
	// a retro sweep matches md5 entries against it.
	MD5 []byte `json:"md5,omitempty"`
}

func encodeRecord(r *domain.Record) ([]byte, error) { return encodeStored(r, false) }

func encodeStored(r *domain.Record, postThumb bool) ([]byte, error) {
	meta := storedRecord{Record: *r, PostThumb: postThumb, Windows: r.Windows, PDQCanonical: r.PDQCanonical, PDQRegions: r.PDQRegions, PDQFramed: r.PDQFramed, MD5: r.MD5}
	meta.Vector = nil
	if postThumb {
		meta.Thumbnail = nil
	}
	js, err := json.Marshal(&meta)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 1+binary.MaxVarintLen64+len(js)+4*len(r.Vector))
	out = append(out, recordFormat)
	out = binary.AppendUvarint(out, uint64(len(js)))
	out = append(out, js...)
	for _, f := range r.Vector {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(f))
	}
	return out, nil
}

var errBadRecord = errors.New("stored record: unknown format or bad length")

func decodeRecord(b []byte) (*domain.Record, error) {
	r, _, err := decodeStored(b)
	return r, err
}

// decodeStored decodes a stored record and its PostThumb flag.
func decodeStored(b []byte) (*domain.Record, bool, error) {
	if len(b) < 2 || b[0] != recordFormat {
		return nil, false, errors.New("stored record: unknown format")
	}
	n, k := binary.Uvarint(b[1:])
	if k <= 0 || uint64(len(b)-1-k) < n {
		return nil, false, errors.New("stored record: bad length")
	}
	js := b[1+k : 1+k+int(n)]
	rest := b[1+k+int(n):]
	if len(rest)%4 != 0 {
		return nil, false, fmt.Errorf("stored record: vector has %d bytes, not a multiple of 4", len(rest))
	}
	var sr storedRecord
	if err := json.Unmarshal(js, &sr); err != nil {
		return nil, false, fmt.Errorf("stored record: %w", err)
	}
	r := sr.Record
	r.Windows, r.PDQCanonical, r.PDQRegions, r.PDQFramed, r.MD5 = sr.Windows, sr.PDQCanonical, sr.PDQRegions, sr.PDQFramed, sr.MD5
	r.Vector = make([]float32, len(rest)/4)
	for i := range r.Vector {
		r.Vector[i] = math.Float32frombits(binary.LittleEndian.Uint32(rest[4*i:]))
	}
	return &r, sr.PostThumb, nil
}

// postEntry is what the store remembers of a post: its newest applied version and
// the primary keys of its records.
type postEntry struct {
	Seq uint64   `json:"seq"`
	PKs []string `json:"pks"`
}
