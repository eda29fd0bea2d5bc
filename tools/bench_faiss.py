#!/usr/bin/env python3
"""Side-by-side benchmark of xmodal's embedded index against FAISS, on the same
data files, one thread each, and a table of the ratios.

What it measures (docs/hashing.md explains the choices):
  - Hamming scan, top-100, over the same N binary codes of 64 and 256 bits:
    xmodal's hash plan (sink/embedded, through Index.Search) vs FAISS
    IndexBinaryFlat; one query at a time, and batches of 100 queries (xmodal
    has no batch API: a batch is 100 calls; FAISS searches the 100 at once).
  - Float exact, top-10, N x 512: xmodal's exact plan vs FAISS IndexFlatIP;
    single queries and batches of 100.
  - Hybrid (64-bit codes, Hamming top-C then exact cosine), K=10: recall@10
    against exact and the time ratio, for C = 0.1%, 0.5%, 1% of N at 100k and
    N records (xmodal only: FAISS has no such plan).
  - Heap bytes per record of the embedded index.

Data: clustered synthetic vectors (100 topics x 100 sub-clusters, 512 dims),
the database as image embeddings and the queries as text embeddings (each
modality with its own offset), and their ITQ codes (encoders/hash) fitted on
other samples. The Go side generates them (TestHashBenchSideBySide with
XMODAL_HASHBENCH_PHASE=prepare) into --dir: db.f32, q.f32 (little-endian
float32), db64.u8, q64.u8, db256.u8, q256.u8 (packed codes); both sides read
those files.

Rounds alternate: Go measures (a test binary, GOMAXPROCS=1), then FAISS
(omp_set_num_threads(1)), --rounds times; each number is the best round.
Times are wall clock and process CPU (user+sys); the machine may be shared,
and CPU time is the steadier. Ratios are FAISS time / xmodal time (above 1:
xmodal is faster).

Usage, from the repository root with the tools venv:
    .cache/venv/bin/python tools/bench_faiss.py [--n 1000000] [--q 100] [--rounds 2]
Record it with: scripts/bench-record.sh hash .cache/venv/bin/python tools/bench_faiss.py

The hybrid measurement on a model's embeddings (xmodal only):
    xmodal eval --model DIR --db-n 100000 --write-embeddings EMB
    .cache/venv/bin/python tools/bench_faiss.py model --emb EMB [--q 100] [--fit 10000]
takes the database images (set "db") as the index, 100 query-split captions as
queries, and db images and db captions (strided) to fit the 64-bit ITQ coder.
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg):
    print(msg, flush=True)


def best(rounds, per, f):
    """Best wall and best CPU milliseconds per operation over rounds."""
    bw = bc = float("inf")
    for _ in range(rounds):
        w0, c0 = time.perf_counter(), time.process_time()
        f()
        w, c = time.perf_counter() - w0, time.process_time() - c0
        bw, bc = min(bw, w * 1000 / per), min(bc, c * 1000 / per)
    return {"wall_ms": bw, "cpu_ms": bc}


def faiss_measure(d, out):
    import faiss
    import numpy as np

    faiss.omp_set_num_threads(1)
    meta = json.load(open(os.path.join(d, "meta.json")))
    n, nq, dim = meta["n"], meta["q"], meta["dim"]
    res = {"faiss": faiss.__version__, "numpy": np.__version__, "n": n, "q": nq}
    ham = {}
    for bits in (64, 256):
        nb = bits // 8
        db = np.fromfile(os.path.join(d, "db%d.u8" % bits), dtype=np.uint8).reshape(n, nb)
        q = np.fromfile(os.path.join(d, "q%d.u8" % bits), dtype=np.uint8).reshape(nq, nb)
        idx = faiss.IndexBinaryFlat(bits)
        idx.add(db)
        del db

        def single():
            for i in range(nq):
                idx.search(q[i:i + 1], 100)

        def batch():
            idx.search(q[:100], 100)

        s = best(3, nq, single)
        b = best(3, 1, batch)
        D, _ = idx.search(q[:5], 100)
        ham[str(bits)] = {"single": s, "batch100": b, "distances": D.astype(int).tolist()}
        log("faiss: hamming %d bits: %.3f ms per query (cpu %.3f), %.1f ms per batch of 100 (cpu %.1f)"
            % (bits, s["wall_ms"], s["cpu_ms"], b["wall_ms"], b["cpu_ms"]))
        del idx
    res["hamming"] = ham
    db = np.fromfile(os.path.join(d, "db.f32"), dtype="<f4").reshape(n, dim)
    q = np.fromfile(os.path.join(d, "q.f32"), dtype="<f4").reshape(nq, dim)
    idx = faiss.IndexFlatIP(dim)
    idx.add(db)
    del db
    ns = min(10, nq)

    def fsingle():
        for i in range(ns):
            idx.search(q[i:i + 1], 10)

    def fbatch():
        idx.search(q[:100], 10)

    s = best(2, ns, fsingle)
    b = best(2, 1, fbatch)
    D, _ = idx.search(q[:5], 10)
    res["exact"] = {"single": s, "batch100": b, "scores": D.tolist()}
    log("faiss: exact: %.1f ms per query (cpu %.1f), %.0f ms per batch of 100 (cpu %.0f)"
        % (s["wall_ms"], s["cpu_ms"], b["wall_ms"], b["cpu_ms"]))
    json.dump(res, open(out, "w"), indent=1)


def go_run(binary, d, env_extra):
    env = dict(os.environ, XMODAL_HASHBENCH_DIR=d, **env_extra)
    p = subprocess.Popen([binary, "-test.run", "^TestHashBenchSideBySide$", "-test.v", "-test.timeout", "3h"],
                         cwd=os.path.join(ROOT, "sink", "embedded"), env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in p.stdout:
        line = line.rstrip()
        if line.startswith("[") or "FAIL" in line or "panic" in line or "Error" in line:
            log("go: " + line)
    if p.wait() != 0:
        sys.exit("the Go side failed (exit %d)" % p.returncode)


def merge(runs):
    """Best (min) of every timing leaf over rounds; other leaves from the first."""
    def rec(xs):
        x0 = xs[0]
        if isinstance(x0, dict):
            if set(x0) == {"wall_ms", "cpu_ms"}:
                return {k: min(x[k] for x in xs) for k in x0}
            return {k: rec([x[k] for x in xs]) for k in x0}
        if isinstance(x0, list) and x0 and isinstance(x0[0], dict):
            return [rec([x[i] for x in xs]) for i in range(len(x0))]
        return x0
    return rec(runs)


def table(go, fa, meta, rounds):
    n = meta["n"]
    out = []
    p = out.append
    p("# xmodal embedded index vs FAISS %s (faiss-cpu wheel), one thread each, best of %d alternating rounds"
      % (fa["faiss"], rounds))
    p("# data: %s" % meta["data"])
    p("# N = %s records, %d queries; Go %s with GOMAXPROCS=1 (default GOAMD64=v1 build), FAISS omp_set_num_threads(1)"
      % (format(n, ","), meta["q"], go["go"]))
    p("# xmodal kernels: %s" % go.get("kernels", "?"))
    p("# times: milliseconds, cpu = process user+sys (steadier on a shared machine), wall = elapsed;")
    p("# ratio = FAISS / xmodal (above 1: xmodal faster)")
    p("")
    p("%-44s %10s %10s %8s   %10s %10s %8s" % ("", "xmodal", "FAISS", "ratio", "xmodal", "FAISS", "ratio"))
    p("%-44s %10s %10s %8s   %10s %10s %8s" % ("", "cpu ms", "cpu ms", "cpu", "wall ms", "wall ms", "wall"))

    def row(label, g, f):
        p("%-44s %10.3f %10.3f %7.2fx   %10.3f %10.3f %7.2fx" % (
            label, g["cpu_ms"], f["cpu_ms"], f["cpu_ms"] / g["cpu_ms"], g["wall_ms"], f["wall_ms"], f["wall_ms"] / g["wall_ms"]))

    for bits in ("64", "256"):
        g, f = go["hamming"][bits], fa["hamming"][bits]
        row("Hamming top-100, %s bits, one query" % bits, g["single"], f["single"])
        row("Hamming top-100, %s bits, batch of 100" % bits, g["batch100"], f["batch100"])
    row("float exact top-10, 512 dims, one query", go["exact"]["single"], fa["exact"]["single"])
    row("float exact top-10, 512 dims, batch of 100", go["exact"]["batch100"], fa["exact"]["batch100"])
    p("(IndexBinaryFlat vs the hash plan; IndexFlatIP vs the exact plan. xmodal's batch is 100 single searches.)")
    p("")
    # agreement
    agree = all(go["hamming"][b]["distances"] == fa["hamming"][b]["distances"] for b in ("64", "256"))
    maxdiff = max(abs(a - b) for ga, fb in zip(go["exact"]["scores"], fa["exact"]["scores"]) for a, b in zip(ga, fb))
    p("agreement: top-100 Hamming distances of the first 5 queries %s; top-10 cosine of the first 5 queries differ by at most %.1e"
      % ("identical" if agree else "DIFFER", maxdiff))
    p("")
    p("Hybrid plan, 64-bit ITQ codes: Hamming top-C, then exact cosine over those C; K=10; recall@10 against exact")
    p("%10s %8s %6s %10s %12s %12s %9s %9s" % ("N", "C", "C/N", "recall@10", "hybrid cpu", "exact cpu", "speedup", "(wall)"))
    for size in sorted(go["hybrid"], key=int):
        for r in go["hybrid"][size]:
            p("%10s %8s %5.1f%% %10.3f %10.3fms %10.2fms %8.0fx %8.0fx" % (
                format(int(size), ","), format(r["c"], ","), 100 * r["fraction"], r["recall10"],
                r["hybrid"]["cpu_ms"], r["exact"]["cpu_ms"], r["exact"]["cpu_ms"] / r["hybrid"]["cpu_ms"],
                r["exact"]["wall_ms"] / r["hybrid"]["wall_ms"]))
    p("(speedup = exact time / hybrid time per query; target: recall@10 >= 0.95 at C <= 1% with >= 20x less time)")
    p("")
    if "memory" in go:
        m = go["memory"]
        p("Memory: %.0f heap bytes per record (%d records of 512 dims with typical metadata, 64-bit codes, PDQ on half;"
          " no thumbnails): arrays %s, the rest metadata" % (m["heap_bytes_per_record"], m["records"], m["arrays"]))
    p("PDQ images/s vs the pdqhash wheel: see bench/results/pdq.txt (Hash/fullres is what xmodal computes at ingest and for queries).")
    return "\n".join(out)


def load_emb(d, kind):
    import numpy as np
    lines = [json.loads(l) for l in open(os.path.join(d, kind + ".jsonl")) if l.strip()]
    npy = os.path.join(d, kind + ".npy")
    if os.path.exists(npy):
        vecs = np.load(npy).astype(np.float32)
    else:
        vecs = np.array([l["vector"] for l in lines], dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    sets = np.array([l.get("set", "query") for l in lines])
    return vecs, sets


def model_bench(a):
    import numpy as np
    emb = os.path.abspath(a.emb)
    out = os.path.join(emb, "bench")
    os.makedirs(out, exist_ok=True)
    imgs, iset = load_emb(emb, "images")
    txts, tset = load_emb(emb, "texts")
    db = imgs[iset == "db"]
    qtxt = txts[tset == "query"]
    q = qtxt[np.linspace(0, len(qtxt) - 1, a.q).astype(int)]
    fimg = db[np.linspace(0, len(db) - 1, min(a.fit, len(db))).astype(int)]
    dbt = txts[tset == "db"]
    src = dbt if len(dbt) else np.delete(qtxt, np.linspace(0, len(qtxt) - 1, a.q).astype(int), axis=0)
    ftxt = src[np.linspace(0, len(src) - 1, min(a.fit, len(src))).astype(int)]
    fit = min(len(fimg), len(ftxt))
    model = a.model_version
    for name, arr in (("db", db), ("q", q), ("fitimg", fimg[:fit]), ("fittxt", ftxt[:fit])):
        arr.astype("<f4").tofile(os.path.join(out, name + ".f32"))
    json.dump({"n": len(db), "q": len(q), "fit": fit, "dim": db.shape[1], "model": model}, open(os.path.join(out, "meta.json"), "w"))
    binary = os.path.join(out, "embedded.test")
    subprocess.run(["go", "test", "-c", "-tags", "bench", "-o", binary, "./sink/embedded/"], cwd=ROOT, check=True)
    env = dict(os.environ, XMODAL_HASHBENCH_MODEL=out, XMODAL_HASHBENCH_BITS=a.bits)
    if a.coder:
        env["XMODAL_HASHBENCH_CODER"] = os.path.abspath(a.coder)
    p = subprocess.run([binary, "-test.run", "^TestHashBenchModel$", "-test.v", "-test.timeout", "2h"],
                       cwd=os.path.join(ROOT, "sink", "embedded"), env=env, capture_output=True, text=True)
    for line in (p.stdout + p.stderr).splitlines():
        if line.startswith("[model]") or "FAIL" in line or "panic" in line:
            log("go: " + line)
    if p.returncode != 0:
        sys.exit("the Go side failed")
    r = json.load(open(os.path.join(out, "model.json")))
    print()
    print("# hybrid on model embeddings: %s, dim %d; database = %s images (set db), %d query-split captions as queries"
          % (r["model"], r["dim"], format(r["n"], ","), r["q"]))
    if a.coder:
        print("# 64 bits: the coder the model ships (%s, %s); other lengths: ITQ fitted on %d db images + %d db captions"
              % (r["coders"].get("64"), a.coder, r["fit"], r["fit"]))
    else:
        print("# ITQ coders %s fitted on %d db images + %d db captions" % (r["coders"], r["fit"], r["fit"]))
    print("# searches on one thread; cpu = process user+sys")
    print("%5s %10s %8s %6s %10s %12s %12s %9s %9s" % ("bits", "N", "C", "C/N", "recall@10", "hybrid cpu", "exact cpu", "speedup", "(wall)"))
    for x in r["hybrid"]:
        print("%5d %10s %8s %5.1f%% %10.3f %10.3fms %10.2fms %8.0fx %8.0fx" % (
            x["bits"], format(r["n"], ","), format(x["c"], ","), 100 * x["fraction"], x["recall10"], x["hybrid"]["cpu_ms"],
            x["exact"]["cpu_ms"], x["exact"]["cpu_ms"] / x["hybrid"]["cpu_ms"], x["exact"]["wall_ms"] / x["hybrid"]["wall_ms"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", nargs="?", default="all", choices=["all", "faiss", "model"])
    ap.add_argument("--emb", help="model: directory written by xmodal eval --write-embeddings")
    ap.add_argument("--fit", type=int, default=10000, help="model: samples per modality to fit ITQ on")
    ap.add_argument("--model-version", default="model", help="model: the model's name@version, for the report")
    ap.add_argument("--bits", default="64,128", help="model: code lengths to measure")
    ap.add_argument("--coder", help="model: use this parameter file for 64 bits (e.g. the model's hash.json)")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--q", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--dir", default=os.path.join(ROOT, ".cache", "hashbench"))
    ap.add_argument("--out", help="faiss: where to write its JSON")
    ap.add_argument("--reuse", action="store_true", help="reuse prepared data files of the same size")
    ap.add_argument("--tags", default="", help="Go build tags (purego: without the assembly kernels)")
    a = ap.parse_args()
    d = os.path.abspath(a.dir)
    if a.cmd == "model":
        model_bench(a)
        return
    if a.cmd == "faiss":
        faiss_measure(d, a.out)
        return
    os.makedirs(d, exist_ok=True)
    binary = os.path.join(d, "embedded.test")
    build = ["go", "test", "-c", "-o", binary]
    # The harness is behind the bench build tag (sink/embedded/sidebyside_test.go).
    build += ["-tags", ",".join(["bench"] + ([a.tags] if a.tags else []))]
    subprocess.run(build + ["./sink/embedded/"], cwd=ROOT, check=True)
    size = {"XMODAL_HASHBENCH_N": str(a.n), "XMODAL_HASHBENCH_Q": str(a.q)}
    meta_path = os.path.join(d, "meta.json")
    have = json.load(open(meta_path)) if os.path.exists(meta_path) else {}
    if not (a.reuse and have.get("n") == a.n and have.get("q") == a.q):
        log("preparing data (N=%d, %d queries) in %s" % (a.n, a.q, d))
        go_run(binary, d, dict(size, XMODAL_HASHBENCH_PHASE="prepare"))
    gos, fas = [], []
    for r in range(a.rounds):
        log("round %d/%d: xmodal" % (r + 1, a.rounds))
        out = os.path.join(d, "go-%d.json" % r)
        extra = dict(size, XMODAL_HASHBENCH_PHASE="measure", XMODAL_HASHBENCH_OUT=out, GOMAXPROCS="1")
        if r == 0:
            extra["XMODAL_HASHBENCH_MEMORY"] = "1"
        go_run(binary, d, extra)
        gos.append(json.load(open(out)))
        log("round %d/%d: FAISS" % (r + 1, a.rounds))
        fout = os.path.join(d, "faiss-%d.json" % r)
        subprocess.run([sys.executable, os.path.abspath(__file__), "faiss", "--dir", d, "--out", fout], check=True)
        fas.append(json.load(open(fout)))
    memory = gos[0].pop("memory", None)
    go = merge(gos)
    if memory:
        go["memory"] = memory
    fa = merge(fas)
    print()
    print(table(go, fa, json.load(open(meta_path)), a.rounds))


if __name__ == "__main__":
    main()
