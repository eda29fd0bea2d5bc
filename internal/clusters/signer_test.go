package clusters

import (
	"bytes"
	"testing"
)

// TestSignerImage: what an image joins with under each option, framed
// images included: by its regions alone, and by nothing when it has none
// (its whole-image hash is its frame's).
func TestSignerImage(t *testing.T) {
	h := bytes.Repeat([]byte{1}, pdqBytes)
	canon := bytes.Repeat([]byte{2}, pdqBytes)
	r1, r2 := bytes.Repeat([]byte{3}, pdqBytes), bytes.Repeat([]byte{4}, pdqBytes)
	regions := append(append([]byte{}, r1...), r2...)
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	for _, c := range []struct {
		name    string
		s       Signer
		regions []byte
		framed  bool
		want    []byte
	}{
		{"plain", Signer{}, regions, false, h},
		{"dihedral", Signer{Dihedral: true}, regions, false, cat(h, canon)},
		{"regions", Signer{Dihedral: true, Regions: true}, regions, false, cat(h, canon, r1, r2)},
		{"framed", Signer{Dihedral: true, Regions: true}, regions, true, cat(r1, r2)},
		{"framed, no picture to hash", Signer{Dihedral: true, Regions: true}, nil, true, nil},
		{"framed, regions off", Signer{Dihedral: true}, nil, true, cat(h, canon)},
	} {
		got := c.s.Image(h, canon, c.regions, c.framed, nil)
		if !bytes.Equal(got, c.want) {
			t.Errorf("%s: %x, want %x", c.name, got, c.want)
		}
	}
}
