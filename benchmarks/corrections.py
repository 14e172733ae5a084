"""Click-to-correct on real nuclei: does one Retrain learn the corrections and keep the rest?

For each DSB2018 ``val/fluo`` image where the shipped starting model makes mistakes, a simulated
user corrects up to ``--clicks`` of them, as the Annotate widget's clicks would:

* a predicted object that lies (90% or more) off the true nuclei is turned into background;
* a nucleus that lies (90% or more) off the predicted objects is added (its true outline).

``sparse``: the annotation layer holds only these corrections (0 = unlabeled).  ``dense``: it
is the prediction itself with the corrections applied ("from prediction", complete labels).
The starting model is then retrained as the widget's Retrain does (``--steps`` steps, the
fine-tuning learning rate), either with ``correction_settings`` (what Retrain uses) or with
the Train widget's defaults (the distillation and the weight anchor scaled by the model's
agreement with the labels), and scored:

* ``fixed``: the share of corrected objects that are right afterwards (a removed object no
  longer matched by a predicted one, an added nucleus now matched at IoU >= 0.5);
* ``acc``: accuracy@0.5 on the corrected image before -> after;
* ``others``: mean accuracy@0.5 on ``--others`` other val images before -> after (what the
  retrain did to images nobody corrected).

    .venv/bin/python benchmarks/corrections.py --images 6 --write results.json
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage.segmentation import relabel_sequential

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import protocols as P  # noqa: E402

from napari_unet.core.annotate import (  # noqa: E402
    BACKGROUND_RING_PX,
    add_cell,
    background_ring,
)
from napari_unet.core.instances import label_instances  # noqa: E402
from napari_unet.core.live import LiveSettings, LiveTrainer  # noqa: E402
from napari_unet.core.metrics import iou_matrix, matching  # noqa: E402
from napari_unet.core.tiling import predict_tiled  # noqa: E402
from napari_unet.core.training import (  # noqa: E402
    FINE_TUNE_LEARNING_RATE,
    correction_settings,
    train_to_completion,
)
from napari_unet.models import load_pretrained  # noqa: E402

_OVERLAP = 0.1


def instances(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """The plugin's instance labels (default threshold and minimum size) of ``image``."""
    return relabel_sequential(label_instances(predict_tiled(model, image, device="cpu")[1]))[0]


def mistakes(pred: np.ndarray, truth: np.ndarray) -> tuple[list[int], list[int]]:
    """Ids of plainly false predicted objects and of plainly missed true nuclei.

    Plainly: at most ``_OVERLAP`` of the object lies on the other image's foreground.  Merged or
    split nuclei (IoU < 0.5 but overlapping) are not clicks a user would make: marking a merged
    pair as background would teach that nuclei are background.
    """
    false = [int(i) for i in np.unique(pred[pred > 0])
             if (truth[pred == i] > 0).mean() <= _OVERLAP]
    missed = [int(i) for i in np.unique(truth[truth > 0])
              if (pred[truth == i] > 0).mean() <= _OVERLAP]
    return false, missed


def annotation(
    pred: np.ndarray, truth: np.ndarray, false: list[int], missed: list[int], dense: bool,
    ring: int = BACKGROUND_RING_PX,
) -> np.ndarray:
    """The annotation layer after the clicks (sparse: 0 unlabeled, 1 background, >= 2 cells).

    As the Annotate widget paints them: in the sparse convention an added cell gets a
    ``ring`` px background ring off the predicted objects (``annotate.background_ring``).
    """
    if dense:
        labels = pred.astype(np.int32).copy()
        labels[np.isin(pred, false)] = 0
    else:
        labels = np.zeros(pred.shape, np.int32)
        labels[np.isin(pred, false)] = 1
    for nucleus in missed:
        labels, new_id = add_cell(labels, truth == nucleus, dense=dense)
        if not dense and new_id:
            labels[background_ring(labels, labels == new_id, ring, avoid=pred > 0)] = 1
    return labels


