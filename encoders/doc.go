// Package encoders loads dual-tower (CLIP-style) image and text encoders
// exported to ONNX and runs them with ONNX Runtime through
// github.com/yalue/onnxruntime_go.
//
// # Model directory
//
// A model directory holds model.json (see [Manifest]) naming the image and
// text ONNX files, their tensor names, the image preprocessing, the
// tokenizer and the embedding dimension; or, without model.json, the
// two-file layout of transformers.js exports (vision_model.onnx +
// text_model.onnx, at the top or under onnx/), with defaults inferred:
// pixel_values → image_embeds, input_ids [+ attention_mask] → text_embeds,
// CLIP preprocessing (or preprocessor_config.json when present), the CLIP
// BPE tokenizer with context 77, and the dimension read from the graphs.
// [Load] validates all of it against the graphs and reports each mismatch
// with the names it found.
//
// # ONNX Runtime
//
// The shared library is found in this order: [Options].LibPath,
// $XMODAL_ORT_LIB, <ancestor of the working directory or executable>/
// .cache/ort/<version>/libonnxruntime.so (newest version; written by
// scripts/ort-setup.sh), then the executable's directory. onnxruntime_go
// keeps one ORT environment per process; it is initialised once, on the
// first Load, and shared by every Model (the only package-level state).
// Execution providers: "cpu" (default), "cuda" and "tensorrt"; a provider
// the library lacks fails Load with [ErrProviderUnavailable].
//
// # Concurrency
//
// A [Model] is safe for concurrent use: ORT sessions allow concurrent Run
// calls, and every Embed call builds its own tensors. Each call runs one
// batch as given; batching and bounding concurrency are the caller's job
// (package workers). A context that ends stops a running batch through
// ORT's terminate flag. Outputs are always L2-normalised.
package encoders
