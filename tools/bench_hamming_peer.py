#!/usr/bin/env python3
"""FAISS peer of xmodal's Hamming range search benchmark (internal/hamming,
TestHammingSideBySide). The Go test starts this script, which loads the same
entry and lookup files, builds FAISS's binary indexes and then runs one round
of lookups each time it reads "round K" on stdin, so that the two sides
alternate on the same machine. Not meant to be run by hand.

Indexes (one thread: faiss.omp_set_num_threads(1)):
  - IndexBinaryMultiHash(256, nhash=16, b=16) with nflip = radius // 16: the
    configuration of Meta's python-threatexchange PDQ index (HMA). It is exact
    for radius 31 (pigeonhole: 16 chunks, nflip 1), so its recall is 1.
  - IndexBinaryFlat (exhaustive scan), on the first --flat-q lookups: a
    second linear-scan reference.
A lookup is one range_search of its 8 codes (FAISS's radius is exclusive:
radius + 1).

Protocol (one line each way):
  -> "ready {json}" once built (build times, resident memory)
  <- "round K"          -> {"MH": {P50, P99, Max, Mean, CPU}, "Flat": {Mean, CPU}} (ms)
  <- "results PATH"     -> writes one JSON line per lookup {"ids": [...], "dists": [...]}
(--mh-q N limits the multi-hash rounds and results to the first N lookups:
at 10 million entries one takes about half a second.)
  <- "quit"
Files in --dir: entries.u8 (N x 32 bytes), queries.u8 (Q x 8 x 32 bytes).
"""

import argparse
import json
import os
import sys
import time

import faiss
import numpy as np


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def summary(ms, cpu_total):
    s = sorted(ms)
    n = len(s)

    def q(p):
        return s[min(n - 1, max(0, int(-(-p * n // 1)) - 1))]

    return {"P50": q(0.5), "P99": q(0.99), "Max": s[-1], "Mean": sum(s) / n, "CPU": cpu_total / n, "Lookups": n}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--radius", type=int, default=31)
    ap.add_argument("--flat-q", type=int, default=30)
    ap.add_argument("--mh-q", type=int, default=0, help="lookups per round for the multi-hash index (0: all)")
    args = ap.parse_args()
    faiss.omp_set_num_threads(1)
    d = 256
    entries = np.fromfile(os.path.join(args.dir, "entries.u8"), dtype=np.uint8).reshape(-1, 32)
    queries = np.fromfile(os.path.join(args.dir, "queries.u8"), dtype=np.uint8).reshape(-1, 8, 32)
    mh_queries = queries[: args.mh_q] if args.mh_q else queries
    rss0 = rss_mb()
    t0 = time.perf_counter()
    mh = faiss.IndexBinaryMultiHash(d, 16, 16)
    mh.nflip = args.radius // 16
    mh.add(entries)
    mh_build = time.perf_counter() - t0
    rss1 = rss_mb()
    flat = faiss.IndexBinaryFlat(d)
    flat.add(entries)
    ready = {
        "faiss": faiss.__version__,
        "n": int(entries.shape[0]),
        "q": int(queries.shape[0]),
        "multihash_q": int(mh_queries.shape[0]),
        "multihash_build_s": round(mh_build, 1),
        "multihash_rss_mb": round(rss1 - rss0),
        "raw_mb": round(entries.shape[0] * 40 / 1e6),
        "threads": 1,
    }
    print("ready " + json.dumps(ready), flush=True)
    radius = args.radius + 1  # FAISS: distance < radius
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "quit":
            return
        if cmd[0] == "round":
            lat = []
            c0 = time.process_time()
            for q in mh_queries:
                t = time.perf_counter()
                mh.range_search(q, radius)
                lat.append((time.perf_counter() - t) * 1000)
            mh_cpu = (time.process_time() - c0) * 1000
            fq = queries[: args.flat_q]
            c0, w0 = time.process_time(), time.perf_counter()
            for q in fq:
                flat.range_search(q, radius)
            flat_wall = (time.perf_counter() - w0) * 1000 / len(fq)
            flat_cpu = (time.process_time() - c0) * 1000 / len(fq)
            out = {"MH": summary(lat, mh_cpu), "Flat": {"Mean": flat_wall, "CPU": flat_cpu}}
            print(json.dumps(out), flush=True)
        elif cmd[0] == "results":
            with open(cmd[1], "w") as f:
                for q in mh_queries:
                    lims, dist, ids = mh.range_search(q, radius)
                    f.write(json.dumps({"ids": ids.tolist(), "dists": dist.astype(int).tolist()}) + "\n")
            print("ok", flush=True)


if __name__ == "__main__":
    main()
