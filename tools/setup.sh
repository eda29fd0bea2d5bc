#!/usr/bin/env bash
# Creates the tools venv in .cache/venv (ignored by git) from tools/requirements.txt.
# Used only for goldens, model export, training and peer benchmarks; CI never runs it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.cache/venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --disable-pip-version-check -q -r "$root/tools/requirements.txt"
echo "tools venv ready: $venv/bin/python"
