#!/usr/bin/env python3
"""Image and text ingest: xmodal against the Python pipeline it replaces, on the
same ONNX model files, the same photos and the same machine, in alternating
rounds.

The peer is what a clip-retrieval-style indexer does: two decode workers
(a multiprocessing pool, as a torch DataLoader with num_workers=2) that open each
JPEG with Pillow, call Image.draft("RGB", (S, S)) so libjpeg-turbo reduces it in
the IDCT, and run transformers' CLIPImageProcessor (the model's size, crop, mean,
std); the main process runs onnxruntime (default session options) on batches of
32. For text: open_clip's tokenizer, padding trimmed to the longest text of each
batch of 32, onnxruntime. The peer makes no thumbnail, no PDQ hash, no binary
code and writes nothing; xmodal does all of that and writes every record to its
embedded index (bbolt, fsync per write), as `xmodal run` does
(workers/bench_ingest_test.go, BenchmarkIngestRound).

Each round runs both sides once on the case's posts (order alternating between
rounds); the ratio of a round is xmodal's posts/s over the peer's. Reported: the
median ratio and its spread (lowest and highest round), with each side's median
posts/s; and each side's CPU time per post (user + system of every thread and
process: xmodal's process, the peer's main process and its workers) with the
median of the per-round ratios peer/xmodal (above 1: xmodal uses less CPU per
post), which a shared machine disturbs less than posts/s. Model loading and pool start-up are outside the timed part on both
sides.

Photos: tools/bench_photos.py (run first). Cases:
  normal-demo, normal-parity   300 photos of 200-500 px, demo / parity model
  large-demo, large-parity     60 photos of 3000x2000 (q90)
  text-demo, text-parity       5,000 generated post texts

Usage, from the repository root with the tools venv (tools/setup.sh):
  .cache/venv/bin/python tools/bench_ingest_peer.py [--rounds 5] [--cases ...] [--mode fast]
"""

import argparse
import hashlib
import io
import json
import multiprocessing as mp
import os
import random
import re
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTOS = os.path.join(ROOT, ".cache", "bench-photos")
MODELS = {"demo": os.path.join(ROOT, "testdata", "models", "demo"),
          "parity": os.path.join(ROOT, "testdata", "models", "parity")}
BATCH = 32


def manifest(model_dir):
    with open(os.path.join(model_dir, "model.json")) as f:
        return json.load(f)


# ---- the peer: images ----

_proc = None
_draft = None


def _init_worker(model_dir):
    global _proc, _draft
    from transformers import CLIPImageProcessor
    im = manifest(model_dir)["image"]
    size = {"height": im["size"], "width": im["size"]} if im.get("resize") == "squash" else {"shortest_edge": im["size"]}
    crop = im.get("crop", im["size"])
    _proc = CLIPImageProcessor(size=size, crop_size={"height": crop, "width": crop},
                               image_mean=im["mean"], image_std=im["std"], do_convert_rgb=True)
    _draft = im["size"]


def _load(path):
    from PIL import Image
    im = Image.open(path)
    im.draft("RGB", (_draft, _draft))
    im = im.convert("RGB")
    return _proc(images=im, return_tensors="np")["pixel_values"][0]


class ImagePeer:
    def __init__(self, model_dir):
        import onnxruntime as ort
        m = manifest(model_dir)
        self.sess = ort.InferenceSession(os.path.join(model_dir, m["image"]["file"]), providers=["CPUExecutionProvider"])
        self.input = m["image"].get("input", "pixel_values")
        self.pool = mp.get_context("fork").Pool(2, initializer=_init_worker, initargs=(model_dir,))

    def pids(self):
        return [os.getpid()] + [w.pid for w in self.pool._pool]

    def run(self, files):
        start = time.perf_counter()
        batch, n = [], 0
        for x in self.pool.imap(_load, files, chunksize=4):
            batch.append(x)
            if len(batch) == BATCH:
                self.sess.run(None, {self.input: np.stack(batch)})
                n += len(batch)
                batch = []
        if batch:
            self.sess.run(None, {self.input: np.stack(batch)})
            n += len(batch)
        return n / (time.perf_counter() - start)

    def close(self):
        self.pool.terminate()


