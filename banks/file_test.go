package banks

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
)

// importAll runs an import to the end: the good signals and the bad lines.
func importAll(t testing.TB, data string, opt ImportOptions) ([]ImportedSignal, []*LineError, error) {
	t.Helper()
	im, err := NewImporter(strings.NewReader(data), opt)
	if err != nil {
		return nil, nil, err
	}
	var good []ImportedSignal
	var bad []*LineError
	for {
		s, err := im.Next()
		var le *LineError
		switch {
		case err == nil:
			good = append(good, s)
		case errors.As(err, &le):
			bad = append(bad, le)
		case errors.Is(err, io.EOF):
			return good, bad, nil
		default:
			return good, bad, err
		}
	}
}

func TestImportLines(t *testing.T) {
	data := strings.Join([]string{
		"pdq " + pdqA,                      // 1
		"",                                 // 2 blank
		"  PDQ   " + strings.ToUpper(pdqA), // 3 case and spaces
		"pdq " + pdqA[:60],                 // 4 wrong length
		"pdq zz" + pdqA[2:],                // 5 not hex
		"video_md5 " + md5A,                // 6
		"photo_md5 " + md5A,                // 7
		"tmk 00ff",                         // 8 unknown type
		"raw_text Hello,   World",          // 9
		"url https://Example.com/x/",       // 10
		"pdq",                              // 11 no signal
		"embedding 0.1,0.2",                // 12 no embeddings in files
		"raw_text !!!",                     // 13 empty once normalised
		"url ftp://example.com/file\r",     // 14 scheme
	}, "\n")
	good, bad, err := importAll(t, data, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range good {
		got = append(got, string(s.Type)+" "+s.Value)
	}
	want := []string{"pdq " + pdqA, "pdq " + pdqA, "md5 " + md5A, "md5 " + md5A, "text hello world", "url example.com/x"}
	if !slices.Equal(got, want) {
		t.Fatalf("good:\n%q\nwant\n%q", got, want)
	}
	wantBad := map[int]error{4: ErrMalformedSignal, 5: ErrMalformedSignal, 8: ErrUnknownSignalType, 11: ErrMalformedSignal, 12: ErrUnknownSignalType, 13: ErrMalformedSignal, 14: ErrMalformedSignal}
	if len(bad) != len(wantBad) {
		t.Fatalf("bad lines %v", bad)
	}
	for _, le := range bad {
		if !errors.Is(le, wantBad[le.Line]) {
			t.Errorf("line %d: %v, want %v", le.Line, le.Err, wantBad[le.Line])
		}
		if !strings.HasPrefix(le.Error(), "line ") {
			t.Errorf("message %q does not name the line", le.Error())
		}
	}
	// A bare-signal file with the type given.
	good, bad, err = importAll(t, pdqA+"\n"+strings.ToUpper(pdqA)+"\n\nnot-a-hash\n", ImportOptions{SignalType: "pdq"})
	if err != nil || len(good) != 2 || len(bad) != 1 || bad[0].Line != 4 {
		t.Fatalf("bare signals: %v %v %v", good, bad, err)
	}
	// With the type given, a line is the whole signal (python-threatexchange).
	good, _, _ = importAll(t, "url shorteners are bad\n", ImportOptions{SignalType: "raw_text"})
	if len(good) != 1 || good[0].Value != "url shorteners are bad" {
		t.Fatalf("typed text line: %+v", good)
	}
}

func TestImportCSV(t *testing.T) {
	data := "Signal,Signal_Type,tags,note,extra\n" +
		pdqA + ",pdq,a b a,first,x\n" +
		md5A + ",photo_md5,,,\n" +
		"\"Hello, world\",raw_text,greeting,\"multi\nline note\",\n" +
		"bad,pdq,,,\n" +
		"x,nosuch,,,\n" +
		"short\n" +
		"\"unterminated,pdq\n"
	good, bad, err := importAll(t, data, ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(good) != 3 || !slices.Equal(good[0].Tags, []string{"a", "b"}) || good[0].Note != "first" || good[2].Value != "hello world" || good[2].Note != "multi\nline note" {
		t.Fatalf("good %+v", good)
	}
	lines := []int{}
	for _, le := range bad {
		lines = append(lines, le.Line)
	}
	if !slices.Equal(lines, []int{6, 7, 8, 9}) {
		t.Fatalf("bad lines %v (%v)", lines, bad)
	}
	// The type of rows without one.
	good, _, err = importAll(t, "signal,note\n"+md5A+",n\n", ImportOptions{SignalType: "md5"})
	if err != nil || len(good) != 1 || good[0].Type != SignalMD5 {
		t.Fatalf("typed CSV: %v %v", good, err)
	}
}

func TestImportFatal(t *testing.T) {
	for _, tc := range []struct {
		name, data string
		opt        ImportOptions
		err        error
		sub        string
	}{
		{"empty", "", ImportOptions{}, ErrEmptyFile, ""},
		{"blank", "\n  \n\t\n", ImportOptions{}, ErrEmptyFile, ""},
		{"binary", "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", ImportOptions{}, ErrBinaryFile, "NUL byte at offset 8"},
		{"not utf8", "pdq \xff\xfe\xfd\n", ImportOptions{}, ErrBinaryFile, "invalid UTF-8"},
		{"csv no signal", "hash,signal_type\nx,pdq\n", ImportOptions{Format: FormatCSV}, ErrMissingColumn, "no signal column"},
		{"csv no type", "signal,note\nx,y\n", ImportOptions{}, ErrMissingColumn, "signal_type"},
		{"csv header only", "signal,signal_type\n", ImportOptions{}, ErrEmptyFile, "no rows"},
		{"embedding file", "x\n", ImportOptions{SignalType: SignalEmbedding}, ErrUnknownSignalType, "vector"},
		{"unknown type", "x\n", ImportOptions{SignalType: "tmk"}, ErrUnknownSignalType, "tmk"},
	} {
		_, _, err := importAll(t, tc.data, tc.opt)
		if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.sub) {
			t.Errorf("%s: %v, want %v containing %q", tc.name, err, tc.err, tc.sub)
		}
	}
}

// TestImportHugeLine: a 10 MB text signal is a bad line naming the
// problem, and the lines around it import.
func TestImportHugeLine(t *testing.T) {
	huge := "raw_text " + strings.Repeat("spam ", 2<<20)
	data := "pdq " + pdqA + "\n" + huge + "\nvideo_md5 " + md5A + "\n"
	good, bad, err := importAll(t, data, ImportOptions{})
	if err != nil || len(good) != 2 || len(bad) != 1 || bad[0].Line != 2 || !errors.Is(bad[0], ErrSignalTooLong) {
		t.Fatalf("good %d, bad %v, %v", len(good), bad, err)
	}
	// Within the line limit but over the signal limit.
	mid := "raw_text " + strings.Repeat("x", 100<<10)
	_, bad, _ = importAll(t, mid+"\n", ImportOptions{})
	if len(bad) != 1 || !errors.Is(bad[0], ErrSignalTooLong) {
		t.Fatalf("100 KB text: %v", bad)
	}
	// The same in CSV.
	_, bad, _ = importAll(t, "signal,signal_type\n\""+strings.Repeat("x", 10<<20)+"\",raw_text\n"+md5A+",md5\n", ImportOptions{})
	if len(bad) != 1 || !errors.Is(bad[0], ErrSignalTooLong) {
		t.Fatalf("10 MB CSV field: %v", bad)
	}
}

// TestImportExportRoundTrip: import -> entries -> export (both formats)
// -> import gives the same signals (and, for CSV, tags and notes).
func TestImportExportRoundTrip(t *testing.T) {
	src := "signal,signal_type,tags,note\n" +
		pdqA + ",pdq,b a,one\n" +
		md5A + ",video_md5,,\n" +
		"\"Buy, now!\",raw_text,spam,\"note, with comma\"\n" +
		"HTTPS://Evil.example/x?utm_source=1,url,,\n"
	good, bad, err := importAll(t, src, ImportOptions{})
	if err != nil || len(bad) != 0 {
		t.Fatal(err, bad)
	}
	s := NewState()
	mustApply(t, s, createOp("b", nil))
	var entries []Entry
	for _, g := range good {
		entries = append(entries, g.Entry(t0, "alice", "test"))
	}
	mustApply(t, s, addOp("b", entries...))
	mustApply(t, s, addOp("b", Entry{Type: SignalEmbedding, Modality: "text", Value: "c", Vector: []float32{1, 0}, ModelVersion: "m"}))
	for _, f := range []Format{FormatCSV, FormatLines} {
		var buf bytes.Buffer
		x, err := NewExporter(&buf, f)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Export("b", x); err != nil {
			t.Fatal(err)
		}
		if err := x.Close(); err != nil {
			t.Fatal(err)
		}
		if x.Stats.Written != 4 || x.Stats.Skipped != 1 {
			t.Fatalf("%s: stats %+v", f, x.Stats)
		}
		back, bad, err := importAll(t, buf.String(), ImportOptions{})
		if err != nil || len(bad) != 0 {
			t.Fatalf("%s re-import: %v %v\n%s", f, err, bad, buf.String())
		}
		key := func(ss []ImportedSignal, withMeta bool) []string {
			var out []string
			for _, s := range ss {
				k := string(s.Type) + " " + s.Value
				if withMeta {
					k += " [" + strings.Join(s.Tags, " ") + "] " + s.Note
				}
				out = append(out, k)
			}
			slices.Sort(out)
			return out
		}
		if a, b := key(good, f == FormatCSV), key(back, f == FormatCSV); !slices.Equal(a, b) {
			t.Fatalf("%s round trip:\n%q\n%q", f, a, b)
		}
	}
}

func FuzzImport(f *testing.F) {
	f.Add("pdq "+pdqA+"\nvideo_md5 "+md5A+"\nraw_text hi\n", "")
	f.Add("signal,signal_type,tags,note\n"+pdqA+",pdq,a,b\n", "")
	f.Add(pdqA+"\n", "pdq")
	f.Add("signal,note\n\"a\"\"b\",x\n", "raw_text")
	f.Fuzz(func(t *testing.T, data, typ string) {
		im, err := NewImporter(strings.NewReader(data), ImportOptions{SignalType: SignalType(typ), MaxLineBytes: 256})
		if err != nil {
			for _, k := range []error{ErrEmptyFile, ErrBinaryFile, ErrMissingColumn, ErrUnknownSignalType} {
				if errors.Is(err, k) {
					return
				}
			}
			t.Fatalf("untyped fatal error: %v", err)
		}
		for range 10000 {
			s, err := im.Next()
			var le *LineError
			switch {
			case err == nil:
				e := s.Entry(t0, "", "")
				if err := e.Normalize(); err != nil {
					t.Fatalf("a good line makes a bad entry: %v", err)
				}
			case errors.As(err, &le):
				if le.Line < 1 {
					t.Fatalf("line %d", le.Line)
				}
			case errors.Is(err, io.EOF), errors.Is(err, ErrEmptyFile):
				return
			default:
				t.Fatalf("fatal error: %v", err)
			}
		}
		t.Fatal("no end")
	})
}
