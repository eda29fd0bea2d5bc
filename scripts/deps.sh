#!/usr/bin/env bash
# Installs the system packages the build and the tests need when they are
# missing, from Debian: libjpeg-turbo's development files (the JPEG decoder,
# linked through cgo by encoders/imageprep), redis-server (cache tests) and
# chromium (search-page test) and curl (the tested commands of
# docs/moderation.md). With --build, only what building xmodal
# needs (libjpeg-turbo's development files).
# Kafka and Milvus are fetched by scripts/kafka.sh and scripts/milvus.sh, the
# ONNX Runtime library by scripts/ort-setup.sh, all into .cache/.
set -euo pipefail
need=()
[ -f /usr/include/jpeglib.h ] || need+=(libjpeg62-turbo-dev)
if [ "${1:-}" != "--build" ]; then
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v curl >/dev/null 2>&1 || need+=(curl)
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1; then
  sudo="sudo"
else
  echo "missing system packages: ${need[*]} (install them with apt-get as root)" >&2
  exit 0
fi
echo "installing: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >&2
extra=()
[ "${1:-}" = "--build" ] || extra=(fonts-liberation)
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" "${extra[@]}" >&2
