#!/usr/bin/env bash
# scripts/build.sh [OUT] — builds the release layout that the container image
# (deploy/Dockerfile) copies, and that the deploy tests run in CI:
#
#   OUT/bin/xmodal                    cgo build of ./cmd/xmodal (stripped)
#   OUT/lib/libonnxruntime.so         the pinned ONNX Runtime (scripts/ort-setup.sh, ORT_VERSION)
#   OUT/testdata/models/<name>/       the bundled model: testdata/models/demo when it
#                                     exists, else testdata/models/parity; the binary
#                                     finds it next to itself (OUT/bin/..)
#   OUT/testdata/demo/posts.jsonl     the demo posts and the images they name (xmodal demo)
#   OUT/share/samples/posts.jsonl     the same posts in the post format, images inline
#                                     (xmodal post / xmodal ingest)
#   OUT/share/samples/posts.kafka     the same as "key<TAB>value" lines for
#                                     kafka-console-producer (parse.key=true)
#   OUT/share/deploy/                 nats configs and the dashboard, for reference
#   OUT/VERSION                       git describe (or "dev") and the ORT version
#
# OUT defaults to ./dist. Needs go (>= go.mod's), a C compiler (cgo), libjpeg-turbo's
# development files (Debian libjpeg62-turbo-dev, installed by scripts/deps.sh --build
# when missing and run as root), python3 with pip (ORT library, sample conversion). Environment: GOFLAGS, ORT_VERSION,
# XMODAL_VERSION (default: git describe, else dev). Idempotent: OUT is replaced.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/dist}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$root"

say() { echo "build.sh: $*" >&2; }

version=${XMODAL_VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}
rm -rf "$out/bin" "$out/lib" "$out/testdata" "$out/share"
mkdir -p "$out/bin" "$out/lib" "$out/share/samples" "$out/share/deploy" "$out/testdata/models"

scripts/deps.sh --build
say "go build (cgo) ./cmd/xmodal, version $version"
CGO_ENABLED=1 go build -ldflags "-s -w -X main.version=$version" -o "$out/bin/xmodal" ./cmd/xmodal

say "ONNX Runtime"
lib=$(scripts/ort-setup.sh)
cp "$lib" "$out/lib/libonnxruntime.so"
ort_version=$(basename "$(dirname "$lib")")

model=parity
if [ -f testdata/models/demo/model.json ]; then
  model=demo
fi
say "bundled model: testdata/models/$model"
cp -r "testdata/models/$model" "$out/testdata/models/$model"
# Goldens and other test-only files are not needed at run time.
rm -rf "$out/testdata/models/$model/goldens"

say "sample posts"
python3 - "$root/testdata/demo/posts.jsonl" "$out" <<'PY'
import base64, json, os, shutil, sys
src, out = sys.argv[1], sys.argv[2]
demo_dir = os.path.dirname(src)
os.makedirs(os.path.join(out, "testdata", "demo"), exist_ok=True)
shutil.copy(src, os.path.join(out, "testdata", "demo", "posts.jsonl"))
posts, kafka = [], []
for n, line in enumerate(open(src, encoding="utf-8")):
    if not line.strip():
        continue
    # A line of the post format whose image is a local file (image_file,
    # relative to the file): the samples carry the bytes inline instead.
    p = json.loads(line)
    image_file = p.pop("image_file", None)
    if image_file:
        img = os.path.normpath(os.path.join(demo_dir, image_file))
        rel = os.path.relpath(img, os.path.dirname(demo_dir))  # under testdata/
        dst = os.path.join(out, "testdata", rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy(img, dst)
        p["image"] = {"data": base64.b64encode(open(img, "rb").read()).decode(), "mime": "image/jpeg"}
    v = json.dumps(p, ensure_ascii=False, separators=(",", ":"))
    posts.append(v)
    kafka.append(p["id"] + "\t" + v)
with open(os.path.join(out, "share", "samples", "posts.jsonl"), "w", encoding="utf-8") as f:
    f.write("\n".join(posts) + "\n")
with open(os.path.join(out, "share", "samples", "posts.kafka"), "w", encoding="utf-8") as f:
    f.write("\n".join(kafka) + "\n")
print(f"build.sh: {len(posts)} sample posts", file=sys.stderr)
PY

cp deploy/nats/*.conf "$out/share/deploy/" 2>/dev/null || true
cp deploy/grafana/*.json "$out/share/deploy/" 2>/dev/null || true
printf 'xmodal %s\nonnxruntime %s\nmodel %s\n' "$version" "$ort_version" "$model" >"$out/VERSION"

# The layout must work on its own: the binary starts, finds the model next to
# itself and loads it with the bundled library (no repository around it).
say "smoke test"
(cd / && XMODAL_ORT_LIB="$out/lib/libonnxruntime.so" "$out/bin/xmodal" hash info >/dev/null)
say "done: $out ($(du -sh "$out" | cut -f1))"
