#!/usr/bin/env bash
# Sets up and runs the demo on embedded defaults: fetches the ONNX Runtime library,
# builds xmodal, starts it with an embedded NATS server and index, publishes the
# sample posts, prints sample queries, and keeps serving (pass --once to exit).
set -euo pipefail
cd "$(dirname "$0")/.."
XMODAL_ORT_LIB=$(scripts/ort-setup.sh)
export XMODAL_ORT_LIB
mkdir -p bin
go build -o bin/xmodal ./cmd/xmodal
exec bin/xmodal demo --data-dir "${XMODAL_DATA_DIR:-.cache/demo-data}" "$@"
