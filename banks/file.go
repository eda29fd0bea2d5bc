package banks

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Format is the form of an import or export file.
type Format string

// The formats.
const (
	// FormatLines is the local-file format of Meta's python-threatexchange
	// (its local_file exchange) and HMA: one signal a line, either
	// "<signal_type> <signal>" (split at the first space) or, when the
	// signal type is given for the whole file, the bare signal. Lines are
	// trimmed; blank lines are skipped.
	FormatLines Format = "lines"
	// FormatCSV is CSV with a header row naming the columns signal,
	// signal_type (optional when the type is given for the whole file),
	// tags (optional; space-separated) and note (optional), in any order;
	// other columns are ignored.
	FormatCSV Format = "csv"
)

// ImportOptions configure an Importer.
type ImportOptions struct {
	// Format: "" detects it (CSV when the first line is a header with a
	// "signal" column, lines otherwise).
	Format Format
	// SignalType is the type of every signal of a lines file (whose lines
	// are then bare signals), and of CSV rows without a signal_type
	// column or value.
	SignalType SignalType
	// MaxLineBytes bounds a line (default 1 MiB): a longer one is a bad
	// line (ErrSignalTooLong), skipped without holding it in memory.
	MaxLineBytes int
}

// WithDefaults returns o with the zero fields set to their defaults.
func (o ImportOptions) WithDefaults() ImportOptions {
	if o.MaxLineBytes == 0 {
		o.MaxLineBytes = 1 << 20
	}
	return o
}

// ImportedSignal is one good line of an import, in canonical form.
type ImportedSignal struct {
	Line  int
	Type  SignalType
	Value string
	Tags  []string
	Note  string
}

// Entry is the entry of s, added at by and from source.
func (s ImportedSignal) Entry(at time.Time, by, source string) Entry {
	e := Entry{Type: s.Type, Value: s.Value, Tags: s.Tags, Note: s.Note, AddedAt: at, AddedBy: by, Source: source}
	e.ID = EntryID(s.Type, "", s.Value)
	return e
}

// Importer reads signals from a lines or CSV file, streaming: a bad line
// is reported (Next returns a *LineError naming its line and reason) and
// the import goes on with the next one. An empty file (ErrEmptyFile), a
// binary one (ErrBinaryFile) and a CSV header without the needed columns
// (ErrMissingColumn) stop it.
type Importer struct {
	opt    ImportOptions
	format Format
	br     *bufio.Reader
	line   int // lines read (lines format)
	seen   int // non-blank lines seen
	long   []byte

	csv            *csv.Reader
	cSignal, cType int
	cTags, cNote   int
	ncols          int
}

// sniffBytes is how much of a file NewImporter inspects.
const sniffBytes = 8 << 10

// NewImporter prepares an import from r: it inspects the first bytes
// (empty? binary?), settles the format and, for CSV, reads the header.
func NewImporter(r io.Reader, opt ImportOptions) (*Importer, error) {
	opt = opt.WithDefaults()
	if opt.SignalType != "" {
		t, err := ParseSignalType(string(opt.SignalType))
		if err != nil {
			return nil, err
		}
		opt.SignalType = t
	}
	if opt.SignalType == SignalEmbedding {
		return nil, fmt.Errorf("%w: embeddings cannot be imported from a file: they need a vector", ErrUnknownSignalType)
	}
	im := &Importer{opt: opt, br: bufio.NewReaderSize(r, 64<<10)}
	head, err := im.br.Peek(sniffBytes)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, err
	}
	if bytes.HasPrefix(head, []byte("\xef\xbb\xbf")) { // a UTF-8 byte order mark
		im.br.Discard(3)
		head = head[3:]
	}
	if len(bytes.TrimSpace(head)) == 0 && len(head) < sniffBytes {
		return nil, fmt.Errorf("%w: no signals in it", ErrEmptyFile)
	}
	if i := bytes.IndexByte(head, 0); i >= 0 {
		return nil, fmt.Errorf("%w: a NUL byte at offset %d (not a text file of signals)", ErrBinaryFile, i)
	}
	if !utf8.Valid(trimPartialRune(head)) {
		return nil, fmt.Errorf("%w: invalid UTF-8 in the first %d bytes (not a text file of signals)", ErrBinaryFile, len(head))
	}
	im.format = opt.Format
	first := head
	if i := bytes.IndexByte(first, '\n'); i >= 0 {
		first = first[:i]
	}
	switch im.format {
	case "":
		im.format = FormatLines
		if isCSVHeader(string(first)) {
			im.format = FormatCSV
		}
	case FormatLines, FormatCSV:
	default:
		return nil, fmt.Errorf("unknown import format %s (want lines or csv)", quote(string(opt.Format)))
	}
	if im.format == FormatCSV {
		if err := im.readHeader(); err != nil {
			return nil, err
		}
	}
	return im, nil
}

