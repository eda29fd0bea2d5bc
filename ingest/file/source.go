package file

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xmodal/xmodal/ingest"
	"github.com/xmodal/xmodal/ingest/postfile"
	"github.com/xmodal/xmodal/internal/atomicfile"
)

// Source reads the input's lines as messages (ingest.Source). A message's ack
// marks its line done; the checkpoint advances over the longest prefix of done
// lines and is saved on each Fetch (so with the previous batch's acks) and at the
// end.
type Source struct {
	in      *Input
	cpPath  string
	maxLine int

	mu    sync.Mutex
	cp    Checkpoint
	queue []*lineRef // handed out, in input order; popped when done
	cur   []Span     // what this run handed out, one span per file
	prior []Span     // earlier runs' tries beyond the checkpoint

	// reading
	fi      int // index in in.files of the open file
	f       *os.File
	br      *bufio.Reader
	line    int64 // lines read from the open file
	off     int64 // bytes read from the open file
	eof     bool  // every file read
	pending []*ingest.Message
	// SignalEnd: Fetch returns ingest.ErrExhausted at the end (for a
	// pipeline's Run), rather than no messages.
	SignalEnd bool

	doneBytes atomic.Int64 // bytes of the input completed (for progress)
	doneLines atomic.Int64 // lines completed by this run
	total     int64

	// DeadLetter receives the lines refused here (an image_file that cannot
	// be read; with KeyedOnly, a line without a valid post id); nil passes
	// them on as they are, for the indexer to dead-letter. Set it, and
	// KeyedOnly, before the first Fetch.
	DeadLetter ingest.DeadLetter
	KeyedOnly  bool
	rejected   atomic.Int64
	fetched    atomic.Bool // a Fetch handed something out or refused a line
}

type lineRef struct {
	p     Pos
	end   int64 // offset after the line
	last  bool  // the file's end marker: done when reached, marks the file done
	blank bool  // an empty line: nothing to send
	done  bool
}

// Open opens a source of in's lines for a backfill to target, resuming from
// the checkpoint at cpPath unless restart; a line over maxLine bytes (the
// largest message the target takes) stops Fetch with an error naming it.
func Open(in *Input, cpPath, target string, restart bool, maxLine int) (*Source, error) {
	s := &Source{in: in, cpPath: cpPath, maxLine: maxLine, fi: -1}
	for _, n := range in.files {
		s.total += in.sizes[n]
	}
	s.cp = Checkpoint{V: 1, From: in.Root(), To: target}
	if b, err := os.ReadFile(cpPath); err == nil && !restart {
		var cp Checkpoint
		if err := json.Unmarshal(b, &cp); err != nil {
			return nil, fmt.Errorf("ingest: checkpoint %s: %w (--restart ignores it)", cpPath, err)
		}
		if cp.V != 1 {
			return nil, fmt.Errorf("ingest: checkpoint %s has version %d; this build reads 1 (--restart ignores it)", cpPath, cp.V)
		}
		if cp.From != in.Root() || cp.To != target {
			return nil, fmt.Errorf("ingest: checkpoint %s belongs to a backfill of %s to %s, not of %s to %s (use --checkpoint or --restart)",
				cpPath, cp.From, cp.To, in.Root(), target)
		}
		s.cp = cp
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("ingest: checkpoint: %w", err)
	}
	s.prior = s.prune(s.cp.Tries)
	done := map[string]bool{}
	var doneBytes int64
	for _, n := range s.cp.Done {
		done[n] = true
		doneBytes += in.sizes[n]
	}
	// Keep the files still to read; the one in progress first, at its offset.
	var rest []string
	for _, n := range in.files {
		if !done[n] && n != s.cp.File {
			rest = append(rest, n)
		}
	}
	if s.cp.File != "" && slices.Contains(in.files, s.cp.File) {
		rest = append([]string{s.cp.File}, rest...)
	}
	in.files = rest
	if s.cp.Complete && len(rest) > 0 {
		s.cp.Complete = false // files were added to the directory since
	}
	if s.cp.File != "" {
		size, ok := in.sizes[s.cp.File]
		if !ok {
			return nil, fmt.Errorf("ingest: checkpoint %s is in %s, which is no longer in %s (--restart to start over)", cpPath, s.cp.File, in.Root())
		}
		if size < s.cp.Offset {
			return nil, fmt.Errorf("ingest: %s is %d bytes, shorter than the checkpoint's %d: it changed since (--restart to start over)",
				in.path(s.cp.File), size, s.cp.Offset)
		}
		doneBytes += s.cp.Offset
	}
	s.doneBytes.Store(doneBytes)
	return s, nil
}

