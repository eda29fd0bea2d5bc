#!/usr/bin/env python3
"""Times encoders/pdq (Go) against the pdqhash wheel (ThreatExchange's C++
PDQ) on the same images in one run, and writes a report.

Both sides run single-threaded (Go with -cpu 1) on the same files, in
alternating rounds; each case reports its best round (the machine is shared,
so the fastest round is the least disturbed one):
  hash fullres    hashing decoded images at full resolution
                  (Go BenchmarkHash/fullres vs pdqhash.compute on PIL's RGB array)
  hash default    hashing decoded images as the reference tools do, shrunk to
                  512 px first (Go BenchmarkHash/default vs PIL thumbnail +
                  pdqhash.compute on the decoded image)
  decode+hash     from the file bytes (Go BenchmarkDecodeHash/{fullres,default}
                  vs PIL open + [thumbnail] + convert('RGB') + pdqhash.compute)

Usage, from the repository root with the tools venv (tools/setup.sh):
    .cache/venv/bin/python tools/bench_pdq_peer.py [--benchtime 3s] [--out bench/results/pdq.txt]
"""

import argparse
import glob
import io
import os
import platform
import re
import resource
import subprocess
import sys
import time

import numpy as np
import pdqhash
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(ROOT, "testdata", "pdq", "images")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run(cmd):
    return subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout


def go_bench(benchtime):
    run(["go", "test", "-c", "-o", os.path.join(ROOT, ".cache", "pdq-bench.test"), "./encoders/pdq/"])
    cmd = [os.path.join(ROOT, ".cache", "pdq-bench.test"), "-test.run", "^$",
           "-test.bench", "^Benchmark(Hash|DecodeHash|Decode)$",
           "-test.benchtime", benchtime, "-test.cpu", "1", "-test.count", "1"]
    out = subprocess.run(cmd, cwd=os.path.join(ROOT, "encoders", "pdq"), check=True,
                         capture_output=True, text=True).stdout
    cmd = ["go", "test", "./encoders/pdq/", "-run", "^$", "-bench", "^Benchmark(Hash|DecodeHash|Decode)$",
           "-benchtime", benchtime, "-cpu", "1"]
    rates = {}
    for line in out.splitlines():
        m = re.match(r"^Benchmark(\S+?)\s+\d+\s+[\d.]+ ns/op", line)
        if not m:
            continue
        wall = re.search(r"([\d.]+) images/s", line)
        cpu = re.search(r"([\d.]+) cpu-images/s", line)
        rates[m.group(1)] = (float(wall.group(1)), float(cpu.group(1)) if cpu else 0.0)
    return " ".join(cmd), out, rates


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def rate(fn, items, min_seconds):
    """Images per second of wall time and of CPU time of fn over items,
    repeated for at least min_seconds."""
    n = 0
    t0, c0 = time.perf_counter(), cpu_seconds()
    while True:
        for it in items:
            fn(it)
        n += len(items)
        el = time.perf_counter() - t0
        if el >= min_seconds:
            return n / el, n / (cpu_seconds() - c0)


def thumb(img):
    img = img.copy()
    img.thumbnail((512, 512))
    return img


