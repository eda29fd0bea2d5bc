#!/usr/bin/env python3
"""Goldens for encoders/imageprep: CLIP image preprocessing parity with
transformers' CLIPImageProcessor (the slow, PIL-based one).

Run from anywhere with the tools venv (tools/setup.sh):

    .cache/venv/bin/python tools/gen_preprocess_goldens.py

It writes
  testdata/images/go/         images copied from Go's image/testdata and
                              golang.org/x/image/testdata (BSD, see README.md)
  testdata/images/generated/  images made here with Pillow: a CMYK JPEG, EXIF
                              orientation 2..8 JPEGs, an animated GIF, 16-bit
                              PNGs, a paletted PNG with transparency, an RGBA
                              PNG with partial alpha
  testdata/preprocess/manifest.json
  testdata/preprocess/golden/<name>.png    one per golden tensor (see below)
  testdata/preprocess/decoded/<name>.png   Pillow's decoded RGB pixels for a
                                           few small inputs, so the Go test
                                           can separate decoder differences
                                           from resampler differences

Golden encoding. The processor's output is ((v/255) - mean) / std for 8-bit
levels v of the resized, cropped RGB image (transformers rescales uint8 as
float64(v) * (1/255) cast to float32, then normalises in float32). So the
tensor is fully determined by those levels: we store the levels as an RGB PNG
(H x W, lossless, ~60-100 kB instead of 600 kB of float32) and record the
SHA-256 of the exact float32 tensor (CHW, little endian). The script checks
that rebuilding the tensor from the levels with transformers' arithmetic
reproduces it bit for bit; the Go test rebuilds it the same way and checks
the hash, so what it compares against is exactly CLIPImageProcessor's output.

Images are loaded as transformers.image_utils.load_image does: PIL open,
ImageOps.exif_transpose. Parity images have no transparency (our Go code
composites alpha over white; CLIPImageProcessor drops alpha).
"""

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
import PIL
from PIL import Image, ImageOps, features
import transformers
from transformers import CLIPImageProcessor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGES = os.path.join(ROOT, "testdata", "images")
GO_DIR = os.path.join(IMAGES, "go")
GEN_DIR = os.path.join(IMAGES, "generated")
OUT = os.path.join(ROOT, "testdata", "preprocess")
PDQ = os.path.join(ROOT, "testdata", "pdq", "images")

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

GO_STD = [  # from $(go env GOROOT)/src/image/testdata
    "video-001.jpeg",
    "video-001.q50.420.jpeg",
    "video-001.q50.422.jpeg",
    "video-001.q50.440.jpeg",
    "video-001.q50.444.jpeg",
    "video-001.q50.411.jpeg",
    "video-001.progressive.jpeg",
    "video-001.restart2.jpeg",
    "video-001.png",
    "video-001.gif",
    "video-001.cmyk.jpeg",
    "video-001.rgb.jpeg",
    "video-005.gray.jpeg",
    "video-005.gray.png",
]
GO_XIMAGE = [  # from golang.org/x/image@<version>/testdata
    "video-001.lossy.webp",
    "yellow_rose.lossy.webp",
    "video-001.bmp",
]


def go_env(var):
    return subprocess.check_output(["go", "env", var], text=True).strip()


def ximage_dir():
    gomod = open(os.path.join(ROOT, "go.mod")).read()
    ver = next(l.split()[1] for l in gomod.splitlines() if "golang.org/x/image " in l)
    d = os.path.join(go_env("GOMODCACHE"), "golang.org", "x", f"image@{ver}", "testdata")
    if not os.path.isdir(d):
        subprocess.check_call(["go", "mod", "download", f"golang.org/x/image@{ver}"], cwd=ROOT)
    return d, ver


