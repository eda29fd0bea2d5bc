package banks

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestOpValidate(t *testing.T) {
	yes := true
	for _, tc := range []struct {
		name string
		op   Op
		sub  string
	}{
		{"version", Op{Version: 2, Kind: OpDeleteBank, Bank: "b", At: t0}, "version 2"},
		{"bank name", Op{Version: 1, Kind: OpDeleteBank, Bank: "B B", At: t0}, "invalid bank name"},
		{"time", Op{Version: 1, Kind: OpDeleteBank, Bank: "b"}, "without a time"},
		{"kind", Op{Version: 1, Kind: "drop", Bank: "b", At: t0}, "unknown kind"},
		{"create without config", Op{Version: 1, Kind: OpCreateBank, Bank: "b", At: t0}, "config required"},
		{"config of another bank", Op{Version: 1, Kind: OpCreateBank, Bank: "b", At: t0, Config: &Bank{Name: "c"}}, `config names bank "c"`},
		{"add without entries", Op{Version: 1, Kind: OpAddEntries, Bank: "b", At: t0}, "entries required"},
		{"remove with entries", Op{Version: 1, Kind: OpRemoveEntries, Bank: "b", At: t0, IDs: []string{"x"}, Entries: []Entry{{}}}, "entries not allowed"},
		{"set without flags", Op{Version: 1, Kind: OpSetEntries, Bank: "b", At: t0, IDs: []string{"x"}}, "disabled or stale required"},
		{"delete with flags", Op{Version: 1, Kind: OpDeleteBank, Bank: "b", At: t0, Disabled: &yes}, "disabled or stale not allowed"},
	} {
		err := tc.op.Validate()
		if !errors.Is(err, ErrInvalidOp) || !strings.Contains(err.Error(), tc.sub) {
			t.Errorf("%s: %v, want ErrInvalidOp containing %q", tc.name, err, tc.sub)
		}
	}
}

func TestOpEncodeDecode(t *testing.T) {
	o := addOp("b", Entry{Type: SignalPDQ, Value: pdqA, Tags: []string{"x"}})
	data, err := EncodeOp(o)
	if err != nil {
		t.Fatal(err)
	}
	back, err := DecodeOp(data)
	if err != nil {
		t.Fatal(err)
	}
	if jsonOf(t, back) != jsonOf(t, o) {
		t.Fatalf("round trip:\n%s\n%s", jsonOf(t, back), jsonOf(t, o))
	}
	for _, bad := range []string{
		`{"v":1,"op":"delete_bank","bank":"b","at":"2026-12-01T10:00:00Z","extra":1}`,
		`{"v":1,"op":"delete_bank","bank":"b","at":"2026-12-01T10:00:00Z"} {}`,
		`not json`,
		`{"v":1,"op":"delete_bank","bank":"b"}`,
	} {
		if _, err := DecodeOp([]byte(bad)); !errors.Is(err, ErrInvalidOp) {
			t.Errorf("DecodeOp(%s): %v, want ErrInvalidOp", bad, err)
		}
	}
}

func FuzzDecodeOp(f *testing.F) {
	data, _ := EncodeOp(addOp("b", Entry{Type: SignalPDQ, Value: pdqA}))
	f.Add(data)
	f.Add([]byte(`{"v":1,"op":"set_entries","bank":"b","at":"2026-12-01T10:00:00Z","ids":["x"],"disabled":true}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := DecodeOp(data)
		if err != nil {
			if !errors.Is(err, ErrInvalidOp) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		// A decoded op applies or fails with a typed error; never panics.
		s := NewState()
		s.Apply(createOp(o.Bank, nil))
		s.Apply(o)
	})
}

func TestOpBatcher(t *testing.T) {
	b := OpBatcher{Bank: "b", Actor: "a", At: t0, MaxBytes: 4000}
	var ops []*Op
	n := 0
	for i := range 200 {
		e := Entry{Type: SignalText, Value: strings.Repeat("x", 10+i%50), AddedAt: t0}
		o, err := b.Add(e)
		if err != nil {
			t.Fatal(err)
		}
		if o != nil {
			ops = append(ops, o)
		}
	}
	if o := b.Flush(); o != nil {
		ops = append(ops, o)
	}
	if b.Flush() != nil {
		t.Fatal("second flush returned an op")
	}
	for _, o := range ops {
		data, err := EncodeOp(*o)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) > 4000 {
			t.Fatalf("op of %d bytes > 4000", len(data))
		}
		n += len(o.Entries)
	}
	if n != 200 || len(ops) < 3 {
		t.Fatalf("%d entries in %d ops", n, len(ops))
	}
	if _, err := b.Add(Entry{Type: SignalText, Value: strings.Repeat("y", 5000), AddedAt: time.Unix(1, 0)}); !errors.Is(err, ErrInvalidEntry) {
		t.Fatalf("an entry larger than an op: %v", err)
	}
}

// TestOpBatcherAddAll: an import of five good lines and two bad ones in ops
// of at most two entries: three ops (2, 2, 1) in line order, the bad lines
// reported by number and skipped, and send's error stops the import.
func TestOpBatcherAddAll(t *testing.T) {
	data := strings.Join([]string{"md5 " + strings.Repeat("a", 32), "md5 nothex", "md5 " + strings.Repeat("b", 32),
		"text one", "url https://example.com/x", "nope value", "text two"}, "\n")
	entry := func(s ImportedSignal) Entry { return Entry{Type: s.Type, Value: s.Value} }
	for _, tc := range []struct {
		name    string
		failAt  int // the op whose send fails (0: none)
		sizes   []int
		bad     []int
		good    int
		wantErr bool
	}{
		{"all", 0, []int{2, 2, 1}, []int{2, 6}, 5, false},
		{"send fails", 2, []int{2, 2}, []int{2, 6}, 5, true}, // the second op leaves when the fifth entry comes
	} {
		t.Run(tc.name, func(t *testing.T) {
			im, err := NewImporter(strings.NewReader(data), ImportOptions{Format: FormatLines})
			if err != nil {
				t.Fatal(err)
			}
			b := OpBatcher{Bank: "b", MaxEntries: 2}
			var sizes, bad []int
			var values []string
			good, err := b.AddAll(im, entry, func(op *Op) error {
				sizes = append(sizes, len(op.Entries))
				for _, e := range op.Entries {
					values = append(values, e.Value)
				}
				if len(sizes) == tc.failAt {
					return errors.New("refused")
				}
				return nil
			}, func(le *LineError) { bad = append(bad, le.Line) })
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if !slices.Equal(sizes, tc.sizes) || !slices.Equal(bad, tc.bad) || good != tc.good {
				t.Fatalf("ops %v, bad lines %v, good %d; want %v, %v, %d", sizes, bad, good, tc.sizes, tc.bad, tc.good)
			}
			if !tc.wantErr && (len(values) != 5 || values[0] != strings.Repeat("a", 32) || values[4] != "two") {
				t.Fatalf("entries out of line order: %q", values)
			}
		})
	}
}
