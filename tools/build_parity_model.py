#!/usr/bin/env python3
"""Builds xmodal's parity model: a randomly initialised CLIP with the real
ViT-B/32 architecture (patch 32, image 224, 49408-token vocabulary, 77
positions) but reduced width and depth, exported to ONNX in the two-file
layout that transformers.js uses, plus golden inputs and outputs that the Go
tests in encoders/ reproduce.

    .cache/venv/bin/python tools/build_parity_model.py          # testdata/models/parity (committed)
    .cache/venv/bin/python tools/build_parity_model.py --full   # .cache/models/clip-vit-b32-random (not committed)
    .cache/venv/bin/python tools/build_parity_model.py --from-pretrained openai/clip-vit-base-patch32 --out models/clip-vit-b32

Outputs (default mode), under testdata/models/parity/:
    model.json                 manifest (see encoders/manifest.go)
    vision_model.onnx          pixel_values [N,3,224,224] f32 -> image_embeds [N,D] f32
    text_model.onnx            input_ids [N,L] i64, attention_mask [N,L] i64 -> text_embeds [N,D] f32
    goldens/goldens.json       texts, open_clip token ids, image file names, embeddings (L2-normalised)
    goldens/pixels.f32le.gz    the CLIPImageProcessor pixel tensors, float32 little-endian, gzip

--full writes the full-size ViT-B/32 (vision width 768, text width 512, 12
layers each, projection 512) with random weights in the transformers.js
layout without a manifest (onnx/vision_model.onnx, onnx/text_model.onnx,
preprocessor_config.json), for benchmarks and to exercise the "use a real
CLIP" path (docs/use-real-clip.md).

--from-pretrained NAME_OR_DIR exports a real transformers CLIP checkpoint
(e.g. openai/clip-vit-base-patch32, or a local save_pretrained directory)
through the same code, into the same manifest-less layout, with goldens that
`XMODAL_TEST_MODEL=DIR go test ./encoders -run TestExportedModel` checks.

Run with the tools venv (tools/setup.sh). Deterministic for a fixed seed and
library versions.
"""

import argparse
import gzip
import json
import os
import sys

import numpy as np
import torch
from PIL import Image
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Fixed texts: plain captions, case, punctuation, numbers, accents, emoji, an
# HTML entity, extra whitespace, an empty string and one that truncates at 77.
TEXTS = [
    "a photo of a cat",
    "A Bridge over the River at Sunset!",
    "two dogs playing in the snow, 2024",
    "café crème brûlée — très bon",
    "I ❤️ NY 🍕🍕 #pizza @friend",
    "Tom &amp; Jerry   &lt;3\n\tnew  line",
    "",
    " ".join(["the quick brown fox jumps over the lazy dog"] * 12),
]

# Photos from the repository's PDQ fixtures: large landscape (downscale),
# portrait, tiny (upscale), three 256x256 scenes, and an opaque RGBA PNG.
IMAGES = [
    "testdata/pdq/images/bridge-mods/aaa-orig.jpg",
    "testdata/pdq/images/misc/small.jpg",
    "testdata/pdq/images/misc/wee.jpg",
    "testdata/pdq/images/labelme-subset/q0122.jpg",
    "testdata/pdq/images/labelme-subset/q2821.jpg",
    "testdata/pdq/images/misc/c.png",
]

INIT_FACTOR = 2.0

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def configs(full):
    if full:
        vision = CLIPVisionConfig(
            hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
            num_attention_heads=12, image_size=224, patch_size=32, projection_dim=512)
        text = CLIPTextConfig(
            vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
            num_attention_heads=8, max_position_embeddings=77, projection_dim=512,
            bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
        proj = 512
    else:
        # The token table (49408 x text width) dominates the size: width 32
        # keeps it at 6.3 MB in fp32, so both files stay under 10 MB.
        vision = CLIPVisionConfig(
            hidden_size=64, intermediate_size=256, num_hidden_layers=2,
            num_attention_heads=2, image_size=224, patch_size=32, projection_dim=64)
        text = CLIPTextConfig(
            vocab_size=49408, hidden_size=32, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=2, max_position_embeddings=77, projection_dim=64,
            bos_token_id=49406, eos_token_id=49407, pad_token_id=1)
        proj = 64
    # initializer_factor 2 (CLIP's default is 1) spreads the random embeddings
    # apart: at 1 two of the six photos embed at cosine 0.993, too close for
    # the parity tests' control; at 2 the closest pair is 0.88.
    vision.initializer_factor = text.initializer_factor = INIT_FACTOR
    cfg = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=proj,
                     initializer_factor=INIT_FACTOR)
    cfg._attn_implementation = "eager"
    return cfg


