package encoders

import "testing"

// checkExportTexts is filled in when the tokenizer lands.
func checkExportTexts(t *testing.T, m *Model, g *goldens) {}
