#!/usr/bin/env bash
# Sets up and runs the demo on embedded defaults: fetches the ONNX Runtime library,
# builds xmodal, starts it with an embedded NATS server and index, publishes the
# sample posts, prints sample queries, and keeps serving (pass --once to exit).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --build
XMODAL_ORT_LIB=$(scripts/ort-setup.sh)
export XMODAL_ORT_LIB
mkdir -p bin
go build -o bin/xmodal ./cmd/xmodal
# The demo starts from an empty index each time (a kept XMODAL_DATA_DIR is reused).
data=${XMODAL_DATA_DIR:-.cache/demo-data}
[ -n "${XMODAL_DATA_DIR:-}" ] || rm -rf "$data"
exec bin/xmodal demo --data-dir "$data" "$@"
