#!/usr/bin/env python3
"""FAISS peer of xmodal's batch near-duplicate job (internal/dedup,
TestDedupScale): range search on the binary codes at the job's threshold,
then connected components (scipy.sparse.csgraph). The Go test runs it once
per round, interleaved with its own run on the same codes; it prints one JSON
line with its timings. Not meant to be run by hand.

A full range search of every code against one million is 10^12 Hamming
distances for FAISS's exhaustive IndexBinaryFlat (its multi-hash index was
slower still per lookup in bench/results/hamming.txt), so the peer searches
the first --queries codes against all of them, times that, and extrapolates
the search to every code (linear in the queries); the connected components
run on the pairs found and are timed as they are. It writes the pairs it
found (int32 query, int32 match) for the Go side to check against its own.

Files in --dir: codes.u8 (N x 32 bytes). FAISS's range_search radius is
exclusive: radius + 1 is passed.
"""

import argparse
import json
import os
import time

import faiss
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--radius", type=int, default=31)
    ap.add_argument("--queries", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--pairs", default="")
    a = ap.parse_args()
    faiss.omp_set_num_threads(a.threads)
    codes = np.fromfile(os.path.join(a.dir, "codes.u8"), dtype=np.uint8).reshape(-1, 32)
    n = codes.shape[0]
    q = min(a.queries, n)
    t0 = time.time()
    c0 = time.process_time()
    ix = faiss.IndexBinaryFlat(256)
    ix.add(codes)
    build_s = time.time() - t0
    t1 = time.time()
    lims, dists, ids = ix.range_search(codes[:q], a.radius + 1)
    search_s = time.time() - t1
    cpu_s = time.process_time() - c0
    qi = np.repeat(np.arange(q, dtype=np.int32), np.diff(lims).astype(np.int64))
    mi = ids.astype(np.int32)
    t2 = time.time()
    g = coo_matrix((np.ones(len(mi), dtype=np.int8), (qi, mi)), shape=(n, n))
    ncomp, _ = connected_components(g, directed=False)
    cc_s = time.time() - t2
    if a.pairs:
        np.stack([qi, mi], axis=1).astype("<i4").tofile(a.pairs)
    print(json.dumps({
        "faiss": faiss.__version__, "n": n, "queries": q, "threads": a.threads,
        "build_s": round(build_s, 3), "search_s": round(search_s, 3), "cpu_s": round(cpu_s, 3),
        "pairs": int(len(mi)), "cc_s": round(cc_s, 3),
        "search_ms_per_query": round(1000 * search_s / q, 4),
        "extrapolated_s": round(build_s + search_s * n / q + cc_s * n / q, 1),
    }), flush=True)


if __name__ == "__main__":
    main()