// trimPartialRune drops an incomplete UTF-8 sequence at the end of b (cut
// by the sniffing window).
func trimPartialRune(b []byte) []byte {
	for i := 1; i <= 3 && i <= len(b); i++ {
		if utf8.RuneStart(b[len(b)-i]) {
			if !utf8.FullRune(b[len(b)-i:]) {
				return b[:len(b)-i]
			}
			break
		}
	}
	return b
}

// isCSVHeader reports whether line looks like the header of a signal CSV.
func isCSVHeader(line string) bool {
	if !strings.Contains(line, ",") {
		return false
	}
	for _, f := range strings.Split(line, ",") {
		if strings.EqualFold(strings.Trim(strings.TrimSpace(f), `"`), "signal") {
			return true
		}
	}
	return false
}

// Format is the file's format (detected or given).
func (im *Importer) Format() Format { return im.format }

func (im *Importer) readHeader() error {
	im.csv = csv.NewReader(im.br)
	im.csv.FieldsPerRecord = -1
	im.csv.ReuseRecord = true
	hdr, err := im.csv.Read()
	if err != nil {
		return fmt.Errorf("%w: reading the CSV header: %v", ErrMissingColumn, err)
	}
	im.cSignal, im.cType, im.cTags, im.cNote = -1, -1, -1, -1
	for i, h := range hdr {
		switch strings.ToLower(strings.TrimSpace(h)) {
		case "signal":
			im.cSignal = i
		case "signal_type":
			im.cType = i
		case "tags":
			im.cTags = i
		case "note":
			im.cNote = i
		}
	}
	im.ncols = len(hdr)
	var missing []string
	if im.cSignal < 0 {
		missing = append(missing, "signal")
	}
	if im.cType < 0 && im.opt.SignalType == "" {
		missing = append(missing, "signal_type (or give the signal type of the whole file)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: the header %s has no %s column", ErrMissingColumn, quote(strings.Join(hdr, ",")), strings.Join(missing, " nor "))
	}
	return nil
}

// Next returns the next good signal; a *LineError for a bad line (call
// Next again to go on); io.EOF at the end (ErrEmptyFile if the file held
// no signal line at all); any other error is fatal.
func (im *Importer) Next() (ImportedSignal, error) {
	if im.format == FormatCSV {
		return im.nextCSV()
	}
	return im.nextLine()
}

func (im *Importer) nextLine() (ImportedSignal, error) {
	for {
		raw, tooLong, err := im.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) && im.seen == 0 {
				return ImportedSignal{}, fmt.Errorf("%w: no signal lines in it", ErrEmptyFile)
			}
			return ImportedSignal{}, err
		}
		im.line++
		if tooLong {
			im.seen++
			return ImportedSignal{}, &LineError{im.line, fmt.Errorf("%w: the line is longer than %d bytes", ErrSignalTooLong, im.opt.MaxLineBytes)}
		}
		line := strings.TrimSpace(string(raw))
		if line == "" {
			continue
		}
		im.seen++
		t, value := im.opt.SignalType, line
		if t == "" {
			ts, v, ok := strings.Cut(line, " ")
			if !ok {
				return ImportedSignal{}, &LineError{im.line, fmt.Errorf("%w: %s has no signal after its type (want \"<signal_type> <signal>\", or give the file's signal type)", ErrMalformedSignal, quote(line))}
			}
			pt, err := ParseSignalType(ts)
			if err != nil {
				return ImportedSignal{}, &LineError{im.line, err}
			}
			t, value = pt, v
		}
		return im.signal(im.line, t, value, nil, "")
	}
}

// readLine returns the next line without its end; tooLong when it was
// longer than MaxLineBytes (its bytes are skipped).
func (im *Importer) readLine() ([]byte, bool, error) {
	im.long = im.long[:0]
	tooLong := false
	for {
		chunk, err := im.br.ReadSlice('\n')
		if !tooLong {
			if len(im.long)+len(chunk) > im.opt.MaxLineBytes+2 {
				tooLong = true
				im.long = im.long[:0]
			} else {
				im.long = append(im.long, chunk...)
			}
		}
		switch {
		case err == nil:
			return im.long, tooLong, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(im.long) == 0 && !tooLong {
				return nil, false, io.EOF
			}
			return im.long, tooLong, nil
		default:
			return nil, false, err
		}
	}
}

