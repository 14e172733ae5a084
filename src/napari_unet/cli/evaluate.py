"""``napari-unet evaluate``: predicted labels against ground truth, per image and overall."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..core.io import IMAGE_SUFFIXES
from ._common import (
    EXIT_DATA,
    EXIT_FILE,
    EXIT_OK,
    PROG,
    CliError,
    _read,
)


def _by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise CliError(EXIT_FILE, f"folder not found: {folder}")
    files: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."):
            if p.stem in files:
                raise CliError(EXIT_DATA, f"two files named {p.stem!r} in {folder}")
            files[p.stem] = p
    return files


def evaluate_pair(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """All metrics of one predicted / ground-truth instance label pair."""
    from ..core import metrics

    if pred.shape != gt.shape:
        raise ValueError(f"shape mismatch: prediction {pred.shape} vs ground truth {gt.shape}")
    ap = metrics.average_precision(pred, gt)
    row = {
        "iou": metrics.iou(pred, gt),
        "dice": metrics.dice(pred, gt),
        **{f"ap@{t:.2f}": v for t, v in ap.items()},
        "map": float(np.mean(list(ap.values()))),
        "mean_matched_iou": metrics.matching(pred, gt, 0.5)["mean_matched_iou"],
        "pixel_error": metrics.pixel_error(pred, gt),
        "rand_error": metrics.rand_error(pred, gt),
    }
    return {k: float(v) for k, v in row.items()}


_TABLE = (
    "iou",
    "dice",
    "ap@0.50",
    "ap@0.75",
    "ap@0.90",
    "map",
    "mean_matched_iou",
    "pixel_error",
    "rand_error",
)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ..core.io import atomic_write

    preds, gts = _by_stem(Path(args.pred_dir)), _by_stem(Path(args.gt_dir))
    stems = sorted(set(preds) & set(gts))
    if not stems:
        raise CliError(
            EXIT_FILE, f"no file names (stems) in common between {args.pred_dir} and {args.gt_dir}"
        )
    for stem in sorted(set(preds) ^ set(gts)):
        side = args.pred_dir if stem in preds else args.gt_dir
        print(f"{PROG}: warning: {stem!r} only in {side}; skipped", file=sys.stderr)
    if args.json and Path(args.json).exists() and not args.overwrite:
        raise CliError(EXIT_FILE, f"{args.json} already exists; pass --overwrite to replace it")
    per_image: dict[str, dict[str, float]] = {}
    for stem in stems:
        try:
            per_image[stem] = evaluate_pair(_read(preds[stem]), _read(gts[stem], "labels"))
        except ValueError as error:
            raise ValueError(f"{stem}: {error}") from None
    mean = {k: float(np.mean([r[k] for r in per_image.values()])) for k in per_image[stems[0]]}
    width = max(8, *(len(s) for s in stems))
    print(f"{'image':<{width}} " + " ".join(f"{k:>9.9}" for k in _TABLE))
    for stem, row in [*per_image.items(), ("mean", mean)]:
        print(f"{stem:<{width}} " + " ".join(f"{row[k]:>9.4f}" for k in _TABLE))
    if args.json:
        text = json.dumps({"images": per_image, "mean": mean}, indent=2)
        try:
            atomic_write(args.json, lambda tmp: tmp.write_text(text), overwrite=args.overwrite)
        except FileExistsError:
            raise
        except OSError as error:  # full disk, read-only folder: name the file, not the temp
            raise CliError(
                EXIT_FILE, f"cannot write {args.json}: {error.strerror or error}"
            ) from None
    return EXIT_OK
