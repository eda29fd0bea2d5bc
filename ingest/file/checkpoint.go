package file

import (
	"time"
)

// Checkpoint records how far a backfill got. Lines are counted from 1; a position
// (File, Line) means "every line of File up to Line is done".
type Checkpoint struct {
	V        int      `json:"v"`
	From     string   `json:"from"`
	To       string   `json:"to"`
	Done     []string `json:"done,omitempty"` // files completed
	File     string   `json:"file,omitempty"` // the file in progress
	Line     int64    `json:"line"`           // its lines completed
	Offset   int64    `json:"offset"`         // its bytes completed
	Lines    int64    `json:"lines"`          // non-blank lines completed in all
	Complete bool     `json:"complete,omitempty"`
	// Tries are the stretches that earlier runs handed to the pipeline beyond the
	// checkpoint and never completed (a crash): a line's attempt is 1 + the tries
	// that hold it, so a post that kills the process is dead-lettered as poison
	// after ingest.max_attempts runs instead of stopping every rerun.
	Tries   []Span    `json:"tries,omitempty"`
	Updated time.Time `json:"updated"`
}

// Pos is a line of one file of the input.
type Pos struct {
	File string `json:"file"`
	Line int64  `json:"line"`
}

// Span is a stretch of lines of one file.
type Span struct {
	From Pos `json:"from"`
	To   Pos `json:"to"`
}

func (s Span) holds(p Pos) bool {
	return p.File == s.From.File && s.From.Line <= p.Line && p.Line <= s.To.Line
}