# ---- the peer: text ----

class TextPeer:
    def __init__(self, model_dir):
        import onnxruntime as ort
        from open_clip.tokenizer import SimpleTokenizer
        m = manifest(model_dir)
        t = m["text"]
        self.sess = ort.InferenceSession(os.path.join(model_dir, t["file"]), providers=["CPUExecutionProvider"])
        self.ids = t.get("input_ids", "input_ids")
        self.mask = t.get("attention_mask")
        self.ctx = t["tokenizer"]["context_length"]
        self.tok = SimpleTokenizer(context_length=self.ctx)

    def run(self, texts):
        start = time.perf_counter()
        for i in range(0, len(texts), BATCH):
            ids = self.tok(texts[i:i + BATCH]).numpy().astype(np.int64)
            mask = (ids != 0).astype(np.int64)
            used = int(mask.sum(axis=1).max())  # trim padding to the longest text
            feed = {self.ids: ids[:, :used]}
            if self.mask:
                feed[self.mask] = mask[:, :used]
            self.sess.run(None, feed)
        return len(texts) / (time.perf_counter() - start)

    def pids(self):
        return [os.getpid()]

    def close(self):
        pass


def make_texts(path, n=5000):
    if os.path.exists(path):
        return
    rng = random.Random(7)
    words = ("sunset bridge city rain coffee morning run marathon council bike lanes ramen night weather alert "
             "weekend photo friends family dog cat beach mountain train station music festival game score "
             "breaking news update election vote market price bread garden flower spring autumn snow").split()
    tags = ["#goldenhour", "#daily", "#news", "#food", "#travel", "#sport", "#weather", "#art"]
    with open(path, "w") as f:
        for i in range(n):
            k = rng.randint(4, 40)
            t = " ".join(rng.choice(words) for _ in range(k))
            if rng.random() < 0.5:
                t += " " + rng.choice(tags)
            f.write(t + "\n")


# ---- xmodal ----

def build_go():
    # One binary per checkout: .cache may be shared between worktrees (a
    # symlink), and a shared name would let one checkout's run time another's
    # build.
    tag = hashlib.sha256(os.path.realpath(ROOT).encode()).hexdigest()[:12]
    exe = os.path.join(ROOT, ".cache", f"workers-bench-{tag}.test")
    subprocess.run(["go", "test", "-c", "-o", exe, "./workers"], cwd=ROOT, check=True)
    return exe


def proc_cpu(pids):
    """CPU seconds (user + system) the processes have used."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def peer_round(peer, items):
    """The peer's posts/s and CPU milliseconds per post (every process)."""
    pids = peer.pids()
    c0 = proc_cpu(pids)
    rate = peer.run(items)
    return rate, (proc_cpu(pids) - c0) * 1000 / len(items)


def go_round(exe, model_dir, inp, mode, hash_side, windows="1"):
    env = dict(os.environ, XMODAL_BENCH_MODEL=model_dir, XMODAL_BENCH_INPUT=inp, XMODAL_BENCH_MODE=mode,
               XMODAL_BENCH_WINDOWS=windows)
    if hash_side is not None:
        env["XMODAL_BENCH_HASH_SIDE"] = str(hash_side)
    out = subprocess.run([exe, "-test.run", "^$", "-test.bench", "^BenchmarkIngestRound$", "-test.benchtime", "1x"],
                         cwd=os.path.join(ROOT, "workers"), env=env, capture_output=True, text=True)
    m = re.search(r"RESULT posts=(\d+) seconds=([\d.]+) posts_per_s=([\d.]+) cpu_ms_per_post=([\d.]+)", out.stdout)
    if out.returncode != 0 or not m:
        raise SystemExit("xmodal round failed:\n" + out.stdout[-3000:] + out.stderr[-3000:])
    return float(m.group(3)), float(m.group(4))