def py_bench(files, min_seconds):
    blobs = [open(p, "rb").read() for p in files]
    decoded = []
    for b in blobs:
        im = Image.open(io.BytesIO(b))
        im.load()
        decoded.append(im)
    arrays = [np.asarray(im.convert("RGB")) for im in decoded]

    def decode_hash(b, shrink):
        im = Image.open(io.BytesIO(b))
        if shrink:
            im.thumbnail((512, 512))  # lets libjpeg scale in the DCT (draft)
        pdqhash.compute(np.asarray(im.convert("RGB")))

    return {
        "Hash/fullres": rate(pdqhash.compute, arrays, min_seconds),
        "Hash/default": rate(lambda im: pdqhash.compute(np.asarray(thumb(im).convert("RGB"))), decoded, min_seconds),
        "DecodeHash/fullres": rate(lambda b: decode_hash(b, False), blobs, min_seconds),
        "DecodeHash/default": rate(lambda b: decode_hash(b, True), blobs, min_seconds),
        "Decode": rate(lambda b: np.asarray(Image.open(io.BytesIO(b)).convert("RGB")), blobs, min_seconds),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--benchtime", default="2s", help="go test -benchtime per benchmark and round")
    ap.add_argument("--seconds", type=float, default=2.0, help="Python seconds per case and round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating Go/Python rounds")
    ap.add_argument("--out", help="write the report here (also printed)")
    args = ap.parse_args()

    files = sorted(glob.glob(os.path.join(IMAGES, "*", "*")))
    sizes = {}
    for p in files:
        with Image.open(p) as im:
            sizes[im.size] = sizes.get(im.size, 0) + 1
    load0 = os.getloadavg()
    go_rates, py_rates, go_outs = {}, {}, []
    for _ in range(args.rounds):
        go_cmd, go_out, g = go_bench(args.benchtime)
        go_outs.append(go_out)
        p = py_bench(files, args.seconds)
        for rates, new in ((go_rates, g), (py_rates, p)):
            for k, (wall, cpu) in new.items():
                w0, c0 = rates.get(k, (0.0, 0.0))
                rates[k] = (max(w0, wall), max(c0, cpu))
    load1 = os.getloadavg()

    lines = []
    w = lines.append
    w("# PDQ: encoders/pdq (Go) vs pdqhash %s (C++ reference via Python)" % pdqhash.__version__)
    w("command:   .cache/venv/bin/python tools/bench_pdq_peer.py " + " ".join(sys.argv[1:]))
    w("go bench:  %s -count %d (run as a prebuilt test binary)" % (go_cmd, args.rounds))
    w("commit:    " + run(["git", "rev-parse", "HEAD"]).strip())
    w("date:      " + time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    w("machine:   nproc=%d, %s; load average %.2f before, %.2f after (shared machine)"
      % (os.cpu_count(), cpu_model(), load0[0], load1[0]))
    w("versions:  " + run(["go", "version"]).strip() + "; Python " + platform.python_version()
      + ", numpy " + np.__version__ + ", Pillow " + Image.__version__)
    w("images:    %d files from testdata/pdq/images: %s" % (
        len(files), ", ".join("%dx%d x%d" % (k[0], k[1], v) for k, v in sorted(sizes.items(), key=lambda kv: -kv[1]))))
    w("threads:   one on each side (go test -cpu 1; pdqhash is single-threaded)")
    w("method:    %d alternating rounds (Go %s per benchmark, Python %.1fs per case); best round of each"
      % (args.rounds, args.benchtime, args.seconds))
    w("")
    w("images per second, best round; cpu = per second of process CPU time (user+sys),")
    w("steadier than wall time while other jobs share the machine")
    w("")
    w("%-20s %9s %9s %8s   %9s %9s %8s" % ("case", "Go cpu", "peer cpu", "Go/peer", "Go wall", "peer wall", "Go/peer"))

    def fmt(v):
        return "%.1f" % v if v else "-"

    def ratio(a, b):
        return "%.2fx" % (a / b) if a and b else "-"

    for k in ["Hash/fullres", "Hash/default", "Hash/dihedral", "Decode", "DecodeHash/fullres", "DecodeHash/default"]:
        gw, gc = go_rates.get(k, (0, 0))
        pw, pc = py_rates.get(k, (0, 0))
        w("%-20s %9s %9s %8s   %9s %9s %8s" % (k, fmt(gc), fmt(pc), ratio(gc, pc), fmt(gw), fmt(pw), ratio(gw, pw)))
    w("")
    w("Hash/* are decoded images; default shrinks images over 512 px first (Go: PIL-style")
    w("bicubic thumbnail of the luma plane; Python: PIL thumbnail of the RGB image).")
    w("Decode* start from the file bytes (Go: image/jpeg, image/png; Python: Pillow/libjpeg-turbo;")
    w("Pillow's thumbnail decodes JPEGs at reduced DCT scale when it can, Go cannot).")
    w("")
    w("go test output, every round:")
    for o in go_outs:
        lines.extend("  " + l for l in o.strip().splitlines() if l.startswith("Benchmark"))
    report = "\n".join(lines) + "\n"
    sys.stdout.write(report)
    if args.out:
        os.makedirs(os.path.dirname(os.path.join(ROOT, args.out)), exist_ok=True)
        with open(os.path.join(ROOT, args.out), "w") as f:
            f.write(report)


if __name__ == "__main__":
    main()
