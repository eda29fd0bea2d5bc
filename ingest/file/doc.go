// Package file is the local-file side of backfills (`xmodal ingest`): the
// input (a JSON Lines file, or the *.jsonl and *.ndjson files under a
// directory), a Source that hands its lines out as ingest messages and keeps a
// crash-safe checkpoint of the lines acknowledged (resumable; the lines a
// crashed run handed out count as attempts, so a post that kills the process
// ends as poison), and a dead-letter file for the backfills that write
// straight into the embedded index.
package file
