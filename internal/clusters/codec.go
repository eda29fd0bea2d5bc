package clusters

import (
	"encoding/binary"
	"errors"
)

var errCorrupt = errors.New("corrupt row")

func u64key(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// flipTime orders signed times as unsigned big-endian bytes.
func flipTime(at int64) uint64  { return uint64(at) ^ (1 << 63) }
func unflipTime(b []byte) int64 { return int64(binary.BigEndian.Uint64(b) ^ (1 << 63)) }

// setKey is cluster | time | post id: a cluster's members, oldest first.
func setKey(cid uint64, at int64, post string) []byte {
	k := make([]byte, 16, 16+len(post))
	binary.BigEndian.PutUint64(k, cid)
	binary.BigEndian.PutUint64(k[8:], flipTime(at))
	return append(k, post...)
}

// A member row: cluster, member id, time (8 bytes each), signature.
func encodeMember(m *Member) []byte {
	b := make([]byte, 24, 24+len(m.Sig))
	binary.BigEndian.PutUint64(b, m.Cluster)
	binary.BigEndian.PutUint64(b[8:], m.ID)
	binary.BigEndian.PutUint64(b[16:], uint64(m.At))
	return append(b, m.Sig...)
}

func decodeMember(b []byte) (*Member, error) {
	if len(b) < 24 {
		return nil, errCorrupt
	}
	return &Member{Cluster: binary.BigEndian.Uint64(b), ID: binary.BigEndian.Uint64(b[8:]),
		At: int64(binary.BigEndian.Uint64(b[16:])), Sig: append([]byte(nil), b[24:]...)}, nil
}

// An info row: version byte, then varints: size, first, last, len(rep), rep,
// number of counts, then per count the bucket's delta from the previous and N.
const infoFormat = 1

func encodeInfo(in *Info) []byte {
	b := make([]byte, 0, 32+len(in.Rep)+6*len(in.Counts))
	b = append(b, infoFormat)
	b = binary.AppendUvarint(b, uint64(in.Size))
	b = binary.AppendVarint(b, in.First)
	b = binary.AppendVarint(b, in.Last)
	b = binary.AppendUvarint(b, uint64(len(in.Rep)))
	b = append(b, in.Rep...)
	b = binary.AppendUvarint(b, uint64(len(in.Counts)))
	var prev int64
	for _, c := range in.Counts {
		b = binary.AppendVarint(b, c.Bucket-prev)
		b = binary.AppendUvarint(b, uint64(c.N))
		prev = c.Bucket
	}
	return b
}

func decodeInfo(b []byte) (*Info, error) {
	if len(b) < 1 || b[0] != infoFormat {
		return nil, errCorrupt
	}
	b = b[1:]
	bad := false
	uv := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			bad = true
			return 0
		}
		b = b[n:]
		return v
	}
	sv := func() int64 {
		v, n := binary.Varint(b)
		if n <= 0 {
			bad = true
			return 0
		}
		b = b[n:]
		return v
	}
	in := &Info{}
	in.Size = int(uv())
	in.First, in.Last = sv(), sv()
	n := uv()
	if bad || n > uint64(len(b)) {
		return nil, errCorrupt
	}
	in.Rep, b = string(b[:n]), b[n:]
	nc := uv()
	if bad || nc > uint64(len(b)) {
		return nil, errCorrupt
	}
	in.Counts = make([]Count, 0, nc)
	var prev int64
	for i := uint64(0); i < nc && !bad; i++ {
		prev += sv()
		in.Counts = append(in.Counts, Count{Bucket: prev, N: int32(uv())})
	}
	if bad {
		return nil, errCorrupt
	}
	return in, nil
}