def fixed_share(
    after: np.ndarray, pred: np.ndarray, truth: np.ndarray, false: list[int], missed: list[int]
) -> float:
    """Share of the corrected objects that the retrained model gets right."""
    ok = 0
    for obj in false:
        ious = iou_matrix(after, (pred == obj).astype(np.int32))
        ok += int(ious.max(initial=0) < 0.5)
    for nucleus in missed:
        ious = iou_matrix(after, (truth == nucleus).astype(np.int32))
        ok += int(ious.max(initial=0) >= 0.5)
    return ok / max(len(false) + len(missed), 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=6, help="corrected images")
    parser.add_argument("--others", type=int, default=10, help="uncorrected images scored")
    parser.add_argument("--clicks", type=int, default=3, help="removals and additions, each")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=FINE_TUNE_LEARNING_RATE)
    parser.add_argument("--modes", nargs="+", default=["sparse", "dense"])
    parser.add_argument("--settings", nargs="+", default=["retrain", "train-defaults"],
                        help="retrain (correction_settings), retrain-anchorA (the same with "
                             "weight anchor A), train-defaults or live (a live session's "
                             "steps on all the clicks)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ring", type=int, default=BACKGROUND_RING_PX,
                        help="background ring around added cells (sparse), px")
    parser.add_argument("--write", type=Path, help="JSON file for the per-image records")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    start = load_pretrained()
    samples = P.validation_set()
    others = samples[-args.others :]
    others_pred = [instances(start, s.image) for s in others]
    others_before = float(np.mean(
        [matching(p, s.labels)["accuracy"] for p, s in zip(others_pred, others, strict=True)]))
    records: list[dict[str, Any]] = []
    chosen = 0
    for sample in samples[: -args.others]:
        if chosen >= args.images:
            break
        truth = relabel_sequential(sample.labels)[0]
        pred = instances(start, sample.image)
        false, missed = mistakes(pred, truth)
        if not missed:  # a sparse annotation needs at least one cell
            continue
        chosen += 1
        false, missed = false[: args.clicks], missed[: args.clicks]
        for mode in args.modes:
            labels = annotation(pred, truth, false, missed, dense=mode == "dense", ring=args.ring)
            for setting in args.settings:
                model = copy.deepcopy(start)
                fields = setting_fields(setting, model, mode == "dense")
                t0 = time.process_time()
                try:
                    if setting.startswith("live"):
                        live_retrain(model, sample.image, labels, mode == "dense", args,
                                     setting)
                    else:
                        train_to_completion(
                            model, sample.image, labels, dense=mode == "dense",
                            steps=args.steps, learning_rate=args.lr, seed=args.seed,
                            device="cpu", **fields,
                        )
                except ValueError as exc:  # e.g. only added cells, without the distillation
                    record = {"image": sample.name, "mode": mode, "settings": setting,
                              "error": str(exc)}
                    records.append(record)
                    print(json.dumps(record), flush=True)
                    continue
                cpu_s = time.process_time() - t0
                after = instances(model, sample.image)
                others_after = float(np.mean(
                    [matching(instances(model, s.image), s.labels)["accuracy"] for s in others]))
                record = {
                    "image": sample.name, "mode": mode, "settings": setting, "ring": args.ring,
                    "lr": args.lr, "n_false": len(false), "n_missed": len(missed),
                    "fixed": fixed_share(after, pred, truth, false, missed),
                    "acc_before": matching(pred, truth)["accuracy"],
                    "acc_after": matching(after, truth)["accuracy"],
                    "others_before": others_before, "others_after": others_after,
                    "train_cpu_s": round(cpu_s, 1),
                    "distill_trust": model.metadata["training"].get("distill_trust"),
                    "anchor": model.metadata["training"].get("anchor"),
                }
                records.append(record)
                print(json.dumps(record), flush=True)
    if args.write:
        args.write.write_text(json.dumps(records, indent=1))
    print(summary(records))


def live_retrain(model: torch.nn.Module, image: np.ndarray, labels: np.ndarray, dense: bool,
                 args: argparse.Namespace, setting: str = "live") -> None:
    """``--steps`` steps of a live session on all the clicks at once (``live-wW``: correction
    weight W, ``live-fF``: recent fraction F, else the ``LiveSettings`` defaults)."""
    fields: dict[str, float] = {}
    if setting.startswith("live-w"):
        fields["correction_weight"] = float(setting.removeprefix("live-w"))
    elif setting.startswith("live-f"):
        fields["recent_fraction"] = float(setting.removeprefix("live-f"))
    settings = LiveSettings(dense=dense, seed=args.seed, device="cpu", **fields)
    trainer = LiveTrainer(model, image, settings, factor=1.0)
    trainer.update(labels, changed=labels > 0)
    for _ in range(args.steps):
        trainer.step()
    trainer.close()


def setting_fields(setting: str, model: torch.nn.Module, dense: bool) -> dict[str, float]:
    """``train_to_completion`` fields of a ``--settings`` name."""
    if setting == "train-defaults" or setting.startswith("live"):
        return {}
    fields = correction_settings(model, dense)
    if setting.startswith("retrain-anchor"):
        fields["anchor"] = float(setting.removeprefix("retrain-anchor"))
    elif setting != "retrain":
        raise SystemExit(f"unknown setting {setting!r}")
    return fields


def summary(records: list[dict[str, Any]]) -> str:
    """Mean fixed share and accuracy changes per (mode, settings)."""
    lines = ["| annotation | settings | images | corrections fixed | corrected image acc "
             "before -> after | other images acc before -> after |", "|---|---|---|---|---|---|"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        if "error" in r:
            continue
        groups.setdefault((r["mode"], r["settings"]), []).append(r)
    for (mode, setting), rs in groups.items():
        def mean(key: str, rs: list[dict[str, Any]] = rs) -> float:
            return float(np.mean([r[key] for r in rs]))

        lines.append(
            f"| {mode} | {setting} | {len(rs)} | {mean('fixed'):.2f} | "
            f"{mean('acc_before'):.3f} -> {mean('acc_after'):.3f} | "
            f"{mean('others_before'):.3f} -> {mean('others_after'):.3f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