def copy_go_images():
    os.makedirs(GO_DIR, exist_ok=True)
    std = os.path.join(go_env("GOROOT"), "src", "image", "testdata")
    for f in GO_STD:
        shutil.copyfile(os.path.join(std, f), os.path.join(GO_DIR, f))
    xd, ver = ximage_dir()
    for f in GO_XIMAGE:
        shutil.copyfile(os.path.join(xd, f), os.path.join(GO_DIR, f))
    with open(os.path.join(GO_DIR, "README.md"), "w") as fh:
        fh.write(
            "# Images from the Go project\n\n"
            "Copied unchanged by tools/gen_preprocess_goldens.py from the Go source tree\n"
            f"({go_env('GOVERSION')}, `$(go env GOROOT)/src/image/testdata`):\n"
            + "".join(f"- `{f}`\n" for f in GO_STD)
            + f"\nand from `golang.org/x/image@{ver}/testdata`:\n"
            + "".join(f"- `{f}`\n" for f in GO_XIMAGE)
            + "\nCopyright The Go Authors. Distributed under the BSD-style licence of the Go\n"
            "project (https://go.dev/LICENSE): redistribution and use in source and binary\n"
            "forms, with or without modification, are permitted provided that the copyright\n"
            "notice, conditions and disclaimer of that licence are retained.\n"
        )


def write_png16(path, arr):
    """Minimal PNG writer for 16-bit gray (HxW) or RGB(A) (HxWxC) uint16."""
    arr = np.asarray(arr, dtype=">u2")
    h, w = arr.shape[:2]
    ch = 1 if arr.ndim == 2 else arr.shape[2]
    ctype = {1: 0, 3: 2, 4: 6}[ch]
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))

    def chunk(t, d):
        c = struct.pack(">I", len(d)) + t + d
        return c + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(chunk(b"IEND", b""))


# exif_transpose applies these to the stored pixels; we store the inverse.
INVERSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,  # exif_transpose uses ROTATE_270
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,  # exif_transpose uses ROTATE_90
}


def make_generated():
    os.makedirs(GEN_DIR, exist_ok=True)
    base = Image.open(os.path.join(PDQ, "labelme-subset", "q0003.jpg")).convert("RGB")
    a = np.asarray(base).astype(np.float64)
    # CMYK with real black (under-colour removal), saved as Adobe CMYK JPEG.
    k = 255 - a.max(axis=2)
    denom = np.maximum(255 - k, 1)[..., None]
    cmy = (255 - a - k[..., None]) * 255 / denom
    cmyk = np.dstack([cmy, k]).round().clip(0, 255).astype(np.uint8)
    Image.frombytes("CMYK", (cmyk.shape[1], cmyk.shape[0]), cmyk.tobytes()).save(os.path.join(GEN_DIR, "cmyk.jpg"), quality=92)

    # EXIF orientation: displayed image == misc/small.jpg (224x399, portrait).
    disp = Image.open(os.path.join(PDQ, "misc", "small.jpg")).convert("RGB")
    for o, t in INVERSE.items():
        exif = Image.Exif()
        exif[0x0112] = o
        disp.transpose(t).save(os.path.join(GEN_DIR, f"orient-{o}.jpg"), quality=90, exif=exif.tobytes())

    # EXIF orientation in PNG (eXIf chunk) and WebP (EXIF chunk), which
    # load_image's exif_transpose applies too.
    for o in (3, 6, 8):
        exif = Image.Exif()
        exif[0x0112] = o
        disp.transpose(INVERSE[o]).save(os.path.join(GEN_DIR, f"orient-{o}.png"), exif=exif.tobytes())
        disp.transpose(INVERSE[o]).save(os.path.join(GEN_DIR, f"orient-{o}.webp"), exif=exif.tobytes(), quality=90)

    # Animated GIF: three frames; the first is a photo, the others flat colours.
    small = base.resize((96, 96), Image.Resampling.BICUBIC)
    f1 = small.quantize(colors=256, dither=Image.Dither.NONE)
    f2 = Image.new("RGB", (96, 96), (255, 0, 0)).quantize(colors=4)
    f3 = Image.new("RGB", (96, 96), (0, 0, 255)).quantize(colors=4)
    f1.save(os.path.join(GEN_DIR, "anim.gif"), save_all=True, append_images=[f2, f3], duration=100, loop=0)

    # 16-bit RGB PNG from the photo (v*257 plus low-byte noise: the high byte is v).
    rng = np.random.default_rng(1)
    a16 = np.asarray(small).astype(np.uint16) * 257
    a16 = (a16 & 0xFF00) | rng.integers(0, 256, a16.shape, dtype=np.uint16)
    write_png16(os.path.join(GEN_DIR, "rgb16.png"), a16)
    # 16-bit gray PNG (a gradient over the whole range).
    g = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (48, 1))
    write_png16(os.path.join(GEN_DIR, "gray16.png"), g)

    # Paletted PNG with a transparent index (the left half is transparent).
    p = Image.new("P", (32, 16), 0)
    p.putpalette([0, 0, 0, 200, 30, 30] + [0, 0, 0] * 254)
    p.paste(1, (16, 0, 32, 16))
    p.save(os.path.join(GEN_DIR, "palette-trns.png"), transparency=0)

    with open(os.path.join(GEN_DIR, "README.md"), "w") as fh:
        fh.write(
            "# Generated test images\n\n"
            "Written by tools/gen_preprocess_goldens.py with Pillow. `cmyk.jpg`, `orient-*.jpg`,\n"
            "`anim.gif` and `rgb16.png` are derived from `testdata/pdq/images` (labelme-subset/q0003.jpg\n"
            "and misc/small.jpg, Meta ThreatExchange, BSD licence, see testdata/pdq/LICENSE);\n"
            "the others are synthetic.\n\n"
            "- `cmyk.jpg`: Adobe CMYK JPEG (with under-colour removal, so K is used)\n"
            "- `orient-N.jpg` (N = 2..8): EXIF orientation N; upright, each shows misc/small.jpg\n"
            "- `orient-N.png`, `orient-N.webp` (N = 3, 6, 8): the same in a PNG eXIf chunk and a lossy WebP EXIF chunk\n"
            "- `anim.gif`: three frames (photo, flat red, flat blue); decoders must take the first\n"
            "- `rgb16.png`: 16-bit RGB; high bytes are the photo, low bytes noise\n"
            "- `gray16.png`: 16-bit grayscale gradient 0..65535 (Pillow opens it as I;16)\n"
            "- `palette-trns.png`: paletted, index 0 (black) transparent on the left half\n"
            "- `rgba-alpha.png`: RGB (40,0,0) with alpha rising 0..255 left to right\n"
        )

    # RGBA with partial alpha over black RGB (what "drop alpha" exposes).
    rgba = np.zeros((16, 32, 4), np.uint8)
    rgba[..., 0] = 40
    rgba[..., 3] = np.linspace(0, 255, 32).astype(np.uint8)[None, :]
    Image.fromarray(rgba).save(os.path.join(GEN_DIR, "rgba-alpha.png"))


