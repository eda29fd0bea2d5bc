package banks

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
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
	return s
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
		"version":    append([]byte("XMBANKS\x02"), good[8:]...),
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
		// What loads writes back the same.
		if !bytes.Equal(snapshotBytes(t, s), data) {
			t.Fatal("a loaded snapshot writes back differently")
		}
	})
}
