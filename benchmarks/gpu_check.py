"""GPU check, under 5 minutes: train steps, prediction speed, peak memory, OOM recovery, release.

Run it whenever a CUDA machine is at hand and put its output in ``benchmarks/README.md``:

* train step time of the default and of the paper network (batch 4, output patch 100 px),
  with and without mixed precision (``TrainConfig.mixed_precision``);
* images/s of 512x512 prediction (``core.tiling.predict_tiled``) and its peak memory;
* out-of-memory recovery: the widgets' ``training_loop`` with a batch too large for the card
  retries at half the batch size (one retry) or says what to change;
* memory released after a run (``torch.cuda.memory_allocated`` back to where it was).

``--device cpu --quick`` runs the same script on the CPU as a smoke test (no OOM part)::

    python benchmarks/gpu_check.py [--json gpu.json]
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from napari_unet.core.model import DEFAULT_CONFIG, UNet  # noqa: E402
from napari_unet.core.synthetic import make_cells  # noqa: E402
from napari_unet.core.tiling import predict_tiled  # noqa: E402
from napari_unet.core.training import TrainConfig, train  # noqa: E402

NETWORKS = {"default": DEFAULT_CONFIG, "paper": {}}


def allocated(device: str) -> int:
    """Bytes of device memory held by tensors now (0 on the CPU)."""
    return torch.cuda.memory_allocated() if device == "cuda" else 0


def peak_reset(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak(device: str) -> int:
    return torch.cuda.max_memory_allocated() if device == "cuda" else 0


def train_steps(name: str, amp: bool, steps: int, device: str) -> dict:
    """Seconds per train step (after 3 warm-up steps), peak memory, memory after the run."""
    image, labels = make_cells((384, 384), n_cells=40, seed=0)
    model = UNet(**NETWORKS[name])
    before = allocated(device)
    peak_reset(device)
    cfg = TrainConfig(steps=steps + 3, batch_size=4, patch_size=100, dense=True, seed=0,
                      device=device, mixed_precision=amp)
    times = [p.elapsed_s for p in train(model, image, labels, cfg)]
    per_step = (times[-1] - times[2]) / max(len(times) - 3, 1)
    return {"network": name, "amp": amp, "s_per_step": per_step, "peak_MiB": peak(device) / 2**20,
            "held_after_MiB": (allocated(device) - before) / 2**20}


def prediction(device: str, reps: int) -> dict:
    """Images/s of 512x512 prediction with the default network, and its peak memory."""
    image, _ = make_cells((512, 512), n_cells=60, seed=1)
    model = UNet(**DEFAULT_CONFIG).eval()
    predict_tiled(model, image, device=device)  # warm-up
    peak_reset(device)
    t0 = time.perf_counter()
    for _ in range(reps):
        predict_tiled(model, image, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / reps
    return {"images_per_s": 1.0 / seconds, "s_per_image": seconds,
            "peak_MiB": peak(device) / 2**20}


def oom_recovery(device: str) -> dict:
    """A batch far too large: does the widgets' training loop retry, or say what to change?"""
    from napari_unet.widgets._training_run import training_loop

    image, labels = make_cells((1024, 1024), n_cells=100, seed=2)
    model = UNet()
    cfg = TrainConfig(steps=2, batch_size=2048, patch_size=388, dense=True, device=device)
    notes: list[str] = []
    try:
        for item in training_loop(model, [image], [labels], cfg):
            if isinstance(item, str):
                notes.append(item)
        outcome = "finished"
    except RuntimeError as error:
        outcome = f"error: {error}"
    torch.cuda.empty_cache()
    return {"notes": notes, "outcome": outcome, "held_after_MiB": allocated(device) / 2**20}


def main() -> None:
    """Run every check and print (and optionally write) the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="fewer steps (smoke test)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --device cpu for a smoke test")
    steps, reps = (3, 2) if args.quick else (30, 10)
    out: dict = {"torch": torch.__version__, "device": args.device,
                 "load_average": os.getloadavg()[0]}
    if args.device == "cuda":
        out["gpu"] = torch.cuda.get_device_name()
    nets = ["default"] if args.quick else list(NETWORKS)
    out["train"] = [train_steps(n, amp, steps, args.device) for n in nets
                    for amp in ((False, True) if args.device == "cuda" else (False,))]
    out["predict_512"] = prediction(args.device, reps)
    if args.device == "cuda":
        out["oom"] = oom_recovery(args.device)
    print(json.dumps(out, indent=1, default=float))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=float))
    sys.exit(0 if np.isfinite(out["predict_512"]["s_per_image"]) else 1)


if __name__ == "__main__":
    main()
