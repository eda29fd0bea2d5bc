#!/usr/bin/env python3
"""Trains xmodal's bundled demo model from scratch on the synthetic dataset
that `xmodal gen` writes, and exports it in the two-file CLIP layout that
encoders.Load reads (vision_model.onnx: pixel_values -> image_embeds;
text_model.onnx: input_ids + attention_mask -> text_embeds; model.json).

    .cache/venv/bin/python tools/train_demo_model.py --out testdata/models/demo

One command, CPU only, deterministic for a fixed seed, thread count and
library versions. Steps:

 1. builds the Go binary and runs `xmodal gen` for the train split (64,000
    pictures in hard-negative families of 4, 5 captions each) and the val
    split, writing pixels.npy (the uint8 model input that Go's imageprep
    produces at inference: decode, Pillow-exact bicubic "squash" resize to
    64x64) and tokens.npy (the Go CLIP BPE tokenizer's ids), so training
    sees exactly what xmodal serves;
 2. trains a dual-tower model: a compact CNN over 64x64 pixels and a
    2-layer transformer over CLIP token ids (remapped inside the graph to the
    few hundred ids the captions use; every other id maps to an UNK row),
    embedding dimension 256, symmetric InfoNCE with a learnable temperature
    (in-batch negatives; a batch holds whole families, so every picture
    meets near-identical ones; pairs with identical scenes are not counted
    as negatives), plus an auxiliary loss: a linear head shared by both
    towers predicts, from the normalised embedding, each position's object
    (colour, shape, size, or empty) and the colour/shape labels;
 3. exports both towers to ONNX, checks onnxruntime against PyTorch, writes
    model.json and train_log.json, and prints the val retrieval scores.

Scores on the held-out test split come from `xmodal eval` (docs/eval.md).
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
VOCAB = 49408
COLOURS = ["red", "orange", "yellow", "green", "blue", "purple", "white", "black"]
SHAPES = ["circle", "square", "triangle", "star", "heart", "cross", "diamond", "moon"]
SIZES = ["small", "large"]
POSITIONS = ["top-left", "top-right", "center", "bottom-left", "bottom-right"]


# ---------------------------------------------------------------- data

def run_gen(xmodal, split, n, out, size, context, extra=()):
    meta_path = os.path.join(out, "meta.json")
    cmd = [xmodal, "gen", "--split", split, "--n", str(n), "--out", out, "--no-images",
           "--pixels", str(size), "--resize", "squash", "--context", str(context), *extra]
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            m = json.load(f)
        if m.get("n") == n and m.get("pixel_size") == size and m.get("context") == context and m.get("split") == split:
            print("reusing %s (%s)" % (out, split), flush=True)
            return m
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    with open(meta_path) as f:
        return json.load(f)


def load_split(d):
    pixels = np.load(os.path.join(d, "pixels.npy"), mmap_mode="r")
    tokens = np.load(os.path.join(d, "tokens.npy"))
    n = pixels.shape[0]
    slots = np.zeros((n, len(POSITIONS), 3), dtype=np.int64)  # colour+1, shape+1, size+1 (0 = empty)
    labels = np.zeros((n, len(COLOURS) + len(SHAPES)), dtype=np.float32)
    keys, nobj, family = [], np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    with open(os.path.join(d, "items.jsonl")) as f:
        for i, line in enumerate(f):
            it = json.loads(line)
            for o in it["scene"]["objects"]:
                p = POSITIONS.index(o["position"])
                slots[i, p] = (COLOURS.index(o["colour"]) + 1, SHAPES.index(o["shape"]) + 1, SIZES.index(o["size"]) + 1)
            labels[i] = it["label_vector"]
            keys.append(it["scene_key"])
            nobj[i] = it["n_objects"]
            family[i] = it["family"]
    uniq = {k: j for j, k in enumerate(sorted(set(keys)))}
    key_ids = np.array([uniq[k] for k in keys], dtype=np.int64)
    return dict(pixels=np.ascontiguousarray(pixels), tokens=tokens.astype(np.int64), slots=slots, labels=labels,
                keys=key_ids, nobj=nobj, family=family, n=n)


# ---------------------------------------------------------------- model

def cbr(i, o, k, s, p):
    return nn.Sequential(nn.Conv2d(i, o, k, s, p, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))


class Res(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(x + self.bn(self.conv(x)))


class ImageTower(nn.Module):
    """64x64 RGB -> 4x4 patchify stem -> residual convs at 16x16, 8x8, 4x4
    -> flatten (keeps where things are) -> MLP -> dim."""

    def __init__(self, dim, size=64, width=(48, 64, 128, 192), hidden=384):
        super().__init__()
        w0, w1, w2, w3 = width
        self.net = nn.Sequential(
            cbr(3, w0, 4, 4, 0), cbr(w0, w1, 3, 1, 1), Res(w1),
            cbr(w1, w2, 2, 2, 0), Res(w2),
            cbr(w2, w3, 2, 2, 0), Res(w3),
        )
        side = size // 16
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(w3 * side * side, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, pixel_values):
        return self.head(self.net(pixel_values))  # [label logits | scene part]

    def normalise_u8(self, u8):
        """uint8 crops -> the normalised tensor xmodal feeds (float32 maths as in imageprep)."""
        x = (u8.to(torch.float64) * (1.0 / 255.0)).to(torch.float32)
        return ((x - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1))


class Block(nn.Module):
    def __init__(self, d, heads, ff):
        super().__init__()
        self.h = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.o = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Linear(ff, d))

    def forward(self, x, bias):
        b, l, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, l, 3, self.h, d // self.h).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-1, -2) * (1.0 / math.sqrt(d // self.h)) + bias, dim=-1)
        x = x + self.o((a @ v).transpose(1, 2).reshape(b, l, d))
        return x + self.ff(self.ln2(x))


class TextTower(nn.Module):
    """CLIP token ids -> remap table (49408 -> small vocabulary, unknown ids
    -> UNK) -> embeddings + positions -> 2 pre-LN transformer blocks
    (bidirectional, padding masked) -> masked mean -> dim."""

    def __init__(self, remap, dim, context, d=128, heads=4, ff=384, layers=2):
        super().__init__()
        self.register_buffer("remap", remap.to(torch.int64))
        n_vocab = int(remap.max()) + 1
        self.tok = nn.Embedding(n_vocab, d)
        self.pos = nn.Parameter(torch.zeros(context, d))
        nn.init.normal_(self.pos, std=0.02)
        nn.init.normal_(self.tok.weight, std=0.02)
        self.blocks = nn.ModuleList(Block(d, heads, ff) for _ in range(layers))
        self.ln = nn.LayerNorm(d)
        self.proj = nn.Linear(d, dim)

    def forward(self, input_ids, attention_mask):
        ids = torch.clamp(input_ids, 0, VOCAB - 1)
        x = self.tok(self.remap[ids])
        x = x + self.pos[: ids.shape[1]].unsqueeze(0)
        m = attention_mask.to(x.dtype)
        bias = ((1.0 - m) * -1e4).unsqueeze(1).unsqueeze(1)  # [b,1,1,l]
        for blk in self.blocks:
            x = blk(x, bias)
        x = self.ln(x)
        pooled = (x * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp(min=1.0)
        return self.proj(pooled)


class DualTower(nn.Module):
    def __init__(self, remap, dim, context, size):
        super().__init__()
        self.image = ImageTower(dim, size)
        self.text = TextTower(remap, dim, context)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        # Label-relevance loss: sigmoid(scale * cos + bias) ~ "shares a label".
        self.rel_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.rel_bias = nn.Parameter(torch.tensor(-3.0))
        # Auxiliary head shared by both towers, on the scene block: per position colour(9) shape(9) size(3).
        self.aux = nn.Linear(dim - N_LABELS, len(POSITIONS) * (9 + 9 + 3))


N_LABELS = len(COLOURS) + len(SHAPES)


def embed(raw, label_weight):
    """The embedding both towers output: a label block and a scene block,
    each unit length, weighted so that the whole is unit length:
    [sqrt(w) * normalise(sigmoid(label logits)), sqrt(1-w) * normalise(rest)].
    The cosine of two embeddings is then w * (overlap of their predicted
    colour/shape labels) + (1-w) * (similarity of their scene parts)."""
    lab = F.normalize(torch.sigmoid(raw[:, :N_LABELS]), dim=-1)
    rest = F.normalize(raw[:, N_LABELS:], dim=-1)
    return torch.cat([lab * math.sqrt(label_weight), rest * math.sqrt(1 - label_weight)], dim=-1)


class Exported(nn.Module):
    def __init__(self, tower, label_weight):
        super().__init__()
        self.t, self.w = tower, label_weight

    def forward(self, *args):
        return embed(self.t(*args), self.w)


# ---------------------------------------------------------------- training

def aux_loss(head, raw, slots, labels):
    """Scene supervision: each position's object (colour, shape, size or
    empty) from the normalised scene block through the shared linear head,
    and the colour/shape labels from the label logits."""
    n = len(POSITIONS)
    per = head(F.normalize(raw[:, N_LABELS:], dim=-1)).view(-1, n, 21)
    loss = F.cross_entropy(per[:, :, :9].reshape(-1, 9), slots[:, :, 0].reshape(-1))
    loss = loss + F.cross_entropy(per[:, :, 9:18].reshape(-1, 9), slots[:, :, 1].reshape(-1))
    loss = loss + F.cross_entropy(per[:, :, 18:21].reshape(-1, 3), slots[:, :, 2].reshape(-1))
    loss = loss + F.binary_cross_entropy_with_logits(raw[:, :N_LABELS], labels) * 4
    return loss


def clip_loss(img, txt, scale, keys):
    logits = scale * img @ txt.t()
    same = keys.unsqueeze(0) == keys.unsqueeze(1)
    eye = torch.eye(len(keys), dtype=torch.bool)
    logits = logits.masked_fill(same & ~eye, -1e4)  # identical scenes are not negatives
    target = torch.arange(len(keys))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


def token_mask(tok):
    """The attention mask xmodal's tokenizer gives: 1 up to and including EOT
    (id 0 is a real token, "!", so it cannot mark padding)."""
    eot = (tok == 49407).to(torch.int64).argmax(1, keepdim=True)
    return (torch.arange(tok.shape[1]).unsqueeze(0) <= eot).to(torch.int64)


def relevance_loss(img, txt, labels, log_scale, bias):
    """Every image-caption pair in the batch: does it share a label? A
    sigmoid over the cosine pushes relevant pairs above one threshold and
    irrelevant ones below it, which is what MAP with label relevance rewards."""
    rel = ((labels @ labels.t()) > 0).to(img.dtype)
    logits = log_scale.exp() * (img @ txt.t()) + bias
    return F.binary_cross_entropy_with_logits(logits, rel)


def pad_trim(tok):
    """Drop all-padding columns (the text tower is padding-invariant)."""
    mask = token_mask(tok)
    used = int(mask.sum(1).max())
    return tok[:, :used], mask[:, :used]


@torch.no_grad()
def embed_split(model, data, idx, label_weight, cap=0, bs=500):
    model.eval()
    ims, txs = [], []
    for s in range(0, len(idx), bs):
        b = idx[s:s + bs]
        px = model.image.normalise_u8(torch.from_numpy(data["pixels"][b])).contiguous(memory_format=torch.channels_last)
        ims.append(embed(model.image(px), label_weight))
        ids, mask = pad_trim(torch.from_numpy(data["tokens"][b, cap]))
        txs.append(embed(model.text(ids, mask), label_weight))
    model.train()
    return torch.cat(ims), torch.cat(txs)


def semantic_recall(img, txt, keys, labels):
    """R@1 / R@10, semantic (scene key match), one caption per picture, and
    label MAP@ALL within the split."""
    keys, labels = torch.from_numpy(keys), torch.from_numpy(labels)
    rel = (labels @ labels.t()) > 0
    s = txt @ img.t()
    out = {}
    for name, sim in (("tqi", s), ("iqt", s.t())):
        top = sim.topk(10, dim=1).indices
        hit = keys[top] == keys.unsqueeze(1)
        out[name + "_r1"] = round(float(hit[:, 0].float().mean()), 4)
        out[name + "_r10"] = round(float(hit.any(1).float().mean()), 4)
        order = sim.argsort(dim=1, descending=True, stable=True)
        r = torch.gather(rel, 1, order).float()
        prec = r.cumsum(1) / torch.arange(1, r.shape[1] + 1)
        ap = (prec * r).sum(1) / r.sum(1).clamp(min=1)
        out[name + "_map"] = round(float(ap.mean()), 4)
    return out


def train(args, tr, va, remap):
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = DualTower(remap, args.dim, args.context, args.size)
    model.image.to(memory_format=torch.channels_last)
    decay, no_decay = [], []
    for n_, p in model.named_parameters():
        (no_decay if p.ndim < 2 or n_.endswith("pos") or "logit_scale" in n_ else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.98))
    n_fam = tr["n"] // args.family
    fams_per_batch = args.batch // args.family
    steps_per_epoch = n_fam // fams_per_batch
    total = steps_per_epoch * args.epochs
    warm = min(300, total // 10)
    unk_id = int(torch.nonzero(remap[:49406] == 0)[0])  # a CLIP id no training caption uses -> UNK
    log = []
    t0, c0 = time.time(), time.process_time()
    step = 0
    va_idx = np.arange(va["n"])
    for ep in range(args.epochs):
        order = rng.permutation(n_fam)
        for s in range(steps_per_epoch):
            fam = order[s * fams_per_batch:(s + 1) * fams_per_batch]
            idx = (fam[:, None] * args.family + np.arange(args.family)[None, :]).reshape(-1)
            cap = rng.integers(0, tr["tokens"].shape[1], size=len(idx))
            lr = args.lr * (step + 1) / warm if step < warm else \
                args.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
            for g in opt.param_groups:
                g["lr"] = lr
            px = model.image.normalise_u8(torch.from_numpy(tr["pixels"][idx])).contiguous(memory_format=torch.channels_last)
            ids, mask = pad_trim(torch.from_numpy(tr["tokens"][idx, cap]))
            if args.word_dropout > 0:  # teach the UNK row
                drop = torch.from_numpy(rng.random(ids.shape) < args.word_dropout) & (mask == 1) & (ids < 49406)
                ids = torch.where(drop, torch.full_like(ids, unk_id), ids)
            raw_i, raw_t = model.image(px), model.text(ids, mask)
            img, txt = embed(raw_i, args.label_weight), embed(raw_t, args.label_weight)
            keys = torch.from_numpy(tr["keys"][idx])
            scale = model.logit_scale.exp().clamp(max=100)
            l_clip = clip_loss(img, txt, scale, keys)
            slots, labels = torch.from_numpy(tr["slots"][idx]), torch.from_numpy(tr["labels"][idx])
            l_aux = aux_loss(model.aux, raw_i, slots, labels) + aux_loss(model.aux, raw_t, slots, labels)
            l_rel = relevance_loss(img, txt, labels, model.rel_scale, model.rel_bias) if args.rel > 0 else torch.zeros(())
            loss = l_clip + args.aux * l_aux + args.rel * l_rel
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % 50 == 0 or step == 1:
                print("ep %d step %d/%d loss %.4f clip %.4f aux %.4f rel %.4f scale %.1f lr %.2e %.0fs (cpu %.0fs)" % (
                    ep, step, total, loss.item(), l_clip.item(), l_aux.item(), l_rel.item(), scale.item(), lr,
                    time.time() - t0, time.process_time() - c0), flush=True)
        img, txt = embed_split(model, va, va_idx, args.label_weight)
        r = semantic_recall(img, txt, va["keys"], va["labels"])
        r.update(epoch=ep + 1, step=step, seconds=round(time.time() - t0, 1), cpu_seconds=round(time.process_time() - c0, 1))
        log.append(r)
        print("val", json.dumps(r), flush=True)
    return model, log


# ---------------------------------------------------------------- export

def export(model, out, args, va):
    import onnx
    import onnxruntime as ort
    model.eval()
    os.makedirs(out, exist_ok=True)
    vpath, tpath = os.path.join(out, "vision_model.onnx"), os.path.join(out, "text_model.onnx")
    px = model.image.normalise_u8(torch.from_numpy(va["pixels"][:4]))
    ids = torch.from_numpy(va["tokens"][:4, 0])
    mask = token_mask(ids)
    kw = dict(opset_version=17, do_constant_folding=True, dynamo=False)
    torch.onnx.export(Exported(model.image, args.label_weight).eval(), (px,), vpath, input_names=["pixel_values"],
                      output_names=["image_embeds"],
                      dynamic_axes={"pixel_values": {0: "batch_size"}, "image_embeds": {0: "batch_size"}}, **kw)
    torch.onnx.export(Exported(model.text, args.label_weight).eval(), (ids, mask), tpath, input_names=["input_ids", "attention_mask"],
                      output_names=["text_embeds"],
                      dynamic_axes={"input_ids": {0: "batch_size", 1: "sequence_length"},
                                    "attention_mask": {0: "batch_size", 1: "sequence_length"},
                                    "text_embeds": {0: "batch_size"}}, **kw)
    for p in (vpath, tpath):  # one self-contained file each, no producer noise
        m = onnx.load(p)
        m.producer_name, m.producer_version = "xmodal tools/train_demo_model.py", "1"
        onnx.save(m, p)
    model.eval()  # the exporter restores the wrappers' mode onto the towers
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    v = ort.InferenceSession(vpath, so, providers=["CPUExecutionProvider"])
    t = ort.InferenceSession(tpath, so, providers=["CPUExecutionProvider"])
    n = 64
    px = model.image.normalise_u8(torch.from_numpy(va["pixels"][:n]))
    ids = torch.from_numpy(va["tokens"][:n, 0])
    mask = token_mask(ids)
    with torch.no_grad():
        ti = embed(model.image(px), args.label_weight).numpy()
        tt = embed(model.text(ids, mask), args.label_weight).numpy()
    oi = v.run(["image_embeds"], {"pixel_values": px.numpy()})[0]
    ot = t.run(["text_embeds"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    ci, ct = (oi * ti).sum(1).min(), (ot * tt).sum(1).min()
    # trimmed padding gives the same embedding
    ids2, mask2 = pad_trim(ids)
    ot2 = t.run(["text_embeds"], {"input_ids": ids2.numpy(), "attention_mask": mask2.numpy()})[0]
    print("onnxruntime vs torch: image cos min %.6f, text cos min %.6f, trimmed-vs-padded text max diff %.2e" % (
        ci, ct, np.abs(ot2 - ot).max()), flush=True)
    assert ci > 0.9999 and ct > 0.9999 and np.abs(ot2 - ot).max() < 1e-4
    manifest = {
        "name": "xmodal-demo",
        "version": args.version,
        "dim": args.dim,
        "image": {"file": "vision_model.onnx", "input": "pixel_values", "output": "image_embeds",
                  "size": args.size, "crop": args.size, "resize": "squash", "mean": CLIP_MEAN, "std": CLIP_STD},
        "text": {"file": "text_model.onnx", "input_ids": "input_ids", "attention_mask": "attention_mask",
                 "output": "text_embeds", "input_ids_dtype": "int64",
                 "tokenizer": {"kind": "clip-bpe", "context_length": args.context}},
    }
    with open(os.path.join(out, "model.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    return {p: os.path.getsize(os.path.join(out, p)) for p in ("vision_model.onnx", "text_model.onnx")}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "testdata/models/demo"))
    ap.add_argument("--data", default=os.path.join(ROOT, ".cache/demo-train"), help="where the generated splits go")
    ap.add_argument("--xmodal", help="xmodal binary (default: go build ./cmd/xmodal into .cache/bin)")
    ap.add_argument("--n-train", type=int, default=64000)
    ap.add_argument("--n-val", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--family", type=int, default=4)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--aux", type=float, default=0.5, help="weight of the auxiliary scene loss")
    ap.add_argument("--rel", type=float, default=0.0, help="weight of the pairwise label-relevance loss (off)")
    ap.add_argument("--label-weight", type=float, default=0.8,
                    help="share of the cosine carried by the label block of the embedding")
    ap.add_argument("--word-dropout", type=float, default=0.02)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    ap.add_argument("--seed", type=int, default=20261128)
    ap.add_argument("--version", default="1")
    args = ap.parse_args()
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    t_start, c_start = time.time(), time.process_time()

    xmodal = args.xmodal
    if not xmodal:
        xmodal = os.path.join(ROOT, ".cache/bin/xmodal")
        os.makedirs(os.path.dirname(xmodal), exist_ok=True)
        print("+ go build -o %s ./cmd/xmodal" % xmodal, flush=True)
        subprocess.run(["go", "build", "-o", xmodal, "./cmd/xmodal"], cwd=ROOT, check=True)
    t_gen = time.time()
    mt = run_gen(xmodal, "train", args.n_train, os.path.join(args.data, "train"), args.size, args.context,
                 ["--family", str(args.family)])
    mv = run_gen(xmodal, "val", args.n_val, os.path.join(args.data, "val"), args.size, args.context)
    gen_s = time.time() - t_gen
    tr, va = load_split(os.path.join(args.data, "train")), load_split(os.path.join(args.data, "val"))
    print("train %d pictures, val %d; generation %.0fs" % (tr["n"], va["n"], gen_s), flush=True)

    # Vocabulary: every CLIP id the training captions use; index 0 is UNK.
    toks = torch.from_numpy(tr["tokens"].reshape(-1, tr["tokens"].shape[-1]))
    used = np.unique(toks[token_mask(toks).bool()].numpy())
    remap = torch.zeros(VOCAB, dtype=torch.int64)
    remap[torch.from_numpy(used)] = torch.arange(1, len(used) + 1)
    # the UNK row is index 0; remap.max() is the vocabulary size - 1
    print("text vocabulary: %d CLIP ids (+UNK)" % len(used), flush=True)

    model, log = train(args, tr, va, remap)
    train_s = time.time() - t_start
    sizes = export(model, args.out, args, va)
    total_s, cpu_s = time.time() - t_start, time.process_time() - c_start
    info = {
        "command": " ".join([os.path.relpath(sys.executable, ROOT)] + [os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
        "args": vars(args) | {"out": os.path.relpath(args.out, ROOT), "data": os.path.relpath(args.data, ROOT),
                              "xmodal": None},
        "train_split": {k: mt[k] for k in ("split", "seed", "n", "family", "captions", "pixel_size", "resize", "context")},
        "val_split": {k: mv[k] for k in ("split", "seed", "n", "captions")},
        "vocabulary": len(used),
        "params": {"image": sum(p.numel() for p in model.image.parameters()),
                   "text": sum(p.numel() for p in model.text.parameters())},
        "val": log,
        "generation_seconds": round(gen_s, 1),
        "wall_seconds": round(total_s, 1),
        "process_cpu_seconds": round(cpu_s, 1),
        "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "numpy": np.__version__, "python": sys.version.split()[0]},
        "onnx_bytes": sizes,
    }
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump(info, f, indent=1)
        f.write("\n")
    print("wrote %s: %s (%.2f MB); wall %.0fs, process cpu %.0fs" % (
        args.out, sizes, sum(sizes.values()) / 1e6, total_s, cpu_s), flush=True)


if __name__ == "__main__":
    main()
