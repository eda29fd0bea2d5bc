// Package milvus is xmodal's index in Milvus, over the milvus/client/v2 SDK
// (docs/milvus.md). Each model version has collections of its own
// (<collection>_<version>: records, and in the split layout their codes, PDQ
// hashes and per-post versions) behind the alias Options.Collection; a model
// upgrade re-indexes into the new version's collections, then moves the alias
// (SwapAlias) and drops the old ones (DropModel). The deny-list collection is
// shared by every version.
//
// Writes are coalesced into rounds: a round reads the versions and deny rows
// it needs (Bounded consistency merged with the writer's own recent writes;
// Strong for a while after a Kafka assignment, Fence), applies the one
// upsert/delete/deny rule (domain.Decide), and upserts with bounded retries.
// Searches run the same plans as the embedded index (exact, ann, hash,
// hybrid, neardup) with the same tie-breaks. Calls retry with bounded
// exponential backoff on Unavailable and ResourceExhausted only; errors from
// the server are matched by their status codes (merr), never by their text.
//
// Files: options.go (Options, defaults, Validate), client.go (dialing,
// retries), schema.go (collections, indexes, schema checks), index.go (Open,
// aliases, model versions), write.go (write rounds), read.go (searches, gets).
package milvus