def build(cfg, seed, pretrained=None):
    torch.manual_seed(seed)
    if pretrained:
        clip = CLIPModel.from_pretrained(pretrained, attn_implementation="eager").eval()
        cfg = clip.config
        cfg.vision_config._attn_implementation = cfg.text_config._attn_implementation = "eager"
    else:
        clip = CLIPModel(cfg).eval()
    vis = CLIPVisionModelWithProjection(cfg.vision_config).eval()
    txt = CLIPTextModelWithProjection(cfg.text_config).eval()
    sd = clip.state_dict()
    vis.load_state_dict({k: v for k, v in sd.items() if k.startswith(("vision_model.", "visual_projection."))})
    txt.load_state_dict({k: v for k, v in sd.items() if k.startswith(("text_model.", "text_projection."))})
    return clip, vis, txt


class VisionTower(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, pixel_values):
        return self.m(pixel_values=pixel_values).image_embeds


class TextTower(torch.nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, input_ids, attention_mask):
        return self.m(input_ids=input_ids, attention_mask=attention_mask).text_embeds


def export(vis, txt, vision_path, text_path, image_size=224):
    os.makedirs(os.path.dirname(vision_path), exist_ok=True)
    kw = dict(opset_version=17, do_constant_folding=True)
    try:
        torch.onnx.export(VisionTower(vis), (torch.zeros(1, 3, image_size, image_size),), vision_path,
                          input_names=["pixel_values"], output_names=["image_embeds"],
                          dynamic_axes={"pixel_values": {0: "batch_size"}, "image_embeds": {0: "batch_size"}},
                          dynamo=False, **kw)
        ids = torch.tensor([[49406, 320, 1125, 49407] + [0] * 73])
        torch.onnx.export(TextTower(txt), (ids, torch.ones_like(ids)), text_path,
                          input_names=["input_ids", "attention_mask"], output_names=["text_embeds"],
                          dynamic_axes={"input_ids": {0: "batch_size", 1: "sequence_length"},
                                        "attention_mask": {0: "batch_size", 1: "sequence_length"},
                                        "text_embeds": {0: "batch_size"}},
                          dynamo=False, **kw)
    except TypeError:  # torch without the dynamo argument
        raise SystemExit("this torch has no dynamo=False export; use torch>=2.5 (tools/requirements.txt)")


def tokenize(texts):
    """open_clip's SimpleTokenizer is the reference for the Go tokenizer."""
    try:
        import open_clip
        tok = open_clip.get_tokenizer("ViT-B-32")
        ids = tok(texts).numpy().astype(np.int64)
        source = "open_clip %s SimpleTokenizer (ViT-B-32)" % open_clip.__version__
    except ImportError:
        from transformers import CLIPTokenizer
        print("open_clip not importable: falling back to transformers CLIPTokenizer "
              "(pads with 0 here to match open_clip; lowercasing/cleaning may differ)", file=sys.stderr)
        tok = CLIPTokenizer.from_pretrained("openai/clip-vit-base-patch32")
        enc = tok(texts, padding="max_length", max_length=77, truncation=True)
        ids = np.array(enc["input_ids"], dtype=np.int64)
        for row in ids:  # open_clip pads with 0 after EOT
            eot = int(np.argmax(row == 49407))
            row[eot + 1:] = 0
        source = "transformers CLIPTokenizer (fallback)"
    mask = (ids != 0).astype(np.int64)
    return ids, mask, source


def preprocess(paths, pretrained=None):
    if pretrained:
        proc = CLIPImageProcessor.from_pretrained(pretrained)
    else:
        proc = CLIPImageProcessor(
            do_resize=True, size={"shortest_edge": 224}, resample=3,  # PIL bicubic
            do_center_crop=True, crop_size={"height": 224, "width": 224},
            do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
            image_mean=CLIP_MEAN, image_std=CLIP_STD, do_convert_rgb=True)
    imgs = [Image.open(os.path.join(ROOT, p)).convert("RGB") for p in paths]
    return proc(images=imgs, return_tensors="np")["pixel_values"].astype(np.float32), proc


def dump_rows(obj):
    """JSON with one line per top-level key and per row of a matrix."""
    parts = []
    for k, v in obj.items():
        if isinstance(v, list) and v and isinstance(v[0], list):
            rows = ",\n  ".join(json.dumps(r, ensure_ascii=False) for r in v)
            parts.append(" %s: [\n  %s\n ]" % (json.dumps(k), rows))
        else:
            parts.append(" %s: %s" % (json.dumps(k), json.dumps(v, ensure_ascii=False)))
    return "{\n" + ",\n".join(parts) + "\n}\n"


