package encoders_test

import (
	"context"
	"fmt"
	"image"
	"log"
	"log/slog"
	"os"

	"github.com/xmodal/xmodal/encoders"
	"github.com/xmodal/xmodal/encoders/imageprep"
)

// Load a model directory (model.json, or a transformers.js export such as
// Xenova/clip-vit-base-patch32) and embed a photo and a caption into the
// same space.
func ExampleLoad() {
	m, err := encoders.Load("../testdata/models/parity", encoders.Options{
		IntraOpThreads: 1,
		Logger:         slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err) // e.g. "onnxruntime library not found: run scripts/ort-setup.sh or set XMODAL_ORT_LIB"
	}
	defer m.Close()

	data, err := os.ReadFile("../testdata/pdq/images/misc/small.jpg")
	if err != nil {
		log.Fatal(err)
	}
	img, _, err := imageprep.Decode(data, imageprep.DefaultLimits())
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	iv, err := m.EmbedImages(ctx, []image.Image{img})
	if err != nil {
		log.Fatal(err)
	}
	tv, err := m.EmbedTexts(ctx, []string{"a photo of a bridge"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.Version(), m.Dim(), len(iv[0]), len(tv[0]))
	// Output: xmodal-parity@1 64 64 64
}