def load(path, draft=0):
    im = Image.open(path)
    if draft:
        # What a clip-retrieval-style loader does before preprocessing: let
        # libjpeg reduce the image in its IDCT (1/2, 1/4 or 1/8) as far as
        # both sides stay >= draft. xmodal's fast decode mode does the same.
        im.draft("RGB", (draft, draft))
    im = ImageOps.exif_transpose(im)  # as transformers.image_utils.load_image
    return im


def draft_scale(path, draft):
    """The IDCT reduction Pillow's draft picks (its decoderconfig)."""
    im = Image.open(path)
    im.draft("RGB", (draft, draft))
    return im.decoderconfig[0] if im.decoderconfig else 1


def spec_json(size, crop, resize):
    return {"size": size, "crop_size": crop, "resize": resize, "mean": CLIP_MEAN, "std": CLIP_STD}


def processor(size, crop, resize):
    if resize == "squash":
        s = {"height": size, "width": size}
    else:
        s = {"shortest_edge": size}
    return CLIPImageProcessor(
        size=s,
        crop_size={"height": crop, "width": crop},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        do_convert_rgb=True,
    )


def rebuild(levels_chw, mean, std):
    x = (levels_chw.astype(np.float64) * (1 / 255)).astype(np.float32)
    m = np.array(mean, np.float32)[:, None, None]
    s = np.array(std, np.float32)[:, None, None]
    return (x - m) / s