def l2(x):
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n == 0, 1, n)


def cos_rows(a, b):
    return np.sum(l2(a) * l2(b), axis=1)


def check_ort(vision_path, text_path, pixels, ids, mask, img_emb, txt_emb):
    import onnxruntime as ort
    so = ort.SessionOptions()
    v = ort.InferenceSession(vision_path, so, providers=["CPUExecutionProvider"])
    t = ort.InferenceSession(text_path, so, providers=["CPUExecutionProvider"])
    oi = v.run(["image_embeds"], {"pixel_values": pixels})[0]
    ot = t.run(["text_embeds"], {"input_ids": ids, "attention_mask": mask})[0]
    ci, ct = cos_rows(oi, img_emb), cos_rows(ot, txt_emb)
    print("python onnxruntime vs torch: image cos min %.7f, text cos min %.7f" % (ci.min(), ct.min()))
    assert ci.min() > 0.99999 and ct.min() > 0.99999, (ci, ct)


def write_fixtures(out):
    """Tiny hand-made ONNX graphs for the loader's error and inference paths:
    text_dim32.onnx (int64 ids + mask -> [N,32]), text_int32_nomask.onnx
    (int32 ids, no mask -> [N,64], output = ids @ W with W[i,j] = sin(64*i+j)),
    vision_symbolic_dim.onnx (pixel_values -> [N,"dim"] with dim 64 only known
    at run time), vision_fixed_batch.onnx (batch fixed at 1) and
    vision_fp16.onnx (float16 pixel_values)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    os.makedirs(out, exist_ok=True)

    def save(name, nodes, inputs, outputs, inits):
        g = helper.make_graph(nodes, name, inputs, outputs, inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="xmodal-fixture")
        m.ir_version = 8
        onnx.checker.check_model(m)
        onnx.save(m, os.path.join(out, name + ".onnx"))

    def w(rows, cols):
        i = np.arange(rows * cols, dtype=np.float64).reshape(rows, cols)
        return np.sin(i).astype(np.float32)

    ids64 = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch_size", 77])
    mask64 = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch_size", 77])
    save("text_dim32",
         [helper.make_node("Cast", ["input_ids"], ["f"], to=TensorProto.FLOAT),
          helper.make_node("Cast", ["attention_mask"], ["mf"], to=TensorProto.FLOAT),
          helper.make_node("Mul", ["f", "mf"], ["g"]),
          helper.make_node("MatMul", ["g", "W"], ["text_embeds"])],
         [ids64, mask64],
         [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["batch_size", 32])],
         [numpy_helper.from_array(w(77, 32), "W")])
    save("text_int32_nomask",
         [helper.make_node("Cast", ["input_ids"], ["f"], to=TensorProto.FLOAT),
          helper.make_node("MatMul", ["f", "W"], ["text_embeds"])],
         [helper.make_tensor_value_info("input_ids", TensorProto.INT32, ["batch_size", 77])],
         [helper.make_tensor_value_info("text_embeds", TensorProto.FLOAT, ["batch_size", 64])],
         [numpy_helper.from_array(w(77, 64), "W")])
    save("vision_symbolic_dim",
         [helper.make_node("ReduceMean", ["pixel_values"], ["m"], axes=[2, 3], keepdims=0),
          helper.make_node("MatMul", ["m", "W"], ["image_embeds"])],
         [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch_size", 3, 224, 224])],
         [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, ["batch_size", "dim"])],
         [numpy_helper.from_array(w(3, 64), "W")])
    for name, dtype, batch in (("vision_fixed_batch", TensorProto.FLOAT, 1), ("vision_fp16", TensorProto.FLOAT16, "batch_size")):
        save(name,
             [helper.make_node("Cast", ["pixel_values"], ["p"], to=TensorProto.FLOAT),
              helper.make_node("ReduceMean", ["p"], ["m"], axes=[2, 3], keepdims=0),
              helper.make_node("MatMul", ["m", "W"], ["image_embeds"])],
             [helper.make_tensor_value_info("pixel_values", dtype, [batch, 3, 224, 224])],
             [helper.make_tensor_value_info("image_embeds", TensorProto.FLOAT, [batch, 64])],
             [numpy_helper.from_array(w(3, 64), "W")])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="full-size ViT-B/32 into .cache/models/clip-vit-b32-random")
    ap.add_argument("--from-pretrained", metavar="NAME_OR_DIR",
                    help="export a real transformers CLIP checkpoint instead of random weights")
    ap.add_argument("--out", help="output directory (default depends on the mode)")
    ap.add_argument("--seed", type=int, default=20261128)
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    pretrained = args.from_pretrained
    full = args.full or bool(pretrained)
    if pretrained and not args.out:
        ap.error("--from-pretrained needs --out DIR")
    out = args.out or os.path.join(ROOT, ".cache/models/clip-vit-b32-random" if full else "testdata/models/parity")
    cfg = configs(full)
    clip, vis, txt = build(cfg, args.seed, pretrained)
    cfg = clip.config

    if full:
        vision_rel, text_rel = "onnx/vision_model.onnx", "onnx/text_model.onnx"
    else:
        vision_rel, text_rel = "vision_model.onnx", "text_model.onnx"
    vision_path, text_path = os.path.join(out, vision_rel), os.path.join(out, text_rel)
    export(vis, txt, vision_path, text_path, cfg.vision_config.image_size)

    ids, mask, tok_source = tokenize(TEXTS)
    pixels, proc = preprocess(IMAGES, pretrained)
    with torch.no_grad():
        img_raw = vis(pixel_values=torch.from_numpy(pixels)).image_embeds.numpy()
        txt_raw = txt(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).text_embeds.numpy()
        # The towers are the CLIPModel's own weights.
        assert np.allclose(clip.get_image_features(pixel_values=torch.from_numpy(pixels)).numpy(), img_raw, atol=1e-5)
        assert np.allclose(clip.get_text_features(input_ids=torch.from_numpy(ids)).numpy(), txt_raw, atol=1e-5)
    img_emb, txt_emb = l2(img_raw), l2(txt_raw)
    check_ort(vision_path, text_path, pixels, ids, mask, img_raw, txt_raw)

    dim = cfg.projection_dim
    gold_dir = os.path.join(out, "goldens")
    os.makedirs(gold_dir, exist_ok=True)
    with gzip.GzipFile(os.path.join(gold_dir, "pixels.f32le.gz"), "wb", mtime=0) as f:
        f.write(pixels.astype("<f4").tobytes())
    offdiag = lambda e: float((e @ e.T)[~np.eye(len(e), dtype=bool)].mean())
    goldens = {
        "note": "written by tools/build_parity_model.py; embeddings are L2-normalised float32 from PyTorch",
        "source": pretrained or ("random full-size ViT-B/32" if full else "random reduced ViT-B/32 (parity)"),
        "seed": args.seed,
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__,
                     "onnx": __import__("onnx").__version__},
        "tokenizer": tok_source,
        "context_length": 77,
        "dim": dim,
        "texts": TEXTS,
        "input_ids": ids.tolist(),
        "attention_mask": mask.tolist(),
        "text_embeds": [[float(x) for x in r] for r in txt_emb],
        "images": IMAGES,
        "image_preprocess": "PIL convert('RGB') + transformers CLIPImageProcessor(shortest_edge 224 bicubic, center crop 224, CLIP mean/std)",
        "pixels_file": "pixels.f32le.gz",
        "pixels_shape": list(pixels.shape),
        "image_embeds": [[float(x) for x in r] for r in img_emb],
        "mean_offdiag_cosine": {"text": offdiag(txt_emb), "image": offdiag(img_emb)},
    }
    with open(os.path.join(gold_dir, "goldens.json"), "w") as f:
        f.write(dump_rows(goldens))
    print("mean off-diagonal cosine: text %.4f, image %.4f" % (goldens["mean_offdiag_cosine"]["text"],
                                                                goldens["mean_offdiag_cosine"]["image"]))

    if not full:
        write_fixtures(os.path.join(os.path.dirname(out), "fixtures"))

    if full:
        # transformers.js layout: no manifest, preprocessing from preprocessor_config.json.
        proc.save_pretrained(out)
        cfg.save_pretrained(out)
    else:
        manifest = {
            "name": "xmodal-parity",
            "version": "1",
            "dim": dim,
            "image": {"file": vision_rel, "input": "pixel_values", "output": "image_embeds",
                      "size": 224, "crop": 224, "resize": "shortest", "mean": CLIP_MEAN, "std": CLIP_STD},
            "text": {"file": text_rel, "input_ids": "input_ids", "attention_mask": "attention_mask",
                     "output": "text_embeds", "input_ids_dtype": "int64",
                     "tokenizer": {"kind": "clip-bpe", "context_length": 77}},
        }
        with open(os.path.join(out, "model.json"), "w") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
    sizes = {p: os.path.getsize(os.path.join(out, p)) for p in (vision_rel, text_rel)}
    print("wrote %s: %s (total %.2f MB)" % (out, sizes, sum(sizes.values()) / 1e6))


if __name__ == "__main__":
    main()
