#!/usr/bin/env bash
# The cost of near-duplicate clusters to ingest: workers.BenchmarkIngestRound
# (the whole pipeline as `xmodal run` wires it: decode, thumbnail, PDQ, the
# demo model, codes, the embedded index with fsync; clusters with dihedral
# links, the default, and with content-region links too when
# XMODAL_BENCH_REGIONS=1) over the demo images
# (each posted REPEAT times under distinct ids, so every picture is a
# cluster of REPEAT copies), in alternating rounds with clusters off and on.
# Prints each round's throughput and the median of the per-round ratios.
# XMODAL_BENCH_INPUT replaces the demo images with another folder of JPEGs
# (for example distinct pictures with a few re-posts, from
# `xmodal gen reposts`: a feed where most posts have no copy).
# Usage: scripts/bench-clusters-ingest.sh [ROUNDS] [REPEAT]
# BENCH_A and BENCH_B (environment assignments, space-separated) replace
# the two configurations compared: by default clusters off (A) and on (B);
# e.g. BENCH_A="XMODAL_BENCH_REGIONS=0" BENCH_B="XMODAL_BENCH_REGIONS=1"
# measures what clusters.regions adds to clusters with dihedral links.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
repeat=${2:-10}
export XMODAL_ORT_LIB=${XMODAL_ORT_LIB:-$(scripts/ort-setup.sh)}
export XMODAL_BENCH_INPUT=${XMODAL_BENCH_INPUT:-$PWD/testdata/demo/images} XMODAL_BENCH_REPEAT=$repeat
go test -c -o /tmp/xmodal-workers-bench.test ./workers/
ratios=()
cpus0=() cpus1=()
for r in $(seq 1 "$rounds"); do
  order="0 1"; if [ $((r % 2)) -eq 0 ]; then order="1 0"; fi
  declare -A rate=()
  for on in $order; do
    if [ "$on" = 1 ]; then vars=${BENCH_B:-XMODAL_BENCH_CLUSTERS=1}; else vars=${BENCH_A:-XMODAL_BENCH_CLUSTERS=0}; fi
    # shellcheck disable=SC2086
    line=$(cd workers && env $vars /tmp/xmodal-workers-bench.test -test.run '^$' -test.bench '^BenchmarkIngestRound$' -test.benchtime 1x 2>/dev/null | grep '^RESULT' | tail -1)
    rate[$on]=$(sed -E 's/.*posts_per_s=([0-9.]+).*/\1/' <<<"$line")
    cpu=$(sed -E 's/.*cpu_ms_per_post=([0-9.]+).*/\1/' <<<"$line")
    if [ "$on" = 1 ]; then cpus1+=("$cpu"); else cpus0+=("$cpu"); fi
    echo "round $r clusters=$on: $line"
  done
  ratio=$(awk -v a="${rate[1]}" -v b="${rate[0]}" 'BEGIN{printf "%.3f", a/b}')
  ratios+=("$ratio")
  echo "round $r: throughput with clusters / without = $ratio"
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {printf "with / without clusters, posts per second: median %.3f (rounds %.3f..%.3f, n=%d); cost = %.1f%%\n", a[int((NR+1)/2)], a[1], a[NR], NR, 100*(1-a[int((NR+1)/2)])}'
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "%.3f", a[int((NR+1)/2)]}'; }
echo "B = ${BENCH_B:-XMODAL_BENCH_CLUSTERS=1}, A = ${BENCH_A:-XMODAL_BENCH_CLUSTERS=0}: CPU ms a post, median of rounds: B $(med "${cpus1[@]}"), A $(med "${cpus0[@]}")"
