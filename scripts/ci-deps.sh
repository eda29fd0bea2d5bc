#!/usr/bin/env bash
# Installs the Debian packages that the test suite needs and does not start
# itself: redis-server (query cache tests start it on 127.0.0.1, random ports)
# and chromium (the search page test drives it headless with chromedp).
# Run as root (CI is); a no-op when both are present.
set -euo pipefail
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need+=(chromium)
if ((${#need[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" fonts-liberation >/dev/null
fi
redis-server --version
chromium --version 2>/dev/null || chromium-browser --version
