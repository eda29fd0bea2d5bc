// Package eval scores a model the way the cross-modal retrieval literature
// does (docs/eval.md): it loads a paired image-text corpus (a directory made
// by `xmodal gen`, eval/synth, or Flickr30K/COCO-style captions files), embeds
// it through any Embedder (an *encoders.Model; or reads precomputed
// embeddings from .npy files, eval/npy), and reports R@1/5/10 for both
// directions (strict: the paired item; semantic: any item sharing a label),
// MAP@K and MAP@ALL with label relevance, and the binary-code plans (hash,
// hybrid) against exact cosine: the hybrid runs search a gallery loaded into
// the embedded index (sink/embedded), so that they measure the product's own
// plans. Queries come from the test split, the gallery from a separate one.
package eval
