#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library from the onnxruntime wheel on PyPI into
# .cache/ort/ (ignored by git). onnxruntime_go v1.27 needs ORT >= 1.24.
# Prints the library path. Idempotent: does nothing when the library is already there.
set -euo pipefail
ver=${ORT_VERSION:-1.24.1}
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.cache/ort/$ver"
lib="$dest/libonnxruntime.so"
if [ ! -f "$lib" ]; then
  echo "ort-setup: downloading onnxruntime==$ver from PyPI (pip download, once) to extract libonnxruntime.so into $dest" >&2
  mkdir -p "$dest/wheel"
  python3 -m pip download --disable-pip-version-check --no-deps -q \
    --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 \
    -d "$dest/wheel" "onnxruntime==$ver" >&2
  whl=$(ls "$dest"/wheel/onnxruntime-"$ver"-*.whl | head -n1)
  python3 - "$whl" "$dest" <<'PY'
import sys, zipfile, os
whl, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if os.path.basename(n).startswith("libonnxruntime.so")]
    if not names:
        sys.exit("no libonnxruntime.so in " + whl)
    src = sorted(names, key=len)[-1]
    with z.open(src) as f, open(os.path.join(dest, "libonnxruntime.so"), "wb") as out:
        out.write(f.read())
PY
  rm -rf "$dest/wheel"
  echo "ort-setup: $lib ready" >&2
fi
echo "$lib"
