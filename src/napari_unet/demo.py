"""The main job: ``python -m napari_unet.demo`` (what ``make demo`` runs).

With a display, napari opens with the plugin's sample data (an image with a few painted cells)
and the plugin's dock open, ready to press Train. Without one, the same workflow runs headless:
fine-tune on the few painted cells, predict the whole image, write the instance labels to a
file and say where, with the scores against the full ground truth.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

#: the one dock the demo opens (first in the Plugins menu)
DOCK = "U-Net (all steps)"
#: every widget of the Plugins menu: the one dock, then each step on its own
WIDGETS = (
    DOCK,
    "Paint cells and background",
    "Train U-Net",
    "Predict",
    "Click to annotate and retrain",
    "Elastic augmentation preview",
    "Weight map preview",
)


def has_display() -> bool:
    """True when a window can be shown (X11/Wayland display, or macOS/Windows)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def run_viewer() -> None:
    """Open napari with the sparse sample data and the plugin's one dock."""
    import napari

    viewer = napari.Viewer(title="napari-unet demo")
    viewer.open_sample("napari-unet", "cells_sparse")
    viewer.window.add_plugin_dock_widget("napari-unet", DOCK)
    napari.run()


def starting_model() -> tuple[object, str]:
    """The shipped nuclei model when it is installed, else a new default network."""
    from napari_unet.core.model import DEFAULT_CONFIG, UNet

    try:
        from napari_unet.models import load_pretrained

        return load_pretrained(), "nuclei, fluorescence (shipped starting model)"
    except (ImportError, FileNotFoundError, ValueError):
        return UNet(**DEFAULT_CONFIG), "new default U-Net"


def run_headless(out_dir: Path, seconds: float, seed: int) -> Path:
    """Train on the sample's few painted cells, predict, write the labels, print the scores."""
    import torch

    from napari_unet._sample_data import SAMPLE_CELLS, SAMPLE_SHAPE
    from napari_unet.core import io, metrics
    from napari_unet.core.instances import DEFAULT_THRESHOLD, label_instances
    from napari_unet.core.synthetic import make_cells, sparse_annotation
    from napari_unet.core.tiling import predict_tiled
    from napari_unet.core.training import train

    torch.manual_seed(seed)
    image, truth = make_cells(SAMPLE_SHAPE, SAMPLE_CELLS, seed=1)
    annotation = sparse_annotation(truth, n_cells=6, seed=0)
    n_cells = len(np.unique(annotation[annotation >= 2]))
    model, source = starting_model()
    print(
        f"demo: {n_cells} painted cells on a {image.shape[0]}x{image.shape[1]} image; "
        f"model: {source}"
    )
    start = time.perf_counter()
    progress = None
    for progress in train(model, image, annotation, minutes=seconds / 60.0, seed=seed):
        if progress.step % 10 == 0 or progress.done:
            print(
                f"  step {progress.step:4d}  loss {progress.loss:.4f}  "
                f"{progress.elapsed_s:5.1f}s on {progress.device}",
                flush=True,
            )
    if progress is None:
        raise RuntimeError("training made no step")
    probabilities = predict_tiled(model, image)
    instances = label_instances(probabilities[1], DEFAULT_THRESHOLD)
    elapsed = time.perf_counter() - start
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = io.write_array(out_dir / f"cells_instances_{stamp}.tif", instances.astype(np.uint16))
    scores = metrics.matching(instances, truth, threshold=0.5)
    print(
        f"demo: {int(instances.max())} cells found (truth {int(truth.max())}); "
        f"accuracy@0.5 {scores['accuracy']:.3f}, pixel IoU {metrics.iou(instances, truth):.3f}; "
        f"{elapsed:.0f}s"
    )
    print(f"demo: labels written to {path.resolve()}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m napari_unet.demo", description=__doc__)
    parser.add_argument("--headless", action="store_true", help="run without a window")
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder")
    parser.add_argument("--seconds", type=float, default=45.0, help="training time budget")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.headless or not has_display():
        if not args.headless:
            print("demo: no display found, running the workflow headless")
        run_headless(args.out, args.seconds, args.seed)
    else:
        run_viewer()
    return 0


if __name__ == "__main__":
    sys.exit(main())
