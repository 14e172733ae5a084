"""Segmentation quality on four kinds of microscopy: U-Net (engine defaults) vs a random forest.

Kinds (``--data DIR``, laid out like ``../shared/data``): ``fluo`` (DSB2018 fluorescence
nuclei), ``he`` (DSB2018 H&E / brightfield nuclei, RGB), ``phase`` (Usiigaci phase-contrast
whole cells, 16-bit) and ``em`` (serial-section EM, regions enclosed by membranes; scored also
by the pixel error of "cell interior" against "membrane", the U-Net paper's ISBI metric).

Protocols: ``dense-3`` (3 completely labeled training images) and ``sparse-10`` (10 painted
cells of one training image plus plausible painted background, ``protocols.few_cells_annotation``).
Methods, on the same labels: ``unet`` (a new default network trained with
``napari_unet.core.training.train``: the labels' object size, the calibrated threshold, the
engine's post-processing via ``core.segment.segment``), ``rf`` (a random forest on
multiscale pixel features, ilastik's recipe, then the same ``label_instances`` with its best
threshold on the validation set, which favours the forest), ``start`` (the kind's shipped
starting model with its automatic object size, no training) and ``ft`` (that starting model
fine-tuned on the same labels).

Budget: a number of training steps (``--steps``, default 1200 = 2 minutes of a quiet 2-core
CPU at the default network's 0.10 s per step), so that a loaded machine does not change the
figures.  Scores: mean accuracy@0.5 (TP / (TP + FP + FN)) over the validation images::

    .venv/bin/python benchmarks/kinds.py --json benchmarks/results_kinds.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from imageio.v3 import imread

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import protocols as P  # noqa: E402

from napari_unet.core.instances import label_instances  # noqa: E402
from napari_unet.core.metrics import average_precision  # noqa: E402
from napari_unet.core.model import DEFAULT_CONFIG, UNet  # noqa: E402
from napari_unet.core.scale import data_diameter, default_diameter, object_diameters  # noqa: E402
from napari_unet.core.segment import segment  # noqa: E402
from napari_unet.core.training import train_to_completion  # noqa: E402
from napari_unet.models import load_pretrained  # noqa: E402

DATA = HERE.parent / ".." / "shared" / "data"
FOREST_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


@dataclass
class Kind:
    """Where one kind of image lives and how it is read."""

    name: str
    folder: str  # relative to the data root, holds {train,val}/{images,<labels>}
    labels: str
    rgb: bool = False
    start: str | None = None  # the kind's shipped starting model (``models.starting_models``)
    # (the sparse protocol's image, the dense protocol's images): None = the first ones
    chosen: tuple[str, tuple[str, ...]] | None = None


KINDS = {
    # DSB2018 mixes image types: the protocols' curated images (protocols.TRAINING_IMAGES), as a
    # user would paint an image of the kind they segment, not a random one
    "fluo": Kind("fluo", "dsb2018/{split}/fluo", "labels", start="nuclei",
                 chosen=P.TRAINING_IMAGES["fluo"]),
    "he": Kind("he", "dsb2018/{split}/color", "labels", rgb=True, start="he-nuclei",
               chosen=P.TRAINING_IMAGES["color"]),
    "phase": Kind("phase", "phase-usiigaci/{split}", "labels", start="phase-cells"),
    "em": Kind("em", "em-vnc/{split}", "cells", start="em-cells"),
}


def load(kind: Kind, split: str, root: Path, max_n: int | None) -> list[tuple[str, np.ndarray,
                                                                               np.ndarray]]:
    """``(name, image, labels)`` of one split; a fixed random subset of ``max_n`` (seed 0)."""
    folder = root / kind.folder.format(split=split)
    names = sorted(p.stem for p in (folder / "images").iterdir() if not p.name.startswith("."))
    if max_n is not None and len(names) > max_n:
        names = sorted(np.random.default_rng(0).choice(names, max_n, replace=False).tolist())
    out = []
    for name in names:
        path = next((folder / "images").glob(f"{name}.*"))
        image = np.asarray(imread(path))
        if image.ndim == 3 and not kind.rgb:
            image = image[..., 0]
        if kind.rgb:
            image = image[..., :3]
        labels = np.asarray(imread(folder / kind.labels / f"{name}.png")).astype(np.int32)
        out.append((name, image, labels))
    return out


def annotation(protocol: str, train: list, seed: int, kind: Kind) -> tuple[list, list, bool]:
    """Images, labels and the dense flag of a protocol."""
    if kind.chosen is not None:
        by_name = {t[0]: t for t in train}
        names = [kind.chosen[0]] if protocol != "dense-3" else list(kind.chosen[1])
        train = [by_name[n] for n in names]
    if protocol == "dense-3":
        chosen = train[:3]
        return [t[1] for t in chosen], [t[2] for t in chosen], True
    n_cells = int(protocol.split("-")[1])
    for _, image, labels in train:
        try:
            return [image], [P.few_cells_annotation(labels, n_cells, seed)], False
        except ValueError:
            continue
    raise ValueError(f"no training image has {n_cells} whole cells")


def accuracy(pred: np.ndarray, gt: np.ndarray) -> float:
    """Accuracy at IoU 0.5."""
    return float(average_precision(pred, gt, (0.5,))[0.5])


def pixel_error(mask: np.ndarray, gt: np.ndarray) -> float:
    """Fraction of pixels where "cell interior" disagrees with the ground truth."""
    return float(np.mean(mask != (gt > 0)))


def score_unet(model: UNet, val: list, kind: Kind, diameter=None) -> dict[str, float]:
    """Accuracy (and pixel error) of a model through the engine's own pipeline."""
    acc, err = [], []
    for _, image, gt in val:
        seg = segment(model, image, channel_axis=-1 if kind.rgb else None, diameter=diameter)
        acc.append(accuracy(seg.instances, gt))
        err.append(pixel_error(seg.probability > seg.threshold, gt))
    return {"accuracy": float(np.mean(acc)), "pixel_error": float(np.mean(err)),
            "threshold": float(seg.threshold), "factor": float(seg.factor)}


