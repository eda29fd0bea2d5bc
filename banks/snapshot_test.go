package banks

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/xmodal/xmodal/eval/reposts"
)

func richState(t testing.TB) *State {
	t.Helper()
	s := NewState()
	for _, o := range randomOps(11, 200) {
		s.Apply(o)
	}
	mustApply(t, s, createOp("emb", func(b *Bank) { b.Thresholds.Embedding.TextImage = 0.3; b.StoreMedia = true }))
	rng := rand.New(rand.NewPCG(1, 1))
	mustApply(t, s, addOp("emb",
		Entry{Type: SignalEmbedding, Modality: "text", Value: "a concept", Vector: unit(rng, 16), ModelVersion: "m1", Note: "n", Stale: true},
		Entry{Type: SignalEmbedding, Modality: "image", Value: strings.Repeat("cd", 32), Vector: unit(rng, 16), ModelVersion: "m1", Disabled: true},
		Entry{Type: SignalURL, Value: "example.com/x", Source: "feed", AddedBy: "bob", Tags: []string{"a", "b"}},
		Entry{Type: SignalMD5, Value: md5A},
	))
	// Two pdq entries with the windows of their pictures, one disabled.
	w1, w2 := windowsEntry(t, reposts.Photo(2, 1000, 320, 240)), windowsEntry(t, reposts.Photo(3, 1000, 240, 320))
	w2.Disabled = true
	mustApply(t, s, addOp("emb", w1, w2))
	return s
}

// TestSnapshotReadsVersion1: a snapshot written before entries had
// windows (version 1: the same layout without the windows flag) loads.
func TestSnapshotReadsVersion1(t *testing.T) {
	s := NewState()
	for _, o := range randomOps(12, 100) {
		s.Apply(o)
	}
	v2 := snapshotBytes(t, s)
	v1 := append([]byte(nil), v2[:len(v2)-4]...)
	v1[7] = 1
	v1 = binary.LittleEndian.AppendUint32(v1, crc32.Checksum(v1, castagnoli))
	l, err := ReadSnapshot(bytes.NewReader(v1), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snapshotBytes(t, l), v2) {
		t.Fatal("a version 1 snapshot loads differently")
	}
	// Version 1 has no windows flag.
	w := NewState()
	mustApply(t, w, createOp("b", nil))
	mustApply(t, w, addOp("b", windowsEntry(t, reposts.Photo(4, 1000, 320, 240))))
	withWins := snapshotBytes(t, w)
	old := append([]byte(nil), withWins[:len(withWins)-4]...)
	old[7] = 1
	old = binary.LittleEndian.AppendUint32(old, crc32.Checksum(old, castagnoli))
	if _, err := ReadSnapshot(bytes.NewReader(old), ReadOptions{}); !errors.Is(err, ErrSnapshot) {
		t.Fatalf("version 1 with windows: %v, want ErrSnapshot", err)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := richState(t)
	first := snapshotBytes(t, s)
	l, err := ReadSnapshot(bytes.NewReader(first), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if again := snapshotBytes(t, l); !bytes.Equal(first, again) {
		t.Fatal("a snapshot of a loaded snapshot differs")
	}
	if jsonOf(t, s.Banks()) != jsonOf(t, l.Banks()) {
		t.Fatalf("banks differ:\n%s\n%s", jsonOf(t, s.Banks()), jsonOf(t, l.Banks()))
	}
	for _, bi := range s.Banks() {
		a, _, _ := s.Entries(bi.Name, 0, 100000)
		b, _, _ := l.Entries(bi.Name, 0, 100000)
		if jsonOf(t, a) != jsonOf(t, b) {
			t.Fatalf("bank %s entries differ", bi.Name)
		}
	}
	empty := snapshotBytes(t, NewState())
	if l, err := ReadSnapshot(bytes.NewReader(empty), ReadOptions{}); err != nil || len(l.Banks()) != 0 {
		t.Fatalf("empty state: %v %v", l, err)
	}
}

func TestSnapshotCorrupt(t *testing.T) {
	good := snapshotBytes(t, richState(t))
	cases := map[string][]byte{
		"empty":      {},
		"magic":      append([]byte("NOTBANKS"), good[8:]...),
		"version":    append([]byte("XMBANKS\x03"), good[8:]...),
		"truncated":  good[:len(good)/2],
		"no trailer": good[:len(good)-4],
		"trailing":   append(append([]byte{}, good...), 0),
	}
	flipped := append([]byte{}, good...)
	flipped[len(flipped)/3] ^= 0x40
	cases["flipped byte"] = flipped
	for name, data := range cases {
		if _, err := ReadSnapshot(bytes.NewReader(data), ReadOptions{}); !errors.Is(err, ErrSnapshot) {
			t.Errorf("%s: %v, want ErrSnapshot", name, err)
		}
	}
}

// oneByteReader returns one byte a Read (the decoder must not depend on
// how its input is chunked).
type oneByteReader struct{ b []byte }

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	p[0] = r.b[0]
	r.b = r.b[1:]
	return 1, nil
}

func TestSnapshotChunking(t *testing.T) {
	good := snapshotBytes(t, richState(t))
	l, err := ReadSnapshot(&oneByteReader{good}, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(snapshotBytes(t, l), good) {
		t.Fatal("byte-at-a-time load differs")
	}
}

func FuzzReadSnapshot(f *testing.F) {
	f.Add(snapshotBytes(f, richState(f)))
	f.Add(snapshotBytes(f, NewState()))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ReadSnapshot(bytes.NewReader(data), ReadOptions{})
		if err != nil {
			if !errors.Is(err, ErrSnapshot) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		// What loads writes back the same (a version 1 snapshot as
		// version 2, which then writes back the same).
		again := snapshotBytes(t, s)
		if data[7] == 1 {
			l, err := ReadSnapshot(bytes.NewReader(again), ReadOptions{})
			if err != nil {
				t.Fatalf("a version 1 snapshot written back does not load: %v", err)
			}
			data = again
			again = snapshotBytes(t, l)
		}
		if !bytes.Equal(again, data) {
			t.Fatal("a loaded snapshot writes back differently")
		}
	})
}
