"""Segmentation quality on real nuclei (DSB2018 val): U-Net vs a random-forest baseline.

Protocols (see ``protocols.py``): ``few-N`` keeps N nuclei of one training image plus plausible
painted background (sparse labels); ``full-K`` uses K completely labeled training images (dense).
Methods: ``unet`` (the default network from scratch, trained for each budget), ``rf`` (random
forest on the same labels, ``rf_baseline.py``; fast, so budget-free), ``start`` (the shipped
starting model, no training; protocol-free) and ``ft`` (the starting model fine-tuned with the
engine's fine-tuning defaults, as the widget and the CLI do it: learning rate
``FINE_TUNE_LEARNING_RATE``, BatchNorm statistics frozen, and on sparse labels the term that
keeps the starting model's predictions on unlabeled pixels, on dense labels the pull toward
its starting weights, both scaled by its agreement with the labels; ``--ft-lr``,
``--ft-freeze``, ``--distill`` and ``--anchor`` change them for ablations).  ``--domain color``
runs the same protocols on H&E images (as grayscale), an image type new to the starting model.

Budgets are CPU minutes of one torch thread, converted to a step count (on a shared machine
wall time mostly measures the other users; on an idle core the two agree). Scores per run,
averaged over the validation images: accuracy at IoU 0.5 (TP / (TP + FP + FN) after optimal
matching), mean matched IoU, pixel-level foreground IoU, precision and recall, all after
``label_instances(p, threshold, min_size)`` (the engine's defaults unless given), plus the
accuracy at the ``--sweep`` thresholds.

Results are merged into a JSON file (``--resume`` skips runs already there; ``--collect`` merges
files); a summary (forest vs U-Nets per protocol) and all runs are printed, and written into
benchmarks/README.md with ``--write-readme``. Everything, one command (~1.5 h on 2 cores)::

    .venv/bin/python benchmarks/evaluate.py --write-readme
    .venv/bin/python benchmarks/evaluate.py --quick          # smoke test, 1-3 minutes
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import protocols as P  # noqa: E402
import quality_tables as T  # noqa: E402
import rf_baseline as RF  # noqa: E402

from napari_unet.core.instances import (  # noqa: E402
    DEFAULT_MIN_SIZE,
    DEFAULT_THRESHOLD,
    label_instances,
)
from napari_unet.core.metrics import iou, matching  # noqa: E402
from napari_unet.core.model import DEFAULT_CONFIG, UNet  # noqa: E402
from napari_unet.core.tiling import predict_tiled  # noqa: E402
from napari_unet.core.training import (  # noqa: E402
    FINE_TUNE_LEARNING_RATE,
    TrainConfig,
    train,
)

RESULTS = HERE / "quality_results.json"
PROTOCOL_NAMES = T.PROTOCOL_NAMES
METHODS = T.METHODS
CALIBRATION_STEPS = 4


@dataclass
class Protocol:
    """Training data of one protocol: images, labels and the label convention."""

    name: str
    images: list[np.ndarray]
    labels: list[np.ndarray]
    dense: bool


def build_protocol(name: str, seed: int, domain: str = "fluo") -> Protocol:
    """``few-N`` (sparse, one image) or ``full-K`` (dense, K images) training data."""
    kind, _, count = name.partition("-")
    few_image, full_images = P.TRAINING_IMAGES[domain]
    if kind == "few":
        sample = P.load_sample(few_image, "train", domain)
        lab = P.few_cells_annotation(sample.labels, int(count), seed=seed)
        return Protocol(name, [sample.image], [lab], dense=False)
    if kind == "full":
        samples = [P.load_sample(n, "train", domain) for n in full_images[: int(count)]]
        return Protocol(
            name, [s.image for s in samples], [P.full_annotation(s.labels) for s in samples], True
        )
    raise ValueError(f"unknown protocol {name!r}; expected one of {PROTOCOL_NAMES}")


# ----------------------------------------------------------------------------- scoring
def score_maps(
    foreground: Sequence[np.ndarray],
    val: Sequence[P.Sample],
    threshold: float,
    min_size: int,
) -> dict[str, float]:
    """Mean accuracy@0.5, mean matched IoU and pixel foreground IoU over the images.

    ``accuracy_per_image`` keeps each image's accuracy, for paired comparisons between runs.
    """
    acc, miou, fiou, prec, rec = [], [], [], [], []
    for fg, sample in zip(foreground, val, strict=True):
        pred = label_instances(fg, threshold=threshold, min_size=min_size)
        m = matching(pred, sample.labels, threshold=0.5)
        acc.append(float(m["accuracy"]))
        miou.append(float(m["mean_matched_iou"]))
        prec.append(float(m["precision"]))
        rec.append(float(m["recall"]))
        fiou.append(float(iou(pred > 0, sample.labels > 0)))
    return {
        "accuracy": float(np.mean(acc)),
        "mean_matched_iou": float(np.mean(miou)),
        "fg_iou": float(np.mean(fiou)),
        "precision": float(np.mean(prec)),
        "recall": float(np.mean(rec)),
        "accuracy_per_image": [round(a, 6) for a in acc],
    }


def unet_foreground(model: UNet, val: Sequence[P.Sample]) -> list[np.ndarray]:
    """Cell probability (class 1) of every validation image."""
    model.eval()
    return [predict_tiled(model, s.image, device="cpu")[1] for s in val]


def evaluate_maps(
    maps: list[np.ndarray],
    val: Sequence[P.Sample],
    threshold: float,
    min_size: int,
    sweep: Sequence[float] = (),
) -> dict[str, Any]:
    """Scores at the chosen threshold, plus accuracy@0.5 at each ``sweep`` threshold."""
    out = score_maps(maps, val, threshold, min_size)
    if sweep:
        out["accuracy_by_threshold"] = {
            str(t): score_maps(maps, val, t, min_size)["accuracy"] for t in sweep
        }
    return out


# ----------------------------------------------------------------------------- training
def cpu_seconds_per_step(
    model: UNet, proto: Protocol, seed: int, n: int = CALIBRATION_STEPS, **overrides: Any
) -> float:
    """CPU seconds of one training step of ``model`` on ``proto`` (measured on a copy).

    The first step (data preparation, allocations) is not counted.
    """
    probe = copy.deepcopy(model)
    gen = train(
        probe,
        proto.images,
        proto.labels,
        steps=10**6,
        dense=proto.dense,
        seed=seed,
        device="cpu",
        **overrides,
    )
    start = None
    for i, _ in enumerate(gen):
        if i == 0:
            start = time.process_time()
        elif i == n:
            break
    gen.close()
    return (time.process_time() - start) / n


def train_unet(
    model: UNet, proto: Protocol, minutes: float, seed: int, **overrides: Any
) -> dict[str, Any]:
    """Train in place for ``minutes`` of CPU time (converted to a step count); report the cost.

    The shared 2-core machine runs many jobs at once, so a wall-clock budget would mostly
    measure the load of the other users.  The step count is ``minutes * 60`` divided by the
    CPU seconds per step (:func:`cpu_seconds_per_step`), so that the cosine learning-rate
    schedule runs to its end, and the CPU and wall time actually spent are recorded.
    """
    per_step = cpu_seconds_per_step(model, proto, seed, **overrides)
    steps = max(10, round(minutes * 60.0 / per_step))
    config = TrainConfig(steps=steps, dense=proto.dense, seed=seed, device="cpu", **overrides)
    wall, cpu = time.perf_counter(), time.process_time()
    last = None
    for progress in train(model, proto.images, proto.labels, config=config):
        last = progress
    return {
        "train_s": time.process_time() - cpu,
        "wall_s": time.perf_counter() - wall,
        "steps": int(last.step) if last is not None else 0,
        "final_loss": float(last.loss) if last is not None else float("nan"),
        "lr": float(config.learning_rate),
    }


def load_starting_model() -> UNet:
    """The shipped nuclei model (``napari_unet.models``)."""
    from napari_unet.models import load_pretrained

    return load_pretrained()


# ----------------------------------------------------------------------------- results
def result_key(r: dict[str, Any]) -> str:
    return (
        f"{r['protocol']}|{r['method']}|{r['budget_min']}|{r['seed']}|{r['n_val']}"
        f"|{r.get('threshold', 0.5)}|{r.get('domain', 'fluo')}"
    )


def load_results(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text()) if path.exists() else []


def save_results(path: Path, results: list[dict[str, Any]], new: dict[str, Any]) -> None:
    """Replace a run with the same key or append it; write atomically."""
    merged = [r for r in results if result_key(r) != result_key(new)] + [new]
    results[:] = merged
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(merged, indent=1))
    tmp.replace(path)


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Run the requested protocols x methods x budgets; merge into the results file."""
    torch.set_num_threads(args.threads)
    val = P.validation_set(args.max_val, kind=args.domain)
    n_val = len(val)
    results = load_results(args.results)
    threshold, min_size = args.threshold, args.min_size
    common = {"seed": args.seed, "n_val": n_val, "threshold": threshold, "min_size": min_size}
    if args.domain != "fluo":
        common["domain"] = args.domain
    ft_lr = args.ft_lr or FINE_TUNE_LEARNING_RATE
    overrides: dict[str, Any] = {}
    if args.lr is not None:
        overrides["learning_rate"] = args.lr

    done = {result_key(r) for r in results} if args.resume else set()

    def todo(protocol: str, method: str, budget: float | None) -> bool:
        """False when ``--resume`` and this run is already in the results file."""
        key = {"protocol": protocol, "method": method, "budget_min": budget}
        return result_key({**key, **common}) not in done

    def record(entry: dict[str, Any]) -> None:
        entry.update(common)
        save_results(args.results, results, entry)
        log(
            f"{entry['protocol']:7s} {entry['method']:5s} budget={entry['budget_min']} "
            f"cpu={entry['train_s']:.0f}s wall={entry.get('wall_s') or 0:.0f}s "
            f"steps={entry.get('steps')} "
            f"acc={entry['accuracy']:.3f} mIoU={entry['mean_matched_iou']:.3f} "
            f"pxIoU={entry['fg_iou']:.3f} sweep={entry.get('accuracy_by_threshold')}"
        )

    start_model = None
    if {"start", "ft"} & set(args.methods):
        start_model = load_starting_model()
    if "start" in args.methods and todo("none", "start", None):
        maps = unet_foreground(start_model, val)
        record(
            {
                "protocol": "none",
                "method": "start",
                "budget_min": None,
                "train_s": 0.0,
                "steps": None,
                **evaluate_maps(maps, val, threshold, min_size, args.sweep),
            }
        )
    for name in args.protocols:
        proto = build_protocol(name, args.seed, args.domain)
        if "rf" in args.methods and todo(name, "rf", None):
            wall = time.perf_counter()
            forest, fit_s = RF.train_forest(proto.images, proto.labels, proto.dense, args.seed)
            wall = time.perf_counter() - wall
            maps = [RF.predict_foreground(forest, s.image) for s in val]
            record(
                {
                    "protocol": name,
                    "method": "rf",
                    "budget_min": None,
                    "train_s": fit_s,
                    "wall_s": wall,
                    "steps": None,
                    **evaluate_maps(maps, val, threshold, min_size, args.sweep),
                }
            )
        for minutes in args.budgets:
            if "unet" in args.methods and todo(name, "unet", minutes):
                torch.manual_seed(args.seed)
                model = UNet(**DEFAULT_CONFIG)
                info = train_unet(model, proto, minutes, args.seed, **overrides)
                maps = unet_foreground(model, val)
                record(
                    {
                        "protocol": name,
                        "method": "unet",
                        "budget_min": minutes,
                        **info,
                        **evaluate_maps(maps, val, threshold, min_size, args.sweep),
                    }
                )
            if "ft" in args.methods and todo(name, "ft", minutes):
                model = copy.deepcopy(start_model)
                info = train_unet(
                    model,
                    proto,
                    minutes,
                    args.seed,
                    learning_rate=ft_lr,
                    distill_weight=args.distill,
                    anchor=args.anchor,
                    freeze_norm_stats=args.ft_freeze,
                )
                maps = unet_foreground(model, val)
                record(
                    {
                        "protocol": name,
                        "method": "ft",
                        "budget_min": minutes,
                        **info,
                        "ft_lr": ft_lr,
                        "distill": args.distill,
                        "anchor": args.anchor,
                        "freeze_norm_stats": args.ft_freeze,
                        **evaluate_maps(maps, val, threshold, min_size, args.sweep),
                    }
                )
    return results


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--budgets",
        type=float,
        nargs="+",
        default=[1.0, 5.0],
        help="training budgets in CPU minutes (converted to a step count)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-val",
        type=int,
        default=0,
        help="score a fixed random subset of val/fluo (seed 0); 0 = all 62",
    )
    parser.add_argument(
        "--protocols", nargs="+", default=list(PROTOCOL_NAMES), choices=PROTOCOL_NAMES
    )
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--min-size", type=int, default=DEFAULT_MIN_SIZE)
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help="learning rate for the U-Net from scratch (default: TrainConfig's)",
    )
    parser.add_argument(
        "--ft-lr",
        type=float,
        default=None,
        help=f"fine-tuning learning rate (default {FINE_TUNE_LEARNING_RATE})",
    )
    parser.add_argument(
        "--distill",
        type=float,
        default=None,
        help="fine-tuning: weight of the keep-unlabeled-predictions term (default: trainer's)",
    )
    parser.add_argument(
        "--domain",
        choices=P.DOMAINS,
        default="fluo",
        help="image type: fluo (as the starting model) or color (H&E as gray, new to it)",
    )
    parser.add_argument(
        "--ft-freeze",
        type=lambda v: {"yes": True, "no": False, "auto": None}[v],
        default=None,
        help="fine-tuning: freeze BatchNorm statistics: yes, no or auto (default: trainer's)",
    )
    parser.add_argument(
        "--anchor",
        type=float,
        default=None,
        help="fine-tuning: pull toward the starting weights, x lr per step (default: trainer's)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: on the loaded 2-core machine, 2 were ~4x slower)",
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument(
        "--sweep",
        type=float,
        nargs="*",
        default=[0.5, 0.7, 0.9],
        help="also report accuracy@0.5 at these probability thresholds "
        "(each costs one more post-processing pass)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="skip runs already in the results file"
    )
    parser.add_argument(
        "--collect",
        type=Path,
        nargs="+",
        default=None,
        help="run nothing: merge these result files into --results and the table",
    )
    parser.add_argument(
        "--write-readme",
        action="store_true",
        help="write the table of all stored runs into benchmarks/README.md",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 0.1-minute budget, 4 val images, few-5 and full-1",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.budgets, args.max_val = [0.1], 4
        args.protocols = ["few-5", "full-1"]
        if args.results == RESULTS:  # a fresh scratch file: no runs of older versions
            args.results = Path("/tmp/napari_unet_quality_quick.json")
            args.results.unlink(missing_ok=True)
    if args.max_val == 0:
        args.max_val = None
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.collect:
        results: list[dict[str, Any]] = []
        for path in args.collect:
            for entry in load_results(path):
                save_results(args.results, results, entry)
    else:
        results = run(args)
    table = (
        T.format_summary(results)
        + "\n\nThe fine-tune against the starting model, over seeds:\n\n"
        + T.format_fine_tune_vs_start(results)
        + "\n\nAll runs:\n\n"
        + T.format_table(results)
    )
    print(table)
    if args.write_readme:
        T.write_readme(table)


if __name__ == "__main__":
    main()
