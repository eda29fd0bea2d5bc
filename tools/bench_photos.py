#!/usr/bin/env python3
"""Builds the photo sets of the image-ingest benchmarks (tools/bench_ingest_peer.py,
workers/bench_ingest_test.go) and of the fast-mode PDQ check, deterministically,
under .cache/bench-photos/ (not committed: about 100 MB).

Sources, all redistributable:
  * testdata/pdq/images: Meta ThreatExchange's PDQ reference photos (BSD licence,
    testdata/pdq/LICENSE): the bridge photo (1600x1004), the LabelMe subset
    (256x256), misc/small.jpg;
  * the photos scikit-image 0.26.0 ships in its wheel (skimage/data), fetched from
    PyPI with `pip download --no-deps`: astronaut.png (NASA, public domain),
    coffee.png (CC0, Rachel Michetti), chelsea.png (CC0, Stefan van der Walt),
    rocket.jpg (SpaceX, public domain), retina.jpg (CC0, Mikael Haggstrom),
    hubble_deep_field.jpg (NASA, public domain), camera.png (CC0, Lav Varshney;
    greyscale). The licences are those the skimage.data docstrings state.

Sets:
  normal/  N photos of 200-500 px (long side), random crops of the sources, JPEG
           quality 80-95 (Pillow defaults otherwise: 4:2:0, baseline), as a feed of
           social-media photos would be.
  large/   M photos of 3000x2000: a random 3:2 crop of a source upscaled (bicubic)
           and re-encoded at quality 90.
  dih/     for K large and K normal photos, the eight dihedral variants (rotations,
           mirrors) re-encoded at quality 90.
  hires/   (--hires H, default 0) real high-resolution pictures, not upscaled: the
           distinct images of at least 1500 px on the shorter side in Debian 12's
           plasma-workspace-wallpapers (KDE's wallpapers: photographs and artwork,
           LGPL-3 / CC-BY-SA per the package's copyright file) and gnome-backgrounds
           (GNOME's, CC-BY-SA 3.0), fetched with `apt-get download`, shrunk to fit
           3000x3000 (Lanczos) and re-encoded at quality 90, each with its rotate90
           and flipplus1 (transpose) variants re-encoded at quality 85. Smooth
           upscaled photos (large/) hide how a reduced decode's hash strays on
           fine detail; these do not.
  manifest.json  per file: size, quality, and the reference PDQ hash (pdqhash, the
           C++ reference, on Pillow's full-resolution RGB decode) with its quality.

Usage: .cache/venv/bin/python tools/bench_photos.py [--normal 300] [--large 60] [--dih 6] [--hires 48]
Prints the output directory.
"""

import argparse
import glob
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import zipfile

import numpy as np
import pdqhash
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, ".cache", "bench-photos")
SKIMAGE = "scikit-image==0.26.0"
SKIMAGE_PHOTOS = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "retina.jpg",
                  "hubble_deep_field.jpg", "camera.png"]

# exif_transpose-free dihedral transforms, named as encoders/pdq names them.
DIHEDRAL = {
    "original": None,
    "rotate90": Image.Transpose.ROTATE_90,
    "rotate180": Image.Transpose.ROTATE_180,
    "rotate270": Image.Transpose.ROTATE_270,
    "flipx": Image.Transpose.FLIP_TOP_BOTTOM,
    "flipy": Image.Transpose.FLIP_LEFT_RIGHT,
    "flipplus1": Image.Transpose.TRANSPOSE,
    "flipminus1": Image.Transpose.TRANSVERSE,
}


def skimage_photos():
    d = os.path.join(ROOT, ".cache", "skimage-data")
    if all(os.path.exists(os.path.join(d, f)) for f in SKIMAGE_PHOTOS):
        return [os.path.join(d, f) for f in SKIMAGE_PHOTOS]
    os.makedirs(d, exist_ok=True)
    subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", d, SKIMAGE])
    whl = glob.glob(os.path.join(d, "scikit_image-*.whl"))[0]
    with zipfile.ZipFile(whl) as z:
        for f in SKIMAGE_PHOTOS:
            with open(os.path.join(d, f), "wb") as fh:
                fh.write(z.read("skimage/data/" + f))
    os.remove(whl)
    return [os.path.join(d, f) for f in SKIMAGE_PHOTOS]


def sources():
    pdq = os.path.join(ROOT, "testdata", "pdq", "images")
    paths = [os.path.join(pdq, "bridge-mods", "aaa-orig.jpg"), os.path.join(pdq, "misc", "small.jpg")]
    paths += sorted(glob.glob(os.path.join(pdq, "labelme-subset", "*.jpg")))
    paths += skimage_photos()
    out = []
    for p in paths:
        im = Image.open(p)
        out.append((os.path.relpath(p, ROOT), im.convert("RGB")))
    return out


