#!/usr/bin/env bash
# scripts/milvus.sh start|stop|kill|status|env — a real Milvus standalone server for
# tests, benchmarks and local runs, installed from PyPI.
#
# Server: the deprecated `milvus` package on PyPI (2.3.x, "Milvus Server" / embedded
# Milvus). Its wheel carries the full Milvus standalone binary (Go coordinators and
# nodes + the C++ segcore/knowhere engine) LZMA-compressed, with embedded etcd,
# RocksMQ and local-disk object storage. This script uses the package only to unpack
# the binary and render its config template; it then runs `milvus run standalone`
# itself (setsid, pid file), so that stop/kill act on the server and nothing else.
# The newest 2.3.x served for this platform is 2.3.5 (2.3.6+ are not published for
# Python 3.11/manylinux here). Needs: python3 with venv + pip, and PyPI on first start.
#
# Everything lives under .cache/milvus/ (ignored by git):
#   .cache/milvus/venv-<version>/       the venv with the `milvus` package
#   .cache/milvus/data-<port>/          bin/ (unpacked server), configs/milvus.yaml,
#                                       data/ (etcd, rocksmq, segments), logs/, milvus.pid
#
# Ports (all on 127.0.0.1; internal ones are derived so that two servers on different
# MILVUS_PORTs never collide):
#   gRPC      $MILVUS_PORT         default 19530
#   HTTP      $MILVUS_PORT + 1     /healthz and metrics (readiness is judged on /healthz)
#   internal  $MILVUS_PORT + 2..11 embedded etcd (client +2, peer +11), root/query/index/data
#                                  coordinators and nodes (the embedded etcd would otherwise
#                                  take 2379/2380 whatever the config says, and a second
#                                  server on the machine would crash on them)
#
# Environment (all optional):
#   MILVUS_VERSION        default 2.3.5 (a version of the `milvus` package on PyPI)
#   MILVUS_PORT           default 19530
#   MILVUS_CACHE          default <repo>/.cache/milvus
#   MILVUS_DATA           default $MILVUS_CACHE/data-$MILVUS_PORT (keep it to restart on the same data)
#   MILVUS_START_TIMEOUT  seconds to wait for /healthz, default 120
#   MILVUS_LOG_LEVEL      default warn (debug, info, warn, error)
#   MILVUS_CONFIG_SET     server settings over the template's: "a.b.c=value" items
#                         separated by ";" or newlines, each an existing key of
#                         configs/milvus.yaml (e.g. "dataNode.segment.insertBufSize=67108864")
#
# Server settings this script changes from the package's template (see docs/milvus.md):
#   etcd.config.path  an embed-etcd config (configs/etcd.yaml) with the derived ports
#   queryNode.segcore.interimIndex.enableIndex=false  growing segments are searched by
#       brute force, so that the exact plan is exact (the interim IVF index would probe
#       16 of 128 lists whatever the request asks)
#
# start is idempotent (a running server on the same data dir is left alone); stop sends
# TERM and waits (KILL after 30 s); kill sends SIGKILL at once (crash tests); status
# exits 0 when running; env prints the resolved settings as shell assignments.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MILVUS_VERSION=${MILVUS_VERSION:-2.3.5}
MILVUS_PORT=${MILVUS_PORT:-19530}
MILVUS_CACHE=${MILVUS_CACHE:-$ROOT/.cache/milvus}
MILVUS_DATA=${MILVUS_DATA:-$MILVUS_CACHE/data-$MILVUS_PORT}
MILVUS_START_TIMEOUT=${MILVUS_START_TIMEOUT:-120}
MILVUS_LOG_LEVEL=${MILVUS_LOG_LEVEL:-warn}
HTTP_PORT=$((MILVUS_PORT + 1))

VENV=$MILVUS_CACHE/venv-$MILVUS_VERSION
PIDFILE=$MILVUS_DATA/milvus.pid
LOG=$MILVUS_DATA/logs/milvus.out
BIN=$MILVUS_DATA/bin/milvus

say() { echo "milvus.sh: $*" >&2; }
die() {
	say "$*"
	exit 1
}

port_open() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

