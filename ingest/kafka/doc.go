// Package kafka is the Kafka source of the ingest stage: a consumer-group member
// that implements ingest.Source (Fetch) and ingest.DeadLetter (Send) with
// segmentio/kafka-go (v0.4.51, which speaks to Kafka 4).
//
// # Consuming
//
// New joins the group with kafka-go's ConsumerGroup API, so that assignments and
// revocations are seen: for each generation it starts one partition reader per
// assigned partition, at the committed offset, and the readers feed one bounded
// queue that Fetch drains. Fetch(ctx, n, wait) returns up to n messages, waiting
// up to wait for the batch to fill. Each message carries:
//
//	Key        the Kafka key (the post id)
//	Value      the Kafka value; a null value is a tombstone (Tombstone true, Value nil)
//	Headers    the Kafka headers (last value wins on repeats); nil when there are none
//	Origin     "topic T partition P offset O" (ParseOrigin reads it back)
//	Seq        offset + 1, so that 0 still means unknown; it orders the versions of
//	           one post because a key always maps to one partition (see caveats)
//	Attempt    the durable delivery count, 1 on the first (below)
//
// # Acknowledging and committing
//
// Ack is asynchronous: it marks the offset done and returns nil at once; a
// committer commits, every CommitInterval, per partition, the lowest offset not
// yet acknowledged (or one past the last handed out when all are), so nothing is
// ever committed past an unacknowledged message, whatever order acks come in.
// Flush commits now. When a generation ends (a rebalance, a lost coordinator, or
// Close) the committer commits what is safe and abandons the rest: acks that
// arrive for a revoked partition afterwards are no-ops that return nil, and the
// unacknowledged messages are redelivered to the partition's next owner. A crash
// between an ack and the next commit redelivers too; the pipeline's writes are
// idempotent, so at-least-once is enough.
//
// # Attempts (poison detection across restarts)
//
// Kafka keeps no delivery count, so the source keeps one in a compacted topic,
// AttemptsTopic (default "<group>.attempts", one partition), created by New when
// missing. It holds one record per source partition, keyed "<topic>/<partition>",
// whose value lists the spans of offsets that earlier generations handed out
// since the committed offset: {"v":1,"spans":[[from,to],...]}. Before Fetch returns
// a batch it rewrites the record of each partition in the batch with this
// generation's span extended to the batch's last offset (one produce with
// acks=all per Fetch; if it fails the batch is kept and Fetch returns the error).
// When a generation starts it reads the table, drops the spans below the
// committed offset, and a message's Attempt is 1 + the number of earlier spans
// that hold its offset. So a post that crashes the process is seen with Attempt
// 2, 3, ... by the next instances, and the pipeline dead-letters it as poison
// after its limit. (This is the "one record per partition" variant of a
// per-offset table: it writes one small record per partition per Fetch instead of
// one per message, and needs no tombstones.) As with JetStream, every message of
// a batch that never completed counts the redelivery, not only the culprit.
//
// # Dead letters
//
// Send writes the original key, value (null for a tombstone) and headers to
// DLQTopic (default "<topic>.dlq", created with the broker's defaults), adding
// Xmodal-Key, -Reason, -Stage, -Origin, -Attempt and -Failed-At (ingest's
// headers) and Xmodal-Source-Topic, -Source-Partition, -Source-Offset, with
// acks=all, and returns when the broker has it. Kafka does not deduplicate: a
// failure redelivered before its commit is dead-lettered again; readers of the
// DLQ can deduplicate on (source partition, offset, stage).
//
// # Metrics
//
// With a Registerer: xmodal_kafka_fetched_total, xmodal_kafka_committed_offset
// and xmodal_kafka_lag (per owned partition; high-water mark seen on fetch minus
// the committed offset), xmodal_kafka_commit_seconds,
// xmodal_kafka_commit_errors_total, xmodal_kafka_generations_total,
// xmodal_kafka_group_errors_total, xmodal_kafka_dead_letters_total{stage} and
// xmodal_kafka_attempts_write_seconds. Register one Source per registry.
//
// # Caveats
//
//   - Seq is an offset: it orders versions of a post only within one partition.
//     Adding partitions to the topic moves keys, and a sink that keeps the
//     highest Seq per post would then ignore a newer version with a smaller
//     offset. Do not repartition the posts topic in place (or reset the index).
//   - The principal needs, besides read on the topic and the group: write and
//     read on the DLQ and attempts topics (and create, or have them made).
//
// # Tests
//
// The tests start a real broker with scripts/kafka.sh on ports 19192-19194
// (XMODAL_TEST_KAFKA_PORT moves them) and stop it afterwards; without java and
// mvn they fail, naming the script.
package kafka
