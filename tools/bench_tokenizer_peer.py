#!/usr/bin/env python3
"""Times the Go CLIP tokenizer (encoders/tokenizer) against its peer, open_clip's
SimpleTokenizer, on the same corpus in one run, and prints a report.

Corpus: testdata/tokenizer/goldens.jsonl (every text). Both sides run on one
thread and encode every text once per pass with a warm BPE cache (Go:
BenchmarkEncode with -cpu 1, whose tokenizer keeps its cache across
iterations; Python: a SimpleTokenizer that has already encoded the corpus
once). Rounds alternate Go and Python, so a change in the machine's load hits
both; the report gives texts/s per round, the per-round ratio Go/Python and
its median with the spread (min-max).

Usage, from the repository root with the tools venv (tools/setup.sh):
    .cache/venv/bin/python tools/bench_tokenizer_peer.py [--rounds 5] [--benchtime 2s]
Recorded with scripts/bench-record.sh tokenizer .cache/venv/bin/python tools/bench_tokenizer_peer.py
"""

import argparse
import importlib.metadata
import json
import os
import re
import statistics
import subprocess
import sys
import time

from open_clip.tokenizer import SimpleTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "testdata", "tokenizer", "goldens.jsonl")
BINARY = os.path.join(ROOT, ".cache", "tokenizer-bench.test")


def go_round(benchtime):
    out = subprocess.run([BINARY, "-test.run", "^$", "-test.bench", "^BenchmarkEncode$", "-test.benchtime", benchtime,
                          "-test.cpu", "1", "-test.count", "1"],
                         cwd=os.path.join(ROOT, "encoders", "tokenizer"), check=True, capture_output=True, text=True).stdout
    m = re.search(r"^BenchmarkEncode\s+\d+\s+\d+ ns/op\s+([\d.]+) texts/s", out, re.M)
    if not m:
        sys.exit("no BenchmarkEncode line in:\n" + out)
    return float(m.group(1)), m.group(0)


def py_round(tok, texts, seconds):
    n, start = 0, time.perf_counter()
    while True:
        for t in texts:
            tok.encode(t)
        n += len(texts)
        el = time.perf_counter() - start
        if el >= seconds:
            return n / el


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--benchtime", default="2s", help="Go -test.benchtime; Python runs whole passes for as long")
    a = ap.parse_args()
    texts = [json.loads(l)["text"] for l in open(CORPUS, encoding="utf-8")]
    subprocess.run(["go", "test", "-c", "-o", BINARY, "./encoders/tokenizer/"], cwd=ROOT, check=True)
    tok = SimpleTokenizer()
    for t in texts:  # warm the BPE cache, as Go's benchmark iterations do
        tok.encode(t)
    seconds = float(a.benchtime.rstrip("s"))
    print("corpus: %s (%d texts)" % (os.path.relpath(CORPUS, ROOT), len(texts)))
    print("peer: open_clip %s SimpleTokenizer.encode, CPython %s, ftfy %s, regex %s; one thread, warm cache"
          % (importlib.metadata.version("open_clip_torch"), sys.version.split()[0],
             importlib.metadata.version("ftfy"), importlib.metadata.version("regex")))
    print("go: BenchmarkEncode -test.cpu 1 -test.benchtime %s, warm cache" % a.benchtime)
    print("(Go's Encode stops running BPE once the ids that survive truncation to 77 are known, with the same ids;")
    print(" Python's encode tokenizes the whole text, so the over-long posts weigh more on its side.)")
    print()
    print("round  go texts/s  python texts/s  go/python")
    ratios = []
    for r in range(a.rounds):
        g, line = go_round(a.benchtime)
        p = py_round(tok, texts, seconds)
        ratios.append(g / p)
        print("%5d  %10.0f  %14.0f  %9.1f    (%s)" % (r + 1, g, p, g / p, " ".join(line.split())))
    print()
    print("go/python texts/s: median %.1f (min %.1f, max %.1f) over %d alternating rounds"
          % (statistics.median(ratios), min(ratios), max(ratios), len(ratios)))


if __name__ == "__main__":
    main()
