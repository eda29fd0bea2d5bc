#!/usr/bin/env bash
# Installs the system packages the tests need when they are missing:
# redis-server (cache tests) and chromium (search-page test), from Debian.
# Kafka and Milvus are fetched by scripts/kafka.sh and scripts/milvus.sh, the
# ONNX Runtime library by scripts/ort-setup.sh, all into .cache/.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
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
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" fonts-liberation >&2