def forest_features(image: np.ndarray, rgb: bool) -> np.ndarray:
    """ilastik-like features; colour images per channel."""
    from skimage.feature import multiscale_basic_features

    img = image.astype(np.float32)
    lo, hi = np.percentile(img, [1, 99.8])
    img = (img - lo) / max(float(hi - lo), 1e-6)
    return multiscale_basic_features(img, sigma_min=1, sigma_max=16,
                                     channel_axis=-1 if rgb else None).astype(np.float32)


def score_forest(images, labels, dense, val, kind: Kind) -> dict[str, float]:
    """Train the forest on the same labels; the best threshold on the validation images."""
    from sklearn.ensemble import RandomForestClassifier

    xs, ys = [], []
    for image, lab in zip(images, labels, strict=True):
        feats = forest_features(image, kind.rgb)
        mask = np.ones(lab.shape, bool) if dense else lab >= 1
        xs.append(feats[mask])
        ys.append((lab >= (1 if dense else 2))[mask])
    x, y = np.concatenate(xs), np.concatenate(ys).astype(np.int8)
    rng = np.random.default_rng(0)
    if len(y) > 50_000:
        keep = rng.choice(len(y), 50_000, replace=False)
        x, y = x[keep], y[keep]
    forest = RandomForestClassifier(n_estimators=100, max_depth=None, n_jobs=2, random_state=0)
    forest.fit(x, y)
    maps = []
    for _, image, _gt in val:
        f = forest_features(image, kind.rgb)
        maps.append(forest.predict_proba(f.reshape(-1, f.shape[-1]))[:, 1].reshape(f.shape[:2]))
    best = {"accuracy": -1.0}
    for t in FOREST_THRESHOLDS:
        acc = [accuracy(label_instances(m, t, 30), gt) for m, (_, _, gt) in zip(maps, val,
                                                                               strict=True)]
        err = [pixel_error(m > t, gt) for m, (_, _, gt) in zip(maps, val, strict=True)]
        if np.mean(acc) > best["accuracy"]:
            best = {"accuracy": float(np.mean(acc)), "pixel_error": float(np.mean(err)),
                    "threshold": t}
    return best


