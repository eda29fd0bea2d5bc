#!/usr/bin/env bash
# Sets up and runs the demo on embedded defaults: fetches the ONNX Runtime library,
# builds xmodal, starts it with an embedded NATS server and index, publishes the
# sample posts, prints sample queries and the search page's address, and keeps
# serving (pass --once to exit). Every step says what it does; the first run
# downloads and compiles (a few minutes), later runs start in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
step() { printf 'demo: [%s] %s\n' "$1" "$2" >&2; }
took() { printf 'demo:       done in %ss\n' "$((SECONDS - $1))" >&2; }

s=$SECONDS; step 1/4 "build dependencies (a C compiler, libjpeg-turbo's headers: scripts/deps.sh)"
scripts/deps.sh --build
took "$s"

s=$SECONDS
if ls .cache/ort/*/libonnxruntime.so >/dev/null 2>&1 && [ -z "${ORT_VERSION:-}" ]; then
  step 2/4 "ONNX Runtime library: already in .cache/ort/"
else
  step 2/4 "ONNX Runtime library: downloading the onnxruntime wheel from PyPI (once) into .cache/ort/"
fi
XMODAL_ORT_LIB=$(scripts/ort-setup.sh)
export XMODAL_ORT_LIB
took "$s"

s=$SECONDS
if [ -x bin/xmodal ]; then
  step 3/4 "building bin/xmodal (go build; incremental)"
else
  step 3/4 "building bin/xmodal (go build; the first build fetches Go modules and compiles cgo code: a few minutes)"
fi
mkdir -p bin
go build -o bin/xmodal ./cmd/xmodal
took "$s"

# The demo starts from an empty index each time (a kept XMODAL_DATA_DIR is reused).
data=${XMODAL_DATA_DIR:-.cache/demo-data}
[ -n "${XMODAL_DATA_DIR:-}" ] || rm -rf "$data"
step 4/4 "starting xmodal demo (data in $data; set up in $((SECONDS - t0))s): it indexes testdata/demo/posts.jsonl, runs sample queries and prints the search page's address"
exec bin/xmodal demo --data-dir "$data" "$@"
