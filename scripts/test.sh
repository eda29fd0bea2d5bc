#!/usr/bin/env bash
# Sets up and runs the whole test suite: checks that go.mod is tidy, fetches the
# ONNX Runtime library into .cache/ort (scripts/ort-setup.sh), then vet and go
# test over every package.
# Installs missing system packages (scripts/deps.sh). Services that tests need are
# started by the tests themselves: embedded NATS in-process; Kafka, Milvus and
# redis-server through the scripts under scripts/.
#
# The concurrent packages (workers, ingest/..., query, sink/...) run only under
# the race detector: a second, race-free pass over them would double the
# slowest part of CI (the Milvus and Kafka suites) for nothing the race pass
# does not check. Every other package runs without it. Arguments are passed to
# both `go test` commands (e.g. -run, -short, -v).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
XMODAL_ORT_LIB=$(scripts/ort-setup.sh)
export XMODAL_ORT_LIB
echo "ONNX Runtime: $XMODAL_ORT_LIB"
go version
# go.mod and go.sum must be what `go mod tidy` makes of the imports (direct
# requirements without "// indirect", nothing unused): a diff fails the run.
if ! go mod tidy -diff; then
	echo "go.mod/go.sum are not tidy: run 'go mod tidy' and commit the result" >&2
	exit 1
fi
go vet ./...
go vet -tags crashtest ./...
go vet -tags bench ./... # measurement harnesses (go test -tags bench) must still build
# -tags crashtest: the crash tests kill xmodal at crash points that only a
# test build has (cmd/xmodal/crashpoints.go); the release binary has none.
race=(./workers/... ./ingest/... ./query/... ./sink/...)
mapfile -t plain < <(go list ./... | grep -v -E '/xmodal/(workers|ingest|query|sink)(/|$)')
# Both passes run even when the first fails, so that one failure does not hide
# the other pass's results; the script fails if either did.
status=0
t0=$SECONDS
go test -tags crashtest -count=1 -timeout 30m "$@" "${plain[@]}" || status=1
echo "test pass: $((SECONDS - t0)) s"
t0=$SECONDS
go test -race -tags crashtest -count=1 -timeout 30m "$@" "${race[@]}" || status=1
echo "race pass: $((SECONDS - t0)) s"
exit $status
