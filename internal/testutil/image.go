package testutil

import (
	"image"
	"os"
	"testing"

	"github.com/xmodal/xmodal/encoders/pdq"
)

// DecodeImage reads and decodes an image file as the PDQ and near-duplicate
// hashers read one (pdq.Decode), failing the test on any error.
func DecodeImage(t testing.TB, path string) image.Image {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	img, _, err := pdq.Decode(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return img
}
