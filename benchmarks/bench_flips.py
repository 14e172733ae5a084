"""Flip-averaged prediction (test-time augmentation) against one pass, per kind of image.

Each kind's shipped starting model, no training, at the product's default scale, on the same
validation images as ``kinds.py``; accuracy@0.5, the pixel error and the wall time of
``core.segment.segment`` with ``flips=False`` and ``flips=True``, in one run::

    .venv/bin/python benchmarks/bench_flips.py --json benchmarks/results/flips_P5.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import kinds as K  # noqa: E402

from napari_unet.core.scale import default_diameter  # noqa: E402
from napari_unet.core.segment import segment  # noqa: E402
from napari_unet.models import load_pretrained  # noqa: E402


def score(model, val: list, kind: K.Kind, flips: bool) -> dict:
    """Mean accuracy@0.5 and pixel error of ``segment`` over ``val``, and its seconds."""
    diameter = default_diameter(model)
    acc, err = [], []
    t0 = time.perf_counter()
    for _, image, gt in val:
        seg = segment(model, image, channel_axis=-1 if kind.rgb else None, diameter=diameter,
                      flips=flips)
        acc.append(K.accuracy(seg.instances, gt))
        err.append(K.pixel_error(seg.probability > seg.threshold, gt))
    return {"accuracy": float(np.mean(acc)), "pixel_error": float(np.mean(err)),
            "per_image": [round(a, 3) for a in acc], "seconds": time.perf_counter() - t0,
            "load": os.getloadavg()}


def main() -> None:
    """Print and optionally write the figures of every kind."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", nargs="+", default=list(K.KINDS), choices=list(K.KINDS))
    ap.add_argument("--data", type=Path, default=K.DATA)
    ap.add_argument("--max-val", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = {}
    for name in args.kinds:
        kind = K.KINDS[name]
        val = K.load(kind, "val", args.data, args.max_val)
        model = load_pretrained(kind.start)
        out[name] = {}
        for flips in (False, True):
            r = score(model, val, kind, flips)
            out[name]["flips" if flips else "once"] = r
            print(f"{name:6s} flips={flips!s:5s} accuracy {r['accuracy']:.4f} pixel error "
                  f"{r['pixel_error']:.4f} {r['seconds']:.1f} s ({len(val)} images) load "
                  f"{r['load'][0]:.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
