"""The argument parser of every command, and the argument types it checks."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ..core.instances import DEFAULT_MIN_SIZE
from ..core.segment import CONVERSIONS
from ._common import (
    PROG,
    _starting_help,
)
from .evaluate import _cmd_evaluate
from .export import _cmd_export
from .predict import _cmd_predict
from .train import _cmd_train


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def probability_threshold(text: str) -> float:
    """``--threshold``: a cell probability strictly between 0 and 1 (else all or nothing)."""
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a probability between 0 and 1, got {text}")
    return value


# Largest --steps (decades of CPU time) and --patch-size (a 4096 px patch alone needs tens of
# GiB per training step): larger values are typing mistakes, refused as usage errors.
MAX_STEPS = 10**9
MAX_PATCH_SIZE = 4096


def _at_most(limit: int) -> Callable[[str], int]:
    """An argparse type: a positive integer up to ``limit``."""

    def parse(text: str) -> int:
        value = _positive_int(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"must be at most {limit}, got {text}")
        return value

    return parse


def _diameter(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        return _positive_float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a number of pixels or 'auto', got {text}"
        ) from None


def _add_image_options(parser: argparse.ArgumentParser) -> None:
    """``--channel-axis``, ``--diameter`` and ``--conversion`` of ``train``."""
    parser.add_argument(
        "--channel-axis",
        type=int,
        help="channel axis of multichannel images (RGB: -1; guessed for (Y, X, 3) images)",
    )
    parser.add_argument(
        "--diameter",
        type=_positive_float,
        help="object diameter in px (default: measured on the labeled cells)",
    )
    parser.add_argument(
        "--conversion",
        choices=CONVERSIONS,
        help="colour to one channel when fine-tuning a 1-channel model (default: hematoxylin)",
    )


_DEVICES = ["auto", "cpu", "cuda", "mps"]


def build_parser() -> argparse.ArgumentParser:
    """The ``napari-unet`` argument parser (subcommands train, predict, export, evaluate)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Train, apply and evaluate U-Net segmentation without a GUI."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    starting = _starting_help()
    _add_train_parser(sub, starting)
    _add_predict_parser(sub, starting)
    _add_export_parser(sub, starting)
    _add_evaluate_parser(sub)
    return parser


def _add_train_parser(sub: Any, starting: str) -> None:
    """The ``train`` subcommand: images and labels in, a checkpoint out."""
    t = sub.add_parser("train", help="train a U-Net on images and labels")
    t.add_argument("images", nargs="+", metavar="IMAGE")
    t.add_argument(
        "--labels",
        nargs="+",
        required=True,
        metavar="LABELS",
        help="label images, paired with the images by order",
    )
    t.add_argument("--out", required=True, metavar="MODEL", help="checkpoint file to write")
    t.add_argument(
        "--from",
        dest="from_model",
        metavar="MODEL",
        help="fine-tune this checkpoint, or a shipped starting model: " + starting,
    )
    budget = t.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=_at_most(MAX_STEPS))
    budget.add_argument("--minutes", type=_positive_float)
    t.add_argument("--device", choices=_DEVICES, default="auto")
    t.add_argument("--seed", type=int)
    t.add_argument(
        "--dense-labels",
        action="store_true",
        help="labels are complete: 0 = background (default: 0 = unlabeled, "
        "1 = background, >= 2 cells)",
    )
    t.add_argument("--lr", type=_positive_float)
    t.add_argument("--batch-size", type=_positive_int)
    t.add_argument("--patch-size", type=_at_most(MAX_PATCH_SIZE))
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--w0", type=float)
    t.add_argument("--sigma", type=_positive_float)
    t.add_argument("--depth", type=_positive_int)
    t.add_argument("--width", type=_positive_int, help="channels of the first level")
    t.add_argument("--padding", choices=["valid", "same"])
    t.add_argument(
        "--border-class",
        action="store_true",
        help="a 3-class network (background, cell, cell border) that splits touching cells "
        "where it sees their border",
    )
    _add_image_options(t)
    t.add_argument("--overwrite", action="store_true")
    t.set_defaults(func=_cmd_train)


