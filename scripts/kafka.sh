#!/usr/bin/env bash
# scripts/kafka.sh start|stop|status|env — a single-node Apache Kafka 4.x broker
# (KRaft, combined broker+controller) for tests and CI, run from Maven Central jars.
#
# Needs: java >= 17, mvn, and Maven Central (only on the first start of a version).
# Everything lives under .cache/kafka/ (ignored by git):
#   .cache/kafka/<version>/libs/        the broker's jars (resolved once with mvn)
#   .cache/kafka/data-<port>/           server.properties, logs/ (KRaft + topic data),
#                                        kafka.pid, kafka.log
#
# Listeners (all on 127.0.0.1):
#   PLAINTEXT      $KAFKA_PORT            (default 19092)
#   SASL_PLAINTEXT $KAFKA_SASL_PORT       (default 19093) mechanisms PLAIN, SCRAM-SHA-256,
#                                          SCRAM-SHA-512; user $KAFKA_SASL_USER /
#                                          $KAFKA_SASL_PASSWORD (xmodal / xmodal-secret)
#   CONTROLLER     $KAFKA_CONTROLLER_PORT (default 19094)
#
# Environment (all optional):
#   KAFKA_VERSION       default 4.4.0 (any 4.x on Maven Central)
#   KAFKA_PORT, KAFKA_SASL_PORT, KAFKA_CONTROLLER_PORT
#   KAFKA_CACHE         default <repo>/.cache/kafka
#   KAFKA_DATA          default $KAFKA_CACHE/data-$KAFKA_PORT (keep it to restart on the same data)
#   KAFKA_HEAP_OPTS     default "-Xms128m -Xmx512m"
#   KAFKA_START_TIMEOUT seconds to wait for the broker, default 120
#   KAFKA_PARTITIONS    num.partitions for auto-created topics, default 6
#
# start is idempotent (a running broker on the same data dir is left alone); stop kills
# the broker (TERM, then KILL after 30 s); status exits 0 when running; env prints the
# resolved settings as shell assignments; bin writes Kafka's command-line tools
# (kafka-topics.sh, kafka-console-producer.sh, kafka-console-consumer.sh,
# kafka-consumer-groups.sh, kafka-get-offsets.sh, kafka-configs.sh), run from the same
# Maven artifacts, into .cache/kafka/<version>/bin and prints that folder:
#   PATH=$(scripts/kafka.sh bin):$PATH kafka-topics.sh --bootstrap-server 127.0.0.1:19092 --list
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KAFKA_VERSION=${KAFKA_VERSION:-4.4.0}
KAFKA_PORT=${KAFKA_PORT:-19092}
KAFKA_SASL_PORT=${KAFKA_SASL_PORT:-19093}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-19094}
KAFKA_CACHE=${KAFKA_CACHE:-$ROOT/.cache/kafka}
KAFKA_DATA=${KAFKA_DATA:-$KAFKA_CACHE/data-$KAFKA_PORT}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-120}
KAFKA_PARTITIONS=${KAFKA_PARTITIONS:-6}
KAFKA_SASL_USER=${KAFKA_SASL_USER:-xmodal}
KAFKA_SASL_PASSWORD=${KAFKA_SASL_PASSWORD:-xmodal-secret}

LIBS=$KAFKA_CACHE/$KAFKA_VERSION/libs
PIDFILE=$KAFKA_DATA/kafka.pid
LOG=$KAFKA_DATA/kafka.log
CONF=$KAFKA_DATA/server.properties

say() { echo "kafka.sh: $*" >&2; }
die() { say "$*"; exit 1; }

need() {
	command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"
}

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

running_pid() {
	[[ -f $PIDFILE ]] || return 1
	local pid
	pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
	# Guard against a recycled pid: it must be our java with our config.
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$CONF" || return 1
	echo "$pid"
}