def run_kind(kind: Kind, args: argparse.Namespace, log) -> dict:
    """All protocols and methods of one kind."""
    train = load(kind, "train", args.data, None if kind.chosen else args.max_train)
    val = load(kind, "val", args.data, args.max_val)
    out: dict = {"n_val": len(val)}
    if kind.start and not args.no_start:
        t0 = time.perf_counter()
        start = load_pretrained(kind.start)  # the product's default: its recorded scale, or
        diameter = default_diameter(start)  # "auto" without one (Predict, CLI)
        out["start"] = score_unet(start, val, kind, diameter=diameter)
        out["start"]["diameter"] = str(diameter)
        log(kind.name, "start", kind.start, out["start"], time.perf_counter() - t0)
    for protocol in args.protocols:
        images, labels, dense = annotation(protocol, train, args.seed, kind)
        out[protocol] = {}
        for n_classes in args.classes:
            method = "unet" if n_classes == 2 else f"unet{n_classes}"
            out[protocol][method] = train_and_score(n_classes, images, labels, dense, val,
                                                    kind, args)
            log(kind.name, protocol, method, out[protocol][method])
        if kind.start and not args.no_ft:
            out[protocol]["ft"] = finetune_and_score(kind, images, labels, dense, val, args)
            log(kind.name, protocol, "ft", out[protocol]["ft"])
        if not args.no_forest:
            out[protocol]["rf"] = score_forest(images, labels, dense, val, kind)
            log(kind.name, protocol, "rf", out[protocol]["rf"])
    return out


def train_and_score(n_classes, images, labels, dense, val, kind: Kind, args) -> dict:
    """A new default network (``n_classes`` 2, or 3 with the border class), trained and scored."""
    config = {**DEFAULT_CONFIG, "in_channels": 3 if kind.rgb else 1, "n_classes": n_classes}
    model = UNet(**config)
    t0 = time.perf_counter()
    train_to_completion(model, images, labels, steps=args.steps, dense=dense, seed=args.seed,
                        channel_axis=-1 if kind.rgb else None, device="cpu")
    seconds = time.perf_counter() - t0
    result = score_unet(model, val, kind)
    result.update(train_seconds=seconds, steps=args.steps,
                  data_diameter=model.metadata.get("scale", {}).get("data_diameter"))
    return result


def finetune_and_score(kind: Kind, images, labels, dense, val, args) -> dict:
    """The kind's starting model fine-tuned on the same labels (the engine's fine-tuning
    policy: its learning rate, distillation or anchor), then scored."""
    model = load_pretrained(kind.start)
    t0 = time.perf_counter()
    train_to_completion(model, images, labels, steps=args.steps, dense=dense, seed=args.seed,
                        channel_axis=-1 if kind.rgb else None, device="cpu")
    seconds = time.perf_counter() - t0
    result = score_unet(model, val, kind, diameter=default_diameter(model))
    result.update(train_seconds=seconds, steps=args.steps, start=kind.start,
                  diameter=str(default_diameter(model)))
    if data_diameter(model) is None:  # the size of the labels, as recorded before finding K5
        # sparse labels: 1 is background, cells are >= 2
        cells = [lab if dense else np.where(lab >= 2, lab, 0) for lab in labels]
        size = float(np.median(np.concatenate([object_diameters(c) for c in cells])))
        result["at_labels_size"] = score_unet(model, val, kind, diameter=size)
    return result


def main() -> None:
    """Parse arguments, run every kind, print and write the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--protocols", nargs="*", default=["dense-3", "sparse-10"])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--classes", type=int, nargs="*", default=[2, 3],
                        help="network outputs: 2 (background, cell), 3 (+ cell border)")
    parser.add_argument("--no-forest", action="store_true")
    parser.add_argument("--no-start", action="store_true",
                        help="no scores of the shipped starting model without training")
    parser.add_argument("--no-ft", action="store_true",
                        help="no fine-tuning of the shipped starting model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-val", type=int, default=20)
    parser.add_argument("--max-train", type=int, default=12)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)

    def log(*items) -> None:
        print(*items, "load", round(os.getloadavg()[0], 1), flush=True)

    results = {}
    for name in args.kinds:
        results[name] = run_kind(KINDS[name], args, log)
        if args.json:
            args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                             "results": results}, indent=2))


if __name__ == "__main__":
    main()