def _add_predict_parser(sub: Any, starting: str) -> None:
    """The ``predict`` subcommand: a model and images in, instance label images out."""
    p = sub.add_parser("predict", help="segment images into instance label images")
    p.add_argument(
        "model",
        metavar="MODEL",
        help="a checkpoint, a bioimage.io package (.zip) or a shipped starting model: " + starting,
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument(
        "--probabilities",
        action="store_true",
        help="also write cell probabilities to DIR/probabilities/",
    )
    p.add_argument("--format", choices=["tif", "png", "npy"], default="tif")
    p.add_argument(
        "--threshold",
        type=probability_threshold,
        help="cell probability threshold in (0, 1) (default: the model's calibrated one)",
    )
    p.add_argument(
        "--min-size",
        type=int,
        help=f"smallest object in px (default: {DEFAULT_MIN_SIZE} px at the model's scale)",
    )
    p.add_argument(
        "--diameter",
        type=_diameter,
        help="object diameter in px in these images, or 'auto' to estimate it (default: "
        "the size in the model's training data; 'auto' for a model that records none, "
        "such as 'nuclei' and models fine-tuned from it)",
    )
    p.add_argument("--tile-size", type=_positive_int)
    p.add_argument("--batch-size", type=_positive_int, default=4)
    p.add_argument(
        "--no-flips",
        dest="flips",
        action="store_false",
        help="predict each image once, not averaged over its four flips (4x faster, a little "
        "less accurate)",
    )
    p.add_argument("--device", choices=_DEVICES, default="auto")
    p.add_argument("--channel-axis", type=int, help="channel axis of multichannel images (RGB: -1)")
    p.add_argument(
        "--conversion",
        choices=CONVERSIONS,
        help="colour to one channel for a 1-channel model (default: hematoxylin)",
    )
    p.add_argument("--chunk", type=_positive_int, default=1024, help="zarr chunk edge (px)")
    p.add_argument(
        "--memory-budget",
        type=_positive_float,
        metavar="MB",
        help="shrink zarr chunks to fit this memory",
    )
    p.add_argument("--scheduler", metavar="ADDRESS", help="dask.distributed scheduler address")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_predict)


def _add_export_parser(sub: Any, starting: str) -> None:
    """The ``export`` subcommand: a model in, a bioimage.io package out."""
    x = sub.add_parser("export", help="write a model as a bioimage.io model package (.zip)")
    x.add_argument(
        "model", metavar="MODEL", help="a checkpoint, or a shipped starting model: " + starting
    )
    x.add_argument("--out", required=True, metavar="NAME.zip", help="package file to write")
    x.add_argument(
        "--sample",
        metavar="IMAGE",
        help="image for the package's test tensors and cover (default: synthetic cells)",
    )
    x.add_argument("--channel-axis", type=int, help="channel axis of --sample (RGB: -1)")
    x.add_argument(
        "--conversion",
        choices=CONVERSIONS,
        help="colour to one channel for a 1-channel model (default: the model's)",
    )
    x.add_argument("--name", help="model name (default: from the model or the file name)")
    x.add_argument(
        "--author",
        action="append",
        metavar="NAME",
        help="an author (repeat for several; default: the model's)",
    )
    x.add_argument(
        "--license", metavar="SPDX", help="SPDX license id (default: the model's, else CC-BY-4.0)"
    )
    x.add_argument("--overwrite", action="store_true")
    x.set_defaults(func=_cmd_export)


def _add_evaluate_parser(sub: Any) -> None:
    """The ``evaluate`` subcommand: predicted and ground-truth label folders in, scores out."""
    e = sub.add_parser("evaluate", help="compare predicted with ground-truth label images")
    e.add_argument("pred_dir", metavar="PRED_DIR")
    e.add_argument("gt_dir", metavar="GT_DIR")
    e.add_argument("--json", metavar="FILE", help="also write the scores as JSON")
    e.add_argument("--overwrite", action="store_true")
    e.set_defaults(func=_cmd_evaluate)