func (im *Importer) nextCSV() (ImportedSignal, error) {
	for {
		rec, err := im.csv.Read()
		if err != nil {
			var pe *csv.ParseError
			switch {
			case errors.Is(err, io.EOF):
				if im.seen == 0 {
					return ImportedSignal{}, fmt.Errorf("%w: a CSV header and no rows", ErrEmptyFile)
				}
				return ImportedSignal{}, io.EOF
			case errors.As(err, &pe):
				im.seen++
				return ImportedSignal{}, &LineError{pe.StartLine, fmt.Errorf("%w: CSV: %v", ErrMalformedSignal, pe.Err)}
			}
			return ImportedSignal{}, err
		}
		line, _ := im.csv.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		im.seen++
		if len(rec) <= im.cSignal || (im.cType >= 0 && len(rec) <= im.cType) {
			return ImportedSignal{}, &LineError{line, fmt.Errorf("%w: %d fields, the header has %d", ErrMalformedSignal, len(rec), im.ncols)}
		}
		t := im.opt.SignalType
		if im.cType >= 0 && strings.TrimSpace(rec[im.cType]) != "" {
			pt, err := ParseSignalType(rec[im.cType])
			if err != nil {
				return ImportedSignal{}, &LineError{line, err}
			}
			t = pt
		}
		if t == "" {
			return ImportedSignal{}, &LineError{line, fmt.Errorf("%w: no signal_type (give the file's signal type for rows without one)", ErrUnknownSignalType)}
		}
		var tags []string
		if im.cTags >= 0 && im.cTags < len(rec) {
			tags = strings.Fields(rec[im.cTags])
		}
		note := ""
		if im.cNote >= 0 && im.cNote < len(rec) {
			note = rec[im.cNote]
		}
		return im.signal(line, t, rec[im.cSignal], tags, note)
	}
}

// signal validates one signal of line.
func (im *Importer) signal(line int, t SignalType, value string, tags []string, note string) (ImportedSignal, error) {
	if t == SignalEmbedding {
		return ImportedSignal{}, &LineError{line, fmt.Errorf("%w: embeddings cannot be imported from a file: they need a vector", ErrUnknownSignalType)}
	}
	if strings.IndexByte(value, 0) >= 0 {
		return ImportedSignal{}, &LineError{line, fmt.Errorf("%w: a NUL byte in the signal", ErrMalformedSignal)}
	}
	v, err := Canonical(t, value)
	if err != nil {
		return ImportedSignal{}, &LineError{line, err}
	}
	// Tags and note are checked as Entry.Normalize checks them, so that a
	// good line makes a good entry.
	e := Entry{Type: t, Value: v, Tags: tags, Note: note, AddedAt: time.Unix(1, 0)}
	if err := e.Normalize(); err != nil {
		return ImportedSignal{}, &LineError{line, err}
	}
	return ImportedSignal{Line: line, Type: t, Value: v, Tags: e.Tags, Note: note}, nil
}

// ExportStats count what an export wrote.
type ExportStats struct {
	Written int
	// Skipped counts embedding entries: neither format can hold a vector.
	Skipped int
}

// Exporter writes entries in a lines or CSV file that an Importer (and
// python-threatexchange, for lines) reads back: signal types are written
// with their python-threatexchange names (pdq, video_md5, raw_text, url).
type Exporter struct {
	format Format
	bw     *bufio.Writer
	csv    *csv.Writer
	Stats  ExportStats
}

// NewExporter starts an export to w (writing the CSV header).
func NewExporter(w io.Writer, f Format) (*Exporter, error) {
	x := &Exporter{format: f, bw: bufio.NewWriterSize(w, 64<<10)}
	switch f {
	case FormatLines:
	case FormatCSV:
		x.csv = csv.NewWriter(x.bw)
		if err := x.csv.Write([]string{"signal", "signal_type", "tags", "note"}); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("unknown export format %s (want lines or csv)", quote(string(f)))
	}
	return x, nil
}

// Write writes one entry (embedding entries are counted and skipped).
func (x *Exporter) Write(e Entry) error {
	name := e.Type.ExchangeName()
	if name == "" {
		x.Stats.Skipped++
		return nil
	}
	var err error
	if x.csv != nil {
		err = x.csv.Write([]string{e.Value, name, strings.Join(e.Tags, " "), e.Note})
	} else {
		if strings.ContainsAny(e.Value, "\r\n") {
			return fmt.Errorf("%w: entry %s: a signal with a line break cannot be written one a line", ErrMalformedSignal, e.ID)
		}
		_, err = fmt.Fprintf(x.bw, "%s %s\n", name, e.Value)
	}
	if err != nil {
		return err
	}
	x.Stats.Written++
	return nil
}

// Close flushes the export.
func (x *Exporter) Close() error {
	if x.csv != nil {
		x.csv.Flush()
		if err := x.csv.Error(); err != nil {
			return err
		}
	}
	return x.bw.Flush()
}

// Export writes every entry of a bank to x, page by page (see Entries),
// in slot order.
func (s *State) Export(bank string, x *Exporter) error {
	cursor := 0
	for {
		page, next, err := s.Entries(bank, cursor, 4096)
		if err != nil {
			return err
		}
		for _, e := range page {
			if err := x.Write(e); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// knownFormats lists the formats (for messages and flags).
var knownFormats = []Format{FormatLines, FormatCSV}

// ParseFormat reads a format name.
func ParseFormat(s string) (Format, error) {
	f := Format(strings.ToLower(strings.TrimSpace(s)))
	if slices.Contains(knownFormats, f) {
		return f, nil
	}
	return "", fmt.Errorf("unknown format %s (want lines or csv)", quote(s))
}
