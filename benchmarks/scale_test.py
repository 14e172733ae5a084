"""Scale test: the shipped starting model on DSB2018 val/fluo resized 0.5x-8x, no training.

For each scale the images and their labels (nearest neighbour) are resized, and the starting
model segments them: at the image's own pixel size (``native``, what napari-unet did before
object scale existed), with the object size estimated automatically (``auto``,
``diameter="auto"``, the default for a starting model), with the true median diameter given
(``true``), and as a folder predicts them (``folder``: ``core.folder_scale.FolderScale``, the
scale estimated on a file kept for the next ones while their objects look alike; one folder
per scale, and ``mixed``: one folder of all scales, each file at another scale than the last).
Scores: mean accuracy@0.5 over the images, on the resized ground truth::

    .venv/bin/python benchmarks/scale_test.py --n 12 [--scales 0.5 1 2 4 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import protocols as P  # noqa: E402

from napari_unet.core.folder_scale import FolderScale  # noqa: E402
from napari_unet.core.metrics import average_precision  # noqa: E402
from napari_unet.core.scale import object_diameter, resample, scaled_shape  # noqa: E402
from napari_unet.core.segment import (  # noqa: E402
    label_probability,
    min_size_for,
    model_threshold,
    segment,
)
from napari_unet.models import load_pretrained  # noqa: E402


def accuracy(pred: np.ndarray, gt: np.ndarray) -> float:
    """Accuracy at IoU 0.5: TP / (TP + FP + FN)."""
    return float(average_precision(pred, gt, (0.5,))[0.5])


def resized(sample, s: float) -> tuple[np.ndarray, np.ndarray]:
    """A val sample's image and labels resized by ``s``."""
    shape = scaled_shape(sample.image.shape, s)
    return resample(sample.image, shape), resample(sample.labels, shape, order=0)


def folder_accuracy(model, folder: FolderScale, image: np.ndarray, gt: np.ndarray) -> float:
    """accuracy@0.5 of one file predicted as ``predict_files`` does with ``folder``."""
    fg, interior, factor = folder.predict(model, image, device="cpu")
    return accuracy(label_probability(fg, model_threshold(model), min_size_for(factor),
                                      interior), gt)


def run(n: int, scales: list[float], root: Path | None, methods: list[str]) -> dict:
    """Scores per scale and method, with the estimated diameters."""
    model = load_pretrained()
    val = P.validation_set(n, root=root)
    out: dict = {}
    for s in scales:
        rows = {m: [] for m in methods if m != "mixed"}
        ratio = []
        folder = FolderScale()
        t0 = time.perf_counter()
        for sample in val:
            image, gt = resized(sample, s)
            true_d = object_diameter(gt)
            for method, diameter in (("native", None), ("auto", "auto"), ("true", true_d)):
                if method not in methods:
                    continue
                seg = segment(model, image, diameter=diameter, device="cpu")
                rows[method].append(accuracy(seg.instances, gt))
                if method == "auto":
                    ratio.append(model_d_image(seg.factor, true_d))
            if "folder" in methods:
                rows["folder"].append(folder_accuracy(model, folder, image, gt))
        out[str(s)] = {m: float(np.mean(v)) for m, v in rows.items()}
        if ratio:
            out[str(s)]["auto_diameter_ratio_median"] = float(np.median(ratio))
        if "folder" in methods:
            out[str(s)]["folder_estimates"] = folder.estimates
        out[str(s)]["seconds"] = time.perf_counter() - t0
        print(s, json.dumps(out[str(s)]), "load", os.getloadavg()[0], flush=True)
    if "mixed" in methods:
        folder, scores = FolderScale(), {str(s): [] for s in scales}
        for sample in val:
            for s in scales:
                scores[str(s)].append(folder_accuracy(model, folder, *resized(sample, s)))
        out["mixed"] = {s: float(np.mean(v)) for s, v in scores.items()}
        out["mixed"]["estimates"] = folder.estimates
        print("mixed", json.dumps(out["mixed"]), "load", os.getloadavg()[0], flush=True)
    return out


def model_d_image(factor: float, true_d: float | None) -> float:
    """Estimated / true object diameter (the model's diameter / factor vs the true one)."""
    from napari_unet.core.scale import DEFAULT_DIAMETER

    return float(DEFAULT_DIAMETER / factor / true_d) if true_d else float("nan")


def main() -> None:
    """Parse arguments, run, print and optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=12, help="validation images (fixed subset)")
    parser.add_argument("--scales", type=float, nargs="+", default=[0.5, 1, 2, 4, 8])
    parser.add_argument("--data", type=Path, help="dsb2018 folder (default ../shared/data)")
    parser.add_argument("--methods", nargs="+", default=["native", "auto", "true"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(args.n, args.scales, args.data, args.methods)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
