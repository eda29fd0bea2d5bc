#!/usr/bin/env bash
# Runs `xmodal eval neardup` over several seeds and sums its recall@1 tables:
# one small set of originals gives one query per (original, kind) a seed, too
# few to tell 0.85 from 0.90; twenty seeds give twenty. With several
# binaries (a build of another commit beside this one) every seed runs each
# in turn, interleaved, and the table has a column per binary.
#
# Usage: scripts/eval-seeds.sh N BIN [BIN...] -- EVAL-ARGS...
#   N      seeds 1..N (the eval's --seed)
#   BIN    an xmodal binary (go build -o /tmp/xe ./cmd/xmodal)
#   EVAL-ARGS  the arguments after `eval neardup` (no --seed)
# It also counts, per binary, the originals of the missed queries (the
# eval's --log-misses lines), most missed first.
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: scripts/eval-seeds.sh N BIN [BIN...] -- EVAL-ARGS..." >&2
  exit 2
fi
n=$1; shift
bins=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do bins+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
if [ ${#bins[@]} -eq 0 ]; then
  echo "eval-seeds: no binary given" >&2
  exit 2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for s in $(seq 1 "$n"); do
  for i in "${!bins[@]}"; do
    "${bins[$i]}" eval neardup "$@" --log-misses --seed "$s" >"$tmp/out-$i-$s.txt" 2>&1 || {
      echo "eval-seeds: ${bins[$i]} failed on seed $s:" >&2
      tail -5 "$tmp/out-$i-$s.txt" >&2
      exit 1
    }
  done
done
echo "seeds 1-$n; binaries: ${bins[*]}"
for i in "${!bins[@]}"; do
  # section|kind|hits|queries for each table row of every seed's output.
  awk -v bin="$i" '
    /^recall@1, / { sec = substr($0, 11); next }
    sec != "" && NF >= 4 && $(NF-2) ~ /^[0-9]+$/ && $(NF-1) ~ /^[0-9.]+$/ {
      kind = $1; for (k = 2; k <= NF-3; k++) kind = kind " " $k
      q = $(NF-2); printf "%s|%s|%d|%d|%s\n", sec, kind, int(q * $(NF-1) + 0.5), q, bin
    }
    /^$/ { sec = "" }
  ' "$tmp"/out-"$i"-*.txt
done | awk -F'|' -v nb="${#bins[@]}" '
  { key = $1 "|" $2; if (!(key in seen)) { seen[key] = 1; order[++m] = key }
    hits[key, $5] += $3; qs[key, $5] += $4 }
  END {
    last = ""
    for (j = 1; j <= m; j++) {
      split(order[j], a, "|")
      if (a[1] != last) { printf "\nrecall@1, %s (summed over seeds)\n", a[1]; last = a[1] }
      printf "  %-28s", a[2]
      for (b = 0; b < nb; b++) printf "  %5d/%-5d %.3f", hits[order[j], b], qs[order[j], b], (qs[order[j], b] ? hits[order[j], b] / qs[order[j], b] : 0)
      printf "\n"
    }
  }'
for i in "${!bins[@]}"; do
  echo
  echo "misses by original, ${bins[$i]}:"
  cat "$tmp"/out-"$i"-*.txt | sed -n 's/^miss: query [0-9]* (\([^)]*\)) of \(.*\) found.*/\2 (\1)/p' | sort | uniq -c | sort -rn
done