def wallpapers(limit):
    """The distinct pictures of >= 1500 px (shorter side) of Debian's wallpaper packages."""
    d = os.path.join(ROOT, ".cache", "wallpapers")
    os.makedirs(d, exist_ok=True)
    for pkg in ("plasma-workspace-wallpapers", "gnome-backgrounds"):
        if not glob.glob(os.path.join(d, pkg + "_*.deb")):
            subprocess.check_call(["apt-get", "download", pkg], cwd=d)
        x = os.path.join(d, pkg)
        if not os.path.isdir(x):
            subprocess.check_call(["dpkg-deb", "-x", glob.glob(os.path.join(d, pkg + "_*.deb"))[0], x])
    seen, out = set(), []
    for f in sorted(glob.glob(os.path.join(d, "*", "usr", "share", "**", "*"), recursive=True)):
        if os.path.islink(f) or not os.path.isfile(f) or not f.lower().endswith((".jpg", ".jpeg", ".png", ".webp")):
            continue
        with open(f, "rb") as fh:
            digest = hashlib.md5(fh.read()).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        im = Image.open(f)
        if min(im.size) < 1500:
            continue
        out.append((os.path.relpath(f, d), im))
        if len(out) >= limit:
            break
    return out


def ref_pdq(path):
    """The reference's full-resolution hash of Pillow's decode."""
    rgb = np.asarray(Image.open(path).convert("RGB"))
    h, q = pdqhash.compute(rgb)
    # The wheel returns bits most significant first (as tools/gen_pdq_goldens.py packs them).
    return np.packbits(np.asarray(h, dtype=np.uint8)).tobytes().hex(), int(q)


def save(im, path, quality):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    im.save(path, quality=quality)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--normal", type=int, default=300)
    ap.add_argument("--large", type=int, default=60)
    ap.add_argument("--dih", type=int, default=6)
    ap.add_argument("--hires", type=int, default=0)
    ap.add_argument("--out", default=OUT)
    a = ap.parse_args()
    rng = random.Random(20261201)
    src = sources()
    photos = [s for s in src if min(s[1].size) >= 200]
    entries = []

    def add(rel, path, quality, origin, extra=None):
        h, q = ref_pdq(path)
        im = Image.open(path)
        e = {"file": rel, "width": im.size[0], "height": im.size[1], "quality": quality, "from": origin,
             "pdq": h, "pdq_quality": q}
        if extra:
            e.update(extra)
        entries.append(e)

    for i in range(a.normal):
        name, im = photos[i % len(photos)]
        w, h = im.size
        aspect = rng.uniform(0.6, 1.8)
        cw = rng.randint(min(w, 200), w)
        ch = min(h, max(1, int(cw / aspect)))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        crop = im.crop((x, y, x + cw, y + ch))
        long = rng.randint(200, 500)
        s = long / max(crop.size)
        crop = crop.resize((max(1, round(crop.size[0] * s)), max(1, round(crop.size[1] * s))), Image.Resampling.LANCZOS)
        q = rng.randint(80, 95)
        rel = f"normal/n{i:04d}.jpg"
        save(crop, os.path.join(a.out, rel), q)
        add(rel, os.path.join(a.out, rel), q, name)

    for i in range(a.large):
        name, im = photos[i % len(photos)]
        w, h = im.size
        cw = rng.randint(int(w * 0.7), w)
        ch = min(h, int(cw * 2 / 3))
        cw = int(ch * 3 / 2)
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        big = im.crop((x, y, x + cw, y + ch)).resize((3000, 2000), Image.Resampling.BICUBIC)
        rel = f"large/l{i:04d}.jpg"
        save(big, os.path.join(a.out, rel), 90)
        add(rel, os.path.join(a.out, rel), 90, name)

    # Dihedral variants of some photos of each set, re-encoded at q90.
    for kind in ("large", "normal"):
        base = [e for e in entries if e["file"].startswith(kind + "/")][: a.dih]
        for e in base:
            im = Image.open(os.path.join(a.out, e["file"])).convert("RGB")
            stem = os.path.basename(e["file"]).rsplit(".", 1)[0]
            for d, t in DIHEDRAL.items():
                v = im if t is None else im.transpose(t)
                rel = f"dih/{stem}-{d}.jpg"
                save(v, os.path.join(a.out, rel), 90)
                add(rel, os.path.join(a.out, rel), 90, e["file"], {"variant": d, "of": e["file"]})

    # Real high-resolution pictures and two re-encoded dihedral variants each.
    hires = wallpapers(a.hires) if a.hires > 0 else []
    for i, (name, im) in enumerate(hires):
        im = im.convert("RGB")
        if max(im.size) > 3000:
            im.thumbnail((3000, 3000), Image.Resampling.LANCZOS)
        rel = f"hires/h{i:04d}-original.jpg"
        save(im, os.path.join(a.out, rel), 90)
        add(rel, os.path.join(a.out, rel), 90, "debian:" + name, {"variant": "original", "of": rel})
        for d in ("rotate90", "flipplus1"):
            v = f"hires/h{i:04d}-{d}.jpg"
            save(im.transpose(DIHEDRAL[d]), os.path.join(a.out, v), 85)
            add(v, os.path.join(a.out, v), 85, "debian:" + name, {"variant": d, "of": rel})

    with open(os.path.join(a.out, "manifest.json"), "w") as fh:
        json.dump({"about": "written by tools/bench_photos.py; pdq = pdqhash (C++ reference) on Pillow's full-resolution RGB",
                   "sources": [s[0] for s in src] + ["debian:" + h[0] for h in hires], "photos": entries}, fh, indent=1)
    print(a.out)


if __name__ == "__main__":
    main()
