// Package banks holds moderation banks: named lists of known content (PDQ
// hashes, file MD5s, texts, URLs, and embeddings of exemplar images and
// written concepts) that lookups and the ingest stream are matched against
// (docs/moderation.md).
//
// The package is storage-agnostic. A State is the banks in memory with
// their match indexes; it changes only through operations (Op: create,
// update or delete a bank; add, remove or flag entries) applied by
// State.Apply, deterministically and atomically, so that every process
// applying the same log of operations in the same order holds the same
// banks. WriteSnapshot and ReadSnapshot save and load a whole state; a
// process loads the latest snapshot and applies the operations logged
// after it. Persisting the snapshot and the log (NATS JetStream), following
// it live and serving the API are the callers' part.
//
// One function normalises each kind of signal (Canonical: NormalizeText,
// NormalizeURL, lower-case hex), at add and at match alike. Entry ids are
// derived from the signal (EntryID), so adding a signal again replaces its
// entry and imports are idempotent. Importer and Exporter read and write
// the local-file format of Meta's python-threatexchange and a CSV form.
//
// Errors wrap the kinds declared in errors.go; match them with errors.Is.
package banks
