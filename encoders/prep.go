package encoders

// prep holds what turns raw inputs into tensors (temporary until imageprep
// and tokenizer land).
type prep struct{}

func newPrep(dir string, man Manifest) (*prep, error) { return &prep{}, nil }
