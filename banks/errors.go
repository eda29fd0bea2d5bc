package banks

import (
	"errors"
	"fmt"
)

// The kinds of error the package returns, matched with errors.Is. Each is
// wrapped with the detail that names the problem, for example
// fmt.Errorf("%w: pdq hash %q has 63 hex characters, want 64", ErrMalformedSignal, s).
var (
	// ErrInvalidName: a bank name that is not a subject-safe token.
	ErrInvalidName = errors.New("invalid bank name")
	// ErrInvalidBank: a bank configuration out of range (action, labels,
	// thresholds).
	ErrInvalidBank = errors.New("invalid bank")
	// ErrThresholdBelowNoise: an embedding threshold below the similarity
	// that unrelated pairs reach under the current model (its calibration).
	ErrThresholdBelowNoise = errors.New("threshold below the noise floor")
	// ErrBankExists: creating a bank whose name is taken.
	ErrBankExists = errors.New("bank already exists")
	// ErrBankNotFound: a bank that does not exist.
	ErrBankNotFound = errors.New("bank not found")
	// ErrUnknownSignalType: a signal type that is not pdq, md5, text, url or
	// embedding (nor one of their python-threatexchange names).
	ErrUnknownSignalType = errors.New("unknown signal type")
	// ErrMalformedSignal: a signal that is not of its type's form
	// (malformed or wrong-length hex, a URL without a host, an empty text).
	ErrMalformedSignal = errors.New("malformed signal")
	// ErrSignalTooLong: a signal longer than its type allows.
	ErrSignalTooLong = errors.New("signal too long")
	// ErrInvalidEntry: an entry field out of range (tags, note, vector,
	// model version, id).
	ErrInvalidEntry = errors.New("invalid entry")
	// ErrInvalidOp: an operation that is malformed in itself.
	ErrInvalidOp = errors.New("invalid operation")
	// ErrNoSignal: a lookup with nothing to match.
	ErrNoSignal = errors.New("no signal to match")
	// ErrInvalidQuery: a lookup with a malformed part.
	ErrInvalidQuery = errors.New("invalid query")
	// ErrEmptyFile, ErrBinaryFile, ErrMissingColumn: an import file that
	// cannot be read at all.
	ErrEmptyFile     = errors.New("empty import file")
	ErrBinaryFile    = errors.New("binary import file")
	ErrMissingColumn = errors.New("missing CSV column")
	// ErrSnapshot: a snapshot that cannot be decoded (truncated, corrupt,
	// of an unknown version).
	ErrSnapshot = errors.New("bad snapshot")
)

// LineError is a bad line of an import: its 1-based line number and why.
// The import goes on after it.
type LineError struct {
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// quote names a value in an error message, keeping huge inputs readable.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		return fmt.Sprintf("%q... (%d bytes)", s[:max], len(s))
	}
	return fmt.Sprintf("%q", s)
}