resolve() {
	# A cache resolved before the tools were added lacks their jar: resolve again.
	if [[ -f $LIBS/.complete && -f $LIBS/kafka-tools-$KAFKA_VERSION.jar ]]; then
		return 0
	fi
	need mvn "install Maven (Debian: apt-get install maven) to resolve the Kafka jars"
	mkdir -p "$KAFKA_CACHE"
	local work=$KAFKA_CACHE/$KAFKA_VERSION/resolve
	mkdir -p "$work"
	cat >"$work/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>xmodal.local</groupId>
  <artifactId>kafka-broker-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <!-- the command-line tools (TopicCommand, console producer/consumer, groups) -->
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <!-- the distribution's logging backend, which the kafka_2.13 pom leaves out;
         slf4j-api 2 pinned, or an older 1.7 from a transitive dependency wins -->
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-api</artifactId>
      <version>2.0.17</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j2-impl</artifactId>
      <version>2.24.3</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>2.24.3</version>
    </dependency>
  </dependencies>
</project>
EOF
	say "resolving org.apache.kafka:kafka_2.13:$KAFKA_VERSION and its runtime dependencies with mvn into $LIBS"
	rm -rf "$LIBS.tmp"
	if ! mvn -B -q -f "$work/pom.xml" \
		org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$LIBS.tmp" >"$work/mvn.log" 2>&1; then
		tail -n 40 "$work/mvn.log" >&2
		die "mvn could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION (log: $work/mvn.log)"
	fi
	ls "$LIBS.tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "mvn ran but $LIBS.tmp has no kafka_2.13 jar"
	rm -rf "$LIBS"
	mv "$LIBS.tmp" "$LIBS"
	touch "$LIBS/.complete"
}

write_config() {
	mkdir -p "$KAFKA_DATA/logs"
	local jaas_plain="org.apache.kafka.common.security.plain.PlainLoginModule required username=\"$KAFKA_SASL_USER\" password=\"$KAFKA_SASL_PASSWORD\" user_$KAFKA_SASL_USER=\"$KAFKA_SASL_PASSWORD\";"
	local jaas_scram="org.apache.kafka.common.security.scram.ScramLoginModule required;"
	cat >"$CONF" <<EOF
# generated by scripts/kafka.sh — do not edit, it is rewritten on every start
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=$jaas_plain
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=$jaas_scram
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=$jaas_scram
log.dirs=$KAFKA_DATA/logs
num.partitions=$KAFKA_PARTITIONS
default.replication.factor=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=2
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# small machine: few threads, small cleaner buffer
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=8388608
log.cleaner.backoff.ms=5000
EOF
	cat >"$KAFKA_DATA/log4j2.properties" <<EOF
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
# INFO only for start/stop milestones ("Kafka Server started" is the readiness mark)
logger.raft.name = kafka.server.KafkaRaftServer
logger.raft.level = INFO
logger.broker.name = kafka.server.BrokerServer
logger.broker.level = INFO
EOF
}

java_cmd() {
	# shellcheck disable=SC2086
	java $KAFKA_HEAP_OPTS -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
		-Dlog4j2.configurationFile="$KAFKA_DATA/log4j2.properties" \
		-cp "$LIBS/*" "$@"
}

format() {
	[[ -f $KAFKA_DATA/logs/meta.properties ]] && return 0
	local cid
	cid=$(java_cmd kafka.tools.StorageTool random-uuid 2>>"$LOG" | tail -n 1)
	[[ -n $cid ]] || { tail -n 20 "$LOG" >&2; die "StorageTool random-uuid failed"; }
	say "formatting KRaft storage in $KAFKA_DATA/logs (cluster $cid)"
	if ! java_cmd kafka.tools.StorageTool format -t "$cid" -c "$CONF" \
		--add-scram "SCRAM-SHA-256=[name=$KAFKA_SASL_USER,password=$KAFKA_SASL_PASSWORD]" \
		--add-scram "SCRAM-SHA-512=[name=$KAFKA_SASL_USER,password=$KAFKA_SASL_PASSWORD]" \
		>>"$LOG" 2>&1; then
		tail -n 30 "$LOG" >&2
		die "kafka.tools.StorageTool format failed (log: $LOG)"
	fi
}

