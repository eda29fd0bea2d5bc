"""Exports the public-domain / CC0 photos that scikit-image ships into
testdata/neardup/photos (the real originals of the near-duplicate eval).

Each is converted to RGB, shrunk to at most 640 pixels on its longer side
(Pillow's LANCZOS) and written as JPEG quality 92. Sources and licences are
in testdata/neardup/README.md (taken from scikit-image's own docstrings).
Run with the tools venv: .cache/venv/bin/python tools/export_neardup_photos.py
"""
import os
import sys

import numpy as np
from PIL import Image
from skimage import data

# name -> loader; only photos whose docstring states CC0 or public domain
# (or "no known copyright restrictions").
PHOTOS = {
    "astronaut": data.astronaut,
    "camera": data.camera,
    "chelsea": data.chelsea,
    "coffee": data.coffee,
    "coins": data.coins,
    "hubble": data.hubble_deep_field,
    "retina": data.retina,
    "rocket": data.rocket,
    "clock": data.clock,
    "brick": data.brick,
    "gravel": data.gravel,
    "ihc": data.immunohistochemistry,
    "text": data.text,
}


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    out = os.path.join(root, "testdata", "neardup", "photos")
    os.makedirs(out, exist_ok=True)
    for name, load in PHOTOS.items():
        a = np.asarray(load())
        im = Image.fromarray(a).convert("RGB")
        im.thumbnail((640, 640), Image.LANCZOS)
        path = os.path.join(out, name + ".jpg")
        im.save(path, quality=92)
        print(path, im.size, file=sys.stderr)


if __name__ == "__main__":
    main()