def golden(name, rel, size=224, crop=224, resize="shortest", decoded=False, draft=0):
    path = os.path.join(ROOT, rel)
    im = load(path, draft)
    src_mode, (w, h) = im.mode, im.size
    t = processor(size, crop, resize)(images=im, return_tensors="np")["pixel_values"][0]
    assert t.dtype == np.float32 and t.shape == (3, crop, crop), (t.dtype, t.shape)
    m = np.array(CLIP_MEAN, np.float32)[:, None, None]
    s = np.array(CLIP_STD, np.float32)[:, None, None]
    lv = np.rint((t.astype(np.float64) * s + m) * 255)
    assert lv.min() >= 0 and lv.max() <= 255, (name, lv.min(), lv.max())
    lv = lv.astype(np.uint8)
    rb = rebuild(lv, CLIP_MEAN, CLIP_STD)
    assert np.array_equal(rb, t), f"{name}: levels do not rebuild the tensor exactly"
    os.makedirs(os.path.join(OUT, "golden"), exist_ok=True)
    gpath = os.path.join("golden", name + ".png")
    Image.fromarray(np.ascontiguousarray(lv.transpose(1, 2, 0))).save(os.path.join(OUT, gpath), optimize=True)
    e = {
        "name": name,
        "source": rel,
        "pil_mode": src_mode,
        "width": w,
        "height": h,
        "spec": spec_json(size, crop, resize),
        "golden": gpath,
        "tensor_sha256": hashlib.sha256(t.astype("<f4").tobytes()).hexdigest(),
    }
    if draft:
        e["draft"] = draft
        e["scale"] = draft_scale(path, draft)
    if decoded:
        os.makedirs(os.path.join(OUT, "decoded"), exist_ok=True)
        dpath = os.path.join("decoded", name + ".png")
        rgb = im if im.mode == "RGB" else im.convert("RGB")
        rgb.save(os.path.join(OUT, dpath), optimize=True)
        e["decoded"] = dpath
    return e


