#!/usr/bin/env bash
# Runs a benchmark command and records its output under bench/results/NAME.txt
# with the command, the commit and the machine it ran on.
# Usage: scripts/bench-record.sh NAME COMMAND...
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1; shift
out=bench/results/$name.txt
mkdir -p bench/results
XMODAL_ORT_LIB=${XMODAL_ORT_LIB:-$(scripts/ort-setup.sh)}
export XMODAL_ORT_LIB
{
  echo "# command: $*"
  echo "# commit: $(git rev-parse HEAD)$(git diff --quiet HEAD -- . ':!bench/results' || echo ' (with uncommitted changes)')"
  echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  "$@" 2>&1 | grep -v ' INFO ' || true
} | tee "$out"