// prune drops the tries that end before the checkpoint.
func (s *Source) prune(tries []Span) []Span {
	var out []Span
	for _, t := range tries {
		if !s.isDone(t.To) {
			out = append(out, t)
		}
	}
	return out
}

// isDone reports whether the line at p is completed by the checkpoint.
func (s *Source) isDone(p Pos) bool {
	if slices.Contains(s.cp.Done, p.File) {
		return true
	}
	return p.File == s.cp.File && p.Line <= s.cp.Line
}

func (s *Source) attempt(p Pos) int {
	n := 1
	for _, t := range s.prior {
		if t.holds(p) {
			n++
		}
	}
	return n
}

func (s *Source) closeFile() {
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// nextFile opens the next file, at the checkpoint's offset when it is the one in progress.
func (s *Source) nextFile() error {
	s.closeFile()
	s.fi++
	if s.fi >= len(s.in.files) {
		s.eof = true
		return nil
	}
	name := s.in.files[s.fi]
	f, err := os.Open(s.in.path(name))
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	s.f, s.line, s.off = f, 0, 0
	if name == s.cp.File && s.cp.Offset > 0 {
		if _, err := f.Seek(s.cp.Offset, io.SeekStart); err != nil {
			return fmt.Errorf("ingest: %s: %w", name, err)
		}
		s.line, s.off = s.cp.Line, s.cp.Offset
	}
	s.br = bufio.NewReaderSize(f, 256<<10)
	return nil
}

// readLine returns the next line of the open file without its end of line, or
// io.EOF. A line over maxLine bytes is an error naming it.
func (s *Source) readLine() ([]byte, error) {
	var buf []byte
	tooLong := func() error {
		return fmt.Errorf("ingest: %s line %d is over %d bytes (the largest message the target takes); shrink it (an image URL instead of inline data) or remove it",
			s.in.path(s.in.files[s.fi]), s.line, s.maxLine)
	}
	for {
		chunk, err := s.br.ReadSlice('\n')
		s.off += int64(len(chunk))
		if len(buf)+len(chunk) > s.maxLine+2 { // the line and its end of line
			s.line++
			return nil, tooLong()
		}
		buf = append(buf, chunk...)
		switch {
		case err == nil, errors.Is(err, io.EOF) && len(buf) > 0:
			s.line++
			buf = bytes.TrimRight(buf, "\r\n")
			if len(buf) > s.maxLine {
				return nil, tooLong()
			}
			return buf, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			return nil, io.EOF
		default:
			return nil, fmt.Errorf("ingest: %s: %w", s.in.path(s.in.files[s.fi]), err)
		}
	}
}

// Fetch returns up to n messages (the lines after those handed out) without
// waiting; none when the input is exhausted. It first saves the checkpoint with
// the acks received so far and the lines about to be handed out.
func (s *Source) Fetch(ctx context.Context, n int, _ time.Duration) ([]*ingest.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n = max(n, 1)
	out := s.pending
	s.pending = nil
	var refs []*lineRef
	for len(out) < n && !s.eof {
		if s.f == nil {
			if err := s.nextFile(); err != nil {
				return nil, err
			}
			continue
		}
		b, err := s.readLine()
		if errors.Is(err, io.EOF) {
			refs = append(refs, &lineRef{p: Pos{s.in.files[s.fi], s.line}, end: s.off, last: true, done: true})
			s.closeFile()
			continue
		}
		if err != nil {
			return nil, err
		}
		p := Pos{s.in.files[s.fi], s.line}
		if len(bytes.TrimSpace(b)) == 0 {
			refs = append(refs, &lineRef{p: p, end: s.off, blank: true, done: true})
			continue
		}
		ref := &lineRef{p: p, end: s.off}
		m, rej := s.message(b, ref)
		if rej != nil {
			// Refused here: dead-lettered with the reason before the line
			// counts as done (a crash before the checkpoint repeats the dead
			// letter, which the stream deduplicates by origin and stage).
			if err := s.DeadLetter.Send(ctx, m, rej.stage, rej.reason); err != nil {
				return nil, fmt.Errorf("ingest: %s line %d: dead letter: %w", s.in.path(p.File), p.Line, err)
			}
			ref.done = true
			s.doneLines.Add(1)
			s.rejected.Add(1)
		} else {
			out = append(out, m)
		}
		refs = append(refs, ref)
		s.fetched.Store(true)
	}
	s.mu.Lock()
	s.queue = append(s.queue, refs...)
	for _, r := range refs {
		if r.last || r.blank {
			continue
		}
		if n := len(s.cur); n > 0 && s.cur[n-1].To.File == r.p.File {
			s.cur[n-1].To = r.p
		} else {
			s.cur = append(s.cur, Span{r.p, r.p})
		}
	}
	s.advance()
	err := s.saveLocked()
	s.mu.Unlock()
	if err != nil {
		s.pending = out // nothing is handed out before the tries are durable
		return nil, fmt.Errorf("ingest: saving the checkpoint %s: %w", s.cpPath, err)
	}
	if len(out) == 0 && s.SignalEnd && s.Exhausted() {
		return nil, ingest.ErrExhausted
	}
	return out, nil
}

// refusal is why a line is dead-lettered here rather than sent.
type refusal struct {
	stage  ingest.Stage
	reason string
}

// message wraps one line, resolved as a post file line (postfile.Resolve:
// image_file read from disk and sent inline; {"id":"X","delete":true} is a
// tombstone for X). A line that cannot be sent comes back with its refusal
// when a dead-letter destination is set; otherwise it is sent as it is (with
// the id the line has, if any) and the indexer dead-letters it.
func (s *Source) message(line []byte, ref *lineRef) (*ingest.Message, *refusal) {
	path := s.in.path(ref.p.File)
	pm, err := postfile.Resolve(line, filepath.Dir(path))
	var key string
	var value []byte
	var rej *refusal
	switch {
	case err == nil:
		key, value = pm.Key, pm.Value
		if len(value) > s.maxLine {
			rej = &refusal{ingest.StageDecode, fmt.Sprintf("the post is %d bytes with its image inline, over the %d bytes the target takes (serve the image and give image.url)", len(value), s.maxLine)}
		}
	case errors.Is(err, postfile.ErrNoID) && !s.KeyedOnly, s.DeadLetter == nil:
		var del bool
		key, del = LineKey(line)
		value = append([]byte(nil), line...)
		if del {
			value = nil
		}
	default:
		var pe *postfile.Error
		stage := ingest.StageDecode
		if errors.As(err, &pe) && pe.Field == postfile.FieldImageFile {
			stage = ingest.StageFile
		}
		key, _ = LineKey(line)
		if ingest.ValidID(key) != "" {
			key = ""
		}
		value = append([]byte(nil), line...)
		rej = &refusal{stage, err.Error()}
	}
	if rej != nil {
		value = append([]byte(nil), line...) // the dead letter keeps the line as written
	}
	m := ingest.NewMessage(key, value, func(context.Context) error {
		s.mu.Lock()
		if !ref.done {
			ref.done = true
			s.doneLines.Add(1)
		}
		s.mu.Unlock()
		return nil
	})
	m.NoKey = key == "" // a line without a post id has no key at all (a dead letter's stays null)
	m.Origin = fmt.Sprintf("file %s line %d", path, ref.p.Line)
	m.Attempt = s.attempt(ref.p)
	m.Headers = map[string]string{"Xmodal-Source-File": path, "Xmodal-Source-Line": fmt.Sprint(ref.p.Line)}
	return m, rej
}

// LineKey reads a line's post id (its key; "" when the line has none that can
// be read) and whether it is a tombstone ({"id":"X","delete":true}).
func LineKey(line []byte) (key string, tombstone bool) {
	var head struct {
		ID     any  `json:"id"`
		Delete bool `json:"delete"`
	}
	if json.Unmarshal(line, &head) != nil {
		return "", false
	}
	key, _ = head.ID.(string)
	return key, head.Delete && key != ""
}

// advance pops the done prefix of the queue into the checkpoint. Callers hold mu.
func (s *Source) advance() {
	i := 0
	for ; i < len(s.queue) && s.queue[i].done; i++ {
		r := s.queue[i]
		if r.last {
			if !slices.Contains(s.cp.Done, r.p.File) {
				s.cp.Done = append(s.cp.Done, r.p.File)
			}
			s.cp.File, s.cp.Line, s.cp.Offset = "", 0, 0
		} else {
			s.cp.File, s.cp.Line, s.cp.Offset = r.p.File, r.p.Line, r.end
		}
	}
	for _, r := range s.queue[:i] {
		if !r.last && !r.blank {
			s.cp.Lines++
		}
	}
	s.queue = s.queue[i:]
	var doneBytes int64
	for _, n := range s.cp.Done {
		doneBytes += s.in.sizes[n]
	}
	s.doneBytes.Store(doneBytes + s.cp.Offset)
}

// saveLocked writes the checkpoint; callers hold mu.
func (s *Source) saveLocked() error {
	tries := s.prune(s.prior)
	for _, t := range s.cur {
		if s.isDone(t.To) {
			continue
		}
		if s.isDone(t.From) { // start the span after the checkpoint
			t.From.Line = s.cp.Line + 1
		}
		tries = append(tries, t)
	}
	s.cp.Tries = tries
	s.cp.Updated = time.Now().UTC()
	b, err := json.MarshalIndent(&s.cp, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(s.cpPath, func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
}

// Save saves the checkpoint with the acks received so far.
func (s *Source) Save() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance()
	return s.saveLocked()
}

// Finish marks the backfill complete when every line is done, and saves the checkpoint.
func (s *Source) Finish() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advance()
	if s.eof && len(s.queue) == 0 && len(s.pending) == 0 {
		s.cp.Complete = true
		s.prior, s.cur = nil, nil
	}
	return s.saveLocked()
}

// HandedOut reports whether this run sent or refused any line (else it
// leaves no checkpoint behind when it fails).
func (s *Source) HandedOut() bool { return s.fetched.Load() }

// Exhausted reports whether every line was handed out.
func (s *Source) Exhausted() bool { return s.eof && len(s.pending) == 0 }

// Requeue hands msgs out again on the next Fetch (a target that could not
// send them keeps them, in order, for a retry or for the checkpoint).
func (s *Source) Requeue(msgs []*ingest.Message) { s.pending = msgs }

// Close closes the open file.
func (s *Source) Close() { s.closeFile() }

// Checkpoint returns the checkpoint as it stands.
func (s *Source) Checkpoint() Checkpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cp
}

// Rejected counts the lines refused here and dead-lettered.
func (s *Source) Rejected() int64 { return s.rejected.Load() }

// DoneLines counts the lines this run completed (acknowledged or refused).
func (s *Source) DoneLines() int64 { return s.doneLines.Load() }

// DoneBytes is how many bytes of the input are completed, earlier runs' included.
func (s *Source) DoneBytes() int64 { return s.doneBytes.Load() }

// Total is the input's size in bytes.
func (s *Source) Total() int64 { return s.total }

var _ ingest.Source = (*Source)(nil)