start() {
	need java "install a JDK >= 17 (Debian: apt-get install openjdk-17-jdk-headless)"
	local jv
	jv=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1)
	if [[ -n $jv && $jv -lt 17 ]]; then
		die "java $jv found; Kafka 4 needs java >= 17"
	fi
	mkdir -p "$KAFKA_DATA"
	# One start at a time per data dir (tests may race).
	exec 9>"$KAFKA_DATA/.lock"
	flock 9
	local pid
	if pid=$(running_pid); then
		say "already running (pid $pid, port $KAFKA_PORT, data $KAFKA_DATA)"
		return 0
	fi
	for p in "$KAFKA_PORT" "$KAFKA_SASL_PORT" "$KAFKA_CONTROLLER_PORT"; do
		if port_open "$p"; then
			die "port $p on 127.0.0.1 is taken by another process (not the broker of $KAFKA_DATA); set KAFKA_PORT/KAFKA_SASL_PORT/KAFKA_CONTROLLER_PORT"
		fi
	done
	(
		# Resolution is shared by every data dir of a version.
		mkdir -p "$KAFKA_CACHE"
		exec 8>"$KAFKA_CACHE/.resolve.lock"
		flock 8
		resolve
	)
	write_config
	touch "$LOG"
	format
	# Readiness is judged on what this start appends to the log.
	local from=$(($(wc -l <"$LOG") + 1))
	say "starting Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT (SASL $KAFKA_SASL_PORT, controller $KAFKA_CONTROLLER_PORT), log $LOG"
	# setsid: the broker outlives this script and is not killed with its process group.
	setsid bash -c 'exec "$@"' _ java $KAFKA_HEAP_OPTS -XX:+UseSerialGC -Djava.awt.headless=true \
		-Dlog4j2.configurationFile="$KAFKA_DATA/log4j2.properties" \
		-cp "$LIBS/*" kafka.Kafka "$CONF" >>"$LOG" 2>&1 </dev/null 9>&- &
	pid=$!
	echo "$pid" >"$PIDFILE"
	local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
	while ((SECONDS < deadline)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$PIDFILE"
			say "the broker exited during start; last lines of $LOG:"
			tail -n 40 "$LOG" >&2
			exit 1
		fi
		if port_open "$KAFKA_PORT" && tail -n +"$from" "$LOG" | grep -q "Kafka Server started"; then
			say "ready (pid $pid) after $((SECONDS - deadline + KAFKA_START_TIMEOUT)) s"
			return 0
		fi
		sleep 0.3
	done
	say "the broker did not accept connections on 127.0.0.1:$KAFKA_PORT within ${KAFKA_START_TIMEOUT}s; last lines of $LOG:"
	tail -n 40 "$LOG" >&2
	kill "$pid" 2>/dev/null || true
	rm -f "$PIDFILE"
	exit 1
}

stop() {
	local pid
	if ! pid=$(running_pid); then
		rm -f "$PIDFILE"
		say "not running (data $KAFKA_DATA)"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 1 300); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		say "pid $pid still alive after 30 s: SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		sleep 0.2
	fi
	rm -f "$PIDFILE"
	say "stopped (pid $pid)"
}

status() {
	local pid
	if pid=$(running_pid); then
		echo "running pid $pid port $KAFKA_PORT sasl $KAFKA_SASL_PORT data $KAFKA_DATA"
		return 0
	fi
	echo "not running (port $KAFKA_PORT, data $KAFKA_DATA)"
	return 1
}

# bin writes one wrapper per tool; each runs the tool's class on the broker's jars.
bin() {
	need java "install a JDK >= 17 (Debian: apt-get install openjdk-17-jdk-headless)"
	(
		mkdir -p "$KAFKA_CACHE"
		exec 8>"$KAFKA_CACHE/.resolve.lock"
		flock 8
		resolve
	)
	local dir=$KAFKA_CACHE/$KAFKA_VERSION/bin
	mkdir -p "$dir"
	local tool class
	while read -r tool class; do
		printf '%s\n' '#!/usr/bin/env bash' \
			"# generated by scripts/kafka.sh bin: Kafka $KAFKA_VERSION's $tool" \
			"exec java \${KAFKA_TOOL_HEAP_OPTS:--Xmx256m} -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp '$LIBS/*' $class \"\$@\"" \
			>"$dir/$tool"
		chmod +x "$dir/$tool"
	done <<TOOLS
kafka-topics.sh org.apache.kafka.tools.TopicCommand
kafka-console-producer.sh org.apache.kafka.tools.ConsoleProducer
kafka-console-consumer.sh org.apache.kafka.tools.consumer.ConsoleConsumer
kafka-consumer-groups.sh org.apache.kafka.tools.consumer.group.ConsumerGroupCommand
kafka-get-offsets.sh org.apache.kafka.tools.GetOffsetShell
kafka-configs.sh org.apache.kafka.tools.ConfigCommand
TOOLS
	echo "$dir"
}

case "${1:-}" in
start) start ;;
bin) bin ;;
stop) stop ;;
status) status ;;
env)
	printf 'KAFKA_VERSION=%q\nKAFKA_PORT=%q\nKAFKA_SASL_PORT=%q\nKAFKA_CONTROLLER_PORT=%q\nKAFKA_DATA=%q\nKAFKA_LOG=%q\nKAFKA_SASL_USER=%q\nKAFKA_SASL_PASSWORD=%q\n' \
		"$KAFKA_VERSION" "$KAFKA_PORT" "$KAFKA_SASL_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_DATA" "$LOG" "$KAFKA_SASL_USER" "$KAFKA_SASL_PASSWORD"
	;;
*)
	echo "usage: $0 start|stop|status|env|bin" >&2
	exit 2
	;;
esac
