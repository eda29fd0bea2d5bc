#!/usr/bin/env bash
# Sets up and runs the whole test suite: fetches the ONNX Runtime library into
# .cache/ort (scripts/ort-setup.sh), then vet and go test over every package.
# Installs missing system packages (scripts/deps.sh). Services that tests need are
# started by the tests themselves: embedded NATS in-process; Kafka, Milvus and
# redis-server through the scripts under scripts/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
XMODAL_ORT_LIB=$(scripts/ort-setup.sh)
export XMODAL_ORT_LIB
echo "ONNX Runtime: $XMODAL_ORT_LIB"
go version
go vet ./...
go vet -tags crashtest ./...
# -tags crashtest: the crash tests kill xmodal at crash points that only a
# test build has (cmd/xmodal/crashpoints.go); the release binary has none.
go test -tags crashtest -count=1 -timeout 30m "$@" ./...