def cpu_model():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cases", default="normal-demo,normal-parity,large-demo,large-parity,text-demo,text-parity")
    ap.add_argument("--mode", default="fast", help="xmodal's image.decode_mode")
    ap.add_argument("--pdq-min-side", type=int, default=None, help="xmodal's image.pdq_min_side (default: its default)")
    ap.add_argument("--windows", choices=["on", "off"], default="off",
                    help="xmodal's image.neardup_windows (default off, as xmodal's default)")
    a = ap.parse_args()
    win = "1" if a.windows == "on" else "0"
    if not os.path.exists(os.path.join(PHOTOS, "manifest.json")):
        raise SystemExit("photo set missing: run tools/bench_photos.py first")
    texts_path = os.path.join(PHOTOS, "texts.txt")
    make_texts(texts_path)
    exe = build_go()
    side = "default" if a.pdq_min_side is None else a.pdq_min_side
    print(f"# xmodal vs the Python peer, {a.rounds} alternating rounds per case; xmodal image.decode_mode={a.mode}, "
          f"image.pdq_min_side={side}, image.neardup_windows={a.windows == 'on'}")
    print(f"# machine: {os.cpu_count()} cores, {cpu_model()}; shared with other work, so only the per-round ratios are meaningful")
    import onnxruntime, PIL, transformers, open_clip
    print(f"# peer: Pillow {PIL.__version__} (draft), transformers {transformers.__version__} CLIPImageProcessor, "
          f"onnxruntime {onnxruntime.__version__}, open_clip {open_clip.__version__}; 2 decode workers, batches of {BATCH}")
    print("# cpu: CPU milliseconds per post (user + system, every thread and process of each side); cpu ratio = peer's / xmodal's")
    print(f"{'case':<15} {'posts':>6} {'xmodal/s':>9} {'peer/s':>8} {'ratio':>6} {'spread':>13} {'cpu x/peer':>11} {'cpu ratio':>9}")
    for case in a.cases.split(","):
        kind, model = case.split("-")
        mdir = MODELS[model]
        if kind == "text":
            with open(texts_path) as f:
                items = [l.rstrip("\n") for l in f if l.strip()]
            inp = texts_path
            peer = TextPeer(mdir)
        else:
            d = os.path.join(PHOTOS, kind)
            items = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".jpg"))
            inp = d
            peer = ImagePeer(mdir)
        peer.run(items[:64])  # warm-up
        ours, theirs, ratios, ocpu, tcpu, cratios = [], [], [], [], [], []
        for r in range(a.rounds):
            if r % 2 == 0:
                g, gc = go_round(exe, mdir, inp, a.mode, a.pdq_min_side, win)
                p, pc = peer_round(peer, items)
            else:
                p, pc = peer_round(peer, items)
                g, gc = go_round(exe, mdir, inp, a.mode, a.pdq_min_side, win)
            ours.append(g)
            theirs.append(p)
            ratios.append(g / p)
            ocpu.append(gc)
            tcpu.append(pc)
            cratios.append(pc / gc)
            print(f"  {case} round {r + 1}: xmodal {g:.1f}/s, peer {p:.1f}/s, ratio {g / p:.2f}; "
                  f"cpu ms/post xmodal {gc:.2f}, peer {pc:.2f}, ratio {pc / gc:.2f}", flush=True)
        peer.close()
        print(f"{case:<15} {len(items):>6} {statistics.median(ours):>9.1f} {statistics.median(theirs):>8.1f} "
              f"{statistics.median(ratios):>6.2f} {min(ratios):>6.2f}-{max(ratios):<6.2f} "
              f"{statistics.median(ocpu):>5.2f}/{statistics.median(tcpu):<5.2f} {statistics.median(cratios):>9.2f}", flush=True)


if __name__ == "__main__":
    main()