def main():
    copy_go_images()
    make_generated()
    shutil.rmtree(os.path.join(OUT, "golden"), ignore_errors=True)
    shutil.rmtree(os.path.join(OUT, "decoded"), ignore_errors=True)
    E = []
    # Real photos (ThreatExchange PDQ reference set).
    for f in sorted(os.listdir(os.path.join(PDQ, "bridge-mods"))):
        small = f.startswith(("shrink-a-lot", "square-128"))
        E.append(golden("bridge-" + f.rsplit(".", 1)[0], f"testdata/pdq/images/bridge-mods/{f}", decoded=small))
    for f in ["bridge-2-rotate-90.jpg", "bridge-3-rotate-180.jpg"]:
        E.append(golden("dih-" + f.rsplit(".", 1)[0], f"testdata/pdq/images/dih/{f}"))
    for f in sorted(os.listdir(os.path.join(PDQ, "labelme-subset"))):
        dec = f in ("q0003.jpg", "q0746.jpg")
        E.append(golden("labelme-" + f.rsplit(".", 1)[0], f"testdata/pdq/images/labelme-subset/{f}", decoded=dec))
    E.append(golden("misc-small", "testdata/pdq/images/misc/small.jpg", decoded=True))
    E.append(golden("misc-wee", "testdata/pdq/images/misc/wee.jpg", decoded=True))
    E.append(golden("misc-c", "testdata/pdq/images/misc/c.png"))  # RGBA, fully opaque
    # Other resize rules on one photo: squash, and a crop larger than the resize (zero padding).
    E.append(golden("labelme-q0122-squash", "testdata/pdq/images/labelme-subset/q0122.jpg", resize="squash"))
    E.append(golden("misc-small-pad", "testdata/pdq/images/misc/small.jpg", size=200, crop=224))
    # Go's image test files: every JPEG subsampling, progressive, CMYK, gray, GIF, PNG, WebP, BMP.
    for f in GO_STD + GO_XIMAGE:
        stem = f.rsplit(".", 1)[0].replace(".", "-")
        ext = f.rsplit(".", 1)[1]
        E.append(golden(f"go-{stem}-{ext}", f"testdata/images/go/{f}", decoded=ext in ("jpeg", "webp")))
    # Generated: CMYK JPEG, EXIF orientations (64 px spec to keep goldens small), animated GIF, 16-bit RGB.
    E.append(golden("gen-cmyk", "testdata/images/generated/cmyk.jpg", decoded=True))
    for o in range(2, 9):
        E.append(golden(f"gen-orient-{o}", f"testdata/images/generated/orient-{o}.jpg", size=64, crop=64))
    for o in (3, 6, 8):
        E.append(golden(f"gen-orient-{o}-png", f"testdata/images/generated/orient-{o}.png", size=64, crop=64))
        E.append(golden(f"gen-orient-{o}-webp", f"testdata/images/generated/orient-{o}.webp", size=64, crop=64))
    E.append(golden("gen-anim-gif", "testdata/images/generated/anim.gif"))
    E.append(golden("gen-rgb16", "testdata/images/generated/rgb16.png"))

    # Fast mode: CLIPImageProcessor on Pillow's draft-decoded JPEG.
    for draft in (224, 200, 125):  # scales 4 and 8 on the 1600x1004 bridge photo
        E.append(golden(f"fast-bridge-draft{draft}", "testdata/pdq/images/bridge-mods/aaa-orig.jpg", draft=draft))
    E.append(golden("fast-dih-rotate-90-draft224", "testdata/pdq/images/dih/bridge-2-rotate-90.jpg", draft=224))
    E.append(golden("fast-shrink-a-little-draft224", "testdata/pdq/images/bridge-mods/shrink-a-little.jpg", draft=224))
    E.append(golden("fast-orient-6-draft64", "testdata/images/generated/orient-6.jpg", size=64, crop=64, draft=64))
    E.append(golden("fast-cmyk-draft64", "testdata/images/generated/cmyk.jpg", size=64, crop=64, draft=64))

    # Scaled decodes: libjpeg-turbo's output at 1/2, 1/4, 1/8 (through
    # Pillow's draft) for every chroma subsampling and JPEG variant.
    S = []
    shutil.rmtree(os.path.join(OUT, "scaled"), ignore_errors=True)
    os.makedirs(os.path.join(OUT, "scaled"), exist_ok=True)
    scaled_src = [f"testdata/images/go/{f}" for f in GO_STD if f.endswith(".jpeg")]
    scaled_src += ["testdata/images/generated/cmyk.jpg", "testdata/images/generated/orient-6.jpg",
                   "testdata/pdq/images/labelme-subset/q0003.jpg", "testdata/pdq/images/misc/wee.jpg"]
    for rel in scaled_src:
        path = os.path.join(ROOT, rel)
        stem = os.path.basename(rel).rsplit(".", 1)[0].replace(".", "-")
        w0, h0 = Image.open(path).size
        for scale in (2, 4, 8):
            draft = min(w0, h0) // scale  # Pillow then picks exactly this scale
            if draft < 1:
                continue
            im = load(path, draft)
            got = Image.open(path)
            got.draft("RGB", (draft, draft))
            assert got.decoderconfig[0] == scale, (rel, scale, got.decoderconfig)
            rgb = im.convert("RGB")
            dpath = os.path.join("scaled", f"{stem}-s{scale}.png")
            rgb.save(os.path.join(OUT, dpath), optimize=True)
            S.append({"name": f"{stem}-s{scale}", "source": rel, "draft": draft, "scale": scale,
                      "width": rgb.size[0], "height": rgb.size[1], "decoded": dpath,
                      "subsampling": str(getattr(Image.open(path), "layer", ""))})

    manifest = {
        "about": "CLIPImageProcessor goldens; written by tools/gen_preprocess_goldens.py (see its docstring for the encoding)",
        "transformers": transformers.__version__,
        "pillow": PIL.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "libwebp": features.version("webp"),
        "numpy": np.__version__,
        "loader": "PIL.Image.open + ImageOps.exif_transpose, then CLIPImageProcessor(do_convert_rgb=True)",
        "encoding": "golden PNG holds 8-bit levels L (HWC RGB); tensor = (float32(float64(L)*(1/255)) - float32(mean)) / float32(std), CHW; tensor_sha256 is over float32 little endian",
        "entries": E,
        "scaled": S,
    }
    with open(os.path.join(OUT, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)
        fh.write("\n")
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print(f"{len(E)} goldens, {total/1e6:.2f} MB under testdata/preprocess", file=sys.stderr)


if __name__ == "__main__":
    main()
