#!/usr/bin/env bash
# Runs a benchmark command and records its output under bench/results/NAME.txt
# with the command, the commit and the machine it ran on.
# Usage: scripts/bench-record.sh NAME COMMAND...
#
# It refuses to run on a dirty tree (modified, staged or untracked files outside
# bench/results/): a result must name the commit that produced it. Commit the
# code first, record, then commit the result (several results may be recorded
# before that commit: bench/results/ itself is not checked).
# BENCH_NOTE, when set, is added to the header (e.g. what else ran on the machine).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  echo "usage: scripts/bench-record.sh NAME COMMAND..." >&2
  exit 2
fi
name=$1; shift
dirty=$(git status --porcelain --untracked-files=normal -- . ':(exclude)bench/results')
if [ -n "$dirty" ]; then
  echo "bench-record: refusing to record from a dirty tree (commit or stash these first):" >&2
  echo "$dirty" >&2
  exit 1
fi
out=bench/results/$name.txt
mkdir -p bench/results
XMODAL_ORT_LIB=${XMODAL_ORT_LIB:-$(scripts/ort-setup.sh)}
export XMODAL_ORT_LIB
{
  echo "# command: $*"
  echo "# commit: $(git rev-parse HEAD)"
  echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "# go: $(go version 2>/dev/null || echo none)"
  if [ -n "${BENCH_NOTE:-}" ]; then
    echo "# note: $BENCH_NOTE"
  fi
  echo
  set +e
  "$@" 2>&1 | grep -v ' INFO '
  status=${PIPESTATUS[0]}
  set -e
  echo
  echo "# load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  if [ "$status" -ne 0 ]; then
    echo "# the command failed (exit $status)"
  fi
  exit "$status"
} | tee "$out"