running_pid() {
	[[ -f $PIDFILE ]] || return 1
	local pid
	pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
	[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
	# Guard against a recycled pid: it must be the milvus binary of this data dir.
	# /proc/PID/exe is the resolved path: compare it with BIN resolved too (a
	# git worktree's .cache is often a symlink to the main checkout's).
	[[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$(readlink -f "$BIN")" ]] || return 1
	echo "$pid"
}

healthy() {
	# /healthz answers "OK" once every component is up.
	local body
	body=$(exec 3<>"/dev/tcp/127.0.0.1/$HTTP_PORT" && printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 && timeout 2 cat <&3) 2>/dev/null || return 1
	[[ $body == *OK* ]]
}

install() {
	if [[ -f $VENV/.complete ]]; then
		return 0
	fi
	command -v python3 >/dev/null 2>&1 || die "python3 not found: install Python 3 with pip (Debian: apt-get install python3-venv python3-pip)"
	local log=$MILVUS_CACHE/pip-$MILVUS_VERSION.log
	say "installing the milvus==$MILVUS_VERSION package from PyPI into $VENV"
	rm -rf "$VENV"
	if python3 -m venv "$VENV" >"$log" 2>&1; then
		"$VENV/bin/pip" install -q --disable-pip-version-check "milvus==$MILVUS_VERSION" >>"$log" 2>&1 ||
			{ tail -n 20 "$log" >&2; die "pip could not install milvus==$MILVUS_VERSION (log: $log)"; }
	else
		# No venv module (Debian without python3-venv): a plain --target install.
		say "python3 -m venv failed; installing with pip --target instead"
		rm -rf "$VENV"
		python3 -m pip install -q --disable-pip-version-check --target "$VENV/site" "milvus==$MILVUS_VERSION" >>"$log" 2>&1 ||
			{ tail -n 20 "$log" >&2; die "neither venv nor pip --target could install milvus==$MILVUS_VERSION (install python3-venv or python3-pip; log: $log)"; }
	fi
	touch "$VENV/.complete"
}

# py runs the Python that has the milvus package.
py() {
	if [[ -x $VENV/bin/python ]]; then
		"$VENV/bin/python" "$@"
	else
		PYTHONPATH=$VENV/site${PYTHONPATH:+:$PYTHONPATH} python3 "$@"
	fi
}

# prepare unpacks the server binary into $MILVUS_DATA/bin and renders
# $MILVUS_DATA/configs/milvus.yaml with the package's own template engine.
prepare() {
	mkdir -p "$MILVUS_DATA"
	MILVUS_DATA="$MILVUS_DATA" MILVUS_PORT="$MILVUS_PORT" MILVUS_LOG_LEVEL="$MILVUS_LOG_LEVEL" MILVUS_CONFIG_SET="${MILVUS_CONFIG_SET:-}" \
		py - <<'EOF' || die "could not prepare the Milvus config and binary in $MILVUS_DATA"
import os, re, sys
import milvus
data, port = os.environ["MILVUS_DATA"], int(os.environ["MILVUS_PORT"])
ports = {
    "proxy_port": port, "etcd_port": port + 2, "root_coord_port": port + 3,
    "proxy_internal_port": port + 4, "query_coord_port": port + 5, "query_node_port": port + 6,
    "index_coord_port": port + 7, "index_node_port": port + 8, "data_coord_port": port + 9,
    "data_node_port": port + 10,
}
cfg = milvus.MilvusServerConfig(data_dir=data)
for key, value in ports.items():
    cfg.configurable_items[key][1] = value
cfg.set("etcd_log_level", "warn")
# what resolve() does, less its bind test of every port (which fails on ports in
# TIME_WAIT after a restart; start checks them with a connect instead)
cfg.resolve_storage()
missing = [k for k, v in cfg.configurable_items.items() if v[1] is None]
assert not missing, f"config items not set: {missing}"
cfg.write_config()
milvus._initialize_data_files(cfg.base_data_dir)
path = os.path.join(data, "configs", "milvus.yaml")
text = open(path, encoding="utf-8").read()
# exact search over growing segments (see the header of scripts/milvus.sh)
text, n = re.subn(r"(interimIndex:[^\n]*\n\s*enableIndex:) true", r"\1 false", text)
assert n == 1, "interimIndex.enableIndex not found in the config template"
# the embedded etcd's own listeners (Milvus passes etcd.config.path to embed.ConfigFromFile)
etcd_conf = os.path.join(data, "configs", "etcd.yaml")
client, peer = f"http://127.0.0.1:{port + 2}", f"http://127.0.0.1:{port + 11}"
open(etcd_conf, "w", encoding="utf-8").write(
    f"name: default\nlisten-client-urls: {client}\nadvertise-client-urls: {client}\n"
    f"listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\n"
    f"initial-cluster: default={peer}\n")
text, n = re.subn(r"\netcd:\n", "\netcd:\n  config:\n    path: " + etcd_conf + "\n", text, count=1)
assert n == 1, "etcd section not found in the config template"
# quieter server log
text, n = re.subn(r"(\nlog:\n\s*level:) \w+", r"\1 " + os.environ["MILVUS_LOG_LEVEL"], text)
assert n == 1, "log.level not found in the config template"
# MILVUS_CONFIG_SET: "a.b.c=value" settings, one a line or separated by ";",
# each replacing the value of an existing key of the template (nesting by
# indentation; the key's comment is kept)
sets = [s.strip() for s in re.split(r"[;\n]", os.environ.get("MILVUS_CONFIG_SET", "")) if s.strip()]
if sets:
    lines = text.split("\n")
    for item in sets:
        key, _, value = item.partition("=")
        want = key.strip().split(".")
        assert value.strip() and all(want), f"MILVUS_CONFIG_SET: {item!r} is not a.b.c=value"
        stack, hit = [], None
        for i, line in enumerate(lines):
            m = re.match(r"^( *)([A-Za-z0-9_]+):(.*)$", line)
            if not m:
                continue
            depth = len(m.group(1))
            while stack and stack[-1][0] >= depth:
                stack.pop()
            stack.append((depth, m.group(2)))
            if [k for _, k in stack] == want:
                hit = i
                break
        assert hit is not None, f"MILVUS_CONFIG_SET: no key {key.strip()} in the config template"
        m = re.match(r"^( *[A-Za-z0-9_]+:)\s*([^#]*?)\s*(#.*)?$", lines[hit])
        lines[hit] = f"{m.group(1)} {value.strip()}" + (f" {m.group(3)}" if m.group(3) else "")
        print(f"milvus.sh: {key.strip()} = {value.strip()}", file=sys.stderr)
    text = "\n".join(lines)
open(path, "w", encoding="utf-8").write(text)
EOF
}

start() {
	mkdir -p "$MILVUS_DATA" "$MILVUS_CACHE"
	# One start at a time per data dir (tests may race).
	exec 9>"$MILVUS_DATA/.lock"
	flock 9
	local pid
	if pid=$(running_pid); then
		say "already running (pid $pid, port $MILVUS_PORT, data $MILVUS_DATA)"
		return 0
	fi
	for p in $(seq "$MILVUS_PORT" $((MILVUS_PORT + 11))); do
		if port_open "$p"; then
			die "port $p on 127.0.0.1 is taken by another process (not the Milvus of $MILVUS_DATA); Milvus uses MILVUS_PORT..MILVUS_PORT+11: set MILVUS_PORT"
		fi
	done
	(
		exec 8>"$MILVUS_CACHE/.install.lock"
		flock 8
		install
	)
	prepare
	mkdir -p "$MILVUS_DATA/logs" "$MILVUS_DATA/run"
	touch "$LOG"
	say "starting Milvus $MILVUS_VERSION standalone on 127.0.0.1:$MILVUS_PORT (HTTP $HTTP_PORT), data $MILVUS_DATA"
	# setsid: the server outlives this script and is not killed with its process group.
	(
		cd "$MILVUS_DATA"
		DEPLOY_MODE=STANDALONE METRICS_PORT=$HTTP_PORT MILVUS_RUN_DIR=$MILVUS_DATA/run \
			MILVUSCONF=$MILVUS_DATA/configs \
			LD_LIBRARY_PATH=$MILVUS_DATA/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
			exec setsid "$BIN" run standalone >>"$LOG" 2>&1 </dev/null 9>&-
	) &
	pid=$!
	echo "$pid" >"$PIDFILE"
	local t0=$SECONDS
	local deadline=$((SECONDS + MILVUS_START_TIMEOUT))
	while ((SECONDS < deadline)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$PIDFILE"
			say "the server exited during start; last lines of $LOG:"
			tail -n 40 "$LOG" >&2
			exit 1
		fi
		if port_open "$MILVUS_PORT" && healthy; then
			say "ready (pid $pid) after $((SECONDS - t0)) s"
			return 0
		fi
		sleep 0.3
	done
	say "Milvus did not become healthy on 127.0.0.1:$HTTP_PORT/healthz within ${MILVUS_START_TIMEOUT}s; last lines of $LOG:"
	tail -n 40 "$LOG" >&2
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$PIDFILE"
	exit 1
}

stop() {
	local sig=${1:-TERM} pid
	if ! pid=$(running_pid); then
		rm -f "$PIDFILE"
		say "not running (data $MILVUS_DATA)"
		return 0
	fi
	kill "-$sig" "$pid" 2>/dev/null || true
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
	say "stopped (pid $pid, SIG$sig)"
}

status() {
	local pid
	if pid=$(running_pid); then
		if healthy; then
			echo "running pid $pid port $MILVUS_PORT version $MILVUS_VERSION data $MILVUS_DATA"
			return 0
		fi
		echo "starting or unhealthy: pid $pid port $MILVUS_PORT data $MILVUS_DATA"
		return 1
	fi
	echo "not running (port $MILVUS_PORT, data $MILVUS_DATA)"
	return 1
}

case "${1:-}" in
start) start ;;
stop) stop TERM ;;
kill) stop KILL ;;
status) status ;;
env)
	printf 'MILVUS_VERSION=%q\nMILVUS_PORT=%q\nMILVUS_HTTP_PORT=%q\nMILVUS_DATA=%q\nMILVUS_LOG=%q\n' \
		"$MILVUS_VERSION" "$MILVUS_PORT" "$HTTP_PORT" "$MILVUS_DATA" "$LOG"
	;;
*)
	echo "usage: $0 start|stop|kill|status|env" >&2
	exit 2
	;;
esac
